"""Null distributions of encoding scores by refitting on permuted stimuli.

Each permutation scrambles the **stimulus features in time** (the brain data stay as they
were) and repeats the **whole** cross-validated fit -- inner CV choosing an alpha per
target, refit, held-out scoring -- exactly as the observed fit, through
:func:`engine.encoding.fit.fit_encoding`. So the null includes the optimism of choosing
alphas and of any PCA; only the link between stimulus and response is broken.

Schemes (within each run; features of a run are never moved to another run):

- ``"block"`` (default): the run is cut into blocks of ``block_trs`` consecutive TRs
  (10 TRs as in Oota et al. 2025), and the blocks are shuffled. Autocorrelation inside a
  block is kept, so the null is not too narrow for slow BOLD-like signals.
- ``"shift"``: the run is rotated circularly by a random offset of at least
  ``min_shift_trs`` (default: a tenth of the run, at least 10 TRs), keeping all the
  autocorrelation except at the seam.

The delays are applied after the permutation (inside ``fit_encoding``), so the lagged
copies of a permuted run are lagged copies of the permuted series, as for a real stimulus.

p-values per target: ``(1 + #{null >= observed}) / (1 + n_perm)`` (one-sided: a model
predicting better than chance), Benjamini-Hochberg FDR across targets, and a max-statistic
family-wise p-value. The smallest attainable p is ``1 / (1 + n_perm)``: with FDR over many
targets, use enough permutations (e.g. 1000 for 1000 parcels at q = 0.05).

The permutations are independent tasks run by :func:`engine.encoding.distributed.run_tasks`
(here, or on a Dask cluster with ``scheduler=``); every permutation's ordering is drawn
up front from ``seed``, so the null is the same wherever it runs.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..atomic import read_h5, write_h5
from ..errors import ConfigError, DataError, expected_found
from ..jobs import CancelToken, Progress, run_sync
from .distributed import Task, run_tasks
from .stats import fdr_bh, max_statistic_p_values, permutation_p_values

__all__ = ["block_permutation", "circular_shift", "permutation_indices", "permute_runs",
           "PermutationResult", "permutation_test", "permutation_test_job"]

METHODS = ("block", "shift")
_KIND = "alignscope.permutation_result"
SCHEMA_VERSION = 1


def block_permutation(n_trs: int, block_trs: int, rng: np.random.Generator) -> np.ndarray:
    """TR order of one run with its blocks of ``block_trs`` TRs shuffled.

    The last block may be shorter; it is shuffled like the others. Returns (n_trs,) int.
    """
    starts = np.arange(0, n_trs, block_trs)
    order = rng.permutation(starts.size)
    return np.concatenate([np.arange(starts[k], min(starts[k] + block_trs, n_trs)) for k in order])


def circular_shift(n_trs: int, min_shift_trs: int, rng: np.random.Generator) -> np.ndarray:
    """TR order of one run rotated by a random offset in [min_shift, n_trs - min_shift]."""
    lo = max(1, int(min_shift_trs))
    hi = n_trs - lo
    if hi < lo:
        raise ConfigError(expected_found("run length for a circular shift",
                                         f"at least {2 * lo} TRs (2 x min_shift_trs)", n_trs))
    shift = int(rng.integers(lo, hi + 1))
    return np.roll(np.arange(n_trs), shift)


def permutation_indices(run_lengths: Sequence[int], n_perm: int, method: str = "block",
                        block_trs: int = 10, min_shift_trs: Optional[int] = None,
                        seed: int = 0) -> List[List[np.ndarray]]:
    """Every permutation's TR order per run: ``[perm][run] -> (n_trs_run,) int``.

    Drawn from ``np.random.default_rng(seed)`` in permutation order (reproducible).
    """
    if method not in METHODS:
        raise ConfigError(f"permutation method: expected one of {METHODS}, found {method!r}")
    if int(block_trs) < 1:
        raise ConfigError(expected_found("block_trs", "an integer >= 1", block_trs))
    if int(n_perm) < 1:
        raise ConfigError(expected_found("n_perm", "an integer >= 1", n_perm))
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(int(n_perm)):
        perm = []
        for n in run_lengths:
            if method == "block":
                perm.append(block_permutation(int(n), int(block_trs), rng))
            else:
                m = min_shift_trs if min_shift_trs is not None else max(10, int(n) // 10)
                perm.append(circular_shift(int(n), m, rng))
        out.append(perm)
    return out


def permute_runs(X_runs, order: Sequence[np.ndarray]):
    """Features with each run's rows put in ``order[run]``; a dict of spaces gets the same order."""
    if isinstance(X_runs, dict):
        return {k: permute_runs(v, order) for k, v in X_runs.items()}
    return [np.asarray(x)[idx] for x, idx in zip(X_runs, order)]


def _run_lengths(X_runs) -> List[int]:
    runs = next(iter(X_runs.values())) if isinstance(X_runs, dict) else X_runs
    return [int(np.shape(x)[0]) for x in runs]


@dataclass
class PermutationResult:
    """Observed scores, their null distribution, and p-values per target.

    Attributes
    ----------
    observed : (n_targets,) float32  held-out scores of the real fit
    null : (n_perm, n_targets) float32  scores of the same fit on permuted stimuli
    p_values : (n_targets,)  (1 + #{null >= observed}) / (1 + n_perm)
    q_values : (n_targets,)  Benjamini-Hochberg FDR of ``p_values`` across targets
    p_fwer : (n_targets,)  max-statistic family-wise p-values
    settings : dict  method, block_trs, min_shift_trs, n_perm, seed, fit settings
    """

    observed: np.ndarray
    null: np.ndarray
    p_values: np.ndarray
    q_values: np.ndarray
    p_fwer: np.ndarray
    settings: Dict[str, Any] = field(default_factory=dict)

    @property
    def n_perm(self) -> int:
        return int(self.null.shape[0])

    def significant(self, alpha: float = 0.05, correction: str = "fdr") -> np.ndarray:
        """Targets significant at ``alpha``: ``correction`` "fdr", "fwer" or "none"."""
        if correction == "fdr":
            return fdr_bh(self.p_values, alpha=alpha)[0]
        if correction == "fwer":
            return np.nan_to_num(self.p_fwer, nan=1.0) <= alpha
        if correction == "none":
            return np.nan_to_num(self.p_values, nan=1.0) <= alpha
        raise ConfigError(f"correction: expected 'fdr', 'fwer' or 'none', found {correction!r}")

    def save(self, path) -> Path:
        """Write to ``path`` (.h5) atomically."""
        path = Path(path)
        with write_h5(path, _KIND, SCHEMA_VERSION) as h:
            h.attrs["settings"] = json.dumps(self.settings, default=_json_default)
            for name in ("observed", "null", "p_values", "q_values", "p_fwer"):
                h.create_dataset(name, data=np.asarray(getattr(self, name)))
        return path

    @classmethod
    def load(cls, path) -> "PermutationResult":
        with read_h5(path, _KIND, SCHEMA_VERSION, "permutation result") as h:
            arrays = {k: h[k][()] for k in ("observed", "null", "p_values", "q_values", "p_fwer")}
            settings = json.loads(h.attrs.get("settings", "{}"))
        return cls(settings=settings, **arrays)


def _json_default(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    return str(o)


def _null_scores(order, X_runs=None, Y_runs=None, fit_kwargs=None):
    """One permutation: the whole cross-validated fit on permuted features -> scores (float32)."""
    from .fit import fit_encoding

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # alphas on the grid edge are expected under the null
        res = fit_encoding(permute_runs(X_runs, order), Y_runs, **(fit_kwargs or {}))
    return np.asarray(res.scores, dtype=np.float32)


def permutation_test_job(X_runs, Y_runs, n_perm: int = 100, method: str = "block", block_trs: int = 10,
                         min_shift_trs: Optional[int] = None, seed: int = 0, observed=None,
                         scheduler=None, token: Optional[CancelToken] = None, alpha: float = 0.05,
                         n_workers: Optional[int] = None, processes: bool = False, **fit_kwargs):
    """Job form of :func:`permutation_test`: yields Progress per finished permutation."""
    from .fit import fit_encoding

    fit_kwargs.pop("on_progress", None)
    fit_kwargs.pop("token", None)
    token = token or CancelToken()
    lengths = _run_lengths(X_runs)
    orders = permutation_indices(lengths, n_perm, method, block_trs, min_shift_trs, seed)
    if observed is None:
        yield Progress(0, n_perm, "fitting the observed model")
        obs = np.asarray(fit_encoding(X_runs, Y_runs, token=token, **fit_kwargs).scores, dtype=np.float32)
    else:
        obs = np.asarray(getattr(observed, "scores", observed), dtype=np.float32)
    tasks = [Task(_null_scores, (o,), name=f"permutation {i + 1}") for i, o in enumerate(orders)]
    null_rows = yield from run_tasks(tasks, scheduler=scheduler, token=token,
                                     shared={"X_runs": X_runs, "Y_runs": Y_runs, "fit_kwargs": fit_kwargs},
                                     n_workers=n_workers, processes=processes, message="permutation")
    null = np.stack(null_rows).astype(np.float32)  # n_perm, n_targets
    if null.shape[1] != obs.shape[0]:
        raise DataError(expected_found("observed scores (one per target)", null.shape[1], obs.shape[0]))
    p = permutation_p_values(obs, null)
    _, q = fdr_bh(p, alpha=alpha)
    settings = dict(method=method, block_trs=int(block_trs), min_shift_trs=min_shift_trs, n_perm=int(n_perm),
                    seed=int(seed), alpha=alpha, tail="greater",
                    fit={k: (np.asarray(v).tolist() if isinstance(v, np.ndarray) else v)
                         for k, v in fit_kwargs.items() if k != "backend" or isinstance(v, str)})
    return PermutationResult(obs, null, p, q, max_statistic_p_values(obs, null), settings)


def permutation_test(X_runs, Y_runs, n_perm: int = 100, method: str = "block", block_trs: int = 10,
                     min_shift_trs: Optional[int] = None, seed: int = 0, observed=None, scheduler=None,
                     token: Optional[CancelToken] = None, on_progress=None, alpha: float = 0.05,
                     n_workers: Optional[int] = None, processes: bool = False,
                     **fit_kwargs) -> PermutationResult:
    """Permutation test of held-out encoding scores, target by target.

    Parameters
    ----------
    X_runs, Y_runs
        As for :func:`engine.encoding.fit.fit_encoding` (a dict of feature spaces is
        permuted with one order for all spaces).
    n_perm : int
        Permutations (each a full cross-validated fit).
    method : {"block", "shift"}
        See the module docstring.
    block_trs : int
        Block length for ``"block"``.
    min_shift_trs : int, optional
        Smallest rotation for ``"shift"`` (default max(10, run length / 10)).
    seed : int
    observed : EncodingResult or (n_targets,) scores, optional
        The real fit, if already done with the SAME ``fit_kwargs``; otherwise it is fitted here.
    scheduler : None, "local", address or dask Client
        Where the permutations run (:func:`engine.encoding.distributed.run_tasks`).
    token : CancelToken, optional
        Checked between permutations.
    on_progress : callable, optional
        Receives a Progress per finished permutation.
    alpha : float
        FDR level recorded in the settings.
    **fit_kwargs
        delays, alphas, cv, backend, pca, drop_edges... passed to every fit.

    Returns
    -------
    PermutationResult
    """
    return run_sync(permutation_test_job(X_runs, Y_runs, n_perm=n_perm, method=method, block_trs=block_trs,
                                         min_shift_trs=min_shift_trs, seed=seed, observed=observed,
                                         scheduler=scheduler, token=token, alpha=alpha, n_workers=n_workers,
                                         processes=processes, **fit_kwargs),
                    token=token, on_progress=on_progress)
