"""Is a saved encoding result above chance? Permutations that refit the whole CV, FDR, regions.

:func:`significance_job` takes an :class:`~engine.encoding.results.EncodingResult` (or its
file), the feature and brain runs it was fit on, and refits the same cross-validated model
(the same :class:`~engine.encoding.options.FitOptions`, the same CV as the result used) on
features permuted in time within each run (:mod:`engine.encoding.permutation`: shuffled
blocks of ``block_trs`` TRs, or a circular shift). Per target, ``p = (1 + #{null >= r}) /
(1 + n_perm)`` against the result's **saved** score; q-values are Benjamini-Hochberg over all
targets; with an atlas, each region's mean r is compared with the region means of the
null draws (BH across regions). :func:`write_significance` stores p and q in the result file.

When significance cannot be reached by construction -- too few permutations for the smallest
attainable p to fall below alpha, or too few distinct permutations of short runs -- the
answer says so (``reachable=False`` and a message) instead of a column of identical p-values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import numpy as np

from ..errors import ConfigError, MismatchError, expected_found
from ..jobs import CancelToken, Progress, run_sync
from .options import FitOptions
from .results import EncodingResult
from .stats import fdr_bh, permutation_p_values

__all__ = ["SignificanceResult", "significance_job", "significance", "write_significance",
           "n_distinct_permutations", "METHODS"]

#: Permutation schemes: "block" (shuffled blocks of TRs) and "circular" (a circular shift).
METHODS = ("block", "circular")


@dataclass
class SignificanceResult:
    """What :func:`significance_job` found.

    Attributes
    ----------
    observed : (n_targets,) the result's saved scores
    null : (n_perm, n_targets) float32 scores of the refits on permuted features
    p_values, q_values : (n_targets,) permutation p (one-sided) and BH-FDR q across targets
    region_table : DataFrame or None
        ``region, label, n_targets, mean_score, p_region, q_region`` with an atlas.
    reachable : bool
        False when no target could reach ``q <= alpha`` whatever the data (see ``message``).
    message : str
        One line for the user: how many targets (regions) are significant, or why none can be.
    n_distinct : float
        Number of distinct permutations the scheme can draw (``inf`` when astronomically many).
    settings : dict
    """

    observed: np.ndarray
    null: np.ndarray
    p_values: np.ndarray
    q_values: np.ndarray
    region_table: Any = None
    reachable: bool = True
    message: str = ""
    n_distinct: float = math.inf
    settings: Dict[str, Any] = field(default_factory=dict)

    @property
    def n_perm(self) -> int:
        return int(self.null.shape[0])

    def significant(self, alpha: Optional[float] = None) -> np.ndarray:
        a = self.settings.get("alpha", 0.05) if alpha is None else alpha
        return np.nan_to_num(self.q_values, nan=1.0) <= a


def n_distinct_permutations(run_lengths: Sequence[int], method: str = "block", block_trs: int = 10,
                            min_shift_trs: Optional[int] = None) -> float:
    """How many different feature orderings a scheme can produce (identity included).

    "block": the product over runs of (number of blocks)!; "circular": the product over runs
    of the allowed shifts, ``n - 2 * min_shift + 1`` (default ``min_shift`` as in
    :func:`engine.encoding.permutation.permutation_indices`). Returns ``inf`` beyond 1e15.
    """
    total = 1.0
    for n in run_lengths:
        n = int(n)
        if method == "block":
            k = int(math.ceil(n / int(block_trs)))
            total *= math.factorial(min(k, 40)) if k <= 40 else math.inf
        elif method in ("circular", "shift"):
            m = min_shift_trs if min_shift_trs is not None else max(10, n // 10)
            total *= max(1, n - 2 * max(1, int(m)) + 1) + 1   # the shifts, and the identity
        else:
            raise ConfigError(f"permutation method: expected one of {METHODS}, found {method!r}")
        if total > 1e15:
            return math.inf
    return float(total)


def _cv_for_refits(result: EncodingResult, opts: FitOptions) -> Dict[str, Any]:
    """The CV the result used, fixed for the refits (permuted features no longer look repeated)."""
    cv_info = result.provenance.get("cv") if isinstance(result.provenance, dict) else None
    out: Dict[str, Any] = {}
    if isinstance(cv_info, dict) and isinstance(opts.cv, str) and opts.cv in ("auto", "stimulus"):
        kind = cv_info.get("kind")
        if kind in ("loro", "within-run", "stimulus"):
            out["cv"] = kind
        if kind == "stimulus" and cv_info.get("stimulus_groups") is not None:
            out["stimulus_ids"] = [str(g) for g in cv_info["stimulus_groups"]]
    return out


def significance_job(result_or_path, X_runs, Y_runs, n_perm: int = 1000, method: str = "block",
                     block_trs: Optional[int] = None, alpha: float = 0.05, labels=None, names=None,
                     seed: int = 0, options: Optional[FitOptions] = None, tr_s: Optional[float] = None,
                     stimulus_ids: Optional[Sequence] = None, subjects: Optional[Sequence] = None,
                     confounds_runs: Optional[Sequence[np.ndarray]] = None, write: bool = False,
                     min_shift_trs: Optional[int] = None, scheduler=None, n_workers: Optional[int] = None,
                     token: Optional[CancelToken] = None):
    """Job: permutation significance of a saved result (Progress per finished permutation).

    Parameters
    ----------
    result_or_path : EncodingResult or path to its .h5 file
    X_runs, Y_runs
        The feature runs (list, or dict space -> list) and brain runs the result was fit on.
    n_perm : int
        Permutations, each a full refit of the cross-validated model.
    method : {"block", "circular"}
        Features permuted within each run by shuffled blocks of ``block_trs`` TRs, or rotated
        by a random offset of at least ``min_shift_trs``.
    block_trs : int, optional
        Block length; default the number of TRs in 20 s (at least 5), or 10 without a TR.
    alpha : float
        FDR level for the message and ``reachable``.
    labels, names : optional atlas (see :func:`engine.encoding.regions.make_regions`)
        Adds a region table with region-level p and q.
    options : FitOptions, optional
        Default: the options saved in the result (``result.options``).
    tr_s, stimulus_ids, subjects, confounds_runs
        As for :func:`engine.encoding.fit.fit_encoding` (``tr_s`` defaults to the result's).
    write : bool
        With a path, write p and q into that file (:func:`write_significance`).

    Returns
    -------
    SignificanceResult
    """
    from .permutation import permutation_test_job

    path = None
    if isinstance(result_or_path, (str, Path)):
        path = Path(result_or_path)
        result = EncodingResult.load(path)
    else:
        result = result_or_path
    if method not in METHODS + ("shift",):
        raise ConfigError(f"permutation method: expected one of {METHODS}, found {method!r}")
    if int(n_perm) < 1:
        raise ConfigError(expected_found("n_perm", "an integer >= 1", n_perm))
    opts = options if options is not None else (FitOptions.from_dict(result.options) if result.options
                                                else FitOptions())
    tr = tr_s if tr_s is not None else result.tr_s
    if block_trs is None:
        block_trs = max(5, int(round(20.0 / tr))) if tr else 10
    runs = next(iter(X_runs.values())) if isinstance(X_runs, dict) else X_runs
    lengths = [int(np.shape(x)[0]) for x in runs]
    if len(lengths) != len(result.run_names):
        raise MismatchError(expected_found("feature runs (as the result's runs)", len(result.run_names),
                                           len(lengths)))
    fixed = _cv_for_refits(result, opts)
    if "cv" in fixed:
        opts = opts.replace(cv=fixed["cv"])
    fit_kwargs = dict(options=opts, tr_s=tr, stimulus_ids=fixed.get("stimulus_ids", stimulus_ids),
                      subjects=subjects, confounds_runs=confounds_runs)
    scheme = "shift" if method == "circular" else method
    perm = yield from permutation_test_job(X_runs, Y_runs, n_perm=int(n_perm), method=scheme,
                                           block_trs=int(block_trs), min_shift_trs=min_shift_trs, seed=seed,
                                           observed=np.asarray(result.scores, dtype=np.float32),
                                           scheduler=scheduler, token=token, alpha=alpha,
                                           n_workers=n_workers, **fit_kwargs)
    obs = np.asarray(result.scores, dtype=np.float64)
    p = permutation_p_values(obs, perm.null)
    _, q = fdr_bh(p, alpha=alpha)

    n_distinct = n_distinct_permutations(lengths, "circular" if method in ("circular", "shift") else "block",
                                         int(block_trs), min_shift_trs)
    effective = min(int(n_perm), int(n_distinct) - 1 if math.isfinite(n_distinct) else int(n_perm))
    min_p = 1.0 / (1 + max(effective, 0))
    reasons = []
    if min_p > alpha:
        reasons.append(f"with {int(n_perm)} permutations"
                       + (f" ({int(n_distinct)} distinct orderings of these runs)" if math.isfinite(n_distinct)
                          and n_distinct - 1 < n_perm else "")
                       + f" the smallest attainable p is {min_p:.3g} > alpha {alpha}")
    reachable = not reasons
    region_table = None
    if labels is not None:
        from .regions import region_summary

        region_table = region_summary(obs, labels, names, p_values=p, alpha=alpha, ci=None, null=perm.null)
    n_sig = int(np.sum(np.nan_to_num(q, nan=1.0) <= alpha))
    if reachable:
        message = f"{n_sig} of {obs.size} targets significant at FDR q <= {alpha} ({int(n_perm)} {method} permutations)"
        if region_table is not None:
            n_reg = int(np.sum(np.nan_to_num(region_table["q_region"].to_numpy(), nan=1.0) <= alpha))
            message += f"; {n_reg} of {len(region_table)} regions"
    else:
        message = ("significance cannot be reached by construction: " + "; ".join(reasons)
                   + " -- use more permutations (or longer runs / a smaller block)")
    settings = dict(perm.settings, method=method, block_trs=int(block_trs), alpha=alpha, n_perm=int(n_perm),
                    seed=int(seed), n_distinct=n_distinct if math.isfinite(n_distinct) else "inf",
                    min_attainable_p=min_p, reachable=reachable, message=message,
                    cv=opts.cv if isinstance(opts.cv, (str, int)) else "explicit",
                    test="one-sided permutation test of the saved held-out r, features permuted within runs, "
                         "whole nested CV refit per permutation; BH-FDR across targets")
    settings.pop("fit", None)
    out = SignificanceResult(observed=obs, null=perm.null, p_values=p, q_values=q, region_table=region_table,
                             reachable=reachable, message=message, n_distinct=n_distinct, settings=settings)
    if write:
        if path is None:
            raise ConfigError("significance: write=True needs the result's file path, found an in-memory result")
        write_significance(path, out)
        yield Progress(int(n_perm), int(n_perm), f"wrote p and q into {path.name}")
    return out


def significance(result_or_path, X_runs, Y_runs, on_progress=None, token: Optional[CancelToken] = None,
                 **kwargs) -> SignificanceResult:
    """:func:`significance_job` run to completion (same parameters)."""
    return run_sync(significance_job(result_or_path, X_runs, Y_runs, token=token, **kwargs), token=token,
                    on_progress=on_progress)


def write_significance(path, sig: SignificanceResult) -> Path:
    """Store p and q (and the settings) in the result file at ``path``, atomically."""
    path = Path(path)
    result = EncodingResult.load(path)
    if np.asarray(result.scores).shape != np.asarray(sig.p_values).shape:
        raise MismatchError(expected_found("p-values (one per target of the result)", result.n_targets,
                                           np.asarray(sig.p_values).size))
    result.p_values = np.asarray(sig.p_values, dtype=np.float64)
    result.q_values = np.asarray(sig.q_values, dtype=np.float64)
    result.provenance = dict(result.provenance, significance=sig.settings)
    return result.save(path)
