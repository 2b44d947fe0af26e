"""fit_encoding on real fMRI (Brennan et al. 2016, Alice story listening, 6 ROIs, TR 2 s).

The group-mean ROI signals follow word rate (README: r 0.28-0.43 in-sample); the held-out
encoding scores must be in that range and equal an independent nested CV built from
scikit-learn's GridSearchCV + Ridge on the same folds.
"""

import warnings
from pathlib import Path

import numpy as np
import pytest

from engine.encoding.fit import fit_encoding

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "alice_brennan2016" / "alice_data_shared"
ALPHAS = np.logspace(-2, 4, 7)

pytestmark = pytest.mark.realdata


def _load():
    if not (DATA / "6mm").is_dir():
        pytest.skip(f"real data absent: {DATA}")
    subjects = sorted(p.name.split("-")[0] for p in (DATA / "6mm").glob("s*-timecourses.txt"))
    subjects = [s for s in subjects if s != "s33"]   # all zeros in the original release
    brains = []
    for s in subjects:
        a = np.loadtxt(DATA / "6mm" / f"{s}-timecourses.txt")
        brains.append((a - a.mean(0)) / a.std(0))
    Y = np.mean(brains, 0)                                       # 362 TRs, 6 ROIs
    rate = np.mean([np.loadtxt(DATA / f"{s}-rate.txt") for s in subjects], 0)
    power = np.mean([np.loadtxt(DATA / f"{s}-sndpwr.txt") for s in subjects], 0)
    X = np.c_[rate, power]                                       # HRF-convolved already
    segments = np.array_split(np.arange(len(Y)), 4)              # 4 "runs" of ~90 TRs
    return [X[s].astype(np.float32) for s in segments], [Y[s].astype(np.float32) for s in segments]


def test_alice_word_rate_encoding_matches_sklearn_nested_cv():
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import GridSearchCV, PredefinedSplit

    X_runs, Y_runs = _load()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # z-score only (no detrend), as the scikit-learn reference below
        res = fit_encoding(X_runs, Y_runs, delays=(0,), alphas=ALPHAS, detrend=None)
    assert res.scores.shape == (6,)
    assert res.scores.min() > 0.25 and res.scores.max() < 0.6

    z = lambda a: (a - a.mean(0)) / a.std(0)  # noqa: E731
    Xz, Yz = [z(x.astype(np.float64)) for x in X_runs], [z(y.astype(np.float64)) for y in Y_runs]
    for test in range(4):
        train = [i for i in range(4) if i != test]
        groups = np.concatenate([np.full(len(Yz[i]), k) for k, i in enumerate(train)])
        Xtr, Ytr = np.concatenate([Xz[i] for i in train]), np.concatenate([Yz[i] for i in train])
        for t in range(6):
            search = GridSearchCV(Ridge(fit_intercept=False), {"alpha": ALPHAS}, cv=PredefinedSplit(groups),
                                  scoring="neg_mean_squared_error").fit(Xtr, Ytr[:, t])
            assert res.alphas_per_fold[test, t] == pytest.approx(search.best_params_["alpha"])
            pred = search.predict(Xz[test])
            np.testing.assert_allclose(res.predictions[test][:, t], pred, atol=1e-4)
            r = np.corrcoef(pred, Yz[test][:, t])[0, 1]
            assert res.scores_per_fold[test, t] == pytest.approx(r, abs=1e-4)
