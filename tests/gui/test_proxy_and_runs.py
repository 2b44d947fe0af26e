"""Scrub proxy built in the background and swapped in at the same frame; parcel-table runs
beside vertex runs in the Run box, painted per parcel."""

import os
import shutil

import numpy as np
import pytest

from engine.project import Episode, Project, RunRef
from tests.engine.test_io_video import _decode_index, _write_video


def canvas_rgb(window):
    from tests.gui.test_attention import qimage_rgb

    return qimage_rgb(window.video_view.canvas.image)


@pytest.fixture
def long_gop_project(tmp_path):
    root = tmp_path / "gop"
    (root / "stimuli").mkdir(parents=True)
    video = _write_video(root / "stimuli" / "ep.mp4", 150,
                         options={"x264-params": "keyint=50:min-keyint=50:scenecut=0"})
    p = Project(name="gop", episodes=[Episode(name="ep", video="stimuli/ep.mp4")])
    return p.save(root / "gop.alignscope.json"), video


def test_scrub_proxy_is_built_and_swapped_in_at_the_same_frame(qtbot, long_gop_project):
    from engine.io.proxy import default_proxy_dir, proxy_path
    from gui.main_window import MainWindow

    project_file, video = long_gop_project
    assert str(default_proxy_dir()).startswith(os.environ["ALIGNSCOPE_CACHE_DIR"])   # never the user's cache
    w = MainWindow(interactive_3d=False)
    qtbot.addWidget(w)
    w.show()
    assert w.open_project(project_file), w.errors_shown
    assert w.session.needs_scrub_proxy()                      # a key frame every 50 frames
    h = w.proxy_job
    assert h is not None and h.name == "Build scrub proxy"
    assert any(row.handle is h for row in w.job_panel.rows)  # in the job panel
    w.state.time = 3.3                                        # frame 82 at 25 fps, between key frames
    i = w.state.frame_index
    assert i == 82 and w.video_view.shown_frame_index == i
    assert _decode_index(canvas_rgb(w)) == i
    assert w.session.video.path == video
    qtbot.waitUntil(lambda: h.state != "running", timeout=30000)
    assert h.state == "finished", h.error
    built = proxy_path(video)
    assert h.result == built and built.exists()
    qtbot.waitUntil(lambda: w.session.video_is_proxy, timeout=5000)
    assert w.session.video.path == built
    assert len(w.session.video.keyframe_indices()) == 150    # every frame a key frame
    # no visible jump: same time, same frame index, and the pixels are that frame's
    assert w.state.time == pytest.approx(3.3) and w.video_view.shown_frame_index == i
    assert _decode_index(canvas_rgb(w)) == i
    for t in (0.5, 5.95, 2.02):
        w.state.time = t
        assert _decode_index(canvas_rgb(w)) == w.state.frame_index
    # View > Use scrub proxy off: back to the original file, same frame; on: the proxy again, no job
    n_rows = len(w.job_panel.rows)
    w.proxy_action.trigger()
    assert not w.session.video_is_proxy and w.session.video.path == video
    assert _decode_index(canvas_rgb(w)) == w.state.frame_index
    w.proxy_action.trigger()
    assert w.session.video_is_proxy and len(w.job_panel.rows) == n_rows
    assert _decode_index(canvas_rgb(w)) == w.state.frame_index
    w.close()
    # reopening the project shows frames through the proxy straight away
    w2 = MainWindow(interactive_3d=False)
    qtbot.addWidget(w2)
    assert w2.open_project(project_file)
    assert w2.session.video_is_proxy and w2.proxy_job is None
    w2.close()


@pytest.fixture
def mixed_project(synthetic, tmp_path):
    """The synthetic vertex runs plus the same runs as Schaefer-100 parcel tables."""
    from engine.io.atlases import load_atlas

    root = tmp_path / "mixed"
    shutil.copytree(synthetic.project_path.parent, root)
    project_file = root / synthetic.project_path.name
    atlas = load_atlas("schaefer100", "fsaverage5")
    p = Project.load(project_file)
    tables = {}
    rng = np.random.default_rng(5)
    for k in (1, 2):
        name = f"sub-01_run-{k}_parcels"
        table = rng.standard_normal((6, atlas.n_parcels)).astype(np.float32)
        np.save(root / "fmri" / f"{name}.npy", table)
        p.runs.append(RunRef(name=name, path=f"fmri/{name}.npy", episode="ep", tr_s=1.0, space="parcels",
                             atlas="schaefer100"))
        tables[name] = table
    p.save(project_file)
    return project_file, atlas, tables


def test_parcel_runs_are_offered_and_painted_per_parcel(qtbot, mixed_project, synthetic):
    from gui.main_window import MainWindow

    project_file, atlas, tables = mixed_project
    w = MainWindow(interactive_3d=False)
    qtbot.addWidget(w)
    w.proxy_action.setChecked(False)
    assert w.open_project(project_file), w.errors_shown
    items = [w.run_box.itemText(i) for i in range(w.run_box.count())]
    assert items == ["sub-01_run-1", "sub-01_run-2", "sub-01_run-1_parcels", "sub-01_run-2_parcels"]
    assert w.session.run_names == ["sub-01_run-1", "sub-01_run-2"]   # fits use the vertex runs only
    labels = np.asarray(atlas.labels)
    v = int(np.flatnonzero(labels == 37)[0])
    w.state.select_vertex(v)
    w.state.layer = "measured"
    w.state.time = 3.2
    cv, tc = w.cortex_view, w.timecourse_view
    np.testing.assert_array_equal(cv.current_values, synthetic.measured[0][3 - 1])   # vertex run, result rows
    # switch to the parcel table of run 2
    w.run_box.setCurrentIndex(3)
    assert w.state.run == "sub-01_run-2_parcels"
    table = tables["sub-01_run-2_parcels"]
    np.testing.assert_array_equal(tc.measured, table[:, 36])            # the parcel the vertex lies in
    assert np.isnan(tc.predicted).all()                                 # no result for a parcel table
    assert tc.title.text().startswith("Parcel ") and "r = " not in tc.detail.text()
    # painted per parcel, z-scored within the run (a raw table's baseline would hide the response)
    z = (table - table.mean(0)) / table.std(0)
    np.testing.assert_allclose(np.nan_to_num(cv.current_values, nan=-9),
                               np.nan_to_num(atlas.parcel_to_vertex(z[3]), nan=-9), rtol=1e-5, atol=1e-5)
    assert "z-scored within the run" in cv.colorbar.title
    w.state.time = 4.1
    np.testing.assert_allclose(cv.current_values[labels == 37], z[4, 36], rtol=1e-5)
    assert tc.y_label == "response (file units)"
    assert np.isnan(cv.current_values[labels == 0]).all()               # medial wall uncoloured
    # and back to a vertex run
    w.run_box.setCurrentIndex(0)
    np.testing.assert_array_equal(tc.measured, synthetic.measured[0][:, v])
    np.testing.assert_array_equal(cv.current_values, synthetic.measured[0][4 - 1])
    w.close()
