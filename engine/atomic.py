"""Atomic file writes: a file is either the old one or the complete new one, never half.

Every writer in the engine (project files, results, caches, attention, proxies) goes
through :func:`atomic_path`: it writes to a temporary name in the destination folder and
renames it into place only when writing finished without an exception; otherwise the
temporary file is removed. A crash, a cancelled job or a full disk never corrupts or
truncates what was there before.
"""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

__all__ = ["atomic_path", "write_text_atomic"]


@contextmanager
def atomic_path(path, mode: Optional[int] = 0o644) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    The temporary name keeps ``path``'s extension (``.tmp-<id>-name.h5``), so writers that
    infer the format from it (PyAV, h5py, numpy) behave as for the real name.

    Parameters
    ----------
    path : str or Path
        The destination. Its folder is created if missing.
    mode : int or None
        Permission bits given to the file before it is renamed (None keeps the default).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex[:12]}-{path.name}")
    try:
        yield tmp
        if mode is not None and tmp.exists():
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(path)
