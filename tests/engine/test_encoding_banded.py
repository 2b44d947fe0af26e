"""Banded ridge: agrees with himalaya's GroupRidgeCV (BandedRidgeCV) and finds the useless space."""

import warnings

import numpy as np
import pytest

from engine.encoding.banded import banded_ridge_cv, simplex_candidates
from engine.errors import ConfigError

ALPHAS = np.logspace(-1, 4, 6)


def _two_spaces(n=300, seed=0):
    """Targets 0-9 are driven by space A only, targets 10-19 by space B only."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, 10)).astype(np.float32)
    B = rng.standard_normal((n, 30)).astype(np.float32)
    W = rng.standard_normal((10, 20)).astype(np.float32)
    Y = np.empty((n, 20), dtype=np.float32)
    Y[:, :10] = A @ W[:, :10] + 2 * rng.standard_normal((n, 10))
    Y[:, 10:] = B[:, :10] @ W[:, 10:] + 2 * rng.standard_normal((n, 10))
    return A, B, Y


def _folds(n):
    from sklearn.model_selection import KFold

    return list(KFold(5).split(np.zeros(n)))


def test_candidates_on_simplex():
    g = simplex_candidates(3, 12, random_state=1)
    assert g.shape == (12, 3)
    np.testing.assert_allclose(g.sum(1), 1)
    np.testing.assert_allclose(g[0], 1 / 3)
    with pytest.raises(ConfigError):
        simplex_candidates(0)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_matches_himalaya_group_ridge(backend):
    from himalaya.backend import set_backend
    from himalaya.ridge import GroupRidgeCV

    A, B, Y = _two_spaces()
    folds = _folds(len(Y))
    gammas = simplex_candidates(2, 10)
    X_test = np.concatenate([A, B], 1)[:25]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = banded_ridge_cv({"A": A, "B": B}, Y, ALPHAS, folds, gammas=gammas, backend=backend,
                              X_predict=[X_test], n_targets_batch=7)
        set_backend("numpy", on_error="raise")
        ref = GroupRidgeCV(groups="input", cv=folds, solver_params=dict(
            n_iter=gammas, alphas=ALPHAS, progress_bar=False)).fit([A, B], Y)
    np.testing.assert_allclose(res.deltas, ref.deltas_, atol=1e-5)
    scale = np.abs(ref.coef_).max()
    np.testing.assert_allclose(res.coef / scale, ref.coef_ / scale, atol=1e-5)
    np.testing.assert_allclose(res.predictions[0], X_test @ ref.coef_, atol=1e-4)
    # the split predictions add up to the prediction
    np.testing.assert_allclose(res.split_predictions[0].sum(0), res.predictions[0], atol=1e-4)


def test_planted_useless_space_gets_large_alpha():
    A, B, Y = _two_spaces(seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = banded_ridge_cv([A, B], Y, ALPHAS, _folds(len(Y)), n_iter=15)
    log_ratio = np.log10(res.space_alphas[1] / res.space_alphas[0])  # B's penalty over A's
    assert np.median(log_ratio[:10]) > 2      # A drives: B is penalised far more
    assert np.median(log_ratio[10:]) < -2     # B drives: A is penalised far more
    assert (log_ratio[:10] > 0).all() and (log_ratio[10:] < 0).all()
    np.testing.assert_allclose(res.gammas.sum(0), 1)


def test_fit_encoding_banded_nested(tmp_path):
    """fit_encoding(banded=True): per-space penalties per target, nested over runs, saved."""
    from engine.encoding import preprocess as pp
    from engine.encoding.fit import fit_encoding, inner_folds
    from engine.encoding.results import EncodingResult

    A, B, Y = _two_spaces(n=360, seed=4)
    runs = lambda a: [a[i * 90:(i + 1) * 90] for i in range(4)]  # noqa: E731
    gammas = simplex_candidates(2, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = fit_encoding({"A": runs(A), "B": runs(B)}, runs(Y), delays=(0,), alphas=ALPHAS, banded=True,
                           banded_gammas=gammas)
        # the fold holding out run 3, by hand: brain data linearly detrended (the default) then
        # z-scored per run, features z-scored
        Az, Bz = pp.zscore_runs(runs(A)), pp.zscore_runs(runs(B))
        Yz = pp.zscore_runs(pp.clean_runs(runs(Y), detrend=1))
        ref = banded_ridge_cv({"A": np.concatenate(Az[:3]), "B": np.concatenate(Bz[:3])}, np.concatenate(Yz[:3]),
                              ALPHAS, inner_folds([90, 90, 90]), gammas=gammas,
                              X_predict=[np.concatenate([Az[3], Bz[3]], 1)])
    np.testing.assert_allclose(res.predictions[3], ref.predictions[0], atol=1e-5)
    assert res.space_alphas.shape == (2, 20)
    log_ratio = np.log10(res.space_alphas[1] / res.space_alphas[0])
    assert np.median(log_ratio[:10]) > 1 and np.median(log_ratio[10:]) < -1
    back = EncodingResult.load(res.save(tmp_path / "banded.h5"))
    np.testing.assert_array_equal(back.space_alphas, res.space_alphas)
    assert "banded" in back.provenance["method"]
