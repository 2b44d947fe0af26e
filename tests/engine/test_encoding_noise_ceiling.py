"""Noise ceilings recover the analytic values of a planted signal + independent noise."""

from pathlib import Path

import numpy as np
import pytest

from engine.encoding.noise_ceiling import (
    across_subject_ceiling,
    explainable_variance,
    isc_leave_one_out,
    isc_pairwise,
    normalize_scores,
    spearman_brown,
    split_half_reliability,
)
from engine.errors import MismatchError


def _planted(n_rep, n_trs, noise_sd, seed=0):
    """y_k = s + e_k with var(s) = 1, var(e) = noise_sd**2 per target (column)."""
    rng = np.random.default_rng(seed)
    n_targets = noise_sd.size
    s = rng.standard_normal((n_trs, n_targets))
    e = rng.standard_normal((n_rep, n_trs, n_targets)) * noise_sd
    return (s[None] + e).astype(np.float32)


NOISE_SD = np.array([0.5, 1.0, 2.0, 3.0] * 4)  # snr 4, 1, 0.25, 0.11
EV_TRUE = 1.0 / (1.0 + NOISE_SD ** 2)


def test_explainable_variance_matches_analytic_value():
    data = _planted(6, 3000, NOISE_SD)
    ev = explainable_variance(data)
    np.testing.assert_allclose(ev, EV_TRUE, atol=0.03)
    # without bias correction the estimator overshoots by (1 - ev) / n_repeats
    raw = explainable_variance(data, bias_correction=False)
    assert np.all(raw > ev)
    np.testing.assert_allclose(raw, EV_TRUE + (1 - EV_TRUE) / 6, atol=0.03)


def test_explainable_variance_agrees_with_voxelwise_tutorials_formula():
    # the estimator as written in gallantlab/voxelwise_tutorials utils.explainable_variance
    import scipy.stats
    data = _planted(3, 200, NOISE_SD, seed=3).astype(np.float64)
    z = scipy.stats.zscore(data, axis=1)
    v = z.mean(axis=0).var(axis=0, ddof=1) / z.var(axis=1, ddof=1).mean(axis=0)
    ref = v - (1 - v) / (3 - 1)
    np.testing.assert_allclose(explainable_variance(data), ref, rtol=1e-10)


@pytest.mark.parametrize("n_rep", [2, 3, 4, 7])
def test_split_half_spearman_brown_matches_reliability_of_mean(n_rep):
    n_trs = 6000
    data = _planted(n_rep, n_trs, NOISE_SD, seed=n_rep)
    half = n_rep // 2
    k = n_rep / half
    r_half = 1.0 / (1.0 + NOISE_SD ** 2 / half)  # S / (S + N / half): two half-means
    expected = 1.0 / (1.0 + NOISE_SD ** 2 / n_rep)  # S / (S + N / n)
    # 4 standard errors of a correlation over n_trs samples (an upper bound when splits
    # are averaged), carried through the Spearman-Brown step-up by its derivative
    se_half = (1 - r_half ** 2) / np.sqrt(n_trs)
    tol_half = 4 * se_half
    tol = 4 * se_half * k / (1 + (k - 1) * r_half) ** 2
    rel = split_half_reliability(data, n_splits=30)
    assert np.all(np.abs(rel - expected) < tol), (rel, expected, tol)
    raw = split_half_reliability(data, n_splits=30, spearman_brown_correct=False)
    assert np.all(np.abs(raw - r_half) < tol_half), (raw, r_half, tol_half)
    # the single-repeat estimator stepped up to n repeats estimates the same quantity
    ev = explainable_variance(data)
    assert np.all(np.abs(spearman_brown(ev, n_rep) - expected) < 2 * tol)


def test_model_at_the_ceiling_normalises_to_one():
    n_rep = 4
    rng = np.random.default_rng(1)
    data = _planted(n_rep, 4000, NOISE_SD, seed=5)
    # the planted signal itself is the best possible model: its r with the mean of the
    # repeats is sqrt(reliability), so its normalised score is 1
    s = _planted(1, 4000, np.zeros_like(NOISE_SD), seed=5)[0]  # the same s, no noise
    mean_resp = data.mean(axis=0)
    r = np.array([np.corrcoef(s[:, j], mean_resp[:, j])[0, 1] for j in range(s.shape[1])])
    norm = normalize_scores(r, split_half_reliability(data, n_splits=30))
    np.testing.assert_allclose(norm, 1.0, atol=0.05)
    # a model with half the signal correlation scores ~0.5 of the ceiling
    weak = s + rng.standard_normal(s.shape) * np.sqrt(3.0)  # corr with s = 0.5
    r_weak = np.array([np.corrcoef(weak[:, j], mean_resp[:, j])[0, 1] for j in range(s.shape[1])])
    norm_weak = normalize_scores(r_weak, split_half_reliability(data, n_splits=30))
    np.testing.assert_allclose(norm_weak.mean(), 0.5, atol=0.04)


def test_normalize_scores_nan_where_no_ceiling_and_clip():
    r = np.array([0.2, 0.3, 0.1, 0.5])
    c = np.array([0.16, 0.0, -0.1, 0.04])
    out = normalize_scores(r, c)
    np.testing.assert_allclose(out[0], 0.5)
    assert np.isnan(out[1]) and np.isnan(out[2])
    assert out[3] == pytest.approx(2.5)
    assert normalize_scores(r, c, clip=True)[3] == 1.0
    with pytest.raises(MismatchError):
        normalize_scores(r, c[:3])


def test_across_subject_ceilings_match_analytic_values():
    n_sub = 4
    data = _planted(n_sub, 4000, NOISE_SD, seed=11)
    ev = EV_TRUE
    ev_rest = (n_sub - 1) * ev / (1 + (n_sub - 2) * ev)
    loso = isc_leave_one_out(data)
    assert loso.shape == (n_sub, NOISE_SD.size)
    np.testing.assert_allclose(loso.mean(axis=0), np.sqrt(ev * ev_rest), atol=0.03)
    np.testing.assert_allclose(isc_pairwise(data), ev, atol=0.03)
    # pairwise mean ISC equals the explicit mean over pairs
    pairs = [np.array([np.corrcoef(data[i][:, t], data[j][:, t])[0, 1] for t in range(NOISE_SD.size)])
             for i in range(n_sub) for j in range(i + 1, n_sub)]
    np.testing.assert_allclose(isc_pairwise(data), np.mean(pairs, axis=0), rtol=1e-6)
    np.testing.assert_allclose(across_subject_ceiling(data, "loso"), ev, atol=0.03)
    np.testing.assert_allclose(across_subject_ceiling(data, "pairwise"), ev, atol=0.03)


def test_pure_noise_ceiling_is_near_zero_and_normalisation_is_nan_or_small():
    rng = np.random.default_rng(2)
    noise = rng.standard_normal((4, 500, 50)).astype(np.float32)
    ev = explainable_variance(noise)
    assert abs(ev.mean()) < 0.01 and np.abs(ev).max() < 0.1
    assert abs(across_subject_ceiling(noise).mean()) < 0.02


def test_bad_shapes_raise():
    with pytest.raises(MismatchError):
        explainable_variance(np.zeros((1, 10, 3)))
    with pytest.raises(MismatchError):
        isc_leave_one_out(np.zeros((3, 2, 3)))


ALICE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "alice_brennan2016" / "alice_data_shared"


def _alice_subjects():
    files = sorted((ALICE / "6mm").glob("s*-timecourses.txt"))
    if not files:
        pytest.skip(f"real data absent: expected Brennan 2016 time courses in {ALICE / '6mm'}")
    data = [np.loadtxt(f) for f in files]
    return np.stack([d for d in data if np.any(d)])  # s33 is all zeros in the release


def test_real_alice_isc_matches_published_values():
    # 27 subjects x 362 TRs x 6 ROIs (LATL RATL LPTL LIPL LPreM LIFG); the data README reports
    # leave-one-subject-out ISC of about 0.30 0.19 0.37 0.27 0.21 0.13
    d = _alice_subjects()
    assert d.shape == (27, 362, 6)
    loso = isc_leave_one_out(d).mean(axis=0)
    np.testing.assert_allclose(loso, [0.30, 0.19, 0.37, 0.27, 0.21, 0.13], atol=0.01)
    # the two across-subject ceilings estimate the same quantity on real data too
    np.testing.assert_allclose(across_subject_ceiling(d, "loso"), isc_pairwise(d), atol=0.01)
