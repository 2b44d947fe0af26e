"""Permutation nulls refit the whole cross-validation; p-values are calibrated and find planted signal."""

import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from engine.encoding.fit import fit_encoding
from engine.encoding.permutation import (
    PermutationResult,
    block_permutation,
    circular_shift,
    permutation_indices,
    permutation_test,
    permute_runs,
)
from engine.errors import ConfigError, JobCancelled, SchemaError
from engine.jobs import CancelToken

FIT = dict(delays=(1, 2), alphas=np.logspace(-1, 4, 6))

# pure-noise targets choose the largest alpha: expected here, not a problem of the grid
pytestmark = pytest.mark.filterwarnings("ignore::engine.encoding.ridge.AlphaOnEdgeWarning")


def _data(n_targets=100, n_signal=0, n_runs=3, n_trs=60, n_features=4, noise=1.0, seed=0):
    rng = np.random.default_rng(seed)
    X = [rng.standard_normal((n_trs, n_features)).astype(np.float32) for _ in range(n_runs)]
    W = rng.standard_normal((n_features, n_targets))
    W[:, n_signal:] = 0.0
    Y = []
    for x in X:
        lagged = np.vstack([np.zeros((1, n_features)), x[:-1]])  # response 1 TR after the stimulus
        Y.append((lagged @ W + noise * rng.standard_normal((n_trs, n_targets))).astype(np.float32))
    return X, Y


def test_block_permutation_keeps_blocks_and_runs():
    rng = np.random.default_rng(0)
    order = block_permutation(47, 10, rng)
    assert sorted(order.tolist()) == list(range(47))
    assert not np.array_equal(order, np.arange(47))
    # each block stays in one piece: starts of blocks are multiples of 10
    breaks = np.flatnonzero(np.diff(order) != 1) + 1
    pieces = np.split(order, breaks)
    assert all(p[0] % 10 == 0 and np.all(np.diff(p) == 1) for p in pieces)
    assert sorted(len(p) for p in pieces)[0] >= 7  # the short last block (7 TRs) is intact
    shift = circular_shift(50, 10, rng)
    k = (shift[0] - 0) % 50
    assert np.array_equal(shift, np.roll(np.arange(50), 50 - k)) and 10 <= (50 - k) % 50 <= 40
    with pytest.raises(ConfigError):
        circular_shift(15, 10, rng)


def test_permutation_indices_reproducible_and_permute_runs_shares_order():
    a = permutation_indices([30, 25], 5, "block", 5, seed=3)
    b = permutation_indices([30, 25], 5, "block", 5, seed=3)
    assert all(np.array_equal(x, y) for pa, pb in zip(a, b) for x, y in zip(pa, pb))
    assert len(a) == 5 and [len(o) for o in a[0]] == [30, 25]
    X = {"vis": [np.arange(30.0)[:, None], np.arange(25.0)[:, None]],
         "aud": [np.arange(30.0)[:, None] * 2, np.arange(25.0)[:, None] * 2]}
    P = permute_runs(X, a[0])
    np.testing.assert_array_equal(P["aud"][0], 2 * P["vis"][0])
    np.testing.assert_array_equal(P["vis"][1][:, 0], a[0][1])
    with pytest.raises(ConfigError):
        permutation_indices([30], 2, "shuffle")


def test_null_is_the_whole_cv_refit_on_permuted_features():
    X, Y = _data(n_targets=6, n_signal=3)
    res = permutation_test(X, Y, n_perm=3, block_trs=10, seed=5, **FIT)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = fit_encoding(X, Y, **FIT)
        orders = permutation_indices([60] * 3, 3, "block", 10, seed=5)
        again = fit_encoding(permute_runs(X, orders[2]), Y, **FIT)
    np.testing.assert_array_equal(res.observed, ref.scores)
    np.testing.assert_array_equal(res.null[2], again.scores)
    assert res.settings["fit"]["delays"] == (1, 2)


def test_pure_noise_gives_uniform_p_values_and_no_discoveries():
    X, Y = _data(n_targets=150, n_signal=0, seed=1)
    res = permutation_test(X, Y, n_perm=49, block_trs=10, seed=0, **FIT)
    assert res.null.shape == (49, 150)
    ks = scipy.stats.kstest(res.p_values, "uniform")
    assert ks.pvalue > 0.01, ks
    assert res.significant(0.05, "fdr").sum() <= 2
    assert res.significant(0.05, "fwer").sum() <= 1
    # uncorrected, about 5% pass at 0.05
    assert 0.01 <= res.significant(0.05, "none").mean() <= 0.10


@pytest.mark.parametrize("method", ["block", "shift"])
def test_planted_targets_are_significant(method):
    # 12 planted of 40: the smallest attainable q is (1 / 100) * 40 / 12 = 0.033 < 0.05
    X, Y = _data(n_targets=40, n_signal=12, noise=1.5, seed=2)
    res = permutation_test(X, Y, n_perm=99, method=method, block_trs=10, seed=0, **FIT)
    sig = res.significant(0.05, "fdr")
    assert sig[:12].all(), res.q_values[:12]
    # BH bounds the expected false discovery proportion (~0.05 x 14 discoveries = 0.7 here)
    assert sig[12:].sum() <= 2
    np.testing.assert_allclose(res.p_values[:12], 1 / 100)
    assert np.all(res.observed[:12] > np.max(res.null[:, :12], axis=0))


def test_progress_per_permutation_and_cancel_between_permutations():
    X, Y = _data(n_targets=10, n_signal=2)
    reports = []
    permutation_test(X, Y, n_perm=4, seed=0, on_progress=reports.append, **FIT)
    steps = [(p.step, p.total) for p in reports if "permutation" in p.message]
    assert steps[-4:] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    token = CancelToken()
    seen = []

    def cancel_after_two(p):
        seen.append(p.step)
        if p.step == 2 and "done" in p.message:
            token.cancel()

    with pytest.raises(JobCancelled):
        permutation_test(X, Y, n_perm=20, seed=0, token=token, on_progress=cancel_after_two, **FIT)
    assert max(seen) == 2


def test_save_load_roundtrip(tmp_path):
    X, Y = _data(n_targets=5, n_signal=2)
    res = permutation_test(X, Y, n_perm=5, seed=0, **FIT)
    path = res.save(tmp_path / "perm.h5")
    back = PermutationResult.load(path)
    for name in ("observed", "null", "p_values", "q_values", "p_fwer"):
        np.testing.assert_array_equal(getattr(back, name), getattr(res, name))
    assert back.settings["n_perm"] == 5 and back.settings["method"] == "block"
    import h5py
    with h5py.File(tmp_path / "other.h5", "w") as h:
        h.attrs["kind"] = "something else"
    with pytest.raises(SchemaError):
        PermutationResult.load(tmp_path / "other.h5")


ALICE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "alice_brennan2016" / "alice_data_shared"


def test_real_alice_group_signal_follows_word_rate_beyond_chance():
    # Brennan et al. 2016: 27 listeners, 6 language ROIs, TR 2 s. Features: word rate and sound
    # power (already HRF-convolved in the release); target: the z-scored group-mean time course.
    # The story is cut into 3 contiguous pseudo-runs for leave-one-run-out CV.
    files = sorted((ALICE / "6mm").glob("s*-timecourses.txt"))
    if not files:
        pytest.skip(f"real data absent: expected Brennan 2016 time courses in {ALICE / '6mm'}")
    subjects = np.stack([d for d in (np.loadtxt(f) for f in files) if np.any(d)])
    z = (subjects - subjects.mean(axis=1, keepdims=True)) / subjects.std(axis=1, keepdims=True)
    group = z.mean(axis=0)  # 362, 6
    X = np.stack([np.loadtxt(ALICE / "s18-rate.txt"), np.loadtxt(ALICE / "s18-sndpwr.txt")], axis=1)
    cuts = [0, 121, 242, 362]
    X_runs = [X[a:b].astype(np.float32) for a, b in zip(cuts[:-1], cuts[1:])]
    Y_runs = [group[a:b].astype(np.float32) for a, b in zip(cuts[:-1], cuts[1:])]
    res = permutation_test(X_runs, Y_runs, n_perm=49, delays=(0, 1, 2), alphas=np.logspace(-2, 4, 7),
                           block_trs=10, seed=0)
    # the data README: the group-mean signal correlates with word rate at r 0.28-0.43
    assert np.all(res.observed > 0.25) and np.all(res.observed < 0.6)
    assert res.significant(0.05, "fdr").all()
    # below the noise ceiling of a 27-subject mean
    from engine.encoding.noise_ceiling import isc_pairwise, normalize_scores, spearman_brown
    ceiling = spearman_brown(isc_pairwise(subjects), subjects.shape[0])
    norm = normalize_scores(res.observed, ceiling)
    assert np.all((norm > 0.2) & (norm < 1.0))
