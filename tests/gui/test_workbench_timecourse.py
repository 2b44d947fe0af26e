"""The pyqtgraph time course: curves equal the session's, zoom/pan, pinned overlays, a band,
run boundaries, and PNG/SVG/CSV export."""

import csv

import numpy as np
import pytest

from engine.state import AppState, Target


@pytest.fixture
def tc(qtbot, session):
    from gui.timecourse_view import TimecourseView

    state = AppState(session.timeline())
    view = TimecourseView(state, session)
    qtbot.addWidget(view)
    view.resize(700, 300)
    view.show()
    qtbot.waitExposed(view)
    yield view
    view.close_view()


def test_curves_overlays_band_and_zoom(tc, session):
    run = session.run_names[0]
    tc.state.select_vertex(5)
    t, m, p = session.roi_timecourse(run, Target.vertex_target(5))
    x, y = tc.plot.measured_curve.getData()
    np.testing.assert_array_equal(x, t)
    np.testing.assert_allclose(y, m)
    finite = np.isfinite(p)
    xp, yp = tc.plot.predicted_curve.getData()
    np.testing.assert_allclose(yp[np.isfinite(yp)], p[finite])
    tc.pin_current()
    tc.state.select_vertex(7)
    assert [c.name() for c in tc.plot.pin_curves] == ["vertex 5"]
    _xs, ys = tc.plot.pin_curves[0].getData()
    np.testing.assert_allclose(ys, m)                      # vertex 5 stays while vertex 7 is shown
    assert [name for name, *_ in tc.curves()][-1].startswith("pinned")
    lo, hi = np.asarray(tc.measured) - 0.5, np.asarray(tc.measured) + 0.5
    tc.set_band(lo, hi)
    np.testing.assert_allclose(tc.plot.ceiling_lo.getData()[1], lo)
    # zoom: the wheel / scaleBy narrows the x range; "Fit" shows the whole run again
    full = tc.plot.x_range()
    tc.plot.vb.scaleBy((0.25, 1.0))
    zoomed = tc.plot.x_range()
    assert zoomed[1] - zoomed[0] < 0.5 * (full[1] - full[0])
    tc.fit_button.click()
    assert tc.plot.x_range() == pytest.approx(full)
    # run boundaries: the run's start and end are marked
    tl = tc.state.timeline
    assert tc.run_bounds_s[0] == 0.0 and tc.run_bounds_s[-1] == pytest.approx(tl.tr_time(tl.n_trs))
    assert len(tc.plot.boundaries) == len(tc.run_bounds_s)
    tc.clear_pins()
    assert tc.plot.pin_curves == []


def test_time_cursor_and_click(tc, qtbot):
    from PySide6.QtCore import QPoint, Qt

    tc.state.select_vertex(3)
    tc.state.time = 2.3
    assert tc.plot.cursor.value() == pytest.approx(2.3)
    k = tc.state.tr_index
    lo, hi = tc.plot.band.getRegion()
    assert lo == pytest.approx(tc.state.timeline.tr_time(k)) and hi == pytest.approx(tc.state.timeline.tr_time(k + 1))
    tc.plot.cursor.setValue(4.1)                   # dragging the cursor line moves the time
    assert tc.state.time == pytest.approx(4.1)
    vp = tc.plot.viewport()
    x = int(tc.plot.x_of_time(1.5))
    qtbot.mouseClick(vp, Qt.LeftButton, pos=QPoint(x, vp.height() // 2))
    assert tc.state.time == pytest.approx(1.5, abs=0.05)


def test_export_png_svg_csv(tc, tmp_path):
    from engine.errors import ConfigError

    with pytest.raises(ConfigError, match="expected a selected"):
        tc.export(tmp_path / "none.csv")
    tc.state.select_vertex(2)
    tc.export(tmp_path / "tc.csv")
    rows = list(csv.reader(open(tmp_path / "tc.csv")))
    assert rows[0][:3] == ["time_s", "measured", "predicted"]
    assert len(rows) == len(tc.times) + 1
    np.testing.assert_allclose([float(r[1]) for r in rows[1:]], tc.measured, rtol=1e-5)
    png = tc.export(tmp_path / "tc.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = tc.export(tmp_path / "tc.svg").read_text()
    assert "<svg" in svg and "<path" in svg
    with pytest.raises(ConfigError, match=r"\.png, \.svg or \.csv"):
        tc.export(tmp_path / "tc.pdf")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tc.csv", "tc.png", "tc.svg"]   # no temp files left


def test_jump_to_the_moments_a_target_responds_most(tc):
    tc.state.select_vertex(4)
    m = np.asarray(tc.measured, float)
    t = tc.jump_to_moment("response")
    assert t == pytest.approx(tc.times[int(np.nanargmax(m))])
    assert tc.state.time == pytest.approx(t)
    second = tc.jump_to_moment("response")
    assert second == pytest.approx(tc.times[np.argsort(-m)[1]])
    best = tc.moments("prediction")
    p = np.asarray(tc.predicted, float)
    for when in best:                       # both measured and predicted above their means there
        i = int(np.flatnonzero(np.isclose(tc.times, when))[0])
        assert m[i] > np.nanmean(m) and p[i] > np.nanmean(p)


def test_video_steps_by_frame_and_tr_home_end_and_lag(qtbot, session):
    from gui.video_view import HRF_LAG_S, VideoView

    state = AppState(session.timeline())
    vv = VideoView(state, session)
    qtbot.addWidget(vv)
    tl = state.timeline
    state.time = 2.0
    vv.step_frames(1)
    assert vv.shown_frame_index == tl.frame_index(2.0) + 1
    vv.step_frames(-3)
    assert vv.shown_frame_index == tl.frame_index(2.0) - 2
    vv.step_trs(1)
    assert state.tr_index == tl.tr_index(2.0 - 2 / tl.fps) + 1 and state.time == pytest.approx(tl.tr_time(state.tr_index))
    vv.go_end()
    assert vv.shown_frame_index == tl.n_frames - 1
    vv.go_home()
    assert vv.shown_frame_index == 0 and state.time == 0.0
    state.time = 5.5
    vv.lag_check.setChecked(True)               # the stimulus that drove the response at 5.5 s
    assert vv.shown_frame_index == tl.frame_index(5.5 - HRF_LAG_S)
    assert vv.subtitle.text() == session.cue_at(5.5 - HRF_LAG_S)
    vv.lag_check.setChecked(False)
    assert vv.shown_frame_index == tl.frame_index(5.5)


def test_sound_track_mute_and_volume(qtbot, session):
    """The player loads the episode's sound track (the synthetic video's 440 Hz tone); the mute
    box and the volume slider drive the QAudioOutput; with no audio device the clock still runs
    and the pane says why."""
    from PySide6.QtMultimedia import QtAudio

    from gui.video_view import Sound, VideoView

    state = AppState(session.timeline())
    vv = VideoView(state, session)
    qtbot.addWidget(vv)
    assert vv.sound.load()
    qtbot.waitUntil(lambda: vv.sound.has_audio() is not None, timeout=5000)
    assert vv.sound.has_audio() is True                           # the video's AAC track
    assert vv.sound.player.audioOutput() is vv.sound.output       # wired to an audio output
    assert abs(vv.sound.player.duration() / 1000.0 - session.timeline().duration_s) < 0.5
    vv.mute_check.setChecked(True)
    assert vv.sound.output.isMuted()
    vv.mute_check.setChecked(False)
    assert not vv.sound.output.isMuted()
    for pos in (0, 25, 100):
        vv.volume_slider.setValue(pos)
        want = QtAudio.convertVolume(pos / 100.0, QtAudio.VolumeScale.LogarithmicVolumeScale,
                                     QtAudio.VolumeScale.LinearVolumeScale)
        assert vv.sound.output.volume() == pytest.approx(want, abs=1e-6)
    assert vv.sound.output.volume() == pytest.approx(1.0)
    assert 0.0 < QtAudio.convertVolume(0.25, QtAudio.VolumeScale.LogarithmicVolumeScale,
                                       QtAudio.VolumeScale.LinearVolumeScale) < 0.25   # log scale, not linear
    state.playing = True
    qtbot.wait(300)
    state.playing = False
    assert state.time > 0.1                                       # the clock ran, sound or not
    if not Sound.output_devices():                                # no sound server here: said in the pane
        assert "no audio output device" in vv.sound.status
        assert vv.sound_label.text().startswith("no sound")
    else:
        assert vv.sound.status == ""
    vv.mute_check.setChecked(True)
    assert vv.sound.muted and vv.sound.output.isMuted()


def test_a_video_without_sound_says_so(qtbot, tmp_path):
    import av

    from gui.video_view import Sound

    silent = tmp_path / "silent.mp4"
    with av.open(str(silent), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(10):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), i * 20, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    statuses = []
    sound = Sound(None, on_status=statuses.append)
    sound.set_source(silent)
    assert sound.load()
    qtbot.waitUntil(lambda: sound.has_audio() is not None, timeout=5000)
    assert sound.has_audio() is False
    if Sound.output_devices():
        assert sound.status == "no sound: this video has no sound track" and statuses[-1] == sound.status
    sound.close()


def test_long_title_is_elided_in_a_narrow_pane_with_the_whole_text_as_tooltip(tc, qtbot, session):
    """A long vertex/region title meets a narrow pane: it ends in "…" inside the label (never
    cut mid-glyph by the pane), the whole text is its tooltip, and a wide pane shows it all."""
    from engine.state import Target

    long_region = "Vertex 8375 (left hemisphere, 17Networks_LH_DefaultA_pCunPCC_Posterior_Cingulate_Cortex_2)"
    tc.resize(1200, 300)
    tc.show()
    qtbot.waitExposed(tc)
    tc.state.target = Target.vertex_target(5)
    full = tc.title.text()
    assert full.startswith("Vertex 5 (") and tc.title.shown_text() == full and not tc.title.is_elided()
    tc.title.setText(long_region)
    narrowest = tc.minimumSizeHint().width()     # the buttons' widths: the title gets what is left
    assert narrowest < 700
    for width in (1200, 700, narrowest):
        tc.resize(width, 300)
        qtbot.waitUntil(lambda w=width: tc.width() == w)
        shown = tc.title.shown_text()
        fits = tc.title.fontMetrics().horizontalAdvance(shown) <= tc.title.contentsRect().width()
        assert fits, (width, shown)
        assert tc.title.toolTip() == long_region and tc.title.text() == long_region
        # the title never reaches under the buttons beside it
        assert tc.title.geometry().right() < tc.peak_button.geometry().left()
    assert tc.title.is_elided() and shown.endswith("…") and long_region.startswith(shown[:-1])
    tc.resize(1900, 300)
    qtbot.waitUntil(lambda: tc.width() == 1900)
    assert tc.title.shown_text() == long_region
