"""Cross-validation that matches the data (issue 9): one run, repeated stimuli, subjects, gaps."""

import warnings

import numpy as np
import pytest

from engine.encoding.fit import FitWarning, fit_encoding, make_cv_plan
from engine.encoding.options import FitOptions, delays_from_seconds
from engine.errors import DataError

from .planted import make_planted


def _fit(*args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_encoding(*args, **kw)


@pytest.mark.parametrize("tr_s", [0.8, 1.0, 1.49, 2.0, 2.5])
def test_default_delays_cover_2_to_10_s_whatever_the_tr(tr_s):
    delays = FitOptions().resolved_delays(tr_s)
    assert delays == delays_from_seconds(tr_s, (2.0, 10.0))
    assert delays[0] * tr_s <= 2.0 + tr_s / 2 and delays[-1] * tr_s >= 10.0
    assert delays == list(range(delays[0], delays[-1] + 1)) and delays[0] >= 1
    assert FitOptions(delays=[1, 2]).resolved_delays(tr_s) == [1, 2]     # explicit TRs win


def test_within_run_plan_has_no_leak_through_delays_or_gap():
    """Every training sample of every outer and inner fold is more than the longest delay away
    from the samples it is validated or tested on, so no training row's delayed features
    (rows t - d) come from a test block; a missing gap (gap_trs=0) breaks exactly this."""
    delays = [1, 2, 3, 4, 5]
    plan = make_cv_plan(FitOptions(cv="auto"), [200], delays=delays)
    assert plan.kind == "within-run" and plan.gap_trs == 5 and len(plan.outer) == 5
    assert "one run -> within-run blocked CV (5 blocks per run, gap 5 TRs)" in plan.label
    tested = np.concatenate([t for _, t in plan.outer])
    assert sorted(tested.tolist()) == list(range(200))            # every TR tested once

    def check(train, test):
        dist = np.abs(train[:, None] - test[None, :]).min(1)
        assert dist.min() > max(delays)
        lagged = (train[:, None] - np.asarray(delays)[None, :]).ravel()    # rows the delays read
        assert not np.isin(lagged, test).any()

    for f, (train, test) in enumerate(plan.outer):
        assert np.all(np.diff(test) == 1)                         # one contiguous block
        check(train, test)
        for tr_in, val_in in plan.inner[f]:                       # indices into train
            check(train[tr_in], train[val_in])
    leaky = make_cv_plan(FitOptions(gap_trs=0), [200], delays=delays)
    with pytest.raises(AssertionError):
        check(*leaky.outer[2])


def test_missing_gap_inflates_noise_scores():
    """Pure noise with autocorrelated features and data: without the gap, held-out r is
    inflated (training rows next to the test block share its noise); with it, less so."""
    rng = np.random.default_rng(0)

    def ar(n, k, phi):
        x = np.zeros((n, k))
        x[0] = rng.standard_normal(k)
        for i in range(1, n):
            x[i] = phi * x[i - 1] + np.sqrt(1 - phi ** 2) * rng.standard_normal(k)
        return x.astype(np.float32)

    X, Y = ar(300, 30, 0.7), ar(300, 200, 0.7)
    alphas = np.logspace(-2, 4, 7)
    leaky = _fit([X], [Y], tr_s=2.0, gap_trs=0, alphas=alphas).scores
    gapped = _fit([X], [Y], tr_s=2.0, alphas=alphas).scores
    d = leaky - gapped
    assert d.mean() > 5 * d.std() / np.sqrt(d.size)


def test_single_run_recovers_a_planted_region():
    p = make_planted(n_runs=1, n_trs=400, tr_s=1.5, n_noise=60, seed=2)
    res = _fit({"words": p.X["words"], "visual": p.X["visual"]}, p.Y, tr_s=p.tr_s)
    assert res.provenance["cv"]["kind"] == "within-run"
    assert res.cv_label == "auto: one run -> within-run blocked CV (5 blocks per run, gap 7 TRs)"
    assert res.folds == [[0]] and res.scores_per_fold.shape == (5, p.Y[0].shape[1])
    for region in ("words", "visual"):
        assert res.scores[p.regions[region]].mean() > 0.3, region
    assert res.scores[p.regions["audio"]].mean() < 0.15            # not in the model
    assert abs(np.median(res.scores[p.noise])) < 0.05
    assert np.isfinite(res.predictions[0]).all()                   # every TR predicted once


def test_repeated_stimulus_is_detected_and_said():
    p = make_planted(n_runs=2, n_trs=200, same_stimulus=True, n_noise=10, seed=3)
    # one stimulus in every run: the same segment is left out of every run (never seen in training)
    res = _fit({"words": p.X["words"]}, p.Y, tr_s=p.tr_s)
    assert res.provenance["cv"]["kind"] == "within-run" and res.provenance["cv"]["stimulus_groups"] == [0, 0]
    assert "one stimulus" in res.cv_label and "within-run" in res.cv_label
    assert not any("repeatability" in w for w in res.warnings)
    # runs too short for 5 blocks and their gaps: leave-one-run-out, and the warning says what it measures
    short = make_planted(n_runs=2, n_trs=20, same_stimulus=True, n_noise=10, seed=3)
    with pytest.warns(FitWarning, match="leave-one-run-out measures repeatability"):
        res = fit_encoding({"words": short.X["words"]}, short.Y, tr_s=short.tr_s)
    assert res.provenance["cv"]["kind"] == "loro" and "too short" in res.cv_label
    # asked to group by stimulus with one stimulus: within-run CV, and it says so
    res = _fit({"words": p.X["words"]}, p.Y, tr_s=p.tr_s, cv="stimulus")
    assert res.provenance["cv"]["kind"] == "within-run" and "only one stimulus" in res.cv_label
    # runs of different subjects seeing one stimulus: cross-subject generalisation
    res = _fit({"words": p.X["words"]}, p.Y, tr_s=p.tr_s, subjects=["sub-01", "sub-02"])
    assert "cross-subject generalisation" in res.cv_label
    assert not any("repeatability" in w for w in res.warnings)


def test_stimulus_grouping_with_ids_and_nearly_equal_features():
    p = make_planted(n_runs=3, n_trs=150, n_noise=4, seed=4)
    X = {"words": [p.X["words"][0], p.X["words"][0] * 1.01 + 0.001, p.X["words"][2]]}   # run 1 ~ run 0
    res = _fit(X, p.Y, tr_s=p.tr_s)
    assert res.provenance["cv"]["kind"] == "stimulus" and res.folds == [[0, 1], [2]]
    assert any("same stimulus" in w for w in res.warnings)
    res = _fit({"words": p.X["words"]}, p.Y, tr_s=p.tr_s, stimulus_ids=["a", "b", "a"])
    assert res.folds == [[0, 2], [1]]
    with pytest.raises(DataError, match="at least 2 runs"):
        _fit({"words": p.X["words"][:1]}, p.Y[:1], tr_s=p.tr_s, cv="loro")


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_default_cv_does_not_reward_memorising_repeated_viewings():
    """Four viewings of one stimulus. Features of pure noise (64 columns, nothing to do with the
    drivers) tell the TRs apart, so leave-one-run-out lets the ridge reproduce the other viewings'
    response: a high held-out r that says the region is repeatable, not that the model explains it
    (and the inner folds, on 3 training viewings, reward it with a small alpha). The default CV
    holds each segment out of every run: the noise features score ~0 while the true words feature
    keeps its r."""
    p = make_planted(n_runs=4, n_trs=150, same_stimulus=True, n_noise=10, seed=6)
    rng = np.random.default_rng(0)
    junk_one = rng.standard_normal((150, 64)).astype(np.float32)
    junk = {"junk": [junk_one] * 4}                       # the same "stimulus" features in every run
    words = p.regions["words"]
    loro = _fit(junk, p.Y, tr_s=p.tr_s, cv="loro")
    assert np.median(loro.scores[words]) > 0.25           # repeatability, measured 0.38
    default = _fit(junk, p.Y, tr_s=p.tr_s)
    assert default.provenance["cv"]["kind"] == "within-run"
    assert abs(np.median(default.scores[words])) < 0.1
    truth = _fit({"words": p.X["words"]}, p.Y, tr_s=p.tr_s)
    assert np.median(truth.scores[words]) > 0.3           # measured 0.49 (junk: -0.06)
