"""Real data (Brennan et al. 2016, Alice story, one run per subject, TR 2 s, 6 ROIs in raw units).

Word rate + sound power (the release's regressors, already HRF-convolved, so delays [0]),
default preprocessing (linear detrend + 128 s high-pass + z-score of raw units), within-run
blocked CV chosen automatically for one run, then :func:`significance_job` per subject (block
permutations refitting the CV). Group test: the mean over subjects of the left posterior
temporal ROI's held-out r against the mean of the same permutation index over subjects.
"""

import warnings
from pathlib import Path

import numpy as np
import pytest

from engine.encoding.fit import fit_encoding
from engine.encoding.significance import significance

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "alice_brennan2016" / "alice_data_shared"
ROIS = ["LATL", "RATL", "LPTL", "LIPL", "LPreM", "LIFG"]
N_SUBJECTS, N_PERM = 4, 39

pytestmark = pytest.mark.realdata


def _subject(s):
    Y = np.loadtxt(DATA / "6mm" / f"{s}-timecourses.txt")                       # 362 TRs, raw units
    X = np.c_[np.loadtxt(DATA / f"{s}-rate.txt"), np.loadtxt(DATA / f"{s}-sndpwr.txt")]
    return {"word_rate+sound_power": [X]}, [Y]


def test_alice_left_posterior_temporal_above_chance_with_defaults():
    if not (DATA / "6mm").is_dir():
        pytest.skip(f"real data absent: {DATA}")
    subjects = sorted(p.name.split("-")[0] for p in (DATA / "6mm").glob("s*-timecourses.txt"))
    subjects = [s for s in subjects if s != "s33"][:N_SUBJECTS]     # s33 is all zeros in the release
    lptl = ROIS.index("LPTL")
    observed, null = [], []
    for s in subjects:
        X, Y = _subject(s)
        assert np.median(Y[0].mean(0) / Y[0].std(0)) > 10                  # raw scanner units
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = fit_encoding(X, Y, tr_s=2.0, delays=[0])
            sig = significance(res, X, Y, n_perm=N_PERM, method="block", seed=1)
        assert res.provenance["cv"]["kind"] == "within-run"
        assert res.cv_label == "auto: one run -> within-run blocked CV (5 blocks per run, gap 5 TRs)"
        assert res.provenance["preprocessing"]["brain"]["detrend_order"] == 1
        assert not any("raw scanner units" in w for w in res.warnings)
        assert sig.reachable and sig.null.shape == (N_PERM, 6)
        observed.append(res.scores[lptl])
        null.append(sig.null[:, lptl])
    group_r = float(np.mean(observed))
    group_null = np.mean(null, axis=0)                                     # same permutation index
    p_group = (1 + np.sum(group_null >= group_r)) / (1 + N_PERM)
    assert group_r > 0.1
    assert p_group < 0.05, (group_r, np.sort(group_null)[-3:])
