"""What the application remembers: recent projects, last folder, per-project camera, session, preferences."""

import json

import pytest


def test_recent_projects_last_folder_camera_and_preferences(tmp_path):
    from engine.errors import ConfigError
    from gui.state_store import MAX_RECENT, StateStore

    cfg = tmp_path / "cfg"
    store = StateStore(cfg)
    projects = []
    for i in range(MAX_RECENT + 2):
        p = tmp_path / f"p{i}" / "x.alignscope.json"
        p.parent.mkdir()
        p.write_text("{}")
        projects.append(p)
        store.add_recent(p)
    store.add_recent(projects[3])                       # reopened: moves to the top, no duplicate
    recent = [r["path"] for r in store.recent()]
    assert recent[0] == str(projects[3].resolve()) and len(recent) == MAX_RECENT and len(set(recent)) == MAX_RECENT
    projects[3].unlink()
    again = StateStore(cfg)                             # read back from disk
    assert again.recent()[0] == {"path": str(projects[3].resolve()), "exists": False}   # marked, not dropped
    assert again.last_folder() == str(projects[3].parent.resolve())
    again.set_camera(projects[1], {"view": "ventral"})
    assert StateStore(cfg).camera(projects[1]) == {"view": "ventral"}
    assert StateStore(cfg).camera(projects[2]) is None  # never carried to another project
    assert again.preferences() == {"theme": "light", "device": "auto", "cache_dir": ""}
    again.set_preferences(theme="dark", device="cpu")
    assert StateStore(cfg).preferences()["theme"] == "dark"
    with pytest.raises(ConfigError, match="expected one of"):
        again.set_preferences(theme="purple")
    again.set_session({"project": str(projects[1]), "time_s": 12.5, "target": "vertex 7"})
    assert StateStore(cfg).session()["time_s"] == 12.5


def test_a_damaged_state_file_is_set_aside(tmp_path):
    from gui.state_store import StateStore

    (tmp_path / "state.json").write_text("{not json")
    store = StateStore(tmp_path)
    assert store.load_error and "set aside" in store.load_error
    assert (tmp_path / "state.json.bad").exists()
    store.add_recent(tmp_path / "a.alignscope.json")
    assert json.loads((tmp_path / "state.json").read_text())["recent"]


def test_window_remembers_project_camera_and_session(window, synthetic, tmp_path):
    from gui.state_store import StateStore, attach

    store = attach(window, StateStore(tmp_path))
    assert window.open_project(synthetic.project_path)
    key = str(synthetic.project_path.resolve())
    assert key in window.windowTitle()
    assert store.recent()[0]["path"] == key
    file_menu = next(a.menu() for a in window.menuBar().actions() if a.text().replace("&", "") == "File")
    recent = next(a.menu() for a in file_menu.actions() if a.text() == "Open recent")
    assert [a.text() for a in recent.actions()] == [key]
    window.cortex_view.set_view("ventral")
    window.state.time = 2.5
    window.close()
    again = StateStore(tmp_path)
    assert again.camera(synthetic.project_path)["view"] == "ventral"
    assert again.session()["project"] == key and again.session()["time_s"] == 2.5


def test_region_picker_groups_by_hemisphere_and_network_and_searches(qtbot):
    from gui.cortex_controls import RegionPicker, group_regions

    names = ["7Networks_LH_Vis_1", "7Networks_LH_Vis_2", "7Networks_RH_Vis_1", "7Networks_LH_Default_Temp_1",
             "7Networks_RH_SomMot_3"]
    g = group_regions(names)
    assert g["left"]["Vis"] == ["7Networks_LH_Vis_1", "7Networks_LH_Vis_2"]
    assert g["left"]["Default"] == ["7Networks_LH_Default_Temp_1"] and g["right"]["SomMot"] == ["7Networks_RH_SomMot_3"]
    assert group_regions(["lh.superiorfrontal", "R_V1_ROI"]) == {"left": {"other": ["lh.superiorfrontal"]},
                                                                 "right": {"other": ["R_V1_ROI"]}}
    picker = RegionPicker(names)
    qtbot.addWidget(picker)
    picker.search.setText("vis rh")
    assert picker.shown == ["7Networks_RH_Vis_1"]
    with qtbot.waitSignal(picker.picked) as sig:
        picker.search.returnPressed.emit()
    assert sig.args == ["7Networks_RH_Vis_1"]


_PROBE = """
import json, sys
from argparse import Namespace
from PySide6.QtCore import QTimer
import gui.app as A
app = A.make_application()
def probe():
    from gui.main_window import MainWindow
    w = [w for w in app.topLevelWidgets() if isinstance(w, MainWindow)][0]
    menus = {a.text().replace('&', ''): a.menu() for a in w.menuBar().actions() if a.menu() is not None}
    recent = [a.menu() for a in menus['File'].actions() if a.text() == 'Open recent']
    print('PROBE', json.dumps({'title': w.windowTitle(), 'has_recent': bool(recent),
          'recent': [a.text() for a in recent[0].actions()] if recent else [],
          'time_s': float(w.state.time) if w.session is not None else None}))
    if w.session is not None:
        w.state.time = 2.5   # saved with the session at close
    w.close(); app.quit()
QTimer.singleShot(2500, probe)
code = A.run(Namespace(project=sys.argv[1] or None, demo=False, screenshot=None, quit_after=None, attention=None))
sys.exit(code)
"""


def _run_app(project, cfg):
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", HF_HUB_OFFLINE="1", ALIGNSCOPE_CONFIG_DIR=str(cfg))
    env["PYTHONPATH"] = str(repo) + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", _PROBE, str(project or "")], capture_output=True, text=True,
                         cwd=repo, env=env, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("PROBE ")]
    assert line, out.stdout + out.stderr[-2000:]
    return json.loads(line[0][6:])


def test_the_app_remembers_the_project_and_restores_the_session(synthetic, tmp_path):
    """`main.py gui PROJECT`: "Open recent" in File, the project's path in the title; then
    `main.py gui` with no project reopens it at the time it was closed at; nothing is written
    outside the configuration folder the environment names."""
    from pathlib import Path

    cfg = tmp_path / "cfg"
    path = str(Path(synthetic.project_path).resolve())
    first = _run_app(synthetic.project_path, cfg)
    assert first["has_recent"]
    assert path in first["title"]
    assert first["recent"] == [path]
    assert (cfg / "state.json").exists()
    saved = json.loads((cfg / "state.json").read_text())
    assert saved["session"]["project"] == path and saved["session"]["time_s"] == 2.5
    again = _run_app(None, cfg)                            # no project asked for: the last session
    assert path in again["title"]
    assert again["time_s"] == 2.5


def test_gui_tests_never_write_the_users_config():
    import os

    from gui.state_store import config_dir

    assert "alignscope-test-config-" in str(config_dir())
    assert os.environ["ALIGNSCOPE_CONFIG_DIR"] == str(config_dir())


def test_the_about_box_lists_the_versions():
    import platform
    import sys
    from importlib import metadata

    import numpy
    import PySide6
    from PySide6.QtCore import qVersion

    from engine import __version__
    from gui.state_store import about_text

    before = "torch" in sys.modules
    text = about_text()
    assert f"AlignScope: {__version__}" in text
    assert f"Python: {platform.python_version()}" in text
    assert f"PySide6: {PySide6.__version__}" in text and f"Qt: {qVersion()}" in text
    from vtkmodules.vtkCommonCore import vtkVersion

    assert f"pyvista: {metadata.version('pyvista')}" in text and f"VTK: {vtkVersion.GetVTKVersion()}" in text
    assert f"torch: {metadata.version('torch')}" in text and f"numpy: {numpy.__version__}" in text
    assert ("torch" in sys.modules) == before          # the About box does not load torch


def test_open_and_save_dialogs_start_in_the_last_folder_used(qtbot, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    from gui.main_window import MainWindow
    from gui.state_store import StateStore, attach

    cfg = tmp_path / "cfg"
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    w = MainWindow(interactive_3d=False)
    qtbot.addWidget(w)
    attach(w, StateStore(cfg))
    w.state_store.set_last_folder(first)
    asked = []
    opened = []
    monkeypatch.setattr(w, "open_project", lambda p, **_k: opened.append(p) or False)
    monkeypatch.setattr(w, "save_screenshot", lambda p: opened.append(p))
    monkeypatch.setattr(QFileDialog, "getOpenFileName",
                        lambda *a, **_k: (asked.append(a[2]), (str(second / "p.alignscope.json"), ""))[1])
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **_k: (asked.append(a[2]), str(first))[1])
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        lambda *a, **_k: (asked.append(a[2]), (str(second / "shot.png"), ""))[1])
    w._choose_project_file()                               # starts in the folder set above, chooses in second/
    assert asked[-1] == str(first) and opened[-1] == str(second / "p.alignscope.json")
    assert StateStore(cfg).last_folder() == str(second)    # remembered on disk
    w._choose_project_folder()                             # starts in second/, chooses first/
    assert asked[-1] == str(second)
    w._choose_screenshot()                                 # starts in first/, with a file name
    assert asked[-1] == str(first / "alignscope.png")
    assert StateStore(cfg).last_folder() == str(second)
    w.close()


def test_qsettings_of_gui_tests_live_in_a_temporary_folder(qapp):
    from PySide6.QtCore import QSettings

    from gui.state_store import config_dir

    path = QSettings("AlignScope", "AlignScope").fileName()
    assert path.startswith(str(config_dir())), path
