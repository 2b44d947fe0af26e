"""The project's encoding results as the open session knows them: names, files and loaded copies.

:class:`ResultShelf` keeps ``project.results`` (name -> file) of the session in step with what
jobs, renames and deletions did to the project file, and loads each result once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

from ..errors import DataError, expected_found
from ..project import Project
from .opening import load_result

__all__ = ["ResultShelf"]


class ResultShelf:
    """Results of one open project (``project.results`` plus the copies already in memory)."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self._loaded: Dict[str, object] = {}

    def names(self) -> List[str]:
        return list(self.project.results)

    def add(self, name: str, result=None, path=None) -> None:
        """Register ``name`` (its file at ``path``) and keep ``result`` in memory when given."""
        if path is not None:
            self.project.results[name] = self.project.relative(Path(path))
        elif name not in self.project.results:
            raise DataError(expected_found(f"result {name!r}", "a file registered in the project (pass its path)",
                                           "a result without a file"))
        self._loaded.pop(name, None)
        if result is not None:
            self._loaded[name] = result

    def forget(self, name: str) -> None:
        self.project.results.pop(name, None)
        self._loaded.pop(name, None)

    def rename(self, old: str, new: str, path=None) -> None:
        """``old`` is now ``new`` (its file at ``path`` when it moved); the order is kept."""
        rel = self.project.relative(Path(path)) if path is not None else self.project.results.get(old)
        self.project.results = {(new if k == old else k): (rel if k == old else v)
                                for k, v in self.project.results.items()}
        if old in self._loaded:
            self._loaded[new] = self._loaded.pop(old)

    def get(self, name: str):
        """The result ``name`` (read from its file once)."""
        if name not in self._loaded:
            self._loaded[name] = load_result(self.project, name)
        return self._loaded[name]

    def keep(self, name: Optional[str], result) -> None:
        if name is not None and result is not None:
            self._loaded[name] = result
