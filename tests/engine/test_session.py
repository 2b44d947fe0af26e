"""ProjectSession: the numbers the views show come from the right arrays."""

import importlib.util
import subprocess
import sys

import numpy as np
import pytest

from engine.errors import DataError, MismatchError
from engine.session import LoadedRun, ProjectSession
from engine.state import Target
from tests.gui.synthetic import FPS, N_START, TR_S, frame_level_to_index, make_session, write_project


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    return write_project(tmp_path_factory.mktemp("proj"), n_targets=100, n_trs=6, seconds=6.0)


@pytest.fixture
def session(syn):
    s = make_session(syn, load_mesh=False)
    yield s
    s.close()


def test_frame_at_shows_the_timeline_frame(session, syn):
    tl = session.timeline()
    assert tl.n_frames == syn.n_frames == 60
    for t in [0.0, 0.05, 0.1, 1.23, 2.999, 4.5, 5.95]:
        i = tl.frame_index(t)
        assert i == int(np.floor(t * FPS + 1e-9))
        assert frame_level_to_index(session.frame_at(t)) == i


def test_cue_at_follows_subtitles(session):
    assert session.cue_at(0.2) == ""
    assert session.cue_at(0.5) == "Hello there."
    assert session.cue_at(1.49) == "Hello there."
    assert session.cue_at(1.5) == ""
    assert session.cue_at(3.0) == "How are you?"
    assert session.cue_at(4.9) == "Fine, thanks."
    assert session.words_between(2.0, 3.0) == ["How", "are", "you"]


def test_vertex_timecourse_is_the_result_column(session, syn):
    for k, run in enumerate(syn.runs):
        times, meas, pred = session.roi_timecourse(run, Target.vertex_target(0))
        n = syn.runs[run].shape[0] - N_START
        np.testing.assert_allclose(times, (N_START + np.arange(n)) * TR_S)
        np.testing.assert_array_equal(meas, syn.measured[k][:, 0])
        np.testing.assert_array_equal(pred, syn.predictions[k][:, 0])
        # the planted vertex: 10 * TR + run number, TR counted in the raw run
        np.testing.assert_array_equal(meas, (np.arange(N_START, N_START + n) * 10 + k + 1).astype(np.float32))


def test_region_timecourse_is_the_mean_of_its_vertices(session, syn):
    cols = np.flatnonzero(syn.labels == 2)
    assert cols.size > 5
    _, meas, pred = session.roi_timecourse("sub-01_run-2", Target.region_target("Region 2"))
    np.testing.assert_allclose(meas, syn.measured[1][:, cols].mean(1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pred, syn.predictions[1][:, cols].mean(1), rtol=1e-5, atol=1e-6)
    assert session.region_of_vertex(int(cols[0])) == "Region 2"
    assert session.region_of_vertex(0) is None  # medial wall
    assert session.region_names() == ["Region 1", "Region 2", "Region 3", "Region 4"]
    with pytest.raises(DataError, match="one of the 4 names"):
        session.roi_timecourse("sub-01_run-1", Target.region_target("Nowhere"))


def test_maps(session, syn):
    np.testing.assert_array_equal(session.score_map(), syn.scores)
    assert np.isnan(session.map_at("sub-01_run-1", "measured", 0)).all()  # dropped edge TR
    np.testing.assert_array_equal(session.map_at("sub-01_run-1", "measured", 3), syn.measured[0][3 - N_START])
    np.testing.assert_array_equal(session.map_at("sub-01_run-2", "predicted", 5), syn.predictions[1][5 - N_START])
    assert session.target_score(Target.vertex_target(7)) == pytest.approx(float(syn.scores[7]))


def test_without_result_measured_is_the_raw_run(syn):
    p = syn.project
    s = ProjectSession(p, p.episodes[0], runs=[LoadedRun(r, syn.runs[r.name]) for r in p.runs])
    times, meas, pred = s.roi_timecourse("sub-01_run-1", Target.vertex_target(3))
    np.testing.assert_array_equal(meas, syn.runs["sub-01_run-1"][:, 3])
    assert np.isnan(pred).all() and len(times) == 6
    assert np.isnan(s.score_map()).all()
    with pytest.raises(DataError, match="atlas"):
        s.roi_timecourse("sub-01_run-1", Target.region_target("Region 1"))
    # the cortex shows the raw run z-scored per target (file units would hide the response)
    raw = syn.runs["sub-01_run-1"].astype(np.float64)
    z = (raw - raw.mean(0)) / raw.std(0)
    np.testing.assert_allclose(s.map_at("sub-01_run-1", "measured", 4), z[4], rtol=1e-5, atol=1e-5)
    assert not s.has_prediction("sub-01_run-1") and s.map_rows("sub-01_run-1", "predicted") is None


def test_runs_of_another_size_are_set_aside_and_mismatches_refused(syn):
    p = syn.project
    runs = [LoadedRun(p.runs[0], syn.runs["sub-01_run-1"]), LoadedRun(p.runs[1], syn.runs["sub-01_run-2"][:, :50])]
    s = ProjectSession(p, p.episodes[0], runs=runs, result=syn.result)
    assert s.run_names == ["sub-01_run-1"] and list(s.other_runs) == ["sub-01_run-2"]

    from engine.session import load_surface

    with pytest.raises(MismatchError, match="20484 vertices"):
        ProjectSession(p, p.episodes[0], runs=runs[:1], result=syn.result, surface=load_surface("inflated"))


@pytest.mark.skipif(importlib.util.find_spec("engine.io.text") is None, reason="engine.io.text not written yet")
def test_open_reads_the_project_file(syn):
    with ProjectSession.open(syn.project_path, load_mesh=False) as s:
        assert s.run_names == ["sub-01_run-1", "sub-01_run-2"]
        assert s.timeline("sub-01_run-1").n_trs == 6
        assert s.cue_at(3.0) == "How are you?"
        np.testing.assert_array_equal(s.run("sub-01_run-2").data, syn.runs["sub-01_run-2"])
        if syn.project.results:
            np.testing.assert_allclose(s.score_map(), syn.scores)


def test_session_imports_no_qt_and_no_torch():
    code = ("import engine.session, sys; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'PySide6','vtk','pyvista','torch','transformers'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_parcel_tables_are_shown_on_the_vertices_of_their_parcels(tmp_path):
    """Algonauts-style runs (one column per parcel): maps painted per parcel, a vertex stands
    for its parcel, a region is its parcel's column."""
    from tests.gui.synthetic import write_parcel_project

    path, atlas, runs, measured, predictions, scores = write_parcel_project(tmp_path / "parcels")
    with ProjectSession.open(path) as s:
        assert s.parcel_atlas is not None and s.n_targets == atlas.n_parcels == 100
        assert s.run_names == ["sub-01_run-1_parcels", "sub-01_run-2_parcels"]
        labels = np.asarray(atlas.labels)
        smap = s.score_map()
        assert smap.shape == (20484,)
        inside = labels > 0
        np.testing.assert_array_equal(smap[inside], scores[labels[inside] - 1])
        assert np.isnan(smap[~inside]).all()
        v = int(np.flatnonzero(labels == 37)[0])
        times, meas, pred = s.roi_timecourse("sub-01_run-2_parcels", Target.vertex_target(v))
        np.testing.assert_array_equal(meas, measured[1][:, 36])
        np.testing.assert_array_equal(pred, predictions[1][:, 36])
        np.testing.assert_allclose(times, (N_START + np.arange(len(times))) * TR_S)
        name = atlas.names[36]
        _, meas_r, _ = s.roi_timecourse("sub-01_run-2_parcels", Target.region_target(name))
        np.testing.assert_array_equal(meas_r, measured[1][:, 36])
        assert s.region_of_vertex(v) == name
        assert s.target_score(Target.region_target(name)) == pytest.approx(float(scores[36]))
        wall = int(np.flatnonzero(~inside)[0])
        with pytest.raises(DataError, match="medial wall"):
            s.roi_timecourse("sub-01_run-1_parcels", Target.vertex_target(wall))
        m3 = s.map_at("sub-01_run-1_parcels", "measured", 3)
        np.testing.assert_array_equal(m3[inside], measured[0][3 - N_START][labels[inside] - 1])


def test_demo_offers_its_parcel_runs_attention_and_a_scrub_proxy(demo_project):
    """The demo: parcel tables beside the vertex runs are shown per parcel; the MiniLM token
    attention registered in ``project.extra["attention"]`` is read per kept TR; its GOP-25 video
    asks for a scrub proxy."""
    from engine.features.attention import load_attention
    from engine.io.atlases import load_atlas

    with ProjectSession.open(demo_project) as s:
        assert s.run_names == [f"sub-01_run-{k}" for k in range(1, 4)]
        assert s.display_run_names == s.run_names + [f"sub-01_run-{k}_parcels" for k in range(1, 4)]
        atlas = load_atlas("schaefer_400", "fsaverage5")
        table = np.loadtxt(demo_project.parent / "fmri" / "sub-01_run-2_schaefer400.tsv", skiprows=1,
                           dtype=np.float32)
        labels = np.asarray(atlas.labels)
        v = int(np.flatnonzero(labels == 250)[3])
        _, measured, predicted = s.roi_timecourse("sub-01_run-2_parcels", Target.vertex_target(v))
        np.testing.assert_array_equal(measured, table[:, 249])
        assert np.isnan(predicted).all()
        m = s.map_at("sub-01_run-2_parcels", "measured", 7)            # z-scored within the run
        col = table[:, 249].astype(np.float64)
        np.testing.assert_allclose(m[labels == 250], (col[7] - col.mean()) / col.std(), rtol=1e-4)
        # attention: the file's numbers at the kept TR the timeline gives
        assert "minilm" in s.attention_names() and s.attention_kind("minilm") == "tokens"
        maps = load_attention(s.project.path(s.project.extra["attention"]["minilm"]))
        t_s = 20.0
        k = s.timeline().tr_index(t_s)
        pos = int(np.searchsorted(maps.tr_indices, k, side="right")) - 1
        assert s.attention_tr("minilm", t_s) == int(maps.tr_indices[pos])
        values, tokens = s.attention_at("minilm", t_s, layer="layer03", head=2)
        assert tokens == maps.meta["tokens"][pos]
        np.testing.assert_array_equal(values, maps.maps[pos, 2, 2, :len(tokens)].astype(np.float32))
        # GOP 25: a proxy is wanted, unless an earlier test already built one (then it is shown)
        from engine.io.video import VideoReader

        with VideoReader(s.video_source_path) as original:
            assert np.diff(original.keyframe_indices()).min() == 25
        assert s.needs_scrub_proxy() != s.video_is_proxy


def test_attention_heat_map_helpers_agree_with_references(monkeypatch):
    """Upsampling: OpenCV's bilinear resize and the numpy fallback sample the same pixel
    centres; colours: matplotlib's inferno; a planted patch peaks where it lies on the frame."""
    import engine.session as S
    from engine.session import colour

    rng = np.random.default_rng(0)
    grid = rng.random((7, 9)).astype(np.float32)
    fast = S.upsample_grid(grid, (48, 64))
    monkeypatch.setattr(colour, "_cv2", lambda: None)   # the numpy path
    slow = S.upsample_grid(grid, (48, 64))
    blended_numpy = S.blend_heatmap(np.full((48, 64, 3), 200, np.uint8), grid, 0.3)
    monkeypatch.undo()
    np.testing.assert_allclose(fast, slow, atol=1e-5)
    np.testing.assert_allclose(S.blend_heatmap(np.full((48, 64, 3), 200, np.uint8), grid, 0.3),
                               blended_numpy, atol=1)
    # a single hot patch (2, 3) of a 4 x 6 grid peaks inside its own 12 x 10.67 px cell
    one = np.zeros((4, 6), np.float32)
    one[2, 3] = 1.0
    y, x = np.unravel_index(np.argmax(S.upsample_grid(one, (48, 64))), (48, 64))
    assert 24 <= y < 36 and 32 <= x < 43
    matplotlib = pytest.importorskip("matplotlib")
    x01 = np.linspace(0, 1, 101)
    np.testing.assert_allclose(S.heatmap_rgb(x01), matplotlib.colormaps["inferno"](x01)[:, :3], atol=0.02)
    # the overlay's colours: inferno of the upsampled map on the grid's own min..max
    heat = S.heatmap_frame(grid, (48, 64)).astype(float)
    x = (S.upsample_grid(grid, (48, 64)) - grid.min()) / (grid.max() - grid.min())
    ref = matplotlib.colormaps["inferno"](x)[..., :3] * 255
    assert np.abs(heat - ref).max() <= 0.025 * 255


def test_video_model_attention_is_averaged_over_time_slots(syn, tmp_path):
    """VideoMAE / V-JEPA 2 keep attention per time slot: the overlay shows their mean."""
    import shutil

    from engine.features.attention import save_attention
    from engine.features.base import AttentionMaps
    from engine.project import Project

    root = tmp_path / "video_att"
    shutil.copytree(syn.project_path.parent, root)
    maps = np.zeros((2, 1, 1, 2, 3, 4), np.float32)        # n_kept, L, H, n_time_slots, gh, gw
    maps[1, 0, 0, 0, 1, 2] = 1.0                           # slot 0 looks at (1, 2) ...
    maps[1, 0, 0, 1, 0, 0] = 0.5                           # ... slot 1 at (0, 0)
    rollout = maps[:, 0, 0] * 2
    save_attention(AttentionMaps(tr_indices=np.array([0, 3]), layers=["layer01"], maps=maps, rollout=rollout,
                                 kind="video_patches", meta={"grid": [3, 4], "time_slots": 2}),
                   root / "results" / "video.h5")
    p = Project.load(root / syn.project_path.name)
    p.extra["attention"] = {"videomae": "results/video.h5"}
    p.save(root / syn.project_path.name)
    with ProjectSession.open(root, load_mesh=False) as s:
        assert s.attention_kind("videomae") == "patches"
        values, tokens = s.attention_at("videomae", 3.5, layer="layer01")
        assert tokens is None and values.shape == (3, 4)
        assert values[1, 2] == 0.5 and values[0, 0] == 0.25 and values.sum() == 0.75
        roll, _ = s.attention_at("videomae", 4.0)
        np.testing.assert_array_equal(roll, 2 * values)
        assert s.attention_at("videomae", 2.9)[0].max() == 0   # TR 2 -> kept TR 0 (all zeros)
