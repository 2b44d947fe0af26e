"""fit_encoding: nested run-grouped CV, planted truth, no leakage, jobs, errors."""

import warnings

import numpy as np
import pytest

from engine.encoding import preprocess as pp
from engine.encoding.fit import fit_encoding, fit_encoding_job, inner_folds, outer_folds
from engine.errors import ConfigError, DataError, JobCancelled, MismatchError
from engine.jobs import CancelToken, Progress, run_sync

ALPHAS = np.logspace(-1, 4, 6)


def _planted(n_runs=4, n_trs=100, n_feat=5, n_targets=20, seed=0, lag=2, noise=1.0):
    """Half the targets follow the features ``lag`` TRs later; the other half is noise."""
    rng = np.random.default_rng(seed)
    X = [rng.standard_normal((n_trs, n_feat)).astype(np.float32) for _ in range(n_runs)]
    W = rng.standard_normal((n_feat, n_targets)).astype(np.float32)
    W[:, n_targets // 2:] = 0
    Y = []
    for x in pp.zscore_runs(X):
        d = pp.delay_runs([x], [lag])[0]
        Y.append((d @ W + noise * rng.standard_normal((n_trs, n_targets))).astype(np.float32))
    return X, Y, W


def test_folds():
    assert outer_folds(3, "loro") == [[0], [1], [2]]
    assert outer_folds(5, 2) == [[0, 1, 2], [3, 4]]
    assert outer_folds(4, [[0, 1], [3]]) == [[0, 1], [3]]
    with pytest.raises(ConfigError, match="Supported values"):
        outer_folds(3, "kfold")
    with pytest.raises(DataError, match="at least 2 runs"):
        outer_folds(1)
    f = inner_folds([3, 4, 2])
    assert [v.tolist() for _, v in f] == [[0, 1, 2], [3, 4, 5, 6], [7, 8]]
    assert f[1][0].tolist() == [0, 1, 2, 7, 8]
    one = inner_folds([10])
    assert len(one) == 5 and sorted(np.concatenate([v for _, v in one]).tolist()) == list(range(10))


def test_planted_truth_recovered():
    X, Y, W = _planted()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = fit_encoding(X, Y, delays=(1, 2, 3), alphas=ALPHAS)
    assert res.scores.shape == (20,) and res.r2.shape == (20,)
    driven, noise = res.scores[:10], res.scores[10:]
    # true r of the signal: signal variance / (signal + noise) with unit noise
    assert driven.min() > 0.6
    assert abs(noise.mean()) < 0.05 and noise.max() < 0.2
    assert res.alphas[10:].min() > res.alphas[:10].max()   # noise wants a strong penalty
    assert len(res.predictions) == 4 and res.predictions[0].shape == (100, 20)
    assert res.scores_per_fold.shape == (4, 20)
    np.testing.assert_allclose(res.scores, res.scores_per_fold.mean(0), rtol=1e-6)


def test_matches_manual_nested_cv_with_himalaya():
    from himalaya.backend import set_backend
    from himalaya.ridge import RidgeCV

    X, Y, _ = _planted(n_runs=4, n_trs=80, seed=1, noise=2.0)
    delays = (1, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = fit_encoding(X, Y, delays=delays, alphas=ALPHAS, drop_edges=(2, 1))
        # default preprocessing: brain data linearly detrended then z-scored per run, features z-scored
        Xp = pp.drop_edges(pp.delay_runs(pp.zscore_runs(X), delays), 2, 1)
        Yp = pp.zscore_runs(pp.clean_runs(pp.drop_edges(Y, 2, 1), detrend=1))
        set_backend("numpy", on_error="raise")
        for test in range(4):
            train = [i for i in range(4) if i != test]
            starts = np.cumsum([0] + [len(Yp[i]) for i in train])
            folds = []
            for j in range(3):
                val = np.arange(starts[j], starts[j + 1])
                folds.append((np.setdiff1d(np.arange(starts[-1]), val), val))
            model = RidgeCV(alphas=ALPHAS, cv=folds, fit_intercept=False).fit(
                np.concatenate([Xp[i] for i in train]), np.concatenate([Yp[i] for i in train]))
            np.testing.assert_allclose(res.alphas_per_fold[test], model.best_alphas_, rtol=1e-6)
            pred = model.predict(Xp[test])
            np.testing.assert_allclose(res.predictions[test], pred, atol=1e-5 * np.abs(pred).max())
            np.testing.assert_allclose(res.measured[test], Yp[test], atol=1e-6)
            r = [np.corrcoef(Yp[test][:, k], pred[:, k])[0, 1] for k in range(pred.shape[1])]
            np.testing.assert_allclose(res.scores_per_fold[test], r, atol=1e-4)
    assert res.predictions[0].shape == (77, 20)


def test_held_out_brain_data_never_used():
    """Changing a run's brain data must not change that run's held-out predictions."""
    X, Y, _ = _planted(n_runs=3, n_trs=60, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = fit_encoding(X, Y, delays=(1, 2), alphas=ALPHAS, zscore=False)
        Y2 = [y.copy() for y in Y]
        Y2[1] = np.random.default_rng(9).standard_normal(Y2[1].shape).astype(np.float32)
        b = fit_encoding(X, Y2, delays=(1, 2), alphas=ALPHAS, zscore=False)
    np.testing.assert_array_equal(a.predictions[1], b.predictions[1])
    assert not np.allclose(a.predictions[0], b.predictions[0])


def test_pca_fit_on_training_runs_and_multiple_spaces():
    X, Y, _ = _planted(n_runs=3, n_trs=90, n_feat=6, seed=3)
    rng = np.random.default_rng(4)
    noise_space = [rng.standard_normal((90, 4)).astype(np.float32) for _ in range(3)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # multi_space="joint": one ridge over both spaces (the default is banded ridge)
        res = fit_encoding({"vision": X, "audio": noise_space}, Y, delays=(2,), alphas=ALPHAS,
                           pca={"vision": 6, "audio": 2}, multi_space="joint")
        # manual: fold holding out run 2, PCA fit on runs 0 and 1 only
        from himalaya.ridge import RidgeCV
        from engine.encoding.fit import inner_folds as inner

        Xz, Nz = pp.zscore_runs(X), pp.zscore_runs(noise_space)
        pv = pp.RunPCA(6).fit(Xz[:2]).transform(Xz)
        pa = pp.RunPCA(2).fit(Nz[:2]).transform(Nz)
        feats = [np.concatenate([a, b], 1) for a, b in zip(pp.delay_runs(pv, [2]), pp.delay_runs(pa, [2]))]
        Yp = pp.zscore_runs(pp.clean_runs(Y, detrend=1))
        m = RidgeCV(alphas=ALPHAS, cv=inner([90, 90]), fit_intercept=False).fit(
            np.concatenate(feats[:2]), np.concatenate(Yp[:2]))
        pred = m.predict(feats[2])
    np.testing.assert_allclose(res.predictions[2], pred, atol=1e-5 * np.abs(pred).max())
    assert res.space == "vision+audio" and res.feature_names == ["vision", "audio"]
    assert res.provenance["n_features_model"] == 8
    assert res.scores[:10].min() > 0.5


def test_job_progress_and_cancel():
    X, Y, _ = _planted(n_runs=3, n_trs=50, n_targets=10)
    reports = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = run_sync(fit_encoding_job(X, Y, delays=(1,), alphas=ALPHAS, n_targets_batch=4),
                       on_progress=reports.append)
    assert all(isinstance(p, Progress) for p in reports)
    assert reports[-1].step == reports[-1].total == 3 * 3   # 3 folds x 3 target batches
    assert [p.step for p in reports] == list(range(0, 10))
    assert res.scores.shape == (10,)

    token = CancelToken()
    seen = []

    def cancel_after_two(p):
        seen.append(p)
        if len(seen) == 2:
            token.cancel()

    with pytest.raises(JobCancelled):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run_sync(fit_encoding_job(X, Y, delays=(1,), alphas=ALPHAS, n_targets_batch=4, token=token),
                     token=token, on_progress=cancel_after_two)
    assert len(seen) == 2


def test_user_errors():
    X, Y, _ = _planted(n_runs=2, n_trs=30, n_targets=3)
    # beyond trim_tolerance_trs (2) a length mismatch is refused; within it, trimmed with a warning
    with pytest.raises(MismatchError, match=r"run-b .*27 feature rows vs 30 brain TRs.*--trim-tolerance-trs 3"):
        fit_encoding([X[0], X[1][:27]], Y, run_names=["run-a", "run-b"])
    with pytest.warns(UserWarning, match="trimmed to 29 TRs"):
        res = fit_encoding([X[0], X[1][:29]], Y, delays=(1,), alphas=ALPHAS)
    assert res.measured[1].shape[0] == 29 and any("trimmed" in w for w in res.warnings)
    with pytest.raises(MismatchError, match="expected 2"):
        fit_encoding(X[:1], Y)
    with pytest.raises(ConfigError, match="Supported values are"):
        fit_encoding(X, Y, backend="tpu")


def test_constant_targets_score_zero_without_warning():
    """Medial-wall-like targets (all zeros) give r = 0 and no alpha-on-edge warning."""
    X, Y, _ = _planted(n_runs=3, n_trs=60, n_targets=4, noise=0.5)
    Y = [np.c_[y[:, :2], np.zeros((len(y), 2), np.float32)] for y in Y]   # 2 driven, 2 constant
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = fit_encoding(X, Y, delays=(1, 2, 3), alphas=np.logspace(-2, 6, 9))
    assert np.all(res.scores[2:] == 0) and not res.alpha_on_edge.any()
    assert np.all(np.isfinite(res.predictions[0]))
    assert res.scores[:2].min() > 0.8


def test_single_test_run_convention():
    """cv=[[3]]: one fixed test run (himalaya tutorials); other runs have NaN predictions."""
    X, Y, _ = _planted(n_runs=4, n_trs=60, n_targets=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = fit_encoding(X, Y, delays=(1, 2, 3), alphas=ALPHAS, cv=[[3]])
        full = fit_encoding(X, Y, delays=(1, 2, 3), alphas=ALPHAS)
    assert res.folds == [[3]]
    np.testing.assert_allclose(res.predictions[3], full.predictions[3], atol=1e-6)
    assert np.isnan(res.predictions[0]).all()
    np.testing.assert_allclose(res.scores, full.scores_per_fold[3], atol=1e-6)
    with pytest.raises(ConfigError, match="at most once"):
        outer_folds(4, [[0, 1], [1, 2]])
