"""A BIDS dataset with an fMRIPrep derivative through engine.importers: the TR from a sidecar at
the dataset root (or --tr), stim_file pairing, the bundled atlas for surface data, confound sets."""

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from engine.cli.info import _all_problems, inspect_path
from engine.errors import ConfigError, DataError, MismatchError
from engine.importers import confounds_for_runs, episode_tr, load_project, pairing_table
from engine.io.bids import read_confound_set
from tests.engine.folder_layouts import make_fmriprep


@pytest.fixture(scope="module")
def bids(tmp_path_factory):
    root = tmp_path_factory.mktemp("bids") / "friends-mini"
    truth = make_fmriprep(root, n_trs=16, media=True)
    return root, truth


def test_fmriprep_derivative_pairs_runs_through_stim_file(bids):
    root, truth = bids
    project = load_project(truth["deriv"])
    assert project.extra["layout"] == "bids" and not project.extra["problems"]
    runs = sorted(project.runs, key=lambda r: r.name)
    assert [r.episode for r in runs] == ["friends_s01e02a", "friends_s01e02b"]       # from stim_file, not the task
    assert {r.tr_s for r in runs} == {2.0} and {r.space for r in runs} == {"fsaverage5"}
    assert set(project.extra["tr_sources"].values()) == {"sidecar task-friends_bold.json"}   # at the root
    for e in project.episodes:
        assert project.path(e.video) == (root / "stimuli" / "friends" / f"{e.name}.mkv").resolve()
    # surface data get the bundled atlas of their space, as a project field the user can change
    assert [(a.name, a.path, a.space) for a in project.atlases] == [("schaefer400", "builtin:schaefer400", "fsaverage5")]
    rows = pairing_table(project)
    assert [r["subjects"]["sub-01"]["runs"] for r in rows] == [[runs[0].name], [runs[1].name]]
    assert episode_tr(project, "friends_s01e02a") == 2.0


def test_tr_flag_where_the_data_hold_none_and_a_clash_where_they_do(bids, tmp_path):
    root, truth = bids
    bare = tmp_path / "nosidecar"
    make_fmriprep(bare, n_trs=12, media=False, sidecar=False)
    deriv = bare / "derivatives" / "fmriprep"
    rep = inspect_path(deriv)
    problems = " ".join(rep["problems"])
    assert "give --tr" in problems and "tr_s" not in problems        # the flag, not a Python parameter
    rep = inspect_path(deriv, tr_s=1.49)                               # info --tr is honoured
    assert rep["facts"]["tr_s"] == [1.49] and rep["facts"]["tr_from"] == ["--tr"]
    # what is left is the videos this copy lacks, named where they were looked for
    assert [p.split(":")[0] for p in _all_problems(rep)] == [f"sub-01_task-friends_run-{k}_events.tsv" for k in (1, 2)]
    assert all(f"under {bare / 'stimuli'}, found nothing" in p for p in rep["problems"])
    assert {r.tr_s for r in load_project(deriv, tr_s=1.49).runs} == {1.49}
    # a --tr that contradicts the sidecar at the root: reported, naming both
    rep = inspect_path(truth["deriv"], tr_s=1.49)
    assert len(rep["problems"]) == 2 and all("--tr 1.49 s disagrees" in p and "2.0 s" in p for p in rep["problems"])
    with pytest.raises(MismatchError, match="--tr 1.49"):
        episode_tr(load_project(truth["deriv"]), "friends_s01e02a", tr_s=1.49)


def test_header_and_sidecar_that_disagree_are_a_problem(tmp_path):
    func = tmp_path / "ds" / "sub-02" / "func"
    func.mkdir(parents=True)
    img = nib.Nifti1Image(np.random.default_rng(0).normal(size=(3, 3, 3, 12)).astype(np.float32), np.eye(4))
    img.header.set_zooms((2, 2, 2, 2.5))
    img.header.set_xyzt_units("mm", "sec")                             # a header that states its unit
    nib.save(img, func / "sub-02_task-movie_bold.nii.gz")
    (tmp_path / "ds" / "task-movie_bold.json").write_text(json.dumps({"RepetitionTime": 2.0}))
    project = load_project(tmp_path / "ds")
    assert project.runs[0].tr_s == 2.0
    assert any("sidecar task-movie_bold.json says 2.0 s" in p and "header 2.5 s" in p for p in project.extra["problems"])


def _manual_sets(path):
    t = pd.read_csv(path, sep="\t", na_values=["n/a"])
    motion = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]
    base = t[motion].to_numpy()
    deriv = t[[f"{c}_derivative1" for c in motion]].fillna(0.0).to_numpy()
    return base, deriv, t[["white_matter", "csf"]].to_numpy()


def test_confound_sets_with_na_first_rows(bids):
    root, truth = bids
    project = load_project(truth["deriv"])
    runs = sorted(project.runs, key=lambda r: r.name)
    path = project.path(runs[0].confounds)
    assert path.read_text().splitlines()[1].count("n/a") == 6            # fMRIPrep's first derivative row
    base, deriv, wm_csf = _manual_sets(path)
    m6, names6 = read_confound_set(path, "motion6")
    np.testing.assert_allclose(m6, base, rtol=1e-6)
    assert names6 == ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]
    m24, names24 = read_confound_set(path, "motion24+wm_csf")
    assert m24.shape == (16, 26) and len(set(names24)) == 26
    np.testing.assert_allclose(m24[:, 6:12], deriv, rtol=1e-5, atol=1e-7)      # n/a first row -> 0
    assert np.all(m24[0, 6:12] == 0)
    np.testing.assert_allclose(m24[:, 12:18], base ** 2, rtol=1e-5)             # squares computed
    np.testing.assert_allclose(m24[:, 18:24], deriv ** 2, rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(m24[:, 24:], wm_csf, rtol=1e-6)
    # the derivatives fMRIPrep wrote agree with a backward difference of the base columns
    np.testing.assert_allclose(deriv[1:], np.diff(base, axis=0), atol=2e-6)
    per_run = confounds_for_runs(project, runs, "motion24+wm_csf", n_trs=[16, 16])
    assert [c.shape for c in per_run] == [(16, 26), (16, 26)] and per_run[0].dtype == np.float32
    with pytest.raises(MismatchError, match="17 rows"):
        confounds_for_runs(project, runs[:1], "motion6", n_trs=[17])
    with pytest.raises(ConfigError, match="Supported values are: motion6"):
        read_confound_set(path, "motion36")


def test_confounds_with_a_gap_or_missing_are_clear_errors(bids, tmp_path):
    root, truth = bids
    project = load_project(truth["deriv"])
    src = project.path(project.runs[0].confounds)
    lines = src.read_text().splitlines()
    cells = lines[5].split("\t")
    cells[0] = "n/a"
    lines[5] = "\t".join(cells)
    bad = tmp_path / "bad_desc-confounds_timeseries.tsv"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"n/a only in the first rows, found n/a in rows \[4\]"):
        read_confound_set(bad, "motion6")
    ref = project.runs[0]
    ref.confounds = None
    with pytest.raises(DataError, match="drop --confounds"):
        confounds_for_runs(project, [ref], "motion6")
