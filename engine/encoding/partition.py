"""Variance partitioning and residual analysis across feature spaces.

Variance partitioning (de Heer et al. 2017; Lescroart et al. 2015) fits an encoding model
for every non-empty subset of 2 or 3 feature spaces and reads the held-out R^2 of the
joint and subset models as the measure of a union of sets. The variance explained by
*exactly* the spaces in ``S`` (all of them, none of the others ``O``) is, by
inclusion-exclusion::

    region(S) = sum over non-empty T within S of (-1)^(|T|+1) R2(T + O)  -  R2(O)

which for two spaces A, B gives ``unique A = R2(AB) - R2(B)`` and
``shared = R2(A) + R2(B) - R2(AB)``, and for three spaces the usual seven regions.
All R^2 are held-out (nested CV of :func:`engine.encoding.fit.fit_encoding`, mean over
outer folds), so with noise a region can come out slightly negative; it is reported as
computed, not clipped.

Residual analysis (Dong & Toneva 2023): regress the unimodal features out of the joint
(multimodal) features on the training runs only, then encode the residual. What the
residual still predicts is brain-relevant information the joint representation holds
beyond the unimodal ones. :func:`residualize` is the per-fold step (a ridge from the
unimodal features to each joint feature, alpha chosen by run-grouped CV inside the
training runs); :func:`residual_encoding` runs the whole analysis.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from typing import Dict, List, Sequence, Tuple

import numpy as np

from ..errors import ConfigError, DataError, expected_found
from . import preprocess as pp
from .fit import fit_encoding, fit_encoding_job, inner_folds
from .results import EncodingResult
from .ridge import ridge_cv

__all__ = ["PartitionResult", "variance_partition", "partition_regions", "residualize",
           "residual_encoding"]

SUBSET_SEP = "+"
DEFAULT_RESIDUAL_ALPHAS = np.logspace(-2, 6, 9)


@dataclass
class PartitionResult:
    """Held-out R^2 of every subset model and the variance regions derived from them.

    Attributes
    ----------
    space_names : list of str
    r2 : dict subset name ("A", "A+B", ...) -> (n_targets,) float64
        Held-out R^2 of the model on those spaces.
    regions : dict region name -> (n_targets,) float64
        ``"unique A"``, ``"shared A&B"`` (exactly A and B), ``"shared A&B&C"``, ...
    models : dict subset name -> EncodingResult
        The fitted models (scores, predictions, provenance), kept when ``keep_models``.
    """

    space_names: List[str]
    r2: Dict[str, np.ndarray]
    regions: Dict[str, np.ndarray]
    models: Dict[str, EncodingResult] = field(default_factory=dict)

    @property
    def total(self) -> np.ndarray:
        """R^2 of the joint model (all spaces)."""
        return self.r2[SUBSET_SEP.join(self.space_names)]


def _subset_name(subset: Sequence[str]) -> str:
    return SUBSET_SEP.join(subset)


def _region_name(subset: Sequence[str]) -> str:
    return f"unique {subset[0]}" if len(subset) == 1 else "shared " + "&".join(subset)


def partition_regions(r2: Dict[str, np.ndarray], space_names: Sequence[str]) -> Dict[str, np.ndarray]:
    """Variance regions from the R^2 of all subset models (inclusion-exclusion).

    Parameters
    ----------
    r2 : dict subset name -> (n_targets,) array
        Keys are space names joined by "+" in the order of ``space_names``.
    space_names : sequence of str

    Returns
    -------
    dict region name -> (n_targets,) float64; the regions sum to the joint model's R^2.
    """
    names = list(space_names)

    def R(members) -> np.ndarray:
        members = [n for n in names if n in set(members)]
        if not members:
            return 0.0
        key = _subset_name(members)
        if key not in r2:
            raise DataError(expected_found("variance partitioning", f"the R2 of subset {key!r}",
                                           f"subsets {sorted(r2)}"))
        return np.asarray(r2[key], dtype=np.float64)

    regions = {}
    for size in range(1, len(names) + 1):
        for S in combinations(names, size):
            others = [n for n in names if n not in S]
            value = -R(others)
            for t in range(1, len(S) + 1):
                for T in combinations(S, t):
                    value = value + (-1) ** (t + 1) * R(list(T) + others)
            regions[_region_name(S)] = np.asarray(value, dtype=np.float64)
    return regions


def variance_partition_job(X_spaces: Dict[str, List[np.ndarray]], Y_runs, keep_models: bool = True,
                           token=None, **fit_kwargs):
    """Job: fit the joint and all subset models of 2 or 3 feature spaces and partition their R^2.

    Parameters
    ----------
    X_spaces : dict space name -> list of (n_trs_run, n_features) arrays
    Y_runs : list of (n_trs_run, n_targets) arrays
    keep_models : bool
        Keep every subset's :class:`EncodingResult` in ``models``.
    token : CancelToken, optional
        Checked between (and inside) the subset fits.
    **fit_kwargs
        Passed to :func:`engine.encoding.fit.fit_encoding_job` (delays, alphas, cv, pca, ...);
        the same for every subset, so the folds are the same.

    Yields
    ------
    Progress, one bar over all subset models.

    Returns
    -------
    PartitionResult
    """
    from ..jobs import nested

    if not isinstance(X_spaces, dict) or not 2 <= len(X_spaces) <= 3:
        found = len(X_spaces) if isinstance(X_spaces, dict) else type(X_spaces).__name__
        raise ConfigError(expected_found("variance partitioning", "a dict of 2 or 3 feature spaces", found))
    names = [str(k) for k in X_spaces]
    subsets = [s for size in range(1, len(names) + 1) for s in combinations(names, size)]
    r2: Dict[str, np.ndarray] = {}
    models: Dict[str, EncodingResult] = {}
    for k, subset in enumerate(subsets):
        key = _subset_name(subset)
        res = yield from nested(fit_encoding_job({n: X_spaces[n] for n in subset}, Y_runs, token=token,
                                                 **fit_kwargs), k, len(subsets), f"model {key}")
        r2[key] = np.asarray(res.r2, dtype=np.float64)
        if keep_models:
            models[key] = res
    return PartitionResult(space_names=names, r2=r2, regions=partition_regions(r2, names), models=models)


def variance_partition(X_spaces: Dict[str, List[np.ndarray]], Y_runs, keep_models: bool = True,
                       **fit_kwargs) -> PartitionResult:
    """Synchronous :func:`variance_partition_job` (same parameters, returns the PartitionResult)."""
    from ..jobs import run_sync

    return run_sync(variance_partition_job(X_spaces, Y_runs, keep_models=keep_models, **fit_kwargs))


def residualize(joint: Sequence[np.ndarray], unimodal: Sequence[np.ndarray], train_runs: Sequence[int],
                alphas=DEFAULT_RESIDUAL_ALPHAS, backend="numpy") -> Tuple[List[np.ndarray], np.ndarray]:
    """Remove from joint features what unimodal features predict, fit on training runs only.

    A ridge from the unimodal features to every joint feature is fit on ``train_runs``
    (alpha per joint feature, leave-one-run-out inside them), and its predictions are
    subtracted from the joint features of *every* run.

    Parameters
    ----------
    joint : list of (n_trs_run, n_joint) arrays
    unimodal : list of (n_trs_run, n_unimodal) arrays (several spaces side by side)
    train_runs : run indices the regression is fit on

    Returns
    -------
    residual : list of (n_trs_run, n_joint) float32
    r2_train : (n_joint,) float64
        Cross-validated R^2 of each joint feature from the unimodal ones (within the
        training runs): how much of it was unimodal.
    """
    joint = pp.check_runs(joint, "joint feature runs")
    unimodal = pp.check_runs(unimodal, "unimodal feature runs")
    train = list(train_runs)
    Xtr = pp.concat_runs(unimodal, train)
    Ytr = pp.concat_runs(joint, train)
    folds = inner_folds([joint[i].shape[0] for i in train], "loro")
    res = ridge_cv(Xtr, Ytr, alphas, folds, backend=backend, X_predict=list(unimodal), return_coef=False,
                   warn=False)
    var = Ytr.astype(np.float64).var(0) + 1e-30
    r2_train = 1.0 + np.asarray(res.cv_scores, dtype=np.float64)[res.alpha_index,
                                                                  np.arange(Ytr.shape[1])] / var
    return [(j - p).astype(np.float32) for j, p in zip(joint, res.predictions)], r2_train


def residual_encoding(joint: Sequence[np.ndarray], unimodal: Dict[str, List[np.ndarray]], Y_runs,
                      joint_name: str = "joint", residual_alphas=DEFAULT_RESIDUAL_ALPHAS,
                      **fit_kwargs) -> EncodingResult:
    """Encode the joint features after removing the unimodal ones (per outer fold).

    Parameters
    ----------
    joint : list of (n_trs_run, n_joint) arrays
        Features of the multimodal (joint) representation.
    unimodal : dict space name -> list of (n_trs_run, n_features) arrays
        The unimodal representations to regress out (all at once).
    Y_runs : list of (n_trs_run, n_targets) arrays
    **fit_kwargs
        Passed to :func:`engine.encoding.fit.fit_encoding`.

    Returns
    -------
    EncodingResult
        ``space`` is ``"<joint_name> minus <unimodal names>"``.
    """
    if not unimodal:
        raise ConfigError(expected_found("residual analysis", "at least one unimodal space", "none"))
    names = list(unimodal)
    zscore = fit_kwargs.get("zscore", True)
    uni = [pp.zscore_runs(unimodal[n]) if zscore else pp.check_runs(unimodal[n]) for n in names]
    uni_runs = [np.concatenate([u[i] for u in uni], axis=1) for i in range(len(uni[0]))]
    residual_key = f"{joint_name} minus {'+'.join(names)}"

    def transform(spaces, train_runs):
        residual, _ = residualize(spaces[residual_key], uni_runs, train_runs, alphas=residual_alphas,
                                  backend=fit_kwargs.get("backend", "numpy"))
        return {residual_key: residual}

    fit_kwargs.setdefault("space", residual_key)
    return fit_encoding({residual_key: list(joint)}, Y_runs, fold_transform=transform, **fit_kwargs)
