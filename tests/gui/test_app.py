"""The application as a user starts it: imports, `main.py gui` with a screenshot, VTK cleanup."""

import gc
import json
import os
import subprocess
import sys
import weakref
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def env_offscreen():
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", HF_HUB_OFFLINE="1")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def load_png(path):
    from PySide6.QtGui import QImage

    img = QImage(str(path)).convertToFormat(QImage.Format_RGB888)
    ptr = img.constBits()
    a = np.frombuffer(ptr, np.uint8, img.sizeInBytes()).reshape(img.height(), img.bytesPerLine())
    return a[:, : img.width() * 3].reshape(img.height(), img.width(), 3).copy()


def crop(img, rect, ratio=1.0):
    x, y, w, h = (int(round(v * ratio)) for v in rect)
    return img[y:y + h, x:x + w]


def n_colours(region):
    flat = region.reshape(-1, 3).astype(np.int64)
    return len(np.unique(flat[:, 0] * 65536 + flat[:, 1] * 256 + flat[:, 2]))


def hot_pixels(region):
    """Pixels in the red-yellow part of the score colour map (not grey, not the dark background)."""
    r, g, b = (region[..., i].astype(int) for i in range(3))
    return int(((r > 150) & (r - b > 90) & (g < r)).sum())


def check_screenshot(png: Path, min_hot=100):
    meta = json.loads(png.with_suffix(".json").read_text())
    img = load_png(png)
    ratio = meta["device_pixel_ratio"]
    panes = meta["panes"]
    assert img.shape[1] == int(round(panes["window"][2] * ratio))
    cortex = crop(img, panes["cortex_3d"], ratio)
    video = crop(img, panes["video_frame"], ratio)
    plot = crop(img, panes["timecourse_plot"], ratio)
    assert cortex.size and video.size and plot.size
    assert cortex.std() > 20, cortex.std()
    assert n_colours(cortex) > 500
    assert hot_pixels(cortex) > min_hot                    # the score map is coloured
    grey = (np.abs(cortex[..., 0].astype(int) - cortex[..., 2]) < 8) & (cortex[..., 0] > 90)
    assert grey.sum() > 1000                                # ... on a grey cortex
    assert video.std() > 10 and n_colours(video) > 8
    # the time course: measured (dark) and predicted (orange) curves on white
    assert (plot.reshape(-1, 3) == 255).all(1).mean() > 0.5
    orange = (plot[..., 0] > 200) & (plot[..., 1] > 60) & (plot[..., 1] < 130) & (plot[..., 2] < 60)
    assert orange.sum() > 50
    return meta, img


def test_main_gui_screenshot_offscreen_imports_no_torch(synthetic, tmp_path):
    """`main.py gui PROJECT --screenshot` in a fresh process: the PNG shows every pane, and
    starting the GUI (window built, project open) loaded no torch / transformers."""
    png = tmp_path / "shot.png"
    code = f"""
import sys, main
code = main.main(['gui', {str(synthetic.project_path)!r}, '--screenshot', {str(png)!r}])
heavy = sorted(m for m in ('torch', 'transformers', 'tensorflow', 'jax') if m in sys.modules)
print('HEAVY', heavy, 'CODE', code)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         env=env_offscreen(), timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "HEAVY [] CODE 0" in out.stdout, out.stdout + out.stderr[-2000:]
    meta, _ = check_screenshot(png, min_hot=50)
    assert meta["interactive_3d"] is False
    assert meta["target"] and meta["target"].startswith("vertex ")


def test_a_bad_project_shows_an_error_and_the_window_stays(qtbot, tmp_path):
    from gui.main_window import MainWindow

    w = MainWindow(interactive_3d=False)
    qtbot.addWidget(w)
    (tmp_path / "broken.alignscope.json").write_text("{not json")
    assert not w.open_project(tmp_path / "broken.alignscope.json")
    assert "expected JSON" in w.last_error_box.text()
    assert not w.open_project(tmp_path / "nowhere")
    assert "expected" in w.errors_shown[-1][1]
    w.close()


def test_closing_the_cortex_view_leaves_no_vtk_window(qtbot, session):
    """Like MNE's brain_gc: after closing, no render window or plotter survives."""
    from engine.state import AppState
    from gui.cortex_view import CortexView, live_plotter_count

    state = AppState(session.timeline())
    view = CortexView(state, session, interactive=False)
    qtbot.addWidget(view)
    view.resize(500, 400)
    view.show()
    view.refresh(force=True)
    ren_win = weakref.ref(view.plotter.ren_win)
    plotter = weakref.ref(view.plotter)
    assert live_plotter_count() == 1
    view.close()
    del view
    gc.collect()
    assert live_plotter_count() == 0
    assert ren_win() is None and plotter() is None
    assert state.events.time.callbacks == [] and state.events.target.callbacks == []


def test_main_gui_with_a_missing_project_reports_and_exits(tmp_path):
    png = tmp_path / "shot.png"
    out = subprocess.run([sys.executable, "main.py", "gui", str(tmp_path / "nowhere.alignscope.json"),
                          "--screenshot", str(png)], capture_output=True, text=True, cwd=REPO,
                         env=env_offscreen(), timeout=60)
    assert out.returncode == 2
    assert "expected" in out.stderr and "nowhere.alignscope.json" in out.stderr
    assert png.exists()   # the window (with its error) is still rendered


def test_many_qt_calls_do_not_exhaust_none():
    """PySide6 6.12.0 on Python 3.11 drops a reference to None in every void method call;
    unprotected, Python aborts after some thousands of calls (seconds of playback)."""
    code = """
import sys
from gui.app import make_application
from PySide6.QtWidgets import QLabel
app = make_application()
label = QLabel()
for _ in range(300_000):
    label.setMinimumWidth(3)
print("SURVIVED", sys.getrefcount(None) > 0)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         env=env_offscreen(), timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "SURVIVED True" in out.stdout
