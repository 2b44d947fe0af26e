"""Statistics on encoding scores: FDR, permutation p-values, block bootstrap, model comparison.

Everything here works on numbers an :class:`~engine.encoding.results.EncodingResult`
already holds (scores, held-out predictions, measured responses); nothing here refits a
model. Refitting under a null lives in :mod:`engine.encoding.permutation`.

Conventions
-----------
- A *score* is the Pearson correlation between a held-out prediction and the measured
  response of one target (voxel, vertex or parcel).
- How runs are pooled into a score (``score=``):

  - ``"auto"`` (default): the outer folds stored in an EncodingResult (``result.folds``):
    r per fold on the fold's held-out runs concatenated, mean over folds -- exactly how
    :func:`engine.encoding.fit.fit_encoding` computes ``EncodingResult.scores`` (with
    leave-one-run-out, the mean over runs of each run's r). Without folds: ``"concat"``.
  - ``"concat"``: one r on all held-out runs concatenated;
  - ``"mean_runs"``: r per run, averaged over runs;
  - a list of lists of run indices: r per group, averaged over groups.
- *Time blocks* are consecutive TRs (``block_trs`` long, the last block of a run shorter)
  that never cross a run boundary. Resampling or swapping whole blocks keeps the
  autocorrelation of the BOLD signal inside each block, which is why p-values and
  confidence intervals from blocks are not over-confident the way TR-wise ones are.
- Bootstrap confidence intervals are percentile intervals; block bootstraps are
  stratified by run (each run contributes as many resampled blocks as it has).
- Model comparison swaps blocks between the two models' predictions after standardising
  each model's predictions (centred, unit sd, per target) within each score group, so a
  swapped series mixes predictions on one scale, and widens the null for cross-validated
  folds that train each other (see :func:`compare_models`, :func:`cv_variance_factor`).
"""

from __future__ import annotations

import warnings

from dataclasses import dataclass, field
from typing import Iterator, Optional, Sequence

import numpy as np

from ..errors import ConfigError, MismatchError, expected_found
from .results import pearson_r  # the one Pearson r of the project (constant column -> 0)

__all__ = [
    "pearson_r",
    "fdr_bh",
    "permutation_p_values",
    "max_statistic_p_values",
    "TimeBlocks",
    "make_time_blocks",
    "block_bootstrap_scores",
    "bootstrap_ci_targets",
    "ModelComparison",
    "compare_models",
    "compare_models_job",
    "cv_variance_factor",
    "widening_text",
    "sign_flip_test",
    "comparison_tables",
    "comparison_tables_job",
    "nan_percentile",
]

SCORE_MODES = ("auto", "concat", "mean_runs")


# --------------------------------------------------------------------------- basics

def fdr_bh(p_values: np.ndarray, alpha: float = 0.05, method: str = "bh"):
    """Benjamini-Hochberg (or Benjamini-Yekutieli) false discovery rate across targets.

    Parameters
    ----------
    p_values : ndarray, shape (n_targets,)
        NaN entries (targets without a p-value) are left out of the correction and
        come back as NaN q-values, not rejected.
    alpha : float
        FDR level at which ``reject`` is computed.
    method : {"bh", "by"}
        "bh": independent or positively dependent tests. "by": any dependence
        (more conservative by a factor sum(1/i)).

    Returns
    -------
    reject : ndarray of bool, shape (n_targets,)
        True where the target is a discovery at FDR ``alpha`` (q <= alpha).
    q_values : ndarray, shape (n_targets,)
        Adjusted p-values (equal to ``scipy.stats.false_discovery_control``).
    """
    if method not in ("bh", "by"):
        raise ConfigError(f"FDR method: expected one of 'bh', 'by', found {method!r}")
    p = np.asarray(p_values, dtype=np.float64).ravel()
    q = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    pv = p[ok]
    if pv.size and (pv.min() < 0 or pv.max() > 1):
        raise ConfigError(expected_found("p-values", "values in [0, 1]",
                                         f"range [{pv.min()}, {pv.max()}]"))
    m = pv.size
    if m:
        order = np.argsort(pv)
        ranked = pv[order] * m / np.arange(1, m + 1)
        if method == "by":
            ranked = ranked * np.sum(1.0 / np.arange(1, m + 1))
        # step-up: q_(i) = min_{j >= i} p_(j) m / j
        ranked = np.minimum.accumulate(ranked[::-1])[::-1]
        qv = np.empty(m)
        qv[order] = np.clip(ranked, 0.0, 1.0)
        q[ok] = qv
    reject = np.zeros(p.shape, dtype=bool)
    reject[ok] = q[ok] <= alpha
    return reject, q


def permutation_p_values(observed: np.ndarray, null: np.ndarray, tail: str = "greater") -> np.ndarray:
    """p = (1 + #{null >= observed}) / (1 + n_perm), per target.

    Parameters
    ----------
    observed : ndarray, shape (n_targets,)
    null : ndarray, shape (n_perm, n_targets)
        Scores of the same analysis under the null (one row per permutation).
    tail : {"greater", "two-sided"}
        "two-sided" compares absolute values.

    Returns
    -------
    p_values : ndarray, shape (n_targets,)
        Never 0 (the observed data counts as one draw of the null). NaN where the
        observed score is NaN; NaN null draws count as not exceeding.
    """
    obs = np.asarray(observed, dtype=np.float64)
    nul = np.asarray(null, dtype=np.float64)
    if nul.ndim != 2 or nul.shape[1] != obs.shape[0]:
        raise MismatchError(expected_found("null distribution shape",
                                           f"(n_perm, {obs.shape[0]})", nul.shape))
    if tail == "two-sided":
        obs, nul = np.abs(obs), np.abs(nul)
    elif tail != "greater":
        raise ConfigError(f"tail: expected 'greater' or 'two-sided', found {tail!r}")
    with np.errstate(invalid="ignore"):
        exceed = np.sum(nul >= obs[None, :], axis=0)
    p = (1.0 + exceed) / (1.0 + nul.shape[0])
    p[~np.isfinite(obs)] = np.nan
    return p


def max_statistic_p_values(observed: np.ndarray, null: np.ndarray, tail: str = "greater") -> np.ndarray:
    """Family-wise error corrected p-values from the maximum over targets of each null draw.

    p_t = (1 + #{max_s null[k, s] >= observed[t]}) / (1 + n_perm). Controls the
    family-wise error rate across all targets (stricter than FDR).
    """
    obs = np.asarray(observed, dtype=np.float64)
    nul = np.asarray(null, dtype=np.float64)
    if tail == "two-sided":
        obs, nul = np.abs(obs), np.abs(nul)
    elif tail != "greater":
        raise ConfigError(f"tail: expected 'greater' or 'two-sided', found {tail!r}")
    null_max = np.max(np.where(np.isfinite(nul), nul, -np.inf), axis=1)  # n_perm
    with np.errstate(invalid="ignore"):
        exceed = np.sum(null_max[:, None] >= obs[None, :], axis=0)
    p = (1.0 + exceed) / (1.0 + nul.shape[0])
    p[~np.isfinite(obs)] = np.nan
    return p


def nan_percentile(draws: np.ndarray, q, axis: int = 0) -> np.ndarray:
    """``np.nanpercentile`` that returns NaN for a column without finite draws, silently
    (no "All-NaN slice" warning: a target without a score has no interval)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanpercentile(draws, q, axis=axis)


# --------------------------------------------------------------------------- time blocks

@dataclass
class TimeBlocks:
    """Consecutive TRs grouped into blocks that never cross a run boundary.

    Attributes
    ----------
    starts : ndarray (n_blocks,)  index of each block's first TR in the concatenated runs
    lengths : ndarray (n_blocks,) TRs per block
    run_of_block : ndarray (n_blocks,) run index of each block
    run_lengths : tuple of int
    """

    starts: np.ndarray
    lengths: np.ndarray
    run_of_block: np.ndarray
    run_lengths: tuple

    @property
    def n_blocks(self) -> int:
        return int(self.starts.size)

    @property
    def n_runs(self) -> int:
        return len(self.run_lengths)


def make_time_blocks(run_lengths: Sequence[int], block_trs: int = 10) -> TimeBlocks:
    """Cut each run into blocks of ``block_trs`` TRs (the last block of a run may be shorter).

    Parameters
    ----------
    run_lengths : sequence of int
        TRs per run, in the order the runs are concatenated.
    block_trs : int
        Block length in TRs (10 TRs ~ 15 s at TR 1.49 s, longer than the HRF).
    """
    if int(block_trs) < 1:
        raise ConfigError(expected_found("block_trs", "an integer >= 1", block_trs))
    starts, lengths, runs = [], [], []
    offset = 0
    for k, n in enumerate(run_lengths):
        n = int(n)
        for s in range(0, n, int(block_trs)):
            starts.append(offset + s)
            lengths.append(min(int(block_trs), n - s))
            runs.append(k)
        offset += n
    return TimeBlocks(np.asarray(starts, dtype=np.int64), np.asarray(lengths, dtype=np.int64),
                      np.asarray(runs, dtype=np.int64), tuple(int(n) for n in run_lengths))


def _as_run_lists(result_or_predictions, measured=None):
    """(predictions list, measured list) from an EncodingResult-like object or two lists."""
    if measured is None:
        preds = getattr(result_or_predictions, "predictions", None)
        meas = getattr(result_or_predictions, "measured", None)
        if preds is None or meas is None:
            raise ConfigError("expected an EncodingResult with held-out predictions and measured "
                              "responses, or two lists of arrays; found "
                              f"{type(result_or_predictions).__name__}")
    else:
        preds, meas = result_or_predictions, measured
    if isinstance(preds, np.ndarray):
        preds = [preds]
    if isinstance(meas, np.ndarray):
        meas = [meas]
    preds, meas = list(preds), list(meas)
    if len(preds) != len(meas):
        raise MismatchError(expected_found("number of runs (predictions vs measured)",
                                           len(meas), len(preds)))
    for k, (p, y) in enumerate(zip(preds, meas)):
        if np.shape(p) != np.shape(y):
            raise MismatchError(expected_found(f"run {k} prediction shape", np.shape(y), np.shape(p)))
    return preds, meas


def _fold_segments(result, preds: list, meas: list, score):
    """A within-run result's runs cut into its outer folds' test segments, with one score group per
    fold (the segment of every run it held out), so that ``score="auto"`` reproduces the saved
    scores (r over each fold's held-out samples, mean over folds). None for any other result or
    score rule."""
    cv = ((getattr(result, "provenance", None) or {}).get("cv") or {}) if result is not None else {}
    n_blocks = int(cv.get("n_blocks") or 0)
    if not (isinstance(score, str) and score == "auto" and cv.get("kind") == "within-run" and n_blocks >= 2):
        return None
    pieces_p, pieces_y, groups = [], [], [[] for _ in range(n_blocks)]
    for p, y in zip(preds, meas):
        # the segments fit.make_cv_plan tests: np.array_split of each run into n_blocks parts
        for b, idx in enumerate(np.array_split(np.arange(np.shape(p)[0]), n_blocks)):
            groups[b].append(len(pieces_p))
            pieces_p.append(np.asarray(p)[idx])
            pieces_y.append(np.asarray(y)[idx])
    return pieces_p, pieces_y, groups


def _block_sums(blocks: TimeBlocks, columns: Sequence[np.ndarray]) -> np.ndarray:
    """Per-block sums of each column array; returns (n_blocks, n_columns, n_targets) float64."""
    out = np.empty((blocks.n_blocks, len(columns), columns[0].shape[1]))
    for j, c in enumerate(columns):
        out[:, j, :] = np.add.reduceat(c, blocks.starts, axis=0)
    return out


class _PairStats:
    """Sufficient statistics of (prediction, measured) per time block.

    Holds sums (n, Σp, Σy, Σpp, Σyy, Σpy) per block, computed on globally centred
    data (r is translation invariant; centring only avoids cancellation), so any
    resample or swap of blocks gives r by a matrix product.
    """

    # column order in .sums
    P, Y, PP, YY, PY = range(5)

    def __init__(self, preds: list, meas: list, blocks: TimeBlocks, y_mean=None, p_mean=None):
        p = np.concatenate([np.asarray(a, dtype=np.float64) for a in preds], axis=0)
        y = np.concatenate([np.asarray(a, dtype=np.float64) for a in meas], axis=0)
        self.p_mean = p.mean(axis=0) if p_mean is None else p_mean
        self.y_mean = y.mean(axis=0) if y_mean is None else y_mean
        p = p - self.p_mean
        y = y - self.y_mean
        self.blocks = blocks
        self.n = blocks.lengths.astype(np.float64)  # n_blocks
        self.sums = _block_sums(blocks, [p, y, p * p, y * y, p * y])  # n_blocks, 5, n_targets

    @staticmethod
    def r_from_sums(n, s):
        """r from summed statistics; n (...,), s (..., 5, n_targets)."""
        n = np.asarray(n, dtype=np.float64)[..., None]
        sp, sy = s[..., 0, :], s[..., 1, :]
        cov = s[..., 4, :] - sp * sy / n
        vp = s[..., 2, :] - sp * sp / n
        vy = s[..., 3, :] - sy * sy / n
        # the rule of results.pearson_r: a constant column scores 0. Each variance is compared
        # with its own sum of squares (the columns are centred), so a nearly constant
        # prediction keeps its true, scale-invariant r.
        const = (vp <= 1e-12 * np.abs(s[..., 2, :])) | (vy <= 1e-12 * np.abs(s[..., 3, :]))
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.where(const, 0.0, cov / np.sqrt(np.where(const, 1.0, vp * vy)))
        return r

    def scores_from_weights(self, weights: np.ndarray, groups: list) -> np.ndarray:
        """Scores for block weights (n_draws, n_blocks) -> (n_draws, n_targets).

        ``groups``: lists of run indices; r per group (its runs' blocks pooled), mean over groups.
        """
        w = np.asarray(weights, dtype=np.float64)
        flat = self.sums.reshape(self.blocks.n_blocks, -1)
        r_groups = []
        for g in groups:
            sel = np.isin(self.blocks.run_of_block, g)
            s = (w[:, sel] @ flat[sel]).reshape(w.shape[0], 5, -1)
            r_groups.append(self.r_from_sums(w[:, sel] @ self.n[sel], s))
        if len(r_groups) == 1:
            return r_groups[0]
        return np.mean(np.stack(r_groups), axis=0)   # no NaN: a constant column scores 0


def _score_groups(score, n_runs: int, result=None) -> list:
    """Run groups (lists of run indices) that pool into one r each; see the module docstring."""
    if isinstance(score, str):
        if score not in SCORE_MODES:
            raise ConfigError(f"score: expected one of {SCORE_MODES} or a list of run-index lists, "
                              f"found {score!r}")
        if score == "auto":
            folds = getattr(result, "folds", None)
            if folds:
                score = [list(f) for f in folds]
            else:
                score = "concat"
        if score == "concat":
            return [list(range(n_runs))]
        if score == "mean_runs":
            return [[k] for k in range(n_runs)]
    groups = [[int(k) for k in np.atleast_1d(g)] for g in score]
    if not groups or any(not g or min(g) < 0 or max(g) >= n_runs for g in groups):
        raise ConfigError(expected_found("score run groups", f"non-empty lists of run indices in [0, {n_runs})",
                                         score))
    return groups


def _bootstrap_weights(blocks: TimeBlocks, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Counts (n_boot, n_blocks): each run's blocks resampled with replacement within the run."""
    w = np.zeros((n_boot, blocks.n_blocks))
    for k in range(blocks.n_runs):
        idx = np.flatnonzero(blocks.run_of_block == k)
        if idx.size == 0:
            continue
        draws = rng.integers(0, idx.size, size=(n_boot, idx.size))
        for b in range(n_boot):
            w[b, idx] = np.bincount(draws[b], minlength=idx.size)
    return w


def block_bootstrap_scores(result_or_predictions, measured=None, block_trs: int = 10,
                           n_boot: int = 1000, seed: int = 0, score="auto",
                           batch: int = 100, cv_factor="auto") -> Iterator[np.ndarray]:
    """Scores recomputed on block-bootstrap resamples of the held-out time series.

    Parameters
    ----------
    result_or_predictions : EncodingResult or list of (n_trs_run, n_targets) arrays
        Held-out predictions per run (or a result holding them and ``measured``).
    measured : list of (n_trs_run, n_targets) arrays, optional
        Needed when the first argument is a list of predictions.
    block_trs : int
        Block length in TRs; blocks are resampled within their run.
    n_boot : int
        Number of bootstrap resamples.
    seed : int
        Seed of the resampling (same seed, same resamples).
    score : {"auto", "concat", "mean_runs"} or list of run-index lists
        How runs pool into a score (module docstring); "auto" reproduces ``result.scores``.
    batch : int
        Resamples per yielded batch (bounds memory: batch * n_targets * 5 floats).
    cv_factor : "auto" or float >= 1
        Variance factor for cross-validated folds that train each other: each draw's
        deviation from the score is multiplied by its square root. "auto":
        :func:`cv_variance_factor` of the result (1 for prediction lists). The resample
        holds each fold's predictions fixed; with LORO a run's noise also shaped the fit
        that predicts the other runs, which the resample cannot see.

    Yields
    ------
    scores : ndarray, shape (n_batch, n_targets), float64
    """
    preds, meas = _as_run_lists(result_or_predictions, measured)
    segments = _fold_segments(result_or_predictions if measured is None else None, preds, meas, score)
    if segments is not None:
        preds, meas, groups = segments
    else:
        groups = _score_groups(score, len(preds), result_or_predictions if measured is None else None)
    # only the runs that are scored: a train/test split has no held-out prediction (NaN) for its
    # training runs, which would otherwise spoil the pooled sums
    used = sorted({k for g in groups for k in g})
    index = {k: i for i, k in enumerate(used)}
    preds, meas = [preds[k] for k in used], [meas[k] for k in used]
    groups = [[index[k] for k in g] for g in groups]
    blocks = make_time_blocks([np.shape(p)[0] for p in preds], block_trs)
    stats = _PairStats(preds, meas, blocks)
    spread = np.sqrt(_resolve_cv_factor(cv_factor, [result_or_predictions] if measured is None else []))
    centre = stats.scores_from_weights(np.ones((1, blocks.n_blocks)), groups)[0] if spread != 1 else 0.0
    rng = np.random.default_rng(seed)
    done = 0
    while done < n_boot:
        nb = min(batch, n_boot - done)
        draws = stats.scores_from_weights(_bootstrap_weights(blocks, nb, rng), groups)
        yield draws if spread == 1 else centre + spread * (draws - centre)
        done += nb


def _resolve_cv_factor(cv_factor, results) -> float:
    """The variance factor to use: ``cv_factor`` itself, or with "auto" the largest
    :func:`cv_variance_factor` of ``results`` (1 when there are none)."""
    if isinstance(cv_factor, str) and cv_factor == "auto":
        return max([cv_variance_factor(r) for r in results], default=1.0)
    try:
        factor = float(cv_factor)
    except (TypeError, ValueError):
        factor = float("nan")
    if not np.isfinite(factor) or factor < 1.0:
        raise ConfigError(expected_found("cv_factor", "'auto' or a number >= 1", cv_factor))
    return factor


def bootstrap_ci_targets(result_or_predictions, measured=None, block_trs: int = 10,
                         n_boot: int = 1000, ci: float = 0.95, seed: int = 0,
                         score="auto", cv_factor="auto"):
    """Percentile confidence interval of each target's score from a block bootstrap
    (widened for cross-validated folds, see :func:`block_bootstrap_scores`).

    Returns
    -------
    low, high : ndarray, shape (n_targets,)
    """
    draws = np.concatenate(list(block_bootstrap_scores(
        result_or_predictions, measured, block_trs, n_boot, seed, score, cv_factor=cv_factor)), axis=0)
    q = [(1 - ci) / 2 * 100, (1 + ci) / 2 * 100]
    low, high = nan_percentile(draws, q, axis=0)
    return low, high


# --------------------------------------------------------------------------- model comparison

@dataclass
class ModelComparison:
    """Paired comparison of two models' held-out scores on the same targets.

    Attributes
    ----------
    scores_a, scores_b : (n_targets,) scores of model A and model B
    difference : (n_targets,) scores_a - scores_b
    p_values : (n_targets,) two-sided block-swap permutation p-values
    q_values : (n_targets,) Benjamini-Hochberg q-values of ``p_values``
    ci_low, ci_high : (n_targets,) block-bootstrap percentile CI of the difference
    null : (n_perm, n_targets) float32 differences under the swap null, widened for
        cross-validated folds (for region tests)
    boot : (n_boot, n_targets) float32 bootstrap differences, same widening (for region CIs)
    """

    scores_a: np.ndarray
    scores_b: np.ndarray
    difference: np.ndarray
    p_values: np.ndarray
    q_values: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    null: np.ndarray = field(repr=False)
    boot: np.ndarray = field(repr=False)
    settings: dict = field(default_factory=dict)


def compare_models(result_a, result_b, measured: Optional[list] = None, n_perm: int = 1000,
                   n_boot: int = 1000, block_trs: int = 10, ci: float = 0.95, seed: int = 0,
                   score="auto", alpha: float = 0.05, token=None, on_progress=None,
                   cv_factor="auto") -> ModelComparison:
    """Is model A closer to the brain than model B, target by target?

    Both models' held-out predictions of the same measured responses are compared.

    - **p-values**: block-swap permutation on standardised predictions. Each model's
      predictions are first centred and scaled to unit standard deviation within each
      score group (the TRs one r is computed on, see ``score``), per target; an affine
      map of a whole group leaves that model's r unchanged, so the observed difference is
      the same. Under the null that the two models predict equally well, which model made
      the (standardised) prediction of a given time block is exchangeable; each
      permutation swaps A's and B's predictions in a random half of the blocks (the same
      blocks for every target, which keeps the spatial correlation for region-level tests)
      and recomputes the score difference. Standardising matters when the two ridges
      shrink their predictions differently (one model's best alpha at the top of the grid
      gives a nearly constant prediction): r is scale-free for a whole series but not for
      a mixture of blocks on two scales, where the larger-scale blocks dominate and the
      swap null widens. Two-sided: p = (1 + #{|null| >= |observed|}) / (1 + n_perm).
    - **cross-validated folds**: the swap holds each fold's fitted predictions fixed, which
      is exact for a train/test split but too narrow when the folds train each other
      (leave-one-run-out, K-fold, within-run CV): the null's differences are multiplied by
      ``sqrt(cv_variance_factor(result))`` (2 in variance for LORO; see
      :func:`cv_variance_factor`). Without it about 15 % of pure-noise targets reached
      p <= 0.05 under LORO (``bench/compare_calibration.py``).
    - **confidence intervals**: block bootstrap (blocks resampled within runs, the same
      resample for both models), percentile interval of the difference (the
      standardisation does not change a resample's r), its deviations from the observed
      difference widened by the same factor.

    Parameters
    ----------
    result_a, result_b : EncodingResult or list of (n_trs_run, n_targets) predictions
    measured : list of (n_trs_run, n_targets), optional
        Needed when predictions are passed as lists; otherwise taken from ``result_a``.
    n_perm, n_boot : int
    block_trs : int
    ci : float
        Confidence level of the interval.
    seed : int
    score : {"auto", "concat", "mean_runs"} or list of run-index lists
        "auto" uses ``result_a.folds`` when present (reproducing its ``scores``).
    alpha : float
        FDR level stored in ``settings`` (q-values are returned regardless).
    token : CancelToken, optional
        Checked between batches of 100 draws.
    on_progress : callable, optional
        Receives a Progress per batch of draws.
    cv_factor : "auto" or float >= 1
        Variance factor of the null and the interval. "auto": the larger
        :func:`cv_variance_factor` of the two results (1 when predictions are passed as
        lists: nothing says how they were fitted); give 1 for predictions from a held-out
        split, 2 for fold-averaged cross-validated predictions passed as lists.

    Returns
    -------
    ModelComparison
        ``settings["cv_factor"]`` holds the factor used.
    """
    from ..jobs import run_sync

    return run_sync(compare_models_job(result_a, result_b, measured, n_perm, n_boot, block_trs, ci, seed,
                                       score, alpha, cv_factor=cv_factor), token=token, on_progress=on_progress)


def compare_models_job(result_a, result_b, measured: Optional[list] = None, n_perm: int = 1000,
                       n_boot: int = 1000, block_trs: int = 10, ci: float = 0.95, seed: int = 0,
                       score="auto", alpha: float = 0.05, token=None, cv_factor="auto"):
    """Job form of :func:`compare_models`: yields Progress per batch of 100 draws."""
    from ..jobs import Progress

    total = -(-n_perm // 100) + -(-n_boot // 100)
    step = 0
    if measured is None:
        preds_a, meas = _as_run_lists(result_a)
        preds_b, meas_b = _as_run_lists(result_b)
        if len(meas_b) != len(meas) or any(np.shape(a) != np.shape(b) for a, b in zip(meas, meas_b)):
            raise MismatchError(expected_found("measured runs of model B",
                                               [np.shape(a) for a in meas],
                                               [np.shape(b) for b in meas_b]))
    else:
        preds_a, meas = _as_run_lists(result_a, measured)
        preds_b, _ = _as_run_lists(result_b, measured)
    segments = _fold_segments(result_a if measured is None else None, preds_a, meas, score)
    if segments is not None:     # within-run CV: each fold's test segments, as the saved scores were made
        preds_a, meas, groups = segments
        preds_b = _fold_segments(result_a, preds_b, meas_b, score)[0]
    else:
        groups = _score_groups(score, len(preds_a), result_a if measured is None else None)
    blocks = make_time_blocks([np.shape(p)[0] for p in preds_a], block_trs)
    # per score group: each model's predictions standardised over the group's TRs (see the docstring)
    pairs = [_StandardisedPair(preds_a, preds_b, meas, g, block_trs, blocks) for g in groups]
    ones = np.ones((1, blocks.n_blocks))
    r_a = np.mean([pr.sa.scores_from_weights(ones[:, pr.sel], [pr.all_runs])[0] for pr in pairs], axis=0)
    r_b = np.mean([pr.sb.scores_from_weights(ones[:, pr.sel], [pr.all_runs])[0] for pr in pairs], axis=0)
    centre = r_a - r_b   # the unresampled statistic of the resampling below: its draws widen around it
    # one score: results compared with their saved per-target scores (never recomputed with
    # another rule); the swap null below is centred on the same statistic.
    saved_a, saved_b = _saved_scores(result_a, score), _saved_scores(result_b, score)
    if saved_a is not None:
        r_a = saved_a
    if saved_b is not None:
        r_b = saved_b
    diff = r_a - r_b
    factor = _resolve_cv_factor(cv_factor, [result_a, result_b] if measured is None else [])
    spread = np.sqrt(factor)   # the swap's differences (and the bootstrap's deviations) widen by this

    rng = np.random.default_rng(seed)
    null = np.empty((n_perm, diff.size), dtype=np.float32)
    for start in range(0, n_perm, 100):
        nb = min(100, n_perm - start)
        m = rng.integers(0, 2, size=(nb, blocks.n_blocks)).astype(np.float64)
        null[start:start + nb] = spread * np.mean([pr.swap(m) for pr in pairs], axis=0)
        step += 1
        yield Progress(step, total, f"model comparison: {start + nb}/{n_perm} permutations")
    p = permutation_p_values(diff, null, tail="two-sided")
    _, q = fdr_bh(p)

    boot = np.empty((n_boot, diff.size), dtype=np.float32)
    for start in range(0, n_boot, 100):
        nb = min(100, n_boot - start)
        w = _bootstrap_weights(blocks, nb, rng)
        draws = np.mean([pr.sa.scores_from_weights(w[:, pr.sel], [pr.all_runs])
                         - pr.sb.scores_from_weights(w[:, pr.sel], [pr.all_runs]) for pr in pairs], axis=0)
        boot[start:start + nb] = draws if spread == 1 else centre + spread * (draws - centre)
        step += 1
        yield Progress(step, total, f"model comparison: {start + nb}/{n_boot} bootstrap resamples")
    qs = [(1 - ci) / 2 * 100, (1 + ci) / 2 * 100]
    low, high = nan_percentile(boot, qs, axis=0)
    return ModelComparison(r_a, r_b, diff, p, q, low, high, null, boot,
                           dict(n_perm=n_perm, n_boot=n_boot, block_trs=block_trs, ci=ci,
                                seed=seed, score=groups, alpha=alpha, cv_factor=factor,
                                null=NULL_DESCRIPTION + widening_text({"cv_factor": factor}),
                                interval="block bootstrap (percentile), stratified by run"
                                         + widening_text({"cv_factor": factor})))


NULL_DESCRIPTION = ("block swap of A/B predictions, each model's predictions standardised "
                    "(centred, unit sd) per target within each score group")


def cv_variance_factor(result) -> float:
    """How much wider the swap null must be for a result's fold-averaged cross-validated score.

    The block swap (and the block bootstrap) hold each fold's fitted predictions fixed and
    treat the folds as independent. With cross-validation they are not: when fold k is
    tested on run i and trained on run j while fold l is tested on run j and trained on run
    i, the term <noise_i, fit-on-noise_j> enters both folds' r with the same sign (the
    smoother that maps run j's noise into run i's prediction is the transpose of the one
    that maps i into j). Summed over folds, each such pair counts twice: the variance of
    the fold-averaged difference is twice the sum of the folds' own variances for those
    terms, while terms with runs that are only ever trained on (never tested) count once.
    On pure-noise targets (where the fitted predictions are all noise) this gives exactly
    2 for leave-one-run-out and for any K-fold partition; where the prediction is mostly
    signal, r is blind to the noise part along the signal and the true factor falls towards
    1, so the factor is conservative there. Measured with ``fit_encoding`` on AR(1) noise
    (2, 4, 8 runs LORO, 3-fold over 6 runs; ``bench/compare_calibration.py``): 14.5-15.8 % of
    targets at p <= 0.05 with the unwidened null, 2.2-5.5 % widened.

    Parameters
    ----------
    result : EncodingResult-like
        Uses ``folds`` (held-out runs per outer fold), the number of runs, and
        ``provenance["cv"]["kind"]``.

    Returns
    -------
    float
        1 for one held-out fold (a train/test split: the test runs train nothing) or no
        folds; 2 for within-run blocked CV (every block trains the others); otherwise
        ``(2 W_tt + W_to) / (W_tt + W_to)`` with ``W_tt`` the summed length products of
        pairs of runs tested in different folds (each trains the other) and ``W_to`` of
        (tested run, run never tested).
    """
    folds = [list(f) for f in (getattr(result, "folds", None) or [])]
    kind = ((getattr(result, "provenance", None) or {}).get("cv") or {}).get("kind")
    if kind == "within-run":
        return 2.0
    if len(folds) < 2:
        return 1.0
    preds = getattr(result, "predictions", None) or []
    lengths = [float(np.shape(p)[0]) for p in preds]
    tested = {i: k for k, f in enumerate(folds) for i in f}
    if not lengths or max(tested) >= len(lengths):
        return 2.0
    w_tt = w_to = 0.0
    for i, k in tested.items():
        for j, length_j in enumerate(lengths):
            if j in tested and tested[j] != k:
                w_tt += lengths[i] * length_j
            elif j not in tested:
                w_to += lengths[i] * length_j
    total = w_tt + w_to
    return float((2 * w_tt + w_to) / total) if total > 0 else 1.0


def widening_text(settings: dict) -> str:
    """", widened by sqrt(2) for cross-validated folds that train each other" (with a leading comma)
    when a comparison's ``settings["cv_factor"]`` is above 1, else "" (for one-line summaries and
    the comparison's own description of its null and interval)."""
    factor = float(settings.get("cv_factor", 1.0) or 1.0)
    if factor <= 1.0:
        return ""
    return f", widened by sqrt({factor:.3g}) for cross-validated folds that train each other"


def standardise_runs(preds: list) -> list:
    """Centre and scale each target's predictions to unit sd over all the given runs together.

    An affine map of the whole series, so Pearson r with any response on those TRs (or on a
    resample of their blocks) is unchanged. A constant column (zero variance in float64, the
    rule of :func:`pearson_r`) stays constant (all zeros): it scores 0 either way.

    Parameters
    ----------
    preds : list of (n_trs_run, n_targets) arrays

    Returns
    -------
    list of (n_trs_run, n_targets) float64 arrays
    """
    from .preprocess import zscore_columns

    cut = np.cumsum([0] + [np.shape(p)[0] for p in preds])
    z = zscore_columns(np.concatenate([np.asarray(p, dtype=np.float64) for p in preds], axis=0), axis=0)
    return [z[c0:c1] for c0, c1 in zip(cut[:-1], cut[1:])]


class _StandardisedPair:
    """Block sums of A and B for one score group (runs ``group``), each model standardised over it.

    ``sel`` marks the group's blocks among all blocks (in order), ``all_runs`` is the group as
    local run indices; a swap mask or bootstrap weight over all blocks is restricted with ``sel``.
    """

    def __init__(self, preds_a, preds_b, meas, group, block_trs, blocks):
        runs = sorted(set(int(k) for k in group))  # blocks of these runs, in the order of all blocks
        self.sel = np.isin(blocks.run_of_block, runs)
        self.all_runs = list(range(len(runs)))
        self.blocks = make_time_blocks([np.shape(preds_a[k])[0] for k in runs], block_trs)
        ya = [meas[k] for k in runs]
        self.sa = _PairStats(standardise_runs([preds_a[k] for k in runs]), ya, self.blocks, p_mean=0.0)
        self.sb = _PairStats(standardise_runs([preds_b[k] for k in runs]), ya, self.blocks, p_mean=0.0,
                             y_mean=self.sa.y_mean)
        nb = self.blocks.n_blocks
        self.flat_a = self.sa.sums.reshape(nb, -1)
        self.flat_b = self.sb.sums.reshape(nb, -1)
        # swapping block j from A to B changes A's sums by (B_j - A_j), and B's by the opposite;
        # y sums are shared (same measured data, same mean), so they cancel in the difference
        self.flat_d = self.flat_b - self.flat_a

    def swap(self, m: np.ndarray) -> np.ndarray:
        """r(A) - r(B) of this group when blocks with ``m == 1`` (m over all blocks) are swapped."""
        return _swap_scores(self.sa, self.sb, self.blocks, m[:, self.sel], self.flat_a, self.flat_b,
                            self.flat_d, [self.all_runs])


def _saved_scores(result, score):
    """A result's saved per-target scores (float64) when ``score="auto"`` reproduces them, else None."""
    if isinstance(score, str) and score == "auto" and getattr(result, "scores", None) is not None \
            and getattr(result, "folds", None):
        return np.asarray(result.scores, dtype=np.float64)
    return None


def _swap_scores(sa, sb, blocks, m, flat_a, flat_b, flat_d, groups):
    """Score differences when blocks with m == 1 exchange A's and B's predictions."""
    n_draws = m.shape[0]
    ra_groups, rb_groups = [], []
    for g in groups:
        sel = np.isin(blocks.run_of_block, g)
        sw = m[:, sel] @ flat_d[sel]  # n_draws, 5 * n_targets
        n = np.full(n_draws, sa.n[sel].sum())
        ra_groups.append(_PairStats.r_from_sums(n, (flat_a[sel].sum(0) + sw).reshape(n_draws, 5, -1)))
        rb_groups.append(_PairStats.r_from_sums(n, (flat_b[sel].sum(0) - sw).reshape(n_draws, 5, -1)))
    return np.mean(np.stack(ra_groups), axis=0) - np.mean(np.stack(rb_groups), axis=0)


def sign_flip_test(differences: np.ndarray, n_perm: int = 10000, seed: int = 0,
                   tail: str = "two-sided"):
    """Group-level test of per-subject score differences by sign flipping.

    Parameters
    ----------
    differences : ndarray, shape (n_subjects, n_targets)
        One score difference (model A - model B, or score - chance) per subject.
    n_perm : int
        Random sign patterns; when 2**n_subjects <= n_perm every pattern is enumerated
        (an exact test).
    tail : {"two-sided", "greater"}

    Returns
    -------
    mean_difference : ndarray (n_targets,)
    p_values : ndarray (n_targets,)
    """
    d = np.asarray(differences, dtype=np.float64)
    if d.ndim != 2 or d.shape[0] < 2:
        raise ConfigError(expected_found("differences shape", "(n_subjects >= 2, n_targets)", d.shape))
    n_sub = d.shape[0]
    obs = d.mean(axis=0)
    if 2 ** n_sub <= n_perm:
        codes = np.arange(2 ** n_sub)
        signs = 1.0 - 2.0 * ((codes[:, None] >> np.arange(n_sub)[None, :]) & 1)
        # the identity pattern is the observed data itself: p = #{null >= obs} / 2**n
        null = signs @ d / n_sub
        if tail == "two-sided":
            exceed = np.sum(np.abs(null) >= np.abs(obs) - 1e-12, axis=0)
        else:
            exceed = np.sum(null >= obs - 1e-12, axis=0)
        return obs, exceed / float(len(codes))
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1.0, 1.0], size=(n_perm, n_sub))
    null = signs @ d / n_sub
    return obs, permutation_p_values(obs, null, tail=tail)


# --------------------------------------------------------------------------- compare tables

def comparison_tables_job(result_a, result_b, labels=None, names=None, n_perm: int = 1000,
                          n_boot: int = 1000, block_trs: int = 10, alpha: float = 0.05, seed: int = 0,
                          ci: float = 0.95):
    """Job form of :func:`comparison_tables` (Progress per batch of draws)."""
    import pandas as pd

    cmp = yield from compare_models_job(result_a, result_b, None, n_perm, n_boot, block_trs, ci, seed,
                                        "auto", alpha)
    a = np.asarray(cmp.scores_a, dtype=np.float64)
    b = np.asarray(cmp.scores_b, dtype=np.float64)
    both = np.isfinite(a) & np.isfinite(b)
    q = np.nan_to_num(cmp.q_values, nan=1.0)
    targets = pd.DataFrame({
        "target": np.arange(a.size), "score_a": a, "score_b": b, "difference": a - b,
        "p_value": cmp.p_values, "q_value": cmp.q_values, "ci_low": cmp.ci_low, "ci_high": cmp.ci_high,
        "significant": both & (q <= alpha),
    })
    fa, fb = getattr(result_a, "scores_per_fold", None), getattr(result_b, "scores_per_fold", None)
    same_folds = (fa is not None and fb is not None and np.shape(fa) == np.shape(fb)
                  and getattr(result_a, "folds", None) == getattr(result_b, "folds", None))
    if same_folds:
        # paired per outer fold, from the saved per-fold scores
        targets["folds_a_better"] = (np.asarray(fa) > np.asarray(fb)).sum(0)
        targets["n_folds"] = np.shape(fa)[0]
    regions = None
    if labels is not None:
        from .regions import region_comparison

        regions = region_comparison(cmp, labels, names, alpha=alpha, ci_level=ci)
    n_both = int(both.sum())
    n_a = int((both & (a > b)).sum())
    header = dict(
        n_targets=int(a.size), n_targets_both=n_both, n_a_better=n_a, n_b_better=int((both & (b > a)).sum()),
        frac_targets_a_better=(n_a / n_both) if n_both else float("nan"),
        n_sig_a_better=int((targets["significant"] & (targets["difference"] > 0)).sum()),
        n_sig_b_better=int((targets["significant"] & (targets["difference"] < 0)).sum()),
        mean_a=float(a[both].mean()) if n_both else float("nan"),
        mean_b=float(b[both].mean()) if n_both else float("nan"), alpha=alpha,
    )
    if regions is not None:
        rq = np.nan_to_num(regions["q_value"].to_numpy(), nan=1.0)
        rd = regions["mean_difference"].to_numpy()
        header.update(n_regions=int(len(regions)), n_regions_sig_a_better=int(((rq <= alpha) & (rd > 0)).sum()),
                      n_regions_sig_b_better=int(((rq <= alpha) & (rd < 0)).sum()))
    return dict(targets=targets, regions=regions, header=header, comparison=cmp)


def comparison_tables(result_a, result_b, labels=None, names=None, n_perm: int = 1000, n_boot: int = 1000,
                      block_trs: int = 10, alpha: float = 0.05, seed: int = 0, ci: float = 0.95,
                      token=None, on_progress=None) -> dict:
    """What the ``compare`` command prints and writes: per-target and per-region tables and their counts.

    Scores are each result's **saved** per-target scores (never recomputed); the p-values
    come from the block-swap null of :func:`compare_models`, and the per-fold columns from
    the saved per-fold scores. The header's counts are computed from the tables themselves.

    Returns
    -------
    dict with
        ``targets``: DataFrame ``target, score_a, score_b, difference, p_value, q_value,
        ci_low, ci_high, significant`` (+ ``folds_a_better, n_folds`` when both results
        share their outer folds);
        ``regions``: :func:`engine.encoding.regions.region_comparison` table or None;
        ``header``: ``n_targets, n_targets_both, n_a_better, n_b_better,
        frac_targets_a_better`` (= n_a_better / n_targets_both: targets with both scores where
        score_a > score_b), ``n_sig_a_better, n_sig_b_better, mean_a, mean_b`` and, with
        regions, ``n_regions, n_regions_sig_a_better, n_regions_sig_b_better``;
        ``comparison``: the :class:`ModelComparison`.
    """
    from ..jobs import run_sync

    return run_sync(comparison_tables_job(result_a, result_b, labels, names, n_perm, n_boot, block_trs,
                                          alpha, seed, ci), token=token, on_progress=on_progress)
