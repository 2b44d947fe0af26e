"""One safe reader for numeric arrays on disk: ``.npy``, ``.npz`` and HDF5 (``.h5``/``.hdf5``).

Every command (``info``, ``encode``, ``partition``, ``compare --labels``, the window) reads
arrays through :func:`read_array` / :func:`read_arrays`, so a file is judged the same way
everywhere. Before any data is allocated the file's headers are checked:

- the file is what its name says (an ``.h5`` that is not HDF5, an ``.npy`` that is text, is
  named as such);
- Python objects (pickled ``.npy``/``.npz`` members, HDF5 object/string/compound datasets)
  are refused: AlignScope never unpickles (``allow_pickle=False`` always);
- empty arrays (a zero in the shape) are refused;
- the declared shape must fit in the bytes the file actually holds (a corrupt or hostile
  header cannot make us allocate petabytes), and in the memory budget
  (:func:`memory_budget_bytes`);
- an HDF5 dataset that declares data but has none written (allocated lazily, reads as fill
  values) is refused.

:func:`check_fit_inputs` holds the input-level checks of an encoding fit (``--pca`` larger than
the features, delays longer than a run, all-constant features, constant brain targets).
"""

from __future__ import annotations

import math
import os
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import ConfigError, DataError, expected_found

__all__ = ["ArrayInfo", "memory_budget_bytes", "sniff_format", "describe_arrays", "read_array",
           "read_arrays", "check_fit_inputs", "check_block", "format_bytes", "ARRAY_SUFFIXES"]

ARRAY_SUFFIXES = (".npy", ".npz", ".h5", ".hdf5")
NPY_MAGIC = b"\x93NUMPY"
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: Environment variable overriding the memory budget (bytes), e.g. for tests or shared machines.
BUDGET_ENV = "ALIGNSCOPE_MEMORY_BUDGET_BYTES"


@dataclass(frozen=True)
class ArrayInfo:
    """What a header says about one array, before anything is read."""

    name: str                      # dataset / member name ("" for a .npy file)
    shape: Tuple[int, ...]
    dtype: np.dtype
    stored_bytes: Optional[int]    # bytes the file holds for it (None when unknown)

    @property
    def nbytes(self) -> int:
        return int(math.prod(int(s) for s in self.shape)) * int(self.dtype.itemsize)

    @property
    def size(self) -> int:
        return int(math.prod(int(s) for s in self.shape))


def format_bytes(n: float) -> str:
    """``1536`` -> ``"1.5 KB"`` (powers of 1024)."""
    n = float(n)
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB", "EB"):
        if abs(n) < 1024 or unit == "EB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} EB"  # pragma: no cover


def memory_budget_bytes() -> int:
    """Largest array AlignScope will allocate when reading a file.

    ``$ALIGNSCOPE_MEMORY_BUDGET_BYTES`` when set, else 80 % of the memory available now
    (``MemAvailable``), else 80 % of physical memory.
    """
    env = os.environ.get(BUDGET_ENV)
    if env:
        try:
            return max(1, int(float(env)))
        except ValueError:
            pass
    try:
        with open("/proc/meminfo", "r") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(int(line.split()[1]) * 1024 * 0.8)
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 0.8)
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 8 * 2 ** 30


# ---- what is this file? ----------------------------------------------------------------
def _is_hdf5(head: bytes, path: Path) -> bool:
    if head.startswith(HDF5_SIGNATURE):
        return True
    # an HDF5 file may start with a user block of 512, 1024, 2048... bytes
    size = path.stat().st_size
    offset = 512
    with open(path, "rb") as fh:
        while offset + 8 <= size and offset <= 2 ** 24:
            fh.seek(offset)
            if fh.read(8) == HDF5_SIGNATURE:
                return True
            offset *= 2
    return False


def sniff_format(path) -> str:
    """What a file holds, from its first bytes: ``"npy"``, ``"zip"`` (``.npz``), ``"hdf5"``,
    ``"nifti"``, ``"gzip"``, ``"empty"``, ``"text"`` or ``"binary"``."""
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(512)
    if not head:
        return "empty"
    if head.startswith(NPY_MAGIC):
        return "npy"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if _is_hdf5(head, path):
        return "hdf5"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if len(head) >= 348 and head[344:348] in (b"n+1\x00", b"ni1\x00"):
        return "nifti"
    try:
        head.decode("utf-8")
        return "text"
    except UnicodeDecodeError:
        # a multi-byte character cut at byte 512 is still text
        try:
            head[:-3].decode("utf-8")
            return "text" if b"\x00" not in head else "binary"
        except UnicodeDecodeError:
            return "binary"


_FORMAT_WORDS = {"npy": "a NumPy .npy array", "zip": "a zip archive (.npz)", "hdf5": "an HDF5 file",
                 "nifti": "a NIfTI image", "gzip": "gzip-compressed data", "empty": "an empty file (0 bytes)",
                 "text": "a text file", "binary": "binary data of an unknown kind"}


def _expected_format(path: Path) -> Tuple[str, str]:
    low = path.name.lower()
    if low.endswith(".npy"):
        return "npy", "a NumPy .npy array (it starts with \\x93NUMPY)"
    if low.endswith(".npz"):
        return "zip", "a NumPy .npz archive (a zip of .npy arrays)"
    if low.endswith((".h5", ".hdf5")):
        return "hdf5", "an HDF5 file (it starts with \\x89HDF)"
    raise ConfigError(expected_found(f"array file {path.name}", f"a name ending in {', '.join(ARRAY_SUFFIXES)}",
                                     path.suffix or "no extension"))


def _check_kind(path: Path) -> str:
    if not path.exists():
        raise DataError(expected_found("array file", "an existing file", f"nothing at {path}"))
    if path.is_dir():
        raise DataError(expected_found(f"array file {path}", "a file", "a folder"))
    if not path.is_file():   # a FIFO or device would block or never end
        raise DataError(expected_found(f"array file {path}", "a regular file", "a FIFO, socket or device"))
    want, words = _expected_format(path)
    try:
        found = sniff_format(path)
    except OSError as exc:
        raise DataError(expected_found(str(path), words, f"a file that cannot be read ({exc.strerror or exc})")) \
            from None
    if found != want:
        hint = ""
        if found == "npy":
            hint = " (rename it to .npy)"
        elif found == "zip":
            hint = " (rename it to .npz)"
        elif found == "hdf5":
            hint = " (rename it to .h5)"
        raise DataError(expected_found(str(path), words, f"{_FORMAT_WORDS[found]}{hint}"))
    return want


# ---- header checks -----------------------------------------------------------------------
def _npy_header(fh) -> Tuple[Tuple[int, ...], np.dtype, bool]:
    from numpy.lib import format as npformat

    version = npformat.read_magic(fh)
    if version == (1, 0):
        shape, fortran, dtype = npformat.read_array_header_1_0(fh)
    elif version in ((2, 0), (3, 0)):
        shape, fortran, dtype = npformat.read_array_header_2_0(fh)
    else:  # pragma: no cover - numpy raises for unknown versions first
        raise ValueError(f"unknown .npy version {version}")
    return tuple(int(s) for s in shape), np.dtype(dtype), bool(fortran)


def _dtype_problem(dtype: np.dtype) -> Optional[str]:
    if dtype.hasobject:
        return (f"Python objects (dtype {dtype}; a pickled array), which AlignScope never unpickles because "
                "loading a pickle can run any code. Save the numbers as a numeric array, e.g. "
                "np.save(path, np.asarray(data, dtype=np.float32))")
    if dtype.fields is not None:
        return f"a structured array (fields {list(dtype.fields)[:6]}); save one numeric array per dataset"
    if dtype.kind in "SUaV":
        return f"text or raw bytes (dtype {dtype}), not numbers"
    if dtype.kind == "c":
        return f"complex numbers (dtype {dtype}); save the real part (or the magnitude) instead"
    if dtype.kind not in "biuf":
        return f"values of dtype {dtype}, not numbers"
    return None


def _check_info(path: Path, info: ArrayInfo, budget: int, what: str) -> None:
    label = f"{what} {path.name}" + (f" [{info.name}]" if info.name else "")
    problem = _dtype_problem(info.dtype)
    if problem:
        raise DataError(expected_found(label, "a numeric array", problem))
    if info.size == 0:
        raise DataError(expected_found(label, "a non-empty array", f"an empty array of shape {info.shape}: "
                                       "re-export the data (was the run or layer empty?)"))
    if info.stored_bytes is not None and info.nbytes > info.stored_bytes:
        raise DataError(expected_found(
            label, f"{format_bytes(info.nbytes)} of data for the declared shape {info.shape} ({info.dtype})",
            f"only {format_bytes(info.stored_bytes)} in the file: the header is corrupt or the file was cut "
            "short (copy or export it again)"))
    if info.nbytes > budget:
        raise DataError(expected_found(
            label, f"an array that fits in memory (at most {format_bytes(budget)} available now)",
            f"shape {info.shape} ({info.dtype}), {format_bytes(info.nbytes)}: split it into smaller "
            f"runs, or free memory (or raise ${BUDGET_ENV})"))


def _npz_infos(path: Path) -> List[ArrayInfo]:
    infos = []
    try:
        with zipfile.ZipFile(path) as zf:
            for member in zf.infolist():
                if not member.filename.endswith(".npy"):
                    continue
                with zf.open(member) as fh:
                    shape, dtype, _ = _npy_header(fh)
                    header_bytes = fh.tell()
                infos.append(ArrayInfo(member.filename[:-4], shape, dtype,
                                       max(0, int(member.file_size) - header_bytes)))
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, struct.error, SyntaxError) as exc:
        raise DataError(expected_found(str(path), "a NumPy .npz archive",
                                       f"a damaged archive ({exc.__class__.__name__}: {str(exc)[:160]})")) from None
    return infos


def _h5_storage(ds) -> Optional[int]:
    try:
        return int(ds.id.get_storage_size())
    except Exception:  # pragma: no cover - virtual/external datasets
        return None


def _h5_infos(path: Path) -> Tuple[List[ArrayInfo], Dict[str, str]]:
    """Dataset infos, and problems found while listing (e.g. a lazily allocated dataset)."""
    import h5py

    infos: List[ArrayInfo] = []
    notes: Dict[str, str] = {}
    try:
        with h5py.File(path, "r") as f:
            def visit(name, obj):
                if not isinstance(obj, h5py.Dataset):
                    return
                try:
                    dtype = obj.dtype
                except Exception as exc:  # an HDF5 type numpy has no equivalent for
                    infos.append(ArrayInfo(name, tuple(obj.shape or ()), np.dtype(object), None))
                    notes[name] = f"an HDF5 type numpy cannot hold ({exc})"
                    return
                shape = tuple(int(s) for s in (obj.shape or ()))
                storage = _h5_storage(obj)
                info = ArrayInfo(name, shape, dtype, None)
                virtual = bool(getattr(obj, "is_virtual", False))
                if storage is not None and storage == 0 and info.size > 0 and obj.external is None and not virtual:
                    notes[name] = (f"a dataset that declares shape {shape} ({format_bytes(info.nbytes)}) but has no "
                                   "data written (allocated lazily; every value would be the fill value)")
                elif storage is not None and not virtual and obj.external is None and obj.compression is None \
                        and not obj.chunks and storage < info.nbytes:
                    infos.append(ArrayInfo(name, shape, dtype, storage))
                    return
                infos.append(info)

            f.visititems(visit)
    except OSError as exc:
        raise DataError(expected_found(str(path), "an HDF5 file h5py can open",
                                       f"a damaged file ({str(exc)[:200]})")) from None
    return infos, notes


def describe_arrays(path, what: str = "array file") -> List[ArrayInfo]:
    """The arrays a ``.npy``/``.npz``/HDF5 file holds, from headers only (nothing is read).

    Raises
    ------
    DataError
        A missing file, a file that is not what its name says, or a damaged header.
    """
    path = Path(path)
    kind = _check_kind(path)
    if kind == "npy":
        try:
            with open(path, "rb") as fh:
                shape, dtype, _ = _npy_header(fh)
                offset = fh.tell()
        except (ValueError, OSError, EOFError, SyntaxError) as exc:
            raise DataError(expected_found(str(path), "a NumPy .npy array",
                                           f"a damaged header ({exc.__class__.__name__}: {str(exc)[:160]})")) from None
        return [ArrayInfo("", shape, dtype, max(0, path.stat().st_size - offset))]
    if kind == "zip":
        return _npz_infos(path)
    infos, _ = _h5_infos(path)
    return infos


def _choose(path: Path, infos: List[ArrayInfo], dataset: Optional[str], what: str) -> ArrayInfo:
    names = [i.name for i in infos]
    if not infos:
        raise DataError(expected_found(f"{what} {path}", "at least one array", "none"))
    if dataset is None:
        if len(infos) == 1:
            return infos[0]
        raise DataError(expected_found(f"{what} {path.name}", "one array, or the name of the one to use",
                                       f"{len(names)} arrays: {names[:10]}{' ...' if len(names) > 10 else ''}"))
    key = str(dataset).strip("/")
    for i in infos:
        if i.name == key:
            return i
    raise DataError(expected_found(f"array {dataset!r} in {path.name}", "one of the file's arrays",
                                   f"{names[:10]}{' ...' if len(names) > 10 else ''}"))


def read_array(path, dataset: Optional[str] = None, what: str = "array file",
               budget_bytes: Optional[int] = None, mmap: bool = False) -> Tuple[np.ndarray, str]:
    """Read one numeric array safely; ``(array, name)`` (name ``""`` for a ``.npy``).

    Parameters
    ----------
    path : str or Path
        ``.npy``, ``.npz``, ``.h5`` or ``.hdf5``.
    dataset : str, optional
        Member of an ``.npz`` or dataset path of an HDF5 file; required when it holds several.
    what : str
        Words naming the file in messages ("brain file", "feature file", "labels file").
    budget_bytes : int, optional
        Largest allocation allowed (default :func:`memory_budget_bytes`).
    mmap : bool
        ``.npy`` only: return a read-only memory map instead of reading into memory (the
        budget is then not applied).

    Raises
    ------
    DataError
        For everything listed in the module docstring, naming what was expected and found.
    """
    path = Path(path)
    budget = memory_budget_bytes() if budget_bytes is None else int(budget_bytes)
    kind = _check_kind(path)
    if kind == "hdf5":
        infos, notes = _h5_infos(path)
    else:
        infos, notes = describe_arrays(path, what), {}
    info = _choose(path, infos, dataset, what)
    if info.name in notes and _dtype_problem(info.dtype) is None:
        raise DataError(expected_found(f"{what} {path.name} [{info.name}]", "a dataset holding data",
                                       notes[info.name] + ": write the data again"))
    _check_info(path, info, budget if not (mmap and kind == "npy") else 2 ** 62, what)
    try:
        if kind == "npy":
            arr = np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
        elif kind == "zip":
            with np.load(path, allow_pickle=False) as z:
                arr = z[info.name]
        else:
            import h5py

            with h5py.File(path, "r") as f:
                arr = f[info.name][()]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise DataError(expected_found(f"{what} {path.name}" + (f" [{info.name}]" if info.name else ""),
                                       "readable array data",
                                       f"{exc.__class__.__name__}: {str(exc)[:200]} (the file is damaged; "
                                       "copy or export it again)")) from None
    arr = np.asarray(arr) if not mmap else arr
    if arr.shape != info.shape:  # pragma: no cover - a header that changed under us
        raise DataError(expected_found(f"{what} {path.name}", f"shape {info.shape}", f"shape {arr.shape}"))
    return arr, info.name


def read_arrays(path, names: Optional[Sequence[str]] = None, group: Optional[str] = "features",
                what: str = "feature file", ndims: Sequence[int] = (1, 2),
                budget_bytes: Optional[int] = None) -> Dict[str, np.ndarray]:
    """Every numeric array of a file (or those in ``names``), e.g. the layers of a feature file.

    For HDF5, the datasets directly under ``group`` when the file has that group (``/features``
    as ``alignscope extract`` writes; ``%2F`` in names stands for ``/``), else those at the top
    level. Arrays whose number of dimensions is not in ``ndims`` are skipped (a scalar
    attribute-like dataset), unless asked for by name. Every array is checked as in
    :func:`read_array`, and their total against the memory budget.
    """
    path = Path(path)
    budget = memory_budget_bytes() if budget_bytes is None else int(budget_bytes)
    kind = _check_kind(path)
    if kind == "hdf5":
        infos, notes = _h5_infos(path)
        in_group = [i for i in infos if group and i.name.startswith(group.strip("/") + "/")
                    and "/" not in i.name[len(group.strip("/")) + 1:]]
        if in_group:
            prefix = group.strip("/") + "/"
            infos = in_group
            label = {i.name: i.name[len(prefix):].replace("%2F", "/") for i in infos}
        else:
            infos = [i for i in infos if "/" not in i.name]
            label = {i.name: i.name for i in infos}
    else:
        infos, notes = describe_arrays(path, what), {}
        label = {i.name: (i.name or "features") for i in infos}
    by_label = {label[i.name]: i for i in infos}
    if names:
        missing = [n for n in names if n not in by_label]
        if missing:
            raise DataError(expected_found(f"arrays {missing} in {path.name}", "names the file holds",
                                           f"{sorted(by_label)[:12]}"))
        chosen = [by_label[n] for n in names]
    else:
        chosen = [i for i in infos if len(i.shape) in tuple(ndims) and _dtype_problem(i.dtype) is None]
        if not chosen:
            found = ", ".join(f"{label[i.name]} {i.dtype} {i.shape}" for i in infos[:6]) or "no arrays"
            raise DataError(expected_found(f"{what} {path}", "numeric arrays of "
                                           f"{' or '.join(f'{d}-D' for d in ndims)}", found))
    total = sum(i.nbytes for i in chosen)
    if total > budget:
        raise DataError(expected_found(f"{what} {path.name}", f"arrays that fit in memory (at most "
                                       f"{format_bytes(budget)} available now)",
                                       f"{len(chosen)} arrays, {format_bytes(total)} in all"))
    out: Dict[str, np.ndarray] = {}
    for i in chosen:
        arr, _ = read_array(path, i.name, what=what, budget_bytes=budget)
        out[label[i.name]] = arr
    return out


# ---- fit inputs -----------------------------------------------------------------------------
def check_block(block_trs: int, n_trs_runs: Sequence[int], run_names: Optional[Sequence[str]] = None,
                option: str = "--block") -> None:
    """Refuse a permutation/bootstrap block longer than the shortest run (``ConfigError``)."""
    n = [int(v) for v in n_trs_runs]
    if not n:
        return
    names = list(run_names) if run_names is not None else [f"run {i + 1}" for i in range(len(n))]
    shortest = min(n)
    if int(block_trs) < 1:
        raise ConfigError(expected_found(option, "a block of at least 1 TR", int(block_trs)))
    if int(block_trs) > shortest:
        raise ConfigError(expected_found(option, f"a block of at most the shortest run ({names[n.index(shortest)]}: "
                                         f"{shortest} TRs)", f"{int(block_trs)} TRs: use a shorter block"))


def check_fit_inputs(X_runs, Y_runs, delays: Sequence[int] = (), pca=None,
                     block_trs: Optional[int] = None, run_names: Optional[Sequence[str]] = None) -> List[str]:
    """Check an encoding fit's inputs before fitting; raise on what cannot work, return warnings.

    Parameters
    ----------
    X_runs : list of (n_trs_run, n_features) arrays, or a dict space -> such a list
    Y_runs : list of (n_trs_run, n_targets) arrays
    delays : FIR delays in TRs (negative ones are acausal: a warning)
    pca : int (components) or float in (0, 1] (variance) or None
    block_trs : int, optional
        Permutation block length in TRs; must fit in the shortest run.
    run_names : names for messages

    Returns
    -------
    list of str
        Warnings to show (constant brain targets, acausal delays, constant feature columns).

    Raises
    ------
    ConfigError
        ``pca`` larger than the features, delays or a permutation block longer than a run.
    DataError
        All features constant ("nothing to fit"), all brain targets constant, a run with no TRs.
    """
    spaces = X_runs if isinstance(X_runs, dict) else {"features": X_runs}
    Y = [np.asarray(y) for y in Y_runs]
    names = list(run_names) if run_names is not None else [f"run {i + 1}" for i in range(len(Y))]
    warnings_out: List[str] = []
    if not Y:
        raise DataError(expected_found("brain runs", "at least one run", "none"))
    n_trs = [int(y.shape[0]) for y in Y]
    shortest = min(n_trs)
    short_name = names[n_trs.index(shortest)]
    if shortest < 2:
        raise DataError(expected_found(f"brain run {short_name}", "at least 2 TRs", f"{shortest}"))
    delays = [int(d) for d in (delays or [])]
    if delays:
        longest = max(abs(d) for d in delays)
        if longest >= shortest:
            raise ConfigError(expected_found("--delays", f"delays shorter than the shortest run ({short_name}: "
                                             f"{shortest} TRs)", f"a delay of {longest} TRs: lower the delays "
                                             "(they are in TRs) or check the TR"))
        neg = [d for d in delays if d < 0]
        if neg:
            warnings_out.append(f"delays {neg} are negative: the model may use the stimulus after the brain "
                                "response (acausal); use delays >= 0 unless this is intended")
    if block_trs is not None:
        check_block(block_trs, n_trs, names)
    for space, runs in spaces.items():
        runs = [np.asarray(x) for x in runs]
        if len(runs) != len(Y):
            continue  # the fit's own checks report the count mismatch
        n_features = int(runs[0].shape[1]) if runs[0].ndim == 2 else 1
        n_train = sum(n_trs) - (max(n_trs) if len(n_trs) > 1 else 0)
        if pca is not None:
            if isinstance(pca, (int, np.integer)) and not isinstance(pca, bool):
                limit = min(n_features, max(n_train, 1))
                if int(pca) > limit:
                    raise ConfigError(expected_found(f"--pca for {space}", f"at most {limit} components "
                                                     f"({n_features} features, {n_train} training TRs)",
                                                     f"{int(pca)}: use a smaller number, or a variance "
                                                     "fraction such as 0.9"))
                if int(pca) < 1:
                    raise ConfigError(expected_found(f"--pca for {space}", "at least 1 component", int(pca)))
            else:
                if not 0 < float(pca) <= 1:
                    raise ConfigError(expected_found(f"--pca for {space}", "a component count (int) or a variance "
                                                     "fraction in (0, 1]", pca))
        varying = np.zeros(n_features, bool)
        for x in runs:
            x2 = x.reshape(x.shape[0], -1)
            finite = np.where(np.isfinite(x2), x2, 0)
            if finite.shape[0] > 1:
                varying |= np.ptp(finite, axis=0) > 0
        if not varying.any():
            raise DataError(expected_found(f"features {space}", "at least one feature that varies over time",
                                           f"all {n_features} features constant in every run: nothing to fit "
                                           "(was the stimulus blank or silent, or the layer dead?)"))
        if not varying.all():
            warnings_out.append(f"features {space}: {int((~varying).sum())} of {n_features} columns are constant in "
                                "every run (they carry nothing)")
    n_targets = int(Y[0].shape[1]) if Y[0].ndim == 2 else 1
    flat = np.ones(n_targets, bool)
    for y in Y:
        y2 = y.reshape(y.shape[0], -1)
        finite = np.where(np.isfinite(y2), y2, 0)
        flat &= np.ptp(finite, axis=0) == 0
    n_flat = int(flat.sum())
    if n_flat == n_targets:
        raise DataError(expected_found("brain runs", "targets whose time course varies",
                                       f"all {n_targets} targets constant in every run: nothing to predict "
                                       "(an empty or failed run?)"))
    if n_flat:
        idx = np.flatnonzero(flat)
        warnings_out.append(f"{n_flat} of {n_targets} brain targets are constant in every run (targets "
                            f"{idx[:5].tolist()}{' ...' if n_flat > 5 else ''}): there is nothing to predict there, "
                            "so their r means nothing (outside the brain mask? exclude them)")
    return warnings_out
