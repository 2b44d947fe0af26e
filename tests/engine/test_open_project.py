"""A user points at a project file, a project folder, an Algonauts 2025 folder or a BIDS folder."""

import json

import nibabel as nib
import numpy as np
import pytest

from engine.errors import DataError
from engine.importers import detect_layout, open_project
from engine.project import Project
from engine.session import ProjectSession
from tests.engine.test_io_algonauts import make_algonauts


def test_layouts_are_told_apart(tmp_path):
    (tmp_path / "alg").mkdir()
    make_algonauts(tmp_path / "alg")
    bids = tmp_path / "bids"
    (bids / "sub-01" / "func").mkdir(parents=True)
    (bids / "dataset_description.json").write_text(json.dumps({"Name": "x", "BIDSVersion": "1.8.0"}))
    img = nib.Nifti1Image(np.zeros((2, 2, 2, 5), np.float32), np.eye(4))
    img.header.set_zooms((2, 2, 2, 1.5))
    nib.save(img, bids / "sub-01" / "func" / "sub-01_task-movie_run-1_bold.nii.gz")
    proj = Project(name="p").save(tmp_path / "proj" / "p.alignscope.json")
    assert detect_layout(tmp_path / "alg") == "algonauts"
    assert detect_layout(bids) == "bids"
    assert detect_layout(proj) == "project" and detect_layout(proj.parent) == "project"
    assert detect_layout(tmp_path / "nothing") is None
    b = open_project(bids)
    assert [r.tr_s for r in b.runs] == [1.5]
    with pytest.raises(DataError, match="Algonauts 2025 folder"):
        open_project(tmp_path / "nothing")


def test_session_opens_an_algonauts_folder_as_it_is(tmp_path):
    truth = make_algonauts(tmp_path)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    s = ProjectSession.open(tmp_path, episode="friends_s01e01a", load_mesh=False)
    assert s.episode.name.endswith("s01e01a")
    run = next(iter(s.runs.values()))
    key = next(k for k in truth if k[0] == run.ref.subject and k[1].endswith("s01e01a"))
    np.testing.assert_allclose(run.data, truth[key], rtol=1e-6)
    assert s.video is not None and s.video.n_frames == 6
    assert sorted(p.name for p in tmp_path.rglob("*")) == before     # opening writes nothing


def test_an_unusable_atlas_is_named_in_the_error(tmp_path):
    from engine.errors import MismatchError

    make_algonauts(tmp_path)          # its subject atlases are all background
    s = ProjectSession.open(tmp_path, episode="friends_s01e01a", load_mesh=False)   # no map: opens
    assert s.runs
    with pytest.raises(MismatchError, match="only background"):
        ProjectSession.open(tmp_path, episode="friends_s01e01a", load_mesh=True)
