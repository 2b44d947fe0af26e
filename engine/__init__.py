"""AlignScope engine: the science and the data, pure Python.

This package never imports Qt, pyvistaqt or VTK (a test and an import-linter contract
enforce it). Heavy libraries (torch, transformers) are imported lazily inside the
functions that need them, so importing the engine stays cheap.
"""

__version__ = "0.1.0"
