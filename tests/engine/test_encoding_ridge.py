"""The ridge core agrees with scikit-learn and himalaya, and recovers planted weights."""

import warnings

import numpy as np
import pytest

from engine.encoding.backends import get_backend
from engine.encoding.ridge import AlphaOnEdgeWarning, ridge_cv, solve_ridge
from engine.errors import ConfigError

ALPHAS = np.logspace(-2, 5, 8)


def _data(n=240, p=30, t=40, seed=0, noise=2.0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p)).astype(np.float32)
    # targets with very different SNR, so they choose different alphas
    W = (rng.standard_normal((p, t)) * np.logspace(-2, 0.5, t)).astype(np.float32)
    Y = (X @ W + noise * rng.standard_normal((n, t))).astype(np.float32)
    return X, Y, W


def _kfold(n, k=5):
    from sklearn.model_selection import KFold

    return list(KFold(k).split(np.zeros(n)))


def _cuda_available():
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def _backends():
    cuda = pytest.param("torch_cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
        not _cuda_available(), reason="needs a CUDA device (torch.cuda.is_available() is False)")])
    return ["numpy", "torch", cuda]


def test_fixed_alpha_matches_sklearn_ridge():
    from sklearn.linear_model import Ridge

    X, Y, _ = _data()
    for alpha in (0.1, 10.0, 1e4):
        ref = Ridge(alpha=alpha, fit_intercept=False, solver="svd").fit(X.astype(np.float64), Y).coef_.T
        np.testing.assert_allclose(solve_ridge(X, Y, alpha), ref, rtol=1e-5, atol=1e-6)
        # the CV solver with one alpha refits exactly that ridge
        res = ridge_cv(X, Y, [alpha], _kfold(len(X)), X_predict=[X[:7]])
        np.testing.assert_allclose(res.coef, ref, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(res.predictions[0], X[:7] @ ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("solver,p", [("primal", 30), ("dual", 30), ("auto", 400)])
def test_matches_himalaya_ridgecv(backend, solver, p):
    from himalaya.backend import set_backend
    from himalaya.ridge import RidgeCV

    X, Y, _ = _data(p=p, seed=p)
    folds = _kfold(len(X))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = ridge_cv(X, Y, ALPHAS, folds, backend=backend, solver=solver, X_predict=[X[:20]],
                       n_targets_batch=13)
        set_backend("numpy", on_error="raise")
        ref = RidgeCV(alphas=ALPHAS, cv=folds, fit_intercept=False).fit(X, Y)
    np.testing.assert_allclose(res.best_alphas, ref.best_alphas_, rtol=1e-6)
    assert len(np.unique(res.alpha_index)) >= 3  # the comparison covers several alphas
    scale = np.abs(ref.coef_).max()
    np.testing.assert_allclose(res.coef / scale, ref.coef_ / scale, atol=1e-5)
    pred_ref = ref.predict(X[:20])
    np.testing.assert_allclose(res.predictions[0] / np.abs(pred_ref).max(),
                               pred_ref / np.abs(pred_ref).max(), atol=1e-5)
    # cv scores of the chosen alphas are himalaya's cv_scores_
    chosen = res.cv_scores[res.alpha_index, np.arange(Y.shape[1])]
    np.testing.assert_allclose(chosen, ref.cv_scores_, rtol=1e-4)
    assert res.solver == ("dual" if p == 400 else solver)


def test_cv_scores_match_explicit_loop():
    """Every (alpha, target) validation MSE equals a direct ridge fit on the fold."""
    X, Y, _ = _data(n=150, p=12, t=6, seed=3)
    folds = _kfold(len(X), 3)
    res = ridge_cv(X, Y, ALPHAS, folds, warn=False)
    expected = np.zeros((len(ALPHAS), Y.shape[1]))
    for train, val in folds:
        for i, a in enumerate(ALPHAS):
            w = solve_ridge(X[train], Y[train], a)
            expected[i] -= ((Y[val] - X[val] @ w) ** 2).mean(0) / len(folds)
    np.testing.assert_allclose(res.cv_scores, expected, rtol=1e-4, atol=1e-6)


def test_non_partition_folds():
    """Folds that leave samples out (a gap between train and validation) still agree."""
    X, Y, _ = _data(n=200, p=10, t=5, seed=4)
    folds = [(np.arange(0, 90), np.arange(100, 200)), (np.arange(110, 200), np.arange(0, 100))]
    res = ridge_cv(X, Y, ALPHAS, folds, warn=False)
    expected = np.zeros((len(ALPHAS), Y.shape[1]))
    for train, val in folds:
        for i, a in enumerate(ALPHAS):
            w = solve_ridge(X[train], Y[train], a)
            expected[i] -= ((Y[val] - X[val] @ w) ** 2).mean(0) / 2
    np.testing.assert_allclose(res.cv_scores, expected, rtol=1e-4, atol=1e-6)


def test_planted_weights_recovered_and_edge_flag():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((600, 8)).astype(np.float32)
    W = rng.standard_normal((8, 4)).astype(np.float32)
    Y = X @ W + 0.05 * rng.standard_normal((600, 4)).astype(np.float32)
    Y = np.concatenate([Y, rng.standard_normal((600, 2)).astype(np.float32)], 1)  # pure noise
    with pytest.warns(AlphaOnEdgeWarning):
        res = ridge_cv(X, Y, np.logspace(-1, 3, 5), _kfold(600))
    np.testing.assert_allclose(res.coef[:, :4], W, atol=0.02)
    # noise targets want the largest alpha: on the edge, flagged
    assert res.on_edge[4:].all()
    assert res.best_alphas[4:].min() == 1e3


def test_backend_errors():
    with pytest.raises(ConfigError, match="Supported values are"):
        get_backend("jax")
    with pytest.raises(ConfigError, match="positive"):
        ridge_cv(np.zeros((10, 2)), np.zeros((10, 1)), [-1.0], _kfold(10, 2))


@pytest.mark.parametrize("n,t", [(200, 9), (60, 200)])
def test_uncached_rows_give_the_same_fit(monkeypatch, n, t):
    import engine.encoding.ridge as ridge_module

    X, Y, _ = _data(n=n, p=20, t=t, seed=6)
    folds = _kfold(n, 4)
    cached = ridge_cv(X, Y, ALPHAS, folds, X_predict=[X[:5]], n_targets_batch=4, warn=False)
    monkeypatch.setattr(ridge_module, "RESOLVENT_CACHE_BYTES", 0)
    rebuilt = ridge_cv(X, Y, ALPHAS, folds, X_predict=[X[:5]], n_targets_batch=4, warn=False)
    np.testing.assert_array_equal(cached.cv_scores, rebuilt.cv_scores)
    np.testing.assert_array_equal(cached.coef, rebuilt.coef)


@pytest.mark.parametrize("n,t", [(200, 6), (60, 200)])
def test_projection_and_resolvent_paths_agree_with_himalaya(n, t):
    """Few targets (n_alphas * n_val > n_targets) take the V^T X^T Y projection path,
    many targets the resolvent-rows path; both equal himalaya."""
    from himalaya.backend import set_backend
    from himalaya.ridge import RidgeCV

    X, Y, _ = _data(n=n, p=12, t=t, seed=7)
    folds = _kfold(n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = ridge_cv(X, Y, ALPHAS, folds, X_predict=[X[:9]])
        set_backend("numpy", on_error="raise")
        ref = RidgeCV(alphas=ALPHAS, cv=folds, fit_intercept=False).fit(X, Y)
    np.testing.assert_allclose(res.best_alphas, ref.best_alphas_, rtol=1e-6)
    np.testing.assert_allclose(res.coef, ref.coef_, atol=1e-5 * np.abs(ref.coef_).max())
    np.testing.assert_allclose(res.cv_scores[res.alpha_index, np.arange(t)], ref.cv_scores_, rtol=1e-4)
