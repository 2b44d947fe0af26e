"""Atomic file writes: a file is either the old one or the complete new one, never half.

Every writer in the engine (project files, results, caches, attention, proxies) goes
through :func:`atomic_path`: it writes to a temporary name in the destination folder and
renames it into place only when writing finished without an exception; otherwise the
temporary file is removed. A crash, a cancelled job or a full disk never corrupts or
truncates what was there before.

Rules every write follows:

- **One temp-file name**: ``.tmp-<pid>-<random>-<name>`` beside the destination
  (:func:`temp_name`). Temp files whose process is gone (killed with ``kill -9``, a power cut)
  are removed the next time anything is written to that folder (:func:`clean_stale_temps`).
- **Only regular files are replaced**. A device node or a FIFO given as the destination
  (``--out /dev/null``) is written into, never renamed over (renaming over ``/dev/null`` as root
  would break it for the whole machine); a socket or a folder is refused. A symbolic link is
  followed knowingly: the file it points to is replaced, the link stays.
- **A full disk is an error message, not a crash**: when the caller knows roughly how many
  bytes it will write (``expected_bytes``), free space is checked first; ``ENOSPC`` during the
  write removes the temp file and says how much space was needed.
- **Results stay inside their project**: :func:`safe_result_path` refuses a project-relative
  result path that leads outside the project's folder.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
import stat
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional, Set

__all__ = ["atomic_path", "write_text_atomic", "write_h5", "read_h5", "temp_name", "clean_stale_temps",
           "check_free_space", "is_disk_full", "safe_result_path", "open_h5_for_write", "describe_project_path",
           "temp_folder", "TEMP_PREFIX"]

TEMP_PREFIX = ".tmp-"
_TEMP_RE = re.compile(r"^\.tmp-(\d+)-([0-9a-f]+)-(.+)$")
_LEGACY_TEMP_RE = re.compile(r"^\.tmp-([0-9a-f]{12})-(.+)$")   # names written before the pid rule
_LEGACY_MAX_AGE_S = 3600.0
_active: Set[str] = set()          # temp files this process is writing now
_active_lock = threading.Lock()
#: Slack added to ``expected_bytes`` when checking free space (HDF5 metadata, file-system blocks).
SPACE_MARGIN = 1.05


def temp_name(name: str) -> str:
    """The temp-file name for ``name``: ``.tmp-<pid>-<8 hex>-<name>`` (extension kept)."""
    return f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-{name}"


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:     # someone else's live process
        return True
    except OSError:             # pragma: no cover
        return True
    return True


def clean_stale_temps(folder, recursive: bool = False) -> List[Path]:
    """Remove temp files left in ``folder`` by processes that no longer run; return them.

    A temp file is stale when its ``<pid>`` is not a running process, or is this process but
    not a write in progress here (a recycled pid). Temp names from before the pid rule
    (``.tmp-<12 hex>-name``) are removed when older than an hour. Files that vanish or cannot
    be removed meanwhile are skipped.
    """
    import time

    folder = Path(folder)
    removed: List[Path] = []
    try:
        entries = list(folder.rglob(f"{TEMP_PREFIX}*") if recursive else folder.glob(f"{TEMP_PREFIX}*"))
    except OSError:
        return removed
    me = os.getpid()
    now = time.time()
    for p in entries:
        m = _TEMP_RE.match(p.name)
        stale = False
        if m:
            pid = int(m.group(1))
            if pid == me:
                with _active_lock:
                    stale = str(p) not in _active
            else:
                stale = not _pid_alive(pid)
        else:
            legacy = _LEGACY_TEMP_RE.match(p.name)
            if legacy:
                try:
                    stale = now - p.lstat().st_mtime > _LEGACY_MAX_AGE_S
                except OSError:
                    stale = False
        if not stale:
            continue
        try:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
            removed.append(p)
        except OSError:
            pass
    return removed


def _format_bytes(n: float) -> str:
    n = float(n)
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover


def is_disk_full(exc: BaseException) -> bool:
    """True for an out-of-space error (``ENOSPC``/``EDQUOT``), also when h5py wraps it in text."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return True
    text = str(exc)
    return "No space left on device" in text or "errno = 28," in text or "Disk quota exceeded" in text


def check_free_space(folder, needed_bytes: int, what: str = "file") -> None:
    """Raise :class:`~engine.errors.DataError` when ``folder``'s disk has less free space than needed."""
    from .errors import DataError

    folder = Path(folder)
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        usage = shutil.disk_usage(probe)
    except OSError:
        return
    if usage.total == 0:     # a pseudo file system (/proc, /sys): no space figures to check
        return
    free = usage.free
    need = int(needed_bytes * SPACE_MARGIN) + 64 * 1024
    if need > free:
        raise DataError(f"{what} in {folder}: expected about {_format_bytes(need)} of free disk space, found "
                        f"{_format_bytes(free)} free. Free some space or write elsewhere; nothing was written.")


def _disk_full_error(exc: BaseException, dest: Path, tmp: Path, expected_bytes: Optional[int]):
    from .errors import DataError

    try:
        written = tmp.stat().st_size if tmp.exists() else 0
    except OSError:
        written = 0
    try:
        free = shutil.disk_usage(dest.parent).free
    except OSError:
        free = None
    m = re.search(r"total write size = (\d+)", str(exc))
    pending = int(m.group(1)) if m else 0
    if expected_bytes:
        need = f"about {_format_bytes(expected_bytes * SPACE_MARGIN)}"
    else:
        need = f"more than {_format_bytes(written + pending)}"
    return DataError(f"writing {dest}: expected {need} of free disk space, found the disk full after "
                     f"{_format_bytes(written)} were written" +
                     (f" ({_format_bytes(free + written)} free once it is removed)" if free is not None else "") +
                     ". The partial file was removed and the previous one (if any) kept; free some space "
                     "or write elsewhere.")


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


def _about(exc: OSError, *paths: Path) -> bool:
    """Whether an error concerns one of ``paths`` (or names no file, as h5py's errors do)."""
    names = [str(p) for p in paths]
    if exc.filename is None:
        text = str(exc)
        return "name = '" not in text or any(n in text for n in names)
    return str(exc.filename) in names


def _special_kind(st_mode: int) -> Optional[str]:
    if stat.S_ISCHR(st_mode) or stat.S_ISBLK(st_mode):
        return "device"
    if stat.S_ISFIFO(st_mode):
        return "fifo"
    if stat.S_ISSOCK(st_mode):
        return "socket"
    if stat.S_ISDIR(st_mode):
        return "folder"
    return None


@contextmanager
def atomic_path(path, mode: Optional[int] = 0o644, expected_bytes: Optional[int] = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    The temporary name keeps ``path``'s extension (``.tmp-<pid>-<rand>-name.h5``), so writers
    that infer the format from it (PyAV, h5py, numpy) behave as for the real name.

    Parameters
    ----------
    path : str or Path
        The destination. Its folder is created if missing. A symlink is followed (its target
        is replaced); a device node or FIFO is written into (the temp file, in the system
        temp folder, is copied into it); a folder or socket is refused.
    mode : int or None
        Permission bits given to a new file before it is renamed (None keeps the default); an
        existing file keeps its own.
    expected_bytes : int, optional
        About how much will be written: free space is checked first.

    Raises
    ------
    DataError
        The destination is a folder or socket, or the disk is (or becomes) too full.
    """
    from .errors import DataError, expected_found

    dest = Path(path)
    if dest.is_symlink():
        dest = Path(os.path.realpath(dest))          # replace what the link points at, keep the link
    try:
        st = os.stat(dest)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise DataError(expected_found(f"output {path}", "a path that can be written",
                                       f"{exc.strerror or exc}")) from None
    special = _special_kind(st.st_mode) if st is not None else None
    if special in ("folder", "socket"):
        raise DataError(expected_found(f"output {path}", "a file name", f"a {special}" +
                                       (" (give a file name inside it)" if special == "folder" else "")))
    if special in ("device", "fifo"):
        # never rename over a device or FIFO: write the bytes into it
        tmp = Path(tempfile.gettempdir()) / temp_name(dest.name)
        with _active_lock:
            _active.add(str(tmp))
        try:
            yield tmp
            if tmp.exists():
                with open(tmp, "rb") as src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
        finally:
            with _active_lock:
                _active.discard(str(tmp))
            try:
                tmp.unlink()
            except OSError:
                pass
        return

    folder = dest.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise DataError(expected_found(f"output {path}", "a folder to write into",
                                       f"a file in the way of {folder}")) from None
    except OSError as exc:
        raise DataError(expected_found(f"output {path}", f"a folder that can be created ({folder})",
                                       f"{exc.strerror or exc}")) from None
    if not os.access(folder, os.W_OK | os.X_OK):
        reason = "a read-only file system" if _read_only(folder) else "no permission to write there"
        raise DataError(expected_found(f"output {path}", f"a folder AlignScope may write into ({folder})",
                                       f"{reason}; choose another output folder"))
    clean_stale_temps(folder)
    if expected_bytes:
        check_free_space(folder, int(expected_bytes), what=f"writing {dest.name}")
    keep_mode = stat.S_IMODE(st.st_mode) if st is not None else mode
    tmp = folder / temp_name(dest.name)
    with _active_lock:
        _active.add(str(tmp))
    try:
        try:
            yield tmp
            if keep_mode is not None and tmp.exists():
                os.chmod(tmp, keep_mode)
            os.replace(tmp, dest)
        except OSError as exc:
            if is_disk_full(exc):
                raise _disk_full_error(exc, dest, tmp, expected_bytes) from None
            if (exc.filename is not None and str(exc.filename) in (str(tmp), str(dest))) or \
                    (_about(exc, tmp, dest) and (exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS)
                                                 or "errno = 13," in str(exc) or "errno = 30," in str(exc))):
                raise DataError(expected_found(f"output {path}", "a file AlignScope may write",
                                               f"{exc.strerror or str(exc)[:160]}; choose another output "
                                               "folder")) from None
            raise
    finally:
        with _active_lock:
            _active.discard(str(tmp))
        try:
            if tmp.exists():
                tmp.unlink()
        except OSError:
            pass


def write_text_atomic(path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically and return the path."""
    with atomic_path(path, expected_bytes=len(text.encode(encoding, errors="replace"))) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(path)


class _GuardedFile:
    """A file object for h5py that never reports a failed write to HDF5.

    HDF5 crashes (a segmentation fault while closing) after a write fails inside its chunk
    cache, e.g. on a full disk. Writing through this object, the first ``OSError`` is
    recorded and later writes are dropped, so HDF5 finishes and closes normally; the caller
    then raises the recorded error and discards the file.
    """

    def __init__(self, path: Path):
        self._f = open(path, "w+b", buffering=0)
        self.failure: Optional[OSError] = None

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        n = len(view)
        if self.failure is None:
            try:
                done = 0
                while done < n:
                    done += self._f.write(view[done:])
            except OSError as exc:
                self.failure = exc
        return n

    def read(self, size: int = -1) -> bytes:
        return self._f.read(size)

    def readinto(self, buffer) -> int:
        return self._f.readinto(buffer)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def truncate(self, size: Optional[int] = None) -> int:
        try:
            return self._f.truncate(size)
        except OSError as exc:
            if self.failure is None:
                self.failure = exc
            return size if size is not None else self._f.tell()

    def flush(self) -> None:
        if self.failure is None:
            try:
                self._f.flush()
                os.fsync(self._f.fileno())
            except OSError as exc:
                self.failure = exc

    def close(self) -> None:
        self._f.close()


@contextmanager
def open_h5_for_write(tmp):
    """``h5py.File`` on a new file at ``tmp`` that turns a full disk into an ``OSError`` (no crash).

    Use inside :func:`atomic_path` (as :func:`write_h5` does): the error is raised after HDF5
    closed the file, and :func:`atomic_path` turns it into a "disk full" message.
    """
    import h5py

    guard = _GuardedFile(Path(tmp))
    try:
        with h5py.File(guard, "w") as h:
            yield h
        guard.flush()
    finally:
        guard.close()
    if guard.failure is not None:
        raise guard.failure


@contextmanager
def write_h5(path, kind: str, schema_version: int, expected_bytes: Optional[int] = None):
    """Open a new HDF5 file for writing, atomically, stamped with ``kind`` and ``schema_version``.

    Yields the open ``h5py.File``; the file appears at ``path`` only when the block ends
    without an exception (see :func:`atomic_path`). Give ``expected_bytes`` (the arrays'
    total ``nbytes``) so a disk without that much room is refused before writing; a disk that
    fills up anyway gives a :class:`~engine.errors.DataError` saying how much was needed (never
    a crash inside HDF5).
    """
    with atomic_path(path, expected_bytes=expected_bytes) as tmp:
        with open_h5_for_write(tmp) as h:
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


def safe_result_path(project_root, rel, results_dir: Optional[str] = None) -> Path:
    """Where a project may write a result named by a project-relative path: never outside it.

    Parameters
    ----------
    project_root : path
        The project's folder.
    rel : str or Path
        The path as the project file or the user gives it, relative to the project folder.
    results_dir : str, optional
        A sub-folder results must stay in (e.g. ``"results"``); default: anywhere inside
        the project folder.

    Returns
    -------
    Path
        The absolute path, with symlinks resolved.

    Raises
    ------
    ConfigError
        An absolute path, a path climbing out with ``..``, or a symlink leading outside.
    """
    from .errors import ConfigError, expected_found

    root = Path(project_root).resolve()
    allowed = (root / results_dir).resolve() if results_dir else root
    rel_path = Path(str(rel))
    where = f"inside the project's {'folder ' + str(allowed) if not results_dir else results_dir + '/ folder'}"
    if rel_path.is_absolute() or (rel_path.drive if hasattr(rel_path, "drive") else ""):
        raise ConfigError(expected_found(f"result path {rel!s}", f"a path relative to the project, {where}",
                                         "an absolute path (a project file cannot make AlignScope write "
                                         "outside its project)"))
    base = allowed if results_dir and not rel_path.parts[:1] == (results_dir,) else root
    full = (base / rel_path).resolve()
    try:
        full.relative_to(allowed)
    except ValueError:
        raise ConfigError(expected_found(f"result path {rel!s}", where,
                                         f"a path leading to {full} (a project file cannot make AlignScope "
                                         "write outside its project)")) from None
    return full


def describe_project_path(project_root, rel, expect: str = "file") -> dict:
    """Where a path of a project file points, for ``info`` and the window.

    Parameters
    ----------
    project_root : path
        The project's folder.
    rel : str
        The path as stored in the project file (relative or absolute).
    expect : {"file", "folder"}
        What it should be.

    Returns
    -------
    dict
        ``path`` (as stored), ``points_to`` (absolute, symlinks resolved), ``inside_project``
        (bool), ``via_symlink`` (bool), ``kind`` ("file", "folder", "device", "fifo",
        "socket", "missing") and ``problem`` (None, or a sentence naming what was expected and
        found: a missing target, a device or FIFO, a folder where a file was expected). A
        path outside the project is not a problem (runs and videos may live elsewhere), only
        a fact to show.
    """
    root = Path(project_root).resolve()
    raw = Path(str(rel)).expanduser()
    joined = raw if raw.is_absolute() else root / raw
    target = Path(os.path.realpath(joined))
    via_link = any(Path(*joined.parts[:i]).is_symlink() for i in range(2, len(joined.parts) + 1))
    try:
        st = os.stat(target)
        kind = _special_kind(st.st_mode) or "file"
    except OSError:
        kind = "missing"
    try:
        target.relative_to(root)
        inside = True
    except ValueError:
        inside = False
    problem = None
    if kind == "missing":
        problem = f"{rel}: expected a {expect} at {target}, found nothing"
    elif expect == "file" and kind != "file":
        problem = f"{rel}: expected a regular file, found a {kind} at {target}"
    elif expect == "folder" and kind != "folder":
        problem = f"{rel}: expected a folder, found a {kind} at {target}"
    return {"path": str(rel), "points_to": str(target), "inside_project": inside, "via_symlink": via_link,
            "kind": kind, "problem": problem}


@contextmanager
def temp_folder(name: str, parent=None) -> Iterator[Path]:
    """A scratch folder named by the one temp rule (``.tmp-<pid>-<rand>-<name>``), removed on exit.

    For large scratch data (memory-mapped Gram matrices, staged runs): ``parent`` defaults to
    the system temp folder. Scratch folders of dead processes there are removed first (a
    ``kill -9`` during a fit never leaves gigabytes behind for long), and this one is removed
    when the block ends, whatever the reason (exception, Ctrl-C, SIGTERM via ``main.py``).
    """
    base = Path(parent) if parent is not None else Path(tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(base)
    folder = base / temp_name(name)
    folder.mkdir()
    with _active_lock:
        _active.add(str(folder))
    try:
        yield folder
    finally:
        with _active_lock:
            _active.discard(str(folder))
        shutil.rmtree(folder, ignore_errors=True)
