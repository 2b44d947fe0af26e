"""The pipeline takes the Gram path for large fits whose folds are whole runs, with the same answer."""

from __future__ import annotations

import numpy as np
import pytest

from engine.encoding.fit import fit_encoding
from engine.encoding.options import FitOptions
from engine.jobs import run_sync
from engine.pipeline import fit as pfit
from engine.pipeline.data import BrainData


def _data(n_runs=4, n_trs=120, n_feat=30, n_targets=40, seed=0):
    rng = np.random.default_rng(seed)
    X = [rng.standard_normal((n_trs, n_feat)).astype(np.float32) for _ in range(n_runs)]
    w = rng.standard_normal((n_feat, n_targets)).astype(np.float32) * (rng.random(n_targets) > 0.5)
    Y = [np.roll(x, 2, axis=0) @ w + 3 * rng.standard_normal((n_trs, n_targets)).astype(np.float32) for x in X]
    return X, Y


def test_large_fits_take_the_gram_path_and_agree(monkeypatch):
    X, Y = _data()
    names = [f"run-{i}" for i in range(len(Y))]
    brain = BrainData(runs=Y, names=names, stimuli=names, subjects=["sub-01"] * len(Y), tr_s=2.0)
    opts = FitOptions(multi_space="joint")
    monkeypatch.setattr(pfit, "GRAM_MIN_CELLS", 1)          # this small problem counts as large
    assert pfit.use_gram({"f": X}, Y, opts, 2.0)
    res = run_sync(pfit.fit_job({"f": X}, brain, opts))
    assert res.provenance["solver"] == "gram"
    ref = fit_encoding({"f": X}, Y, options=opts, tr_s=2.0, run_names=names, stimulus_ids=names,
                       subjects=["sub-01"] * len(Y))
    assert "Gram" not in ref.provenance["method"]
    np.testing.assert_allclose(res.scores, ref.scores, atol=2e-5)
    np.testing.assert_allclose(res.predictions[1], ref.predictions[1], atol=2e-4 * np.abs(ref.predictions[1]).max())


def test_small_banded_or_two_run_fits_stay_direct():
    X, Y = _data(n_runs=2)
    assert not pfit.use_gram({"f": X}, Y, FitOptions(), 2.0)                 # 2 runs: inner folds split a run
    X, Y = _data(n_runs=4)
    assert not pfit.use_gram({"a": X, "b": X}, Y, FitOptions(), 2.0)         # banded: not on the Gram path
    assert not pfit.use_gram({"f": X}, Y, FitOptions(), 2.0)                  # too small to pay
