"""Every pane follows the one time value; selections show the session's numbers."""

import time

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt

from engine.state import Target
from tests.gui.synthetic import FPS, N_START, TR_S, frame_level_to_index


def canvas_frame_index(window):
    """Which planted frame the video canvas is showing, read from its pixels."""
    img = window.video_view.canvas.image
    ptr = img.constBits()
    rgb = np.frombuffer(ptr, np.uint8, img.sizeInBytes()).reshape(img.height(), img.bytesPerLine())
    rgb = rgb[:, : img.width() * 3].reshape(img.height(), img.width(), 3)
    return frame_level_to_index(rgb)


SLIDER_MS = [0, 730, 1499, 2000, 3250, 4400, 5980, 10]


def test_slider_moves_every_pane_to_the_same_time(window, session):
    for ms in SLIDER_MS:
        check_all_panes_at(window, session, ms)


def check_all_panes_at(window, session, ms):
    vv, tc = window.video_view, window.timecourse_view
    tl = window.state.timeline
    vv.slider.setValue(ms)          # as if the user dragged the slider
    t = ms / 1000.0
    assert window.state.time == pytest.approx(t)
    i, k = tl.frame_index(t), tl.tr_index(t)
    assert i == int(np.floor(t * FPS + 1e-9)) and k == int(np.floor(t / TR_S + 1e-9))
    assert vv.shown_frame_index == i
    assert canvas_frame_index(window) == i            # the pixels on screen are frame i
    assert vv.subtitle.text() == session.cue_at(t)
    assert f"frame {i}/" in vv.position_label.text() and f"TR {k}/" in vv.position_label.text()
    assert tc.cursor_tr == k
    x = tc.plot.x_of_time(t)
    assert tc.plot.time_of_x(x) == pytest.approx(t)
    assert f"TR {k}" in window.status_position.text()


def test_subtitles_follow_the_planted_cues(window):
    for t, text in [(0.2, ""), (0.6, "Hello there."), (2.1, "How are you?"), (4.3, "Fine, thanks."),
                    (5.5, "")]:
        window.state.time = t
        assert window.video_view.subtitle.text() == text


def test_clicking_the_time_course_moves_the_time(window, qtbot):
    plot = window.timecourse_view.plot
    window.state.select_vertex(0)
    x = int(plot.x_of_time(3.6))
    qtbot.mouseClick(plot, Qt.LeftButton, pos=QPoint(x, plot.height() // 2))
    assert window.state.time == pytest.approx(3.6, abs=0.05)
    assert window.video_view.shown_frame_index == window.state.timeline.frame_index(window.state.time)


def test_picking_a_vertex_on_the_cortex_shows_its_time_course(window, qtbot, synthetic):
    cv, tc = window.cortex_view, window.timecourse_view
    coords = window.session.surface.left.coords
    v = int(np.argmin(coords[:, 0]))                 # the most lateral left vertex: visible laterally
    x, y = cv.project_vertex(v, "lateral")
    qtbot.mouseClick(cv.host, Qt.LeftButton, pos=QPoint(int(round(x)), int(round(y))))
    picked = window.state.target
    assert picked is not None and picked.kind == "vertex"
    # the click lands within a pixel of v's projection: the picked vertex is v or a mesh neighbour
    dist_mm = np.linalg.norm(coords[picked.vertex] - coords[v])
    assert dist_mm < 4.0, dist_mm
    w = picked.vertex
    run = window.state.run
    k = window.session.run_names.index(run)
    np.testing.assert_array_equal(tc.measured, synthetic.measured[k][:, w])
    np.testing.assert_array_equal(tc.predicted, synthetic.predictions[k][:, w])
    np.testing.assert_allclose(tc.times, (N_START + np.arange(len(tc.times))) * TR_S)
    assert f"Vertex {w}" in tc.title.text()
    assert f"r = {synthetic.scores[w]:.3f}" in tc.detail.text()


def test_pick_exact_vertices(window):
    cv = window.cortex_view
    surf = window.session.surface
    for v in (int(np.argmin(surf.left.coords[:, 0])), surf.n_left + int(np.argmax(surf.right.coords[:, 0]))):
        x, y = cv.project_vertex(v, "lateral")
        assert cv.pick_at(x, y, select=False) == v
    assert cv.pick_at(2, 2, select=False) is None      # the background picks nothing


def test_run_and_region_choices_update_the_time_course(window, synthetic):
    tc = window.timecourse_view
    window.state.select_vertex(0)
    window.run_box.setCurrentIndex(1)
    assert window.state.run == "sub-01_run-2"
    np.testing.assert_array_equal(tc.measured, synthetic.measured[1][:, 0])
    i = window.region_box.findText("Region 3")
    window.region_box.setCurrentIndex(i)
    assert window.state.target == Target.region_target("Region 3", atlas="synthetic")
    cols = np.flatnonzero(synthetic.labels == 3)
    np.testing.assert_allclose(tc.measured, synthetic.measured[1][:, cols].mean(1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tc.predicted, synthetic.predictions[1][:, cols].mean(1), rtol=1e-5, atol=1e-6)
    assert tc.title.text().startswith("Region 3")


def test_cortex_layers_follow_the_tr_and_ignore_repeats(window, synthetic):
    cv = window.cortex_view
    np.testing.assert_array_equal(cv.current_values, synthetic.scores)
    window.state.layer = "measured"
    assert cv.layer_box.currentData() == "measured"
    window.state.time = 3.2                                 # TR 3 -> row 3 - N_START of the result
    np.testing.assert_array_equal(cv.current_values, synthetic.measured[0][3 - N_START])
    renders = cv.render_count
    window.state.time = 3.7                                 # same TR: nothing to redraw
    assert cv.render_count == renders
    window.state.time = 4.1
    assert cv.render_count == renders + 1
    np.testing.assert_array_equal(cv.current_values, synthetic.measured[0][4 - N_START])
    window.state.time = 0.5                                 # a TR the result dropped: no colour
    assert np.isnan(cv.current_values).all()
    window.state.layer = "predicted"
    window.state.time = 5.0
    np.testing.assert_array_equal(cv.current_values, synthetic.predictions[0][5 - N_START])
    # the colours written into the meshes are those of the map
    from gui.colormaps import map_rgb

    expected = map_rgb(cv.current_values, cv.current_style, cv._background)
    left = next(ds for hemi, ds in cv._datasets if hemi == "left")
    np.testing.assert_array_equal(np.asarray(left.point_data["rgb"]), expected[: window.session.surface.n_left])


def test_playback_follows_the_wall_clock_and_drops_frames(window, qtbot):
    state, vv = window.state, window.video_view
    state.time = 0.0
    state.speed = 2.0
    t0 = time.monotonic()
    state.playing = True
    qtbot.wait(150)
    time.sleep(0.4)               # the GUI thread is blocked: playback must not fall behind
    qtbot.wait(60)
    elapsed = time.monotonic() - t0
    state.playing = False
    assert state.time == pytest.approx(2.0 * elapsed, abs=0.2)
    assert vv.dropped_frames > 0   # frames were skipped rather than shown late
    assert vv.shown_frame_index == state.timeline.frame_index(state.time)
    # reaching the end stops playback there
    state.time = 5.9
    state.playing = True
    qtbot.waitUntil(lambda: not state.playing, timeout=3000)
    assert state.time == pytest.approx(window.state.timeline.duration_s)
    assert not vv.play_button.isChecked()


def test_hovering_the_cortex_names_the_vertex_under_the_mouse(window, qtbot, synthetic):
    cv = window.cortex_view
    surf = window.session.surface
    v = surf.n_left + int(np.argmax(surf.right.coords[:, 0]))   # most lateral right vertex
    x, y = cv.project_vertex(v, "lateral")
    target_before = window.state.target
    qtbot.mouseMove(cv.host, QPoint(int(round(x)), int(round(y))))
    with qtbot.waitSignal(cv.hovered, timeout=2000) as blocker:
        pass
    text = blocker.args[0]
    got = int(text.split()[1])
    assert np.linalg.norm(surf.combined()[0][got] - surf.combined()[0][v]) < 4.0
    assert "right hemisphere" in text and f"r = {synthetic.scores[got]:.3f}" in text
    assert window.statusBar().currentMessage().startswith(text)
    assert window.state.target == target_before      # hovering selects nothing


def test_choosing_another_episode_shows_its_video_and_runs(qtbot, synthetic, tmp_path):
    """A project with two episodes: the Episode box opens the other one (its video, its runs)."""
    import shutil

    from engine.project import Episode, Project, RunRef
    from gui.main_window import MainWindow

    root = tmp_path / "two"
    shutil.copytree(synthetic.project_path.parent, root)
    project_file = root / synthetic.project_path.name
    p = Project.load(project_file)
    p.episodes.append(Episode(name="ep2", video="stimuli/ep.mp4", subtitles=None, words=None))
    p.runs.append(RunRef(name="sub-02_run-1", path="fmri/sub-01_run-2.npy", episode="ep2", tr_s=2.0))
    p.save(project_file)
    w = MainWindow(interactive_3d=False)
    qtbot.addWidget(w)
    assert w.open_project(project_file)
    assert [w.episode_box.itemText(i) for i in range(w.episode_box.count())] == ["ep", "ep2"]
    plotter = w.cortex_view.plotter
    w.episode_box.setCurrentIndex(1)
    assert w.session.episode.name == "ep2" and w.session.run_names == ["sub-02_run-1"]
    assert w.state.run == "sub-02_run-1" and w.state.timeline.tr_s == 2.0 and w.state.time == 0.0
    w.state.time = 4.5
    assert w.state.tr_index == 2 and w.timecourse_view.cursor_tr == 2
    assert w.video_view.subtitle.text() == ""            # ep2 has no subtitles
    # no result for this run: the time course shows the raw run, without a prediction
    w.state.select_vertex(0)
    np.testing.assert_array_equal(w.timecourse_view.measured, synthetic.runs["sub-01_run-2"][:, 0])
    assert np.isnan(w.timecourse_view.predicted).all()
    assert w.cortex_view.plotter is plotter               # same surface: meshes kept
    w.close()


def test_parcel_project_clicks_show_the_parcel_time_course(qtbot, tmp_path):
    from gui.main_window import MainWindow
    from tests.gui.synthetic import write_parcel_project

    path, atlas, runs, measured, predictions, scores = write_parcel_project(tmp_path / "parcels")
    w = MainWindow(interactive_3d=False)
    qtbot.addWidget(w)
    assert w.open_project(path), w.errors_shown
    labels = np.asarray(atlas.labels)
    # opened on the best parcel
    best = int(np.argmax(scores))
    assert labels[w.state.target.vertex] == best + 1
    np.testing.assert_array_equal(w.timecourse_view.measured, measured[0][:, best])
    cv = w.cortex_view
    np.testing.assert_array_equal(np.nan_to_num(cv.current_values, nan=-9),
                                  np.nan_to_num(atlas.parcel_to_vertex(scores), nan=-9))
    surf = w.session.surface
    v = int(np.argmin(surf.left.coords[:, 0]))
    x, y = cv.project_vertex(v, "lateral")
    qtbot.mouseClick(cv.host, Qt.LeftButton, pos=QPoint(int(round(x)), int(round(y))))
    k = labels[w.state.target.vertex]
    assert k > 0
    np.testing.assert_array_equal(w.timecourse_view.measured, measured[0][:, k - 1])
    np.testing.assert_array_equal(w.timecourse_view.predicted, predictions[0][:, k - 1])
    # a vertex of the medial wall has no parcel: the pane says so, nothing breaks
    w.state.select_vertex(int(np.flatnonzero(labels == 0)[0]))
    assert w.timecourse_view.measured is None and "medial wall" in w.timecourse_view.empty_text
    w.close()
