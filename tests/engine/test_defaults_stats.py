"""One score, significance with p and q in the result, warnings that help, preprocessing = nilearn."""

import warnings

import h5py
import numpy as np
import pytest

from engine.encoding import preprocess as pp
from engine.encoding.fit import FitWarning, fit_encoding
from engine.encoding.options import FitOptions
from engine.encoding.results import EncodingResult, reliable_threshold
from engine.encoding.significance import n_distinct_permutations, significance_job, significance
from engine.encoding.stats import comparison_tables
from engine.jobs import run_sync

from .planted import make_planted


def _fit(*args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_encoding(*args, **kw)


@pytest.fixture(scope="module")
def planted():
    return make_planted(n_runs=2, n_trs=200, tr_s=2.0, n_per_region=4, n_noise=20, seed=5)


@pytest.mark.parametrize("case", ["detrend", "high_pass", "confounds", "all"])
def test_cleaning_agrees_with_nilearn_signal_clean(case):
    from nilearn.signal import clean

    rng = np.random.default_rng(0)
    n = 180
    Y = 1000 + 10 * rng.standard_normal((n, 6)) + np.linspace(0, 40, n)[:, None] \
        + 5 * np.cos(np.arange(n) * 2.0 / 300 * 2 * np.pi)[:, None]
    C = rng.standard_normal((n, 3))
    C[0] = np.nan                                   # fMRIPrep's n/a first row
    C_filled = C.copy()
    C_filled[0] = np.nanmean(C[1:], 0)
    ours_kw, nl_kw = dict(detrend=1), dict(detrend=True)
    if case in ("high_pass", "all"):
        ours_kw.update(high_pass_s=128.0, tr_s=2.0)
        nl_kw.update(high_pass=1 / 128.0, t_r=2.0, filter="cosine")
    if case in ("confounds", "all"):
        ours_kw.update(confounds_runs=[C])
        nl_kw.update(confounds=C_filled)
    ours = pp.clean_runs([Y], **ours_kw)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = clean(Y, standardize=None, **nl_kw)
    np.testing.assert_allclose(ours, ref, atol=1e-4 * np.abs(ref).max())


def test_raw_units_without_detrend_warns_and_default_does_not(planted):
    X = {"words": planted.X["words"]}
    with pytest.warns(FitWarning, match="raw scanner units"):
        res = fit_encoding(X, planted.Y, FitOptions(detrend=None, high_pass_s=None), tr_s=planted.tr_s)
    assert any("raw scanner units" in w for w in res.warnings)
    assert res.provenance["preprocessing"]["raw_units_runs"] == [0, 1]
    good = _fit(X, planted.Y, tr_s=planted.tr_s)
    assert not any("raw scanner units" in w for w in good.warnings)
    assert good.provenance["preprocessing"]["raw_units_runs"] == [0, 1]


def test_confounds_regressed_out_of_brain_data(planted):
    rng = np.random.default_rng(1)
    motion = [rng.standard_normal((200, 2)) for _ in range(2)]
    Y = [y + 50 * m[:, :1] for y, m in zip(planted.Y, motion)]     # a motion artefact
    res = _fit({"words": planted.X["words"]}, Y, tr_s=planted.tr_s, confounds_runs=motion)
    # the measured data the scores use are orthogonal to the confounds
    m0 = motion[0] - motion[0].mean(0)
    corr = (res.measured[0].T @ m0) / len(m0)
    assert np.abs(corr).max() < 1e-3
    assert res.provenance["preprocessing"]["brain"]["confounds"] == "given"


def test_result_round_trip_with_new_fields_and_old_files_load(planted, tmp_path):
    res = _fit({"words": planted.X["words"]}, planted.Y, tr_s=planted.tr_s)
    res.p_values = np.linspace(0, 1, res.n_targets)
    res.q_values = np.linspace(0, 1, res.n_targets)
    back = EncodingResult.load(res.save(tmp_path / "r.h5"))
    assert back.tr_s == 2.0 and back.delays_s == res.delays_s and back.cv_label == res.cv_label
    assert back.options == res.options and back.warnings == res.warnings
    np.testing.assert_array_equal(back.p_values, res.p_values)
    np.testing.assert_array_equal(back.q_values, res.q_values)
    # a file written before these fields existed still loads, with empty defaults
    with h5py.File(tmp_path / "r.h5", "a") as h:
        for k in ("tr_s", "delays_s", "cv_label", "warnings", "options"):
            del h.attrs[k]
        del h["p_values"], h["q_values"]
    old = EncodingResult.load(tmp_path / "r.h5")
    assert old.tr_s is None and old.delays_s == [] and old.p_values is None
    np.testing.assert_array_equal(old.scores, res.scores)


def test_compare_uses_saved_scores_and_counts_match_tables(planted):
    a = _fit({"words": planted.X["words"], "visual": planted.X["visual"]}, planted.Y, tr_s=planted.tr_s)
    b = _fit({"visual": planted.X["visual"]}, planted.Y, tr_s=planted.tr_s)
    labels = np.zeros(a.n_targets, dtype=int)
    for k, region in enumerate(("visual", "audio", "words"), start=1):
        labels[planted.regions[region]] = k
    with warnings.catch_warnings():
        warnings.simplefilter("error")                  # no "All-NaN slice" or other warnings
        out = comparison_tables(a, b, labels, ["visual", "audio", "words"], n_perm=200, n_boot=100)
    t, reg, head = out["targets"], out["regions"], out["header"]
    # compare's per-target r IS the saved score, exactly
    np.testing.assert_array_equal(t["score_a"].to_numpy(), a.scores.astype(np.float64))
    np.testing.assert_array_equal(t["score_b"].to_numpy(), b.scores.astype(np.float64))
    both = np.isfinite(a.scores) & np.isfinite(b.scores)
    assert head["n_targets_both"] == both.sum()
    assert head["frac_targets_a_better"] == pytest.approx(np.mean(a.scores[both] > b.scores[both]))
    assert head["n_sig_a_better"] == int((t.significant & (t.difference > 0)).sum())
    assert head["n_regions_sig_a_better"] == int(((reg.q_value <= 0.05) & (reg.mean_difference > 0)).sum())
    words = reg.set_index("region").loc["words"]
    assert words.mean_difference > 0.2 and words.q_value <= 0.05 and words.frac_targets_a_better == 1.0
    np.testing.assert_allclose(reg.mean_a, [a.scores[labels == k].mean() for k in (1, 2, 3)], rtol=1e-6)
    assert (t.folds_a_better <= t.n_folds).all()


def test_significance_p_q_written_into_the_result(planted, tmp_path):
    X = {"words": planted.X["words"]}
    res = _fit(X, planted.Y, tr_s=planted.tr_s)
    path = res.save(tmp_path / "words.h5")
    labels = np.zeros(res.n_targets, dtype=int)
    labels[planted.regions["words"]] = 1
    labels[planted.noise] = 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sig = run_sync(significance_job(path, X, planted.Y, n_perm=39, labels=labels, names=["words", "noise"],
                                        alpha=0.05, write=True))
    assert sig.reachable and sig.null.shape == (39, res.n_targets)
    idx = planted.regions["words"]
    # the smallest attainable p for every planted target; BH over 32 targets with 4 of them at 1/40
    np.testing.assert_allclose(sig.p_values[idx], 1 / 40)
    np.testing.assert_allclose(sig.q_values[idx], 1 / 40 * res.n_targets / np.sum(sig.p_values <= 1 / 40))
    assert np.median(sig.p_values[planted.noise]) > 0.2
    table = sig.region_table.set_index("region")
    assert table.loc["words", "p_region"] == pytest.approx(1 / 40) and table.loc["words", "q_region"] <= 0.05
    assert table.loc["noise", "p_region"] > 0.05
    back = EncodingResult.load(path)
    np.testing.assert_array_equal(back.p_values, sig.p_values)
    np.testing.assert_array_equal(back.q_values, sig.q_values)
    assert back.provenance["significance"]["n_perm"] == 39
    assert back.reliable().sum() == (back.q_values <= 0.05).sum()
    assert "targets significant" in sig.message


def test_significance_says_when_it_cannot_be_reached(planted):
    X = {"words": planted.X["words"]}
    res = _fit(X, planted.Y, tr_s=planted.tr_s)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sig = significance(res, X, planted.Y, n_perm=9)
    assert not sig.reachable and "cannot be reached by construction" in sig.message
    assert "smallest attainable p is 0.1" in sig.message
    # few distinct orderings: two runs of 30 TRs in 10-TR blocks -> (3!)^2 = 36 orderings
    assert n_distinct_permutations([30, 30], "block", 10) == 36
    assert n_distinct_permutations([100], "circular", min_shift_trs=10) == 82


def test_alpha_edge_warning_counts_reliable_targets_only_and_summaries():
    rng = np.random.default_rng(0)
    X = [rng.standard_normal((120, 3)).astype(np.float32) for _ in range(3)]
    Y = [np.c_[x @ rng.standard_normal((3, 2)) + 0.5 * rng.standard_normal((120, 2)),
               rng.standard_normal((120, 30))].astype(np.float32) for x in X]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = fit_encoding(X, Y, delays=[0], alphas=np.logspace(-1, 2, 4))
    edge_warnings = [w for w in caught if "edge of the grid" in str(w.message)]
    # the noise targets choose the largest alpha; they are not counted (nor warned about)
    assert res.alpha_on_edge[2:].sum() > 10
    assert len(edge_warnings) <= 1
    if edge_warnings:
        assert str(edge_warnings[0].message).startswith(f"{int(res.alpha_on_edge[:2].sum())} of 2 reliably")
    st = res.summary_stats()
    thr = reliable_threshold(120)
    assert st["n_reliable"] == int((res.scores > thr).sum()) == 2
    assert st["median_r_reliable"] == pytest.approx(np.median(res.scores[res.scores > thr]))
    assert st["mean_r"] == pytest.approx(res.scores.mean())
    assert "reliable" in res.summary()
