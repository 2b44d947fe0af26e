"""Fitting cross-validated encoding models: features of a model -> brain data, per target.

Cross-validation is *nested* and grouped by run (a run is never split):

- the **outer** loop holds out test runs (``cv="loro"``: each run in turn; ``cv=k``: k
  contiguous groups of runs; or explicit lists of held-out run indices);
- inside the training runs, an **inner** cross-validation (leave-one-run-out by default,
  or grouped K-fold) chooses one alpha per target with :func:`engine.encoding.ridge.ridge_cv`
  (himalaya's convention: mean validation MSE over inner folds, refit on all training
  runs at the best alpha);
- the refit model predicts the held-out runs, which are scored with Pearson r (and R^2)
  per fold; :attr:`EncodingResult.scores` is the mean over outer folds.

So every score is on data that neither fitted the weights nor chose the alpha. (The
himalaya tutorials instead choose alphas by CV on the training runs and score one fixed
test run: that is ``cv=[[test_run]]`` here.) When a training set has a single run, the
inner folds are 5 contiguous blocks of it.

Preprocessing per run (see :mod:`engine.encoding.preprocess`): features are z-scored,
optionally PCA-reduced per feature space (fit on the outer fold's training runs only),
delayed within each run, and run edges dropped; brain data have the same edges dropped,
then are z-scored.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import math
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import ConfigError, DataError, MismatchError, expected_found
from ..jobs import CancelToken, Progress, run_sync
from . import preprocess as pp
from .results import EncodingResult, pearson_r, r2_score
from .ridge import AlphaOnEdgeWarning, check_alphas, default_targets_batch, ridge_cv_job

__all__ = ["fit_encoding", "fit_encoding_job", "outer_folds", "inner_folds", "prepare_features",
           "prepare_brain", "library_versions", "DEFAULT_ALPHAS"]

DEFAULT_ALPHAS = np.logspace(-2, 8, 11)


# ---- folds ---------------------------------------------------------------------------------
def outer_folds(n_runs: int, cv: Union[str, int, Sequence[Sequence[int]]] = "loro") -> List[List[int]]:
    """Held-out run indices of each outer fold.

    Parameters
    ----------
    n_runs : int
    cv : "loro", int or list of lists of int
        "loro": leave one run out; int k: k contiguous groups of runs; a list: the held-out
        runs of each fold, given explicitly.
    """
    if n_runs < 2:
        raise DataError(expected_found("runs for cross-validation", "at least 2 runs", n_runs))
    if isinstance(cv, str):
        if cv.lower() in ("loro", "leave-one-run-out"):
            return [[i] for i in range(n_runs)]
        raise ConfigError(f"cv: got {cv!r}. Supported values are: 'loro', an int (grouped K-fold "
                          "over runs), or a list of held-out run index lists")
    if isinstance(cv, (int, np.integer)):
        k = int(cv)
        if not 2 <= k <= n_runs:
            raise ConfigError(expected_found("cv folds", f"an int in [2, {n_runs}] (number of runs)", k))
        return [list(map(int, g)) for g in np.array_split(np.arange(n_runs), k)]
    folds = [[int(i) for i in np.atleast_1d(f)] for f in cv]
    for f in folds:
        if not f or min(f) < 0 or max(f) >= n_runs or len(set(f)) == n_runs:
            raise ConfigError(expected_found("cv held-out runs", f"non-empty lists of run indices in "
                                             f"[0, {n_runs}) leaving at least one training run", f))
    held_out = [i for f in folds for i in f]
    if len(held_out) != len(set(held_out)):
        raise ConfigError(expected_found("cv held-out runs", "each run held out at most once", folds))
    return folds


def inner_folds(run_lengths: Sequence[int], inner_cv: Union[str, int] = "loro",
                n_blocks_single_run: int = 5) -> List[Tuple[np.ndarray, np.ndarray]]:
    """(train, validation) sample indices over concatenated training runs, grouped by run.

    With one run only, it is cut into ``n_blocks_single_run`` contiguous blocks.
    """
    lengths = [int(n) for n in run_lengths]
    starts = np.concatenate([[0], np.cumsum(lengths)])
    n = int(starts[-1])
    if len(lengths) == 1:
        k = int(inner_cv) if isinstance(inner_cv, (int, np.integer)) else n_blocks_single_run
        k = max(2, min(k, n // 2))
        groups = np.array_split(np.arange(n), k)
    else:
        if isinstance(inner_cv, str) and inner_cv.lower() in ("loro", "leave-one-run-out"):
            run_groups = [[i] for i in range(len(lengths))]
        elif isinstance(inner_cv, (int, np.integer)):
            k = max(2, min(int(inner_cv), len(lengths)))
            run_groups = [list(g) for g in np.array_split(np.arange(len(lengths)), k)]
        else:
            raise ConfigError(f"inner_cv: got {inner_cv!r}. Supported values are: 'loro' or an int")
        groups = [np.concatenate([np.arange(starts[i], starts[i + 1]) for i in g]) for g in run_groups]
    all_idx = np.arange(n)
    out = []
    for val in groups:
        mask = np.ones(n, dtype=bool)
        mask[val] = False
        out.append((all_idx[mask], np.asarray(val)))
    return out


# ---- preprocessing ---------------------------------------------------------------------------
def _as_spaces(X_runs, feature_names=None) -> Dict[str, List[np.ndarray]]:
    if isinstance(X_runs, dict):
        if not X_runs:
            raise DataError(expected_found("feature spaces", "at least one", "an empty dict"))
        return {str(k): pp.check_runs(v, f"feature runs of {k!r}") for k, v in X_runs.items()}
    name = feature_names[0] if feature_names and len(feature_names) == 1 else "features"
    return {name: pp.check_runs(X_runs, "feature runs")}


def prepare_brain(Y_runs, zscore: bool = True, drop_edges: Tuple[int, int] = (0, 0)) -> List[np.ndarray]:
    """Brain runs as the models see them: edges dropped, then z-scored per run."""
    runs = pp.drop_edges(pp.check_runs(Y_runs, "brain runs"), *drop_edges)
    return pp.zscore_runs(runs) if zscore else runs


def prepare_features(spaces: Dict[str, List[np.ndarray]], delays, drop_edges=(0, 0),
                     pca=None, train_runs: Optional[Sequence[int]] = None,
                     zscored: bool = True) -> Tuple[List[np.ndarray], Dict[str, slice]]:
    """Delayed (and optionally PCA-reduced) features of every run, spaces side by side.

    Parameters
    ----------
    spaces : dict name -> list of (n_trs_run, n_features) arrays
        Already z-scored per run when ``zscored``.
    pca : int, float, dict name -> int/float, or None
        Components per space, fit on ``train_runs`` only.

    Returns
    -------
    runs : list of (n_trs_run_kept, n_columns) float32
    columns : dict name -> slice of that space's columns
    """
    blocks: List[List[np.ndarray]] = []
    columns: Dict[str, slice] = {}
    start = 0
    for name, runs in spaces.items():
        k = pca.get(name) if isinstance(pca, dict) else pca
        if k is not None:
            idx = list(range(len(runs))) if train_runs is None else list(train_runs)
            model = pp.RunPCA(k).fit([runs[i] for i in idx])
            runs = model.transform(runs)
        delayed = pp.drop_edges(pp.delay_runs(runs, delays), *drop_edges)
        width = delayed[0].shape[1]
        columns[name] = slice(start, start + width)
        start += width
        blocks.append(delayed)
    n_runs = len(blocks[0])
    return [np.concatenate([b[i] for b in blocks], axis=1) if len(blocks) > 1 else blocks[0][i]
            for i in range(n_runs)], columns


def library_versions() -> Dict[str, str]:
    """Versions of the libraries the fit depends on (without importing them)."""
    from importlib import metadata

    out = {}
    for name in ("numpy", "scipy", "scikit-learn", "himalaya", "torch", "h5py"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    try:
        from .. import __version__

        out["alignscope"] = __version__
    except ImportError:  # pragma: no cover
        pass
    return out


def _hash_runs(runs: Sequence[np.ndarray]) -> str:
    h = hashlib.sha1()
    for r in runs:
        h.update(str(r.shape).encode())
        h.update(np.ascontiguousarray(r).tobytes())
    return h.hexdigest()


# ---- fitting ---------------------------------------------------------------------------------
def fit_encoding_job(X_runs, Y_runs, delays=(1, 2, 3, 4), alphas=DEFAULT_ALPHAS, cv="loro",
                     backend="numpy", n_targets_batch: Optional[int] = None, zscore: bool = True,
                     drop_edges: Tuple[int, int] = (0, 0), pca=None,
                     token: Optional[CancelToken] = None, run_names: Optional[Sequence[str]] = None,
                     space: Optional[str] = None, feature_names: Optional[Sequence[str]] = None,
                     inner_cv: Union[str, int, None] = None, provenance: Optional[Dict[str, Any]] = None,
                     solver: str = "auto", fold_transform=None, banded: bool = False,
                     banded_n_iter: int = 20, banded_gammas=None):
    """Job form of :func:`fit_encoding`: yields a :class:`~engine.jobs.Progress` per outer fold
    and batch of targets (cancel points); returns the :class:`EncodingResult`."""
    spaces = _as_spaces(X_runs, feature_names)
    Y_list = pp.check_runs(Y_runs, "brain runs")
    n_runs = len(Y_list)
    for name, runs in spaces.items():
        if len(runs) != n_runs:
            raise MismatchError(expected_found(f"runs of feature space {name!r}", f"{n_runs} (as brain runs)",
                                               len(runs)))
        for i, (x, y) in enumerate(zip(runs, Y_list)):
            if x.shape[0] != y.shape[0]:
                name_i = run_names[i] if run_names is not None and i < len(run_names) else f"run {i}"
                raise MismatchError(expected_found(f"TRs of {name_i} in feature space {name!r}",
                                                   f"{y.shape[0]} (as the brain run)", x.shape[0]))
    if run_names is None:
        run_names = [f"run-{i + 1:02d}" for i in range(n_runs)]
    run_names = [str(r) for r in run_names]
    if len(run_names) != n_runs:
        raise MismatchError(expected_found("run names", n_runs, len(run_names)))
    delays = [int(d) for d in delays]
    alphas = check_alphas(alphas)
    drop_edges = (int(drop_edges[0]), int(drop_edges[1]))
    folds = outer_folds(n_runs, cv)
    if inner_cv is None:
        inner_cv = cv if isinstance(cv, (int, np.integer)) else "loro"
    if feature_names is None:
        feature_names = list(spaces)
    if space is None:
        space = "+".join(spaces)

    if zscore:
        spaces = {k: pp.zscore_runs(v) for k, v in spaces.items()}
    Yp = prepare_brain(Y_list, zscore=zscore, drop_edges=drop_edges)
    n_targets = Yp[0].shape[1]
    lengths = [y.shape[0] for y in Yp]

    fixed_X = None
    if pca is None and fold_transform is None:
        fixed_X, fixed_columns = prepare_features(spaces, delays, drop_edges)
    banded = bool(banded) and len(spaces) > 1
    if banded:
        from .banded import banded_ridge_cv_job, simplex_candidates

        if banded_gammas is None:
            banded_gammas = simplex_candidates(len(spaces), banded_n_iter)
        banded_gammas = np.atleast_2d(np.asarray(banded_gammas, dtype=np.float64))

    # progress: one step per outer fold and target batch
    n_features_est = (fixed_X[0].shape[1] if fixed_X is not None else
                      sum((pca.get(k, v[0].shape[1]) if isinstance(pca, dict) else
                           (pca if isinstance(pca, int) else v[0].shape[1])) for k, v in spaces.items())
                      * len(delays))
    if n_targets_batch is None:
        n_targets_batch = default_targets_batch(sum(lengths), n_features_est, alphas.size,
                                                max(lengths), n_targets)
    n_batches = max(1, math.ceil(n_targets / n_targets_batch))
    steps_per_fold = n_batches * len(banded_gammas) + 1 if banded else n_batches
    total = len(folds) * steps_per_fold

    predictions: List[Optional[np.ndarray]] = [None] * n_runs
    scores_per_fold = np.zeros((len(folds), n_targets), dtype=np.float32)
    r2_per_fold = np.zeros((len(folds), n_targets), dtype=np.float32)
    alphas_per_fold = np.zeros((len(folds), n_targets), dtype=np.float64)
    on_edge = np.zeros(n_targets, dtype=bool)
    log_space_alphas = np.zeros((len(spaces), n_targets)) if banded else None
    n_features_used = None
    yield Progress(0, total, "preparing runs")
    for f, test in enumerate(folds):
        train = [i for i in range(n_runs) if i not in test]
        if fixed_X is not None:
            Xp, columns = fixed_X, fixed_columns
        else:
            fold_spaces = spaces if fold_transform is None else fold_transform(spaces, train)
            Xp, columns = prepare_features(fold_spaces, delays, drop_edges, pca=pca, train_runs=train)
        n_features_used = Xp[0].shape[1]
        X_train = pp.concat_runs(Xp, train)
        Y_train = pp.concat_runs(Yp, train)
        folds_in = inner_folds([lengths[i] for i in train], inner_cv)
        message = f"fold {f + 1}/{len(folds)}: "
        if banded:
            gen = banded_ridge_cv_job({k: X_train[:, sl] for k, sl in columns.items()}, Y_train, alphas,
                                      folds_in, gammas=banded_gammas, backend=backend,
                                      n_targets_batch=n_targets_batch, X_predict=[Xp[i] for i in test],
                                      return_coef=False, token=token)
            while True:
                try:
                    report = next(gen)
                except StopIteration as stop:
                    res = stop.value
                    break
                yield Progress(f * steps_per_fold + report.step, total, message + report.message)
            edge = np.isin(res.best_alphas, [alphas.min(), alphas.max()])
            log_space_alphas += np.log(res.space_alphas)
        else:
            res = yield from ridge_cv_job(
                X_train, Y_train, alphas, folds_in, backend=backend, n_targets_batch=n_targets_batch,
                X_predict=[Xp[i] for i in test], return_coef=False, solver=solver, warn=False,
                token=token, progress_offset=f * steps_per_fold, progress_total=total, message=message)
            edge = res.on_edge
        for i, pred in zip(test, res.predictions):
            predictions[i] = pred
        y_test = pp.concat_runs(Yp, test)
        p_test = np.concatenate(res.predictions, axis=0)
        scores_per_fold[f] = pearson_r(y_test, p_test)
        r2_per_fold[f] = r2_score(y_test, p_test)
        alphas_per_fold[f] = res.best_alphas
        on_edge |= edge

    # runs no fold held out (explicit cv, e.g. one fixed test run) have no held-out prediction
    predictions = [p if p is not None else np.full_like(Yp[i], np.nan) for i, p in enumerate(predictions)]
    if on_edge.any():
        warnings.warn(f"{int(on_edge.sum())} of {n_targets} targets chose an alpha at the edge of the "
                      f"grid [{alphas.min():.3g}, {alphas.max():.3g}] in some fold; consider widening it",
                      AlphaOnEdgeWarning, stacklevel=2)
    prov = {
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "method": ("nested cross-validated banded ridge (alpha per space and target)" if banded
                   else "nested cross-validated ridge (alpha per target)"),
        "features": {k: {"n_features": int(v[0].shape[1]), "n_runs": len(v)} for k, v in spaces.items()},
        "n_features_model": int(n_features_used),
        "delays_trs": delays,
        "alphas_grid": alphas.tolist(),
        "cv": cv if isinstance(cv, (str, int)) else "explicit",
        "inner_cv": inner_cv,
        "outer_folds": folds,
        "zscore": bool(zscore),
        "drop_edges": list(drop_edges),
        "pca": pca,
        "backend": str(getattr(backend, "name", backend)),
        "score": "Pearson r per held-out fold (runs concatenated within a fold), mean over folds",
        "input_hashes": {"brain_sha1": _hash_runs(Y_list),
                         **{f"features_{k}_sha1": _hash_runs(v) for k, v in spaces.items()}},
        "libraries": library_versions(),
    }
    if provenance:
        prov.update(provenance)
    return EncodingResult(
        scores=scores_per_fold.mean(0).astype(np.float32),
        r2=r2_per_fold.mean(0).astype(np.float32),
        alphas=np.exp(np.log(alphas_per_fold).mean(0)),
        predictions=predictions, measured=Yp, run_names=run_names, space=space,
        feature_names=list(feature_names), delays=delays, folds=folds,
        scores_per_fold=scores_per_fold, alphas_per_fold=alphas_per_fold, alpha_on_edge=on_edge,
        alpha_grid=alphas, provenance=prov,
        space_alphas=np.exp(log_space_alphas / len(folds)) if banded else None,
    )


def fit_encoding(X_runs, Y_runs, delays=(1, 2, 3, 4), alphas=DEFAULT_ALPHAS, cv="loro",
                 backend="numpy", n_targets_batch: Optional[int] = None, zscore: bool = True,
                 drop_edges: Tuple[int, int] = (0, 0), pca=None, token: Optional[CancelToken] = None,
                 run_names: Optional[Sequence[str]] = None, space: Optional[str] = None,
                 feature_names: Optional[Sequence[str]] = None, inner_cv=None,
                 provenance: Optional[Dict[str, Any]] = None, solver: str = "auto",
                 fold_transform=None, banded: bool = False, banded_n_iter: int = 20,
                 banded_gammas=None, on_progress=None) -> EncodingResult:
    """Fit cross-validated encoding models (one ridge per target) and score them on held-out runs.

    Parameters
    ----------
    X_runs : list of (n_trs_run, n_features) arrays, or dict space name -> such a list
        Model features per run, aligned to TRs. Several spaces are delayed separately and
        concatenated (a joint model).
    Y_runs : list of (n_trs_run, n_targets) arrays
        Brain data per run (parcels, vertices or voxels).
    delays : sequence of int
        FIR delays in TRs, applied within each run.
    alphas : (n_alphas,) array
        Ridge grid; one alpha is chosen per target (inner CV).
    cv : "loro", int or list of lists
        Outer cross-validation over runs (see :func:`outer_folds`). ``[[k]]`` is the
        himalaya tutorials' convention (alpha by CV on the other runs, one test run ``k``);
        runs that no fold holds out get NaN predictions.
    backend : {"numpy", "torch", "torch_cuda"}
    n_targets_batch : int, optional
        Targets solved at once (bounds memory).
    zscore : bool
        Z-score features and brain data per run.
    drop_edges : (int, int)
        TRs dropped at the start and end of every run (features and brain data alike).
    pca : int, float, dict, or None
        PCA per feature space fit on training runs (e.g. 250 components as the Algonauts
        baseline); a dict gives it per space.
    token : CancelToken, optional
        Checked between target batches.
    run_names, space, feature_names : optional labels stored in the result.
    inner_cv : "loro" or int, optional
        Inner CV for the alpha (default: leave-one-run-out, or grouped K-fold when ``cv`` is an int).
    provenance : dict, optional
        Extra provenance (data paths, hashes) merged into the result's.
    solver : {"auto", "primal", "dual"}
    fold_transform : callable, optional
        ``fold_transform(spaces, train_run_indices) -> spaces`` applied to the z-scored
        feature runs of each outer fold before PCA and delays, fit on the training runs
        only (e.g. :func:`engine.encoding.partition.residualize` removes unimodal features).
    banded : bool
        With several feature spaces, banded ridge (:mod:`engine.encoding.banded`): one
        penalty per space and target, searched over ``banded_n_iter`` simplex candidates
        (or ``banded_gammas``); ``EncodingResult.space_alphas`` holds them.
    on_progress : callable, optional
        Receives each :class:`~engine.jobs.Progress`.

    Returns
    -------
    EncodingResult
        ``scores`` is the held-out Pearson r averaged over outer folds.
    """
    return run_sync(fit_encoding_job(X_runs, Y_runs, delays=delays, alphas=alphas, cv=cv, backend=backend,
                                     n_targets_batch=n_targets_batch, zscore=zscore, drop_edges=drop_edges,
                                     pca=pca, token=token, run_names=run_names, space=space,
                                     feature_names=feature_names, inner_cv=inner_cv,
                                     provenance=provenance, solver=solver,
                                     fold_transform=fold_transform, banded=banded,
                                     banded_n_iter=banded_n_iter, banded_gammas=banded_gammas),
                    token=token, on_progress=on_progress)
