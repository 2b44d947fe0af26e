"""Region summaries of per-target encoding scores, from any atlas.

Labels follow :class:`engine.io.atlases.Atlas`: one integer per target, ``0`` (or any
negative value) means "no region" (medial wall, unlabelled), region ``k >= 1`` is named
``names[k - 1]``. A plain label array works as well as an Atlas (anything with ``.labels``
and ``.names``); ``names`` may also be a ``{label: name}`` dict.

What each column means (:func:`region_summary`)
-----------------------------------------------
- ``mean_score``: mean over the region's targets (NaN targets ignored).
- ``ci_low``/``ci_high``: percentile bootstrap interval of the region mean. Two kinds:
  ``ci="targets"`` resamples the region's targets (the spread of scores across the region;
  needs only scores), ``ci="time"`` resamples time blocks of the held-out predictions within
  runs and recomputes every score (uncertainty from the finite recording; needs the
  result's predictions). Time blocks are the better default for "how sure is this mean";
  targets is what is possible from a score map alone.
- ``frac_significant``: fraction of the region's targets with FDR q <= ``alpha``, FDR
  computed across ALL targets (whole brain), not within the region.
- ``p_region``/``q_region`` (when a null distribution is given): the region mean compared
  with the region means of each null draw, BH-corrected across regions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd

from ..errors import ConfigError, MismatchError, expected_found
from .stats import block_bootstrap_scores, fdr_bh, nan_percentile, permutation_p_values

__all__ = ["Regions", "make_regions", "region_means", "region_summary", "layer_region_table",
           "region_comparison"]


@dataclass
class Regions:
    """Targets grouped by region.

    Attributes
    ----------
    labels : ndarray (n_regions,) the atlas label of each region (>= 1)
    names : list of str, one per region
    order : ndarray (n_labelled,) target indices sorted by region
    starts : ndarray (n_regions,) start of each region in ``order``
    sizes : ndarray (n_regions,) targets per region
    n_targets : int, targets in the whole map (labelled or not)
    """

    labels: np.ndarray
    names: list
    order: np.ndarray
    starts: np.ndarray
    sizes: np.ndarray
    n_targets: int

    @property
    def n_regions(self) -> int:
        return int(self.labels.size)

    def targets_of(self, i: int) -> np.ndarray:
        return self.order[self.starts[i]:self.starts[i] + self.sizes[i]]


def make_regions(labels, names: Optional[Union[Sequence[str], Mapping[int, str]]] = None,
                 n_targets: Optional[int] = None) -> Regions:
    """Group targets by atlas label.

    Parameters
    ----------
    labels : ndarray (n_targets,) int, or an Atlas (``.labels``, ``.names``), or a Regions
    names : list (``names[k - 1]`` names label k) or dict {label: name}, optional
        Defaults to the atlas' names, else ``"region_<k>"``.
    n_targets : int, optional
        Expected number of targets (a mismatch raises :class:`MismatchError`).
    """
    if isinstance(labels, Regions):
        regions = labels
    else:
        if hasattr(labels, "labels"):
            names = names if names is not None else getattr(labels, "names", None)
            labels = labels.labels
        lab = np.asarray(labels)
        if lab.ndim != 1 or not np.issubdtype(lab.dtype, np.integer):
            raise ConfigError(expected_found("region labels", "a 1-D integer array (one label per target)",
                                             f"{lab.dtype} array of shape {lab.shape}"))
        present = np.unique(lab[lab > 0])
        region_names = []
        for k in present:
            if names is None:
                region_names.append(f"region_{k}")
            elif isinstance(names, Mapping):
                region_names.append(str(names.get(int(k), f"region_{k}")))
            else:
                if k - 1 >= len(names):
                    raise MismatchError(expected_found("region names", f"a name for label {k}",
                                                       f"{len(names)} names"))
                region_names.append(str(names[k - 1]))
        labelled = np.flatnonzero(lab > 0)
        order = labelled[np.argsort(lab[labelled], kind="stable")]
        sizes = np.array([np.sum(lab == k) for k in present], dtype=np.int64) if present.size else \
            np.zeros(0, dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64) if sizes.size else sizes
        regions = Regions(present.astype(np.int64), region_names, order, starts, sizes, int(lab.size))
    if n_targets is not None and regions.n_targets != n_targets:
        raise MismatchError(expected_found("atlas labels (one per target)", n_targets, regions.n_targets))
    return regions


def region_means(values: np.ndarray, regions: Regions) -> np.ndarray:
    """Mean over each region's targets, NaN ignored.

    Parameters
    ----------
    values : ndarray (n_targets,) or (n_draws, n_targets)
    regions : Regions

    Returns
    -------
    means : ndarray (n_regions,) or (n_draws, n_regions); NaN for a region without finite values
    """
    v = np.asarray(values, dtype=np.float64)
    single = v.ndim == 1
    v = np.atleast_2d(v)
    if v.shape[1] != regions.n_targets:
        raise MismatchError(expected_found("values per target", regions.n_targets, v.shape[1]))
    if regions.n_regions == 0:
        out = np.zeros((v.shape[0], 0))
        return out[0] if single else out
    sub = v[:, regions.order]
    finite = np.isfinite(sub)
    sums = np.add.reduceat(np.where(finite, sub, 0.0), regions.starts, axis=1)
    counts = np.add.reduceat(finite.astype(np.float64), regions.starts, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(counts > 0, sums / counts, np.nan)
    return out[0] if single else out


def _scores_of(result_or_scores) -> np.ndarray:
    s = getattr(result_or_scores, "scores", result_or_scores)
    return np.asarray(s, dtype=np.float64).ravel()


def region_summary(result_or_scores, labels, names=None, p_values: Optional[np.ndarray] = None,
                   alpha: float = 0.05, ci: Optional[str] = "targets", n_boot: int = 1000,
                   ci_level: float = 0.95, block_trs: int = 10, seed: int = 0,
                   score="auto", null: Optional[np.ndarray] = None) -> pd.DataFrame:
    """One row per region: n targets, mean score, bootstrap CI, fraction significant.

    Parameters
    ----------
    result_or_scores : EncodingResult or ndarray (n_targets,)
        ``ci="time"`` needs an EncodingResult (held-out predictions and measured data).
    labels, names : see :func:`make_regions` (an Atlas works)
    p_values : ndarray (n_targets,), optional
        Per-target p-values (e.g. ``PermutationResult.p_values``); BH-FDR across all
        targets gives ``frac_significant``. Without them the column is NaN.
    alpha : float
        FDR level.
    ci : {"targets", "time", None}
        What the bootstrap resamples (see the module docstring); None for no interval.
    n_boot, ci_level, block_trs, seed, score
        Bootstrap settings (``score`` must match how the result's scores were computed).
    null : ndarray (n_perm, n_targets), optional
        Null scores (``PermutationResult.null``) for region-level p-values.

    Returns
    -------
    DataFrame with columns ``region, label, n_targets, mean_score, ci_low, ci_high,
    frac_significant`` (+ ``p_region, q_region`` with ``null``), one row per region in
    label order.
    """
    scores = _scores_of(result_or_scores)
    regions = make_regions(labels, names, n_targets=scores.size)
    means = region_means(scores, regions)
    low = np.full(regions.n_regions, np.nan)
    high = np.full(regions.n_regions, np.nan)
    qs = [(1 - ci_level) / 2 * 100, (1 + ci_level) / 2 * 100]
    if ci == "targets":
        rng = np.random.default_rng(seed)
        for i in range(regions.n_regions):
            vals = scores[regions.targets_of(i)]
            vals = vals[np.isfinite(vals)]
            if vals.size == 0:
                continue
            draws = rng.choice(vals, size=(n_boot, vals.size), replace=True).mean(axis=1)
            low[i], high[i] = np.percentile(draws, qs)
    elif ci == "time":
        if not hasattr(result_or_scores, "predictions"):
            raise ConfigError("ci='time' resamples the held-out time series: expected an EncodingResult "
                              f"with predictions, found {type(result_or_scores).__name__}")
        draws = np.concatenate([region_means(b, regions) for b in block_bootstrap_scores(
            result_or_scores, block_trs=block_trs, n_boot=n_boot, seed=seed, score=score)])
        low, high = nan_percentile(draws, qs, axis=0)
    elif ci is not None:
        raise ConfigError(f"ci: expected 'targets', 'time' or None, found {ci!r}")
    frac = np.full(regions.n_regions, np.nan)
    if p_values is not None:
        p = np.asarray(p_values, dtype=np.float64).ravel()
        if p.size != scores.size:
            raise MismatchError(expected_found("p-values (one per target)", scores.size, p.size))
        reject, _ = fdr_bh(p, alpha=alpha)
        frac = region_means(reject.astype(np.float64), regions)
    table = pd.DataFrame({
        "region": regions.names,
        "label": regions.labels,
        "n_targets": regions.sizes,
        "mean_score": means,
        "ci_low": low,
        "ci_high": high,
        "frac_significant": frac,
    })
    if null is not None:
        null_means = region_means(np.asarray(null), regions)  # n_perm, n_regions
        p_reg = permutation_p_values(means, null_means)
        table["p_region"] = p_reg
        table["q_region"] = fdr_bh(p_reg, alpha=alpha)[1]
    return table


def layer_region_table(results_by_layer: Mapping[str, object], labels, names=None,
                       value: str = "mean_score", **summary_kwargs) -> pd.DataFrame:
    """Layer x region table of one summary value.

    Parameters
    ----------
    results_by_layer : mapping layer name -> EncodingResult or scores (n_targets,), or a list
        In the order the rows should appear (e.g. model depth). A list is named by each
        result's ``space`` (or "layer <i>" for plain score arrays).
    labels, names : see :func:`make_regions`
    value : str
        A column of :func:`region_summary` (``mean_score``, ``ci_low``, ``frac_significant``...),
        or ``"long"`` for the long-form table of every column with a ``layer`` column.
    **summary_kwargs
        Passed to :func:`region_summary` (e.g. ``p_values`` is not per layer: pass
        ``ci=None`` for speed when only means are wanted).

    Returns
    -------
    DataFrame indexed by layer, one column per region (or the long-form table).
    """
    if not isinstance(results_by_layer, Mapping):
        # a list of results: named by each result's feature space, else by position
        named = {}
        for i, res in enumerate(results_by_layer):
            name = getattr(res, "space", None) or f"layer {i}"
            named[name if name not in named else f"{name} ({i})"] = res
        results_by_layer = named
    if not results_by_layer:
        raise ConfigError("layer x region table: expected at least one layer, found none")
    summary_kwargs.setdefault("ci", None if value in ("mean_score", "n_targets") else "targets")
    rows = []
    for layer, res in results_by_layer.items():
        t = region_summary(res, labels, names, **summary_kwargs)
        t.insert(0, "layer", layer)
        rows.append(t)
    long = pd.concat(rows, ignore_index=True)
    if value == "long":
        return long
    if value not in long.columns:
        raise ConfigError(f"value: expected one of {list(long.columns[2:]) + ['long']}, found {value!r}")
    wide = long.pivot(index="layer", columns="region", values=value)
    region_order = list(dict.fromkeys(rows[0]["region"]))
    wide = wide.reindex(index=list(results_by_layer.keys()), columns=region_order)
    wide.columns.name = "region"
    return wide


def region_comparison(comparison, labels, names=None, alpha: float = 0.05,
                      ci_level: float = 0.95) -> pd.DataFrame:
    """Region-level summary of a :class:`~engine.encoding.stats.ModelComparison`.

    The region mean of the score difference is tested against the region means of the
    block-swap null draws (two-sided), BH-FDR across regions; its interval is the
    percentile interval of the region means of the block-bootstrap draws.

    Returns
    -------
    DataFrame with ``region, label, n_targets, mean_a, mean_b, mean_difference, ci_low,
    ci_high, p_value, q_value, frac_targets_a_better, frac_targets_a_better_sig``:
    ``frac_targets_a_better`` is the fraction of the region's targets with both scores where
    ``score_a > score_b``; ``frac_targets_a_better_sig`` counts only those with q <= alpha.
    """
    regions = make_regions(labels, names, n_targets=comparison.difference.size)
    diff = region_means(comparison.difference, regions)
    null = region_means(comparison.null, regions)
    p = permutation_p_values(diff, null, tail="two-sided")
    _, q = fdr_bh(p, alpha=alpha)
    boot = region_means(comparison.boot, regions)
    qs = [(1 - ci_level) / 2 * 100, (1 + ci_level) / 2 * 100]
    low, high = nan_percentile(boot, qs, axis=0) if boot.shape[0] else (np.nan, np.nan)
    a = np.asarray(comparison.scores_a, dtype=np.float64)
    b = np.asarray(comparison.scores_b, dtype=np.float64)
    both = np.isfinite(a) & np.isfinite(b)
    # fraction of the region's targets (with both scores) where A's score is above B's
    better = np.where(both, (a > b).astype(np.float64), np.nan)
    better_sig = np.where(both, ((np.nan_to_num(comparison.q_values, nan=1.0) <= alpha) & (a > b))
                          .astype(np.float64), np.nan)
    return pd.DataFrame({
        "region": regions.names,
        "label": regions.labels,
        "n_targets": regions.sizes,
        "mean_a": region_means(comparison.scores_a, regions),
        "mean_b": region_means(comparison.scores_b, regions),
        "mean_difference": diff,
        "ci_low": low,
        "ci_high": high,
        "p_value": p,
        "q_value": q,
        "frac_targets_a_better": region_means(better, regions),
        "frac_targets_a_better_sig": region_means(better_sig, regions),
    })
