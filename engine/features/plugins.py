"""Extractors from other packages: the ``alignscope.extractors`` entry-point group.

A package that provides an extractor the registry lacks (MERLOT Reserve in JAX, a
lab's own model) declares, in its ``pyproject.toml``::

    [project.entry-points."alignscope.extractors"]
    merlot_reserve = "my_package.alignscope_plugin:register"

``register`` is called once with no argument and calls
:func:`engine.features.registry.register_family` (and optionally
:func:`~engine.features.registry.register_spec`). An entry point may also name an
extractor class directly; it is then registered as a family named after the entry point.
A plugin that fails to load is reported in :data:`FAILED` and does not stop the others.
"""

from __future__ import annotations

import inspect
from typing import Dict, List

__all__ = ["GROUP", "load_plugins", "LOADED", "FAILED"]

GROUP = "alignscope.extractors"
LOADED: List[str] = []
FAILED: Dict[str, str] = {}
_done = False


def _entry_points():
    from importlib.metadata import entry_points

    return list(entry_points(group=GROUP))


def load_plugins(force: bool = False) -> List[str]:
    """Load every ``alignscope.extractors`` entry point (once); return the names loaded."""
    global _done
    if _done and not force:
        return list(LOADED)
    _done = True
    from .registry import register_family

    for ep in _entry_points():
        if ep.name in LOADED and not force:
            continue
        try:
            obj = ep.load()
            if inspect.isclass(obj) or hasattr(obj, "from_spec"):
                register_family(ep.name, obj)
            else:
                obj()
        except Exception as exc:  # a broken plugin must not break the app
            FAILED[ep.name] = f"{type(exc).__name__}: {exc}"
            continue
        if ep.name not in LOADED:
            LOADED.append(ep.name)
    return list(LOADED)
