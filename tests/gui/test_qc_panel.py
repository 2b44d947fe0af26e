"""The Quality checks dock: table of checks with pass/warn/fail, and the view behind each one.

- on the main window (synthetic session): the dock is a tab beside Regions with menu entries,
  a run of the checks through the job manager fills the table, the reliability map goes to the
  cortex view, the carpet has a cursor at the current time;
- on generated data with planted faults (a shifted run, a motion stretch): failures are red,
  the motion and sync views show the flagged volumes and the estimated offset;
- under Xvfb (a real X server), the window on the demo project with one planted fault (a run
  shifted by 3 TRs) is saved as a PNG and checked.

``python tests/gui/test_qc_panel.py OUT.png DEMO_DIR`` writes that screenshot by hand.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


# ---- on the main window ------------------------------------------------------------------------
def test_qc_dock_on_the_main_window(window, qtbot):
    from PySide6.QtCore import Qt

    from gui.qc_panel import LEVEL_COLORS, QCPanel

    dock = window.qc_dock
    panel = dock.widget()
    assert isinstance(panel, QCPanel)
    assert dock in window.tabifiedDockWidgets(window.regions_dock)
    texts = {a.text() for m in window.menuBar().actions() if m.menu() for a in m.menu().actions()}
    assert "Quality checks" in texts and "Run quality checks" in texts

    with qtbot.waitSignal(panel.report_shown, timeout=120000) as blocker:
        handle = panel.run_checks()
        assert handle is not None and handle.name == "Quality checks"   # a job, off the GUI thread
    report = blocker.args[0]
    assert panel.table.rowCount() == len(report.checks) > 10
    for row, c in enumerate(report.checks):
        item = panel.table.item(row, 0)
        assert item.foreground().color() == LEVEL_COLORS[c.level]
        assert panel.table.item(row, 3).text() == c.message
    # 6-TR runs: the sync cannot be measured, and says so
    assert {c.level for c in report.find("sync")} == {"warn"}

    # reliability map (2 runs of one subject) on the cortex, through the cortex view's API
    row = panel.row_of("reliability")
    rel = panel.visible_checks()[row]
    before = window.cortex_view.render_count
    dock.raise_()
    qtbot.waitUntil(lambda: panel.table.isVisible() and dock.height() >= 200, timeout=5000)
    panel.table.scrollToItem(panel.table.item(row, 1))
    rect = panel.table.visualItemRect(panel.table.item(row, 1))
    qtbot.mouseClick(panel.table.viewport(), Qt.LeftButton, pos=rect.center())
    qtbot.mouseDClick(panel.table.viewport(), Qt.LeftButton, pos=rect.center())
    assert panel.opened is rel
    assert window.cortex_view.render_count > before
    expected = window.session.to_vertices(rel.data["ceiling"])
    np.testing.assert_allclose(window.cortex_view.current_values, np.nan_to_num(expected, nan=0.0), rtol=1e-6)
    # per region (the bundled Schaefer-400 on fsaverage5): mean ceiling, near-zero regions marked
    from engine.io.atlases import load_atlas

    atlas = load_atlas("schaefer400", "fsaverage5")
    k = 17
    sel = np.asarray(atlas.labels) == k
    assert rel.details["per_region"][atlas.names[k - 1]] == pytest.approx(float(rel.data["ceiling"][sel].mean()))
    assert rel.details["near_zero_regions"] == [n for n, v in rel.details["per_region"].items() if v <= 0.01]
    # the open result's scores as a fraction of this ceiling
    assert panel.fraction_button.isVisibleTo(panel)
    qtbot.mouseClick(panel.fraction_button, Qt.LeftButton)
    ceiling = rel.data["ceiling"].astype(float)
    scores = np.asarray(window.session.result.scores, float)
    frac = np.where(ceiling > 0.01, scores / np.sqrt(np.where(ceiling > 0, ceiling, 1)), np.nan)
    np.testing.assert_allclose(window.cortex_view.current_values,
                               np.nan_to_num(window.session.to_vertices(frac.astype(np.float32)), nan=0.0), atol=1e-5)

    # carpet with a cursor at the current time
    panel.open_row(panel.row_of("global_signal", "sub-01_run-1"))
    assert panel.stack.currentWidget() is panel.carpet
    img = panel.carpet.image
    assert img.shape == (800, 6)                             # 20484 targets shown as 800 rows, 6 TRs
    window.state.time = 3.0
    r = panel.carpet.plot_rect()
    assert panel.carpet.cursor_x() == pytest.approx(r.left() + 3.0 / 6.0 * r.width())
    # what the image shows: detrended, z-scored rows of the run
    run = window.session.runs["sub-01_run-1"].data
    gs = [c for c in report.checks if c.name == "global_signal" and c.subject == "sub-01_run-1"][0]
    t = gs.data["carpet"]["targets"][5]
    y = run[:, t].astype(float)
    y = y - np.polyval(np.polyfit(np.arange(6), y, 1), np.arange(6))
    np.testing.assert_allclose(img[5], np.clip(y / y.std(), -3, 3), atol=1e-4)


# ---- planted faults --------------------------------------------------------------------------------
def test_qc_panel_shows_planted_faults(qtbot, tmp_path, tmp_path_factory):
    from engine.qc.run import qc_project
    from engine.state import AppState
    from gui.qc_panel import LEVEL_COLORS, LEVEL_TINTS, QCPanel
    from tests.engine.test_qc_engine import N_TRS, TR_S, _project, shared_study, write_confounds

    study = shared_study(tmp_path_factory)
    conf = tmp_path / "motion.tsv"
    write_confounds(conf, N_TRS, stretch=(20, 27))
    shifted = np.vstack([study.runs[1][3:], study.runs[1][-3:]])
    project = _project(study, tmp_path / "p", {"sub-01_run-1": study.runs[0], "sub-02_run-1": shifted},
                       confounds={"sub-01_run-1": conf})
    report = qc_project(project)
    state = AppState()
    panel = QCPanel(state)
    qtbot.addWidget(panel)
    panel.resize(1200, 360)
    panel.show()
    panel.set_report(report)
    fail_rows = [r for r, c in enumerate(panel.visible_checks()) if c.level == "fail"]
    assert [panel.visible_checks()[r].name for r in fail_rows] == ["sync"]
    assert panel.table.item(fail_rows[0], 0).text() == "FAIL"
    assert panel.table.item(fail_rows[0], 3).background().color() == LEVEL_TINTS["fail"]
    panel.only_problems.setChecked(True)
    assert {c.level for c in panel.visible_checks()} == {"warn", "fail"}
    assert panel.table.rowCount() == len(panel.visible_checks())

    # motion: FD trace, the threshold and the flagged volumes
    panel.open_row(panel.row_of("motion"))
    assert panel.stack.currentWidget() is panel.motion_page
    motion = report.find("motion")[0]
    assert motion.level == "warn"
    fd_plot, params_plot = panel.motion_fd, panel.motion_params
    np.testing.assert_allclose(fd_plot.flagged_x, np.arange(20, 28) * TR_S)
    assert fd_plot.threshold == 0.5
    np.testing.assert_allclose(fd_plot.series[0][2], motion.data["fd"])
    assert len(params_plot.series) == 6                               # trans x/y/z, rotations as mm
    np.testing.assert_allclose(params_plot.series[0][2], motion.data["params"][:, 0] - motion.data["params"][0, 0],
                               atol=1e-5)
    state.time = 30.0
    assert fd_plot.cursor == 30.0

    # sync: the lag curve with the expected (0) and the estimated offset
    panel.open_row(panel.row_of("sync", "sub-02_run-1"))
    offsets = {label.split()[0]: x for x, _c, label in panel.trace.vlines}
    assert offsets["expected"] == 0.0
    assert abs(offsets["best"] - (-3 * TR_S)) <= TR_S
    assert panel.trace.vlines[1][1] == LEVEL_COLORS["fail"].name()
    assert not panel.trace.follow_time
    panel.close_view()
    assert panel._on_time not in state.events.time.callbacks


# ---- Xvfb screenshot on the demo -------------------------------------------------------------------
def _free_display() -> int:
    for n in range(190, 260):
        if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists():
            return n
    pytest.skip("no free X display number between :190 and :259")


@pytest.mark.xvfb
def test_qc_panel_screenshot_under_xvfb(tmp_path):
    exe = shutil.which("Xvfb")
    if exe is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb)")
    n = _free_display()
    proc = subprocess.Popen([exe, f":{n}", "-screen", "0", "1600x1000x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not Path(f"/tmp/.X11-unix/X{n}").exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.skip(f"Xvfb could not start on :{n}")
            time.sleep(0.05)
        png = tmp_path / "qc_panel.png"
        env = dict(os.environ, DISPLAY=f":{n}", QT_QPA_PLATFORM="xcb", HF_HUB_OFFLINE="1")
        out = subprocess.run([sys.executable, __file__, str(png), str(tmp_path / "demo"), "60"],
                             capture_output=True, text=True, cwd=REPO, env=env, timeout=400)
        if out.returncode != 0 and "could not connect to display" in out.stderr:
            pytest.skip("Qt could not use the Xvfb display")
        assert out.returncode == 0, out.stderr[-3000:]
    finally:
        proc.terminate()
        proc.wait(5)
    import json

    from PIL import Image

    meta = json.loads(png.with_suffix(".json").read_text())
    assert meta["interactive_3d"] is True
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["fail"] == 1 and summary["failed"] == [["sync", "sub-01_run-3_shifted"]]
    img = np.asarray(Image.open(png).convert("RGB")).astype(int)
    ratio = meta["device_pixel_ratio"]
    x, y, w, h = (int(round(v * ratio)) for v in meta["qc_table"])
    table = img[y:y + h, x:x + w]
    red = (table[..., 0] > 180) & (table[..., 1] < 90) & (table[..., 2] < 90)      # the fail icon
    green = (table[..., 1] > 120) & (table[..., 0] < 90) & (table[..., 2] < 110)   # pass icons
    assert red.sum() > 20 and green.sum() > 100
    x, y, w, h = (int(round(v * ratio)) for v in meta["qc_view"])
    plot = img[y:y + h, x:x + w]
    assert (np.abs(plot - 255).sum(axis=2) > 60).mean() > 0.02                    # curves drawn, not blank


def _screenshot(out_png: Path, demo_dir: Path, duration_s: float) -> None:
    """The window on the demo with a run shifted by 3 TRs, the QC tab raised, the failing
    sync check opened; prints the QC summary as JSON on the last line."""
    import json

    from engine.demo import write_demo_project
    from engine.project import Project, RunRef

    if not (demo_dir / "demo.alignscope.json").exists():
        write_demo_project(demo_dir, duration_s=duration_s)
    p = Project.load(demo_dir / "demo.alignscope.json")
    if not any(r.name == "sub-01_run-3_shifted" for r in p.runs):
        d = np.load(demo_dir / "fmri/sub-01_run-1_fsaverage5.npy")
        np.save(demo_dir / "fmri/sub-01_run-3_shifted.npy", np.vstack([d[3:], d[-3:]]))   # 3 volumes lost
        ref = p.runs[0]
        p.runs.insert(2, RunRef("sub-01_run-3_shifted", "fmri/sub-01_run-3_shifted.npy", ref.episode, ref.subject,
                                ref.space, ref.tr_s))
        p.save(demo_dir / "demo.alignscope.json")

    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QApplication

    from gui.app import protect_none_refcount

    protect_none_refcount()
    app = QApplication.instance() or QApplication([])
    from gui.main_window import MainWindow

    w = MainWindow()
    w.resize(1500, 950)
    w.proxy_action.setChecked(False)          # no scrub-proxy transcode in the background
    w.show()
    assert w.open_project(demo_dir / "demo.alignscope.json")
    panel = w.qc_dock.widget()
    done = []
    panel.report_shown.connect(done.append)
    panel.run_checks()                        # a job on the worker thread, as a user runs it
    deadline = time.monotonic() + 300
    while not done and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.02)
    assert done, "the checks did not finish"
    w.qc_dock.show()
    w.qc_dock.raise_()
    for _ in range(10):
        app.processEvents()
    w.resizeDocks([w.qc_dock], [330], Qt.Vertical)
    w.state.time = 40.0
    panel.open_row(panel.row_of("tsnr", "sub-01_run-3_shifted"))     # tSNR on the cortex
    panel.open_row(panel.row_of("sync", "sub-01_run-3_shifted"))     # the failure's view
    for _ in range(30):
        app.processEvents()
        time.sleep(0.02)
    w.save_screenshot(out_png)
    meta = json.loads(out_png.with_suffix(".json").read_text())

    def rect(widget):
        tl = widget.mapTo(w, widget.rect().topLeft())
        return [tl.x(), tl.y(), widget.width(), widget.height()]

    meta["qc_table"] = rect(panel.table.viewport())
    meta["qc_view"] = rect(panel.stack)
    out_png.with_suffix(".json").write_text(json.dumps(meta, indent=2))
    report = done[0]
    w.close()
    print(json.dumps({**report.summary, "failed": [[c.name, c.subject] for c in report.checks if c.failed]}))


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    _screenshot(Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]) if len(sys.argv) > 3 else 120.0)


def test_reliability_text_per_region_and_loso(qtbot):
    """The reliability note lists the regions by ceiling and the leave-one-subject-out ISC per ROI."""
    from engine.qc.reliability import check_reliability
    from gui.qc_panel import reliability_text

    rng = np.random.default_rng(0)
    s = rng.standard_normal((200, 3))
    runs = {f"s{k}": s * np.array([1.0, 0.5, 0.0]) + rng.standard_normal((200, 3)) for k in range(5)}
    c = check_reliability("story / parcels", runs, {k: k for k in runs}, ["LATL", "LIFG", "NOISE"])
    text = reliability_text(c)
    first = text.splitlines()[0]
    assert first.index("LATL") < first.index("LIFG") < first.index("NOISE")
    assert "Near zero (<= 0.01, read their scores with care): NOISE" in text
    loso = c.details["loso_isc_mean"]
    assert f"LATL {loso[0]:.2f}, LIFG {loso[1]:.2f}" in text
