"""What the application remembers between sessions: recent projects, the last folder of the
open/save dialogs, the session to restore (project, result, run, selection, time, layer,
window layout), the cortex camera per project (never carried to another project) and the
preferences (theme, default device, cache folder).

One JSON file, ``state.json`` in the configuration folder (``ALIGNSCOPE_CONFIG_DIR``, else
Qt's AppConfigLocation), written atomically; a damaged file is set aside (``.bad``) and the
defaults are used, so a bad file never stops the application from starting.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional

MAX_RECENT = 10
THEMES = ("light", "dark")
DEVICES = ("auto", "cpu", "cuda")
DEFAULT_PREFERENCES = {"theme": "light", "device": "auto", "cache_dir": ""}


def config_dir() -> Path:
    """Folder of ``state.json`` (``ALIGNSCOPE_CONFIG_DIR`` when set, for tests and portable installs)."""
    env = os.environ.get("ALIGNSCOPE_CONFIG_DIR")
    if env:
        return Path(env)
    from PySide6.QtCore import QStandardPaths

    return Path(QStandardPaths.writableLocation(QStandardPaths.AppConfigLocation) or Path.home() / ".alignscope")


def _key(project_path) -> str:
    return str(Path(project_path).expanduser().resolve())


class StateStore:
    """Read once, changed through methods, each change written at once (atomically)."""

    def __init__(self, folder: Optional[Path] = None) -> None:
        self.path = Path(folder or config_dir()) / "state.json"
        self.data: Dict[str, Any] = {}
        self.load_error: Optional[str] = None
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                if not isinstance(data, dict):
                    raise ValueError(f"expected a JSON object, found {type(data).__name__}")
                self.data = data
            except (OSError, ValueError) as exc:
                self.load_error = f"{self.path}: {exc} (set aside as {self.path.name}.bad; defaults used)"
                try:
                    os.replace(self.path, self.path.with_name(self.path.name + ".bad"))
                except OSError:
                    pass

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.path)

    # ---- recent projects and the last folder --------------------------------------------------
    def add_recent(self, project_path) -> None:
        key = _key(project_path)
        recent = [p for p in self.data.get("recent", []) if p != key]
        self.data["recent"] = [key] + recent[: MAX_RECENT - 1]
        self.data["last_folder"] = str(Path(key).parent)
        self.save()

    def recent(self) -> List[Dict[str, Any]]:
        """Recent projects, newest first: ``{"path", "exists"}`` (a moved project is marked, not dropped)."""
        return [{"path": p, "exists": Path(p).exists()} for p in self.data.get("recent", [])]

    def last_folder(self) -> str:
        folder = self.data.get("last_folder", "")
        return folder if folder and Path(folder).is_dir() else str(Path.home())

    def set_last_folder(self, folder) -> None:
        self.data["last_folder"] = str(Path(folder))
        self.save()

    # ---- per-project cortex camera ------------------------------------------------------------
    def camera(self, project_path) -> Optional[dict]:
        return self.data.get("cameras", {}).get(_key(project_path))

    def set_camera(self, project_path, state: dict) -> None:
        self.data.setdefault("cameras", {})[_key(project_path)] = state
        self.save()

    # ---- session restore ----------------------------------------------------------------------
    def set_session(self, session: Dict[str, Any]) -> None:
        """``{"project", "result", "run", "target", "time_s", "layer", "geometry", "window_state"}``."""
        self.data["session"] = dict(session)
        self.save()

    def session(self) -> Optional[Dict[str, Any]]:
        s = self.data.get("session")
        return s if isinstance(s, dict) and s.get("project") else None

    # ---- preferences --------------------------------------------------------------------------
    def preferences(self) -> Dict[str, Any]:
        prefs = dict(DEFAULT_PREFERENCES)
        prefs.update({k: v for k, v in self.data.get("preferences", {}).items() if k in DEFAULT_PREFERENCES})
        if prefs["theme"] not in THEMES:
            prefs["theme"] = DEFAULT_PREFERENCES["theme"]
        if prefs["device"] not in DEVICES:
            prefs["device"] = DEFAULT_PREFERENCES["device"]
        return prefs

    def set_preferences(self, **changes) -> Dict[str, Any]:
        from engine.errors import ConfigError

        if "theme" in changes and changes["theme"] not in THEMES:
            raise ConfigError(f"theme: expected one of {list(THEMES)}, found {changes['theme']!r}")
        if "device" in changes and changes["device"] not in DEVICES:
            raise ConfigError(f"device: expected one of {list(DEVICES)}, found {changes['device']!r}")
        unknown = set(changes) - set(DEFAULT_PREFERENCES)
        if unknown:
            raise ConfigError(f"preferences: expected keys {sorted(DEFAULT_PREFERENCES)}, found {sorted(unknown)}")
        prefs = self.preferences()
        prefs.update(changes)
        self.data["preferences"] = prefs
        self.save()
        return prefs


# ---- the window side: recent menu, camera per project, session, preferences, help ----------------
SHORTCUTS = (("Space", "play / pause"), ("← / →", "previous / next TR"), (", / .", "previous / next video frame"),
             ("Home / End", "start / end of the episode"), ("M", "mute / unmute the sound"),
             ("Ctrl+O", "open a project"), ("Ctrl+R", "new analysis"),
             ("mouse wheel (plot)", "zoom the time course; drag pans"),
             ("drag / wheel (cortex)", "turn / zoom the cortex; click picks a vertex"))
GUIDE = Path(__file__).resolve().parents[1] / "docs" / "guide" / "index.md"


def _apply_theme(theme: str) -> None:
    from PySide6.QtGui import QColor, QPalette
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        return
    if theme == "dark":
        p = QPalette()
        for role, colour in ((QPalette.Window, "#2b2f34"), (QPalette.WindowText, "#e1e5ea"), (QPalette.Base, "#1f2226"),
                             (QPalette.AlternateBase, "#2b2f34"), (QPalette.Text, "#e1e5ea"), (QPalette.Button, "#353a40"),
                             (QPalette.ButtonText, "#e1e5ea"), (QPalette.Highlight, "#1971c2"),
                             (QPalette.HighlightedText, "#ffffff"), (QPalette.ToolTipBase, "#353a40"),
                             (QPalette.ToolTipText, "#e1e5ea")):
            p.setColor(role, QColor(colour))
        app.setPalette(p)
    else:
        app.setPalette(app.style().standardPalette())


def attach(window, store: Optional[StateStore] = None) -> StateStore:
    """Give ``window`` (a :class:`gui.main_window.MainWindow`) a memory: "Open recent" and
    "Preferences…" in the File menu, the project's path in the title, its cortex camera
    restored (and saved when another project opens or the window closes), the session saved
    at close, the preferences applied, "Keyboard shortcuts" and "User's guide" in Help."""
    from PySide6.QtCore import QEvent, QObject, QUrl
    from PySide6.QtGui import QDesktopServices
    from PySide6.QtWidgets import QMessageBox

    store = store or StateStore()
    window.state_store = store
    prefs = store.preferences()
    _apply_theme(prefs["theme"])
    if prefs["cache_dir"]:
        os.environ["ALIGNSCOPE_CACHE_DIR"] = prefs["cache_dir"]
    current = {"path": None}

    def save_camera() -> None:
        if current["path"] is not None and window.cortex_view.plotter is not None:
            store.set_camera(current["path"], window.cortex_view.camera_state())

    def opened(path: str) -> None:
        save_camera()
        current["path"] = path
        store.add_recent(path)
        window.setWindowTitle(f"AlignScope — {window.session.project.name} — {_key(path)}")
        cam = store.camera(path)
        if cam:
            window.cortex_view.set_camera_state(cam)
        fill_recent()

    window.project_opened.connect(opened)

    menus = {a.text().replace("&", ""): a.menu() for a in window.menuBar().actions() if a.menu() is not None}
    file_menu = menus.get("File")
    recent_menu = file_menu.addMenu("Open recent") if file_menu is not None else None

    def fill_recent() -> None:
        if recent_menu is None:
            return
        recent_menu.clear()
        for r in store.recent():
            a = recent_menu.addAction(r["path"] + ("" if r["exists"] else "  (missing)"))
            a.setEnabled(r["exists"])
            a.triggered.connect(lambda _c=False, p=r["path"]: window.open_project(p))
        recent_menu.setEnabled(bool(store.recent()))

    fill_recent()
    if file_menu is not None:
        file_menu.addAction("Preferences…").triggered.connect(lambda: edit_preferences(window, store))
    help_menu = menus.get("Help")
    if help_menu is not None:
        help_menu.addAction("Keyboard shortcuts").triggered.connect(lambda: QMessageBox.information(
            window, "Keyboard shortcuts", "\n".join(f"{k}\t{v}" for k, v in SHORTCUTS)))
        help_menu.addAction("User's guide").triggered.connect(
            lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(str(GUIDE))))

    class _CloseWatch(QObject):
        def eventFilter(self, obj, ev):  # noqa: N802
            if ev.type() == QEvent.Close and window.session is not None and current["path"] is not None:
                save_camera()
                st = window.state
                store.set_session({"project": current["path"], "result": window.session.result_name,
                                   "run": st.run, "time_s": float(st.time), "layer": st.layer,
                                   "target": None if st.target is None else st.target.label,
                                   "geometry": bytes(window.saveGeometry().toBase64()).decode(),
                                   "window_state": bytes(window.saveState().toBase64()).decode()})
            return False

    window._state_close_watch = _CloseWatch(window)
    window.installEventFilter(window._state_close_watch)
    return store


def restore_session(window, store: StateStore) -> bool:
    """Reopen the last session's project with its result, run, layer, time and layout."""
    from PySide6.QtCore import QByteArray

    s = store.session()
    if not s or not Path(s["project"]).exists():
        return False
    if not window.open_project(s["project"], result=s.get("result")):
        return False
    st = window.state
    if s.get("run") in (window.session.run_names or []):
        st.run = s["run"]
    if s.get("layer") in ("score", "measured", "predicted"):
        st.layer = s["layer"]
    st.time = float(s.get("time_s") or 0.0)
    target = s.get("target") or ""
    if target.startswith("vertex "):
        st.select_vertex(int(target.split()[1]))
    for key, fn in (("geometry", window.restoreGeometry), ("window_state", window.restoreState)):
        if s.get(key):
            fn(QByteArray.fromBase64(s[key].encode()))
    return True


def edit_preferences(window, store: StateStore) -> None:
    """The preferences dialog (theme, default device, cache folder)."""
    from PySide6.QtWidgets import QComboBox, QDialog, QDialogButtonBox, QFormLayout, QLineEdit

    prefs = store.preferences()
    dlg = QDialog(window)
    dlg.setWindowTitle("Preferences")
    form = QFormLayout(dlg)
    theme = QComboBox()
    theme.addItems(list(THEMES))
    theme.setCurrentText(prefs["theme"])
    device = QComboBox()
    device.addItems(list(DEVICES))
    device.setCurrentText(prefs["device"])
    device.setToolTip("Where feature extraction and fitting run by default (auto: a GPU when there is one)")
    cache = QLineEdit(prefs["cache_dir"])
    cache.setPlaceholderText("default cache folder")
    form.addRow("Theme", theme)
    form.addRow("Default device", device)
    form.addRow("Cache folder", cache)
    buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
    buttons.accepted.connect(dlg.accept)
    buttons.rejected.connect(dlg.reject)
    form.addRow(buttons)
    if dlg.exec():
        new = store.set_preferences(theme=theme.currentText(), device=device.currentText(), cache_dir=cache.text())
        _apply_theme(new["theme"])
        if new["cache_dir"]:
            os.environ["ALIGNSCOPE_CACHE_DIR"] = new["cache_dir"]


def _dist_version(name: str) -> str:
    """A package's installed version from its metadata (never imports it: torch stays unloaded)."""
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def about_text() -> str:
    """The About box's text: what AlignScope is and the versions a bug report needs."""
    import platform
    import sys

    import numpy
    import PySide6
    from PySide6.QtCore import qVersion

    from engine import __version__

    try:
        from vtkmodules.vtkCommonCore import vtkVersion

        vtk = vtkVersion.GetVTKVersion()
    except ImportError:
        vtk = _dist_version("vtk")
    rows = (("AlignScope", __version__),
            ("Python", f"{platform.python_version()} ({sys.platform})"),
            ("PySide6", PySide6.__version__), ("Qt", qVersion()),
            ("VTK", vtk), ("pyvista", _dist_version("pyvista")),
            ("torch", _dist_version("torch")), ("numpy", numpy.__version__))
    return ("AlignScope: how well multimodal AI models line up with the brains of people watching TV.\n"
            "Video, brain responses and model predictions on one clock.\n\n"
            + "\n".join(f"{k}: {v}" for k, v in rows))
