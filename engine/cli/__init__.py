"""Headless sub-commands of ``main.py``: each module has ``add_arguments(parser)`` and ``run(args)``.

Modules here must be cheap to import (``--help`` imports them): import numpy, torch and
friends inside ``run``.
"""
