"""Right answers by default (issue 9), on planted truth the engine's model does not assume.

Data from :mod:`tests.engine.planted`: SPM double-gamma HRF on 0.1 s drivers, AR(1) noise,
drift, raw scanner units, two runs with different stimuli; visual (3), audio envelope (1),
32 mel-like distractors and word rate (1). Only the TR is given to the fit; everything else
is FitOptions' defaults.
"""

import warnings

import numpy as np
import pytest

from engine.encoding.fit import fit_encoding
from engine.encoding.options import FitOptions

from .planted import make_planted

N_NOISE = 100


@pytest.fixture(scope="module")
def planted():
    return make_planted(n_runs=2, n_trs=300, tr_s=1.5, n_noise=N_NOISE, seed=0)


@pytest.fixture(scope="module")
def joint(planted):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_encoding(planted.X, planted.Y, tr_s=planted.tr_s)


def _fit(X, Y, tr_s, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_encoding(X, Y, tr_s=tr_s, **kw)


def test_defaults_are_recorded(planted, joint):
    assert joint.delays == [1, 2, 3, 4, 5, 6, 7]                  # TR 1.5 s: 1.5-10.5 s
    np.testing.assert_allclose(joint.delays_s, np.arange(1, 8) * 1.5)
    assert joint.tr_s == 1.5
    assert joint.cv_label.startswith("auto: 2 runs with distinct stimuli -> leave-one-run-out")
    assert joint.options == FitOptions().to_dict()
    prov = joint.provenance
    assert prov["preprocessing"]["brain"]["detrend_order"] == 1
    assert prov["preprocessing"]["brain"]["high_pass_s"] == 128.0
    assert prov["cv"]["kind"] == "loro" and prov["cv"]["gap_trs"] == 7
    assert "banded ridge" in prov["multi_space"] and set(prov["features"]) == {"visual", "audio", "mel", "words"}
    assert joint.space_alphas.shape == (4, joint.n_targets)
    assert not any("raw scanner units" in w for w in joint.warnings)   # detrended by default


def test_every_planted_region_reaches_08_of_the_oracle_and_noise_is_centred(planted, joint):
    """Default joint fit (all four spaces) vs ridge on the true HRF-convolved regressors, same CV."""
    for region, idx in planted.regions.items():
        oracle = _fit({"true": planted.true_regressors[region]}, planted.Y, planted.tr_s, delays=[0])
        ratio = joint.scores[idx].mean() / oracle.scores[idx].mean()
        assert oracle.scores[idx].mean() > 0.3, region
        assert ratio >= 0.8, (region, ratio)
    assert abs(np.median(joint.scores[planted.noise])) < 0.02


def test_joint_spaces_do_not_dilute(planted, joint):
    """Banded ridge (the default) keeps >= 90% of the single-space r of each planted region,
    where one ridge over the concatenated spaces loses much more for the small spaces."""
    concat = _fit(planted.X, planted.Y, planted.tr_s, multi_space="joint")
    kept = {}
    for region, idx in planted.regions.items():
        single = _fit({region: planted.X[region]}, planted.Y, planted.tr_s)
        kept[region] = joint.scores[idx].mean() / single.scores[idx].mean()
        assert kept[region] >= 0.9, (region, kept[region])
    # the word-rate region (1 column among 37) is what a plain joint ridge dilutes
    idx = planted.regions["words"]
    single = _fit({"words": planted.X["words"]}, planted.Y, planted.tr_s)
    assert concat.scores[idx].mean() / single.scores[idx].mean() < kept["words"] - 0.1
