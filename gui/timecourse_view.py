"""The time-course pane: measured vs predicted response of the selected vertex or region.

Drawn with pyqtgraph (fast, made for Qt): the mouse wheel zooms, a drag pans, a right click
offers "View all" and exports; a click moves the time, and the cursor line can be dragged.
Several targets can be pinned and stay overlaid; a band (e.g. a noise ceiling) can be laid
under the curves; dashed lines mark where the run (and the fitted rows) begin and end.
Export: PNG, SVG (pyqtgraph's exporters) and CSV of every curve shown.
"""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QPointF, QSize, Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QHBoxLayout, QPushButton, QSizePolicy, QVBoxLayout, QWidget

from engine.errors import AlignScopeError, ConfigError
from engine.state import AppState, Event

from .widgets import ElidedLabel

MEASURED_COLOR = QColor("#2b2d31")
PREDICTED_COLOR = QColor("#e8590c")
CURSOR_COLOR = QColor("#1971c2")
# Okabe-Ito (colour-blind safe) for pinned targets
PIN_COLORS = ("#0072B2", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")


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


class TimecoursePlot(pg.PlotWidget):
    """The plot itself; exposes what it draws so tests can compare it with the session."""

    def __init__(self, view: "TimecourseView") -> None:
        super().__init__(view, background="w")
        self.view = view
        self.setMinimumSize(240, 90)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        item = self.getPlotItem()
        item.showGrid(x=True, y=True, alpha=0.15)
        item.setLabel("bottom", "time in episode (s)")
        item.setMenuEnabled(True)
        item.setClipToView(True)
        self.vb = item.getViewBox()
        self.vb.setMouseMode(pg.ViewBox.PanMode)
        self.vb.setLimits(xMin=-5)
        self.legend = item.addLegend(offset=(-4, 4), labelTextSize="8pt")
        self.band = pg.LinearRegionItem(orientation="vertical", movable=False,
                                        brush=pg.mkBrush(25, 113, 194, 40), pen=pg.mkPen(None))
        self.band.setZValue(-10)
        item.addItem(self.band, ignoreBounds=True)
        self.ceiling_lo = pg.PlotDataItem(pen=pg.mkPen(None))
        self.ceiling_hi = pg.PlotDataItem(pen=pg.mkPen(None))
        self.ceiling = pg.FillBetweenItem(self.ceiling_lo, self.ceiling_hi, brush=pg.mkBrush(120, 120, 120, 50))
        self.ceiling.setZValue(-5)
        item.addItem(self.ceiling)
        self.measured_curve = item.plot(pen=pg.mkPen(MEASURED_COLOR, width=1.4), name="measured")
        self.predicted_curve = item.plot(pen=pg.mkPen(PREDICTED_COLOR, width=1.8), name="predicted")
        self.pin_curves: List[pg.PlotDataItem] = []
        self.boundaries: List[pg.InfiniteLine] = []
        self.cursor = pg.InfiniteLine(angle=90, movable=True, pen=pg.mkPen(CURSOR_COLOR, width=1.5))
        self.cursor.setZValue(10)
        item.addItem(self.cursor, ignoreBounds=True)
        self.cursor.sigPositionChanged.connect(self._cursor_dragged)
        self.message = pg.TextItem("", color="#6c737c", anchor=(0.5, 0.5))
        item.addItem(self.message, ignoreBounds=True)
        self._moving_cursor = False

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(560, 240)

    # ---- geometry: widget x <-> time -----------------------------------------------------------
    def x_of_time(self, t_s: float) -> float:
        """Widget x where time ``t_s`` is drawn."""
        scene = self.vb.mapViewToScene(QPointF(float(t_s), 0.0))
        return float(self.viewportTransform().map(scene).x())

    def time_of_x(self, x: float) -> float:
        """Time drawn at widget x."""
        inverse, _ok = self.viewportTransform().inverted()
        return float(self.vb.mapSceneToView(inverse.map(QPointF(float(x), 0.0))).x())

    def x_range(self) -> Tuple[float, float]:
        lo, hi = self.vb.viewRange()[0]
        return float(lo), float(hi)

    # ---- mouse: a click moves the time, dragging the cursor too --------------------------------
    def _note_press(self, ev) -> None:
        self._press_at = (ev.position().x(), ev.position().y()) if ev.button() == Qt.LeftButton else None

    def _note_release(self, ev) -> None:
        at = getattr(self, "_press_at", None)
        if (ev.button() == Qt.LeftButton and at is not None and self.view.times is not None
                and abs(ev.position().x() - at[0]) + abs(ev.position().y() - at[1]) <= 3):
            self.view.state.time = max(self.time_of_x(ev.position().x()), 0.0)   # a click, not a pan
        self._press_at = None

    def mousePressEvent(self, ev) -> None:  # noqa: N802 - Qt name (events on the viewport)
        self._note_press(ev)
        super().mousePressEvent(ev)

    def mouseReleaseEvent(self, ev) -> None:  # noqa: N802
        super().mouseReleaseEvent(ev)
        self._note_release(ev)

    def event(self, ev) -> bool:
        # mouse events sent to the view itself (not its viewport, e.g. by QTest) are ignored by
        # QAbstractScrollArea: treat a click there as one on the plot
        if ev.type() == QEvent.MouseButtonPress:
            self._note_press(ev)
            return True
        if ev.type() == QEvent.MouseButtonRelease:
            self._note_release(ev)
            return True
        return super().event(ev)

    def _cursor_dragged(self) -> None:
        if self._moving_cursor or self.view.times is None:
            return
        self.view.state.time = max(float(self.cursor.value()), 0.0)

    def set_cursor(self, t_s: float) -> None:
        self._moving_cursor = True
        self.cursor.setValue(float(t_s))
        self._moving_cursor = False


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
        self.pinned: List[Tuple[str, np.ndarray, np.ndarray]] = []   # (label, times, measured) overlaid
        self.band_values: Optional[Tuple[np.ndarray, np.ndarray, str]] = None   # (lower, upper, label)
        self.run_bounds_s: List[float] = []
        self.cursor_tr = 0
        self.y_label = "response"
        self.y_label_short = "response"
        self.empty_text = self.EMPTY_TEXT
        # long names never widen the pane nor get cut: they end in "…", whole in the tooltip
        self.title = ElidedLabel("Time course")
        self.title.setObjectName("paneTitle")
        self.detail = ElidedLabel("")
        self.detail.setObjectName("paneHint")
        self.plot = TimecoursePlot(self)
        self.pin_button = QPushButton("Pin")
        self.pin_button.setToolTip("Keep this target's measured curve on the plot (overlay several)")
        self.pin_button.clicked.connect(self.pin_current)
        self.clear_button = QPushButton("Unpin")
        self.clear_button.clicked.connect(self.clear_pins)
        self.fit_button = QPushButton("Fit")
        self.fit_button.setToolTip("Show the whole run (undo zoom and pan)")
        self.fit_button.clicked.connect(self.view_all)
        self.peak_button = QPushButton("Peaks ▸")
        self.peak_button.setToolTip("Jump to the next of the TRs where this target responds most")
        self.peak_button.clicked.connect(lambda: self.jump_to_moment("response"))
        self.best_button = QPushButton("Best ▸")
        self.best_button.setToolTip("Jump to the next of the TRs where a strong response was best predicted")
        self.best_button.clicked.connect(lambda: self.jump_to_moment("prediction"))
        self._moment_cursor = {}
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("Save the plot as PNG or SVG, or its curves as CSV")
        self.export_button.clicked.connect(self._export_dialog)
        for b in (self.pin_button, self.clear_button, self.fit_button, self.peak_button, self.best_button,
                  self.export_button):
            b.setFlat(True)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.setSpacing(2)
        head = QHBoxLayout()
        text = QVBoxLayout()
        text.setSpacing(0)
        text.addWidget(self.title)
        text.addWidget(self.detail)
        head.addLayout(text, 1)
        for b in (self.peak_button, self.best_button, self.pin_button, self.clear_button, self.fit_button,
                  self.export_button):
            head.addWidget(b)
        lay.addLayout(head)
        lay.addWidget(self.plot, 1)
        state.events.time.connect(self._on_time)
        state.events.target.connect(self._on_data)
        state.events.run.connect(self._on_data)
        state.events.timeline.connect(self._on_data)
        self._on_data(None)

    def set_session(self, session) -> None:
        self.session = session
        self.pinned = []
        self.band_values = None
        self._on_data(None)

    @property
    def cursor_time_s(self) -> float:
        return self.state.time

    # ---- state events -----------------------------------------------------------------
    def _on_time(self, e: Event) -> None:
        tl = self.state.timeline
        self.cursor_tr = self.state.tr_index
        self.plot.set_cursor(self.state.time)
        if tl is not None:
            k = self.cursor_tr
            self.plot.band.setRegion((tl.tr_time(k), tl.tr_time(k + 1)))

    def _on_data(self, _e) -> None:
        s, target, run = self.session, self.state.target, self.state.run
        self.cursor_tr = self.state.tr_index
        self.empty_text = self.EMPTY_TEXT
        if s is None or target is None or not s.runs:
            self.times = self.measured = self.predicted = None
            self.title.setText("Time course")
            self.detail.setText("")
            self._draw()
            return
        run = run or s.run_names[0]
        try:
            self.times, self.measured, self.predicted = s.roi_timecourse(run, target)
        except AlignScopeError as exc:
            self.times = self.measured = self.predicted = None
            self.empty_text = str(exc)
            self._draw()
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
        self.title.setText(where)    # the whole text is its tooltip
        what = "r" if target.kind == "vertex" else "mean vertex r"
        no_prediction = self.predicted is None or not np.isfinite(self.predicted).any()
        r_txt = "" if np.isnan(score) or no_prediction else f"{what} = {score:.3f} (held-out)  ·  "
        self.detail.setText(f"{r_txt}run {run}  ·  {len(self.times)} TRs")
        tl = self.state.timeline
        self.run_bounds_s = []
        if tl is not None:
            self.run_bounds_s = [0.0, float(tl.tr_time(tl.n_trs))]
            if len(self.times) and self.times[0] > 0:    # the fit dropped the run's first TRs
                self.run_bounds_s.insert(1, float(self.times[0]))
        self._draw()

    # ---- drawing ----------------------------------------------------------------------
    def _draw(self) -> None:
        pl = self.plot
        item = pl.getPlotItem()
        for c in pl.pin_curves:
            item.removeItem(c)
            pl.legend.removeItem(c)
        pl.pin_curves = []
        for line in pl.boundaries:
            item.removeItem(line)
        pl.boundaries = []
        if self.times is None:
            pl.measured_curve.setData([], [])
            pl.predicted_curve.setData([], [])
            pl.ceiling_lo.setData([], [])
            pl.ceiling_hi.setData([], [])
            pl.message.setText(self.empty_text)
            pl.message.setPos(0.5, 0.5)
            pl.vb.setRange(xRange=(0, 1), yRange=(0, 1), padding=0)
            pl.cursor.hide()
            pl.band.hide()
            return
        pl.message.setText("")
        pl.cursor.show()
        pl.band.show()
        t = np.asarray(self.times, dtype=float)
        pl.measured_curve.setData(t, np.asarray(self.measured, dtype=float), connect="finite")
        if self.predicted is not None and np.isfinite(self.predicted).any():
            pl.predicted_curve.setData(t, np.asarray(self.predicted, dtype=float), connect="finite")
        else:
            pl.predicted_curve.setData([], [])
        for i, (label, pt, pm) in enumerate(self.pinned):
            c = item.plot(pt, pm, pen=pg.mkPen(PIN_COLORS[i % len(PIN_COLORS)], width=1.2), name=label,
                          connect="finite")
            pl.pin_curves.append(c)
        if self.band_values is not None and len(self.band_values[0]) == len(t):
            pl.ceiling_lo.setData(t, self.band_values[0])
            pl.ceiling_hi.setData(t, self.band_values[1])
        else:
            pl.ceiling_lo.setData([], [])
            pl.ceiling_hi.setData([], [])
        for x in self.run_bounds_s:
            line = pg.InfiniteLine(pos=x, angle=90, movable=False,
                                   pen=pg.mkPen("#868e96", width=1, style=Qt.DashLine))
            item.addItem(line, ignoreBounds=True)
            pl.boundaries.append(line)
        item.setLabel("left", self.y_label if pl.height() > 160 else self.y_label_short)
        self._on_time(None)
        self.view_all()

    def view_all(self) -> None:
        """Whole run on x, every curve on y."""
        if self.times is None:
            return
        tl = self.state.timeline
        hi = max(tl.duration_s, tl.tr_time(tl.n_trs), 1e-6) if tl is not None else float(self.times[-1]) + 1
        ys = [a for a in [self.measured, self.predicted] + [p[2] for p in self.pinned] if a is not None]
        if self.band_values is not None:
            ys += [self.band_values[0], self.band_values[1]]
        y = np.concatenate([np.asarray(a, dtype=float) for a in ys]) if ys else np.zeros(1)
        y = y[np.isfinite(y)]
        lo, top = (float(y.min()), float(y.max())) if y.size else (-1.0, 1.0)
        pad = 0.08 * (top - lo or 1.0)
        self.plot.vb.setRange(xRange=(0.0, hi), yRange=(lo - pad, top + pad), padding=0)

    # ---- moments ------------------------------------------------------------------------
    def moments(self, kind: str = "response", top: int = 5) -> np.ndarray:
        """Start times (s) of the ``top`` TRs, best first: where the measured response is highest
        ("response"), or where a high response was best predicted ("prediction": largest
        measured x predicted, both z-scored, i.e. both high together)."""
        if self.times is None:
            return np.zeros(0)
        m = np.asarray(self.measured, dtype=float)
        if kind == "response":
            score = m
        elif kind == "prediction":
            p = np.asarray(self.predicted, dtype=float) if self.predicted is not None else np.full_like(m, np.nan)
            if not np.isfinite(p).any():
                return np.zeros(0)
            z = lambda a: (a - np.nanmean(a)) / (np.nanstd(a) or 1.0)  # noqa: E731
            score = np.where((z(m) > 0) & (z(p) > 0), z(m) * z(p), np.nan)
        else:
            raise ConfigError(f"moments: expected 'response' or 'prediction', found {kind!r}")
        order = np.argsort(-np.nan_to_num(score, nan=-np.inf))
        order = [i for i in order if np.isfinite(score[i])][:top]
        return np.asarray(self.times, dtype=float)[order]

    def jump_to_moment(self, kind: str = "response") -> Optional[float]:
        """Move the time to the next of :meth:`moments` (cycles); returns the time or None."""
        times = self.moments(kind)
        if times.size == 0:
            return None
        key = (kind, self.state.target, self.state.run)
        i = self._moment_cursor.get(key, -1) + 1
        self._moment_cursor = {key: i % times.size}
        t = float(times[i % times.size])
        self.state.time = t
        return t

    # ---- overlays -----------------------------------------------------------------------
    def pin_current(self) -> None:
        """Keep the current target's measured curve on the plot (until "Clear pins")."""
        if self.times is None or self.state.target is None:
            return
        label = self.state.target.label
        if any(p[0] == label for p in self.pinned):
            return
        self.pinned.append((label, np.asarray(self.times, float).copy(), np.asarray(self.measured, float).copy()))
        self._draw()

    def clear_pins(self) -> None:
        self.pinned = []
        self._draw()

    def set_band(self, lower: Optional[np.ndarray], upper: Optional[np.ndarray] = None,
                 label: str = "noise ceiling") -> None:
        """Shade between ``lower`` and ``upper`` (n TRs each, e.g. the range a noise ceiling allows);
        None removes the band."""
        if lower is None:
            self.band_values = None
        else:
            lo, hi = np.asarray(lower, float), np.asarray(upper, float)
            if lo.shape != hi.shape:
                raise ConfigError(f"band: expected lower and upper of one shape, found {lo.shape} and {hi.shape}")
            self.band_values = (lo, hi, label)
        self._draw()

    # ---- export -------------------------------------------------------------------------
    def curves(self) -> List[Tuple[str, np.ndarray, np.ndarray]]:
        """Every curve shown: (name, times_s, values)."""
        if self.times is None:
            return []
        out = [("measured", np.asarray(self.times, float), np.asarray(self.measured, float))]
        if self.predicted is not None and np.isfinite(self.predicted).any():
            out.append(("predicted", np.asarray(self.times, float), np.asarray(self.predicted, float)))
        out += [(f"pinned: {label}", t, m) for label, t, m in self.pinned]
        return out

    def export(self, path) -> Path:
        """Write the plot to ``path``: .png, .svg (the plot as drawn) or .csv (one row per TR,
        one column per curve, times in seconds). Written atomically."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (".png", ".svg", ".csv"):
            raise ConfigError(f"time-course export: expected a .png, .svg or .csv file, found {path.name!r}")
        if self.times is None:
            raise ConfigError("time-course export: expected a selected vertex or region, found none")
        fd, tmp = tempfile.mkstemp(suffix=suffix, dir=str(path.parent))
        os.close(fd)
        try:
            if suffix == ".csv":
                curves = self.curves()
                with open(tmp, "w", newline="") as f:
                    w = csv.writer(f)
                    w.writerow(["time_s"] + [name for name, _t, _v in curves])
                    for i, t in enumerate(curves[0][1]):
                        w.writerow([f"{t:.6g}"] + [f"{v[i]:.6g}" if i < len(v) and np.isfinite(v[i]) else ""
                                                   for _n, _t, v in curves])
            elif suffix == ".png":
                import pyqtgraph.exporters as ex

                exporter = ex.ImageExporter(self.plot.getPlotItem())
                exporter.parameters()["width"] = max(int(self.plot.width() * 2), 800)
                exporter.export(tmp)
            else:
                # Qt's own SVG writer (pyqtgraph 0.14's SVGExporter fails on Qt 6 path data)
                from PySide6.QtCore import QRect
                from PySide6.QtGui import QPainter
                from PySide6.QtSvg import QSvgGenerator

                gen = QSvgGenerator()
                gen.setFileName(tmp)
                gen.setSize(self.plot.size())
                gen.setViewBox(QRect(0, 0, self.plot.width(), self.plot.height()))
                gen.setTitle(self.title.text())
                painter = QPainter(gen)
                self.plot.render(painter)
                painter.end()
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return path

    def _export_dialog(self) -> None:
        from PySide6.QtWidgets import QFileDialog, QMessageBox

        path, _ = QFileDialog.getSaveFileName(self, "Export time course", "timecourse.png",
                                              "PNG image (*.png);;SVG figure (*.svg);;CSV table (*.csv)")
        if path:
            try:
                self.export(path)
            except (AlignScopeError, OSError) as exc:
                QMessageBox.warning(self, "Export time course", str(exc))

    def close_view(self) -> None:
        self.state.events.time.disconnect(self._on_time)
        for name in ("target", "run", "timeline"):
            getattr(self.state.events, name).disconnect(self._on_data)
