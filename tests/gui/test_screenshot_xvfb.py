"""The demo as a user sees it on a real X server (Xvfb): the 3D pane is a pyvistaqt QtInteractor.

Starts its own Xvfb on a free display number; skips cleanly where Xvfb is missing or cannot
start. The demo project is the test session's copy (``demo_project`` in tests/conftest.py).
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.gui.test_app import REPO, check_screenshot, crop, hot_pixels

pytestmark = pytest.mark.xvfb


def _free_display() -> int:
    for n in range(90, 190):
        if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists():
            return n
    pytest.skip("no free X display number between :90 and :189")


@pytest.fixture(scope="module")
def xvfb_display():
    exe = shutil.which("Xvfb")
    if exe is None:
        pytest.skip("Xvfb is not installed (the Makefile installs it as root: apt-get install xvfb)")
    n = _free_display()
    proc = subprocess.Popen([exe, f":{n}", "-screen", "0", "1600x1000x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not Path(f"/tmp/.X11-unix/X{n}").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.skip(f"Xvfb could not start on :{n}")
        time.sleep(0.05)
    yield f":{n}"
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_demo_screenshot_under_xvfb(xvfb_display, demo_project, tmp_path):
    png = tmp_path / "demo.png"
    # ALIGNSCOPE_DEMO_DIR: `--demo` opens the session's demo copy (tests/conftest.py), not the user's
    env = dict(os.environ, DISPLAY=xvfb_display, QT_QPA_PLATFORM="xcb", HF_HUB_OFFLINE="1",
               ALIGNSCOPE_DEMO_DIR=str(demo_project.parent))
    out = subprocess.run([sys.executable, "main.py", "gui", "--demo", "--screenshot", str(png)],
                         capture_output=True, text=True, cwd=REPO, env=env, timeout=400)
    if out.returncode != 0 and "could not connect to display" in out.stderr:
        pytest.skip("Qt could not use the Xvfb display")
    assert out.returncode == 0, out.stderr[-3000:]
    meta, img = check_screenshot(png, min_hot=300)
    assert meta["interactive_3d"] is True            # the real QtInteractor, not the fallback
    # the best-predicted vertex is selected at start, and is coloured on the cortex
    assert meta["target"].startswith("vertex ")
    cortex = crop(img, meta["panes"]["cortex_3d"], meta["device_pixel_ratio"])
    h, w = cortex.shape[:2]
    quadrants = [cortex[:h // 2, :w // 2], cortex[:h // 2, w // 2:], cortex[h // 2:, :w // 2], cortex[h // 2:, w // 2:]]
    # four views of the brain, each showing cortex (not background) pixels
    background = np.array([0x1e, 0x22, 0x27])
    for q in quadrants:
        brain = np.abs(q.astype(int) - background).sum(axis=2) > 40
        assert brain.mean() > 0.2, brain.mean()
    assert sum(hot_pixels(q) > 20 for q in quadrants) >= 2


def test_demo_attention_screenshot_under_xvfb(xvfb_display, demo_project, tmp_path):
    """`main.py gui --demo` with the MiniLM attention on: the words of the context sit under the
    video, shaded by attention, and the frame itself is untouched (token attention)."""
    png = tmp_path / "attention.png"
    env = dict(os.environ, DISPLAY=xvfb_display, QT_QPA_PLATFORM="xcb", HF_HUB_OFFLINE="1",
               ALIGNSCOPE_DEMO_DIR=str(demo_project.parent), ALIGNSCOPE_ATTENTION="minilm")
    # --time 30: half a minute in, where the speaker has said some thirty words (TR 0 has none yet)
    out = subprocess.run([sys.executable, "main.py", "gui", "--demo", "--time", "30", "--screenshot", str(png)],
                         capture_output=True, text=True, cwd=REPO, env=env, timeout=400)
    if out.returncode != 0 and "could not connect to display" in out.stderr:
        pytest.skip("Qt could not use the Xvfb display")
    assert out.returncode == 0, out.stderr[-3000:]
    meta, img = check_screenshot(png, min_hot=300)
    att = meta["attention"]
    assert att["name"] == "minilm" and att["kind"] == "tokens" and att["tokens_visible"]
    assert att["label"] == f"TR {att['tr']} shown" and att["tr"] == 20          # 30 s / 1.49 s
    ratio = meta["device_pixel_ratio"]
    strip = crop(img, meta["panes"]["attention_tokens"], ratio)
    video = crop(img, meta["panes"]["video_frame"], ratio)
    assert strip.shape[0] >= 30 and strip.shape[1] > 300
    # amber token boxes (the most attended word fully shaded) on the dark strip
    r, g, b = (strip[..., i].astype(int) for i in range(3))
    assert ((r > 200) & (g > 120) & (g < 200) & (b < 90)).sum() > 100
    assert video.std() > 10                                  # the frame is still the frame


CLICK_SCRIPT = """
import sys
import numpy as np
from PySide6.QtCore import QPoint, Qt, QTimer
from PySide6.QtTest import QTest
from gui.app import make_application
from gui.main_window import MainWindow
app = make_application()
w = MainWindow()
w.show()
assert w.open_project(sys.argv[1]), w.errors_shown
out = []
def go():
    cv = w.cortex_view
    surf = w.session.surface
    out.append(f"INTERACTIVE {cv.interactive}")
    for v in (int(np.argmin(surf.left.coords[:, 0])), surf.n_left + int(np.argmax(surf.right.coords[:, 0]))):
        x, y = cv.project_vertex(v, "lateral")
        QTest.mouseClick(cv.host, Qt.LeftButton, Qt.NoModifier, QPoint(int(round(x)), int(round(y))))
        QTest.qWait(50)
        t = w.state.target
        d = float(np.linalg.norm(w.session.surface.combined()[0][t.vertex] - w.session.surface.combined()[0][v]))
        same = np.array_equal(w.timecourse_view.measured, w.session.roi_timecourse(w.state.run, t)[1])
        out.append(f"PICK {v} {t.vertex} {d:.2f} {same}")
    import gc, weakref
    ren_win = weakref.ref(cv.plotter.ren_win)
    w.close()
    gc.collect()
    from gui.cortex_view import live_plotter_count
    out.append(f"LIVE {live_plotter_count()} {ren_win() is None}")
    app.quit()
QTimer.singleShot(800, go)
app.exec()
print("\\n".join(out))
"""


def test_clicking_the_qtinteractor_selects_a_vertex(xvfb_display, synthetic):
    env = dict(os.environ, DISPLAY=xvfb_display, QT_QPA_PLATFORM="xcb", HF_HUB_OFFLINE="1",
               PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", CLICK_SCRIPT, str(synthetic.project_path)], capture_output=True,
                         text=True, cwd=REPO, env=env, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.split("\n")
    assert "INTERACTIVE True" in lines
    picks = [ln.split() for ln in lines if ln.startswith("PICK")]
    assert len(picks) == 2
    assert "LIVE 0 True" in lines      # closing the window closed the interactor's VTK window
    for _, v, got, dist_mm, same in picks:
        assert float(dist_mm) < 4.0 and same == "True", picks
