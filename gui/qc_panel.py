"""The Quality checks dock: every check of the open project with pass / warn / fail, and the view
behind each one.

A view only: the checks come from :mod:`engine.qc` (run through the window's job manager, on a
worker thread). Double-clicking a row opens what the check measured:

- ``tsnr_map`` / ``reliability_map``: the map on the cortex, through the main window's
  :meth:`~gui.cortex_view.CortexView.set_map`;
- ``carpet``: targets x time (detrended, z-scored, ordered by region) with a cursor at the
  current time, and the global signal under it;
- ``motion``: framewise displacement with the threshold and the flagged volumes;
- ``sync``: the stimulus-brain cross-correlation against the lag, 0 = the HRF delay;
- ``frames``: the step between consecutive video frames.

:func:`install_qc_dock` adds the dock (a tab beside Regions) and its menu entries to a
:class:`~gui.main_window.MainWindow`.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from PySide6.QtCore import QEvent, QObject, QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QIcon, QImage, QPainter, QPainterPath, QPen, QPixmap
from PySide6.QtWidgets import (QAbstractItemView, QDockWidget, QHBoxLayout, QHeaderView, QLabel, QPushButton,
                               QSizePolicy, QSplitter, QStackedWidget, QTableWidget, QTableWidgetItem,
                               QVBoxLayout, QWidget)

from engine.errors import AlignScopeError

__all__ = ["QCPanel", "CarpetView", "TracePlot", "install_qc_dock", "LEVEL_COLORS"]

LEVEL_COLORS = {"pass": QColor("#2f9e44"), "warn": QColor("#f08c00"), "fail": QColor("#e03131")}
LEVEL_TINTS = {"pass": QColor(0, 0, 0, 0), "warn": QColor(240, 140, 0, 38), "fail": QColor(224, 49, 49, 46)}
LEVEL_TEXT = {"pass": "pass", "warn": "warn", "fail": "FAIL"}
CURSOR_COLOR = QColor("#1971c2")
AXIS_COLOR = QColor("#495057")


def level_icon(level: str, size: int = 14) -> QIcon:
    """A filled circle in the level's colour (a cross for fail, a bar for warn, a tick for pass)."""
    pm = QPixmap(size, size)
    pm.fill(Qt.transparent)
    p = QPainter(pm)
    p.setRenderHint(QPainter.Antialiasing)
    p.setPen(Qt.NoPen)
    p.setBrush(LEVEL_COLORS[level])
    p.drawEllipse(QRectF(0.5, 0.5, size - 1, size - 1))
    p.setPen(QPen(QColor("white"), 1.8))
    c, r = size / 2, size * 0.23
    if level == "fail":
        p.drawLine(QPointF(c - r, c - r), QPointF(c + r, c + r))
        p.drawLine(QPointF(c - r, c + r), QPointF(c + r, c - r))
    elif level == "warn":
        p.drawLine(QPointF(c, c - r - 1), QPointF(c, c + r - 2))
        p.drawPoint(QPointF(c, c + r + 0.5))
    else:
        p.drawLine(QPointF(c - r, c), QPointF(c - r * 0.2, c + r * 0.8))
        p.drawLine(QPointF(c - r * 0.2, c + r * 0.8), QPointF(c + r, c - r * 0.7))
    p.end()
    icon = QIcon(pm)
    icon.addPixmap(pm, QIcon.Selected)       # keep the level's colour on a selected row
    return icon


def _ticks(lo: float, hi: float, n: int = 5) -> np.ndarray:
    from .timecourse_view import nice_ticks

    return nice_ticks(lo, hi, n)


# ==== views =================================================================================
class CarpetView(QWidget):
    """Targets x time as a grey image, ordered by region, with a cursor at the current time."""

    MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 92, 10, 22, 26

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setMinimumSize(240, 60)   # two stacked in the motion page: the dock fits a 1366x768 screen
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.image: Optional[np.ndarray] = None       # n_rows, n_trs z-scores
        self.row_groups: List[Tuple[str, int, int]] = []
        self.tr_s = 1.0
        self.onset_s = 0.0
        self.title = ""
        self.time_s: Optional[float] = None
        self.marks: np.ndarray = np.zeros(0, int)      # TRs to mark under the image (flagged volumes)
        self.global_signal: Optional[np.ndarray] = None
        self._qimage: Optional[QImage] = None

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(640, 260)

    def set_carpet(self, image: np.ndarray, row_groups, tr_s: float, title: str = "", onset_s: float = 0.0,
                   marks: Sequence[int] = (), global_signal: Optional[np.ndarray] = None) -> None:
        img = np.asarray(image, dtype=np.float32)
        self.image = img
        self.row_groups = list(row_groups or [])
        self.tr_s, self.onset_s, self.title = float(tr_s), float(onset_s), title
        self.marks = np.asarray(list(marks), dtype=int)
        self.global_signal = None if global_signal is None else np.asarray(global_signal, np.float64)
        grey = np.clip((img + 3.0) / 6.0 * 255.0, 0, 255).astype(np.uint8)
        grey = np.ascontiguousarray(grey)
        h, w = grey.shape
        self._qimage = QImage(grey.data, w, h, w, QImage.Format_Grayscale8).copy()
        self.update()

    def set_time(self, t_s: Optional[float]) -> None:
        self.time_s = t_s
        self.update()

    def plot_rect(self) -> QRectF:
        gs_h = 46 if self.global_signal is not None else 0
        return QRectF(self.MARGIN_L, self.MARGIN_T, max(self.width() - self.MARGIN_L - self.MARGIN_R, 10),
                      max(self.height() - self.MARGIN_T - self.MARGIN_B - gs_h, 10))

    def cursor_x(self) -> Optional[float]:
        """x pixel of the time cursor (None when no carpet or no time)."""
        if self.image is None or self.time_s is None:
            return None
        r = self.plot_rect()
        n = self.image.shape[1]
        frac = (self.time_s - self.onset_s) / (n * self.tr_s)
        if not 0 <= frac <= 1:
            return None
        return r.left() + frac * r.width()

    def paintEvent(self, _e) -> None:  # noqa: N802
        p = QPainter(self)
        p.fillRect(self.rect(), QColor("white"))
        font = QFont(self.font())
        font.setPointSizeF(max(font.pointSizeF() - 1, 7))
        p.setFont(font)
        if self.image is None or self._qimage is None:
            p.setPen(AXIS_COLOR)
            p.drawText(self.rect(), Qt.AlignCenter, "Double-click a run check to see its carpet plot")
            p.end()
            return
        r = self.plot_rect()
        p.setPen(QColor("#212529"))
        p.drawText(QRectF(r.left(), 2, r.width(), self.MARGIN_T - 4), Qt.AlignLeft | Qt.AlignVCenter, self.title)
        p.setRenderHint(QPainter.SmoothPixmapTransform, False)
        p.drawImage(r, self._qimage)
        n_rows, n_trs = self.image.shape
        # region boundaries and names
        p.setPen(QPen(QColor("#e8590c"), 1))
        for k, (name, a, b) in enumerate(self.row_groups):
            y0 = r.top() + a / n_rows * r.height()
            y1 = r.top() + (b + 1) / n_rows * r.height()
            if k:
                p.drawLine(QPointF(r.left() - 6, y0), QPointF(r.right(), y0))
            if y1 - y0 >= 9:
                p.setPen(QColor("#343a40"))
                p.drawText(QRectF(2, y0, self.MARGIN_L - 10, y1 - y0), Qt.AlignRight | Qt.AlignVCenter, name)
                p.setPen(QPen(QColor("#e8590c"), 1))
        if not self.row_groups:
            p.setPen(QColor("#343a40"))
            p.save()
            p.translate(12, r.center().y())
            p.rotate(-90)
            p.drawText(QRectF(-r.height() / 2, -10, r.height(), 20), Qt.AlignCenter, f"{n_rows} targets")
            p.restore()
        # flagged volumes under the image
        p.setPen(Qt.NoPen)
        p.setBrush(LEVEL_COLORS["fail"])
        for k in self.marks:
            x = r.left() + (k + 0.5) / n_trs * r.width()
            p.drawRect(QRectF(x - 2, r.bottom() + 1, 4, 5))
        # global signal under the carpet
        bottom = r.bottom()
        if self.global_signal is not None and self.global_signal.size == n_trs:
            g = QRectF(r.left(), r.bottom() + 8, r.width(), 36)
            gs = self.global_signal
            lo, hi = float(gs.min()), float(gs.max())
            span = hi - lo or 1.0
            path = QPainterPath()
            for k, v in enumerate(gs):
                pt = QPointF(g.left() + (k + 0.5) / n_trs * g.width(), g.bottom() - (v - lo) / span * g.height())
                path.moveTo(pt) if k == 0 else path.lineTo(pt)
            p.setBrush(Qt.NoBrush)
            p.setPen(QPen(QColor("#364fc7"), 1.2))
            p.drawPath(path)
            p.setPen(QColor("#343a40"))
            p.drawText(QRectF(2, g.top(), self.MARGIN_L - 10, g.height()), Qt.AlignRight | Qt.AlignVCenter,
                       "global signal")
            bottom = g.bottom()
        # time axis
        p.setPen(AXIS_COLOR)
        duration = n_trs * self.tr_s
        for t in _ticks(0.0, duration, 6):
            x = r.left() + t / duration * r.width()
            p.drawLine(QPointF(x, bottom + 1), QPointF(x, bottom + 4))
            p.drawText(QRectF(x - 30, bottom + 4, 60, 16), Qt.AlignHCenter | Qt.AlignTop, f"{t + self.onset_s:g}")
        p.drawText(QRectF(r.right() - 60, bottom + 4, 60, 16), Qt.AlignRight | Qt.AlignTop, "time (s)")
        x = self.cursor_x()
        if x is not None:
            p.setPen(QPen(CURSOR_COLOR, 2))
            p.drawLine(QPointF(x, r.top()), QPointF(x, bottom))
        p.end()


class TracePlot(QWidget):
    """Lines against x (time in s or lag), a dashed threshold, shaded flagged samples, a cursor."""

    MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 58, 12, 22, 30

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setMinimumSize(240, 60)   # two stacked in the motion page: the dock fits a 1366x768 screen
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.series: List[Tuple[str, np.ndarray, np.ndarray, QColor]] = []
        self.threshold: Optional[float] = None
        self.flagged_x: np.ndarray = np.zeros(0)
        self.flag_width = 1.0
        self.vlines: List[Tuple[float, QColor, str]] = []
        self.title, self.x_label, self.y_label = "", "", ""
        self.cursor: Optional[float] = None
        self.follow_time = True          # the cursor follows the app's time (False for lag plots)

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(640, 240)

    def set_plot(self, series, title: str = "", x_label: str = "", y_label: str = "",
                 threshold: Optional[float] = None, flagged_x: Sequence[float] = (), flag_width: float = 1.0,
                 vlines=(), follow_time: bool = True) -> None:
        self.series = [(name, np.asarray(x, float), np.asarray(y, float), QColor(c)) for name, x, y, c in series]
        self.title, self.x_label, self.y_label = title, x_label, y_label
        self.threshold = threshold
        self.flagged_x = np.asarray(list(flagged_x), float)
        self.flag_width = float(flag_width)
        self.vlines = list(vlines)
        self.follow_time = follow_time
        self.cursor = None
        self.update()

    def set_time(self, t_s: Optional[float]) -> None:
        if self.follow_time:
            self.cursor = t_s
            self.update()

    def ranges(self):
        xs = np.concatenate([s[1] for s in self.series]) if self.series else np.array([0.0, 1.0])
        ys = np.concatenate([s[2] for s in self.series]) if self.series else np.array([0.0, 1.0])
        ys = ys[np.isfinite(ys)]
        lo, hi = (float(ys.min()), float(ys.max())) if ys.size else (0.0, 1.0)
        if self.threshold is not None:
            lo, hi = min(lo, self.threshold), max(hi, self.threshold)
        pad = 0.06 * (hi - lo or 1.0)
        return float(xs.min()), float(xs.max()) if xs.max() > xs.min() else float(xs.min()) + 1, lo - pad, hi + pad

    def paintEvent(self, _e) -> None:  # noqa: N802
        p = QPainter(self)
        p.setRenderHint(QPainter.Antialiasing)
        p.fillRect(self.rect(), QColor("white"))
        font = QFont(self.font())
        font.setPointSizeF(max(font.pointSizeF() - 1, 7))
        p.setFont(font)
        if not self.series:
            p.setPen(AXIS_COLOR)
            p.drawText(self.rect(), Qt.AlignCenter, "Double-click a check to see what it measured")
            p.end()
            return
        r = QRectF(self.MARGIN_L, self.MARGIN_T, max(self.width() - self.MARGIN_L - self.MARGIN_R, 10),
                   max(self.height() - self.MARGIN_T - self.MARGIN_B, 10))
        x0, x1, y0, y1 = self.ranges()
        X = lambda v: r.left() + (v - x0) / (x1 - x0) * r.width()  # noqa: E731
        Y = lambda v: r.bottom() - (v - y0) / (y1 - y0) * r.height()  # noqa: E731
        p.setPen(QColor("#212529"))
        p.drawText(QRectF(r.left(), 2, r.width(), self.MARGIN_T - 4), Qt.AlignLeft | Qt.AlignVCenter, self.title)
        # flagged samples
        tint = QColor(LEVEL_COLORS["fail"])
        tint.setAlpha(60)
        p.setPen(Qt.NoPen)
        p.setBrush(tint)
        for fx in self.flagged_x:
            a, b = X(fx - self.flag_width / 2), X(fx + self.flag_width / 2)
            p.drawRect(QRectF(a, r.top(), max(b - a, 2), r.height()))
        # axes and ticks
        p.setPen(QPen(QColor("#dee2e6"), 1))
        p.setBrush(Qt.NoBrush)
        p.drawRect(r)
        p.setPen(AXIS_COLOR)
        for t in _ticks(y0, y1, 4):
            y = Y(t)
            p.drawLine(QPointF(r.left() - 4, y), QPointF(r.left(), y))
            p.drawText(QRectF(0, y - 8, r.left() - 6, 16), Qt.AlignRight | Qt.AlignVCenter, f"{t:g}")
        for t in _ticks(x0, x1, 6):
            x = X(t)
            p.drawLine(QPointF(x, r.bottom()), QPointF(x, r.bottom() + 4))
            p.drawText(QRectF(x - 30, r.bottom() + 4, 60, 14), Qt.AlignHCenter | Qt.AlignTop, f"{t:g}")
        p.drawText(QRectF(r.left(), r.bottom() + 14, r.width(), 16), Qt.AlignRight | Qt.AlignTop, self.x_label)
        p.save()
        p.translate(10, r.center().y())
        p.rotate(-90)
        p.drawText(QRectF(-r.height() / 2, -8, r.height(), 16), Qt.AlignCenter, self.y_label)
        p.restore()
        if self.threshold is not None:
            p.setPen(QPen(LEVEL_COLORS["fail"], 1, Qt.DashLine))
            p.drawLine(QPointF(r.left(), Y(self.threshold)), QPointF(r.right(), Y(self.threshold)))
        for vx, color, label in self.vlines:
            p.setPen(QPen(QColor(color), 1.5, Qt.DashLine))
            p.drawLine(QPointF(X(vx), r.top()), QPointF(X(vx), r.bottom()))
            p.drawText(QRectF(X(vx) + 3, r.top() + 2, 140, 14), Qt.AlignLeft | Qt.AlignTop, label)
        # series and legend
        lx = r.right() - 8
        for k, (name, xs, ys, color) in enumerate(self.series):
            path = QPainterPath()
            first = True
            for xv, yv in zip(xs, ys):
                if not np.isfinite(yv):
                    first = True
                    continue
                pt = QPointF(X(xv), Y(yv))
                if first:
                    path.moveTo(pt)
                    first = False
                else:
                    path.lineTo(pt)
            p.setPen(QPen(color, 1.6 if k == 0 else 1.2))
            p.drawPath(path)
            if len(self.series) > 1 or name:
                p.setPen(color)
                p.drawText(QRectF(r.left(), r.top() + 2 + 14 * k, lx - r.left(), 14), Qt.AlignRight | Qt.AlignTop, name)
        if self.cursor is not None and x0 <= self.cursor <= x1:
            p.setPen(QPen(CURSOR_COLOR, 2))
            p.drawLine(QPointF(X(self.cursor), r.top()), QPointF(X(self.cursor), r.bottom()))
        p.end()


# ==== the panel =============================================================================
class _CloseWatcher(QObject):
    """Closes the panel's connections when its window closes."""

    def __init__(self, panel: "QCPanel") -> None:
        super().__init__(panel)
        self.panel = panel

    def eventFilter(self, obj, e) -> bool:  # noqa: N802
        if e.type() == QEvent.Close:
            self.panel.close_view()
        return False


class QCPanel(QWidget):
    """The checks table and the view of the selected check.

    Parameters
    ----------
    state : AppState
    start_job : callable ``(name, factory, on_done) -> JobHandle``, optional
        The window's job runner; without it checks run on the calling thread.
    window : MainWindow, optional
        Gives the open session (``window.session``) and the cortex view (``window.cortex_view``).
    """

    check_opened = Signal(object)      # the Check whose view was opened
    report_shown = Signal(object)      # the QCReport now in the table

    COLUMNS = ("", "Check", "About", "Finding")

    def __init__(self, state, start_job: Optional[Callable] = None, window=None, parent=None) -> None:
        super().__init__(parent)
        self.state = state
        self.start_job = start_job
        self.window = window
        self.report = None
        self.checks: List = []
        self.job = None
        self.opened = None                 # the Check whose view is shown
        self.status = QLabel("Quality checks: press Run checks (data quality, stimulus-brain sync, reliability)")
        self.status.setObjectName("paneHint")
        self.status.setWordWrap(True)
        self.run_button = QPushButton("Run checks")
        self.run_button.setToolTip("Check every run and episode of the open project (a background job)")
        self.run_button.clicked.connect(self.run_checks)
        self.only_problems = QPushButton("Problems only")
        self.only_problems.setCheckable(True)
        self.only_problems.setToolTip("Hide the checks that passed")
        self.only_problems.toggled.connect(lambda _on: self._fill())
        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self.run_button)
        top.addWidget(self.only_problems)
        top.addWidget(self.status, 1)

        self.table = QTableWidget(0, len(self.COLUMNS))
        self.table.setHorizontalHeaderLabels(self.COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setWordWrap(False)
        self.table.setAlternatingRowColors(False)
        hh = self.table.horizontalHeader()
        hh.setSectionResizeMode(0, QHeaderView.Fixed)
        self.table.setColumnWidth(0, 68)
        self.table.setColumnWidth(1, 112)
        self.table.setColumnWidth(2, 150)
        hh.setStretchLastSection(True)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.cellDoubleClicked.connect(lambda row, _col: self.open_row(row))
        self.table.itemSelectionChanged.connect(self._selected)

        self.carpet = CarpetView()
        self.trace = TracePlot()
        # motion: the six parameters above, FD with its threshold and the flagged volumes below
        self.motion_params = TracePlot()
        self.motion_fd = TracePlot()
        self.motion_page = QWidget()
        ml = QVBoxLayout(self.motion_page)
        ml.setContentsMargins(0, 0, 0, 0)
        ml.setSpacing(0)
        ml.addWidget(self.motion_params, 1)
        ml.addWidget(self.motion_fd, 1)
        self.note = QLabel("Double-click a check to open the view behind it.")
        self.note.setWordWrap(True)
        self.note.setAlignment(Qt.AlignCenter)
        self.stack = QStackedWidget()
        for w in (self.note, self.carpet, self.trace, self.motion_page):
            self.stack.addWidget(w)
        self.fraction_button = QPushButton("Scores as a fraction of this ceiling")
        self.fraction_button.setToolTip("Show the open result's encoding scores divided by the square root of "
                                        "the noise ceiling (grey where the ceiling is near zero)")
        self.fraction_button.clicked.connect(self.show_fraction_of_ceiling)
        self.fraction_button.hide()
        self.detail = QLabel("")
        self.detail.setWordWrap(True)
        self.detail.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.detail.setObjectName("paneHint")
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.setSpacing(2)
        rl.addWidget(self.stack, 1)
        rl.addWidget(self.fraction_button, 0, Qt.AlignLeft)
        rl.addWidget(self.detail)
        self.splitter = QSplitter(Qt.Horizontal)
        self.splitter.addWidget(self.table)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(4)
        layout.addLayout(top)
        layout.addWidget(self.splitter, 1)
        self._closed = False
        state.events.time.connect(self._on_time)
        if window is not None:
            window.installEventFilter(_CloseWatcher(self))
            if hasattr(window, "project_opened"):
                window.project_opened.connect(self._project_opened)

    def _size_once(self) -> None:
        if not getattr(self, "_sized", False) and self.isVisible() and self.width() > 600:
            self._sized = True      # the table gets a bit more than half the width, once
            self.splitter.setSizes([int(self.width() * 0.55), int(self.width() * 0.45)])

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._size_once()

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        self._size_once()

    # ---- running ------------------------------------------------------------------------
    def _session(self):
        return getattr(self.window, "session", None) if self.window is not None else None

    def run_checks(self):
        """Run every check of the open project (a job when the window has a job runner)."""
        session = self._session()
        if session is None:
            self.status.setText("Open a project first (File > Open)")
            return None
        from engine.qc.run import qc_project_job

        project = session.project
        if self.job is not None and getattr(self.job, "running", False):
            return self.job
        # the episode on screen and its runs (a whole Algonauts release would take hours;
        # `alignscope qc PATH` checks everything headless)
        episode = getattr(getattr(session, "episode", None), "name", None)
        source = f"{project.name} / {episode}" if episode else project.name
        self.status.setText(f"Checking {source}…")
        self.run_button.setEnabled(False)

        def factory(token):
            return qc_project_job(project, episodes=[episode] if episode else None, token=token, source=source)

        if self.start_job is None:
            from engine.jobs import run_sync

            try:
                self.set_report(run_sync(factory(None)))
            except AlignScopeError as exc:
                self._failed(str(exc))
            return None
        self.job = self.start_job("Quality checks", factory, self.set_report)
        for sig in ("failed", "cancelled"):
            if hasattr(self.job, sig):
                getattr(self.job, sig).connect(lambda *a: self._failed("the checks did not finish"))
        return self.job

    def _failed(self, message: str) -> None:
        self.run_button.setEnabled(True)
        self.status.setText(f"Quality checks: {message}")

    def _project_opened(self, _path) -> None:
        session = self._session()
        if self.report is not None and session is not None:
            episode = getattr(getattr(session, "episode", None), "name", None)
            if getattr(self.report, "source", None) not in (session.project.name, f"{session.project.name} / {episode}"):
                self.set_report(None)

    # ---- table --------------------------------------------------------------------------
    def set_report(self, report) -> None:
        """Show a :class:`~engine.qc.run.QCReport` (None clears the table)."""
        if self._closed:
            return
        self.run_button.setEnabled(True)
        self.report = report
        self.checks = list(report.checks) if report is not None else []
        self._fill()
        if report is None:
            self.status.setText("Quality checks: press Run checks")
        else:
            s = report.summary
            self.status.setText(f"{len(self.checks)} checks of {report.source}: {s['pass']} pass, {s['warn']} warn, "
                                f"{s['fail']} fail" + (" — double-click a row to see why" if s["fail"] + s["warn"]
                                                       else ""))
        self.report_shown.emit(report)

    def visible_checks(self) -> List:
        if self.only_problems.isChecked():
            return [c for c in self.checks if c.level != "pass"]
        return list(self.checks)

    def _fill(self) -> None:
        checks = self.visible_checks()
        self.table.setRowCount(len(checks))
        for row, c in enumerate(checks):
            items = [QTableWidgetItem(level_icon(c.level), LEVEL_TEXT[c.level]), QTableWidgetItem(c.name),
                     QTableWidgetItem(c.subject), QTableWidgetItem(c.message)]
            items[0].setForeground(LEVEL_COLORS[c.level])
            f = items[0].font()
            f.setBold(c.level != "pass")
            items[0].setFont(f)
            tip = c.message + ("\n\nDouble-click: " + _VIEW_HINTS.get(c.view, "") if c.view else "")
            for col, it in enumerate(items):
                it.setToolTip(tip)
                it.setData(Qt.UserRole, row)
                if c.level != "pass":
                    it.setBackground(QBrush(LEVEL_TINTS[c.level]))
                self.table.setItem(row, col, it)

    def _selected(self) -> None:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        checks = self.visible_checks()
        if rows and rows[0].row() < len(checks):
            self.detail.setText(checks[rows[0].row()].message)

    def row_of(self, name: str, subject: Optional[str] = None) -> int:
        """Row of the first check called ``name`` (about ``subject``), -1 if none."""
        for row, c in enumerate(self.visible_checks()):
            if c.name == name and (subject is None or c.subject == subject):
                return row
        return -1

    # ---- views --------------------------------------------------------------------------
    def open_row(self, row: int) -> None:
        checks = self.visible_checks()
        if 0 <= row < len(checks):
            self.table.selectRow(row)
            self.open_check(checks[row])

    def open_check(self, check) -> None:
        """Open the view behind ``check`` (see the module docstring)."""
        self.opened = check
        self.detail.setText(check.message)
        view = check.view
        session = self._session()
        self.fraction_button.setVisible(view == "reliability_map" and session is not None
                                        and getattr(session, "result", None) is not None)
        if view in ("tsnr_map", "reliability_map"):
            self._show_map(check)
        elif view in ("carpet", "global_signal"):
            self._show_carpet(check)
        elif view == "motion":
            self._show_motion(check)
        elif view == "sync":
            self._show_sync(check)
        elif view == "frames":
            self._show_frames(check)
        else:
            self.note.setText(check.message)
            self.stack.setCurrentWidget(self.note)
        self.check_opened.emit(check)

    def _run_carpet(self, run: str):
        for c in self.checks:
            if c.name == "global_signal" and c.subject == run and "carpet" in c.data:
                return c
        return None

    def _tr_s(self, run: str) -> float:
        session = self._session()
        if session is not None:
            for ref in session.project.runs:
                if ref.name == run:
                    return float(ref.tr_s)
        for c in self.checks:
            if c.subject == run and "tr_s" in c.details:
                return float(c.details["tr_s"])
        return 1.0

    def _show_carpet(self, check) -> None:
        run = check.data.get("run", check.subject)
        source = check if "carpet" in check.data else self._run_carpet(run)
        if source is None:
            self.note.setText(f"{check.message}\n\n(no carpet data for {run})")
            self.stack.setCurrentWidget(self.note)
            return
        cp = source.data["carpet"]
        marks = []
        if check.name == "duplicated_trs":
            marks = list(check.details.get("duplicated", [])) + list(check.details.get("zero", []))
        elif check.name == "global_signal":
            marks = list(check.details.get("spikes", []))
        self.carpet.set_carpet(cp["image"], cp["row_groups"], self._tr_s(run),
                               title=f"{run}: targets x time (detrended, z-scored), ordered by region",
                               marks=marks, global_signal=source.data.get("global_signal"))
        self.carpet.set_time(self.state.time)
        self.stack.setCurrentWidget(self.carpet)

    def _show_motion(self, check) -> None:
        run = check.subject
        tr = self._tr_s(run)
        fd = np.asarray(check.data["fd"], float)
        t = np.arange(fd.size) * tr
        flagged = np.asarray(check.data.get("flagged", []), int)
        flag_x = t[flagged] if flagged.size else ()
        params = check.data.get("params")
        series = []
        if params is not None and np.asarray(params).shape == (fd.size, 6):
            from engine.qc.checks import FD_RADIUS_MM

            p = np.asarray(params, float)
            p = p - p[0]
            colors = ("#1971c2", "#2f9e44", "#e8590c", "#74c0fc", "#8ce99a", "#ffa94d")
            names = ("x", "y", "z", "pitch", "roll", "yaw")
            for j in range(6):
                values = p[:, j] * (FD_RADIUS_MM if j >= 3 else 1.0)
                series.append((names[j] if j < 3 else f"{names[j]} (x{FD_RADIUS_MM:g} mm)", t, values, colors[j]))
        self.motion_params.set_plot(series, title=f"{run}: head motion from the first volume (translations mm, "
                                    f"rotations as mm on a {50:g} mm sphere)", y_label="mm", flagged_x=flag_x,
                                    flag_width=tr)
        self.motion_fd.set_plot([("", t, fd, "#c92a2a")],
                                title=f"framewise displacement (Power): {flagged.size} volume(s) above "
                                      f"{check.details.get('threshold_mm', 0.5):g} mm",
                                x_label="time (s)", y_label="FD (mm)", threshold=check.details.get("threshold_mm", 0.5),
                                flagged_x=flag_x, flag_width=tr)
        for plot in (self.motion_params, self.motion_fd):
            plot.set_time(self.state.time)
        self.stack.setCurrentWidget(self.motion_page)

    def _show_sync(self, check) -> None:
        tr = float(check.details.get("tr_s", 1.0))
        lags = np.asarray(check.data["lags"], float) * tr
        colors = {"audio_envelope": "#1971c2", "luminance": "#f08c00", "word_rate": "#2f9e44"}
        series = [(name.replace("_", " "), lags, curve, colors.get(name, "#495057"))
                  for name, curve in check.data.get("feature_curves", {}).items()]
        best = float(check.details.get("offset_s", 0.0))
        self.trace.set_plot(series, title=f"{check.subject}: stimulus-brain cross-correlation after the HRF",
                            x_label="lag (s): > 0 brain late, < 0 brain early", y_label="mean |r| of top targets",
                            vlines=[(0.0, "#868e96", "expected (HRF delay)"),
                                    (best, LEVEL_COLORS[check.level].name(), f"best {best:+.2f} s")],
                            follow_time=False)
        self.stack.setCurrentWidget(self.trace)

    def _show_frames(self, check) -> None:
        t = np.asarray(check.data["frame_times_s"], float)
        steps = np.diff(t) * 1000.0
        gaps = np.asarray(check.details.get("gaps_at_s", []), float)
        self.trace.set_plot([("frame step (ms)", t[1:], steps, "#5f3dc4")],
                            title=f"{check.subject}: time between consecutive frames",
                            x_label="time (s)", y_label="step (ms)", flagged_x=gaps,
                            flag_width=max(float(np.median(np.diff(t))) * 4, 0.1) if t.size > 1 else 0.1)
        self.trace.set_time(self.state.time)
        self.stack.setCurrentWidget(self.trace)

    def _show_map(self, check) -> None:
        from .colormaps import MapStyle

        key = "tsnr" if check.view == "tsnr_map" else "ceiling"
        values = np.asarray(check.data.get(key), dtype=np.float32)
        run = check.data.get("run", check.subject)
        session = self._session()
        cortex = getattr(self.window, "cortex_view", None) if self.window is not None else None
        shown = False
        if session is not None and cortex is not None and values.ndim == 1:
            try:
                vertex_values = None
                if run in getattr(session, "display_run_names", []):
                    vertex_values = session.to_vertices(values, run)
                elif values.size == session.n_vertices:
                    vertex_values = values
                if vertex_values is not None and vertex_values.size == session.n_vertices:
                    finite = vertex_values[np.isfinite(vertex_values)]
                    if check.view == "tsnr_map":
                        vmax = float(np.percentile(finite, 99)) if finite.size else 1.0
                        style = MapStyle(vmax=max(vmax, 1e-6), threshold=0.0, signed=False)
                        title = f"Temporal SNR of {run} (mean / sd after detrending)"
                    else:
                        from engine.qc.checks import CEILING_NEAR_ZERO

                        vmax = float(np.percentile(finite, 99)) if finite.size else 1.0
                        style = MapStyle(vmax=max(vmax, 2 * CEILING_NEAR_ZERO), threshold=CEILING_NEAR_ZERO,
                                         signed=False)
                        title = (f"Noise ceiling {check.details.get('ceiling_kind', '')} — grey: near zero "
                                 f"(<= {CEILING_NEAR_ZERO})")
                    cortex.set_map(np.nan_to_num(vertex_values, nan=0.0), style, title)
                    shown = True
            except AlignScopeError:
                shown = False
        finite = values[np.isfinite(values)]
        summary = (f"median {np.median(finite):.3g}, 5th percentile {np.percentile(finite, 5):.3g}, max "
                   f"{finite.max():.3g}" if finite.size else "no finite values")
        where = ("Shown on the cortex (right)." if shown else
                 "Not shown on the cortex: these targets are not the displayed surface's.")
        if key == "tsnr":
            self.note.setText(f"Temporal SNR of {run}: {summary}.\n{where}")
        else:
            self.note.setText(f"Noise ceiling of {check.subject} ({check.details.get('ceiling_kind', '')}): "
                              f"{summary}.\n{where}\n\n" + reliability_text(check))
        self.stack.setCurrentWidget(self.note)

    def show_fraction_of_ceiling(self) -> Optional[np.ndarray]:
        """The open result's scores as a fraction of the opened reliability check's ceiling, on the
        cortex; returns the per-target fractions (None when there is nothing to divide)."""
        from engine.qc.checks import CEILING_NEAR_ZERO
        from engine.qc.reliability import fraction_of_ceiling

        from .colormaps import MapStyle

        check, session = self.opened, self._session()
        if check is None or check.view != "reliability_map" or session is None or session.result is None:
            return None
        scores = np.asarray(session.result.scores, dtype=np.float64)
        ceiling = np.asarray(check.data["ceiling"], dtype=np.float64)
        if scores.shape != ceiling.shape:
            self.detail.setText(f"The result has {scores.size} targets, the ceiling {ceiling.size}: they are not "
                                "the same targets")
            return None
        frac = fraction_of_ceiling(scores, ceiling)
        cortex = getattr(self.window, "cortex_view", None)
        if cortex is not None:
            run = check.data.get("run")
            values = session.to_vertices(frac.astype(np.float32), run if run in session.display_run_names else None)
            cortex.set_map(np.nan_to_num(values, nan=0.0), MapStyle(vmax=1.0, threshold=0.05, signed=True),
                           f"Encoding score / sqrt(noise ceiling) — grey: ceiling <= {CEILING_NEAR_ZERO}")
        ok = np.isfinite(frac)
        self.detail.setText(f"Scores as a fraction of the ceiling: median {np.median(frac[ok]):.2f} over {ok.sum()} "
                            f"targets with a ceiling above {CEILING_NEAR_ZERO}" if ok.any() else
                            "No target has a ceiling above zero")
        return frac

    # ---- time -----------------------------------------------------------------------------
    def _on_time(self, _e) -> None:
        if self._closed:
            return
        t = self.state.time
        self.carpet.set_time(t)
        for plot in (self.trace, self.motion_params, self.motion_fd):
            plot.set_time(t)

    def close_view(self) -> None:
        """Disconnect from the state and cancel a running check job."""
        if self._closed:
            return
        self._closed = True
        try:
            self.state.events.time.disconnect(self._on_time)
        except (RuntimeError, TypeError, ValueError):
            pass
        if self.job is not None and getattr(self.job, "running", False):
            try:
                self.job.cancel()
            except RuntimeError:
                pass


def reliability_text(check, n_show: int = 6) -> str:
    """Per region (or per named target): the most reliable, and those whose ceiling is near zero."""
    from engine.qc.checks import CEILING_NEAR_ZERO

    d = check.details
    if "per_region" in d:
        table, what = d["per_region"], "regions (mean ceiling)"
    elif "per_target" in d:
        table, what = {k: v["ceiling"] for k, v in d["per_target"].items()}, "targets"
    else:
        return ""
    items = sorted(((k, v) for k, v in table.items() if v is not None and np.isfinite(v)), key=lambda kv: -kv[1])
    lines = [f"Most reliable {what}: " + ", ".join(f"{k} {v:.3f}" for k, v in items[:n_show])]
    near = [k for k, v in items if not v > CEILING_NEAR_ZERO]
    lines.append(f"Near zero (<= {CEILING_NEAR_ZERO}, read their scores with care): "
                 + (", ".join(near[:n_show]) + (f" … ({len(near)} in all)" if len(near) > n_show else "")
                    if near else "none"))
    if "loso_isc_mean" in d and "per_target" in d:
        loso = {k: v.get("loso_isc") for k, v in d["per_target"].items()}
        lines.append("Leave-one-subject-out ISC: " + ", ".join(f"{k} {v:.2f}" for k, v in list(loso.items())[:12]
                                                              if v is not None))
    return "\n".join(lines)


_VIEW_HINTS = {"tsnr_map": "temporal SNR on the cortex", "reliability_map": "noise ceiling on the cortex",
               "carpet": "carpet plot", "global_signal": "carpet plot and global signal",
               "motion": "framewise displacement", "sync": "stimulus-brain lag", "frames": "frame steps",
               "timeline": "timings"}


def install_qc_dock(window) -> QDockWidget:
    """Add the Quality checks dock to a main window: a tab beside Regions (or Jobs), a View menu
    toggle and Run > Run quality checks. Returns the dock (``dock.widget()`` is the panel)."""
    panel = QCPanel(window.state, getattr(window, "start_job", None), window)
    dock = QDockWidget("Quality checks", window)
    dock.setObjectName("qcDock")
    dock.setWidget(panel)
    dock.setFeatures(QDockWidget.DockWidgetMovable | QDockWidget.DockWidgetFloatable
                     | QDockWidget.DockWidgetClosable)
    window.addDockWidget(Qt.BottomDockWidgetArea, dock)
    neighbour = getattr(window, "regions_dock", None) or getattr(window, "jobs_dock", None)
    if neighbour is not None:
        window.tabifyDockWidget(neighbour, dock)
    jobs = getattr(window, "jobs_dock", None)
    if jobs is not None:
        jobs.raise_()

    def shown(visible: bool) -> None:
        # a table and a plot need room: a third of the window when the tab is raised
        if visible and not dock.isFloating() and dock.height() < 240:
            window.resizeDocks([dock], [max(240, window.height() // 3)], Qt.Vertical)

    dock.visibilityChanged.connect(shown)
    panel.dock = dock
    menus = {a.text().replace("&", ""): a.menu() for a in window.menuBar().actions() if a.menu() is not None}
    if "View" in menus:
        menus["View"].addAction(dock.toggleViewAction())
    run_menu = menus.get("Run") or menus.get("Tools")
    action = (run_menu or window.menuBar().addMenu("&Tools")).addAction("Run quality checks")
    action.triggered.connect(lambda: (dock.show(), dock.raise_(), panel.run_checks()))
    panel.run_action = action
    return dock
