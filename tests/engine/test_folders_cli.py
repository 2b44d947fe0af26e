"""From a fresh data folder to a saved fit with command-line commands only (``main.main``, the
entry point of ``python main.py``), on generated copies of the Algonauts 2025 release and of a
BIDS dataset with an fMRIPrep derivative. The brain data carry planted targets that follow the
video's luminance: the fit must find them."""

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import main as cli
from tests.engine.folder_layouts import TR_S, make_fmriprep, make_release

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _caches(tmp_path, monkeypatch):
    monkeypatch.setenv("ALIGNSCOPE_CACHE", str(tmp_path / "feature_cache"))
    monkeypatch.setenv("ALIGNSCOPE_ATLAS_CACHE", str(tmp_path / "atlas_cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    return code, out.out, out.err


def _planted_vs_rest(result_path, n_planted):
    with h5py.File(result_path, "r") as h:
        scores = h["scores"][()]
        prov = json.loads(h.attrs["provenance"])
    return float(np.mean(scores[:n_planted])), float(np.mean(scores[n_planted:])), prov


def test_release_folder_to_a_saved_fit(tmp_path, capsys):
    root = tmp_path / "algonauts_2025.competitors"
    truth = make_release(root)
    code, out, _ = run(capsys, "project", "init", root)
    project_file = root / f"{root.name}.alignscope.json"
    assert code == 0 and project_file.is_file() and "TR: 1.49 s" in out and "held out" in out
    code, out, _ = run(capsys, "info", root, "--json")
    assert code == 0
    rep = json.loads(out)
    pairing = {r["episode"]: r["subjects"] for r in rep["pairing"]}
    assert pairing["friends_s04e01a"]["sub-05"]["status"] == "known missing"
    assert pairing["friends_s07e01a"]["sub-01"]["status"] == "held out"
    # features: one episode from its files alone (its video is one TR longer than the run), two from the project
    feats = tmp_path / "feats"
    ep = "friends_s01e01a"
    code, out, _ = run(capsys, "extract", root / "stimuli/movies/friends/s1" / f"{ep}.mkv",
                       "--words", root / "stimuli/transcripts/friends/s1" / f"{ep}.tsv", "--tr", TR_S,
                       "--model", "lowlevel", "--layers", "luminance", "--out", feats / f"{ep}.h5", "--no-progress")
    assert code == 0 and f"{truth['n_trs']['s01e01a'] + 1} TRs" in out
    for ep in ("friends_s01e01b", "friends_s04e01a"):
        code, out, err = run(capsys, "extract", "--project", root, "--episode", ep, "--model", "lowlevel",
                             "--layers", "luminance", "--out", feats / f"{ep}.h5", "--no-progress")
        assert code == 0, err
    code, out, _ = run(capsys, "info", feats / "friends_s01e01a.h5", "--json")
    rep = json.loads(out)
    assert code == 0 and rep["kind"] == "features" and "n_targets" not in rep["facts"]
    result = root / "results" / "luminance_sub01.h5"
    code, out, err = run(capsys, "encode", "--project", root, "--features", feats, "--layer", "luminance",
                         "--subjects", "sub-01", "--out", result, "--no-progress")
    assert code == 0, err
    planted, rest, prov = _planted_vs_rest(result, truth["n_planted"])
    assert planted > 0.8 and abs(rest) < 0.1, (planted, rest)
    assert prov["tr_s"] == TR_S
    assert any("trimmed to 24 TRs" in w for w in prov["warnings"])          # the one-TR mismatch, recorded
    code, out, _ = run(capsys, "info", result)
    assert code == 0 and "[encoding result]" in out


def test_bids_folder_to_a_saved_fit(tmp_path, capsys):
    root = tmp_path / "friends-mini"
    truth = make_fmriprep(root, n_trs=40, nuisance=2.0)     # planted targets also carry head motion (trans_x)
    deriv = truth["deriv"]
    code, out, err = run(capsys, "info", deriv)
    assert code == 0, out
    assert "tr_from: ['sidecar task-friends_bold.json']" in out and "schaefer400" in out
    # no project init: the fit gives the folder a project file itself
    code, out, err = run(capsys, "encode", "--project", deriv, "--model", "lowlevel", "--layers", "luminance",
                         "--no-progress")
    assert code == 0, err
    project = json.loads((deriv / "fmriprep.alignscope.json").read_text())
    (name, rel), = project["results"].items()
    raw, rest, prov = _planted_vs_rest(deriv / rel, truth["n_planted"])
    assert 0.2 < raw < 0.7 and abs(rest) < 0.05, (raw, rest)            # motion hides much of the signal
    assert prov["tr_s"] == 2.0
    # the same fit with the motion confounds regressed out (n/a first rows and all) finds it
    code, out, err = run(capsys, "encode", "--project", deriv, "--model", "lowlevel", "--layers", "luminance",
                         "--confounds", "motion6", "--name", "luminance, motion6 out", "--no-progress")
    assert code == 0, err
    project = json.loads((deriv / "fmriprep.alignscope.json").read_text())
    cleaned, rest, prov = _planted_vs_rest(deriv / project["results"]["luminance, motion6 out"], truth["n_planted"])
    assert cleaned > 0.8 and cleaned > raw + 0.2 and abs(rest) < 0.05, (raw, cleaned, rest)
    assert prov["preprocessing"]["brain"]["confounds"] == "motion6"


def test_project_init_as_a_command(tmp_path):
    root = tmp_path / "rel"
    make_release(root, media=False, atlas=False)
    out_file = tmp_path / "elsewhere" / "study.alignscope.json"
    proc = subprocess.run([sys.executable, str(REPO / "main.py"), "project", "init", str(root), "--out",
                           str(out_file)], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    saved = json.loads(out_file.read_text())
    assert saved["runs"][0]["path"].startswith("../rel/fmri/")               # relative to the file's folder
    from engine.importers import load_project

    project = load_project(out_file)
    assert len(project.runs) == 5 and all(project.path(r.path).is_file() for r in project.runs)
    again = subprocess.run([sys.executable, str(REPO / "main.py"), "project", "init", str(root), "--out",
                            str(out_file)], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert again.returncode == 2 and "--force" in again.stderr and "Traceback" not in again.stderr


def test_project_init_atlas_choice_and_rebuild_keeps_results(tmp_path, capsys):
    from engine.importers import detect_layout, ensure_project_file, load_project

    root = tmp_path / "friends-mini"
    truth = make_fmriprep(root, n_trs=8, media=False)
    deriv = truth["deriv"]
    before = sorted(p.name for p in deriv.rglob("*"))
    assert load_project(deriv).atlases[0].name == "schaefer400" and sorted(p.name for p in deriv.rglob("*")) == before
    path = ensure_project_file(deriv)                     # a result needs a home: written once
    assert path == deriv / "fmriprep.alignscope.json" and detect_layout(deriv) == "project"
    assert ensure_project_file(deriv) == path and ensure_project_file(path) == path
    project = load_project(path)
    project.results["fit"] = "results/fit.h5"
    project.save(path)
    code, out, err = run(capsys, "project", "init", deriv)
    assert code == 2 and "--force" in err
    code, out, err = run(capsys, "project", "init", deriv, "--force", "--atlas", "schaefer200")
    assert code == 0, err
    again = load_project(path)
    assert again.results == {"fit": "results/fit.h5"}                           # rebuilt, fits kept
    assert [(a.name, a.path, a.space) for a in again.atlases] == [("schaefer200", "builtin:schaefer200", "fsaverage5")]
    code, out, err = run(capsys, "project", "init", deriv, "--force", "--atlas", "schaefer9999")
    assert code == 2 and "schaefer400" in err and load_project(path).atlases[0].name == "schaefer200"   # unchanged


def test_trim_tolerance_flag_decides_between_trim_and_refusal(tmp_path, capsys):
    """Runs one TR apart are trimmed (recorded); three apart are refused naming --trim-tolerance-trs;
    the flag lets the user accept a larger, expected difference."""
    import numpy as np

    from engine.encoding.results import EncodingResult
    from main import main

    rng = np.random.default_rng(0)
    feats, brains = [], []
    for i, (nx, ny) in enumerate([(60, 60), (61, 60), (60, 57)]):
        x = rng.standard_normal((nx, 2)).astype(np.float32)
        f = tmp_path / f"f{i}.npy"
        np.save(f, x)
        b = tmp_path / f"b{i}.npy"
        np.save(b, (x[:ny] @ rng.standard_normal((2, 5)) + rng.standard_normal((ny, 5))).astype(np.float32))
        feats.append(str(f))
        brains.append(str(b))
    out = tmp_path / "r.h5"
    args = ["encode", "--features", *feats, "--brain", *brains, "--tr", "2", "--delays", "0", "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "60 feature rows vs 57 brain TRs" in err and "--trim-tolerance-trs 3" in err
    assert not out.exists()
    assert main(args + ["--trim-tolerance-trs", "3"]) == 0
    res = EncodingResult.load(out)
    assert [p.shape[0] for p in res.predictions] == [60, 60, 57]
    assert any("trimmed to 60 TRs" in w for w in res.warnings) and any("trimmed to 57 TRs" in w for w in res.warnings)
