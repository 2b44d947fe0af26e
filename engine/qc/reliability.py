"""Reliability: inter-run and inter-subject correlation maps and noise ceilings.

Uses :mod:`engine.encoding.noise_ceiling` (the computations every encoding result is read
against): repeats of one subject give the explainable variance of a single run; several
subjects give leave-one-subject-out ISC and the across-subject ceiling. A target whose
ceiling is at most :data:`~engine.qc.checks.CEILING_NEAR_ZERO` carries no reliable signal:
it is marked, and its encoding scores are to be read with care. :func:`fraction_of_ceiling`
expresses encoding scores as a fraction of the ceiling.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..encoding import noise_ceiling as nc
from . import checks as C
from .checks import Check


def fraction_of_ceiling(scores: np.ndarray, ceiling: np.ndarray, min_ceiling: float = C.CEILING_NEAR_ZERO,
                        clip: bool = False) -> np.ndarray:
    """Encoding scores (Pearson r) as a fraction of the noise ceiling: ``r / sqrt(ceiling)``.

    NaN where the ceiling is at or below ``min_ceiling`` (no reliable signal to compare
    with). See :func:`engine.encoding.noise_ceiling.normalize_scores`.
    """
    return nc.normalize_scores(scores, ceiling, min_ceiling=min_ceiling, clip=clip)


def _stack(arrays: Sequence[np.ndarray]) -> np.ndarray:
    n = min(a.shape[0] for a in arrays)
    return np.stack([np.asarray(a[:n], dtype=np.float64) for a in arrays])


def reliability(runs: Dict[str, np.ndarray], subjects: Dict[str, str]) -> Dict[str, Any]:
    """Inter-run and inter-subject reliability of runs of one episode in one space.

    Parameters
    ----------
    runs : dict run name -> (n_trs, n_targets)
        Same stimulus, same targets (cut to the shortest run).
    subjects : dict run name -> subject

    Returns
    -------
    dict
        ``inter_run``: subject -> explainable variance (n_targets,) for subjects with >= 2 runs;
        ``loso``: (n_subjects, n_targets) leave-one-subject-out ISC when >= 2 subjects (each
        subject's runs averaged first); ``loso_mean`` (n_targets,); ``isc_ceiling`` (n_targets,)
        across-subject ceiling (variance fraction); ``ceiling`` (n_targets,) the ceiling the QC
        reports (across subjects when there are >= 3 subjects, else the mean inter-run one);
        ``ceiling_kind``; ``subjects`` in order.
    """
    by_subject: Dict[str, List[str]] = {}
    for name in runs:
        by_subject.setdefault(subjects.get(name, name), []).append(name)
    out: Dict[str, Any] = {"inter_run": {}, "subjects": list(by_subject)}
    for subj, names in by_subject.items():
        if len(names) >= 2:
            out["inter_run"][subj] = nc.explainable_variance(_stack([runs[n] for n in names]))
    means = [_stack([runs[n] for n in names]).mean(axis=0) for names in by_subject.values()]
    if len(means) >= 2:
        stack = _stack(means)
        loso = nc.isc_leave_one_out(stack)
        out["loso"] = loso
        out["loso_mean"] = np.nanmean(loso, axis=0)
        out["isc_ceiling"] = nc.across_subject_ceiling(stack, "loso") if len(means) >= 3 else nc.isc_pairwise(stack)
    if "isc_ceiling" in out and len(means) >= 3:
        out["ceiling"], out["ceiling_kind"] = out["isc_ceiling"], "across subjects (leave-one-subject-out ISC)"
    elif out["inter_run"]:
        out["ceiling"] = np.nanmean(np.stack(list(out["inter_run"].values())), axis=0)
        out["ceiling_kind"] = "across runs (explainable variance of one run)"
    elif "isc_ceiling" in out:
        out["ceiling"], out["ceiling_kind"] = out["isc_ceiling"], "across two subjects (pairwise ISC)"
    return out


def region_ceiling(ceiling: np.ndarray, labels: np.ndarray, names: Sequence[str]) -> Dict[str, float]:
    """Mean ceiling per region: ``labels`` (n_targets,) with 0 = none, ``names[k - 1]`` names label k."""
    c = np.asarray(ceiling, dtype=np.float64)
    labels = np.asarray(labels)
    out = {}
    for k, name in enumerate(names, 1):
        sel = (labels == k) & np.isfinite(c)
        if sel.any():
            out[str(name)] = float(c[sel].mean())
    return out


def check_reliability(subject: str, runs: Dict[str, np.ndarray], subjects: Dict[str, str],
                      target_names: Optional[Sequence[str]] = None, region_labels: Optional[np.ndarray] = None,
                      region_names: Optional[Sequence[str]] = None) -> Optional[Check]:
    """Reliability check of a group of runs (one episode, one space); None when there is only one run.

    ``region_labels`` / ``region_names`` (an atlas on vertex runs) add the mean ceiling per region
    and the regions whose ceiling is near zero.
    """
    if len(runs) < 2:
        return None
    rel = reliability(runs, subjects)
    if "ceiling" not in rel:
        return None
    ceiling = np.asarray(rel["ceiling"], dtype=np.float64)
    n = ceiling.size
    near = ~(ceiling > C.CEILING_NEAR_ZERO)
    det: Dict[str, Any] = {"ceiling_kind": rel["ceiling_kind"], "n_targets": n, "n_near_zero": int(near.sum()),
                           "median_ceiling": float(np.nanmedian(ceiling)), "max_ceiling": float(np.nanmax(ceiling))
                           if np.isfinite(ceiling).any() else None, "subjects": rel["subjects"],
                           "near_zero_threshold": C.CEILING_NEAR_ZERO}
    names = list(target_names) if target_names is not None and len(target_names) == n else None
    if "loso_mean" in rel:
        det["loso_isc_mean"] = rel["loso_mean"]
    if names is not None and n <= 1000:
        det["per_target"] = {names[i]: {"ceiling": float(ceiling[i]),
                                        **({"loso_isc": float(rel["loso_mean"][i])} if "loso_mean" in rel else {}),
                                        "near_zero": bool(near[i])} for i in range(n)}
    if names is not None:
        det["near_zero_targets"] = [names[i] for i in np.flatnonzero(near)][:200]
    if region_labels is not None and region_names is not None and len(region_labels) == n:
        per_region = region_ceiling(ceiling, region_labels, region_names)
        det["per_region"] = per_region
        det["near_zero_regions"] = [k for k, v in per_region.items() if not v > C.CEILING_NEAR_ZERO]
    payload = {"ceiling": ceiling.astype(np.float32), "near_zero": near, **{k: rel[k] for k in ("loso_mean",)
                                                                          if k in rel}}
    extra = ""
    if "loso_mean" in rel and n <= 12:
        extra = "; leave-one-subject-out ISC " + " ".join(
            (f"{names[i]} " if names else "") + f"{rel['loso_mean'][i]:.2f}" for i in range(n))
    what = C.short_list([names[i] for i in np.flatnonzero(near)]) if names else f"{int(near.sum())} targets"
    if near.all():
        return Check("reliability", "warn", f"{subject}: expected some targets with a reliable response "
                     f"({rel['ceiling_kind']}), found the noise ceiling at or below {C.CEILING_NEAR_ZERO} everywhere "
                     f"(max {det['max_ceiling']}): runs misaligned, a wrong pairing, or no stimulus-driven signal"
                     + extra, subject=subject, category="reliability", details=det, view="reliability_map",
                     data=payload)
    msg = (f"{subject}: noise ceiling {rel['ceiling_kind']}: median {det['median_ceiling']:.3f}, max "
           f"{det['max_ceiling']:.3f}; ")
    msg += (f"{int(near.sum())} of {n} targets near zero (<= {C.CEILING_NEAR_ZERO}: read their scores with care"
            + (f": {what}" if names else "") + ")") if near.any() else "no target near zero"
    if "near_zero_regions" in det:
        nz = det["near_zero_regions"]
        msg += (f"; {len(nz)} of {len(det['per_region'])} regions near zero on average ({C.short_list(nz, 4)})"
                if nz else f"; every one of {len(det['per_region'])} regions above {C.CEILING_NEAR_ZERO} on average")
    return Check("reliability", "pass", msg + extra, subject=subject, category="reliability", details=det,
                 view="reliability_map", data=payload)
