"""Preprocessing: z-scoring per run, delays within runs, run edges, PCA on training runs only."""

import numpy as np
import pytest

from engine.encoding import preprocess as pp
from engine.errors import DataError, MismatchError


def test_zscore_per_run_and_constant_column():
    rng = np.random.default_rng(0)
    runs = [rng.normal(5, 3, (50, 3)), rng.normal(-2, 0.5, (40, 3))]
    runs[1][:, 2] = 7.0
    z = pp.zscore_runs(runs)
    for r in z[:1]:
        np.testing.assert_allclose(r.mean(0), 0, atol=1e-6)
        np.testing.assert_allclose(r.std(0), 1, atol=1e-5)
    np.testing.assert_allclose(z[1][:, :2].mean(0), 0, atol=1e-6)
    assert np.all(z[1][:, 2] == 0)
    assert z[0].dtype == np.float32


def test_delays_stay_within_each_run():
    a = np.arange(1, 6, dtype=np.float32)[:, None]        # run 1: 1..5
    b = np.arange(101, 105, dtype=np.float32)[:, None]    # run 2: 101..104
    d = pp.delay_runs([a, b], delays=(0, 1, 2))
    assert d[0].shape == (5, 3) and d[1].shape == (4, 3)
    np.testing.assert_array_equal(d[0][:, 1], [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(d[0][:, 2], [0, 0, 1, 2, 3])
    # run 2 starts with zeros, never with run 1's end (4, 5)
    np.testing.assert_array_equal(d[1][:, 1], [0, 101, 102, 103])
    np.testing.assert_array_equal(d[1][:, 2], [0, 0, 101, 102])
    # a negative delay looks ahead, zero past the end
    np.testing.assert_array_equal(pp.delay_runs([a], [-1])[0][:, 0], [2, 3, 4, 5, 0])


def test_delay_block_order_multi_feature():
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    d = pp.delay_runs([x], (1, 3))[0]
    np.testing.assert_array_equal(d[3, 0:2], x[2])
    np.testing.assert_array_equal(d[3, 2:4], x[0])
    np.testing.assert_array_equal(d[2, 2:4], [0, 0])


def test_drop_edges_and_errors():
    runs = [np.arange(10, dtype=np.float32)[:, None], np.arange(8, dtype=np.float32)[:, None]]
    out = pp.drop_edges(runs, 2, 3)
    np.testing.assert_array_equal(out[0][:, 0], [2, 3, 4, 5, 6])
    assert out[1].shape == (3, 1)
    with pytest.raises(DataError, match="expected at least 1 TR"):
        pp.drop_edges(runs, 4, 4)
    with pytest.raises(MismatchError):
        pp.check_runs([np.zeros((3, 2)), np.zeros((3, 3))])
    with pytest.raises(DataError, match="NaN"):
        pp.check_runs([np.full((3, 2), np.nan)])


def test_pca_fit_on_training_runs_only():
    rng = np.random.default_rng(1)
    train = [rng.standard_normal((200, 5)) @ np.diag([10, 5, 1, 0.1, 0.1]) for _ in range(2)]
    test = [rng.standard_normal((50, 5)) * 100]  # a different distribution must not move the PCA
    pca = pp.RunPCA(2).fit(train)
    from sklearn.decomposition import PCA

    ref = PCA(2, svd_solver="full").fit(np.concatenate(train))
    np.testing.assert_allclose(np.abs(pca.components_), np.abs(ref.components_), atol=1e-8)
    out = pca.transform(test)[0]
    np.testing.assert_allclose(np.abs(out), np.abs(ref.transform(test[0])), rtol=1e-4, atol=1e-3)
    frac = pp.RunPCA(0.99).fit(train)
    ratio = PCA().fit(np.concatenate(train)).explained_variance_ratio_
    assert frac.components_.shape[0] == int(np.searchsorted(np.cumsum(ratio), 0.99) + 1)
