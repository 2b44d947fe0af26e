"""Banded ridge: one regularisation strength per feature space, chosen per target.

When several feature spaces (say vision and language layers) predict the same targets,
one shared alpha over-penalises the useful space or under-penalises the useless one.
Banded ridge (Nunez-Elizalde et al. 2019; himalaya's ``BandedRidgeCV``) scales each space
``i`` by ``sqrt(gamma_i)`` (``gamma`` on the simplex) before a ridge with alpha, which is a
ridge with penalty ``alpha / gamma_i`` on space ``i``'s coefficients. Candidate ``gamma``
vectors are searched (random search on the simplex, as himalaya's ``random_search``
solver, or a given list), and for each one the alpha grid is cross-validated with
:func:`engine.encoding.ridge.ridge_cv_job`; each target keeps the ``(gamma, alpha)`` with
the best mean validation score (negative MSE; a later candidate replaces an earlier one
only when better by more than float32 epsilon, as in himalaya), then everything is refit
on all samples at its own ``(gamma, alpha)``.

Coefficients are returned on the *unscaled* features (as himalaya's ``coef_``).
``space_alphas[i, t] = alpha_t / gamma_it`` is the effective penalty of space ``i``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from ..errors import ConfigError, DataError, MismatchError, expected_found
from ..jobs import CancelToken, Progress, run_sync
from .ridge import check_alphas, default_targets_batch, ridge_cv_job, ridge_fit

__all__ = ["BandedRidgeResult", "banded_ridge_cv", "banded_ridge_cv_job", "simplex_candidates",
           "default_candidates", "refine_candidates"]

#: Weight of a space switched off in a corner candidate ("only this space").
CORNER_EPS = 1e-6


@dataclass
class BandedRidgeResult:
    """What :func:`banded_ridge_cv` found.

    Attributes
    ----------
    space_names : list of str
    gammas : (n_spaces, n_targets) float64
        Best simplex weights per target.
    best_alphas : (n_targets,) float64
    space_alphas : (n_spaces, n_targets) float64
        Effective penalty of each space: ``best_alphas / gammas``.
    deltas : (n_spaces, n_targets) float64
        ``log(gammas / best_alphas)``, himalaya's parametrisation.
    cv_scores : (n_targets,) float64
        Best mean validation score (negative MSE).
    coef : (n_features_total, n_targets) float32 or None
        On the unscaled features, spaces stacked in order.
    predictions : list of (n_i, n_targets) float32
        Predictions for ``X_predict``.
    split_predictions : list of (n_spaces, n_i, n_targets) float32
        Each space's share of the predictions (``X_i @ coef_i``).
    columns : dict space -> slice of its columns in ``coef``
    """

    space_names: List[str]
    gammas: np.ndarray
    best_alphas: np.ndarray
    space_alphas: np.ndarray
    deltas: np.ndarray
    cv_scores: np.ndarray
    coef: Optional[np.ndarray] = None
    predictions: List[np.ndarray] = field(default_factory=list)
    split_predictions: List[np.ndarray] = field(default_factory=list)
    columns: Dict[str, slice] = field(default_factory=dict)
    candidates: Optional[np.ndarray] = None


def simplex_candidates(n_spaces: int, n_iter: int = 20, concentration=(0.1, 1.0),
                       random_state: int = 0) -> np.ndarray:
    """Candidate ``gamma`` vectors: the centre of the simplex, then Dirichlet samples.

    Returns
    -------
    (n_iter, n_spaces) float64, rows summing to 1.
    """
    if n_spaces < 1 or n_iter < 1:
        raise ConfigError(expected_found("banded ridge candidates", "n_spaces >= 1 and n_iter >= 1",
                                         (n_spaces, n_iter)))
    rng = np.random.default_rng(random_state)
    out = [np.full(n_spaces, 1.0 / n_spaces)]
    conc = list(np.atleast_1d(concentration))
    i = 0
    while len(out) < n_iter:
        out.append(rng.dirichlet([conc[i % len(conc)]] * n_spaces))
        i += 1
    g = np.asarray(out[:n_iter], dtype=np.float64)
    # a space with gamma ~ 0 is equivalent to dropping it; keep the solver finite
    g = np.maximum(g, 1e-12)
    return g / g.sum(1, keepdims=True)


def default_candidates(n_spaces: int, n_iter: int = 0, random_state: int = 0) -> np.ndarray:
    """The default ``gamma`` candidates: the centre and each space alone (+ pairs, + random ones).

    - the centre (all spaces weighted equally: a plain joint ridge);
    - each space alone (the others at ``CORNER_EPS``): a target driven by one small space can
      always reach the r of that space alone, whatever the other spaces;
    - with 3 spaces, each pair alone;
    - then ``n_iter`` Dirichlet samples (concentrations 0.1 and 1, as himalaya's random search).

    Few, structured candidates are the default on purpose: each target picks its best
    candidate on inner folds, and the more candidates there are, the more a noisy inner score
    picks a wrong one (measured on planted data: centre + corners kept 95-100% of each
    region's single-space r, 20 random candidates more kept 77-97%, at 4x the time).

    Returns (n_candidates, n_spaces) float64, rows on the simplex, no duplicates.
    """
    if n_spaces < 1 or n_iter < 0:
        raise ConfigError(expected_found("banded ridge candidates", "n_spaces >= 1 and n_iter >= 0",
                                         (n_spaces, n_iter)))
    rows = [np.full(n_spaces, 1.0 / n_spaces)]
    if n_spaces > 1:
        for i in range(n_spaces):
            g = np.full(n_spaces, CORNER_EPS)
            g[i] = 1.0
            rows.append(g)
        if n_spaces == 3:
            for i in range(n_spaces):
                for j in range(i + 1, n_spaces):
                    g = np.full(n_spaces, CORNER_EPS)
                    g[[i, j]] = 1.0
                    rows.append(g)
    if n_iter > 0 and n_spaces > 1:
        rows.extend(simplex_candidates(n_spaces, n_iter + 1, random_state=random_state)[1:])
    return _unique_rows(np.asarray(rows, dtype=np.float64))


def _unique_rows(g: np.ndarray, existing: Optional[np.ndarray] = None, tol: float = 1e-3) -> np.ndarray:
    g = np.maximum(np.asarray(g, dtype=np.float64), 1e-12)
    g = g / g.sum(1, keepdims=True)
    out = []
    ref = [] if existing is None else [np.log(r) for r in existing]
    for row in g:
        lr = np.log(row)
        if any(np.max(np.abs(lr - e)) < tol for e in ref):
            continue
        ref.append(lr)
        out.append(row)
    return np.asarray(out, dtype=np.float64).reshape(-1, g.shape[1])


def refine_candidates(gammas: np.ndarray, best_index: np.ndarray, weights: Optional[np.ndarray] = None,
                      n_bases: int = 4, step: float = 10.0) -> np.ndarray:
    """New candidates around the most chosen ones: each space's weight times and over ``step``.

    Parameters
    ----------
    gammas : (n_candidates, n_spaces) tried so far
    best_index : (n_targets,) index of each target's best candidate
    weights : (n_targets,) how much each target counts (e.g. its gain over the centre), optional
    n_bases : int
        Candidates refined (the most chosen, by total weight).

    Returns
    -------
    (n_new, n_spaces) candidates not yet tried.
    """
    n_spaces = gammas.shape[1]
    w = np.ones(best_index.size) if weights is None else np.maximum(np.asarray(weights, float), 0)
    totals = np.bincount(best_index, weights=w, minlength=len(gammas))
    bases = [int(i) for i in np.argsort(-totals, kind="stable")[:n_bases] if totals[i] > 0]
    rows = []
    for b in bases:
        for i in range(n_spaces):
            for factor in (step, 1.0 / step):
                g = gammas[b].copy()
                g[i] = min(max(g[i] * factor, CORNER_EPS), 1.0)
                rows.append(g)
    if not rows:
        return np.zeros((0, n_spaces))
    return _unique_rows(np.asarray(rows), existing=gammas)


def _as_space_list(Xs, what="feature spaces"):
    if isinstance(Xs, dict):
        names = [str(k) for k in Xs]
        arrays = list(Xs.values())
    else:
        arrays = list(Xs)
        names = [f"space{i}" for i in range(len(arrays))]
    if not arrays:
        raise DataError(expected_found(what, "at least one (n_samples, n_features) array", "none"))
    arrays = [np.ascontiguousarray(np.asarray(a, dtype=np.float32)) for a in arrays]
    for name, a in zip(names, arrays):
        if a.ndim != 2 or a.shape[0] != arrays[0].shape[0]:
            raise MismatchError(expected_found(f"{what} {name!r}", f"({arrays[0].shape[0]}, n_features)",
                                               a.shape))
    return names, arrays


def banded_ridge_cv_job(Xs, Y, alphas, folds, gammas: Union[None, np.ndarray] = None, n_iter: int = 20,
                        concentration=(0.1, 1.0), random_state: int = 0, backend="numpy",
                        n_targets_batch: Optional[int] = None, X_predict: Sequence = (),
                        return_coef: bool = True, token: Optional[CancelToken] = None,
                        refine: Optional[bool] = None, refine_bases: int = 4, refine_max: int = 24):
    """Job form of :func:`banded_ridge_cv` (a :class:`Progress` per candidate and target batch)."""
    names, arrays = _as_space_list(Xs)
    Y = np.asarray(Y, dtype=np.float32)
    if Y.ndim != 2 or Y.shape[0] != arrays[0].shape[0]:
        raise MismatchError(expected_found("brain data samples", arrays[0].shape[0], Y.shape))
    alphas = check_alphas(alphas)
    n_spaces = len(arrays)
    if refine is None:
        refine = False
    if gammas is None:
        gammas = default_candidates(n_spaces, n_iter, random_state)
    gammas = np.atleast_2d(np.asarray(gammas, dtype=np.float64))
    if gammas.shape[1] != n_spaces or np.any(gammas <= 0):
        raise ConfigError(expected_found("banded ridge gammas", f"positive (n_candidates, {n_spaces})",
                                         gammas.shape))
    n_samples, n_targets = Y.shape
    widths = [a.shape[1] for a in arrays]
    edges = np.concatenate([[0], np.cumsum(widths)])
    columns = {n: slice(int(edges[i]), int(edges[i + 1])) for i, n in enumerate(names)}
    X_all = np.concatenate(arrays, axis=1)
    X_pred = [np.asarray(x, dtype=np.float32) for x in X_predict]
    for x in X_pred:
        if x.ndim != 2 or x.shape[1] != X_all.shape[1]:
            raise MismatchError(expected_found("features to predict", f"(n, {X_all.shape[1]})", x.shape))
    if n_targets_batch is None:
        n_val_max = max(len(np.atleast_1d(v)) for _, v in folds)
        n_targets_batch = default_targets_batch(n_samples, X_all.shape[1], alphas.size, n_val_max, n_targets)
    n_batches = int(np.ceil(n_targets / n_targets_batch))
    total = len(gammas) * n_batches + 1

    best_score = np.full(n_targets, -np.inf)
    best_gamma = np.zeros(n_targets, dtype=np.int64)
    best_alpha = np.ones(n_targets)
    eps = float(np.finfo(np.float32).eps)
    log_alphas = np.log(alphas)
    tried = []

    def evaluate(cands, offset, total_steps):
        for k, gamma in enumerate(cands):
            ig = len(tried)
            tried.append(gamma)
            scale = np.concatenate([np.full(w, np.sqrt(g), dtype=np.float32) for w, g in zip(widths, gamma)])
            res = yield from ridge_cv_job(X_all * scale, Y, alphas, folds, backend=backend,
                                          n_targets_batch=n_targets_batch, return_coef=False, warn=False,
                                          token=token, progress_offset=(offset + k) * n_batches,
                                          progress_total=total_steps,
                                          message=f"candidate {ig + 1}: ")
            scored = res.cv_scores + 1e-10 * log_alphas[:, None]
            idx = np.argmax(scored, axis=0)
            score = scored[idx, np.arange(n_targets)]
            better = score > best_score + eps
            best_score[better] = score[better]
            best_gamma[better] = ig
            best_alpha[better] = alphas[idx[better]]

    if refine:
        # a second round around the candidates most targets chose: the search adapts to the
        # data, on the inner folds only (the caller's held-out data never choose a candidate)
        total = (len(gammas) + refine_max) * n_batches + 1
        yield from evaluate(gammas, 0, total)
        new = refine_candidates(np.asarray(tried), best_gamma, None, n_bases=refine_bases)[:refine_max]
        if len(new):
            yield from evaluate(new, len(gammas), total)
        gammas = np.asarray(tried)
    else:
        yield from evaluate(gammas, 0, total)
        gammas = np.asarray(tried)

    coef = np.zeros((X_all.shape[1], n_targets), dtype=np.float32) if return_coef else None
    predictions = [np.zeros((x.shape[0], n_targets), dtype=np.float32) for x in X_pred]
    split = [np.zeros((n_spaces, x.shape[0], n_targets), dtype=np.float32) for x in X_pred]
    for ig in np.unique(best_gamma):
        if token is not None:
            token.raise_if_cancelled()
        targets = np.flatnonzero(best_gamma == ig)
        scale = np.concatenate([np.full(w, np.sqrt(g), dtype=np.float32)
                                for w, g in zip(widths, gammas[ig])])
        c, _ = ridge_fit(X_all * scale, Y[:, targets], best_alpha[targets], backend=backend,
                         n_targets_batch=n_targets_batch)
        c *= scale[:, None]                                   # back to the unscaled features
        if return_coef:
            coef[:, targets] = c
        for x, out, sp in zip(X_pred, predictions, split):
            out[:, targets] = x @ c
            for k, name in enumerate(names):
                sl = columns[name]
                sp[k][:, targets] = x[:, sl] @ c[sl]
    yield Progress(total, total, "refit")
    g_best = gammas[best_gamma].T                              # n_spaces, n_targets
    return BandedRidgeResult(space_names=names, gammas=g_best, best_alphas=best_alpha,
                             space_alphas=best_alpha[None, :] / g_best,
                             deltas=np.log(g_best / best_alpha[None, :]), cv_scores=best_score,
                             coef=coef, predictions=predictions, split_predictions=split,
                             columns=columns, candidates=gammas)


def banded_ridge_cv(Xs, Y, alphas, folds, gammas=None, n_iter: int = 20, concentration=(0.1, 1.0),
                    random_state: int = 0, backend="numpy", n_targets_batch: Optional[int] = None,
                    X_predict: Sequence = (), return_coef: bool = True,
                    token: Optional[CancelToken] = None, refine: Optional[bool] = None) -> BandedRidgeResult:
    """Banded ridge with per-space penalties chosen per target by cross-validation.

    Parameters
    ----------
    Xs : list of (n_samples, n_features_i) arrays, or dict space name -> array
        Feature spaces (z-scored, delayed).
    Y : (n_samples, n_targets) array
    alphas : (n_alphas,) array
        Global ridge grid (the per-space penalty is ``alpha / gamma_i``).
    folds : list of (train_indices, validation_indices)
    gammas : (n_candidates, n_spaces) array, optional
        Simplex weights to try (exactly these: himalaya's ``GroupRidgeCV`` with
        ``n_iter=gammas`` gives the same answer). Default: :func:`default_candidates`
        (centre, each space alone, ``n_iter`` random).
    refine : bool, optional
        Add one round of :func:`refine_candidates` around the candidates the targets chose
        (off by default: on planted data it lowered the held-out r, see
        :func:`default_candidates`).
    X_predict : sequence of (n_i, n_features_total) arrays (spaces stacked in order)

    Returns
    -------
    BandedRidgeResult
    """
    return run_sync(banded_ridge_cv_job(Xs, Y, alphas, folds, gammas=gammas, n_iter=n_iter,
                                        concentration=concentration, random_state=random_state,
                                        backend=backend, n_targets_batch=n_targets_batch,
                                        X_predict=X_predict, return_coef=return_coef, token=token,
                                        refine=refine),
                    token=token)
