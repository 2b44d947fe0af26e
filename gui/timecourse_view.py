"""The time-course pane: measured vs predicted response of the selected vertex or region.

Drawn with QPainter (no plotting dependency). A band marks the TR being acquired at the
current time and a line the exact time; a click or drag on the plot moves the time.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget

from engine.errors import AlignScopeError
from engine.state import AppState, Event

MEASURED_COLOR = QColor("#2b2d31")
PREDICTED_COLOR = QColor("#e8590c")
CURSOR_COLOR = QColor("#1971c2")


def nice_ticks(lo: float, hi: float, n: int = 5) -> np.ndarray:
    """About ``n`` round tick values covering [lo, hi]."""
    if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
        return np.array([lo])
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** np.floor(np.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=raw)
    start = np.ceil(lo / step) * step
    ticks = np.arange(start, hi + step * 1e-6, step)
    ticks[np.abs(ticks) < step * 1e-6] = 0.0   # no "-0" from rounding
    return ticks + 0.0


class TimecoursePlot(QWidget):
    """The plot itself; exposes what it draws so tests can compare it with the session."""

    MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 58, 14, 26, 30

    def __init__(self, view: "TimecourseView") -> None:
        super().__init__(view)
        self.view = view
        self.setMinimumSize(300, 160)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.setMouseTracking(False)

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(560, 240)

    # ---- geometry --------------------------------------------------------------------
    def plot_rect(self) -> QRectF:
        return QRectF(self.MARGIN_L, self.MARGIN_T, max(self.width() - self.MARGIN_L - self.MARGIN_R, 10),
                      max(self.height() - self.MARGIN_T - self.MARGIN_B, 10))

    def x_range(self):
        tl = self.view.state.timeline
        if tl is None:
            return 0.0, 1.0
        return 0.0, max(tl.duration_s, tl.tr_time(tl.n_trs), 1e-6)

    def x_of_time(self, t_s: float) -> float:
        r = self.plot_rect()
        lo, hi = self.x_range()
        return r.left() + (t_s - lo) / (hi - lo) * r.width()

    def time_of_x(self, x: float) -> float:
        r = self.plot_rect()
        lo, hi = self.x_range()
        return lo + (x - r.left()) / r.width() * (hi - lo)

    def y_range(self):
        v = self.view
        vals = [a for a in (v.measured, v.predicted) if a is not None]
        vals = np.concatenate(vals) if vals else np.zeros(0)
        vals = vals[np.isfinite(vals)]
        if vals.size == 0:
            return -1.0, 1.0
        lo, hi = float(vals.min()), float(vals.max())
        pad = 0.08 * (hi - lo or 1.0)
        return lo - pad, hi + pad

    def y_of(self, value, y_lo, y_hi):
        r = self.plot_rect()
        return r.bottom() - (np.asarray(value) - y_lo) / (y_hi - y_lo) * r.height()

    # ---- painting ----------------------------------------------------------------------
    def paintEvent(self, _e) -> None:  # noqa: N802
        v = self.view
        p = QPainter(self)
        p.setRenderHint(QPainter.Antialiasing, True)
        p.fillRect(self.rect(), QColor("#ffffff"))
        r = self.plot_rect()
        small = QFont(self.font())
        small.setPointSizeF(max(small.pointSizeF() - 1, 7))
        p.setFont(small)
        tl = v.state.timeline
        if v.times is None or tl is None:
            p.setPen(QColor("#6c737c"))
            p.drawText(self.rect(), Qt.AlignCenter, v.empty_text)
            p.end()
            return
        y_lo, y_hi = self.y_range()
        x_lo, x_hi = self.x_range()
        # grid and axes
        grid = QPen(QColor("#e6e8eb"))
        axis_text = QColor("#5c636b")
        for ty in nice_ticks(y_lo, y_hi, 4):
            y = float(self.y_of(ty, y_lo, y_hi))
            p.setPen(grid)
            p.drawLine(QPointF(r.left(), y), QPointF(r.right(), y))
            p.setPen(axis_text)
            p.drawText(QRectF(0, y - 8, self.MARGIN_L - 6, 16), Qt.AlignRight | Qt.AlignVCenter,
                       f"{ty:.0f}" if 1000 <= abs(ty) < 1e6 else f"{ty:.3g}")   # file units: 1050, not 1.05e+03
        for tx in nice_ticks(x_lo, x_hi, 8):
            x = self.x_of_time(tx)
            p.setPen(grid)
            p.drawLine(QPointF(x, r.top()), QPointF(x, r.bottom()))
            p.setPen(axis_text)
            p.drawText(QRectF(x - 30, r.bottom() + 3, 60, 14), Qt.AlignHCenter | Qt.AlignTop, f"{tx:g}")
        p.drawText(QRectF(r.left(), r.bottom() + 15, r.width(), 14), Qt.AlignHCenter, "time in episode (s)")
        p.save()
        p.translate(11, r.center().y())
        p.rotate(-90)
        label = v.y_label
        if p.fontMetrics().horizontalAdvance(label) > r.height():   # a short plot: the short form
            label = v.y_label_short
        p.drawText(QRectF(-r.height() / 2, -8, r.height(), 16), Qt.AlignCenter, label)
        p.restore()
        p.setPen(QPen(QColor("#9aa1a9")))
        p.drawRect(r)
        # current TR band and exact time
        k = v.cursor_tr
        band = QRectF(self.x_of_time(tl.tr_time(k)), r.top(),
                      max(self.x_of_time(tl.tr_time(k + 1)) - self.x_of_time(tl.tr_time(k)), 1.0), r.height())
        p.fillRect(band.intersected(r), QColor(25, 113, 194, 40))
        # curves
        for values, color, width in ((v.measured, MEASURED_COLOR, 1.4), (v.predicted, PREDICTED_COLOR, 1.8)):
            if values is None:
                continue
            path = QPainterPath()
            started = False
            ys = self.y_of(values, y_lo, y_hi)
            for t, y, val in zip(v.times, ys, values):
                if not np.isfinite(val):
                    started = False
                    continue
                pt = QPointF(self.x_of_time(t + 0.5 * tl.tr_s), float(y))  # plot at the TR's centre
                if started:
                    path.lineTo(pt)
                else:
                    path.moveTo(pt)
                    started = True
            p.setPen(QPen(color, width))
            p.drawPath(path)
        x = self.x_of_time(v.state.time)
        p.setPen(QPen(CURSOR_COLOR, 1.5))
        p.drawLine(QPointF(x, r.top()), QPointF(x, r.bottom()))
        # legend
        lx = r.left() + 8
        for label, color in (("measured", MEASURED_COLOR), ("predicted", PREDICTED_COLOR)):
            if label == "predicted" and (v.predicted is None or not np.isfinite(v.predicted).any()):
                continue
            p.setPen(QPen(color, 2.5))
            p.drawLine(QPointF(lx, 12), QPointF(lx + 18, 12))
            p.setPen(axis_text)
            p.drawText(QRectF(lx + 22, 4, 80, 16), Qt.AlignLeft | Qt.AlignVCenter, label)
            lx += 100
        p.setPen(axis_text)
        p.drawText(QRectF(lx, 4, r.right() - lx, 16), Qt.AlignRight | Qt.AlignVCenter,
                   f"TR {k}  ·  {tl.tr_time(k):.2f}–{tl.tr_time(k + 1):.2f} s")
        p.end()

    # ---- mouse: click or drag moves the time ------------------------------------------------
    def mousePressEvent(self, e) -> None:  # noqa: N802
        if e.button() == Qt.LeftButton and self.view.times is not None:
            self.view.state.time = self.time_of_x(e.position().x())

    def mouseMoveEvent(self, e) -> None:  # noqa: N802
        if e.buttons() & Qt.LeftButton and self.view.times is not None:
            self.view.state.time = self.time_of_x(e.position().x())


class TimecourseView(QWidget):
    """Title + plot of measured vs predicted for ``state.target`` in ``state.run``."""

    EMPTY_TEXT = "Click the cortex (or pick a region) to see its time course"

    def __init__(self, state: AppState, session=None, parent=None) -> None:
        super().__init__(parent)
        self.state = state
        self.session = session
        self.times: Optional[np.ndarray] = None       # n, TR start times (s)
        self.measured: Optional[np.ndarray] = None    # n
        self.predicted: Optional[np.ndarray] = None   # n
        self.cursor_tr = 0
        self.y_label = "response"
        self.y_label_short = "response"
        self.empty_text = self.EMPTY_TEXT
        self.title = QLabel("Time course")
        self.title.setObjectName("paneTitle")
        self.detail = QLabel("")
        self.detail.setObjectName("paneHint")
        self.plot = TimecoursePlot(self)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.setSpacing(2)
        head = QVBoxLayout()
        head.setSpacing(0)
        head.addWidget(self.title)
        head.addWidget(self.detail)
        lay.addLayout(head)
        lay.addWidget(self.plot, 1)
        state.events.time.connect(self._on_time)
        state.events.target.connect(self._on_data)
        state.events.run.connect(self._on_data)
        state.events.timeline.connect(self._on_data)
        self._on_data(None)

    def set_session(self, session) -> None:
        self.session = session
        self._on_data(None)

    @property
    def cursor_time_s(self) -> float:
        return self.state.time

    def _on_time(self, e: Event) -> None:
        k = self.state.tr_index
        if k != self.cursor_tr:
            self.cursor_tr = k
        self.plot.update()   # the exact-time line moves every tick; repaint is cheap

    def _on_data(self, _e) -> None:
        s, target, run = self.session, self.state.target, self.state.run
        self.cursor_tr = self.state.tr_index
        self.empty_text = self.EMPTY_TEXT
        if s is None or target is None or not s.runs:
            self.times = self.measured = self.predicted = None
            self.title.setText("Time course")
            self.detail.setText("")
            self.plot.update()
            return
        run = run or s.run_names[0]
        try:
            self.times, self.measured, self.predicted = s.roi_timecourse(run, target)
        except AlignScopeError as exc:
            self.times = self.measured = self.predicted = None
            self.empty_text = str(exc)
            self.plot.update()
            return
        score = s.target_score(target)
        has_pred = s.has_prediction(run)
        self.y_label = "response (z-scored per run)" if has_pred else "response (file units)"
        self.y_label_short = "z-score" if has_pred else "file units"
        where = target.label
        if target.kind == "vertex":
            region = s.region_of_vertex(target.vertex)
            hemi = "left" if s.surface is None or target.vertex < s.surface.n_left else "right"
            run_atlas = s.run_atlas(run)
            if run_atlas is not None:
                k = int(np.asarray(run_atlas.labels)[target.vertex])
                region = str(run_atlas.names[k - 1]) if k > 0 else region
            if run_atlas is not None and region:
                where = f"Parcel {region} (at vertex {target.vertex}, {hemi} hemisphere)"
            else:
                where = f"Vertex {target.vertex} ({hemi} hemisphere" + (f", {region})" if region else ")")
        self.title.setText(where)
        what = "r" if target.kind == "vertex" else "mean vertex r"
        no_prediction = self.predicted is None or not np.isfinite(self.predicted).any()
        r_txt = "" if np.isnan(score) or no_prediction else f"{what} = {score:.3f} (held-out)  ·  "
        self.detail.setText(f"{r_txt}run {run}  ·  {len(self.times)} TRs")
        self.plot.update()

    def close_view(self) -> None:
        self.state.events.time.disconnect(self._on_time)
        for name in ("target", "run", "timeline"):
            getattr(self.state.events, name).disconnect(self._on_data)
