"""Folder layouts -> Project: a tiny Algonauts-2025-shaped folder and a tiny BIDS/fMRIPrep folder."""

import json
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest

from engine.errors import DataError
from engine.io import fmri
from engine.importers import discover_bids, open_algonauts_folder
from engine.io.algonauts import ALGONAUTS_TR_S, episode_for_key
from engine.io.bids import parse_entities
from engine.project import Project

FRIENDS = "sub-{s}_task-friends_space-MNI152NLin2009cAsym_atlas-Schaefer18_parcel-1000Par7Net_desc-s123456_bold.h5"
MOVIE10 = "sub-{s}_task-movie10_space-MNI152NLin2009cAsym_atlas-Schaefer18_parcel-1000Par7Net_bold.h5"


def _tiny_mkv(path: Path, n_frames=6):
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 20 * i, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def make_algonauts(root: Path, n_trs=6, with_media=True):
    """sub-01 has everything; sub-02 misses s01e01b (not a known gap); sub-05 misses s04e01a (known gap)."""
    parts = ["s01e01a", "s01e01b", "s04e01a"]
    truth = {}
    for sub, missing in (("01", None), ("02", "s01e01b"), ("05", "s04e01a")):
        func = root / "fmri" / f"sub-{sub}" / "func"
        func.mkdir(parents=True)
        with h5py.File(func / FRIENDS.format(s=sub), "w") as f:
            for k, part in enumerate(parts):
                if part == missing:
                    continue
                key = f"ses-{k + 1:03d}_task-{part}"
                data = np.random.default_rng(int(sub) * 10 + k).normal(size=(n_trs + k, 1000)).astype(np.float32)
                f[key] = data
                truth[(f"sub-{sub}", key)] = data
        with h5py.File(func / MOVIE10.format(s=sub), "w") as f:
            f["ses-005_task-bourne01"] = np.ones((n_trs, 1000), np.float32) * np.arange(n_trs)[:, None]
            f["ses-006_task-figures01_run-1"] = np.zeros((n_trs, 1000), np.float32) + np.arange(1000)
            f["ses-007_task-figures01_run-2"] = np.zeros((n_trs, 1000), np.float32) + np.arange(1000) * 2
        atlas_dir = root / "fmri" / f"sub-{sub}" / "atlas"
        atlas_dir.mkdir()
        nib.save(nib.Nifti1Image(np.zeros((97, 115, 97), np.int16), np.eye(4)),
                 atlas_dir / f"sub-{sub}_space-MNI152NLin2009cAsym_atlas-Schaefer18_parcel-1000Par7Net_desc-dseg_parcellation.nii.gz")
    tr_dir = root / "stimuli" / "transcripts" / "friends" / "s1"
    tr_dir.mkdir(parents=True)
    for part in parts[:2]:
        (tr_dir / f"friends_{part}.tsv").write_text(
            "text_per_tr\twords_per_tr\tonsets_per_tr\tdurations_per_tr\n"
            "hi there\t['hi', 'there']\t[0.1, 0.5]\t[0.3, 0.4]\n")
    if with_media:
        _tiny_mkv(root / "stimuli" / "movies" / "friends" / "s1" / "friends_s01e01a.mkv")
        _tiny_mkv(root / "stimuli" / "movies" / "movie10" / "bourne" / "bourne01.mkv")
    return truth


def test_key_names():
    assert episode_for_key("ses-003_task-s01e02a") == ("friends_s01e02a", None, "003")
    assert episode_for_key("ses-012_task-figures04_run-2") == ("movie10_figures04", 2, "012")
    assert episode_for_key("ses-001_task-bourne01") == ("movie10_bourne01", None, "001")
    with pytest.raises(DataError, match="ses-<n>_task-<part>"):
        episode_for_key("s01e02a")


def test_open_algonauts_folder(tmp_path):
    root = tmp_path / "algonauts_2025.competitors"
    truth = make_algonauts(root)
    project = open_algonauts_folder(root)
    names = [e.name for e in project.episodes]
    assert names == ["friends_s01e01a", "friends_s01e01b", "friends_s04e01a", "movie10_bourne01", "movie10_figures01"]
    ep = project.episode("friends_s01e01a")
    assert ep.video == "stimuli/movies/friends/s1/friends_s01e01a.mkv"
    assert ep.words == "stimuli/transcripts/friends/s1/friends_s01e01a.tsv"
    assert project.episode("movie10_bourne01").video == "stimuli/movies/movie10/bourne/bourne01.mkv"
    # runs: 3 friends + 3 movie10 for sub-01, 2 + 3 for sub-02 and sub-05
    assert len(project.runs) == 6 + 5 + 5
    assert {r.tr_s for r in project.runs} == {ALGONAUTS_TR_S} and {r.space for r in project.runs} == {"parcels"}
    assert len(project.runs_for("movie10_figures01")) == 6          # 2 repeats x 3 subjects
    assert all(not Path(r.path).is_absolute() for r in project.runs)
    missing = {(m["subject"], m["episode"]): m["known"] for m in project.extra["missing_runs"]}
    assert missing == {("sub-02", "friends_s01e01b"): False, ("sub-05", "friends_s04e01a"): True}
    assert len(project.atlases) == 3 and project.atlases[0].space == "MNI152NLin2009cAsym"
    assert project.extra["episodes_without_video"] == ["friends_s01e01b", "friends_s04e01a", "movie10_figures01"]
    # each run loads to exactly what the HDF5 holds, paired by its part name
    ref = next(r for r in project.runs if r.subject == "sub-02" and r.episode == "friends_s04e01a")
    run = fmri.load_run(ref, project)
    assert np.array_equal(run.data, truth[("sub-02", "ses-003_task-s04e01a")])
    assert run.n_trs == 8 and run.tr_s == 1.49 and run.subject == "sub-02"
    # the project saves with relative paths and reopens from elsewhere
    saved = project.save(root / "friends.alignscope.json")
    assert str(tmp_path) not in saved.read_text()
    moved = tmp_path / "moved"
    root.rename(moved)
    again = Project.load(moved / "friends.alignscope.json")
    assert np.array_equal(fmri.load_run(again.runs[0], again).data, fmri.load_run(again.runs[0], again).data)
    assert again.path(again.runs[0].path).exists()


def test_algonauts_problems(tmp_path):
    root = tmp_path / "a"
    make_algonauts(root, with_media=False)
    with h5py.File(root / "fmri" / "sub-01" / "func" / FRIENDS.format(s="01"), "a") as f:
        f["ses-009_task-s01e02a"] = np.zeros((5, 999), np.float32)
        f["notes"] = np.zeros(3)
    (root / "fmri" / "sub-03" / "func").mkdir(parents=True)
    (root / "fmri" / "sub-03" / "func" / FRIENDS.format(s="03")).write_bytes(b"\x89HDF\r\n\x1a\n truncated")
    project = open_algonauts_folder(root)
    problems = "\n".join(project.extra["problems"])
    assert "ses-009_task-s01e02a: expected shape (n_trs, 1000), found (5, 999)" in problems
    assert "notes" in problems and "sub-03" in problems and "readable HDF5" in problems
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="fmri/sub-XX/func"):
        open_algonauts_folder(tmp_path / "empty")


# ---- BIDS / fMRIPrep -----------------------------------------------------------------------
def test_parse_entities():
    e = parse_entities("sub-01_ses-2_task-s01e02a_run-1_space-fsaverage5_hemi-L_bold.func.gii")
    assert e == {"sub": "01", "ses": "2", "task": "s01e02a", "run": "1", "space": "fsaverage5", "hemi": "L",
                 "suffix": "bold", "extension": ".func.gii"}


def test_discover_bids(tmp_path):
    root = tmp_path / "derivatives" / "fmriprep"
    func = root / "sub-01" / "ses-1" / "func"
    func.mkdir(parents=True)
    (root / "dataset_description.json").write_text("{}")
    rng = np.random.default_rng(0)
    # volumetric run with header TR 2.0 and a task-level sidecar saying 1.49 (sidecar wins)
    img = nib.Nifti1Image(rng.normal(size=(4, 4, 4, 10)).astype(np.float32), np.eye(4))
    img.header.set_zooms((1, 1, 1, 2.0))
    vol = func / "sub-01_ses-1_task-s01e02a_run-1_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz"
    nib.save(img, vol)
    (root / "task-s01e02a_bold.json").write_text(json.dumps({"RepetitionTime": 1.49}))
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.uint8), np.eye(4)),
             func / "sub-01_ses-1_task-s01e02a_run-1_space-MNI152NLin2009cAsym_desc-brain_mask.nii.gz")
    (func / "sub-01_ses-1_task-s01e02a_run-1_desc-confounds_timeseries.tsv").write_text(
        "trans_x\ttrans_y\ttrans_z\trot_x\trot_y\trot_z\n" + "\n".join("\t".join(["0.1"] * 6) for _ in range(10)))
    # a second task with header TR only, and a GIFTI pair
    img2 = nib.Nifti1Image(rng.normal(size=(4, 4, 4, 12)).astype(np.float32), np.eye(4))
    img2.header.set_zooms((1, 1, 1, 0.8))
    nib.save(img2, func / "sub-01_ses-1_task-rest_space-T1w_desc-preproc_bold.nii.gz")
    for h in "LR":
        arrays = [nib.gifti.GiftiDataArray(rng.normal(size=10242).astype(np.float32)) for _ in range(10)]
        nib.save(nib.GiftiImage(darrays=arrays),
                 func / f"sub-01_ses-1_task-s01e02a_run-1_space-fsaverage5_hemi-{h}_bold.func.gii")
    # a lone left hemisphere: reported, not fatal
    nib.save(nib.GiftiImage(darrays=arrays),
             func / "sub-01_ses-1_task-s01e02a_run-2_space-fsaverage5_hemi-L_bold.func.gii")
    project = discover_bids(root)
    runs = {r.name: r for r in project.runs}
    assert set(runs) == {"sub-01_ses-1_task-s01e02a_run-1_space-MNI152NLin2009cAsym_desc-preproc",
                         "sub-01_ses-1_task-rest_space-T1w_desc-preproc",
                         "sub-01_ses-1_task-s01e02a_run-1_space-fsaverage5"}
    v = runs["sub-01_ses-1_task-s01e02a_run-1_space-MNI152NLin2009cAsym_desc-preproc"]
    assert v.tr_s == 1.49 and v.space == "volume" and v.episode == "s01e02a"
    assert v.confounds.endswith("desc-confounds_timeseries.tsv") and v.mask.endswith("desc-brain_mask.nii.gz")
    assert runs["sub-01_ses-1_task-rest_space-T1w_desc-preproc"].tr_s == pytest.approx(0.8)
    g = runs["sub-01_ses-1_task-s01e02a_run-1_space-fsaverage5"]
    assert g.space == "fsaverage5" and g.tr_s == 1.49
    assert [e.name for e in project.episodes] == ["rest", "s01e02a"]
    assert any("run-2" in p and "hemi-R" in p for p in project.extra["problems"])
    # the runs load: GIFTI pair to 20484 vertices, volume through its mask with confounds regressed
    assert fmri.load_run(g, project).data.shape == (10, 20484)
    assert g.confounds == v.confounds                        # one confounds table per run, whatever the space
    run = fmri.load_run(g, project, preprocessing={"confounds": ["motion"]})
    assert run.data.shape == (10, 20484) and run.meta["preprocessing"][0]["step"] == "confound_regression"
    # TR override
    assert {r.tr_s for r in discover_bids(root, tr_s=2.5).runs} == {2.5}
    assert len(discover_bids(root, space="fsaverage5").runs) == 1
    anat = root / "sub-01" / "ses-1" / "anat"
    anat.mkdir()
    with pytest.raises(DataError, match="sub-\\*_bold"):
        discover_bids(anat)


def test_subject_atlas_projected_to_fsaverage5(tmp_path):
    from engine.importers.algonauts import subject_atlas

    root = tmp_path / "a"
    make_algonauts(root, with_media=False)
    # a Schaefer-like volume on the 2 mm MNI grid (97 x 115 x 97): left labels 1..500 by y, right 501..1000
    affine = np.array([[2, 0, 0, -96], [0, 2, 0, -132], [0, 0, 2, -78], [0, 0, 0, 1]], float)
    ijk = np.indices((97, 115, 97)).reshape(3, -1).T
    xyz = np.c_[ijk, np.ones(len(ijk))] @ affine.T
    y_bin = np.clip(((xyz[:, 1] + 110) / 180 * 500).astype(int), 0, 499)
    lab = np.where(xyz[:, 0] < 0, 1 + y_bin, 501 + y_bin).reshape(97, 115, 97).astype(np.int16)
    path = root / "fmri" / "sub-01" / "atlas" / \
        "sub-01_space-MNI152NLin2009cAsym_atlas-Schaefer18_parcel-1000Par7Net_desc-dseg_parcellation.nii.gz"
    nib.save(nib.Nifti1Image(lab, affine), path)
    project = open_algonauts_folder(root)
    atlas = subject_atlas(project, "sub-01", cache_dir=tmp_path / "cache")
    assert atlas.n_parcels == 1000 and atlas.n_vertices == 20484
    left, right = atlas.labels[:10242], atlas.labels[10242:]
    assert (left[left > 0] <= 500).mean() > 0.97 and (right[right > 0] > 500).mean() > 0.97
    # a run's 1000 columns paint onto the surface through it
    run = fmri.load_run(project.runs[0], project)
    painted = atlas.parcel_to_vertex(run.data[0])
    v = int(np.flatnonzero(atlas.labels > 0)[0])
    assert painted[v] == run.data[0, atlas.labels[v] - 1]
    with pytest.raises(DataError, match="sub-09_schaefer1000"):
        subject_atlas(project, "sub-09")
