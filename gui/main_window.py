"""The main window: video, time course and cortex panes around one AppState, plus jobs.

Every pane observes the same :class:`~engine.state.AppState`; moving the slider sets
``state.time`` and every pane updates from that one value. Errors a user can cause are
shown in a dialog (``self.last_error_box`` keeps the latest, so tests can read it) and the
window keeps working.
"""

from __future__ import annotations

import json

import numpy as np
from pathlib import Path
from typing import Callable, Dict, Optional

from PySide6.QtCore import QPoint, QRect, QSettings, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QFont, QFontMetrics, QIcon, QImage, QKeySequence, QPainter
from PySide6.QtWidgets import (QComboBox, QDockWidget, QFileDialog, QLabel, QMainWindow, QMessageBox, QSplitter,
                               QToolBar, QWidget)

from engine.errors import AlignScopeError
from engine.jobs import Progress
from engine.session import ProjectSession
from engine.state import AppState

from .analysis_actions import AnalysisActions
from .cortex_view import CortexView
from .job_panel import JobPanel
from .regions_view import RegionsView
from .timecourse_view import TimecourseView
from .video_view import VideoView
from .workers import JobHandle, JobManager

RESOURCES = Path(__file__).resolve().parents[1] / "resources"
ICONS = RESOURCES / "icons"


def icon(name: str) -> QIcon:
    path = ICONS / f"{name}.svg"
    return QIcon(str(path)) if path.exists() else QIcon()


def _pane(widget: QWidget, name: str) -> QWidget:
    widget.setObjectName(name)
    widget.setAttribute(Qt.WA_StyledBackground, True)
    return widget


class MainWindow(AnalysisActions, QMainWindow):
    """AlignScope's main window.

    Parameters
    ----------
    state : AppState, optional
    interactive_3d : bool or None
        Passed to :class:`CortexView` (None: decide from the Qt platform).
    """

    project_opened = Signal(str)   # path of the project now shown

    def __init__(self, state: Optional[AppState] = None, interactive_3d: Optional[bool] = None) -> None:
        super().__init__()
        self.state = state or AppState()
        self.session = None
        self.project_path: Optional[Path] = None
        self.last_error_box: Optional[QMessageBox] = None
        self.errors_shown = []   # (title, message) of every error dialog, newest last
        self.settings = QSettings("AlignScope", "AlignScope")   # remembered dialog settings
        self.analysis_dialog = None
        self.setWindowTitle("AlignScope")
        self.setWindowIcon(icon("alignscope"))
        self.resize(1500, 920)

        self.jobs = JobManager(self)
        self.video_view = _pane(VideoView(self.state), "videoPane")
        self.timecourse_view = _pane(TimecourseView(self.state), "timecoursePane")
        self.cortex_view = _pane(CortexView(self.state, interactive=interactive_3d), "cortexPane")
        self.job_panel = JobPanel(self.jobs)
        self.job_panel.error_reported.connect(self._job_failed)
        self.jobs.job_started.connect(self._make_room_for_jobs)

        left = QSplitter(Qt.Vertical)
        left.addWidget(self.video_view)
        left.addWidget(self.timecourse_view)
        left.setStretchFactor(0, 3)
        left.setStretchFactor(1, 2)
        main = QSplitter(Qt.Horizontal)
        main.addWidget(left)
        main.addWidget(self.cortex_view)
        main.setStretchFactor(0, 4)
        main.setStretchFactor(1, 5)
        main.setSizes([620, 880])
        left.setSizes([500, 330])
        self.splitter = main
        self.setCentralWidget(main)

        dock = QDockWidget("Jobs", self)
        dock.setObjectName("jobsDock")
        dock.setWidget(self.job_panel)
        dock.setFeatures(QDockWidget.DockWidgetMovable | QDockWidget.DockWidgetFloatable
                         | QDockWidget.DockWidgetClosable)
        self.addDockWidget(Qt.BottomDockWidgetArea, dock)
        self.resizeDocks([dock], [72], Qt.Vertical)
        self.jobs_dock = dock

        # Regions: a tab beside Jobs (the video and cortex panes keep their room)
        self.regions_view = RegionsView(self.state, self.start_job)
        self.regions_view.region_selected.connect(self.select_region)
        rdock = QDockWidget("Regions", self)
        rdock.setObjectName("regionsDock")
        rdock.setWidget(self.regions_view)
        rdock.setFeatures(QDockWidget.DockWidgetMovable | QDockWidget.DockWidgetFloatable
                          | QDockWidget.DockWidgetClosable)
        self.addDockWidget(Qt.BottomDockWidgetArea, rdock)
        self.tabifyDockWidget(dock, rdock)
        dock.raise_()
        rdock.visibilityChanged.connect(self._regions_shown)
        self.regions_dock = rdock
        from .studies_panel import install_studies_dock
        install_studies_dock(self)   # Studies: a tab beside Jobs (engine.studies workflows)

        self._build_toolbar()
        self._build_menus()
        self.status_label = QLabel("Open a project (File > Open) or the demo (File > Open demo project)")
        self.statusBar().addWidget(self.status_label, 1)
        self.status_position = QLabel("")
        self.status_position.setObjectName("timeLabel")
        mono = QFont("DejaVu Sans Mono")
        mono.setStyleHint(QFont.Monospace)
        self.status_position.setMinimumWidth(
            QFontMetrics(mono).horizontalAdvance("t = 00000.00 s   frame 000000   TR 00000") + 30)
        self.statusBar().addPermanentWidget(self.status_position)
        self.state.events.time.connect(self._on_time)
        self.state.events.target.connect(self._on_target)
        self.state.events.run.connect(self._on_run)
        self.cortex_view.hovered.connect(self._on_hover)
        from .qc_panel import install_qc_dock   # Quality checks: a tab beside Regions, View/Run menu entries
        self.qc_dock = install_qc_dock(self)

    # ---- chrome ------------------------------------------------------------------------
    def _build_toolbar(self) -> None:
        tb = QToolBar("Main")
        tb.setObjectName("mainToolbar")
        tb.setMovable(False)
        tb.setIconSize(QSize(18, 18))
        self.addToolBar(tb)
        self.open_action = QAction(icon("open"), "Open project…", self)
        self.open_action.setShortcut(QKeySequence.Open)
        self.open_action.triggered.connect(self._choose_project_file)
        tb.addAction(self.open_action)
        self.screenshot_action = QAction(icon("screenshot"), "Save screenshot…", self)
        self.screenshot_action.triggered.connect(self._choose_screenshot)
        tb.addAction(self.screenshot_action)
        tb.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        tb.addSeparator()
        tb.addWidget(QLabel(" Episode "))
        self.episode_box = QComboBox()
        self.episode_box.setMinimumWidth(150)
        self.episode_box.setToolTip("Stimulus episode (video) and the runs recorded while it was watched")
        self.episode_box.currentIndexChanged.connect(self._episode_chosen)
        tb.addWidget(self.episode_box)
        tb.addWidget(QLabel("  Run "))
        self.run_box = QComboBox()
        self.run_box.setMinimumWidth(150)
        self.run_box.setSizeAdjustPolicy(QComboBox.AdjustToContents)
        self.run_box.setToolTip("fMRI run whose time course and maps are shown")
        self.run_box.currentIndexChanged.connect(self._run_chosen)
        tb.addWidget(self.run_box)
        tb.addWidget(QLabel("  Result "))
        self.result_box = QComboBox()
        self.result_box.setMinimumWidth(120)
        self.result_box.setToolTip("Encoding result whose scores colour the cortex")
        self.result_box.currentIndexChanged.connect(self._result_chosen)
        self.result_box.setContextMenuPolicy(Qt.CustomContextMenu)
        self.result_box.customContextMenuRequested.connect(self._result_context_menu)
        tb.addWidget(self.result_box)
        tb.addWidget(QLabel("  Region "))
        self.region_box = QComboBox()
        self.region_box.setMinimumWidth(230)
        self.region_box.setToolTip("Show the mean time course of an atlas region")
        self.region_box.currentIndexChanged.connect(self._region_chosen)
        tb.addWidget(self.region_box)
        self.region_find_action = tb.addAction("Find…")
        self.region_find_action.setToolTip("Search the atlas's regions, grouped by hemisphere and network")
        self.region_find_action.triggered.connect(self._find_region)
        self.toolbar = tb

    def _find_region(self) -> None:
        """A search box over the regions (grouped by hemisphere and network) as a popup."""
        from .cortex_controls import RegionPicker

        if self.session is None or self.session.atlas is None:
            return
        picker = RegionPicker(self.session.region_names(), self)
        picker.setWindowFlags(Qt.Popup)
        picker.picked.connect(lambda name: (self.region_box.setCurrentIndex(self.region_box.findText(name)),
                                            picker.close()))
        picker.move(self.mapToGlobal(self.toolbar.geometry().bottomRight()) - QPoint(picker.width(), 0))
        picker.show()
        picker.search.setFocus()

    def _build_menus(self) -> None:
        mb = self.menuBar()
        m = mb.addMenu("&File")
        m.addAction(self.open_action)
        a = m.addAction("Open project folder…")
        a.triggered.connect(self._choose_project_folder)
        a = m.addAction("Open demo project")
        a.triggered.connect(self.open_demo)
        m.addSeparator()
        m.addAction(self.screenshot_action)
        self.movie_action = m.addAction("Export movie…")
        self.movie_action.setToolTip("A movie of measured or predicted activity over a time range, "
                                     "the stimulus beside the cortex (written in the background)")
        self.movie_action.triggered.connect(self.open_movie_dialog)
        m.addSeparator()
        a = m.addAction("Quit")
        a.setShortcut(QKeySequence.Quit)
        a.triggered.connect(self.close)
        m = mb.addMenu("&Playback")
        a = m.addAction("Play / pause")
        a.setShortcut(Qt.Key_Space)
        a.triggered.connect(self.video_view.toggle_play)
        a = m.addAction("Next TR")
        a.setShortcut(Qt.Key_Right)
        a.triggered.connect(lambda: self._step_tr(+1))
        a = m.addAction("Previous TR")
        a.setShortcut(Qt.Key_Left)
        a.triggered.connect(lambda: self._step_tr(-1))
        m = mb.addMenu("&Run")
        self.analysis_action = m.addAction("New analysis…")
        self.analysis_action.setShortcut(QKeySequence("Ctrl+R"))
        self.analysis_action.setToolTip("Pick a model, its layers and the runs; extract features and fit")
        self.analysis_action.triggered.connect(self.open_analysis_dialog)
        m.addSeparator()
        self.extract_action = m.addAction("Extract low-level features")
        self.extract_action.triggered.connect(self.start_extract_features)
        self.fit_action = m.addAction("Fit encoding model (low-level features)")
        self.fit_action.triggered.connect(self.start_fit_encoding)
        m = mb.addMenu("Re&sult")
        self.rename_result_action = m.addAction("Rename result…")
        self.rename_result_action.triggered.connect(self._ask_rename_result)
        self.delete_result_action = m.addAction("Delete result…")
        self.delete_result_action.triggered.connect(self._ask_delete_result)
        self.result_menu = m
        m = mb.addMenu("&View")
        m.addAction(self.jobs_dock.toggleViewAction())
        m.addAction(self.regions_dock.toggleViewAction())
        self.proxy_action = m.addAction("Use scrub proxy")
        self.proxy_action.setCheckable(True)
        self.proxy_action.setChecked(True)
        self.proxy_action.setToolTip("Show frames from an all-intra copy of the episode (built once in the "
                                     "background when its key frames are sparse): instant seeks")
        self.proxy_action.toggled.connect(self.use_scrub_proxy)
        self.proxy_job: Optional[JobHandle] = None
        m.addSeparator()
        for layer, label in (("score", "Encoding score"), ("measured", "Measured response"),
                             ("predicted", "Predicted response")):
            a = m.addAction(f"Cortex: {label}")
            a.triggered.connect(lambda _=False, name=layer: setattr(self.state, "layer", name))
        m = mb.addMenu("&Help")
        a = m.addAction("About AlignScope")
        a.triggered.connect(self._about)

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        if not getattr(self, "_docks_sized", False):
            self._docks_sized = True
            QTimer.singleShot(0, lambda: self.resizeDocks([self.jobs_dock], [72], Qt.Vertical))

    def _regions_shown(self, visible: bool) -> None:
        # a table needs rows: give the tab room when raised, at most a quarter of the window
        if visible and not self.regions_dock.isFloating() and self.regions_dock.height() < 200:
            self.resizeDocks([self.regions_dock], [min(230, self.height() // 4)], Qt.Vertical)

    def show_regions(self) -> None:
        """Raise the Regions tab (and give it room)."""
        self.regions_dock.show()
        self.regions_dock.raise_()
        self._regions_shown(True)

    def _make_room_for_jobs(self, _handle=None) -> None:
        wanted = 30 + 36 * min(len(self.job_panel.rows), 4)
        if self.jobs_dock.isVisible() and self.jobs_dock.height() < wanted:
            self.resizeDocks([self.jobs_dock], [wanted], Qt.Vertical)

    # ---- errors ------------------------------------------------------------------------
    def show_error(self, title: str, message: str, details: str = "") -> QMessageBox:
        """A non-blocking error dialog; the window keeps working behind it."""
        box = QMessageBox(QMessageBox.Critical, title, message, QMessageBox.Ok, self)
        if details:
            box.setDetailedText(details)
        box.setWindowModality(Qt.WindowModal)
        box.setAttribute(Qt.WA_DeleteOnClose, False)
        box.open()
        self.last_error_box = box
        self.errors_shown.append((title, message))
        self.status_label.setText(f"{title}: {message}")
        return box

    def _job_failed(self, name: str, message: str, tb: str) -> None:
        self.show_error(f"{name} failed", message, tb)

    # ---- project -----------------------------------------------------------------------
    def open_project(self, path, result: Optional[str] = None) -> bool:
        """Open a project file or folder (showing ``result``, default the first one); shows a
        dialog and returns False on a user error."""
        try:
            session = ProjectSession.open(path, result=result)
        except AlignScopeError as exc:
            self.show_error("Cannot open project", str(exc))
            return False
        self.set_session(session, Path(path))
        self.project_opened.emit(str(path))
        self.ensure_scrub_proxy()
        return True

    def open_demo(self) -> Optional[JobHandle]:
        """Open the demo project. It is written (and its models fitted) on first use, which takes
        about a minute: that runs as a job, so the window stays responsive and it can be cancelled.
        Returns the job's handle (``project_opened`` is emitted once the demo is shown)."""
        from engine import demo

        self.status_label.setText("Preparing the demo project…")

        def factory(token):
            def job():
                yield Progress(0, 0, "writing the demo episode and fitting its models (first use only)")
                return demo.ensure_demo_project(token=token)
            return job()

        return self.start_job("Prepare demo project", factory, lambda path: self.open_project(path))

    def set_session(self, session, path: Optional[Path] = None) -> None:
        """Show ``session`` in every pane (closing the previous one)."""
        old = self.session
        self.session = session
        self.project_path = path
        self.state.playing = False
        self.state.target = None
        self.state.result = session.result_name
        runs = session.run_names
        self.state.run = runs[0] if runs else None
        self.state.timeline = session.timeline(self.state.run)
        self.state.time = 0.0
        for view in (self.video_view, self.timecourse_view, self.cortex_view):
            view.set_session(session)
        self._fill_boxes()
        self.regions_view.set_session(session)
        # a project without a fit shows its measured activity (never a blank cortex)
        if session.result is None and session.run_names and self.state.layer in ("score", "predicted"):
            self.state.layer = "measured"
        elif session.result is not None and self.state.layer == "measured" and old is None:
            self.state.layer = "score"
        self._on_time(None)
        if old is not None and old is not session:
            old.close()
        scores = session.score_map()
        if session.result is not None and session.run_names and np.isfinite(scores).any():
            best = int(np.nanargmax(scores))
            self.state.select_vertex(best)   # start on the best-predicted vertex: something to see
        title = session.project.name
        self.setWindowTitle(f"AlignScope — {title}")
        n = len(session.run_names)
        self.status_label.setText(
            f"{session.project.name}: episode {session.episode.name}, {n} run{'s' * (n != 1)}"
            + (f", result “{session.result_name}”" if session.result_name else ", no encoding result yet")
            + "".join(f" — note: {n}" for n in session.notes + session.timebases.notes))

    def _fill_boxes(self) -> None:
        s = self.session
        episodes = [e.name for e in s.project.episodes]
        for box, items, current in ((self.episode_box, episodes, s.episode.name),
                                    (self.run_box, s.display_run_names, self.state.run),
                                    (self.result_box, s.result_names, s.result_name)):
            box.blockSignals(True)
            box.clear()
            box.addItems(items)
            if current in items:
                box.setCurrentIndex(items.index(current))
            box.blockSignals(False)
        self.region_box.blockSignals(True)
        self.region_box.clear()
        self.region_box.addItem("— pick a region —" if s.atlas is not None else "no atlas in this project")
        self.region_box.addItems(s.region_names())
        self.region_box.setEnabled(s.atlas is not None)
        self.region_box.blockSignals(False)

    # ---- widgets -> state ----------------------------------------------------------------
    def _run_chosen(self, index: int) -> None:
        if self.session is None or index < 0:
            return
        name = self.run_box.itemText(index)
        self.state.run = name
        self.state.timeline = self.session.timeline(name)

    def _result_chosen(self, index: int) -> None:
        if self.session is None or index < 0:
            return
        name = self.result_box.itemText(index)
        if name != self.session.result_name:
            self.show_result(name)

    def _episode_chosen(self, index: int) -> None:
        if self.session is None or index < 0:
            return
        name = self.episode_box.itemText(index)
        if name != self.session.episode.name:
            self._reopen(episode=name, result=self.session.result_name, keep_place=False)

    def _reopen(self, episode: str, result: Optional[str], keep_place: bool) -> bool:
        """Open another episode or result of the open project (the meshes are kept)."""
        if self.project_path is None:
            return False
        try:
            session = ProjectSession.open(self.project_path, episode=episode, result=result)
        except AlignScopeError as exc:
            self.show_error("Cannot open", str(exc))
            self._fill_boxes()   # show the session that is still open
            return False
        target, t = self.state.target, self.state.time
        self.set_session(session, self.project_path)
        if keep_place:
            self.state.time = t
            if target is not None:
                self.state.target = target
        self.project_opened.emit(str(self.project_path))
        self.ensure_scrub_proxy()
        return True

    def _region_chosen(self, index: int) -> None:
        if self.session is None or index <= 0 or self.session.atlas is None:
            return
        self.state.select_region(self.region_box.itemText(index), atlas=getattr(self.session.atlas, "name", None))

    def select_region(self, name: str) -> None:
        """Select an atlas region as the Region box does (the Regions table's rows call this)."""
        if self.session is None or self.session.atlas is None:
            return
        i = self.region_box.findText(name)
        if i > 0:
            if i == self.region_box.currentIndex():
                self._region_chosen(i)   # re-select (e.g. after a vertex was clicked meanwhile)
            else:
                self.region_box.setCurrentIndex(i)   # -> _region_chosen
        else:
            self.state.select_region(name, atlas=getattr(self.session.atlas, "name", None))

    def _step_tr(self, delta: int) -> None:
        tl = self.state.timeline
        if tl is not None:
            k = min(max(self.state.tr_index + delta, 0), tl.n_trs - 1)
            self.state.time = tl.tr_time(k)

    # ---- state -> chrome ------------------------------------------------------------------
    def _on_time(self, _e) -> None:
        tl = self.state.timeline
        if tl is not None:
            self.status_position.setText(f"t = {self.state.time:7.2f} s   frame {self.state.frame_index}   "
                                         f"TR {self.state.tr_index}")

    def _on_target(self, e) -> None:
        t = e.value
        if t is None or t.kind != "region":
            if self.region_box.currentIndex() != 0 and self.region_box.count():
                self.region_box.blockSignals(True)
                self.region_box.setCurrentIndex(0)
                self.region_box.blockSignals(False)

    def _on_hover(self, text: str) -> None:
        if text:
            self.statusBar().showMessage(text + "   (click to select)", 4000)
        else:
            self.statusBar().clearMessage()

    def _on_run(self, e) -> None:
        i = self.run_box.findText(e.value or "")
        if i >= 0 and i != self.run_box.currentIndex():
            self.run_box.blockSignals(True)
            self.run_box.setCurrentIndex(i)
            self.run_box.blockSignals(False)

    # ---- scrub proxy ---------------------------------------------------------------------
    def ensure_scrub_proxy(self) -> Optional[JobHandle]:
        """Show frames through the episode's scrub proxy: swap to it if it is built, else
        (when the video's key frames are sparse) build it in the background and swap when done."""
        s = self.session
        if s is None or s.video is None or not self.proxy_action.isChecked():
            return None
        from engine.io import proxy

        source = s.video_source_path
        if s.video_is_proxy or source is None:
            return None
        built = proxy.proxy_path(source)
        if built.exists():
            self._swap_to_proxy(source, built)
            return None
        if not s.needs_scrub_proxy():
            return None
        if self.proxy_job is not None and self.proxy_job.running and self.proxy_job.job_source == source:
            return self.proxy_job

        def factory(token):
            return proxy.make_scrub_proxy_job(source, token=token)

        handle = self.start_job("Build scrub proxy", factory, lambda path: self._swap_to_proxy(source, path))
        handle.job_source = source
        self.proxy_job = handle
        return handle

    def _swap_to_proxy(self, source, path) -> None:
        session = self.session
        if session is None or session.video_source_path != source or not self.proxy_action.isChecked():
            return   # another episode is shown now, or the user turned proxies off meanwhile
        try:
            swapped = session.swap_video(path)
        except AlignScopeError as exc:
            self.show_error("Scrub proxy not used", str(exc))
            return
        if swapped:
            self.video_view.refresh_frame()   # same time, same frame index, from the proxy
            self.status_label.setText(f"Scrubbing through the proxy {Path(path).name} (every frame a key frame)")

    def use_scrub_proxy(self, on: bool) -> None:
        """View > Use scrub proxy: frames from the proxy (built if needed) or from the episode's file."""
        if self.proxy_action.isChecked() != bool(on):
            self.proxy_action.setChecked(bool(on))   # re-enters through toggled
            return
        if self.session is None:
            return
        if on:
            self.ensure_scrub_proxy()
        elif self.session.use_original_video():
            self.video_view.refresh_frame()
            self.status_label.setText("Showing frames from the episode's own video file")

    # ---- jobs --------------------------------------------------------------------------
    def start_job(self, name: str, factory: Callable, on_done: Optional[Callable] = None) -> JobHandle:
        """Run ``factory(token)`` (an engine job generator) on a worker thread."""
        handle = self.jobs.start(name, factory)
        if on_done is not None:
            handle.finished.connect(on_done)
        return handle

    def _episode_inputs(self):
        s = self.session
        if s is None or not s.runs:
            self.show_error("No project", "expected an open project with an fMRI run, found none")
            return None
        run = s.run(self.state.run)
        return s, run

    def start_extract_features(self) -> Optional[JobHandle]:
        """Run > Extract low-level features: luminance, contrast, motion, sound, word rate per TR."""
        from engine.features.lowlevel import lowlevel_features_job

        got = self._episode_inputs()
        if got is None:
            return None
        s, run = got
        video = s.project.path(s.episode.video)
        words, n_trs, tr_s, onset_s = s.words, run.n_trs, run.ref.tr_s, run.ref.onset_s

        def factory(token):
            return lowlevel_features_job(video, words, n_trs, tr_s, onset_s, token=token)

        def done(features: Dict) -> None:
            text = ", ".join(f"{k} {v.shape[1]}" for k, v in features.items())
            self.status_label.setText(f"Features of {s.episode.name} ready ({n_trs} TRs): {text}")

        return self.start_job("Extract features", factory, done)

    # ---- screenshots -------------------------------------------------------------------
    def render_image(self) -> QImage:
        """The whole window as an image, with the 3D pane's current render composited in
        (a native OpenGL child window does not always appear in ``QWidget.grab``)."""
        img = self.grab().toImage()
        cv = self.cortex_view
        if cv.interactive and cv.plotter is not None:
            import numpy as np

            rgb = np.ascontiguousarray(cv.image())
            h, w = rgb.shape[:2]
            qimg = QImage(rgb.data, w, h, 3 * w, QImage.Format_RGB888).copy()
            rect = QRect(cv.host.mapTo(self, QPoint(0, 0)), cv.host.size())
            p = QPainter(img)
            p.drawImage(rect, qimg)
            p.end()
        return img

    def pane_geometry(self) -> Dict[str, list]:
        """Rectangles [x, y, w, h] (window pixels) of the panes' content, for screenshot checks."""
        def rect(w, r: Optional[QRect] = None):
            r = r or w.rect()
            top_left = w.mapTo(self, r.topLeft())
            return [top_left.x(), top_left.y(), r.width(), r.height()]

        return {
            "window": [0, 0, self.width(), self.height()],
            "video_frame": rect(self.video_view.canvas, self.video_view.canvas.image_rect()),
            "video_pane": rect(self.video_view),
            "subtitle": rect(self.video_view.subtitle),
            "timecourse_plot": rect(self.timecourse_view.plot),
            "cortex_3d": rect(self.cortex_view.host),
            "cortex_colorbar": rect(self.cortex_view.colorbar),
            "jobs": rect(self.job_panel),
            "regions_table": rect(self.regions_view.view),
            "attention_controls": rect(self.video_view.attention_row),
            "attention_tokens": rect(self.video_view.token_strip),
        }

    def save_screenshot(self, path) -> Path:
        """Write the window to PNG and its pane rectangles to ``<path>.json``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        img = self.render_image()
        ratio = img.width() / max(self.width(), 1)
        if not img.save(str(path)):
            raise AlignScopeError(f"screenshot: expected to write {path}, found the write failed")
        meta = {"device_pixel_ratio": ratio, "panes": self.pane_geometry(),
                "interactive_3d": self.cortex_view.interactive,
                "time_s": self.state.time, "frame": self.state.frame_index, "tr": self.state.tr_index,
                "target": None if self.state.target is None else self.state.target.label,
                "attention": self.video_view.attention_state()}
        path.with_suffix(".json").write_text(json.dumps(meta, indent=2))
        return path

    def open_movie_dialog(self):
        """File > Export movie…: the movie dialog; Export starts :meth:`start_movie`."""
        from .movie_export import MovieDialog

        s = self.session
        if s is None or self.project_path is None or not s.run_names or s.surface is None:
            self.show_error("No project", "expected an open project with an fMRI run and a surface, found none")
            return None
        run = self.state.run or s.run_names[0]
        dialog = MovieDialog(s, self.project_path, run, start_s=self.state.time,
                             layer="predicted" if self.state.layer == "predicted" else "measured",
                             last_folder=self._last_folder() or None, parent=self)
        dialog.accepted.connect(lambda: self.start_movie(dialog.request()))
        self.movie_dialog = dialog
        dialog.open()
        return dialog

    def start_movie(self, request) -> JobHandle:
        """Write the movie ``request`` (a :class:`gui.movie_export.MovieRequest`) as a job;
        the colours are the cortex pane's when it shows that layer of that run."""
        from dataclasses import asdict

        from .movie_export import movie_job

        cv = self.cortex_view
        if (request.style is None and not cv.external_map and cv.current_style is not None
                and self.state.layer == request.layer and self.state.run == request.run):
            request.style = asdict(cv.current_style)
        self._remember_folder(str(Path(request.out).parent))

        def done(outcome) -> None:
            path, n = outcome
            self.status_label.setText(f"Movie written: {path} ({n} frames)")

        return self.start_job(f"Movie {Path(request.out).name}", lambda token: movie_job(request, token), done)

    def _last_folder(self) -> str:
        """Where open/save dialogs start: the last folder used (gui.state_store), else ''."""
        store = getattr(self, "state_store", None)
        return store.last_folder() if store is not None else ""

    def _remember_folder(self, folder) -> None:
        store = getattr(self, "state_store", None)
        if store is not None and folder:
            store.set_last_folder(folder)

    def _choose_screenshot(self) -> None:
        start = str(Path(self._last_folder() or ".") / "alignscope.png")
        path, _ = QFileDialog.getSaveFileName(self, "Save screenshot", start, "PNG image (*.png)")
        if path:
            self._remember_folder(Path(path).parent)
            self.save_screenshot(path)

    def _choose_project_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open project", self._last_folder(),
                                              "AlignScope project (*.alignscope.json)")
        if path:
            self._remember_folder(Path(path).parent)
            self.open_project(path)

    def _choose_project_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open project folder", self._last_folder())
        if path:
            self._remember_folder(path)
            self.open_project(path)

    def _about(self) -> None:
        from .state_store import about_text

        QMessageBox.about(self, "About AlignScope", about_text())   # with the versions a bug report needs

    # ---- lifetime ----------------------------------------------------------------------
    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Stop playback and jobs, close the 3D view (its VTK window) and the session."""
        if getattr(self, "_shut", False):
            return
        self._shut = True
        self.state.playing = False
        self.jobs.shutdown()
        self.video_view.close_view()
        self.timecourse_view.close_view()
        self.cortex_view.close_view()
        self.regions_view.close_view()
        for name, cb in (("time", self._on_time), ("target", self._on_target), ("run", self._on_run)):
            getattr(self.state.events, name).disconnect(cb)
        if self.session is not None:
            self.session.close()
