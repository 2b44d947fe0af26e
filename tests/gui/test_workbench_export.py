"""Figure export: a high-resolution image of chosen views, and a movie with the stimulus beside the cortex."""

import numpy as np
import pytest


def test_export_views_image_at_panel_size_with_colours_and_bar(qtbot, session, tmp_path):
    from PIL import Image

    from gui.colormaps import MapStyle
    from gui.figure_export import export_views

    values = np.zeros(session.surface.n_vertices, np.float32)
    values[: session.surface.n_left] = 1.0             # left hemisphere only
    style = MapStyle(vmax=1.0, threshold=0.5, signed=False, cmap="RdBu_r")
    path = export_views(session.surface, values, style, tmp_path / "fig.png", views=("lateral", "ventral"),
                        panel_size=(300, 200), title="planted")
    img = np.asarray(Image.open(path).convert("RGB"))
    assert img.shape[1] == 600 and img.shape[0] > 400           # 2 views x 300, 2 rows x 200 + colour bar
    r, g, b = (img[..., i].astype(int) for i in range(3))
    red = (r > g + 60) & (r > b + 40)
    assert red[:200].mean() > 0.05          # top row: left hemisphere, coloured
    assert red[200:400].mean() < 0.001      # bottom row: right hemisphere, not
    from engine.errors import ConfigError

    with pytest.raises(ConfigError, match="expected some of"):
        export_views(session.surface, values, style, tmp_path / "bad.png", views=("sideways",))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.png"]


def test_export_movie_frames_and_layout(qtbot, session, tmp_path):
    import av

    from gui.figure_export import export_movie

    run = session.run_names[0]
    path, n = export_movie(session, run, "measured", 1.0, 3.0, tmp_path / "m.mp4", fps=5.0, panel_size=(160, 120))
    assert n == 10
    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 10
    h, w = frames[0].shape[:2]
    assert h == 240 and w > 320           # two 120-px cortex panels stacked, the stimulus frame beside them
    # the cortex half changes between TRs (TR 1 s: frames 0 and 5 are one TR apart)
    brain0, brain5 = frames[0][:, -160:].astype(int), frames[5][:, -160:].astype(int)
    assert np.abs(brain0 - brain5).mean() > 1.0
    from engine.errors import ConfigError

    with pytest.raises(ConfigError, match="expected 'measured' or 'predicted'"):
        export_movie(session, run, "score", 0, 1, tmp_path / "x.mp4")


def test_movie_dialog_writes_the_movie_in_the_background(qtbot, window, synthetic, tmp_path):
    """File > Export movie…: the dialog's request runs as a job (a child process draws it);
    the window keeps handling events while it runs; the MP4 has fps x duration frames with
    the stimulus beside one cortex column per chosen view."""
    import time

    import av
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QDialogButtonBox

    from engine.errors import ConfigError

    window.project_path = synthetic.project_path      # the window shows the synthetic project
    dialog = window.open_movie_dialog()
    assert dialog is not None and dialog.isVisible()
    assert dialog.layer_box.count() == 2
    dialog.start_spin.setValue(1.0)
    dialog.stop_spin.setValue(2.0)
    dialog.fps_spin.setValue(4)
    dialog.view_checks["medial"].setChecked(True)
    out = tmp_path / "clips" / "movie.mp4"
    dialog.out_edit.setText(str(out))
    dialog.view_checks["lateral"].setChecked(False)
    dialog.view_checks["medial"].setChecked(False)
    dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.Ok).click()
    assert dialog.isVisible() and "movie views" in dialog.message.text()    # nothing chosen: said, not run
    with pytest.raises(ConfigError):
        dialog.request()
    dialog.view_checks["lateral"].setChecked(True)
    dialog.view_checks["medial"].setChecked(True)
    started = []
    window.jobs.job_started.connect(started.append)
    ticks = []
    timer = QTimer(interval=50, timeout=lambda: ticks.append(time.monotonic()))
    timer.start()
    dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.Ok).click()
    assert not dialog.isVisible() and len(started) == 1
    handle = started[0]
    qtbot.waitUntil(lambda: not handle.running, timeout=120000)
    timer.stop()
    assert handle.state == "finished", handle.error
    # the event loop ran all along: no gap of a second between two 50 ms ticks
    assert len(ticks) > 10 and max(b - a for a, b in zip(ticks, ticks[1:])) < 1.0
    assert out.exists() and sorted(p.name for p in out.parent.iterdir()) == ["movie.mp4"]
    with av.open(str(out)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 4                                  # 1 s at 4 frames/s
    h, w = frames[0].shape[:2]
    assert h == 720 and w > 2 * 480                          # two 360-px rows; lateral + medial columns
    assert "Movie written" in window.status_label.text() and "4 frames" in window.status_label.text()


def test_cancelling_the_movie_job_leaves_no_file(qtbot, session, synthetic, tmp_path):
    from engine.jobs import Job
    from gui.movie_export import MovieRequest, movie_job
    from gui.workers import JobManager

    out = tmp_path / "clips" / "long.mp4"
    out.parent.mkdir()
    request = MovieRequest(project=str(synthetic.project_path), run=session.run_names[0], layer="measured",
                           start_s=0.0, stop_s=5.0, fps=30.0, out=str(out), result=session.result_name)
    manager = JobManager()
    frames = []
    handle = manager.start(Job("movie", lambda token: movie_job(request, token)))
    handle.progress.connect(lambda p: frames.append(p.step) if p.total else None)
    qtbot.waitUntil(lambda: len(frames) > 0 or not handle.running, timeout=60000)
    assert handle.running, handle.error
    handle.cancel()
    qtbot.waitUntil(lambda: not handle.running, timeout=30000)
    assert handle.state == "cancelled"
    assert frames[-1] < 150 and list(out.parent.iterdir()) == []     # stopped early; no file, no temporary
