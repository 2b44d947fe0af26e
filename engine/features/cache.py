"""Content-addressed, resumable cache of extracted features (HDF5).

The key is the SHA-256 of a canonical JSON of: the stimulus files' SHA-256 (file bytes,
read in chunks), the words' content, the model identity (Hub commit or weight-file
hashes), the spec (layers, pooling, window, frames, context, dtype), the ablation, the TR
grid and the code version. Same inputs, same key; any change, a new entry.

Layout under the cache root::

    ab/abcdef....h5            a finished entry: /features/<layer> (n_trs, n_features) float32
    ab/abcdef....parts/        an unfinished one: one part_<first>_<last>.h5 per chunk of TRs

Every file is written to a temporary name and renamed (``os.replace``), so a killed
extraction leaves only whole parts (and perhaps a ``.tmp-<pid>-...`` file of the dead
process, removed on the next run); a resumed run recomputes only the missing TRs.

Integrity: every entry and part carries the key of the request it belongs to and the
SHA-256 of its arrays (names, dtypes, shapes and bytes). A file that does not verify
(another key, a flipped bit, a truncated or unreadable file) is deleted and recomputed,
never trusted. A cache that cannot be written (full disk, read-only folder) costs a
warning, never the extraction: the features are still returned.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import warnings
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from ..atomic import atomic_path, clean_stale_temps, open_h5_for_write, write_text_atomic
from ..errors import AlignScopeError

__all__ = ["file_sha256", "words_sha256", "cache_key", "FeatureCache", "default_cache_dir", "CacheWriteWarning",
           "arrays_sha256"]

#: Version of the on-disk layout of entries and parts (checksum + key attributes).
CACHE_FORMAT = 2


class CacheWriteWarning(UserWarning):
    """The feature cache could not be written; the extraction went on without it."""

_HASH_MEMO: Dict[Tuple[str, int, int], str] = {}
_memo_lock = threading.Lock()


# Files at least this large (model weights, long episodes) have their hash remembered on
# disk too, in <cache>/file_hashes.json, keyed by path, size and modification time.
PERSIST_HASH_BYTES = 256 * 2 ** 20


def _hash_db_path() -> Path:
    return default_cache_dir() / "file_hashes.json"


def _persisted(key) -> Optional[str]:
    try:
        return json.loads(_hash_db_path().read_text()).get("|".join(map(str, key)))
    except (OSError, ValueError):
        return None


def _persist(key, digest: str) -> None:
    db_path = _hash_db_path()
    try:
        db = json.loads(db_path.read_text()) if db_path.exists() else {}
    except (OSError, ValueError):
        db = {}
    db["|".join(map(str, key))] = digest
    try:
        write_text_atomic(db_path, json.dumps(db))
    except (OSError, AlignScopeError):  # a read-only or full cache folder only costs a re-hash next time
        pass


def file_sha256(path, chunk_bytes: int = 1 << 22) -> str:
    """SHA-256 of a file's bytes, read in chunks.

    Remembered per (path, size, mtime) in this process, and on disk for files of at least
    :data:`PERSIST_HASH_BYTES` (hashing a 6 GB checkpoint takes tens of seconds).
    """
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), int(st.st_size), int(st.st_mtime_ns))
    with _memo_lock:
        if key in _HASH_MEMO:
            return _HASH_MEMO[key]
    big = st.st_size >= PERSIST_HASH_BYTES
    if big:
        known = _persisted(key)
        if known:
            with _memo_lock:
                _HASH_MEMO[key] = known
            return known
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk_bytes)
            if not block:
                break
            h.update(block)
    digest = h.hexdigest()
    with _memo_lock:
        _HASH_MEMO[key] = digest
    if big:
        _persist(key, digest)
    return digest


def words_sha256(words) -> Optional[str]:
    """SHA-256 of word timings (onset, duration, word), or None when there are none."""
    if words is None:
        return None
    onsets = np.round(np.asarray(words["onset_s"], dtype=float), 6)
    durs = np.round(np.asarray(words["duration_s"], dtype=float), 6) if "duration_s" in words else onsets * 0
    text = "\n".join(f"{o!r}\t{d!r}\t{w}" for o, d, w in zip(onsets.tolist(), durs.tolist(), words["word"]))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _canonical(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        return float(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def cache_key(parts: Dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of ``parts``."""
    text = json.dumps(_canonical(parts), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def default_cache_dir() -> Path:
    """The feature cache folder: ``$ALIGNSCOPE_CACHE``, else ``features`` in the cache root
    (:func:`engine.paths.cache_dir`)."""
    from ..paths import cache_dir

    return cache_dir("features")


def arrays_sha256(datasets: Dict[str, np.ndarray]) -> str:
    """SHA-256 of named arrays: names, dtypes, shapes and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(datasets):
        arr = np.ascontiguousarray(datasets[name])
        h.update(f"{name}|{arr.dtype.str}|{arr.shape}\n".encode("utf-8"))
        h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


def _write_h5_atomic(path: Path, datasets: Dict[str, np.ndarray], attrs: Dict[str, Any]) -> None:
    nbytes = sum(int(np.asarray(a).nbytes) for a in datasets.values())
    with atomic_path(path, expected_bytes=nbytes + 16384) as tmp:
        with open_h5_for_write(tmp) as f:
            for name, arr in datasets.items():
                f.create_dataset(name, data=arr)
            f.attrs["sha256"] = arrays_sha256(datasets)
            f.attrs["cache_format"] = CACHE_FORMAT
            for k, v in attrs.items():
                f.attrs[k] = v


def _read_verified(path: Path, key: str) -> Optional[Tuple[Dict[str, np.ndarray], Any]]:
    """``(datasets by full name, h5 attrs as dict)`` when ``path`` verifies against ``key``; else None."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            attrs = {k: f.attrs[k] for k in f.attrs}
            datasets: Dict[str, np.ndarray] = {}

            def visit(name, obj):
                if isinstance(obj, h5py.Dataset):
                    datasets[name] = obj[()]

            f.visititems(visit)
    except Exception:  # unreadable, truncated, not HDF5: recompute
        return None
    found_key = attrs.get("key")
    if isinstance(found_key, bytes):
        found_key = found_key.decode("utf-8", "replace")
    digest = attrs.get("sha256")
    if isinstance(digest, bytes):
        digest = digest.decode("ascii", "replace")
    if found_key != key or not digest or arrays_sha256(datasets) != digest:
        return None
    return datasets, attrs


class FeatureCache:
    """A folder of cached feature entries (see the module docstring)."""

    def __init__(self, root=None):
        self.root = Path(root) if root is not None else default_cache_dir()
        self.write_failures: list = []   # messages of writes that failed (the cache went without them)
        self.discarded: list = []        # files that did not verify and were deleted

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.h5"

    def parts_dir(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.parts"

    def _discard(self, path: Path) -> None:
        self.discarded.append(path)
        try:
            path.unlink()
        except OSError:
            pass

    def _write(self, path: Path, datasets, attrs) -> Optional[Path]:
        try:
            _write_h5_atomic(path, datasets, attrs)
        except (OSError, AlignScopeError) as exc:
            msg = f"feature cache {self.root}: could not write {path.name} ({exc}); the features are kept in " \
                  "memory and the extraction goes on without caching them"
            self.write_failures.append(msg)
            warnings.warn(msg, CacheWriteWarning, stacklevel=3)
            return None
        return path

    # -- finished entries -------------------------------------------------------------------
    def load(self, key: str) -> Optional[Tuple[Dict[str, np.ndarray], Dict[str, Any]]]:
        """``(features, meta)`` of a finished entry that verifies, or None (a bad one is deleted)."""
        path = self.path(key)
        if not path.exists():
            return None
        got = _read_verified(path, key)
        if got is None:
            self._discard(path)
            return None
        datasets, attrs = got
        try:
            feats = {_unescape(n[len("features/"):]): np.asarray(a, np.float32) for n, a in datasets.items()
                     if n.startswith("features/")}
            meta = json.loads(attrs.get("meta", "{}"))
        except (ValueError, TypeError):
            self._discard(path)
            return None
        if not feats:
            self._discard(path)
            return None
        return feats, meta

    def save(self, key: str, features: Dict[str, np.ndarray], meta: Dict[str, Any]) -> Optional[Path]:
        """Write a finished entry atomically and drop its parts; None when it could not be written."""
        datasets = {f"features/{_escape(k)}": np.asarray(v, np.float32) for k, v in features.items()}
        path = self.path(key)
        written = self._write(path, datasets, {"meta": json.dumps(_canonical(meta)), "key": key})
        if written is not None:
            shutil.rmtree(self.parts_dir(key), ignore_errors=True)
        return written

    # -- parts of an unfinished entry ----------------------------------------------------------
    def write_part(self, key: str, tr_indices: Sequence[int], features: Dict[str, np.ndarray]) -> Optional[Path]:
        """Write one chunk of TRs; None when it could not be written (the extraction goes on)."""
        idx = np.asarray(tr_indices, dtype=np.int64)
        path = self.parts_dir(key) / f"part_{int(idx[0]):06d}_{int(idx[-1]):06d}.h5"
        datasets = {"tr_indices": idx}
        datasets.update({f"features/{_escape(k)}": np.asarray(v, np.float32) for k, v in features.items()})
        return self._write(path, datasets, {"key": key})

    def load_parts(self, key: str, n_trs: int) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
        """Rows already computed: ``(done (n_trs,) bool, {layer: (n_trs, n_features)})``.

        Temporary files of a dead run and parts that do not verify (another key, a bad
        checksum, unreadable, off the TR grid) are deleted.
        """
        done = np.zeros(n_trs, bool)
        feats: Dict[str, np.ndarray] = {}
        folder = self.parts_dir(key)
        if folder.parent.is_dir():
            clean_stale_temps(folder.parent)
        if not folder.is_dir():
            return done, feats
        clean_stale_temps(folder)
        for part in sorted(folder.glob("part_*.h5")):
            got = _read_verified(part, key)
            try:
                if got is None:
                    raise ValueError("does not verify")
                datasets = got[0]
                idx = np.asarray(datasets["tr_indices"], dtype=np.int64)
                arrays = {_unescape(n[len("features/"):]): np.asarray(a, np.float32) for n, a in datasets.items()
                          if n.startswith("features/")}
                if idx.ndim != 1 or idx.size == 0 or idx.min() < 0 or idx.max() >= n_trs \
                        or any(len(a) != len(idx) for a in arrays.values()) or not arrays:
                    raise ValueError("part does not fit the TR grid")
                if feats and (set(arrays) != set(feats)
                              or any(a.shape[1:] != feats[k].shape[1:] for k, a in arrays.items())):
                    raise ValueError("part has other layers")
            except (KeyError, ValueError):
                self._discard(part)
                continue
            for name, arr in arrays.items():
                if name not in feats:
                    feats[name] = np.zeros((n_trs,) + arr.shape[1:], np.float32)
                feats[name][idx] = arr
            done[idx] = True
        return done, feats


def _escape(name: str) -> str:
    return name.replace("/", "%2F")


def _unescape(name: str) -> str:
    return name.replace("%2F", "/")
