"""Per-run data quality: temporal SNR, carpet, motion, global signal, duplicated volumes,
raw units left undetrended, dead targets.

Every function takes a run's data as ``(n_trs, n_targets)``; :func:`check_run` turns them
into :class:`~engine.qc.checks.Check` results. Pure numpy (and pandas for confounds).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import DataError, expected_found
from . import checks as C
from .checks import Check

MOTION_COLUMNS = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")


# ==== measures =======================================================================
def detrend(data: np.ndarray, order: int = 2) -> np.ndarray:
    """Remove Legendre polynomials of degree 1..order per target (the mean is kept)."""
    d = np.asarray(data, dtype=np.float64)
    n = d.shape[0]
    if n < order + 2 or order < 1:
        return d.copy()
    x = np.linspace(-1.0, 1.0, n)
    basis = np.stack([np.polynomial.legendre.Legendre.basis(k)(x) for k in range(1, order + 1)], axis=1)
    basis -= basis.mean(axis=0)
    beta, *_ = np.linalg.lstsq(basis, d - d.mean(axis=0), rcond=None)
    return d - basis @ beta


def tsnr(data: np.ndarray, detrend_order: int = 2) -> np.ndarray:
    """Temporal SNR per target: mean over time / standard deviation after removing slow drifts.

    Parameters
    ----------
    data : ndarray (n_trs, n_targets)
        Scanner units (tSNR is undefined for demeaned or z-scored data).
    detrend_order : int
        Polynomial order removed before the standard deviation (as in fMRIPrep's tSNR).

    Returns
    -------
    tsnr : ndarray (n_targets,) float64
        NaN for constant targets.
    """
    d = np.asarray(data, dtype=np.float64)
    mean = d.mean(axis=0)
    sd = detrend(d, detrend_order).std(axis=0, ddof=1) if d.shape[0] > 1 else np.zeros(d.shape[1])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sd > 0, mean / sd, np.nan)


def tsnr_volume(path, detrend_order: int = 2):
    """Temporal SNR of every voxel of a 4-D NIfTI run, as a 3-D image on the run's grid.

    Parameters
    ----------
    path : path
        A 4-D NIfTI file (scanner units).
    detrend_order : int
        Polynomial order removed before the standard deviation (see :func:`tsnr`).

    Returns
    -------
    nibabel.Nifti1Image
        float32 (x, y, z), 0 where a voxel is constant (outside the brain, usually).
    """
    import nibabel as nib

    path = Path(path)
    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as exc:
        raise DataError(expected_found(path.name, "a readable 4-D NIfTI", f"{type(exc).__name__}: {exc}")) from None
    if data.ndim != 4:
        raise DataError(expected_found(path.name, "a 4-D NIfTI (x, y, z, time)", f"shape {data.shape}"))
    flat = np.nan_to_num(data.reshape(-1, data.shape[3]).T)            # n_trs, n_voxels
    values = np.nan_to_num(tsnr(flat, detrend_order), nan=0.0).astype(np.float32)
    out = nib.Nifti1Image(values.reshape(data.shape[:3]), img.affine)
    out.header.set_xyzt_units("mm")
    return out


def drift_fraction(data: np.ndarray, order: int = 2) -> np.ndarray:
    """Fraction of each target's variance explained by a polynomial of degree ``order`` in time.

    Pure noise gives about ``order / n_trs``; a slow scanner drift left in the data gives
    much more. Returns (n_targets,) float64, NaN for constant targets.
    """
    d = np.asarray(data, dtype=np.float64)
    centred = d - d.mean(axis=0)
    total = (centred ** 2).sum(axis=0)
    resid = detrend(d, order) - d.mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, 1.0 - (resid ** 2).sum(axis=0) / total, np.nan)


def looks_like_scanner_units(data: np.ndarray) -> Tuple[bool, float]:
    """Whether time courses sit on a large positive baseline (raw scanner units).

    Returns (flag, median |mean| / sd over non-constant targets).
    """
    d = np.asarray(data, dtype=np.float64)
    sd = d.std(axis=0)
    ok = sd > 0
    if not ok.any():
        return False, 0.0
    ratio = float(np.median(np.abs(d.mean(axis=0)[ok]) / sd[ok]))
    return ratio > C.RAW_UNITS_MEAN_OVER_SD, ratio


def global_signal(data: np.ndarray) -> np.ndarray:
    """Mean over targets at each TR of the per-target demeaned data, (n_trs,) float64."""
    d = np.asarray(data, dtype=np.float64)
    return (d - d.mean(axis=0)).mean(axis=1)


def robust_z(x: np.ndarray) -> np.ndarray:
    """(x - median) / (1.4826 MAD); zeros where the MAD is 0."""
    x = np.asarray(x, dtype=np.float64)
    med = np.median(x)
    mad = 1.4826 * np.median(np.abs(x - med))
    if mad <= 0:
        sd = x.std()
        return (x - med) / sd if sd > 0 else np.zeros_like(x)
    return (x - med) / mad


def duplicated_volumes(data: np.ndarray) -> np.ndarray:
    """Indices ``k`` where volume ``k`` is identical to volume ``k - 1`` (a repeated TR)."""
    d = np.asarray(data)
    if d.shape[0] < 2:
        return np.zeros(0, dtype=np.int64)
    same = np.all(d[1:] == d[:-1], axis=1)
    varying = np.ptp(d, axis=0) > 0        # a dead run (all constant) is reported as dead instead
    if not varying.any():
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(same) + 1


def zero_volumes(data: np.ndarray) -> np.ndarray:
    """Indices of volumes that are all zeros while others are not (a dropped volume zero-filled)."""
    d = np.asarray(data)
    zero = ~np.any(d != 0, axis=1)
    return np.flatnonzero(zero) if (~zero).any() else np.zeros(0, dtype=np.int64)


def dead_targets(data: np.ndarray) -> np.ndarray:
    """Indices of targets whose time course never changes (all zeros, constant), NaN counted as 0."""
    d = np.asarray(data)
    if d.shape[0] < 2:
        return np.zeros(0, dtype=np.int64)
    finite = np.where(np.isfinite(d), d, 0.0)
    return np.flatnonzero(np.ptp(finite, axis=0) == 0)


def framewise_displacement(params: np.ndarray, radius_mm: float = C.FD_RADIUS_MM) -> np.ndarray:
    """Framewise displacement (Power et al. 2012).

    Parameters
    ----------
    params : ndarray (n_trs, 6)
        ``trans_x, trans_y, trans_z`` in mm and ``rot_x, rot_y, rot_z`` in radians (fMRIPrep and
        SPM ``rp_*.txt`` conventions).
    radius_mm : float
        Rotations become arc lengths on a sphere of this radius.

    Returns
    -------
    fd : ndarray (n_trs,) float64, mm; 0 at the first volume.
    """
    p = np.asarray(params, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 6:
        raise DataError(expected_found("motion parameters", "(n_trs, 6) translations (mm) then rotations (rad)",
                                       f"shape {p.shape}"))
    delta = np.abs(np.diff(p, axis=0))
    delta[:, 3:] *= radius_mm
    return np.concatenate([[0.0], delta.sum(axis=1)])


def read_motion(path) -> Dict[str, Any]:
    """Motion parameters from an fMRIPrep confounds TSV or an SPM ``rp_*.txt``.

    Returns
    -------
    dict
        ``params`` (n_trs, 6) float64 (mm, rad), ``fd`` (n_trs,) Power FD in mm, ``source``,
        and ``fmriprep_fd`` (n_trs,) when the TSV has a ``framewise_displacement`` column
        (its ``n/a`` first row as 0), plus ``global_signal``, ``dvars`` when present.
    """
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise DataError(expected_found("confounds file", "an existing file", f"nothing at {path}"))
    low = path.name.lower()
    out: Dict[str, Any] = {"source": str(path)}
    try:
        if low.endswith((".tsv", ".csv")) and "rp_" not in low:
            table = pd.read_csv(path, sep="\t" if low.endswith(".tsv") else ",", na_values=["n/a", "N/A", "NaN"])
            missing = [c for c in MOTION_COLUMNS if c not in table.columns]
            if missing:
                raise DataError(expected_found(f"confounds file {path.name}", f"motion columns {list(MOTION_COLUMNS)}",
                                               f"columns {list(table.columns)[:10]} (missing {missing})"))
            params = table[list(MOTION_COLUMNS)].to_numpy(dtype=np.float64)
            for extra, key in (("framewise_displacement", "fmriprep_fd"), ("global_signal", "global_signal"),
                               ("std_dvars", "dvars")):
                if extra in table.columns:
                    out[key] = np.nan_to_num(table[extra].to_numpy(dtype=np.float64), nan=0.0)
        else:
            params = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(expected_found(f"confounds file {path.name}", "an fMRIPrep confounds TSV or SPM rp_*.txt",
                                       f"unreadable content ({type(exc).__name__}: {exc})")) from None
    if params.ndim != 2 or params.shape[1] != 6:
        raise DataError(expected_found(f"motion file {path.name}", "6 columns (3 translations, 3 rotations)",
                                       f"shape {params.shape}"))
    # n/a only where a derivative is undefined (first row): carry the first finite value back
    for j in range(6):
        col = params[:, j]
        bad = ~np.isfinite(col)
        if bad.all():
            raise DataError(expected_found(f"motion file {path.name}", f"numbers in {MOTION_COLUMNS[j]}", "n/a only"))
        if bad.any():
            idx = np.arange(col.size)
            col[bad] = np.interp(idx[bad], idx[~bad], col[~bad])
    out["params"] = params
    out["fd"] = framewise_displacement(params)
    return out


# ==== carpet =========================================================================
_HEMI_TOKENS = {"lh", "rh", "l", "r", "left", "right"}


def region_group(name: str) -> str:
    """A parcel's region for ordering: ``7Networks_LH_Vis_1`` -> ``Vis``; ``LATL`` -> ``LATL``."""
    parts = [p for p in re.split(r"[_\-\s.]+", str(name)) if p]
    parts = [p for p in parts if not p.isdigit() and p.lower() not in _HEMI_TOKENS
             and not re.fullmatch(r"\d+networks", p.lower())]
    return parts[0] if parts else str(name)


def carpet(data: np.ndarray, groups: Optional[Sequence[str]] = None, max_rows: int = 800,
           keep: Optional[np.ndarray] = None) -> Dict[str, Any]:
    """Carpet-plot data: targets x time, each target detrended and z-scored, ordered by region.

    Parameters
    ----------
    data : ndarray (n_trs, n_targets)
    groups : sequence of str (n_targets,), optional
        Region of each target (``""`` for none: put last). Without groups, targets are
        ordered by their correlation with the global signal.
    max_rows : int
        At most this many targets (evenly spaced in the order) are kept.
    keep : ndarray of bool (n_targets,), optional
        Targets to show (e.g. not the medial wall, not dead ones); all by default.

    Returns
    -------
    dict
        ``image`` (n_rows, n_trs) float32 z-scores clipped to [-3, 3]; ``targets`` (n_rows,)
        original target indices; ``row_groups`` list of (name, first_row, last_row).
    """
    d = detrend(data, 1)
    sd = d.std(axis=0)
    z = np.where(sd > 0, (d - d.mean(axis=0)) / np.where(sd > 0, sd, 1.0), 0.0)
    n_all = z.shape[1]
    shown = np.flatnonzero(keep) if keep is not None and len(keep) == n_all and np.any(keep) else np.arange(n_all)
    if groups is not None and len(groups) == n_all:
        groups = [str(g) for g in groups]
        names = sorted({groups[i] for i in shown if groups[i]})
        rank = {g: k for k, g in enumerate(names)}
        key = np.array([rank.get(groups[i], len(names)) for i in shown])
        order = shown[np.argsort(key, kind="stable")]
    else:
        gs = z.mean(axis=1)
        gs = (gs - gs.mean()) / (gs.std() or 1.0)
        order = shown[np.argsort(-(z[:, shown] * gs[:, None]).mean(axis=0), kind="stable")]
        groups = None
    n = order.size
    if n > max_rows:
        order = order[np.linspace(0, n - 1, max_rows).round().astype(int)]
    image = np.clip(z[:, order].T, -3, 3).astype(np.float32)
    row_groups: List[Tuple[str, int, int]] = []
    if groups is not None:
        labels = [groups[i] or "(none)" for i in order]
        start = 0
        for k in range(1, len(labels) + 1):
            if k == len(labels) or labels[k] != labels[start]:
                row_groups.append((labels[start], start, k - 1))
                start = k
    return {"image": image, "targets": order.astype(np.int64), "row_groups": row_groups}


# ==== the checks =====================================================================
def check_run(data: np.ndarray, tr_s: float, name: str, preprocessing: Optional[Dict[str, Any]] = None,
              motion: Optional[Dict[str, Any]] = None, episode_duration_s: Optional[float] = None,
              onset_s: float = 0.0, groups: Optional[Sequence[str]] = None,
              medial_wall: Optional[np.ndarray] = None, nan_note: Optional[str] = None,
              nan_policy: str = "error") -> List[Check]:
    """All per-run checks of one run.

    Parameters
    ----------
    data : ndarray (n_trs, n_targets)
        The run as recorded (before the project's preprocessing; NaN already set to 0).
    tr_s : float
    name : str
        Run name (the checks' subject).
    preprocessing : dict, optional
        The project's preprocessing spec (``detrend``, ``high_pass_hz`` ...): drifts it removes
        are not reported.
    motion : dict, optional
        From :func:`read_motion`.
    episode_duration_s : float, optional
        Length of the paired stimulus: the run's length is compared with it.
    groups : sequence of str, optional
        Region of each target (carpet order, dead-region names).
    medial_wall : ndarray of bool (n_targets,), optional
        Targets that carry no data by construction (not reported as dead).
    nan_note : str, optional
        What was NaN in the file (from the loader), reported.
    nan_policy : str
        The project's NaN policy (``error`` means the fit would refuse the run).

    Returns
    -------
    list of Check
    """
    data = np.asarray(data, dtype=np.float64)
    n_trs, n_targets = data.shape
    pre = dict(preprocessing or {})
    out: List[Check] = []

    def add(check_name, level, message, view=None, details=None, payload=None):
        out.append(Check(check_name, level, message, subject=name, category="run", view=view,
                         details=details or {}, data=payload or {}))

    # -- non-finite values
    if nan_note:
        level = "fail" if nan_policy == "error" else "warn"
        add("nan_values", level, f"{name}: expected finite values, found {nan_note}"
            + ("; the fit refuses the run (set preprocessing nan_policy to 'interpolate' or 'zero')"
               if level == "fail" else f"; repaired by nan_policy '{nan_policy}'"), details={"where": nan_note})

    # -- dead run / dead targets
    dead = dead_targets(data)
    wall = np.zeros(n_targets, bool) if medial_wall is None or len(medial_wall) != n_targets \
        else np.asarray(medial_wall, bool)
    dead_out = dead[~wall[dead]]
    n_live_expected = int((~wall).sum())
    if dead_out.size and dead_out.size >= n_live_expected:
        value = float(data[0, dead_out[0]]) if n_trs else 0.0
        add("dead_targets", "fail", f"{name}: expected time courses that vary, found every target constant "
            f"({'all zeros' if value == 0 else f'all {value:g}'}): a failed export or an empty file; leave the run "
            "out", details={"n_dead": int(dead_out.size), "n_targets": n_targets, "constant_value": value},
            view="carpet")
        return out          # nothing else can be measured on a dead run
    if dead_out.size:
        named = ""
        if groups is not None and len(groups) == n_targets:
            counts: Dict[str, int] = {}
            for i in dead_out:
                counts[str(groups[i]) or "(none)"] = counts.get(str(groups[i]) or "(none)", 0) + 1
            named = "; in " + C.short_list(f"{g} ({k})" for g, k in sorted(counts.items(), key=lambda kv: -kv[1]))
        add("dead_targets", "warn", f"{name}: expected every target to vary, found {dead_out.size} of {n_targets} "
            f"constant ({100 * dead_out.size / n_targets:.1f} %: targets [{C.short_list(dead_out)}]){named}; their "
            "scores are meaningless (signal dropout or a mask that does not fit)",
            details={"n_dead": int(dead_out.size), "n_targets": n_targets, "dead": dead_out[:1000]},
            view="carpet", payload={"dead": dead_out})
    else:
        add("dead_targets", "pass", f"{name}: every target varies"
            + (f" ({int(wall.sum())} medial-wall targets without data, as expected)" if wall.any() else ""),
            details={"n_dead": 0, "n_medial_wall": int(wall.sum())})

    # -- duplicated / zero volumes
    dup = duplicated_volumes(data)
    zeros = zero_volumes(data)
    if dup.size or zeros.size:
        parts = []
        if dup.size:
            parts.append(f"{dup.size} volume(s) identical to the one before (TRs [{C.short_list(dup)}])")
        if zeros.size:
            parts.append(f"{zeros.size} all-zero volume(s) (TRs [{C.short_list(zeros)}])")
        add("duplicated_trs", "fail", f"{name}: expected a new volume every TR, found " + " and ".join(parts)
            + ": volumes were repeated or zero-filled when the run was exported; the timing after them is off",
            details={"duplicated": dup, "zero": zeros}, view="carpet")
    else:
        add("duplicated_trs", "pass", f"{name}: no repeated or zero-filled volumes in {n_trs} TRs",
            details={"duplicated": [], "zero": []})

    # -- run length against the stimulus (dropped TRs)
    if episode_duration_s:
        stim_s = float(episode_duration_s) - float(onset_s)
        run_s = n_trs * float(tr_s)
        diff = run_s - stim_s
        tol = 2 * float(tr_s)
        det = {"run_s": run_s, "stimulus_s": stim_s, "difference_s": diff, "difference_trs": diff / tr_s}
        if abs(diff) > tol:
            add("run_length", "fail", f"{name}: expected the run to cover the stimulus within {tol:.2f} s, found "
                f"{run_s:.2f} s ({n_trs} TRs x {tr_s} s) for {stim_s:.2f} s of stimulus: {abs(diff):.2f} s "
                f"({abs(diff) / tr_s:.1f} TRs) {'too long' if diff > 0 else 'missing'}; volumes dropped or the wrong "
                "episode", details=det)
        else:
            add("run_length", "pass", f"{name}: {n_trs} TRs cover the {stim_s:.1f} s stimulus "
                f"({diff:+.2f} s)", details=det)

    # -- units, tSNR and drift
    raw, ratio = looks_like_scanner_units(data)
    live = np.ones(n_targets, bool)
    live[dead] = False
    live &= ~wall
    values = tsnr(data)
    carpet_data = carpet(data, groups, keep=~wall)     # dead targets stay in: a flat band shows them
    if raw:
        med = float(np.nanmedian(values[live])) if live.any() else float("nan")
        det = {"median_tsnr": med, "p5_tsnr": float(np.nanpercentile(values[live], 5)) if live.any() else None}
        level = "warn" if med < C.TSNR_WARN else "pass"
        add("tsnr", level, f"{name}: median temporal SNR {med:.1f}"
            + (f" (expected at least {C.TSNR_WARN:g}: very noisy data)" if level == "warn" else ""),
            view="tsnr_map", details=det, payload={"tsnr": values.astype(np.float32)})
    else:
        add("tsnr", "pass", f"{name}: data are already demeaned or standardised (|mean|/sd {ratio:.2f}): temporal "
            "SNR needs scanner units and is not computed", details={"mean_over_sd": ratio})
    frac = drift_fraction(data)
    med_drift = float(np.nanmedian(frac[live])) if live.any() else 0.0
    removes_drift = bool(pre.get("detrend")) or pre.get("high_pass_hz") is not None
    det = {"scanner_units": raw, "mean_over_sd": ratio, "median_drift_fraction": med_drift,
           "preprocessing_removes_drift": removes_drift}
    # pure noise gives ~ order / n_trs (2 / n_trs for the quadratic): never report less than 4x chance
    drift_limit = max(C.DRIFT_WARN_FRACTION, 4 * 2.0 / max(n_trs, 1))
    det["drift_limit"] = drift_limit
    if med_drift > drift_limit and not removes_drift:
        add("units_drift", "warn", f"{name}: expected detrended data, found {'raw scanner units with ' if raw else ''}"
            f"slow drifts explaining {100 * med_drift:.0f} % of the variance of a typical target (more than "
            f"{100 * drift_limit:.0f} %) and no detrending in the project's preprocessing: set "
            "preprocessing detrend (e.g. 2) or high_pass_hz (e.g. 0.01)", details=det, view="carpet")
    else:
        add("units_drift", "pass", f"{name}: slow drifts explain {100 * med_drift:.0f} % of the variance"
            + (" (removed by the project's preprocessing)" if removes_drift and med_drift > drift_limit else "")
            + ("; scanner units (z-scored per run by the fit)" if raw else ""), details=det)

    # -- global signal
    gs = global_signal(data[:, live] if live.any() else data)
    z = robust_z(np.diff(gs)) if n_trs > 3 else np.zeros(max(n_trs - 1, 0))
    spikes = np.flatnonzero(np.abs(z) > C.GS_SPIKE_Z) + 1
    det = {"spikes": spikes, "max_abs_z": float(np.abs(z).max()) if z.size else 0.0}
    payload = {"global_signal": gs.astype(np.float32), "carpet": carpet_data}
    if spikes.size:
        add("global_signal", "warn", f"{name}: expected a smooth global signal, found {spikes.size} jump(s) above "
            f"{C.GS_SPIKE_Z:g} robust SD at TRs [{C.short_list(spikes)}] (spikes, motion or scanner artefacts)",
            view="carpet", details=det, payload=payload)
    else:
        add("global_signal", "pass", f"{name}: global signal has no jumps above {C.GS_SPIKE_Z:g} robust SD",
            view="carpet", details=det, payload=payload)

    # -- motion
    if motion is not None:
        fd = np.asarray(motion["fd"], dtype=np.float64)
        if fd.size != n_trs:
            add("motion", "fail", f"{name}: expected {n_trs} rows of motion parameters (one per TR), found "
                f"{fd.size} in {Path(motion.get('source', '')).name}", details={"n_rows": int(fd.size)})
        else:
            flagged = np.flatnonzero(fd > C.FD_THRESHOLD_MM)
            frac_flagged = flagged.size / max(n_trs, 1)
            det = {"mean_fd_mm": float(fd.mean()), "max_fd_mm": float(fd.max()), "n_flagged": int(flagged.size),
                   "fraction_flagged": frac_flagged, "flagged": flagged,
                   "stretches": C.stretches(fd > C.FD_THRESHOLD_MM), "threshold_mm": C.FD_THRESHOLD_MM}
            payload = {"fd": fd.astype(np.float32), "params": np.asarray(motion["params"], np.float32),
                       "flagged": flagged, "global_signal": gs.astype(np.float32)}
            if flagged.size == 0:
                add("motion", "pass", f"{name}: no volume moves more than FD {C.FD_THRESHOLD_MM} mm (mean FD "
                    f"{fd.mean():.2f} mm)", view="motion", details=det, payload=payload)
            else:
                level = "fail" if frac_flagged > C.MOTION_FAIL_FRACTION else "warn"
                spans = ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in det["stretches"][:5])
                add("motion", level, f"{name}: expected framewise displacement below {C.FD_THRESHOLD_MM} mm, found "
                    f"{flagged.size} volume(s) above ({100 * frac_flagged:.0f} %, max {fd.max():.2f} mm) at TRs "
                    f"{spans}{' ...' if len(det['stretches']) > 5 else ''}"
                    + ("; more than 20 % of the run: censor or drop it" if level == "fail" else
                       "; censor them or add motion confounds"), view="motion", details=det, payload=payload)
    return out
