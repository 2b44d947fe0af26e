"""Variance partitioning and residual analysis recover planted unique and shared variance."""

import warnings
from itertools import combinations

import numpy as np
import pytest

from engine.encoding import preprocess as pp
from engine.encoding.partition import (partition_regions, residual_encoding, residualize,
                                       variance_partition)
from engine.errors import ConfigError

ALPHAS = np.logspace(-1, 5, 7)


def test_regions_invert_union_measures_for_three_sets():
    """R2(M) = measure of the union of the sets in M; the regions must come back exactly."""
    rng = np.random.default_rng(0)
    names = ["vision", "audio", "text"]
    regions = {}
    for size in (1, 2, 3):
        for S in combinations(names, size):
            regions[S] = rng.uniform(0, 1, 4)
    r2 = {}
    for size in (1, 2, 3):
        for M in combinations(names, size):
            r2["+".join(M)] = sum(v for S, v in regions.items() if set(S) & set(M))
    out = partition_regions(r2, names)
    np.testing.assert_allclose(out["unique audio"], regions[("audio",)])
    np.testing.assert_allclose(out["shared vision&text"], regions[("vision", "text")])
    np.testing.assert_allclose(out["shared vision&audio&text"], regions[("vision", "audio", "text")])
    np.testing.assert_allclose(sum(out.values()), r2["vision+audio+text"])
    assert len(out) == 7


def test_two_space_formulas():
    r2 = {"A": np.array([0.3]), "B": np.array([0.2]), "A+B": np.array([0.4])}
    out = partition_regions(r2, ["A", "B"])
    assert out["unique A"][0] == pytest.approx(0.2)
    assert out["unique B"][0] == pytest.approx(0.1)
    assert out["shared A&B"][0] == pytest.approx(0.1)


def _planted_spaces(n_runs=4, n_trs=120, seed=0):
    """A = [a (3), c], B = [b (3), c]; targets: 0-3 from a, 4-7 from the shared c, 8-11 from b."""
    rng = np.random.default_rng(seed)
    A, B, Y = [], [], []
    for _ in range(n_runs):
        a = rng.standard_normal((n_trs, 3))
        b = rng.standard_normal((n_trs, 3))
        c = rng.standard_normal((n_trs, 1))
        A.append(np.c_[a, c].astype(np.float32))
        B.append(np.c_[b, c].astype(np.float32))
        lag = lambda x: pp.delay_runs([x], [1])[0]  # noqa: E731
        y = np.c_[lag(a) @ np.ones((3, 4)), lag(c) @ np.full((1, 4), 1.7), lag(b) @ np.ones((3, 4))]
        Y.append((y + rng.standard_normal(y.shape)).astype(np.float32))
    return A, B, Y


def test_planted_unique_and_shared_variance():
    A, B, Y = _planted_spaces()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        part = variance_partition({"A": A, "B": B}, Y, delays=(1,), alphas=ALPHAS)
    total = part.total
    ua, ub, sh = part.regions["unique A"], part.regions["unique B"], part.regions["shared A&B"]
    assert total.min() > 0.5
    # driven by A's own features: all of it unique to A
    np.testing.assert_allclose(ua[:4], total[:4], atol=0.05)
    assert np.abs(ub[:4]).max() < 0.03 and np.abs(sh[:4]).max() < 0.05
    # driven by the shared component: shared, not unique
    np.testing.assert_allclose(sh[4:8], total[4:8], atol=0.05)
    assert np.abs(ua[4:8]).max() < 0.03 and np.abs(ub[4:8]).max() < 0.03
    np.testing.assert_allclose(ub[8:], total[8:], atol=0.05)
    np.testing.assert_allclose(ua + ub + sh, total, atol=1e-9)
    assert set(part.models) == {"A", "B", "A+B"}
    with pytest.raises(ConfigError, match="2 or 3"):
        variance_partition({"A": A}, Y)


def test_residual_analysis():
    """Joint = mix of unimodal features + a joint-only component j: only j survives."""
    rng = np.random.default_rng(5)
    uni, joint, Y = [], [], []
    mix = rng.standard_normal((4, 6))
    for _ in range(4):
        u = rng.standard_normal((120, 4))
        j = rng.standard_normal((120, 1))
        uni.append(u.astype(np.float32))
        joint.append(np.c_[u @ mix, j].astype(np.float32))
        lag = lambda x: pp.delay_runs([x], [1])[0]  # noqa: E731
        y = np.c_[lag(u) @ np.ones((4, 3)), lag(j) @ np.full((1, 3), 1.5)]
        Y.append((y + rng.standard_normal(y.shape)).astype(np.float32))
    res_tr, r2_train = residualize(pp.zscore_runs(joint), pp.zscore_runs(uni), train_runs=[0, 1, 2])
    assert r2_train[:6].min() > 0.95 and r2_train[6] < 0.05
    # the residual of a held-out run keeps j and has lost the unimodal part
    assert res_tr[3][:, :6].std(0).max() < 0.1   # z-scored joint features had std 1
    assert np.corrcoef(res_tr[3][:, 6], joint[3][:, 6])[0, 1] > 0.99
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = residual_encoding(joint, {"audio": uni}, Y, delays=(1,), alphas=ALPHAS)
    assert res.space == "joint minus audio"
    assert res.scores[3:].min() > 0.6           # the joint-only component still predicts
    assert np.abs(res.scores[:3]).max() < 0.15  # the unimodal part was removed
