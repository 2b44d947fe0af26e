"""Preparing runs for encoding models: z-scoring, FIR delays, run edges, PCA.

Every function works on a *list of runs* (one ``(n_trs_run, n_columns)`` array per fMRI
run) and never lets one run see another: delays are applied within each run, with zeros
at each run's start, unlike the voxelwise tutorials' delayer that shifts the concatenated
matrix (so a run's first TRs would see the previous run's end).

The order :func:`engine.encoding.fit.fit_encoding` uses is

- features: z-score each run -> (PCA fit on training runs) -> delay within each run ->
  drop run edges;
- brain data: drop run edges -> z-score each run.

so that the delayed features of a kept TR are the real earlier TRs (not padding) whenever
the dropped edge is at least as long as the largest delay.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np

from ..errors import ConfigError, DataError, MismatchError, expected_found

__all__ = ["check_runs", "zscore_runs", "delay_runs", "drop_edges", "RunPCA", "concat_runs",
           "polynomial_drift", "cosine_drift", "nuisance_basis", "clean_runs", "fill_confounds",
           "raw_units_runs", "RAW_UNITS_RATIO"]

#: A run whose columns' median |mean| / std exceeds this looks like raw scanner units
#: (BOLD around 1000 with fluctuations of about 1%): detrending and z-scoring are needed.
RAW_UNITS_RATIO = 10.0


def check_runs(runs, what: str = "runs") -> List[np.ndarray]:
    """Return ``runs`` as a list of 2-D float32 arrays, raising :class:`DataError` otherwise.

    Parameters
    ----------
    runs : sequence of array-like, each (n_trs_run, n_columns) or (n_trs_run,)
        One array per run. 1-D arrays become one column.
    what : str
        Name used in error messages ("feature runs", "brain runs").
    """
    if isinstance(runs, np.ndarray) and runs.ndim == 2:
        runs = [runs]
    if not isinstance(runs, (list, tuple)) or len(runs) == 0:
        raise DataError(expected_found(what, "a non-empty list of (n_trs, n) arrays",
                                       type(runs).__name__ if not isinstance(runs, (list, tuple))
                                       else "an empty list"))
    out = []
    n_cols = None
    for i, r in enumerate(runs):
        a = np.asarray(r)
        if a.ndim == 1:
            a = a[:, None]
        if a.ndim != 2:
            raise DataError(expected_found(f"{what}[{i}]", "a 2-D (n_trs, n) array", f"shape {a.shape}"))
        if not np.issubdtype(a.dtype, np.number):
            raise DataError(expected_found(f"{what}[{i}]", "numbers", f"dtype {a.dtype}"))
        a = np.ascontiguousarray(a, dtype=np.float32)
        if not np.all(np.isfinite(a)):
            bad = int((~np.isfinite(a)).sum())
            raise DataError(expected_found(f"{what}[{i}]", "finite values", f"{bad} NaN/inf values"))
        if n_cols is None:
            n_cols = a.shape[1]
        elif a.shape[1] != n_cols:
            raise MismatchError(expected_found(f"{what}[{i}] columns", n_cols, a.shape[1]))
        out.append(a)
    return out


def zscore_columns(a, axis: int = 0, eps: float = 0.0) -> np.ndarray:
    """Centre and scale to unit (population) standard deviation along ``axis``, in float64.

    The one z-score of the project: columns whose standard deviation is ``<= eps`` (constant
    columns with the default 0) become zeros, never NaN. A 1-D array is one column.

    Parameters
    ----------
    a : array_like
    axis : int
        The axis of time (TRs): 0 for (n_trs, n_columns), 1 for (n_columns, n_trs).
    eps : float
        Standard deviations at or below it count as constant.

    Returns
    -------
    ndarray float64, the shape of ``a``
    """
    z = np.array(a, dtype=np.float64)   # a copy: the caller's array is never modified
    z -= z.mean(axis=axis, keepdims=True)
    sd = np.sqrt(np.mean(z * z, axis=axis, keepdims=True))
    const = sd <= eps
    z /= np.where(const, 1.0, sd)
    if const.any():
        z *= ~const
    return z


def zscore_runs(runs: Sequence[np.ndarray], eps: float = 1e-8) -> List[np.ndarray]:
    """Z-score every column within each run (mean 0, standard deviation 1 over TRs).

    Constant columns become zeros (not NaN).

    Parameters
    ----------
    runs : list of (n_trs_run, n_columns) arrays

    Returns
    -------
    list of (n_trs_run, n_columns) float32 arrays
    """
    return [zscore_columns(r, axis=0, eps=eps).astype(np.float32) for r in check_runs(runs)]


def delay_runs(runs: Sequence[np.ndarray], delays: Sequence[int] = (1, 2, 3, 4)) -> List[np.ndarray]:
    """Stack FIR-delayed copies of the features, within each run.

    Row ``t`` of the block for delay ``d`` holds the features at TR ``t - d`` of the same
    run (zeros when ``t - d < 0``; negative delays look ahead, zeros past the end).

    Parameters
    ----------
    runs : list of (n_trs_run, n_features) arrays
    delays : sequence of int
        Delays in TRs.

    Returns
    -------
    list of (n_trs_run, n_features * n_delays) float32 arrays, blocks ordered as ``delays``
    (columns ``[j * n_features:(j + 1) * n_features]`` hold delay ``delays[j]``).
    """
    delays = [int(d) for d in delays]
    if len(delays) == 0:
        raise ConfigError(expected_found("delays", "at least one delay (in TRs)", "none"))
    out = []
    for r in check_runs(runs):
        n, p = r.shape
        d_run = np.zeros((n, p * len(delays)), dtype=np.float32)
        for j, d in enumerate(delays):
            block = d_run[:, j * p:(j + 1) * p]
            if d >= 0:
                if d < n:
                    block[d:] = r[:n - d]
            else:
                if -d < n:
                    block[:n + d] = r[-d:]
        out.append(d_run)
    return out


def drop_edges(runs: Sequence[np.ndarray], n_start: int = 0, n_end: int = 0) -> List[np.ndarray]:
    """Drop the first ``n_start`` and last ``n_end`` TRs of every run.

    Apply the same numbers to features and brain data so TRs stay paired.

    Raises
    ------
    DataError
        When a run is not longer than ``n_start + n_end``.
    """
    n_start, n_end = int(n_start), int(n_end)
    if n_start < 0 or n_end < 0:
        raise ConfigError(expected_found("drop_edges", "non-negative TR counts", (n_start, n_end)))
    out = []
    for i, r in enumerate(check_runs(runs)):
        if r.shape[0] <= n_start + n_end:
            raise DataError(expected_found(f"run {i} length after dropping {n_start}+{n_end} edge TRs",
                                           "at least 1 TR", f"{r.shape[0]} TRs"))
        out.append(np.ascontiguousarray(r[n_start:r.shape[0] - n_end]))
    return out


def concat_runs(runs: Sequence[np.ndarray], indices: Optional[Sequence[int]] = None) -> np.ndarray:
    """Concatenate runs (all, or those at ``indices``) along TRs."""
    if indices is None:
        indices = range(len(runs))
    return np.concatenate([runs[i] for i in indices], axis=0)


class RunPCA:
    """PCA of one feature space, fit on training runs only.

    Parameters
    ----------
    n_components : int or float
        Number of components to keep (int, e.g. 250 as in the Algonauts baseline), or the
        fraction of variance to explain (float in (0, 1), e.g. 0.999 as in Lu et al.).
    """

    def __init__(self, n_components) -> None:
        self.n_components = n_components

    def fit(self, runs: Sequence[np.ndarray]) -> "RunPCA":
        x = concat_runs(check_runs(runs)).astype(np.float64)  # n_trs_train, n_features
        self.mean_ = x.mean(0)
        x -= self.mean_
        # SVD of the (smaller) Gram matrix would square the condition number; use the data.
        _, s, vt = np.linalg.svd(x, full_matrices=False)
        var = s ** 2
        k = self.n_components
        if isinstance(k, float) and 0 < k < 1:
            frac = np.cumsum(var) / max(var.sum(), 1e-300)
            k = int(np.searchsorted(frac, k) + 1)
        k = int(k)
        if k < 1:
            raise ConfigError(expected_found("PCA components", "a positive int or a float in (0, 1)",
                                             self.n_components))
        k = min(k, vt.shape[0])
        self.components_ = vt[:k]                 # n_components, n_features
        self.explained_variance_ratio_ = var[:k] / max(var.sum(), 1e-300)
        return self

    def transform(self, runs: Sequence[np.ndarray]) -> List[np.ndarray]:
        """Project runs on the components (centred with the training mean)."""
        return [((r.astype(np.float64) - self.mean_) @ self.components_.T).astype(np.float32)
                for r in check_runs(runs)]


# ---- nuisance regression: detrending, high-pass, confounds -----------------------------------
def polynomial_drift(n_trs: int, order: int) -> np.ndarray:
    """Legendre polynomials of degree 0..``order`` over a run: (n_trs, order + 1) float64.

    They span the same space as ``1, t, ..., t**order`` (what a polynomial detrend removes),
    with a well-conditioned basis.
    """
    t = np.linspace(-1.0, 1.0, int(n_trs))
    return np.polynomial.legendre.legvander(t, int(order))


def cosine_drift(n_trs: int, tr_s: float, high_pass_s: float) -> np.ndarray:
    """Discrete cosine drift basis of a high-pass filter with cut-off period ``high_pass_s``.

    SPM's / nilearn's ``cosine`` drift model (``nilearn.glm.first_level.design_matrix``):
    the cosines ``sqrt(2/n) cos(pi k (t + 0.5) / n)`` for ``k = 1..K``, ``K = floor(2 n TR /
    high_pass_s)`` (capped at ``n - 1``). Returns (n_trs, K) float64
    (K may be 0; the constant term is not included).
    """
    n = int(n_trs)
    # nilearn.glm.first_level.design_matrix / nilearn.signal.create_cosine_drift:
    # order = min(n - 1, floor(2 n high_pass_hz tr)) cosines k = 1..order
    order = min(n - 1, int(np.floor(2 * n * (1.0 / float(high_pass_s)) * float(tr_s))))
    t = np.arange(n)
    basis = np.sqrt(2.0 / n) * np.cos(np.pi / n * (t[:, None] + 0.5) * np.arange(1, order + 1)[None, :])
    return basis.reshape(n, max(order, 0))


def fill_confounds(confounds: np.ndarray) -> np.ndarray:
    """Confound table with non-finite entries (fMRIPrep's ``n/a`` first rows) set to the column mean.

    A column that is entirely non-finite or constant is dropped (it carries nothing).
    """
    c = np.asarray(confounds, dtype=np.float64)
    if c.ndim == 1:
        c = c[:, None]
    c = c.copy()
    keep = []
    for j in range(c.shape[1]):
        ok = np.isfinite(c[:, j])
        if not ok.any():
            continue
        c[~ok, j] = c[ok, j].mean()
        if np.ptp(c[:, j]) > 0:
            keep.append(j)
    return c[:, keep]


def nuisance_basis(n_trs: int, detrend: Optional[int] = 1, high_pass_s: Optional[float] = None,
                   tr_s: Optional[float] = None, confounds: Optional[np.ndarray] = None) -> np.ndarray:
    """Columns regressed out of a run: polynomial drift, cosine drift and confounds, (n_trs, k).

    The constant is always included when anything is (the data are centred anyway).
    """
    cols = []
    if detrend is not None:
        cols.append(polynomial_drift(n_trs, int(detrend))[:, 1:])
    if high_pass_s is not None:
        if tr_s is None:
            raise ConfigError("high_pass_s: a high-pass cut-off in seconds needs the TR; expected a TR "
                              "(from the runs, the project or --tr), found none")
        cols.append(cosine_drift(n_trs, tr_s, high_pass_s))
    if confounds is not None:
        c = fill_confounds(confounds)
        if c.shape[0] != n_trs:
            raise MismatchError(expected_found("confound rows (one per TR of the run)", n_trs, c.shape[0]))
        cols.append(c)
    if not cols:
        return np.zeros((int(n_trs), 0))
    cols.insert(0, np.ones((int(n_trs), 1)))
    return np.concatenate(cols, axis=1)


def clean_runs(runs: Sequence[np.ndarray], detrend: Optional[int] = 1, high_pass_s: Optional[float] = None,
               tr_s: Optional[float] = None,
               confounds_runs: Optional[Sequence[Optional[np.ndarray]]] = None) -> List[np.ndarray]:
    """Regress drift and confounds out of every run (least squares, per run, float64).

    One joint projection per run on ``[1, Legendre polynomials up to detrend, cosine drift of
    the high-pass, confounds]``; this equals ``nilearn.signal.clean(detrend=True,
    filter="cosine", high_pass=1/high_pass_s, confounds=..., standardize=False)`` (which
    detrends signals and confounds, then projects the confounds and cosines out).

    Parameters
    ----------
    runs : list of (n_trs_run, n_columns) arrays
    detrend : int or None
        Polynomial order (1: linear detrend); None: none (not even the mean).
    high_pass_s : float, optional
        Cut-off period in seconds (e.g. 128); needs ``tr_s``.
    tr_s : float, optional
    confounds_runs : list of (n_trs_run, k) arrays (or None per run), optional
        Non-finite entries are replaced by the column mean (:func:`fill_confounds`).

    Returns
    -------
    list of (n_trs_run, n_columns) float32 arrays
    """
    runs = check_runs(runs)
    if confounds_runs is not None and len(confounds_runs) != len(runs):
        raise MismatchError(expected_found("confound tables (one per run)", len(runs), len(confounds_runs)))
    out = []
    for i, r in enumerate(runs):
        conf = None if confounds_runs is None else confounds_runs[i]
        basis = nuisance_basis(r.shape[0], detrend, high_pass_s, tr_s, conf)
        if basis.shape[1] == 0:
            out.append(r)
            continue
        # orthonormal basis of the nuisance span; numerically dependent columns (a confound
        # equal to the linear trend) are dropped
        scale = np.linalg.norm(basis, axis=0)
        u, sv, _ = np.linalg.svd(basis / np.where(scale > 0, scale, 1.0), full_matrices=False)
        q = u[:, sv > 1e-10 * max(float(sv.max()), 1e-300)]
        r64 = r.astype(np.float64)
        out.append((r64 - q @ (q.T @ r64)).astype(np.float32))
    return out


def raw_units_runs(runs: Sequence[np.ndarray], ratio: float = RAW_UNITS_RATIO) -> List[int]:
    """Indices of runs that look like raw scanner units: median over columns of |mean| / std > ``ratio``."""
    out = []
    for i, r in enumerate(check_runs(runs)):
        r64 = r.astype(np.float64)
        std = r64.std(0)
        ok = std > 0
        if not ok.any():
            continue
        if float(np.median(np.abs(r64.mean(0)[ok]) / std[ok])) > ratio:
            out.append(i)
    return out
