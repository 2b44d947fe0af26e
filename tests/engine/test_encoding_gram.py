"""Gram-downdate nested ridge equals today's engine and himalaya on the same nested folds."""

import warnings

import numpy as np
import pytest

from engine.encoding import preprocess as pp
from engine.encoding.fit import fit_encoding
from engine.encoding.gram import (
    RunPlan,
    estimate_memory,
    fit_encoding_gram,
    gram_supported,
    nested_ridge_gram_job,
)
from engine.encoding.results import EncodingResult
from engine.errors import ConfigError
from engine.jobs import run_sync

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

ALPHAS = np.logspace(-2, 5, 8)


def _cuda_available():
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def _planted(n_runs=5, n_trs=60, n_feat=6, n_targets=15, seed=0, delays=(1, 2, 3)):
    """Targets driven by delayed features with SNR spread over two decades (several alphas chosen)."""
    rng = np.random.default_rng(seed)
    X = [rng.standard_normal((n_trs, n_feat)).astype(np.float32) for _ in range(n_runs)]
    W = rng.standard_normal((n_feat * len(delays), n_targets)) * np.logspace(-2, 0.5, n_targets)
    Y = [(pp.delay_runs(pp.zscore_runs([x]), delays)[0] @ W
          + rng.standard_normal((n_trs, n_targets)) + 5.0).astype(np.float32) for x in X]
    return X, Y


def _assert_same_fit(a, b, pred_tol=2e-6, max_ties=0.05):
    """Equal fits. The engine's float32 CV scores can order two alphas whose mean validation
    MSEs agree to ~1e-7 (near-flat curves of noise targets) differently from float64: such
    (fold, target) pairs, at most ``max_ties`` of them (and one), are left out of the comparison."""
    differ = a.alphas_per_fold != b.alphas_per_fold
    assert differ.sum() <= max_ties * differ.size + (max_ties > 0), f"{differ.sum()} of {differ.size} alphas differ"
    same_f = ~differ
    np.testing.assert_allclose(a.scores_per_fold[same_f], b.scores_per_fold[same_f], atol=2e-6)
    same_t = ~differ.any(0)
    np.testing.assert_allclose(a.scores[same_t], b.scores[same_t], atol=2e-6)
    np.testing.assert_allclose(a.r2[same_t], b.r2[same_t], atol=2e-6)
    scale = max(np.abs(p[np.isfinite(p)]).max(initial=0) for p in a.predictions)
    for pa, pb in zip(a.predictions, b.predictions):
        np.testing.assert_allclose(pa[:, same_t] / scale, pb[:, same_t] / scale, atol=pred_tol)
    for ma, mb in zip(a.measured, b.measured):
        np.testing.assert_allclose(ma, mb, atol=1e-6)
    assert a.folds == b.folds and a.delays == b.delays
    np.testing.assert_array_equal(a.alpha_on_edge[same_t], b.alpha_on_edge[same_t])


# Woodbury; p x p form (6 columns); kernel form (300 > 240 TRs); batches of 4 targets: the inner
# folds' factors kept across batches (kernel form; 150 columns: primal with the in-place eigh, p >= 128)
@pytest.mark.parametrize("n_feat,batch", [(6, None), (2, None), (100, None), (100, 4), (50, 4)])
def test_equals_fit_encoding_loro(n_feat, batch):
    X, Y = _planted(n_feat=n_feat)
    kw = dict(delays=[1, 2, 3], alphas=ALPHAS, cv="loro", drop_edges=(2, 1))
    a = fit_encoding(X, Y, **kw)
    b = fit_encoding_gram(X, Y, n_targets_batch=batch, **kw)
    assert b.provenance["n_targets_batch"] == (batch or 15)
    _assert_same_fit(a, b)
    assert len(np.unique(b.alphas_per_fold)) >= 3          # several alphas compared
    assert b.provenance["solver"] == "gram" and b.cv_label == a.cv_label


@pytest.mark.parametrize("cv,inner_cv", [(3, None), ([[4]], None), ("loro", 2)])
def test_equals_fit_encoding_grouped_folds(cv, inner_cv):
    X, Y = _planted(n_runs=6, n_trs=40, seed=1)
    kw = dict(delays=[1, 2], alphas=ALPHAS, cv=cv, inner_cv=inner_cv, tr_s=None)
    a = fit_encoding(X, Y, **kw)
    b = fit_encoding_gram(X, Y, **kw)
    _assert_same_fit(a, b)
    if cv == [[4]]:
        assert np.isnan(b.predictions[0]).all() and np.isfinite(b.predictions[4]).all()


def test_cv_scores_equal_himalaya_on_the_same_nested_folds():
    """Every outer fold: himalaya RidgeCV with cv = the inner leave-one-run-out folds."""
    from himalaya.backend import set_backend
    from himalaya.ridge import RidgeCV

    X, Y = _planted(n_runs=3, n_trs=50, n_feat=8, n_targets=12, seed=2)
    Xp = pp.delay_runs(pp.zscore_runs(X), [1, 2])
    Yp = pp.zscore_runs(Y)
    n_runs = len(Xp)
    plan = RunPlan(test_runs=[[t] for t in range(n_runs)],
                   train_runs=[[r for r in range(n_runs) if r != t] for t in range(n_runs)],
                   inner=[[[r] for r in range(n_runs) if r != t] for t in range(n_runs)])
    batches = []
    out = run_sync(nested_ridge_gram_job(Xp, Yp, ALPHAS, plan, n_targets_batch=5, on_batch=batches.append))
    set_backend("numpy", on_error="raise")
    for t in range(n_runs):
        train = plan.train_runs[t]
        starts = np.cumsum([0] + [len(Yp[r]) for r in train])
        folds = [(np.setdiff1d(np.arange(starts[-1]), np.arange(starts[j], starts[j + 1])),
                  np.arange(starts[j], starts[j + 1])) for j in range(len(train))]
        ref = RidgeCV(alphas=ALPHAS, cv=folds, fit_intercept=False).fit(
            np.concatenate([Xp[r] for r in train]), np.concatenate([Yp[r] for r in train]))
        np.testing.assert_allclose(out["alphas_per_fold"][t], ref.best_alphas_, rtol=1e-6)
        pred = ref.predict(Xp[t])
        np.testing.assert_allclose(out["predictions"][t], pred, atol=1e-5 * np.abs(pred).max())
        cv = np.full(Y[0].shape[1], np.nan)
        for res in (r for r in batches if r.fold == t):
            cv[res.cols] = res.cv_scores[res.best_index, np.arange(res.best_index.size)]
        np.testing.assert_allclose(cv, ref.cv_scores_, rtol=1e-4)


@pytest.mark.parametrize("backend", ["torch", pytest.param("torch_cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not _cuda_available(), reason="needs a CUDA device (torch.cuda.is_available() is False)")])])
def test_torch_backends_equal_numpy(backend):
    X, Y = _planted(seed=3)
    kw = dict(delays=[1, 2, 3], alphas=ALPHAS)
    a = fit_encoding_gram(X, Y, **kw)
    b = fit_encoding_gram(X, Y, backend=backend, **kw)
    _assert_same_fit(a, b, pred_tol=1e-6, max_ties=0)


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda_available(), reason="needs a CUDA device (torch.cuda.is_available() is False)")
def test_cuda_batch_from_free_memory():
    import torch

    X, Y = _planted(seed=4, n_targets=40)
    free = torch.cuda.mem_get_info()[0]
    res = fit_encoding_gram(X, Y, delays=[1, 2], alphas=ALPHAS, backend="torch_cuda")
    assert 1 <= res.provenance["n_targets_batch"] <= 40
    assert res.provenance["memory_estimate_bytes"] < free
    # a budget for ~10 targets gives batches of about 10, and the same numbers
    small = fit_encoding_gram(X, Y, delays=[1, 2], alphas=ALPHAS, backend="torch_cuda",
                              memory_limit_bytes=1e5)   # ~23 targets of 12 features x 60-TR runs
    assert small.provenance["n_targets_batch"] < 40
    np.testing.assert_array_equal(small.alphas_per_fold, res.alphas_per_fold)


def test_dask_chunks_of_folds_identical():
    pytest.importorskip("distributed")
    X, Y = _planted(n_runs=4, n_trs=40, seed=5)
    kw = dict(delays=[1, 2], alphas=ALPHAS)
    a = fit_encoding_gram(X, Y, **kw)
    b = fit_encoding_gram(X, Y, scheduler="local", n_chunks=2, **kw)
    np.testing.assert_array_equal(a.alphas_per_fold, b.alphas_per_fold)
    np.testing.assert_array_equal(a.scores_per_fold, b.scores_per_fold)
    for pa, pb in zip(a.predictions, b.predictions):
        np.testing.assert_array_equal(pa, pb)


def test_out_path_writes_a_loadable_result_per_batch(tmp_path):
    X, Y = _planted(n_runs=4, n_trs=40, n_targets=11, seed=6)
    kw = dict(delays=[1, 2], alphas=ALPHAS, n_targets_batch=4)
    mem = fit_encoding_gram(X, Y, **kw)
    out = tmp_path / "res.h5"
    disk = fit_encoding_gram(X, Y, out_path=out, **kw)
    assert disk.predictions == [] and disk.provenance["result_path"] == str(out)
    loaded = EncodingResult.load(out)
    _assert_same_fit(mem, loaded, pred_tol=0, max_ties=0)
    assert not list(tmp_path.glob(".tmp-*"))                 # written atomically


def test_memory_estimate_and_error():
    # bounded by features^2, a target batch and one run: not by the number of runs
    few = estimate_memory(30, 480, 4000, 1000, n_targets_batch=1000, keep_predictions=False,
                          stage_in_memory=False)
    many = estimate_memory(300, 480, 4000, 1000, n_targets_batch=1000, keep_predictions=False,
                           stage_in_memory=False)
    assert few == many
    assert 4 * 8 * 4000 ** 2 <= few < 4 * 8 * 4000 ** 2 + 3e8
    assert estimate_memory(30, 480, 4000, 1000, n_targets_batch=100, keep_predictions=False,
                           stage_in_memory=False) < few
    X, Y = _planted(n_runs=3, n_trs=30)
    with pytest.raises(ConfigError, match=r"memory for the Gram ridge fit.*expected at most .*found .* needed"):
        fit_encoding_gram(X, Y, delays=[1], alphas=ALPHAS, memory_limit_bytes=1e3)


def test_unsupported_settings_are_named():
    assert gram_supported()[0]
    assert not gram_supported(pca=5)[0]
    assert not gram_supported(cv="within-run")[0]
    assert not gram_supported(n_spaces=2)[0] and gram_supported(n_spaces=2, multi_space="joint")[0]
    X, Y = _planted(n_runs=3, n_trs=30)
    with pytest.raises(ConfigError, match="PCA"):
        fit_encoding_gram(X, Y, pca=3)
    with pytest.raises(ConfigError, match="within-run"):
        fit_encoding_gram(X, Y, cv="within-run")


def test_joint_spaces_equal_fit_encoding():
    X, Y = _planted(n_runs=4, n_trs=40, seed=7)
    rng = np.random.default_rng(8)
    other = [rng.standard_normal((40, 3)).astype(np.float32) for _ in range(4)]
    kw = dict(delays=[1, 2], alphas=ALPHAS, multi_space="joint")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = fit_encoding({"a": X, "b": other}, Y, **kw)
        b = fit_encoding_gram({"a": X, "b": other}, Y, **kw)
    _assert_same_fit(a, b)
    assert b.provenance["n_features_model"] == 2 * (6 + 3)
