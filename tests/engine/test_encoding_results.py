"""EncodingResult: HDF5 round trip, atomic writes, refusal of foreign files, scores."""

import os
import warnings

import h5py
import numpy as np
import pytest

from engine.encoding.fit import fit_encoding
from engine.encoding.results import EncodingResult, pearson_r, r2_score
from engine.errors import DataError, SchemaError


def _result():
    rng = np.random.default_rng(0)
    X = [rng.standard_normal((40, 3)).astype(np.float32) for _ in range(3)]
    Y = [x @ rng.standard_normal((3, 5)).astype(np.float32) + rng.standard_normal((40, 5)).astype(np.float32)
         for x in X]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_encoding({"lowlevel": X}, Y, delays=(0, 1), alphas=np.logspace(-1, 3, 5),
                            run_names=["s01e01a", "s01e01b", "s01e02a"],
                            provenance={"data": {"brain": "/data/sub-01.h5"}})


def test_round_trip(tmp_path):
    res = _result()
    path = res.save(tmp_path / "out" / "enc.h5")
    assert os.listdir(tmp_path / "out") == ["enc.h5"]   # no temporary file left behind
    back = EncodingResult.load(path)
    for name in ("scores", "alphas", "r2", "scores_per_fold", "alphas_per_fold", "alpha_on_edge",
                 "alpha_grid"):
        np.testing.assert_array_equal(getattr(back, name), getattr(res, name))
    for a, b in zip(back.predictions + back.measured, res.predictions + res.measured):
        np.testing.assert_array_equal(a, b)
    assert back.run_names == ["s01e01a", "s01e01b", "s01e02a"]
    assert back.space == "lowlevel" and back.feature_names == ["lowlevel"]
    assert back.delays == [0, 1] and back.folds == [[0], [1], [2]]
    assert back.provenance["data"] == {"brain": "/data/sub-01.h5"}
    assert back.provenance["alphas_grid"] == pytest.approx(np.logspace(-1, 3, 5).tolist())
    assert "numpy" in back.provenance["libraries"]
    assert back.provenance["input_hashes"]["brain_sha1"] == res.provenance["input_hashes"]["brain_sha1"]
    assert "mean r" in back.summary()


def test_save_replaces_atomically(tmp_path):
    res = _result()
    path = tmp_path / "enc.h5"
    res.save(path)
    res.scores = res.scores + 1
    res.save(path)
    np.testing.assert_allclose(EncodingResult.load(path).scores, res.scores)


def test_refuses_foreign_and_newer_files(tmp_path):
    with pytest.raises(DataError, match="existing"):
        EncodingResult.load(tmp_path / "missing.h5")
    with h5py.File(tmp_path / "other.h5", "w") as h:
        h["x"] = 1
    with pytest.raises(SchemaError, match="kind"):
        EncodingResult.load(tmp_path / "other.h5")
    path = _result().save(tmp_path / "new.h5")
    with h5py.File(path, "a") as h:
        h.attrs["schema_version"] = 99
    with pytest.raises(SchemaError, match="newer"):
        EncodingResult.load(path)
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(DataError, match="HDF5"):
        EncodingResult.load(tmp_path / "text.h5")


def test_pearson_and_r2_match_references():
    from sklearn.metrics import r2_score as sk_r2

    rng = np.random.default_rng(1)
    a = rng.standard_normal((50, 4))
    b = a + rng.standard_normal((50, 4))
    b[:, 3] = 1.0  # constant prediction: r is 0, not NaN
    r = pearson_r(a, b)
    for k in range(3):
        assert r[k] == pytest.approx(np.corrcoef(a[:, k], b[:, k])[0, 1], abs=1e-12)
    assert r[3] == 0
    np.testing.assert_allclose(r2_score(a, b), sk_r2(a, b, multioutput="raw_values"), atol=1e-12)
