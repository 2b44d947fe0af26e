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

__all__ = ["atomic_path", "write_text_atomic", "write_h5", "read_h5"]


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


@contextmanager
def write_h5(path, kind: str, schema_version: int):
    """Open a new HDF5 file for writing, atomically, stamped with ``kind`` and ``schema_version``.

    Yields the open ``h5py.File``; the file appears at ``path`` only when the block ends
    without an exception (see :func:`atomic_path`).
    """
    import h5py

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as h:
            h.attrs["kind"] = kind
            h.attrs["schema_version"] = schema_version
            yield h


@contextmanager
def read_h5(path, kind: str, schema_version: int, what: str):
    """Open an HDF5 file :func:`write_h5` wrote, checking it is what the caller expects.

    Raises :class:`~engine.errors.DataError` for a missing or unreadable file and
    :class:`~engine.errors.SchemaError` for another kind or a newer schema, each naming
    ``what`` (e.g. "encoding result") with what was expected and found.
    """
    import h5py

    from .errors import DataError, SchemaError, expected_found

    path = Path(path)
    if not path.is_file():
        raise DataError(expected_found(what, "an existing .h5 file", f"no file at {path}"))
    try:
        h = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(expected_found(f"{what} {path}", "an HDF5 file", f"unreadable ({exc})")) from None
    with h:
        found = h.attrs.get("kind")
        if found != kind:
            raise SchemaError(expected_found(f"{what} {path}", f"kind {kind!r}", repr(found)))
        version = int(h.attrs.get("schema_version", -1))
        if version > schema_version:
            raise SchemaError(f"{what} {path}: written by a newer AlignScope (schema {version}); this version "
                              f"reads schema <= {schema_version}. Update AlignScope to open it.")
        yield h
