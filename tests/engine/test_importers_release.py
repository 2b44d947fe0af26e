"""The Algonauts 2025 release layout through engine.importers: pairing, held-out and known-missing
runs, the TR, the one-TR transcript mismatch, and the subject atlas painted on fsaverage5."""

import warnings

import numpy as np
import pytest

from engine.errors import MismatchError
from engine.importers import (episode_tr, format_pairing_table, load_project, pairing_table, run_surface_atlas)
from engine.io import fmri
from engine.io.text import read_algonauts_transcript
from engine.timeline import AlignmentWarning, align_lengths, trim_to_common
from tests.engine.folder_layouts import make_release, schaefer_like_labels


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    root = tmp_path_factory.mktemp("rel") / "algonauts_2025.competitors"
    truth = make_release(root, media=False)
    return root, truth


def test_release_opens_as_is_with_pairing_marked(release):
    root, truth = release
    before = sorted(p.name for p in root.rglob("*"))
    project = load_project(root)
    assert sorted(p.name for p in root.rglob("*")) == before          # opening writes nothing
    rows = {r["episode"]: r for r in pairing_table(project)}
    assert list(rows) == ["friends_s01e01a", "friends_s01e01b", "friends_s04e01a", "friends_s07e01a"]
    assert rows["friends_s04e01a"]["subjects"]["sub-05"]["status"] == "known missing"
    assert rows["friends_s04e01a"]["subjects"]["sub-01"] == {"runs": ["sub-01_ses-003_task-s04e01a"],
                                                             "status": "paired"}
    assert "season 7" in rows["friends_s07e01a"]["held_out"]
    assert {s["status"] for s in rows["friends_s07e01a"]["subjects"].values()} == {"held out"}
    text = format_pairing_table(pairing_table(project))
    assert "known-missing" in text and "held-out" in text and "MISSING" not in text
    # every run loads exactly what the file holds, at the release's TR
    ref = next(r for r in project.runs if r.subject == "sub-05" and r.episode == "friends_s01e01b")
    run = fmri.load_run(ref, project)
    np.testing.assert_array_equal(run.data, truth["runs"][("sub-05", "ses-002_task-s01e01b")])
    # the TR: from the paired runs; a held-out episode takes the project's; --tr must agree
    assert episode_tr(project, "friends_s01e01a") == 1.49 and episode_tr(project, "friends_s07e01a") == 1.49
    with pytest.raises(MismatchError, match="--tr 2.0"):
        episode_tr(project, "friends_s01e01a", tr_s=2.0)


def test_a_subject_without_a_run_another_has_is_missing(release, tmp_path):
    import shutil

    import h5py

    root = tmp_path / "copy"
    shutil.copytree(release[0], root)
    h5 = next((root / "fmri" / "sub-05" / "func").glob("*.h5"))
    with h5py.File(h5, "a") as f:
        del f["ses-002_task-s01e01b"]
    rows = {r["episode"]: r for r in pairing_table(load_project(root))}
    assert rows["friends_s01e01b"]["subjects"]["sub-05"]["status"] == "missing"


def test_transcript_one_chunk_longer_than_its_run_is_trimmed_and_recorded(release):
    root, truth = release
    project = load_project(root)
    ep = project.episode("friends_s01e01a")
    words = read_algonauts_transcript(project.path(ep.words))
    assert "don't" in set(words["word"]) and "know," in set(words["word"])    # list cells read exactly
    n_chunks = words.attrs["n_trs"]
    n_run = truth["n_trs"]["s01e01a"]
    assert n_chunks == n_run + 1
    feats = np.arange(n_chunks, dtype=np.float32)[:, None]
    brain = np.ones((n_run, 1000), np.float32)
    with pytest.warns(AlignmentWarning, match="last 1 feature rows dropped"):
        f, b, how = trim_to_common(feats, brain, tolerance_trs=2, name="sub-01 friends_s01e01a")
    assert f.shape[0] == b.shape[0] == n_run and f[-1, 0] == n_run - 1        # cut at the end
    assert how.to_dict() == {"run": "sub-01 friends_s01e01a", "n_trs": n_run, "n_feature_trs": n_run + 1,
                             "n_brain_trs": n_run, "trimmed": "features", "n_trimmed": 1, "tolerance_trs": 2,
                             "where": "end"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert align_lengths(n_run, n_run).trimmed == "none"
        assert align_lengths(n_run, n_run + 2, warn=False).trimmed == "brain"
    with pytest.raises(MismatchError, match="--trim-tolerance-trs 3"):
        align_lengths(n_run + 3, n_run, tolerance_trs=2)


def test_parcel_runs_painted_through_the_subject_atlas(release, tmp_path, monkeypatch):
    from engine.io import atlases

    root, truth = release
    project = load_project(root)
    cache = tmp_path / "cache"
    ref = next(r for r in project.runs if r.subject == "sub-05")
    proj = run_surface_atlas(project, ref, cache_dir=cache)
    atlas = proj.atlas
    assert atlas.name == "sub-05_schaefer1000" and atlas.n_parcels == 1000 and atlas.n_vertices == 20484
    left, right = atlas.labels[:10242], atlas.labels[10242:]
    assert (left[left > 0] <= 500).mean() > 0.97 and (right[right > 0] > 500).mean() > 0.97
    # each vertex's label is one the volume holds somewhere on the vertex's white-to-pial line
    from engine.io.surfaces import load_fsaverage5

    vol = schaefer_like_labels()
    pial, white = load_fsaverage5("pial"), load_fsaverage5("white")
    inner = np.r_[white.left.coords, white.right.coords]
    outer = np.r_[pial.left.coords, pial.right.coords]
    seen = []
    for d in np.linspace(0, 1, 25):
        ijk = np.rint(((inner + d * (outer - inner)) - [-96, -132, -78]) / 2).astype(int)
        ok = np.all((ijk >= 0) & (ijk < vol.shape), axis=1)
        lab = np.zeros(len(ijk), int)
        lab[ok] = vol[ijk[ok, 0], ijk[ok, 1], ijk[ok, 2]]
        seen.append(lab)
    seen = np.stack(seen, 1)
    labelled = np.flatnonzero(atlas.labels > 0)
    assert labelled.size == np.flatnonzero((seen > 0).any(1)).size
    assert all(atlas.labels[v] in seen[v] for v in labelled[::7])
    present = np.unique(vol)
    assert proj.n_reached == np.unique(atlas.labels[atlas.labels > 0]).size <= present.size
    assert proj.fraction_reached == pytest.approx(proj.n_reached / 1000)
    # a run's 1000 columns paint onto the cortex: each vertex shows its parcel's column
    run = fmri.load_run(ref, project)
    painted = atlas.parcel_to_vertex(run.data[3])
    inside = np.flatnonzero(atlas.labels > 0)
    np.testing.assert_array_equal(painted[inside], run.data[3, atlas.labels[inside] - 1])
    assert np.isnan(painted[atlas.labels == 0]).all()
    # cached by content: an atomic entry, reused for the same bytes elsewhere, without projecting again
    assert proj.cache_path is not None and proj.cache_path.is_file()
    assert not list(cache.rglob(".tmp-*"))
    atlases._PROJECTIONS.clear()
    monkeypatch.setattr(atlases, "sample_labels_on_surface", lambda *a, **k: pytest.fail("projected again"))
    copy = tmp_path / "elsewhere.nii.gz"
    copy.write_bytes(project.path(project.atlases[1].path).read_bytes())
    again = atlases.surface_atlas_from_volume(copy, n_parcels=1000, cache_dir=cache)
    np.testing.assert_array_equal(again.atlas.labels, atlas.labels)
    assert again.cache_path == proj.cache_path


def test_the_window_paints_release_runs_through_the_subject_atlas(release, tmp_path, monkeypatch):
    from engine.session import ProjectSession

    monkeypatch.setenv("ALIGNSCOPE_ATLAS_CACHE", str(tmp_path / "cache"))
    root, truth = release
    s = ProjectSession.open(root, episode="friends_s01e01b", load_mesh=True)
    assert s.parcel_atlas is not None and s.parcel_atlas.name == "sub-01_schaefer1000"
    reached = np.unique(s.parcel_atlas.labels[s.parcel_atlas.labels > 0]).size
    assert any(f"{reached} of 1000 parcels of sub-01_schaefer1000 reach the cortex" in n for n in s.notes)
