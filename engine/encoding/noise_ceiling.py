"""Noise ceilings: how much of a target's response any model could predict.

Definition used throughout AlignScope
-------------------------------------
Every ceiling returned here is a **fraction of variance** (r² scale) of the response the
model is scored on: the part of that response that is repeatable (stimulus-driven)
rather than noise. With the response of one target written as ``y = s + e`` (``s`` the
stimulus-driven signal shared by repeats or subjects, ``e`` independent noise) and
``ev = var(s) / (var(s) + var(e))``:

- a perfect model of ``s`` reaches ``r_max = sqrt(ceiling)`` on data with that ceiling;
- :func:`normalize_scores` therefore reports ``r / sqrt(ceiling)`` (1 = at the ceiling),
  NaN where the ceiling is <= ``min_ceiling`` (no reliable signal: the ratio is
  meaningless), optionally clipped to [-1, 1] (noisy ceilings can push it above 1).

Which ceiling to use depends on what the model is scored on:

- scored on **one repeat** (or one subject): :func:`explainable_variance` (Schoppe et
  al. 2016 / Sahani & Linden 2003 estimator as in Gallant lab's voxelwise_tutorials),
  or :func:`across_subject_ceiling` for subject-general signal;
- scored on **the mean of n repeats**: :func:`split_half_reliability` (split-half
  correlation, Spearman-Brown corrected to n repeats), or equivalently
  ``spearman_brown(explainable_variance(...), n)``.

Analytic values for the planted model ``y_k = s + e_k`` (``var(s) = S``, ``var(e) = N``):
``ev = S / (S + N)``; the mean of n repeats has ``S / (S + N / n) = n ev / (1 + (n - 1) ev)``.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError, MismatchError, expected_found

__all__ = [
    "explainable_variance",
    "split_half_reliability",
    "spearman_brown",
    "isc_leave_one_out",
    "isc_pairwise",
    "across_subject_ceiling",
    "normalize_scores",
]


def _check_stack(data, what: str, min_first: int = 2) -> np.ndarray:
    d = np.asarray(data)
    if d.ndim == 2:
        d = d[:, :, None]
    if d.ndim != 3 or d.shape[0] < min_first or d.shape[1] < 3:
        raise MismatchError(expected_found(
            f"{what} array", f"shape ({what} >= {min_first}, n_trs >= 3, n_targets)", d.shape))
    return d


def _zscore_time(d: np.ndarray) -> np.ndarray:
    from .preprocess import zscore_columns

    return zscore_columns(d, axis=1)


def _corr_cols(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r per column of two (n_trs, n_targets) arrays (the project's :func:`pearson_r`), NaN
    where either column is constant: a reliability of a constant target is undefined, not 0."""
    from .results import pearson_r

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    constant = np.all(a == a[:1], axis=0) | np.all(b == b[:1], axis=0)
    return np.where(constant, np.nan, pearson_r(a, b))


def spearman_brown(reliability: np.ndarray, factor: float) -> np.ndarray:
    """Spearman-Brown prophecy: reliability of a mean over ``factor`` times as many repeats.

    ``rho_k = k rho / (1 + (k - 1) rho)``. Values <= -1/(k-1) (undefined) give NaN.
    """
    rho = np.asarray(reliability, dtype=np.float64)
    k = float(factor)
    den = 1.0 + (k - 1.0) * rho
    with np.errstate(invalid="ignore", divide="ignore"):
        out = k * rho / den
    return np.where(den > 0, out, np.nan)


def explainable_variance(repeats: np.ndarray, bias_correction: bool = True,
                         do_zscore: bool = True) -> np.ndarray:
    """Explainable variance of a single repeat (Sahani & Linden 2003; Schoppe et al. 2016).

    The ratio of the variance of the mean over repeats to the mean variance of single
    repeats, with the bias of a finite number of repeats removed:
    ``ev = v - (1 - v) / (n_repeats - 1)`` where ``v = var(mean_k y_k) / mean_k var(y_k)``
    (the voxelwise_tutorials estimator). Its expectation is ``S / (S + N)``.

    Parameters
    ----------
    repeats : ndarray, shape (n_repeats, n_trs, n_targets)
        The same stimulus seen ``n_repeats`` times (n_repeats >= 2).
    bias_correction : bool
    do_zscore : bool
        z-score each repeat in time first (set False only if already z-scored).

    Returns
    -------
    ev : ndarray, shape (n_targets,)
        Fraction of a single repeat's variance that is stimulus-driven; can be negative
        (estimation noise) where there is no signal.
    """
    d = _check_stack(repeats, "n_repeats")
    d = _zscore_time(d) if do_zscore else np.asarray(d, dtype=np.float64)
    mean_var = d.var(axis=1, ddof=1).mean(axis=0)  # n_targets
    var_mean = d.mean(axis=0).var(axis=0, ddof=1)  # n_targets
    with np.errstate(invalid="ignore", divide="ignore"):
        ev = var_mean / mean_var
    if bias_correction:
        ev = ev - (1.0 - ev) / (d.shape[0] - 1)
    return ev


def split_half_reliability(repeats: np.ndarray, n_splits: int = 100, spearman_brown_correct: bool = True,
                           seed: int = 0, return_splits: bool = False):
    """Split-half reliability of the mean over repeats, averaged over random splits.

    Each split divides the repeats at random into two halves of ``n_repeats // 2``
    (one repeat left out when ``n_repeats`` is odd), correlates the two halves' mean
    time courses per target, and the correlations are averaged over splits. With
    ``spearman_brown_correct`` the mean half-correlation is stepped up by the
    Spearman-Brown factor ``n_repeats / (n_repeats // 2)`` to the reliability of the
    mean of all ``n_repeats`` repeats: expectation ``S / (S + N / n_repeats)``.

    With 2 or 3 repeats all distinct splits are enumerated instead of drawn.

    Parameters
    ----------
    repeats : ndarray, shape (n_repeats, n_trs, n_targets)
    n_splits : int
        Random splits to average (ignored when every split is enumerated).
    spearman_brown_correct : bool
    seed : int
    return_splits : bool
        Also return the per-split half correlations (n_splits, n_targets).

    Returns
    -------
    reliability : ndarray, shape (n_targets,)
        Ceiling (variance fraction) for a model scored on the mean of all repeats.
    """
    d = _check_stack(repeats, "n_repeats")
    n_rep = d.shape[0]
    half = n_rep // 2
    d = np.asarray(d, dtype=np.float64)
    if n_rep <= 3:
        from itertools import combinations
        splits = []
        for a in combinations(range(n_rep), half):
            rest = [i for i in range(n_rep) if i not in a]
            for b in combinations(rest, half):
                key = tuple(sorted((a, b)))
                if key not in [tuple(sorted(s)) for s in splits]:
                    splits.append((a, b))
    else:
        rng = np.random.default_rng(seed)
        splits = []
        for _ in range(int(n_splits)):
            perm = rng.permutation(n_rep)
            splits.append((tuple(perm[:half]), tuple(perm[half:2 * half])))
    r = np.stack([_corr_cols(d[list(a)].mean(axis=0), d[list(b)].mean(axis=0)) for a, b in splits])
    r_mean = np.nanmean(r, axis=0) if len(splits) > 1 else r[0]
    rel = spearman_brown(r_mean, n_rep / half) if spearman_brown_correct else r_mean
    return (rel, r) if return_splits else rel


def isc_leave_one_out(subjects: np.ndarray) -> np.ndarray:
    """Inter-subject correlation, leave one subject out.

    Parameters
    ----------
    subjects : ndarray, shape (n_subjects, n_trs, n_targets)
        The same stimulus, one time course per subject, targets in a common space
        (e.g. fsaverage5 vertices or atlas parcels).

    Returns
    -------
    isc : ndarray, shape (n_subjects, n_targets)
        Correlation of each subject with the mean of the other subjects.
        Expectation for ``y_j = s + e_j``: ``sqrt(ev * ev_{n-1})`` with ``ev_{n-1}`` the
        reliability of a mean of ``n - 1`` subjects.
    """
    d = np.asarray(_check_stack(subjects, "n_subjects"), dtype=np.float64)
    total = d.sum(axis=0)
    n = d.shape[0]
    return np.stack([_corr_cols(d[j], (total - d[j]) / (n - 1)) for j in range(n)])


def isc_pairwise(subjects: np.ndarray) -> np.ndarray:
    """Mean pairwise inter-subject correlation per target; expectation ``ev``.

    Parameters
    ----------
    subjects : ndarray, shape (n_subjects, n_trs, n_targets)

    Returns
    -------
    isc : ndarray, shape (n_targets,)
    """
    d = _zscore_time(_check_stack(subjects, "n_subjects"))
    n, t = d.shape[0], d.shape[1]
    # mean over pairs of r_ij = (|sum_j z_j|^2 - sum_j |z_j|^2) / (n (n - 1) t) for z-scored series
    total = d.sum(axis=0)
    num = (total * total).sum(axis=0) - (d * d).sum(axis=(0, 1))
    return num / (n * (n - 1) * t)


def across_subject_ceiling(subjects: np.ndarray, method: str = "loso") -> np.ndarray:
    """Ceiling (variance fraction of ONE subject's response) from the other subjects.

    Parameters
    ----------
    subjects : ndarray, shape (n_subjects, n_trs, n_targets)
    method : {"loso", "pairwise"}
        "pairwise": mean pairwise ISC, an unbiased estimate of ``ev``.
        "loso": mean leave-one-subject-out ISC ``r`` (less noisy than a single pair),
        converted to ``ev`` by inverting ``r² = (n-1) ev² / (1 + (n-2) ev)``; a negative
        mean ``r`` gives a negative ceiling.

    Returns
    -------
    ceiling : ndarray, shape (n_targets,)
        Fraction of one subject's variance shared across subjects; a model scored on a
        single subject reaches at most ``sqrt(ceiling)``.
    """
    if method == "pairwise":
        return isc_pairwise(subjects)
    if method != "loso":
        raise ConfigError(f"method: expected 'loso' or 'pairwise', found {method!r}")
    isc = isc_leave_one_out(subjects)
    n = isc.shape[0]
    r = np.nanmean(isc, axis=0)
    r2 = r * r
    ev = (r2 * (n - 2) + np.sqrt(r2 * r2 * (n - 2) ** 2 + 4 * (n - 1) * r2)) / (2 * (n - 1))
    return np.sign(r) * ev


def normalize_scores(scores: np.ndarray, ceiling: np.ndarray, min_ceiling: float = 0.0,
                     clip: bool = False) -> np.ndarray:
    """Scores as a fraction of the noise ceiling: ``r / sqrt(ceiling)``.

    Parameters
    ----------
    scores : ndarray, shape (n_targets,)
        Pearson r of the model on the same data the ceiling describes.
    ceiling : ndarray, shape (n_targets,)
        Ceiling as a variance fraction (from this module).
    min_ceiling : float
        Targets with ``ceiling <= min_ceiling`` get NaN (no reliable signal to normalise by).
    clip : bool
        Clip the result to [-1, 1].

    Returns
    -------
    normalized : ndarray, shape (n_targets,), float64
    """
    r = np.asarray(scores, dtype=np.float64)
    c = np.asarray(ceiling, dtype=np.float64)
    if r.shape != c.shape:
        raise MismatchError(expected_found("ceiling shape (one value per target)", r.shape, c.shape))
    ok = np.isfinite(c) & (c > min_ceiling)
    out = np.full(r.shape, np.nan)
    out[ok] = r[ok] / np.sqrt(c[ok])
    if clip:
        out = np.clip(out, -1.0, 1.0)
    return out
