"""Cross-validated ridge regression with one alpha per target, at brain scale.

The convention is himalaya's ``RidgeCV`` (``solve_ridge_cv_svd``), so the two agree to
float32 precision on the same folds and alphas:

- no intercept (the data are z-scored per run beforehand);
- for every fold and alpha, the validation score is the negative mean squared error;
- scores are averaged over folds; per target, the best alpha maximises the mean
  (ties go to the larger alpha, via himalaya's ``1e-10 * log(alpha)`` slope);
- the model is refit on *all* the samples given, at each target's best alpha.

:func:`ridge_cv` is the *inner* loop. :func:`engine.encoding.fit.fit_encoding` nests it in
an outer loop over held-out runs, so the runs it scores on never choose an alpha.

How it is fast (see ``bench/encoding.py``)
------------------------------------------
Primal form (``n_features <= n_samples_train``): per fold, the Gram matrix of the training
rows ``C = X_tr^T X_tr`` (float64, ``n_features^2``, a downdate of the full Gram when the
fold's training rows are the complement of its validation rows) is diagonalised once,
``C = V diag(s) V^T``, and the *resolvent rows* of every alpha are stacked:
``R = [X_val (C + a_1 I)^-1; ...; X_val (C + a_k I)^-1]`` (``n_alphas * n_val`` by
``n_features``, independent of the targets). The validation predictions of all alphas
are then one float32 GEMM per fold and target batch, ``R @ (X_tr^T Y)``, and no
coefficients are ever formed for the alphas. ``X_tr^T Y = X^T Y - X_val^T Y_val`` and,
when the validation sets partition the samples, ``X^T Y`` is the sum of the folds'
``X_val^T Y_val``: one pass over ``Y`` per fold. The squared errors are taken in place.
The refit needs no per-alpha work: with ``C_all = V diag(s) V^T``,
``coef[:, t] = V ((V^T X^T Y)[:, t] / (s + alpha_t))``, two GEMMs for all targets.
With few targets (``n_alphas * n_val > n_targets``, e.g. 1000 parcels and many
features) the ``n_features^2`` cost of forming ``R`` is not repaid, and the predictions go
through ``Z = V^T X_tr^T Y`` instead: ``[X_val V diag(1/(s + a_1)); ...] @ Z``.
Per target batch that is about ``2 n_targets (n_samples n_features (1 + n_alphas)
+ 2 n_features^2)`` flops, against himalaya's ``RidgeCV`` which forms
``(n_alphas, n_val, n_train)`` prediction operators and refits every used alpha for
every target (``2 n_alphas n_features n_samples n_targets`` more).

Dual (kernel) form (``n_features > n_samples_train``): the same with the linear kernel
``K = X X^T`` in place of ``C`` (eigenvectors ``U``), ``Z = U^T Y_tr`` per fold, and its
numerical null space dropped.

Memory is bounded by ``n_targets_batch``: the largest temporary is
``(n_alphas * n_samples_val, n_targets_batch)`` float32.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import ConfigError, DataError, MismatchError, expected_found
from ..jobs import CancelToken, Progress, run_sync
from .backends import get_backend

__all__ = ["RidgeCVResult", "ridge_cv", "ridge_cv_job", "ridge_fit", "solve_ridge", "check_alphas",
           "AlphaOnEdgeWarning", "default_targets_batch"]


#: Keep every fold's resolvent rows between target batches up to this size (bytes);
#: beyond it they are rebuilt for each batch from the fold's eigendecomposition.
RESOLVENT_CACHE_BYTES = 1e9


class AlphaOnEdgeWarning(UserWarning):
    """Some targets' best alpha is the smallest or largest of the grid: widen the grid."""


@dataclass
class RidgeCVResult:
    """What :func:`ridge_cv` found.

    Attributes
    ----------
    best_alphas : (n_targets,) float64
        Alpha chosen per target.
    alpha_index : (n_targets,) int
        Index of the chosen alpha in ``alphas``.
    cv_scores : (n_alphas, n_targets) float64
        Validation negative mean squared error, averaged over folds.
    on_edge : (n_targets,) bool
        True where the best alpha is the smallest or largest of the grid.
    coef : (n_features, n_targets) float32 or None
        Refit coefficients (all samples, best alpha).
    predictions : list of (n_samples_i, n_targets) float32
        Predictions of the refit model for each matrix of ``X_predict``.
    solver : str
        "primal" or "dual".
    """

    best_alphas: np.ndarray
    alpha_index: np.ndarray
    cv_scores: np.ndarray
    on_edge: np.ndarray
    coef: Optional[np.ndarray] = None
    predictions: List[np.ndarray] = field(default_factory=list)
    alphas: Optional[np.ndarray] = None
    solver: str = "primal"


def check_alphas(alphas) -> np.ndarray:
    """Return the alpha grid as a 1-D float64 array of positive values."""
    a = np.atleast_1d(np.asarray(alphas, dtype=np.float64)).ravel()
    if a.size == 0 or not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise ConfigError(expected_found("alphas", "a non-empty grid of positive, finite values",
                                         np.array2string(a, precision=3)))
    return a


def _check_folds(folds, n_samples: int) -> List[Tuple[np.ndarray, np.ndarray]]:
    out = []
    for i, (train, val) in enumerate(folds):
        train = np.asarray(train, dtype=np.int64).ravel()
        val = np.asarray(val, dtype=np.int64).ravel()
        if train.size == 0 or val.size == 0:
            raise ConfigError(expected_found(f"fold {i}", "non-empty training and validation samples",
                                             f"{train.size} training, {val.size} validation"))
        if train.min() < 0 or val.min() < 0 or train.max() >= n_samples or val.max() >= n_samples:
            raise ConfigError(expected_found(f"fold {i} sample indices", f"within [0, {n_samples})",
                                             "indices outside"))
        out.append((train, val))
    if not out:
        raise ConfigError(expected_found("folds", "at least one (train, validation) split", "none"))
    return out


def default_targets_batch(n_samples: int, n_features: int, n_alphas: int, n_val_max: int,
                          n_targets: int, budget_bytes: float = 256e6) -> int:
    """A target batch size keeping the solver's per-batch temporaries near ``budget_bytes``."""
    per_target = 4 * (n_alphas * n_val_max * 2 + 3 * n_features + 2 * n_samples)
    b = int(budget_bytes // max(per_target, 1))
    return int(max(64, min(n_targets, b)))


def _is_partition(train: np.ndarray, val: np.ndarray, n_samples: int) -> bool:
    if train.size + val.size != n_samples:
        return False
    mask = np.zeros(n_samples, dtype=bool)
    mask[train] = True
    mask[val] = True
    return bool(mask.all())


def _weighted_rows(bk, eig, alphas_b):
    """``[X_val V diag(1 / (s + a_1)); ...]`` stacked: (n_alphas * n_val, n_features) float32.

    ``eig = (s, V, X_val V)`` with ``C_train = V diag(s) V^T`` (float64).
    """
    s, v, xv_v = eig
    weights = bk.cast(1.0 / (s[None, :] + alphas_b[:, None]), "float32")   # n_alphas, n_features
    xv_v32 = bk.cast(xv_v, "float32")
    return bk.concatenate([xv_v32 * weights[i][None, :] for i in range(weights.shape[0])], 0)


def _resolvent_rows(bk, eig, alphas_b):
    """``X_val (C_train + alpha I)^-1`` for every alpha, stacked: (n_alphas * n_val, n_features) float32."""
    return _weighted_rows(bk, eig, alphas_b) @ bk.cast(eig[1], "float32").T


def _drop_null_space(bk, s, u, rtol: float = 1e-10):
    """Keep the kernel's eigenvectors whose eigenvalue is not a numerical zero.

    When the kernel is rank-deficient (fewer features than samples), the null-space
    eigenvectors add nothing in exact arithmetic, but in float32 their ``1 / alpha``
    weights would amplify rounding errors.
    """
    s_np = bk.to_numpy(s)
    keep = np.flatnonzero(s_np > rtol * max(float(s_np.max()), 1e-300))
    if keep.size == s_np.size:
        return bk.clip_min(s, 0.0), u
    return bk.take_rows(s, keep), bk.take_rows(u.T, keep).T


def ridge_cv_job(X, Y, alphas, folds, backend="numpy", n_targets_batch: Optional[int] = None,
                 X_predict: Sequence = (), return_coef: bool = True, solver: str = "auto",
                 warn: bool = True, token: Optional[CancelToken] = None, progress_offset: int = 0,
                 progress_total: Optional[int] = None, message: str = ""):
    """Job form of :func:`ridge_cv`: yields a :class:`Progress` per batch of targets.

    ``progress_offset``/``progress_total`` let a caller (the outer cross-validation) embed
    these steps in its own count.
    """
    bk = get_backend(backend)
    X = np.asarray(X, dtype=np.float32)
    Y = np.asarray(Y, dtype=np.float32)
    if X.ndim != 2 or Y.ndim != 2:
        raise DataError(expected_found("ridge inputs", "2-D X (n_samples, n_features) and Y "
                                       "(n_samples, n_targets)", f"X {X.shape}, Y {Y.shape}"))
    if X.shape[0] != Y.shape[0]:
        raise MismatchError(expected_found("samples in features and brain data", X.shape[0], Y.shape[0]))
    alphas = check_alphas(alphas)
    n_samples, n_features = X.shape
    n_targets = Y.shape[1]
    n_alphas = alphas.size
    folds = _check_folds(folds, n_samples)
    n_val_max = max(v.size for _, v in folds)
    n_train_min = min(t.size for t, _ in folds)
    if solver == "auto":
        solver = "primal" if n_features <= n_train_min else "dual"
    if solver not in ("primal", "dual"):
        raise ConfigError(f"solver: got {solver!r}. Supported values are: auto, primal, dual")
    if n_targets_batch is None:
        n_targets_batch = default_targets_batch(n_samples, n_features, n_alphas, n_val_max, n_targets)
    n_targets_batch = int(max(1, n_targets_batch))
    n_batches = max(1, math.ceil(n_targets / n_targets_batch))
    total = progress_total if progress_total is not None else n_batches

    # ---- decompositions, once per fold (independent of the targets) -----------------
    Xb = bk.asarray(X)                                          # n_samples, n_features
    X64 = bk.cast(Xb, "float64")
    alphas_b = bk.asarray(alphas, "float64")
    fold_ops = []
    # validation sets that partition the samples: X^T Y is the sum of the folds' X_v^T Y_v
    val_partition = _is_partition(np.concatenate([v for _, v in folds]), np.zeros(0, np.int64), n_samples) \
        and sum(v.size for _, v in folds) == n_samples
    if solver == "primal":
        gram = X64.T @ X64                                      # n_features, n_features
        # keep every fold's (n_alphas * n_val, n_features) stacked rows when they fit
        cache_bytes = 4 * n_alphas * sum(v.size for _, v in folds) * n_features
        keep_resolvents = cache_bytes <= RESOLVENT_CACHE_BYTES
        # Resolvent rows cost n_alphas * n_val * n_features^2 once per fold and save a
        # V^T (X_tr^T Y) projection (n_features^2 per target): worth it with many targets.
        # With few targets (parcels), project instead: Z = V^T X_tr^T Y per batch.
        use_resolvent = n_alphas * n_val_max <= n_targets
        for train, val in folds:
            complement = _is_partition(train, val, n_samples)
            Xv64 = bk.take_rows(X64, val)
            op = dict(train=train, val=val, complement=complement, xv=bk.take_rows(Xb, val),
                      xt=None if complement else bk.take_rows(Xb, train))
            if complement:
                c = gram - Xv64.T @ Xv64
            else:
                Xt64 = bk.take_rows(X64, train)
                c = Xt64.T @ Xt64
            s, v = bk.eigh(c)
            del c
            eig = (bk.clip_min(s, 0.0), v, Xv64 @ v)
            if not use_resolvent:
                op["v32"] = bk.cast(v, "float32")
            if keep_resolvents:
                op["rows"] = (_resolvent_rows if use_resolvent else _weighted_rows)(bk, eig, alphas_b)
            else:                                               # rebuilt per target batch
                op["eig"] = eig
            fold_ops.append(op)
        if return_coef or len(X_predict):
            s_all, v_all = bk.eigh(gram)
            s_all = bk.clip_min(s_all, 0.0)
            v_all32 = bk.cast(v_all, "float32")
        del gram
    else:
        kernel = X64 @ X64.T                                    # n_samples, n_samples
        for train, val in folds:
            k_tr = bk.take_rows(bk.take_rows(kernel, train).T, train)
            s, u = _drop_null_space(bk, *bk.eigh(k_tr))
            weights = 1.0 / (s[None, :] + alphas_b[:, None])   # n_alphas, n_train
            k_vt = bk.take_rows(bk.take_rows(kernel, train).T, val)   # n_val, n_train
            a_val = bk.cast(k_vt @ u, "float32")
            w_stack = bk.concatenate([a_val * bk.cast(weights[i], "float32")[None, :]
                                      for i in range(n_alphas)], 0)
            fold_ops.append(dict(train=train, val=val, u=bk.cast(u, "float32"), w_stack=w_stack))
        if return_coef or len(X_predict):
            s_all, u_all = _drop_null_space(bk, *bk.eigh(kernel))
            u_all32 = bk.cast(u_all, "float32")
        del kernel
    del X64

    cv_scores = np.zeros((n_alphas, n_targets), dtype=np.float64)
    coef = np.zeros((n_features, n_targets), dtype=np.float32) if return_coef else None
    Xp = [bk.asarray(x) for x in X_predict]
    Xp_v = ([bk.cast(bk.cast(x, "float64") @ v_all, "float32") for x in Xp]
            if (solver == "primal" and Xp and not return_coef) else [])
    predictions = [np.zeros((x.shape[0], n_targets), dtype=np.float32) for x in X_predict]
    log_alphas = np.log(alphas)
    best_index = np.zeros(n_targets, dtype=np.int64)

    for ib, start in enumerate(range(0, n_targets, n_targets_batch)):
        if token is not None:
            token.raise_if_cancelled()
        stop = min(start + n_targets_batch, n_targets)
        Yb = bk.asarray(Y[:, start:stop])                       # n_samples, n_batch
        nb = stop - start
        fold_scores = np.zeros((len(fold_ops), n_alphas, nb), dtype=np.float64)
        xty = None
        if solver == "primal":
            # n_features, n_batch per fold: X_val^T Y_val
            xvy = [op["xv"].T @ bk.take_rows(Yb, op["val"]) for op in fold_ops]
            if val_partition:
                xty = xvy[0]
                for extra in xvy[1:]:
                    xty = xty + extra
            else:
                xty = Xb.T @ Yb                                 # n_features, n_batch
        for f, op in enumerate(fold_ops):
            yv = bk.take_rows(Yb, op["val"])                    # n_val, n_batch
            if solver == "primal":
                if op["complement"]:
                    xty_tr = xty - xvy[f]
                else:
                    xty_tr = op["xt"].T @ bk.take_rows(Yb, op["train"])
                rows = op.get("rows")
                if use_resolvent:
                    if rows is None:
                        rows = _resolvent_rows(bk, op["eig"], alphas_b)
                    # n_alphas * n_val, n_batch: X_val (C_train + alpha I)^-1 X_train^T Y, all alphas
                    pred = rows @ xty_tr
                else:
                    if rows is None:
                        rows = _weighted_rows(bk, op["eig"], alphas_b)
                    pred = rows @ (op["v32"].T @ xty_tr)        # the same, through Z = V^T X_tr^T Y
                del xty_tr, rows
            else:
                z = op["u"].T @ bk.take_rows(Yb, op["train"])   # n_train, n_batch
                pred = op["w_stack"] @ z
                del z
            n_val = op["val"].size
            pred = pred.reshape(n_alphas, n_val, nb)
            pred -= yv[None]
            # n_alphas, n_batch: negative mean squared error, as himalaya's l2_neg_loss
            fold_scores[f] = -bk.to_numpy(bk.square_(pred).sum(1)).astype(np.float64) / n_val
            del pred
        mean_scores = fold_scores.mean(0)                       # n_alphas, n_batch
        cv_scores[:, start:stop] = mean_scores
        best = np.argmax(mean_scores + 1e-10 * log_alphas[:, None], axis=0)
        best_index[start:stop] = best

        if return_coef or Xp:
            best_alpha_b = bk.asarray(alphas[best], "float64")  # n_batch
            if solver == "primal":
                zf = v_all32.T @ xty                            # n_features, n_batch
                scale = bk.cast(1.0 / (s_all[:, None] + best_alpha_b[None, :]), "float32")
                zf = zf * scale
                if return_coef:
                    coef_b = v_all32 @ zf                       # n_features, n_batch
                    coef[:, start:stop] = bk.to_numpy(coef_b)
                    for x, out in zip(Xp, predictions):
                        out[:, start:stop] = bk.to_numpy(x @ coef_b)
                else:
                    # predictions only: (X_new V) @ zf skips forming the coefficients
                    for xv_all, out in zip(Xp_v, predictions):
                        out[:, start:stop] = bk.to_numpy(xv_all @ zf)
            else:
                zf = u_all32.T @ Yb                             # n_samples, n_batch
                scale = bk.cast(1.0 / (s_all[:, None] + best_alpha_b[None, :]), "float32")
                dual = u_all32 @ (zf * scale)                   # n_samples, n_batch
                coef_b = Xb.T @ dual
                if return_coef:
                    coef[:, start:stop] = bk.to_numpy(coef_b)
                for x, out in zip(Xp, predictions):
                    out[:, start:stop] = bk.to_numpy(x @ coef_b)
        yield Progress(progress_offset + ib + 1, total,
                       f"{message}targets {stop}/{n_targets}")

    on_edge = (best_index == int(np.argmin(alphas))) | (best_index == int(np.argmax(alphas)))
    # a target whose score does not depend on alpha (a constant, e.g. medial-wall vertex) is no warning
    on_edge &= np.ptp(cv_scores, axis=0) > 0
    if n_alphas == 1:
        on_edge[:] = False
    if warn and on_edge.any():
        warnings.warn(f"{int(on_edge.sum())} of {n_targets} targets chose an alpha at the edge of "
                      f"the grid [{alphas.min():.3g}, {alphas.max():.3g}]; consider widening it",
                      AlphaOnEdgeWarning, stacklevel=2)
    return RidgeCVResult(best_alphas=alphas[best_index], alpha_index=best_index, cv_scores=cv_scores,
                         on_edge=on_edge, coef=coef, predictions=predictions, alphas=alphas,
                         solver=solver)


def ridge_cv(X, Y, alphas, folds, backend="numpy", n_targets_batch: Optional[int] = None,
             X_predict: Sequence = (), return_coef: bool = True, solver: str = "auto",
             warn: bool = True, token: Optional[CancelToken] = None) -> RidgeCVResult:
    """Ridge with the alpha chosen per target by cross-validation, refit on all samples.

    Parameters
    ----------
    X : (n_samples, n_features) array
        Features (z-scored, delayed); no intercept is fitted.
    Y : (n_samples, n_targets) array
        Brain data (z-scored).
    alphas : (n_alphas,) array
        Grid of regularisation strengths.
    folds : list of (train_indices, validation_indices)
        Cross-validation splits of the samples (e.g. grouped by run, never splitting one).
    backend : {"numpy", "torch", "torch_cuda"}
    n_targets_batch : int, optional
        Targets solved at once (memory bound). Default: a batch keeping temporaries near 256 MB.
    X_predict : sequence of (n_i, n_features) arrays
        Matrices to predict with the refit model (e.g. held-out runs).
    return_coef : bool
        Keep the refit coefficients (n_features x n_targets float32).
    solver : {"auto", "primal", "dual"}
        "auto": primal when n_features <= the smallest training fold, else dual (kernel).
    warn : bool
        Warn (:class:`AlphaOnEdgeWarning`) when targets choose an alpha at the grid's edge.

    Returns
    -------
    RidgeCVResult
    """
    return run_sync(ridge_cv_job(X, Y, alphas, folds, backend=backend, n_targets_batch=n_targets_batch,
                                 X_predict=X_predict, return_coef=return_coef, solver=solver,
                                 warn=warn, token=token), token=token)


def solve_ridge(X, Y, alpha) -> np.ndarray:
    """Ridge coefficients for one alpha (scalar or one per target), no intercept, float64 solve.

    Parameters
    ----------
    X : (n_samples, n_features) array
    Y : (n_samples, n_targets) array
    alpha : float or (n_targets,) array

    Returns
    -------
    (n_features, n_targets) float32
    """
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    s, v = np.linalg.eigh(X.T @ X)
    s = np.maximum(s, 0.0)
    alpha = np.broadcast_to(np.asarray(alpha, dtype=np.float64), (Y.shape[1],))
    z = v.T @ (X.T @ Y)
    return (v @ (z / (s[:, None] + alpha[None, :]))).astype(np.float32)


def ridge_fit(X, Y, alphas_per_target, backend="numpy", X_predict: Sequence = (),
              n_targets_batch: Optional[int] = None, return_coef: bool = True):
    """Ridge with a given alpha per target (no CV), via one eigendecomposition.

    Parameters
    ----------
    X : (n_samples, n_features) array
    Y : (n_samples, n_targets) array
    alphas_per_target : float or (n_targets,) array
    X_predict : sequence of (n_i, n_features) arrays to predict.

    Returns
    -------
    coef : (n_features, n_targets) float32 or None
    predictions : list of (n_i, n_targets) float32
    """
    bk = get_backend(backend)
    X = np.asarray(X, dtype=np.float32)
    Y = np.asarray(Y, dtype=np.float32)
    n_samples, n_features = X.shape
    n_targets = Y.shape[1]
    a = np.broadcast_to(np.asarray(alphas_per_target, dtype=np.float64), (n_targets,))
    check_alphas(a)
    if n_targets_batch is None:
        n_targets_batch = default_targets_batch(n_samples, n_features, 1, 0, n_targets)
    Xb = bk.asarray(X)
    X64 = bk.cast(Xb, "float64")
    primal = n_features <= n_samples
    if primal:
        s, v = bk.eigh(X64.T @ X64)
        s = bk.clip_min(s, 0.0)
    else:
        s, v = _drop_null_space(bk, *bk.eigh(X64 @ X64.T))
    del X64
    v32 = bk.cast(v, "float32")
    Xp = [bk.asarray(x) for x in X_predict]
    coef = np.zeros((n_features, n_targets), dtype=np.float32) if return_coef else None
    predictions = [np.zeros((x.shape[0], n_targets), dtype=np.float32) for x in X_predict]
    for start in range(0, n_targets, int(n_targets_batch)):
        stop = min(start + int(n_targets_batch), n_targets)
        Yb = bk.asarray(Y[:, start:stop])
        ab = bk.asarray(a[start:stop], "float64")
        scale = bk.cast(1.0 / (s[:, None] + ab[None, :]), "float32")
        if primal:
            coef_b = v32 @ ((v32.T @ (Xb.T @ Yb)) * scale)
        else:
            coef_b = Xb.T @ (v32 @ ((v32.T @ Yb) * scale))
        if return_coef:
            coef[:, start:stop] = bk.to_numpy(coef_b)
        for x, out in zip(Xp, predictions):
            out[:, start:stop] = bk.to_numpy(x @ coef_b)
    return coef, predictions
