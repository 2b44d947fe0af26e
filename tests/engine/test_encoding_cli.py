"""``main.py encode``: files in, EncodingResult out, the same numbers as fit_encoding."""

import subprocess
import sys
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

import main
from engine.encoding import preprocess as pp
from engine.encoding.fit import fit_encoding
from engine.encoding.results import EncodingResult

ROOT = Path(__file__).resolve().parents[2]


def _data(tmp_path, n_runs=3, n_trs=80):
    rng = np.random.default_rng(0)
    X = [rng.standard_normal((n_trs, 4)).astype(np.float32) for _ in range(n_runs)]
    L = [rng.standard_normal((n_trs, 3)).astype(np.float32) for _ in range(n_runs)]
    W = rng.standard_normal((4, 6)).astype(np.float32)
    Y = [(pp.delay_runs([x], [2])[0] @ W + rng.standard_normal((n_trs, 6))).astype(np.float32) for x in X]
    return X, L, Y


def test_npy_files_match_fit_encoding(tmp_path, capsys):
    X, _, Y = _data(tmp_path)
    feats, brains = [], []
    for i, (x, y) in enumerate(zip(X, Y)):
        np.save(tmp_path / f"feat{i}.npy", x)
        np.save(tmp_path / f"run{i}.npy", y)
        feats.append(str(tmp_path / f"feat{i}.npy"))
        brains.append(str(tmp_path / f"run{i}.npy"))
    out = tmp_path / "enc.h5"
    rc = main.main(["encode", "--features", *feats, "--brain", *brains, "--delays", "1", "2", "3",
                    "--alphas", "0.1:1e4:6", "--out", str(out), "--no-progress", "--top", "3"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "mean r =" in text and "top targets" in text and str(out) in text
    res = EncodingResult.load(out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = fit_encoding(X, Y, delays=(1, 2, 3), alphas=np.logspace(-1, 4, 6))
    np.testing.assert_allclose(res.scores, ref.scores, atol=1e-6)
    assert res.run_names == ["run0", "run1", "run2"]
    assert len(res.provenance["data"]["brain_sha256"]) == 3
    assert res.scores.min() > 0.5


def test_h5_layers_algonauts_brain_and_per_layer(tmp_path, capsys):
    X, L, Y = _data(tmp_path)
    feats = []
    for i, (x, l) in enumerate(zip(X, L)):
        path = tmp_path / f"ep{i}.h5"
        with h5py.File(path, "w") as h:   # the layout `alignscope extract` writes
            h["features/vision"] = x
            h["features/text"] = l
        feats.append(str(path))
    with h5py.File(tmp_path / "sub-01_bold.h5", "w") as h:
        for i, y in enumerate(Y):
            h[f"ses-001_task-s01e0{i}a"] = np.pad(y, ((0, 0), (0, 0)))
    names = [f"ses-001_task-s01e0{i}a" for i in range(3)]
    out = tmp_path / "res.h5"
    rc = main.main(["encode", "--features", *feats, "--brain", str(tmp_path / "sub-01_bold.h5"),
                    "--brain-datasets", *names, "--layer", "vision", "--layer", "text", "--per-layer",
                    "--delays", "2", "--drop-edges", "2", "1", "--alphas", "0.1,10,1000", "--out", str(out),
                    "--no-progress"])
    assert rc == 0
    vision = EncodingResult.load(tmp_path / "res-vision.h5")
    text = EncodingResult.load(tmp_path / "res-text.h5")
    assert vision.run_names == names and vision.space == "vision"
    assert vision.predictions[0].shape == (77, 6)
    assert vision.scores.mean() > 0.5 > text.scores.mean()     # only vision drives the targets
    # a missing layer is a user error with the layers that exist
    rc = main.main(["encode", "--features", *feats, "--brain", str(tmp_path / "sub-01_bold.h5"),
                    "--brain-datasets", *names, "--layer", "audio", "--out", str(out), "--no-progress"])
    assert rc == 2
    assert "text" in capsys.readouterr().err


def test_mismatched_run_count_is_reported(tmp_path):
    X, _, Y = _data(tmp_path)
    np.save(tmp_path / "f.npy", X[0])
    for i, y in enumerate(Y):
        np.save(tmp_path / f"r{i}.npy", y)
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "encode", "--features", str(tmp_path / "f.npy"),
                           "--brain", *[str(tmp_path / f"r{i}.npy") for i in range(3)], "--out",
                           str(tmp_path / "o.h5")], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert "expected 3 (one per brain run), found 1" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_project_runs_with_feature_folder(tmp_path):
    from engine.project import Episode, Project, RunRef

    X, _, Y = _data(tmp_path)
    (tmp_path / "brain").mkdir()
    (tmp_path / "feats").mkdir()
    project = Project(name="study")
    for i, (x, y) in enumerate(zip(X, Y)):
        ep = f"s01e0{i + 1}a"
        np.save(tmp_path / "brain" / f"run{i}.npy", y)
        with h5py.File(tmp_path / "feats" / f"{ep}.h5", "w") as h:
            h["features/layer_1"] = x
        project.episodes.append(Episode(name=ep))
        project.runs.append(RunRef(name=f"sub-01_{ep}", path=f"brain/run{i}.npy", episode=ep, space="parcels"))
    pfile = project.save(tmp_path)
    out = tmp_path / "enc.h5"
    rc = main.main(["encode", "--project", str(pfile), "--features", str(tmp_path / "feats"), "--delays", "1", "2",
                    "3", "--alphas", "0.1:1e4:6", "--out", str(out), "--no-progress"])
    assert rc == 0
    res = EncodingResult.load(out)
    assert res.run_names == ["sub-01_s01e01a", "sub-01_s01e02a", "sub-01_s01e03a"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = fit_encoding(X, Y, delays=(1, 2, 3), alphas=np.logspace(-1, 4, 6), tr_s=1.49,
                           stimulus_ids=[f"s01e0{i + 1}a" for i in range(3)])   # the runs' TR and episodes
    np.testing.assert_allclose(res.scores, ref.scores, atol=1e-5)
    assert res.space == "layer_1"


def test_banded_joint_layers(tmp_path):
    X, L, Y = _data(tmp_path)
    feats = []
    for i, (x, l) in enumerate(zip(X, L)):
        np.savez(tmp_path / f"ep{i}.npz", vision=x, text=l)
        feats.append(str(tmp_path / f"ep{i}.npz"))
        np.save(tmp_path / f"r{i}.npy", Y[i])
    out = tmp_path / "joint.h5"
    rc = main.main(["encode", "--features", *feats, "--brain", *[str(tmp_path / f"r{i}.npy") for i in range(3)],
                    "--banded", "--banded-iter", "6", "--delays", "2", "--alphas", "0.1:1e4:6", "--out", str(out),
                    "--no-progress"])
    assert rc == 0
    res = EncodingResult.load(out)
    assert res.space == "vision+text" and res.space_alphas.shape == (2, 6)
    # the text layer does not drive the targets: it gets the larger penalty
    assert np.median(res.space_alphas[1] / res.space_alphas[0]) > 10


def test_scheduler_local_gives_the_in_process_result(tmp_path, capsys):
    X, _, Y = _data(tmp_path, n_trs=60)
    args = []
    for i, (x, y) in enumerate(zip(X, Y)):
        np.save(tmp_path / f"feat{i}.npy", x)
        np.save(tmp_path / f"run{i}.npy", y)
    feats = [str(tmp_path / f"feat{i}.npy") for i in range(3)]
    brains = [str(tmp_path / f"run{i}.npy") for i in range(3)]
    common = ["encode", "--features", *feats, "--brain", *brains, "--delays", "1", "2",
              "--alphas", "0.1:1e4:6", "--n-targets-batch", "2", "--no-progress"]
    assert main.main(common + ["--out", str(tmp_path / "local.h5")]) == 0
    assert main.main(common + ["--scheduler", "local", "--chunks", "3", "--workers", "2",
                               "--out", str(tmp_path / "dask.h5")]) == 0
    a, b = EncodingResult.load(tmp_path / "local.h5"), EncodingResult.load(tmp_path / "dask.h5")
    np.testing.assert_array_equal(a.alphas, b.alphas)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-6)
    assert b.provenance["distributed"]["n_chunks"] == 3


def test_fit_flags_resolve_print_and_are_stored(tmp_path, capsys):
    """Delays in seconds become TRs at the data's TR; every flag lands in FitOptions; the result equals
    fit_encoding with those options."""
    from engine.encoding.options import FitOptions

    X, L, Y = _data(tmp_path)
    feats, brains = [], []
    for i, (x, l, y) in enumerate(zip(X, L, Y)):
        np.savez(tmp_path / f"f{i}.npz", vision=x, text=l)
        np.save(tmp_path / f"r{i}.npy", y)
        feats.append(str(tmp_path / f"f{i}.npz"))
        brains.append(str(tmp_path / f"r{i}.npy"))
    out = tmp_path / "enc.h5"
    rc = main.main(["encode", "--features", *feats, "--brain", *brains, "--tr", "1.5", "--layer", "vision",
                    "--alphas", "0.1:1e4:6", "--out", str(out), "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "delays 1-7 TRs (1.50-10.50 s at TR 1.5 s)" in text        # the default 2-10 s window
    res = EncodingResult.load(out)
    assert res.delays == [1, 2, 3, 4, 5, 6, 7] and res.delays_s == pytest.approx([1.5 * d for d in range(1, 8)])
    assert res.cv_label and res.cv_label in text
    assert res.provenance["fit_options"]["detrend"] == 1 and res.provenance["fit_options"]["delays_s"] == [2, 10]

    rc = main.main(["encode", "--features", *feats, "--brain", *brains, "--tr", "1.5", "--delays-s", "1.5", "4.5",
                    "--detrend", "none", "--high-pass", "100", "--cv", "3", "--inner-cv", "loro", "--joint",
                    "--pca", "2", "--drop-edges", "1", "1", "--alphas", "1,10,100", "--out", str(out),
                    "--no-progress"])
    assert rc == 0
    res = EncodingResult.load(out)
    opts = FitOptions.from_dict(res.provenance["fit_options"])
    assert (opts.delays_s, opts.detrend, opts.high_pass_s, opts.cv, opts.inner_cv, opts.multi_space, opts.pca,
            opts.drop_edges, opts.alphas) == ((1.5, 4.5), None, 100.0, 3, "loro", "joint", 2, (1, 1), [1.0, 10.0, 100.0])
    assert res.delays == [1, 2, 3] and res.space == "vision+text"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = fit_encoding({"vision": X, "text": L}, Y, options=opts, tr_s=1.5)
    np.testing.assert_array_equal(res.scores, ref.scores)
    rc = main.main(["encode", "--features", *feats, "--brain", *brains, "--tr", "1.5", "--detrend", "linear",
                    "--out", str(out), "--no-progress"])
    assert rc == 2 and "--detrend" in capsys.readouterr().err


def test_out_never_replaces_an_input(tmp_path, capsys):
    X, _, Y = _data(tmp_path)
    np.save(tmp_path / "f.npy", X[0])
    np.save(tmp_path / "r.npy", Y[0])
    before = (tmp_path / "f.npy").read_bytes()
    rc = main.main(["encode", "--features", str(tmp_path / "f.npy"), "--brain", str(tmp_path / "r.npy"), "--tr", "2",
                    "--out", str(tmp_path / "f.npy"), "--no-progress"])
    assert rc == 2 and "one of the inputs" in capsys.readouterr().err
    assert (tmp_path / "f.npy").read_bytes() == before
