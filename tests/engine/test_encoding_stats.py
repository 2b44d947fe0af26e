"""FDR, permutation p-values, block bootstrap and paired model comparison."""

import numpy as np
import pytest
import scipy.stats

from engine.encoding import stats
from engine.encoding.stats import (
    _PairStats,
    _score_groups,
    _swap_scores,
    bootstrap_ci_targets,
    compare_models,
    fdr_bh,
    make_time_blocks,
    max_statistic_p_values,
    pearson_r,
    permutation_p_values,
    sign_flip_test,
)
from engine.errors import ConfigError, MismatchError


def test_pearson_r_matches_numpy():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((50, 4))
    b = a + rng.standard_normal((50, 4))
    expected = [np.corrcoef(a[:, j], b[:, j])[0, 1] for j in range(4)]
    np.testing.assert_allclose(pearson_r(a, b), expected, rtol=1e-12)
    # the one rule (engine.encoding.results.pearson_r): a constant column scores 0, not NaN...
    b[:, 2] = 3.0
    assert pearson_r(a, b)[2] == 0.0 and pearson_r(b, a)[2] == 0.0
    # ...while a nearly constant one (a prediction shrunk by a large alpha) keeps its true r
    b[:, 3] = 3.0 + 1e-9 * a[:, 3]
    assert pearson_r(a, b)[3] == pytest.approx(1.0, abs=1e-6)
    from engine.encoding import results

    assert pearson_r is results.pearson_r


def test_fdr_known_values_and_scipy_agreement():
    # hand-computed BH: p sorted (0.01, 0.02, 0.03, 0.04, 0.5), m=5:
    # p*m/rank = 0.05, 0.05, 0.05, 0.05, 0.5 -> q = 0.05 for the four, 0.5 for the last
    p = np.array([0.04, 0.01, 0.5, 0.03, 0.02])
    reject, q = fdr_bh(p, alpha=0.05)
    np.testing.assert_allclose(q, [0.05, 0.05, 0.5, 0.05, 0.05])
    assert reject.tolist() == [True, True, False, True, True]
    rng = np.random.default_rng(1)
    p = np.concatenate([rng.uniform(size=300), rng.uniform(0, 1e-3, size=30)])
    for method in ("bh", "by"):
        _, q = fdr_bh(p, method=method)
        np.testing.assert_allclose(q, scipy.stats.false_discovery_control(p, method=method), rtol=1e-12)


def test_fdr_ignores_nan_and_rejects_bad_input():
    p = np.array([0.001, np.nan, 0.5, 0.002])
    reject, q = fdr_bh(p)
    np.testing.assert_allclose(q[[0, 2, 3]], scipy.stats.false_discovery_control(p[[0, 2, 3]]))
    assert np.isnan(q[1]) and not reject[1]
    with pytest.raises(ConfigError):
        fdr_bh(np.array([0.2, 1.5]))
    with pytest.raises(ConfigError):
        fdr_bh(p, method="holm")


def test_permutation_p_values_count_the_observed_draw():
    obs = np.array([0.5, 0.0, -0.3, np.nan])
    null = np.array([[0.1, 0.0, 0.2, 0.0],
                     [0.6, -0.1, -0.4, 0.0],
                     [0.2, 0.3, 0.1, 0.0]])
    p = permutation_p_values(obs, null)
    np.testing.assert_allclose(p[:3], [(1 + 1) / 4, (1 + 2) / 4, (1 + 2) / 4])
    assert np.isnan(p[3])
    p2 = permutation_p_values(obs, null, tail="two-sided")
    np.testing.assert_allclose(p2[:3], [2 / 4, 4 / 4, (1 + 1) / 4])
    # family-wise: maxima per draw are 0.2, 0.6, 0.3
    pm = max_statistic_p_values(obs, null)
    np.testing.assert_allclose(pm[:3], [(1 + 1) / 4, (1 + 3) / 4, (1 + 3) / 4])
    with pytest.raises(MismatchError):
        permutation_p_values(obs, null[:, :2])


def test_time_blocks_never_cross_runs():
    b = make_time_blocks([25, 12], block_trs=10)
    assert b.starts.tolist() == [0, 10, 20, 25, 35]
    assert b.lengths.tolist() == [10, 10, 5, 10, 2]
    assert b.run_of_block.tolist() == [0, 0, 0, 1, 1]
    with pytest.raises(ConfigError):
        make_time_blocks([10], block_trs=0)


def _runs(rng, lengths, n_targets, signal=0.5):
    y = [rng.standard_normal((n, n_targets)) for n in lengths]
    p = [signal * a + rng.standard_normal(a.shape) for a in y]
    return p, y


@pytest.mark.parametrize("score", ["concat", "mean_runs"])
def test_block_weights_equal_explicit_resampling(score):
    rng = np.random.default_rng(2)
    preds, meas = _runs(rng, [33, 20], 5)
    blocks = make_time_blocks([33, 20], 7)
    st = _PairStats(preds, meas, blocks)
    groups = _score_groups(score, 2)
    # all-ones weights give the observed score
    obs = st.scores_from_weights(np.ones((1, blocks.n_blocks)), groups)[0]
    if score == "concat":
        np.testing.assert_allclose(obs, pearson_r(np.concatenate(preds), np.concatenate(meas)), rtol=1e-10)
    else:
        np.testing.assert_allclose(obs, np.mean([pearson_r(p, y) for p, y in zip(preds, meas)], axis=0),
                                   rtol=1e-10)
    # a resample given as counts equals the explicitly concatenated resampled series
    w = stats._bootstrap_weights(blocks, 3, np.random.default_rng(3))
    assert np.all(w[:, blocks.run_of_block == 0].sum(axis=1) == 5)  # ceil(33 / 7) blocks in run 0
    P, Y = np.concatenate(preds), np.concatenate(meas)
    for i in range(3):
        per_run = []
        for k in range(2):
            idx = np.concatenate([np.repeat(np.arange(s, s + n)[None], int(c), axis=0).ravel()
                                  for s, n, c, rb in zip(blocks.starts, blocks.lengths, w[i], blocks.run_of_block)
                                  if rb == k and c > 0])
            per_run.append(idx)
        if score == "concat":
            idx = np.concatenate(per_run)
            expected = pearson_r(P[idx], Y[idx])
        else:
            expected = np.mean([pearson_r(P[ix], Y[ix]) for ix in per_run], axis=0)
        np.testing.assert_allclose(st.scores_from_weights(w[i:i + 1], groups)[0], expected, rtol=1e-9)


def test_block_bootstrap_spread_matches_analytic_standard_error():
    # white noise: the standard error of r is (1 - r^2) / sqrt(n)
    rng = np.random.default_rng(4)
    preds, meas = _runs(rng, [400, 400], 40, signal=0.6)
    r = pearson_r(np.concatenate(preds), np.concatenate(meas))
    draws = np.concatenate(list(stats.block_bootstrap_scores(preds, meas, block_trs=5, n_boot=400, seed=0)))
    se_analytic = (1 - r ** 2) / np.sqrt(800)
    ratio = draws.std(axis=0) / se_analytic
    assert 0.85 < ratio.mean() < 1.15
    low, high = bootstrap_ci_targets(preds, meas, block_trs=5, n_boot=400, seed=0)
    assert np.all(low < r) and np.all(r < high)
    np.testing.assert_allclose((high - low).mean(), 2 * 1.96 * se_analytic.mean(), rtol=0.15)


def test_block_bootstrap_widens_for_autocorrelated_data():
    # smooth (autocorrelated) series: TR-wise resampling understates the uncertainty
    rng = np.random.default_rng(5)
    kernel = np.ones(8) / 8
    def smooth(a):
        return np.stack([np.convolve(a[:, j], kernel, mode="same") for j in range(a.shape[1])], axis=1)
    y = [smooth(rng.standard_normal((300, 20))) for _ in range(2)]
    p = [smooth(rng.standard_normal((300, 20))) for _ in range(2)]
    sd_tr = np.concatenate(list(stats.block_bootstrap_scores(p, y, block_trs=1, n_boot=300))).std(0)
    sd_block = np.concatenate(list(stats.block_bootstrap_scores(p, y, block_trs=20, n_boot=300))).std(0)
    assert sd_block.mean() > 1.8 * sd_tr.mean()


@pytest.mark.parametrize("score", ["concat", "mean_runs"])
def test_swap_scores_equal_explicit_swapped_series(score):
    rng = np.random.default_rng(6)
    meas = [rng.standard_normal((23, 3)), rng.standard_normal((15, 3))]
    pa = [0.5 * y + rng.standard_normal(y.shape) + 2.0 for y in meas]  # offset: tests common centring
    pb = [0.2 * y + rng.standard_normal(y.shape) - 1.0 for y in meas]
    blocks = make_time_blocks([23, 15], 5)
    p_mean = 0.5 * (np.concatenate(pa).mean(0) + np.concatenate(pb).mean(0))
    sa = _PairStats(pa, meas, blocks, p_mean=p_mean)
    sb = _PairStats(pb, meas, blocks, p_mean=p_mean, y_mean=sa.y_mean)
    m = rng.integers(0, 2, size=(4, blocks.n_blocks)).astype(float)
    flat = lambda s: s.sums.reshape(blocks.n_blocks, -1)
    got = _swap_scores(sa, sb, blocks, m, flat(sa), flat(sb), flat(sb) - flat(sa), _score_groups(score, 2))
    A, B, Y = np.concatenate(pa), np.concatenate(pb), np.concatenate(meas)
    for i in range(4):
        a2, b2 = A.copy(), B.copy()
        for j in np.flatnonzero(m[i]):
            s, n = blocks.starts[j], blocks.lengths[j]
            a2[s:s + n], b2[s:s + n] = B[s:s + n], A[s:s + n]
        if score == "concat":
            expected = pearson_r(a2, Y) - pearson_r(b2, Y)
        else:
            cuts = np.cumsum([0, 23, 15])
            expected = np.mean([pearson_r(a2[c0:c1], Y[c0:c1]) - pearson_r(b2[c0:c1], Y[c0:c1])
                                for c0, c1 in zip(cuts[:-1], cuts[1:])], axis=0)
        np.testing.assert_allclose(got[i], expected, rtol=1e-9, atol=1e-12)


def test_compare_models_finds_planted_difference_and_is_calibrated_under_null():
    rng = np.random.default_rng(7)
    n_targets = 120
    meas = [rng.standard_normal((150, n_targets)) for _ in range(3)]
    # model A predicts targets 0..19 better than model B; elsewhere both equally good
    gain_a = np.full(n_targets, 0.4)
    gain_a[:20] = 0.9
    pa = [y * gain_a + rng.standard_normal(y.shape) for y in meas]
    pb = [0.4 * y + rng.standard_normal(y.shape) for y in meas]
    cmp = compare_models(pa, pb, measured=meas, n_perm=400, n_boot=200, block_trs=10, seed=0)
    assert cmp.difference.shape == (n_targets,)
    assert np.all(cmp.difference[:20] > 0.1)
    assert np.mean(cmp.q_values[:20] < 0.05) >= 0.95
    # equally good elsewhere: p-values roughly uniform, few FDR discoveries
    null_p = cmp.p_values[20:]
    assert scipy.stats.kstest(null_p, "uniform").pvalue > 0.01
    assert np.mean(cmp.q_values[20:] < 0.05) < 0.05
    # the bootstrap interval covers zero for most equal targets and excludes it for planted ones
    covers = (cmp.ci_low[20:] <= 0) & (cmp.ci_high[20:] >= 0)
    assert covers.mean() > 0.85
    assert np.all(cmp.ci_low[:20] > 0)
    # a model compared with itself: difference 0, p = 1
    same = compare_models(pa, pa, measured=meas, n_perm=50, n_boot=20)
    np.testing.assert_allclose(same.difference, 0.0, atol=1e-12)
    assert np.all(same.p_values == 1.0)


def test_compare_models_rejects_mismatched_runs():
    rng = np.random.default_rng(8)
    meas = [rng.standard_normal((20, 2))]
    with pytest.raises(MismatchError):
        compare_models([rng.standard_normal((19, 2))], [rng.standard_normal((20, 2))], measured=meas)
    with pytest.raises(ConfigError):
        compare_models([meas[0]], [meas[0]], measured=meas, score="median")
    with pytest.raises(ConfigError):
        compare_models([meas[0]], [meas[0]], measured=meas, score=[[1]])


def test_sign_flip_exact_and_random():
    d = np.array([[0.1, 0.2], [0.2, -0.1], [0.3, 0.05]])
    mean, p = sign_flip_test(d, n_perm=1000)
    np.testing.assert_allclose(mean, d.mean(axis=0))
    # all positive: among 8 patterns only all-plus and all-minus reach |mean| -> p = 2 / 8
    assert p[0] == pytest.approx(2 / 8)
    _, p1 = sign_flip_test(d, n_perm=1000, tail="greater")
    assert p1[0] == pytest.approx(1 / 8)
    rng = np.random.default_rng(9)
    big = rng.standard_normal((20, 200))
    big[:, :20] += 1.5
    _, pr = sign_flip_test(big, n_perm=2000, seed=1)
    assert np.all(pr[:20] < 0.01)
    assert scipy.stats.kstest(pr[20:], "uniform").pvalue > 0.01


@pytest.mark.filterwarnings("ignore::engine.encoding.ridge.AlphaOnEdgeWarning")
@pytest.mark.parametrize("cv", ["loro", 2])
def test_scores_from_real_results_reproduce_encoding_result_scores(cv):
    # "auto" pools runs by the result's outer folds, as fit_encoding scores them
    from engine.encoding.fit import fit_encoding
    rng = np.random.default_rng(10)
    X = [rng.standard_normal((60, 4)).astype(np.float32) for _ in range(4)]
    W = rng.standard_normal((4, 30))
    Y = [(np.roll(x, 1, axis=0) @ W + 2 * rng.standard_normal((60, 30))).astype(np.float32) for x in X]
    fit = dict(delays=(1, 2), alphas=np.logspace(-1, 4, 6), cv=cv)
    res_a = fit_encoding(X, Y, **fit)
    res_b = fit_encoding([x[:, :2] for x in X], Y, **fit)  # a weaker model: half the features
    cmp = compare_models(res_a, res_b, n_perm=200, n_boot=100, seed=0)
    np.testing.assert_allclose(cmp.scores_a, res_a.scores, atol=2e-6)
    np.testing.assert_allclose(cmp.scores_b, res_b.scores, atol=2e-6)
    assert np.mean(cmp.difference) > 0 and np.mean(cmp.q_values < 0.05) > 0.3
    low, high = bootstrap_ci_targets(res_a, n_boot=200, seed=1)
    assert np.mean((low <= res_a.scores) & (res_a.scores <= high)) > 0.95


def test_compare_models_reports_progress_and_cancels():
    from engine.errors import JobCancelled
    from engine.jobs import CancelToken
    rng = np.random.default_rng(11)
    meas = [rng.standard_normal((80, 5)) for _ in range(2)]
    pa = [y + rng.standard_normal(y.shape) for y in meas]
    reports = []
    compare_models(pa, meas, measured=meas, n_perm=250, n_boot=150, on_progress=reports.append)
    assert [r.step for r in reports] == [1, 2, 3, 4, 5] and all(r.total == 5 for r in reports)
    token = CancelToken()

    def stop(p):
        if p.step == 1:
            token.cancel()

    with pytest.raises(JobCancelled):
        compare_models(pa, meas, measured=meas, n_perm=1000, token=token, on_progress=stop)


# ----------------------------------------------------------------- the swap null on standardised predictions

def _ar1(rng, n_trs, n_targets, phi=0.6):
    """AR(1) noise, unit marginal variance: BOLD-like autocorrelation within blocks."""
    e = rng.standard_normal((n_trs, n_targets)) * np.sqrt(1 - phi ** 2)
    x = np.empty_like(e)
    x[0] = rng.standard_normal(n_targets)
    for t in range(1, n_trs):
        x[t] = phi * x[t - 1] + e[t]
    return x


def _old_swap_null(pa, pb, meas, groups, block_trs, n_perm, seed):
    """The previous null (raw predictions, one centring shared by both models), same masks as compare_models."""
    blocks = make_time_blocks([p.shape[0] for p in pa], block_trs)
    p_mean = 0.5 * (np.concatenate(pa).mean(0) + np.concatenate(pb).mean(0))
    sa = _PairStats(pa, meas, blocks, p_mean=p_mean)
    sb = _PairStats(pb, meas, blocks, p_mean=p_mean, y_mean=sa.y_mean)
    flat = lambda s: s.sums.reshape(blocks.n_blocks, -1)
    rng = np.random.default_rng(seed)
    out = []
    for start in range(0, n_perm, 100):
        m = rng.integers(0, 2, size=(min(100, n_perm - start), blocks.n_blocks)).astype(float)
        out.append(_swap_scores(sa, sb, blocks, m, flat(sa), flat(sb), flat(sb) - flat(sa), groups))
    return np.concatenate(out)


def test_swap_null_is_calibrated_for_noise_predictors_on_different_scales():
    # both models pure noise (AR(1), like BOLD), A at sd 1, B at sd 1e-4 around an offset (a ridge at the top
    # of its alpha grid): equally (un)predictive, so the two-sided p-values must be uniform
    rng = np.random.default_rng(20)
    n_targets, lengths = 600, [160, 160, 160]
    meas = [_ar1(rng, n, n_targets) for n in lengths]
    pa = [_ar1(rng, n, n_targets) for n in lengths]
    pb = [5.0 + 1e-4 * _ar1(rng, n, n_targets) for n in lengths]
    groups = [[0], [1], [2]]   # leave-one-run-out folds
    cmp = compare_models(pa, pb, measured=meas, n_perm=400, n_boot=100, block_trs=10, seed=1, score=groups)
    frac = np.mean(cmp.p_values <= 0.05)
    assert 0.02 <= frac <= 0.08, frac
    assert scipy.stats.kstest(cmp.p_values, "uniform").pvalue > 0.001
    assert np.mean(cmp.q_values <= 0.05) < 0.01
    # the previous null (raw scales, one shared centring) was no null here: far fewer small p than nominal,
    # so real differences against a shrunk prediction were lost
    old = _old_swap_null(pa, pb, meas, groups, 10, 400, seed=1)
    assert np.mean(permutation_p_values(cmp.difference, old, tail="two-sided") <= 0.05) < 0.01
    # and the standardised null does not depend on B's scale or offset at all
    again = compare_models(pa, [1e4 * (p - 5.0) for p in pb], measured=meas, n_perm=400, n_boot=10, block_trs=10,
                           seed=1, score=groups)
    np.testing.assert_allclose(again.null, cmp.null, atol=1e-5)
    assert cmp.settings["null"] == stats.NULL_DESCRIPTION and "standardised" in cmp.settings["null"]
    # each model's own r is what pearson_r gives on its raw predictions, fold by fold
    for preds, got in ((pa, cmp.scores_a), (pb, cmp.scores_b)):
        np.testing.assert_allclose(got, np.mean([pearson_r(p, y) for p, y in zip(preds, meas)], axis=0),
                                   atol=1e-10)


def test_swap_null_keeps_power_against_a_shrunk_prediction():
    # A carries a planted signal in targets 0..29, B predicts a near-constant (sd 1e-6) noise at an offset (a
    # ridge at the top of its alpha grid): Δr ≈ +0.6 there must reach the p floor and be significant after FDR
    rng = np.random.default_rng(21)
    n_targets, lengths, n_perm = 200, [200, 200, 200], 500
    meas = [_ar1(rng, n, n_targets) for n in lengths]
    gain = np.zeros(n_targets)
    gain[:30] = 0.8
    pa = [gain * y + _ar1(rng, y.shape[0], n_targets) for y in meas]
    pb = [2.0 + 1e-6 * _ar1(rng, n, n_targets) for n in lengths]
    groups = [[0], [1], [2]]
    cmp = compare_models(pa, pb, measured=meas, n_perm=n_perm, n_boot=200, block_trs=10, seed=2, score=groups)
    assert np.all(cmp.difference[:30] > 0.2)
    assert np.all(cmp.p_values[:30] == 1 / (n_perm + 1)), cmp.p_values[:30]
    assert np.all(cmp.q_values[:30] <= 0.05)
    assert np.all(cmp.ci_low[:30] > 0)
    assert np.mean(cmp.q_values[30:] <= 0.05) < 0.05


@pytest.mark.parametrize("score", ["concat", "mean_runs"])
def test_swap_null_equals_explicit_standardised_swaps_and_old_null_on_one_scale(score):
    # brute force: standardise each model per score group, build the swapped series with numpy for the first
    # permutations (the masks compare_models draws), and compare with its null; with both models on one scale
    # the p-values agree with the previous (raw-scale) implementation's
    rng = np.random.default_rng(22)
    lengths, n_targets, n_perm, seed = [150, 120, 130], 60, 300, 3
    meas = [_ar1(rng, n, n_targets, phi=0.3) for n in lengths]
    # one scale: both predictions have unit variance, A more of it from the response in targets 0..14
    gain_a = np.where(np.arange(n_targets) < 15, 0.7, 0.35)
    pa = [gain_a * y + np.sqrt(1 - gain_a ** 2) * rng.standard_normal(y.shape) for y in meas]
    pb = [0.35 * y + np.sqrt(1 - 0.35 ** 2) * rng.standard_normal(y.shape) for y in meas]
    cmp = compare_models(pa, pb, measured=meas, n_perm=n_perm, n_boot=50, block_trs=6, seed=seed, score=score)
    groups = _score_groups(score, 3)
    blocks = make_time_blocks(lengths, 6)
    masks = np.random.default_rng(seed).integers(0, 2, size=(100, blocks.n_blocks))[:5]
    cuts = np.cumsum([0] + lengths)
    A, B, Y = np.concatenate(pa), np.concatenate(pb), np.concatenate(meas)
    for i, m in enumerate(masks):
        per_group = []
        for g in groups:
            idx = np.concatenate([np.arange(cuts[k], cuts[k + 1]) for k in g])
            za = (A[idx] - A[idx].mean(0)) / A[idx].std(0)
            zb = (B[idx] - B[idx].mean(0)) / B[idx].std(0)
            swapped = np.zeros(len(idx), dtype=bool)
            for j in np.flatnonzero(m):
                s, n = blocks.starts[j], blocks.lengths[j]
                swapped |= (idx >= s) & (idx < s + n)
            a2 = np.where(swapped[:, None], zb, za)
            b2 = np.where(swapped[:, None], za, zb)
            per_group.append(pearson_r(a2, Y[idx]) - pearson_r(b2, Y[idx]))
        np.testing.assert_allclose(cmp.null[i], np.mean(per_group, axis=0), rtol=1e-5, atol=1e-6)
    old = _old_swap_null(pa, pb, meas, groups, 6, n_perm, seed)
    p_old = permutation_p_values(cmp.difference, old, tail="two-sided")
    gap = np.abs(cmp.p_values - p_old)
    assert gap.mean() < 0.02 and gap.max() < 0.06, (gap.mean(), gap.max())
    np.testing.assert_allclose(cmp.null.std(0), old.std(0), rtol=0.1)


def test_cv_variance_factor_counts_the_folds_that_train_each_other():
    from types import SimpleNamespace

    from engine.encoding.stats import cv_variance_factor

    def res(folds, lengths, kind=None):
        return SimpleNamespace(folds=folds, predictions=[np.zeros((n, 1)) for n in lengths],
                               provenance={"cv": {"kind": kind}} if kind else {})

    assert cv_variance_factor(res([[0], [1], [2], [3]], [50] * 4, "loro")) == 2.0     # every pair trains each other
    assert cv_variance_factor(res([[0, 1], [2, 3]], [50, 70, 60, 40], "kfold")) == 2.0
    assert cv_variance_factor(res([[3]], [50] * 4, "explicit")) == 1.0                  # a train/test split
    assert cv_variance_factor(res([], [50] * 4)) == 1.0
    assert cv_variance_factor(res([[0], [1]], [50] * 2, "within-run")) == 2.0
    # runs 2 and 3 tested (each trains the other), 0 and 1 only trained on: (2*2 + 4) / (2 + 4) pairs
    assert cv_variance_factor(res([[2], [3]], [50] * 4, "explicit")) == pytest.approx(8 / 6)
    # run lengths weight the pairs: tested 2 (100 TRs) and 3 (50), train-only 0 (50)
    assert cv_variance_factor(res([[1], [2]], [50, 100, 50], "explicit")) == pytest.approx(
        (2 * 2 * 100 * 50 + 100 * 50 + 50 * 50) / (2 * 100 * 50 + 100 * 50 + 50 * 50))


@pytest.mark.filterwarnings("ignore::engine.encoding.ridge.AlphaOnEdgeWarning")
@pytest.mark.parametrize("runs, cv, factor, low, high", [(4, "loro", 2.0, 0.01, 0.08), (4, [[3]], 1.0, 0.025, 0.085)])
def test_comparison_of_cross_validated_noise_fits_is_calibrated(runs, cv, factor, low, high):
    """Two models fitted by fit_encoding to pure AR(1) noise: equally (un)predictive, so about 5 % of
    targets may reach p <= 0.05. With leave-one-run-out each run's noise scores its own fold and, through
    the fit, every fold it trained: the unwidened swap null gives 15-20 % (asserted > 10 % here); widened by
    sqrt(2) it is back near 5 %. One held-out split trains nothing it tests: not widened, near 5 %."""
    from engine.encoding.fit import fit_encoding

    rng = np.random.default_rng(4)
    n_trs, n_targets = 100, 400
    X = [rng.standard_normal((n_trs, 12)).astype(np.float32) for _ in range(runs)]
    Y = [_ar1(rng, n_trs, n_targets, phi=0.3).astype(np.float32) for _ in range(runs)]
    fit = dict(delays=(1, 2), alphas=np.logspace(-1, 4, 6), cv=cv)
    res_a = fit_encoding([x[:, :6] for x in X], Y, **fit)
    res_b = fit_encoding([x[:, 6:] for x in X], Y, **fit)
    cmp = compare_models(res_a, res_b, n_perm=500, n_boot=200, seed=0)
    assert cmp.settings["cv_factor"] == factor
    assert low <= np.mean(cmp.p_values <= 0.05) <= high
    assert np.mean((cmp.ci_low <= 0) & (0 <= cmp.ci_high)) > 0.88        # 95 % intervals cover the null
    if factor > 1:
        narrow = compare_models(res_a, res_b, n_perm=500, n_boot=10, seed=0, cv_factor=1)
        assert np.mean(narrow.p_values <= 0.05) > 0.10
        # the same swaps, widened: every null draw sqrt(2) times the unwidened one
        np.testing.assert_allclose(cmp.null, np.sqrt(2) * narrow.null, rtol=1e-5, atol=1e-7)
    with pytest.raises(ConfigError, match="cv_factor"):
        compare_models(res_a, res_b, n_perm=10, n_boot=10, cv_factor=0.5)
    # one model's score interval: the same widening; a train/test split's training runs have no held-out
    # prediction (NaN) and are left out of the resample (they made every interval NaN before)
    low, high = bootstrap_ci_targets(res_a, n_boot=200, seed=1)
    mean_r = float(np.mean(res_a.scores))
    assert np.mean((low <= mean_r) & (mean_r <= high)) > 0.86
    if factor > 1:
        low1, high1 = bootstrap_ci_targets(res_a, n_boot=200, seed=1, cv_factor=1)
        assert np.mean((low1 <= mean_r) & (mean_r <= high1)) < 0.84            # measured 0.78 unwidened


@pytest.mark.filterwarnings("ignore::engine.encoding.ridge.AlphaOnEdgeWarning")
def test_within_run_results_are_resampled_by_their_folds_test_segments():
    """With within-run CV the saved score is r over each fold's held-out segments (one per run), mean over
    folds. The resampling statistics cut the runs the same way, so their unresampled statistic is the saved
    score (per run it is not: the segments of a run come from five different models) and every interval
    contains the observed difference."""
    from engine.encoding.fit import fit_encoding
    from engine.encoding.stats import _fold_segments

    rng = np.random.default_rng(11)
    X = [rng.standard_normal((120, 4)).astype(np.float32) for _ in range(2)]
    W = rng.standard_normal((4, 40))
    Y = [(np.roll(x, 1, axis=0) @ W + 3 * rng.standard_normal((120, 40))).astype(np.float32) for x in X]
    fit = dict(delays=(1, 2), alphas=np.logspace(-1, 4, 6), cv="within-run")
    res_a = fit_encoding(X, Y, **fit)
    res_b = fit_encoding([x[:, :2] for x in X], Y, **fit)
    preds, meas, groups = _fold_segments(res_a, res_a.predictions, res_a.measured, "auto")
    assert len(preds) == 2 * 5 and groups == [[b, 5 + b] for b in range(5)]
    blocks = make_time_blocks([p.shape[0] for p in preds], 10)
    again = _PairStats(preds, meas, blocks).scores_from_weights(np.ones((1, blocks.n_blocks)), groups)[0]
    np.testing.assert_allclose(again, res_a.scores, atol=2e-6)
    per_run = _PairStats(res_a.predictions, res_a.measured, make_time_blocks([120, 120], 10)).scores_from_weights(
        np.ones((1, 24)), [[0], [1]])[0]
    assert np.max(np.abs(per_run - res_a.scores)) > 0.01                 # the rule that was used before
    cmp = compare_models(res_a, res_b, n_perm=200, n_boot=200, seed=0)
    assert cmp.settings["cv_factor"] == 2.0
    assert np.all((cmp.ci_low <= cmp.difference) & (cmp.difference <= cmp.ci_high))
    low, high = bootstrap_ci_targets(res_a, n_boot=200, seed=1)
    assert np.all((low <= res_a.scores) & (res_a.scores <= high))
