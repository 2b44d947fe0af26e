"""fMRI runs as researchers have them, loaded into one shape: ``BrainRun.data`` (n_trs, n_targets).

Formats
-------
- 4-D NIfTI with a brain mask (nilearn ``NiftiMasker``, no caching) -> voxels
- GIFTI functional files, one per hemisphere (fsaverage family; left then right) -> vertices
- CIFTI-2 ``.dtseries.nii`` (grayordinates; the brain-model axis is kept in ``meta``) and
  ``.ptseries.nii`` (parcels)
- parcel or vertex tables: TSV, CSV, whitespace TXT, NPY, NPZ, HDF5

Preprocessing (each optional, each recorded in ``meta["preprocessing"]``): confound regression
(fMRIPrep confounds TSV), polynomial detrending, high-pass (cosine basis or Butterworth),
standardisation (z-score). Confounds, polynomials and cosines are regressed out together in one
least-squares fit, as ``nilearn.signal.clean`` does, so one step cannot re-introduce what
another removed.

NaN values are an error by default, reported with their count and where they are;
``nan_policy="interpolate"`` (linear in time) or ``"zero"`` repairs them when asked, and the
repair is recorded.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import ConfigError, DataError, MismatchError, expected_found

NAN_POLICIES = ("error", "interpolate", "zero")
HIGH_PASS_METHODS = ("cosine", "butterworth")
PREPROCESSING_KEYS = ("detrend", "high_pass_hz", "high_pass_method", "standardize", "confounds",
                      "nan_policy", "butterworth_order")
TABLE_SUFFIXES = (".tsv", ".csv", ".txt", ".npy", ".npz", ".h5", ".hdf5")
CONFOUND_PRESETS = {
    "motion": ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"],
    "motion_derivatives": [f"{c}_derivative1" for c in ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")],
    "compcor": [f"a_comp_cor_{k:02d}" for k in range(5)],
    "wm_csf": ["white_matter", "csf"],
    "global": ["global_signal"],
}
N_VERTICES_BY_SPACE = {"fsaverage5": 20484, "fsaverage6": 81924, "fsaverage": 327684, "fsLR32k": 64984,
                       "fsLR91k": 91282}


@dataclass
class BrainRun:
    """One fMRI run in AlignScope's shape.

    Attributes
    ----------
    data : ndarray (n_trs, n_targets) float32
        Targets are vertices, voxels, grayordinates or parcels (see ``space``).
    tr_s : float
        Repetition time in seconds.
    space : str
        ``fsaverage5``, ``fsLR32k``, ``fsLR91k`` (grayordinates), ``parcels``, ``volume``...
    name, subject, episode : str
    meta : dict
        Source file, format, preprocessing applied (a list of steps), NaN repairs, brain models
        (CIFTI), mask and affine shape (NIfTI), atlas (parcels), warnings.
    """

    data: np.ndarray              # n_trs, n_targets float32
    tr_s: float
    space: str
    name: str
    subject: str = "sub-01"
    episode: Optional[str] = None
    meta: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.data = np.asarray(self.data, dtype=np.float32)
        if self.data.ndim != 2:
            raise DataError(expected_found(f"run {self.name}", "data of shape (n_trs, n_targets)",
                                           f"shape {self.data.shape}"))
        if not (np.isfinite(self.tr_s) and self.tr_s > 0):
            raise DataError(expected_found(f"run {self.name} TR", "a positive number of seconds", self.tr_s))
        self.meta.setdefault("preprocessing", [])

    @property
    def n_trs(self) -> int:
        return int(self.data.shape[0])

    @property
    def n_targets(self) -> int:
        return int(self.data.shape[1])

    @property
    def duration_s(self) -> float:
        return self.n_trs * float(self.tr_s)


# ==== checks ========================================================================
def _where_list(idx: np.ndarray, limit: int = 5) -> str:
    idx = np.asarray(idx)
    shown = ", ".join(str(int(i)) for i in idx[:limit])
    return shown + (f", ... ({idx.size} in all)" if idx.size > limit else "")


def describe_nonfinite(data: np.ndarray) -> Optional[str]:
    """None when all values are finite, else how many are NaN/inf and where (TRs, targets)."""
    bad = ~np.isfinite(data)
    n_bad = int(bad.sum())
    if n_bad == 0:
        return None
    trs = np.flatnonzero(bad.any(axis=1))
    targets = np.flatnonzero(bad.any(axis=0))
    whole = np.flatnonzero(bad.all(axis=0))
    text = (f"{n_bad} NaN/inf values of {data.size} in TRs [{_where_list(trs)}] "
            f"and targets [{_where_list(targets)}]")
    if whole.size:
        text += f"; {whole.size} targets are NaN throughout"
    return text


def repair_nonfinite(data: np.ndarray, policy: str, what: str = "run") -> Tuple[np.ndarray, Optional[dict]]:
    """Apply a NaN policy; returns (data, record or None)."""
    if policy not in NAN_POLICIES:
        raise ConfigError(f"nan_policy: expected one of {NAN_POLICIES}, found {policy!r}")
    problem = describe_nonfinite(data)
    if problem is None:
        return data, None
    if policy == "error":
        raise DataError(f"{what}: expected finite values, found {problem}. "
                        "Set nan_policy='interpolate' (linear in time) or 'zero' to repair them.")
    data = np.array(data, dtype=np.float32, copy=True)
    bad = ~np.isfinite(data)
    n_bad = int(bad.sum())
    if policy == "zero":
        data[bad] = 0.0
    else:
        t = np.arange(data.shape[0])
        for j in np.flatnonzero(bad.any(axis=0)):
            ok = ~bad[:, j]
            data[:, j] = np.interp(t, t[ok], data[ok, j]) if ok.any() else 0.0
    return data, {"step": "nan_repair", "policy": policy, "n_values": n_bad, "where": problem}


def constant_targets(data: np.ndarray) -> np.ndarray:
    """Indices of targets whose time course never changes (all zeros, say)."""
    if data.shape[0] < 2:
        return np.array([], dtype=np.int64)
    finite = np.where(np.isfinite(data), data, 0.0)
    return np.flatnonzero(np.ptp(finite, axis=0) == 0)


# ==== preprocessing =================================================================
def cosine_drift(n_trs: int, tr_s: float, high_pass_hz: float) -> np.ndarray:
    """DCT-II high-pass basis (SPM / nilearn convention), without the constant: (n_trs, order)."""
    order = int(np.floor(2 * n_trs * high_pass_hz * tr_s))
    t = np.arange(n_trs)
    basis = np.sqrt(2.0 / n_trs) * np.cos(np.pi / n_trs * (t[:, None] + 0.5) * np.arange(1, order + 1)[None, :])
    return basis.astype(np.float64)


def polynomial_drift(n_trs: int, order: int) -> np.ndarray:
    """Legendre polynomials of degree 1..order on [-1, 1], (n_trs, order)."""
    x = np.linspace(-1.0, 1.0, n_trs)
    return np.stack([np.polynomial.legendre.Legendre.basis(k)(x) for k in range(1, order + 1)], axis=1) \
        if order > 0 else np.zeros((n_trs, 0))


def preprocess(data: np.ndarray, tr_s: float, detrend: Optional[int] = None,
               high_pass_hz: Optional[float] = None, high_pass_method: str = "cosine",
               standardize: bool = False, confounds: Optional[np.ndarray] = None,
               confound_names: Optional[Sequence[str]] = None, butterworth_order: int = 5
               ) -> Tuple[np.ndarray, List[dict]]:
    """Clean one run's time courses.

    Parameters
    ----------
    data : ndarray (n_trs, n_targets)
    tr_s : float
    detrend : int or None
        Polynomial order removed (1 linear, 3 cubic); the mean is kept unless ``standardize``.
    high_pass_hz : float or None
        Cut-off frequency in Hz.
    high_pass_method : {"cosine", "butterworth"}
    standardize : bool
        z-score each target over time (constant targets become 0).
    confounds : ndarray (n_trs, n_confounds) or None
        Regressed out together with the polynomial and cosine terms.

    Returns
    -------
    data : ndarray (n_trs, n_targets) float32
    steps : list of dict
        What was applied, in order, with its parameters.
    """
    data = np.asarray(data, dtype=np.float64)
    n_trs = data.shape[0]
    steps: List[dict] = []
    if high_pass_method not in HIGH_PASS_METHODS:
        raise ConfigError(f"high_pass_method: expected one of {HIGH_PASS_METHODS}, found {high_pass_method!r}")
    regressors = []
    if confounds is not None:
        confounds = np.asarray(confounds, dtype=np.float64)
        if confounds.ndim == 1:
            confounds = confounds[:, None]
        if confounds.shape[0] != n_trs:
            raise MismatchError(expected_found("confounds", f"{n_trs} rows (one per TR)", f"{confounds.shape[0]} rows"))
        if not np.isfinite(confounds).all():
            raise DataError(expected_found("confounds", "finite values", describe_nonfinite(confounds)))
        regressors.append(confounds - confounds.mean(axis=0))
        steps.append({"step": "confound_regression", "n_confounds": int(confounds.shape[1]),
                      "columns": list(confound_names) if confound_names is not None else None})
    if detrend:
        order = int(detrend)
        if order < 0 or order >= n_trs:
            raise ConfigError(f"detrend: expected a polynomial order in 0..{n_trs - 1}, found {detrend}")
        regressors.append(polynomial_drift(n_trs, order))
        steps.append({"step": "detrend", "order": order})
    if high_pass_hz is not None:
        nyquist = 0.5 / tr_s
        if not 0 < high_pass_hz < nyquist:
            raise ConfigError(f"high_pass_hz: expected a value in (0, {nyquist:.4g}) Hz for TR {tr_s} s, "
                              f"found {high_pass_hz}")
        if high_pass_method == "cosine":
            basis = cosine_drift(n_trs, tr_s, high_pass_hz)
            regressors.append(basis)
            steps.append({"step": "high_pass", "method": "cosine", "cutoff_hz": float(high_pass_hz),
                          "n_regressors": int(basis.shape[1])})
    if regressors:
        X = np.column_stack(regressors)                       # n_trs, n_regressors
        mean = data.mean(axis=0, keepdims=True)
        centred = data - mean
        beta, *_ = np.linalg.lstsq(X - X.mean(axis=0), centred, rcond=None)
        data = centred - (X - X.mean(axis=0)) @ beta + mean
    if high_pass_hz is not None and high_pass_method == "butterworth":
        from scipy import signal

        sos = signal.butter(butterworth_order, high_pass_hz, btype="highpass", fs=1.0 / tr_s, output="sos")
        mean = data.mean(axis=0, keepdims=True)
        data = signal.sosfiltfilt(sos, data - mean, axis=0) + mean
        steps.append({"step": "high_pass", "method": "butterworth", "cutoff_hz": float(high_pass_hz),
                      "order": int(butterworth_order)})
    if standardize:
        mean = data.mean(axis=0, keepdims=True)
        std = data.std(axis=0, keepdims=True)
        flat = std[0] == 0
        data = (data - mean) / np.where(std == 0, 1.0, std)
        steps.append({"step": "standardize", "method": "zscore", "n_constant_targets": int(flat.sum())})
    return data.astype(np.float32), steps


def apply_preprocessing(run: BrainRun, spec: Optional[Dict[str, Any]] = None,
                        confounds_path=None) -> BrainRun:
    """Preprocess a run in place from a spec (``Project.preprocessing``) and record what was done."""
    spec = dict(spec or {})
    unknown = sorted(set(spec) - set(PREPROCESSING_KEYS))
    if unknown:
        raise ConfigError(f"preprocessing options: expected keys among {PREPROCESSING_KEYS}, found {unknown}")
    data, rec = repair_nonfinite(run.data, spec.get("nan_policy", "error"), f"run {run.name}")
    if rec:
        run.meta["preprocessing"].append(rec)
    confounds = names = None
    if confounds_path is not None and spec.get("confounds"):
        confounds, names = read_confounds(confounds_path, spec["confounds"])
    elif spec.get("confounds") and confounds_path is None:
        raise ConfigError(f"preprocessing asks for confounds {spec['confounds']}, "
                          f"but run {run.name} has no confounds file")
    data, steps = preprocess(data, run.tr_s, detrend=spec.get("detrend"), high_pass_hz=spec.get("high_pass_hz"),
                             high_pass_method=spec.get("high_pass_method", "cosine"),
                             standardize=bool(spec.get("standardize", False)), confounds=confounds,
                             confound_names=names, butterworth_order=int(spec.get("butterworth_order", 5)))
    if confounds_path is not None and steps and steps[0]["step"] == "confound_regression":
        steps[0]["file"] = str(confounds_path)
    run.data = data
    run.meta["preprocessing"].extend(steps)
    return run


def read_confounds(path, columns: Union[str, Sequence[str]] = ("motion", "compcor")) -> Tuple[np.ndarray, List[str]]:
    """Select columns of an fMRIPrep ``*_desc-confounds_timeseries.tsv``.

    Parameters
    ----------
    columns : names, shell patterns (``a_comp_cor_0*``) or presets
        (``motion``, ``motion_derivatives``, ``compcor`` (first 5 aCompCor), ``wm_csf``, ``global``).

    Returns
    -------
    values : ndarray (n_trs, n_columns) float64
        Leading NaN (derivative columns' first row) are set to the column's first finite value.
    names : list of str
    """
    import pandas as pd

    path = Path(path)
    try:
        table = pd.read_csv(path, sep="\t")
    except FileNotFoundError:
        raise DataError(expected_found("confounds file", "an existing TSV", f"nothing at {path}")) from None
    except Exception as exc:
        raise DataError(expected_found(f"confounds file {path.name}", "a tab-separated table with a header",
                                       f"unreadable content ({exc.__class__.__name__}: {exc})")) from None
    if isinstance(columns, str):
        columns = [columns]
    wanted: List[str] = []
    for c in columns:
        patterns = CONFOUND_PRESETS.get(c, [c])
        hits = [col for p in patterns for col in table.columns if fnmatch.fnmatchcase(col, p)]
        if not hits:
            raise DataError(expected_found(f"confounds file {path.name}", f"column(s) {patterns}",
                                           f"columns {list(table.columns)[:12]}{' ...' if table.shape[1] > 12 else ''}"))
        wanted.extend(h for h in hits if h not in wanted)
    values = table[wanted].to_numpy(dtype=np.float64)
    for j in range(values.shape[1]):
        col = values[:, j]
        finite = np.flatnonzero(np.isfinite(col))
        if finite.size and finite[0] > 0:
            col[:finite[0]] = col[finite[0]]
    if not np.isfinite(values).all():
        raise DataError(expected_found(f"confounds file {path.name}", "finite values in the selected columns",
                                       describe_nonfinite(values)))
    return values, wanted


# ==== loaders =======================================================================
def _unreadable(path: Path, expected: str, exc: Exception) -> DataError:
    return DataError(expected_found(f"{path.name}", expected,
                                    f"unreadable content ({exc.__class__.__name__}: {str(exc)[:200]})"))


def _exists(path) -> Path:
    path = Path(path)
    if not path.exists():
        raise DataError(expected_found("fMRI file", "an existing file", f"nothing at {path}"))
    return path


def tr_from_sidecar(path) -> Optional[float]:
    """``RepetitionTime`` from the BIDS JSON sidecar beside a data file, if any."""
    path = Path(path)
    stem = re.sub(r"(\.dtseries|\.ptseries|\.func)?\.(nii(\.gz)?|gii|h5)$", "", path.name)
    for cand in (path.with_name(stem + ".json"),):
        if cand.exists():
            try:
                tr = json.loads(cand.read_text()).get("RepetitionTime")
            except (OSError, json.JSONDecodeError):
                return None
            return float(tr) if tr else None
    return None


def load_nifti_run(path, mask=None, tr_s: Optional[float] = None, name: Optional[str] = None,
                   subject: str = "sub-01", episode: Optional[str] = None) -> BrainRun:
    """A 4-D NIfTI run masked to voxels with nilearn's ``NiftiMasker`` (caching off).

    Parameters
    ----------
    mask : path or image, optional
        Brain mask; without one, nilearn computes an EPI mask from the run.
    tr_s : float, optional
        Overrides the header's ``pixdim[4]`` and the JSON sidecar.
    """
    import nibabel as nib

    path = _exists(path)
    try:
        img = nib.load(str(path))
        shape = img.shape
        # read now (once) so a truncated file fails here, with our message
        data = np.asarray(img.dataobj, dtype=np.float32) if len(shape) == 4 else None
    except Exception as exc:
        raise _unreadable(path, "a 4-D NIfTI image", exc) from None
    if len(shape) != 4:
        raise DataError(_not_a_run_message(path, shape))
    header_tr = float(img.header.get_zooms()[3]) if len(img.header.get_zooms()) > 3 else 0.0
    units = img.header.get_xyzt_units()[1]
    if units == "msec":
        header_tr /= 1000.0
    tr = tr_s or tr_from_sidecar(path) or (header_tr if header_tr > 0 else None)
    if tr is None:
        raise DataError(expected_found(f"{path.name} TR", "pixdim[4] > 0, a JSON RepetitionTime or tr_s",
                                       f"pixdim[4] = {header_tr} and no sidecar"))
    nan_problem = describe_nonfinite(data.reshape(-1, shape[3]).T)
    mask_img = None
    if mask is not None:
        try:
            mask_img = nib.load(str(mask)) if isinstance(mask, (str, Path)) else mask
        except Exception as exc:
            raise _unreadable(Path(mask), "a 3-D NIfTI brain mask", exc) from None
        if mask_img.shape[:3] != shape[:3]:
            raise MismatchError(expected_found(f"mask for {path.name}", f"shape {shape[:3]} (the run's grid)",
                                               f"shape {mask_img.shape}"))
    direct = None
    if mask_img is not None:
        # a binary mask on the run's own grid is plain indexing (what NiftiMasker does then,
        # without importing nilearn: seconds on a loaded machine)
        mvals = np.asarray(mask_img.dataobj)
        mvals = mvals.reshape(mvals.shape[:3]) if mvals.ndim == 4 and mvals.shape[3] == 1 else mvals
        if mvals.shape == tuple(shape[:3]) and np.allclose(np.asarray(mask_img.affine), np.asarray(img.affine)) \
                and np.isin(np.unique(mvals), (0, 1)).all() and mvals.any():
            direct = mvals.astype(bool)
    if direct is not None:
        mask_bool = direct
        voxels = np.nan_to_num(data[mask_bool]).T.astype(np.float32)          # n_trs, n_voxels
    else:
        from nilearn.maskers import NiftiMasker

        masker = NiftiMasker(mask_img=mask_img, memory=None, memory_level=0, standardize=None, detrend=False)
        try:
            voxels = masker.fit_transform(nib.Nifti1Image(np.nan_to_num(data), img.affine, img.header))
        except Exception as exc:
            raise DataError(expected_found(f"{path.name}", "a run nilearn can mask",
                                           f"{exc.__class__.__name__}: {str(exc)[:200]}")) from None
        mask_bool = np.asarray(masker.mask_img_.dataobj).astype(bool)
    if nan_problem is not None:
        # put the NaN back inside the mask, so the NaN policy sees them where they are
        vox_nan = ~np.isfinite(data[mask_bool])                # n_voxels, n_trs
        voxels = np.where(vox_nan.T, np.nan, voxels)
    meta = {"source": str(path), "format": "nifti", "shape": list(shape), "n_voxels": int(mask_bool.sum()),
            "mask": str(mask) if isinstance(mask, (str, Path)) else ("epi" if mask is None else "image"),
            "affine": np.asarray(img.affine).tolist(), "tr_source": "argument" if tr_s else
            ("sidecar" if tr_from_sidecar(path) else "header")}
    return BrainRun(voxels, float(tr), "volume", name or path.name.split(".")[0], subject, episode, meta)


def _gifti_timeseries(path: Path) -> np.ndarray:
    import nibabel as nib

    try:
        img = nib.load(str(path))
        arrays = [np.asarray(d.data) for d in img.darrays]
    except Exception as exc:
        raise _unreadable(path, "a GIFTI functional file (.func.gii)", exc) from None
    if not arrays:
        raise DataError(expected_found(path.name, "one data array per TR", "no data arrays"))
    if len(arrays) == 1 and arrays[0].ndim == 2:
        data = arrays[0].T if arrays[0].shape[0] > arrays[0].shape[1] else arrays[0]
        return np.asarray(data, dtype=np.float32)            # n_trs, n_vertices
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1 or arrays[0].ndim != 1:
        raise DataError(expected_found(path.name, "one 1-D array per TR, all the same length",
                                       f"array shapes {sorted(shapes)[:4]}"))
    return np.stack(arrays).astype(np.float32)                # n_trs, n_vertices


def right_hemisphere_path(left: Path) -> Optional[Path]:
    """The right-hemisphere partner of a left-hemisphere file (``hemi-L``, ``lh.``, ``.L.``)."""
    for a, b in (("hemi-L", "hemi-R"), ("lh.", "rh."), (".L.", ".R."), ("_lh", "_rh"), (".lh", ".rh")):
        if a in left.name:
            cand = left.with_name(left.name.replace(a, b, 1))
            return cand
    return None


def load_gifti_run(left, right=None, tr_s: Optional[float] = None, space: Optional[str] = None,
                   name: Optional[str] = None, subject: str = "sub-01", episode: Optional[str] = None) -> BrainRun:
    """Two GIFTI functional files (left, right) concatenated left first: (n_trs, n_lh + n_rh)."""
    left = _exists(left)
    right = Path(right) if right is not None else right_hemisphere_path(left)
    if right is None or not right.exists():
        raise DataError(expected_found(f"right hemisphere for {left.name}", "a partner file (hemi-L -> hemi-R)",
                                       f"nothing at {right}" if right else "no hemisphere entity in the name"))
    lh, rh = _gifti_timeseries(left), _gifti_timeseries(right)
    if lh.shape[0] != rh.shape[0]:
        raise MismatchError(expected_found(f"{left.name} / {right.name}", "the same number of TRs in both hemispheres",
                                           f"{lh.shape[0]} and {rh.shape[0]}"))
    if lh.shape[1] != rh.shape[1]:
        raise MismatchError(expected_found(f"{left.name} / {right.name}", "the same number of vertices per hemisphere",
                                           f"{lh.shape[1]} and {rh.shape[1]}"))
    data = np.concatenate([lh, rh], axis=1)
    n = data.shape[1]
    guessed = {v: k for k, v in N_VERTICES_BY_SPACE.items()}.get(n, "surface")
    space = space or guessed
    if space in N_VERTICES_BY_SPACE and N_VERTICES_BY_SPACE[space] != n:
        raise MismatchError(expected_found(f"{left.name} + {right.name}", f"{N_VERTICES_BY_SPACE[space]} vertices ({space})",
                                           f"{n} vertices"))
    tr = tr_s or tr_from_sidecar(left)
    if tr is None:
        raise DataError(expected_found(f"{left.name} TR", "a JSON sidecar with RepetitionTime or tr_s", "neither"))
    meta = {"source": str(left), "source_right": str(right), "format": "gifti",
            "n_vertices_per_hemisphere": [int(lh.shape[1]), int(rh.shape[1])]}
    return BrainRun(data, float(tr), space, name or left.name.split(".")[0], subject, episode, meta)


def load_cifti_run(path, tr_s: Optional[float] = None, name: Optional[str] = None,
                   subject: str = "sub-01", episode: Optional[str] = None) -> BrainRun:
    """CIFTI-2 dense (``.dtseries.nii``, grayordinates) or parcellated (``.ptseries.nii``) series."""
    import nibabel as nib

    path = _exists(path)
    try:
        img = nib.load(str(path))
        series = img.header.get_axis(0)
        targets = img.header.get_axis(1)
        data = np.asarray(img.get_fdata(dtype=np.float32))
    except Exception as exc:
        raise _unreadable(path, "a CIFTI-2 .dtseries.nii or .ptseries.nii", exc) from None
    if not isinstance(series, nib.cifti2.SeriesAxis):
        raise DataError(expected_found(path.name, "a time-series axis first (dtseries/ptseries)",
                                       f"{type(series).__name__}"))
    meta: Dict[str, Any] = {"source": str(path), "format": "cifti"}
    if isinstance(targets, nib.cifti2.BrainModelAxis):
        models = []
        for struct, slc, bm in targets.iter_structures():
            start, stop, _ = slc.indices(len(targets))
            entry = {"structure": struct, "start": int(start), "stop": int(stop),
                     "surface": bool(bm.surface_mask.all())}
            if entry["surface"]:
                entry["n_vertices"] = int(bm.nvertices[struct])
                entry["vertices"] = bm.vertex.astype(int).tolist()
            models.append(entry)
        meta["brain_models"] = models
        n = data.shape[1]
        space = "fsLR91k" if n == 91282 else "grayordinates"
    elif isinstance(targets, nib.cifti2.ParcelsAxis):
        meta["parcel_names"] = [str(x) for x in targets.name]
        space = "parcels"
    else:
        raise DataError(expected_found(path.name, "a brain-model or parcels axis second", type(targets).__name__))
    step = float(series.step) * (0.001 if series.unit == "MSEC" else 1.0)
    tr = tr_s or (step if step > 0 else None) or tr_from_sidecar(path)
    if tr is None:
        raise DataError(expected_found(f"{path.name} TR", "a series step > 0 or tr_s", f"step {series.step}"))
    return BrainRun(data, float(tr), space, name or path.name.split(".")[0], subject, episode, meta)


def cifti_cortex_to_mesh(run: BrainRun, fill: float = np.nan) -> np.ndarray:
    """Expand a grayordinate run's two cortex models to full fsLR meshes: (n_trs, n_lh + n_rh)."""
    models = {m["structure"]: m for m in run.meta.get("brain_models", [])}
    parts = []
    for struct in ("CIFTI_STRUCTURE_CORTEX_LEFT", "CIFTI_STRUCTURE_CORTEX_RIGHT"):
        m = models.get(struct)
        if m is None:
            raise DataError(expected_found(f"run {run.name}", f"a {struct} brain model", "none"))
        full = np.full((run.n_trs, m["n_vertices"]), fill, dtype=np.float32)
        full[:, m["vertices"]] = run.data[:, m["start"]:m["stop"]]
        parts.append(full)
    return np.concatenate(parts, axis=1)


def _read_text_table(path: Path) -> Tuple[np.ndarray, Optional[List[str]]]:
    import pandas as pd

    low = path.name.lower()
    sep = "\t" if low.endswith(".tsv") else "," if low.endswith(".csv") else r"\s+"
    try:
        with open(path, "r", encoding="utf-8") as fh:
            first = fh.readline()
    except UnicodeDecodeError as exc:
        raise _unreadable(path, "a text table of numbers", exc) from None
    tokens = re.split(sep if sep != r"\s+" else r"\s+", first.strip())
    header = None
    try:
        [float(t) for t in tokens if t]
    except ValueError:
        header = 0
    try:
        table = pd.read_csv(path, sep=sep, header=header, engine="python" if sep == r"\s+" else "c")
    except Exception as exc:
        raise _unreadable(path, "a table of numbers, one row per TR", exc) from None
    try:
        values = table.apply(pd.to_numeric, errors="raise").to_numpy(dtype=np.float32)
    except (ValueError, TypeError):
        bad = [c for c in table.columns if pd.to_numeric(table[c], errors="coerce").isna().sum()
               > table[c].isna().sum()]
        raise DataError(expected_found(path.name, "numbers in every column",
                                       f"text in column(s) {[str(b) for b in bad[:5]]}")) from None
    names = [str(c) for c in table.columns] if header == 0 else None
    return values, names


def _read_array_file(path: Path, dataset: Optional[str]) -> Tuple[np.ndarray, Dict[str, Any]]:
    """A (n_trs, n_targets) float32 table from NPY/NPZ/HDF5 (the safe reader) or a text table."""
    from .arrays import ARRAY_SUFFIXES, read_array

    low = path.name.lower()
    extra: Dict[str, Any] = {}
    if low.endswith(ARRAY_SUFFIXES):
        arr, key = read_array(path, dataset, what="fMRI file")
        if key:
            extra["dataset"] = key
    else:
        arr, names = _read_text_table(path)
        if names:
            extra["column_names"] = names
        if arr.size == 0:
            raise DataError(expected_found(path.name, "a table with at least one row of numbers",
                                           f"an empty table (shape {arr.shape})"))
    if not np.issubdtype(np.asarray(arr).dtype, np.number):
        raise DataError(expected_found(path.name, "a numeric array", f"dtype {np.asarray(arr).dtype}"))
    arr = np.asarray(arr, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise DataError(expected_found(path.name, "a 2-D array (n_trs, n_targets)", f"shape {arr.shape}"))
    return arr, extra


def load_table_run(path, tr_s: float, space: str = "parcels", dataset: Optional[str] = None,
                   atlas: Optional[str] = None, name: Optional[str] = None, subject: str = "sub-01",
                   episode: Optional[str] = None, transpose: bool = False) -> BrainRun:
    """Parcel (or vertex) time courses from TSV/CSV/TXT/NPY/NPZ/HDF5: rows are TRs.

    Parameters
    ----------
    dataset : str, optional
        Array inside an NPZ/HDF5 file (required when it holds several).
    atlas : str, optional
        A bundled atlas name: the number of columns must equal its parcel count.
    transpose : bool
        The file stores (n_targets, n_trs).
    """
    path = _exists(path)
    data, extra = _read_array_file(path, dataset)
    if transpose:
        data = data.T
    n = data.shape[1]
    if space in N_VERTICES_BY_SPACE and N_VERTICES_BY_SPACE[space] != n:
        hint = " (rows and columns swapped? the file may be (n_targets, n_trs))" \
            if data.shape[0] == N_VERTICES_BY_SPACE[space] else ""
        raise MismatchError(expected_found(path.name, f"{N_VERTICES_BY_SPACE[space]} columns ({space} vertices)",
                                           f"shape {data.shape}{hint}"))
    if atlas:
        try:
            from .atlases import load_atlas

            n_parcels = load_atlas(atlas).n_parcels
        except Exception:   # not a bundled atlas (e.g. Schaefer 1000): nothing to check against
            n_parcels = None
        if n_parcels is not None and n_parcels != n:
            raise MismatchError(expected_found(path.name, f"{n_parcels} columns (parcels of {atlas})",
                                               f"{n} columns"))
        extra["atlas"] = atlas
    meta = {"source": str(path), "format": path.suffix.lstrip(".").lower(), **extra}
    return BrainRun(data, float(tr_s), space, name or path.name.split(".")[0], subject, episode, meta)


def file_kind(path) -> str:
    """``nifti``, ``cifti``, ``gifti`` or ``table`` from a file name."""
    low = Path(path).name.lower()
    if low.endswith((".dtseries.nii", ".ptseries.nii", ".dscalar.nii", ".dlabel.nii", ".pscalar.nii")):
        return "cifti"
    if low.endswith((".nii", ".nii.gz")):
        return "nifti"
    if low.endswith(".gii") or low.endswith(".gii.gz"):
        return "gifti"
    if low.endswith(TABLE_SUFFIXES):
        return "table"
    raise ConfigError(f"fMRI file {Path(path).name}: expected .nii[.gz], .dtseries.nii, .ptseries.nii, .func.gii, "
                      f"{', '.join(TABLE_SUFFIXES)}; found {Path(path).suffix or 'no extension'}")


def load_run(ref, project=None, preprocessing: Optional[Dict[str, Any]] = None) -> BrainRun:
    """Load the run a :class:`~engine.project.RunRef` points at, preprocessed as the project says.

    Parameters
    ----------
    ref : RunRef
    project : Project, optional
        Resolves relative paths; its ``preprocessing`` dict is applied unless ``preprocessing``
        is given (``{}`` for none).
    """
    path = project.path(ref.path) if project is not None else Path(ref.path)
    kind = file_kind(path)
    common = dict(name=ref.name, subject=ref.subject, episode=ref.episode)
    if kind == "nifti":
        mask = getattr(ref, "mask", None)
        run = load_nifti_run(path, mask=project.path(mask) if (mask and project) else mask, tr_s=ref.tr_s, **common)
    elif kind == "cifti":
        run = load_cifti_run(path, tr_s=ref.tr_s, **common)
    elif kind == "gifti":
        run = load_gifti_run(path, tr_s=ref.tr_s, space=ref.space if ref.space in N_VERTICES_BY_SPACE else None,
                             **common)
    else:
        run = load_table_run(path, ref.tr_s, space=ref.space, dataset=ref.dataset, atlas=ref.atlas, **common)
    run.meta.update({"onset_s": ref.onset_s, "dropped_volumes": ref.dropped_volumes})
    spec = preprocessing if preprocessing is not None else (project.preprocessing if project is not None else {})
    confounds = getattr(ref, "confounds", None)
    confounds_path = (project.path(confounds) if project is not None else Path(confounds)) if confounds else None
    apply_preprocessing(run, spec, confounds_path)   # also checks NaN (nan_policy, default "error")
    return run


def run_shape(ref, project=None) -> Tuple[int, int]:
    """(n_trs, n_targets) of a run without reading its data (headers only where the format allows)."""
    import nibabel as nib

    from .arrays import describe_arrays

    path = project.path(ref.path) if project is not None else Path(ref.path)
    path = _exists(path)
    kind = file_kind(path)
    try:
        if kind == "nifti":
            img = nib.load(str(path))
            shape = img.shape
            if len(shape) != 4:
                raise DataError(_not_a_run_message(path, shape))
            return int(shape[3]), int(np.prod(shape[:3]))
        if kind == "cifti":
            shape = nib.load(str(path)).shape
            return int(shape[0]), int(shape[1])
        low = path.name.lower()
        if low.endswith((".npy", ".h5", ".hdf5")):
            infos = describe_arrays(path, "fMRI file")
            if len(infos) == 1 or ref.dataset:
                info = infos[0] if not ref.dataset else next((i for i in infos if i.name == str(ref.dataset).strip("/")),
                                                             None)
                if info is not None and 1 <= len(info.shape) <= 2:
                    return int(info.shape[0]), int(info.shape[1] if len(info.shape) > 1 else 1)
    except DataError:
        raise
    except Exception as exc:
        raise _unreadable(path, "an fMRI run", exc) from None
    return load_run(ref, project, preprocessing={"nan_policy": "zero"}).data.shape


# ==== one entry point for every brain file =========================================
_SPACE_ENTITY = re.compile(r"(?:^|[_.])space-([A-Za-z0-9]+)")
_DEN_ENTITY = re.compile(r"(?:^|[_.])den-([A-Za-z0-9]+)")


def declared_space(path) -> Optional[str]:
    """The surface space a file name declares (BIDS ``space-``/``den-`` entities), if any.

    ``space-fsaverage5`` -> ``fsaverage5``; ``space-fsLR_den-32k`` -> ``fsLR32k``; ``space-fsLR_den-91k``
    -> ``fsLR91k``; anything else (or none) -> None.
    """
    name = Path(path).name
    m = _SPACE_ENTITY.search(name)
    if not m:
        return None
    space = m.group(1)
    if space.lower() == "fslr":
        den = _DEN_ENTITY.search(name)
        space = f"fsLR{den.group(1)}" if den else "fsLR32k"
    for known in N_VERTICES_BY_SPACE:
        if known.lower() == space.lower():
            return known
    return None


def _not_a_run_message(path: Path, shape) -> str:
    if len(shape) == 4 and shape[3] == 1:
        return expected_found(path.name, "a 4-D NIfTI run (x, y, z, time) of at least 2 volumes",
                              f"a single volume of shape {tuple(shape)}")
    return expected_found(path.name, "a 4-D NIfTI run (x, y, z, time)",
                          f"a {len(shape)}-D image of shape {tuple(shape)}" +
                          (": one volume (a mask, map or atlas), not a run; give it as the run's mask, "
                           "or give the 4-D run" if len(shape) == 3 else ""))


def _check_nifti_header(path: Path, img, budget: Optional[int] = None) -> None:
    """Refuse a NIfTI whose declared size does not fit in the file or in memory, before reading it."""
    from .arrays import format_bytes, memory_budget_bytes

    shape = tuple(int(s) for s in img.shape)
    n_values = int(np.prod([int(s) for s in shape], dtype=object))
    if n_values == 0:
        raise DataError(expected_found(path.name, "a non-empty image", f"shape {shape}"))
    try:
        itemsize = int(np.dtype(img.get_data_dtype()).itemsize)
    except Exception:  # pragma: no cover
        itemsize = 4
    if not path.name.lower().endswith(".gz"):
        offset = int(getattr(img.dataobj, "offset", 0) or 0)
        stored = path.stat().st_size - offset
        if n_values * itemsize > stored:
            raise DataError(expected_found(path.name, f"{format_bytes(n_values * itemsize)} of voxel data for the "
                                           f"header's shape {shape}", f"only {format_bytes(max(stored, 0))} in the "
                                           "file: it was cut short or its header is corrupt (copy it again)"))
    budget = memory_budget_bytes() if budget is None else budget
    if n_values * 4 > budget:
        raise DataError(expected_found(path.name, f"an image that fits in memory (at most {format_bytes(budget)} "
                                       "available now)", f"shape {shape}, {format_bytes(n_values * 4)} as float32"))


def left_hemisphere_path(right: Path) -> Optional[Path]:
    """The left-hemisphere partner of a right-hemisphere file (``hemi-R``, ``rh.``, ``.R.``)."""
    for a, b in (("hemi-R", "hemi-L"), ("rh.", "lh."), (".R.", ".L."), ("_rh", "_lh"), (".rh", ".lh")):
        if a in right.name:
            return right.with_name(right.name.replace(a, b, 1))
    return None


def read_brain_file(path, dataset: Optional[str] = None, mask=None, tr_s: Optional[float] = None,
                    space: Optional[str] = None, name: Optional[str] = None, subject: str = "sub-01",
                    episode: Optional[str] = None) -> BrainRun:
    """Read any brain file AlignScope supports into a :class:`BrainRun`, with every check applied.

    The one reader used by ``info``, ``encode``, ``partition``, ``compare`` and the window: a
    file ``info`` calls usable reads here, and one this refuses, ``info`` reports as a problem.

    Parameters
    ----------
    path : str or Path
        - 4-D NIfTI (``.nii``/``.nii.gz``) -> voxels (a 3-D image is refused: it is a mask or map);
        - GIFTI functional file of either hemisphere (``hemi-L``/``hemi-R``, ``lh.``/``rh.``...):
          its partner is found and the pair read left first; the vertex count must match the
          declared space (``space`` or the file name's ``space-``/``den-`` entities);
        - CIFTI-2 ``.dtseries.nii`` / ``.ptseries.nii``;
        - tables: ``.npy``, ``.npz``, ``.h5``/``.hdf5`` (safe reader: no pickles, no empty arrays,
          no absurd headers, no lazily allocated datasets), ``.tsv``/``.csv``/``.txt``.
    dataset : str, optional
        Array inside an ``.npz``/HDF5 file (required when it holds several).
    mask : path, optional
        Brain mask of a NIfTI run (default: nilearn's EPI mask).
    tr_s : float, optional
        Repetition time; default from the file (NIfTI header, CIFTI series step, JSON sidecar).
        Tables store none: without ``tr_s`` the run gets ``tr_s=1.0`` and ``meta["tr_known"] = False``.
    space : str, optional
        Declared space (``fsaverage5``, ``fsLR32k``, ``parcels``...), checked against the data.

    Returns
    -------
    BrainRun
        ``data`` (n_trs, n_targets) float32, NaN left in place (``describe_nonfinite`` tells where;
        ``apply_preprocessing`` applies the NaN policy); ``meta["constant_targets"]`` counts targets
        that never change.

    Raises
    ------
    DataError, MismatchError, ConfigError
        With a message naming what was expected and what was found.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(expected_found("brain file", "an existing file", f"nothing at {path}"))
    if path.is_dir():
        raise DataError(expected_found(f"brain file {path}", "a file (one run)", "a folder"))
    if not path.is_file():
        raise DataError(expected_found(f"brain file {path}", "a regular file", "a FIFO, socket or device"))
    if tr_s is not None and not (np.isfinite(float(tr_s)) and float(tr_s) > 0):
        raise ConfigError(expected_found("TR", "a positive number of seconds", tr_s))
    kind = file_kind(path)
    common = dict(name=name, subject=subject, episode=episode)
    space = space or declared_space(path)
    if kind == "nifti":
        import nibabel as nib

        try:
            img = nib.load(str(path))
            shape = img.shape
        except Exception as exc:
            raise _unreadable(path, "a 4-D NIfTI image", exc) from None
        if len(shape) != 4 or shape[3] < 2:
            raise DataError(_not_a_run_message(path, shape))
        _check_nifti_header(path, img)
        if mask is not None:
            mask_path = Path(mask) if isinstance(mask, (str, Path)) else None
            if mask_path is not None:
                if not mask_path.exists():
                    raise DataError(expected_found(f"mask for {path.name}", "an existing 3-D NIfTI",
                                                   f"nothing at {mask_path}"))
                try:
                    mshape = nib.load(str(mask_path)).shape
                except Exception as exc:
                    raise _unreadable(mask_path, "a 3-D NIfTI brain mask", exc) from None
                if len(mshape) != 3 and not (len(mshape) == 4 and mshape[3] == 1):
                    raise DataError(expected_found(f"mask {mask_path.name}", "a 3-D image (x, y, z)",
                                                   f"a {len(mshape)}-D image of shape {tuple(mshape)}"))
        run = load_nifti_run(path, mask=mask, tr_s=tr_s, **common)
    elif kind == "cifti":
        import nibabel as nib

        try:
            img = nib.load(str(path))
        except Exception as exc:
            raise _unreadable(path, "a CIFTI-2 .dtseries.nii or .ptseries.nii", exc) from None
        _check_nifti_header(path, img)
        run = load_cifti_run(path, tr_s=tr_s, **common)
    elif kind == "gifti":
        low = path.name.lower()
        left = path
        partner = right_hemisphere_path(path)
        if partner is None:
            other = left_hemisphere_path(path)
            if other is not None:
                left, partner = other, path
        if partner is None:
            raise DataError(expected_found(f"{path.name}", "one hemisphere of a pair named with hemi-L/hemi-R "
                                           "(or lh./rh., .L./.R.)", "no hemisphere in the name"))
        if not left.exists() or not partner.exists():
            missing = left if not left.exists() else partner
            raise DataError(expected_found(f"{path.name}", f"its other hemisphere at {missing.name}", "nothing there"))
        if low.endswith(".gz"):
            raise DataError(expected_found(path.name, "an uncompressed .func.gii", "a gzip-compressed GIFTI"))
        run = load_gifti_run(left, partner, tr_s=tr_s or tr_from_sidecar(left) or 1.0,
                             space=space if space in N_VERTICES_BY_SPACE else None, **common)
        if space in N_VERTICES_BY_SPACE:
            per_hemi = N_VERTICES_BY_SPACE[space] // 2
            counts = run.meta["n_vertices_per_hemisphere"]
            if counts != [per_hemi, per_hemi]:
                raise MismatchError(expected_found(f"{left.name} + {partner.name}", f"{per_hemi} vertices per "
                                                   f"hemisphere ({space})", f"{counts[0]} and {counts[1]}"))
        run.meta["tr_known"] = bool(tr_s or tr_from_sidecar(left))
    else:
        tr = tr_s or tr_from_sidecar(path)
        table_space = space or "parcels"
        run = load_table_run(path, tr or 1.0, space=table_space, dataset=dataset, **common)
        run.meta["tr_known"] = tr is not None
    if run.n_trs < 2:
        raise DataError(expected_found(f"brain file {path.name}", "a run of at least 2 TRs",
                                       f"{run.n_trs} TR of {run.n_targets} targets (rows and columns swapped?)"))
    if space == "volume" and run.space != "volume":
        raise MismatchError(expected_found(path.name, "a volumetric run (space 'volume')", f"space {run.space!r}"))
    run.meta["constant_targets"] = int(constant_targets(run.data).size)
    return run


# ==== pairing =======================================================================
@dataclass(frozen=True)
class Pairing:
    """How a run lines up with its episode."""

    n_trs: int
    tr_s: float
    onset_s: float
    dropped_volumes: int
    run_duration_s: float
    stimulus_duration_s: float        # episode time the run should cover (after onset_s)
    difference_s: float               # run - stimulus

    @property
    def n_trs_expected(self) -> int:
        return int(round(self.stimulus_duration_s / self.tr_s))


def pair_run(run, episode_duration_s: float, tr_s: Optional[float] = None, onset_s: float = 0.0,
             dropped_volumes: int = 0, tolerance_s: Optional[float] = None) -> Pairing:
    """Check that a run's duration matches its stimulus.

    Parameters
    ----------
    run : BrainRun or int
        The run (or its number of TRs, after dropped volumes were removed).
    episode_duration_s : float
        Length of the stimulus.
    tr_s : float, optional
        Defaults to the run's TR.
    onset_s : float
        Episode time of the first kept volume.
    dropped_volumes : int
        Volumes already discarded from the start of the run (reported, not removed again).
    tolerance_s : float, optional
        Allowed |run - stimulus| duration; default 2 TRs.

    Raises
    ------
    MismatchError
        When the durations disagree beyond the tolerance; the message gives both.
    """
    n_trs = run if isinstance(run, (int, np.integer)) else run.n_trs
    tr = float(tr_s if tr_s is not None else getattr(run, "tr_s", 0) or 0)
    if tr <= 0:
        raise ConfigError(f"pairing: expected a positive TR, found {tr}")
    if episode_duration_s <= 0:
        raise DataError(expected_found("stimulus duration", "> 0 s", f"{episode_duration_s} s"))
    tol = 2 * tr if tolerance_s is None else float(tolerance_s)
    run_s = n_trs * tr
    stim_s = float(episode_duration_s) - float(onset_s)
    diff = run_s - stim_s
    if abs(diff) > tol:
        name = getattr(run, "name", None)
        raise MismatchError(
            f"{name + ': ' if name else ''}run duration: expected it to match the stimulus within {tol:.2f} s, found run "
            f"{run_s:.2f} s ({n_trs} TRs x {tr} s, {dropped_volumes} volumes dropped) vs stimulus "
            f"{stim_s:.2f} s ({episode_duration_s:.2f} s from onset {onset_s:.2f} s): "
            f"{abs(diff):.2f} s {'longer' if diff > 0 else 'shorter'} (about {abs(diff) / tr:.1f} TRs)")
    return Pairing(int(n_trs), tr, float(onset_s), int(dropped_volumes), run_s, stim_s, diff)
