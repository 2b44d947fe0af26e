"""The Studies dock: run one of the reference studies (:mod:`engine.studies`) and look at its answer.

A view only: the study is an engine job (:func:`engine.studies.run_study_job`) started through the
window's job manager (a worker thread, cancellable from the Jobs dock or here). Its result opens as
maps on the cortex (Δr, unique R², best layer...; each with its own colour scale), a layer x region
heat map and per-region bars with intervals; clicking a bar or a heat-map column selects that region
in the window (the time course and the cortex outline follow). Two maps of a study (e.g. model A's
and model B's scores of ``encoders``) open side by side on the cortex with linked cameras, with or
without their difference A − B (the cortex's :class:`~gui.cortex_view.CortexPairView`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, List, Optional

import numpy as np
from PySide6.QtCore import QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QPainter, QPen
from PySide6.QtWidgets import (QCheckBox, QScrollArea, QComboBox, QDockWidget, QFormLayout, QHBoxLayout, QLabel, QLineEdit, QPushButton,
                               QSizePolicy, QSpinBox, QSplitter, QVBoxLayout, QWidget)

from engine.studies import WORKFLOWS

__all__ = ["StudiesPanel", "RegionBars", "LayerRegionHeatmap", "install_studies_dock"]

BG = QColor("#1e2227")
FG = QColor("#d7dbe0")
MUTED = QColor("#8a929c")
POS = QColor("#e0603a")
NEG = QColor("#3a8ee0")
NS = QColor("#6b7178")

DEMO_DEFAULTS = {
    "encoders": "demo-av:visual_words demo-av:visual",
    "ablation": "demo-av:all",
    "joint": "demo-av:visual demo-av:language demo-av:joint",
    "checkpoints": "minilm <demo>/models/minilm-random",
    "layers": "demo-context word-rate",
}


class RegionBars(QWidget):
    """Horizontal bars of one value per region with interval whiskers; a click selects the region."""

    region_clicked = Signal(str)

    def __init__(self, parent=None, n_max: int = 14) -> None:
        super().__init__(parent)
        self.n_max = n_max
        self.rows: List[dict] = []
        self.title = ""
        self.selected: Optional[str] = None
        self.setMinimumHeight(100)   # fits a 1366x768 screen with the dock tabbed at the bottom
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)

    def set_rows(self, table, value: str, title: str = "", alpha: float = 0.05) -> None:
        """Rows of an engine region table: the ``n_max`` largest |value|, largest first."""
        self.rows = []
        self.title = title
        if table is not None and len(table):
            v = table[value].to_numpy(float)
            order = np.argsort(-np.nan_to_num(np.abs(v), nan=-1), kind="stable")[:self.n_max]
            for i in order:
                r = table.iloc[int(i)]
                q = float(r["q_value"]) if "q_value" in table else 0.0
                self.rows.append({"region": str(r["region"]), "value": float(r[value]),
                                  "low": float(r["ci_low"]) if "ci_low" in table else math.nan,
                                  "high": float(r["ci_high"]) if "ci_high" in table else math.nan,
                                  "significant": bool(q <= alpha)})
        self.update()

    def _geometry(self):
        top, row_h = 22.0, max(12.0, min(22.0, (self.height() - 30.0) / max(len(self.rows), 1)))
        label_w = min(230.0, self.width() * 0.42)
        vals = [x for r in self.rows for x in (r["value"], r["low"], r["high"]) if math.isfinite(x)]
        lo, hi = (min(vals + [0.0]), max(vals + [0.0])) if vals else (-1.0, 1.0)
        if hi - lo < 1e-12:
            hi = lo + 1.0
        return top, row_h, label_w, lo, hi

    def row_rect(self, i: int) -> QRectF:
        top, row_h, _, _, _ = self._geometry()
        return QRectF(0, top + i * row_h, self.width(), row_h)

    def paintEvent(self, _e) -> None:  # noqa: N802
        p = QPainter(self)
        p.fillRect(self.rect(), BG)
        p.setPen(FG)
        p.drawText(QRectF(4, 2, self.width() - 8, 18), Qt.AlignLeft | Qt.AlignVCenter, self.title)
        if not self.rows:
            p.setPen(MUTED)
            p.drawText(self.rect(), Qt.AlignCenter, "Run a study to see its regions")
            p.end()
            return
        top, row_h, label_w, lo, hi = self._geometry()
        x0, x1 = label_w + 8, self.width() - 10

        def X(v):
            return x0 + (v - lo) / (hi - lo) * (x1 - x0)

        f = QFont(self.font())
        f.setPointSizeF(max(7.0, min(9.0, row_h * 0.55)))
        p.setFont(f)
        p.setPen(QPen(MUTED, 1))
        p.drawLine(int(X(0)), int(top), int(X(0)), int(top + row_h * len(self.rows)))
        for i, r in enumerate(self.rows):
            y = top + i * row_h
            if r["region"] == self.selected:
                p.fillRect(QRectF(0, y, self.width(), row_h), QColor("#2f3a46"))
            p.setPen(FG)
            p.drawText(QRectF(2, y, label_w, row_h), Qt.AlignRight | Qt.AlignVCenter, r["region"][-34:])
            color = (POS if r["value"] > 0 else NEG) if r["significant"] else NS
            a, b = sorted((X(0), X(r["value"])))
            p.fillRect(QRectF(a, y + row_h * 0.2, max(b - a, 1.0), row_h * 0.6), color)
            if math.isfinite(r["low"]) and math.isfinite(r["high"]):
                p.setPen(QPen(FG, 1))
                yc = y + row_h / 2
                p.drawLine(int(X(r["low"])), int(yc), int(X(r["high"])), int(yc))
                for v in (r["low"], r["high"]):
                    p.drawLine(int(X(v)), int(yc - row_h * 0.2), int(X(v)), int(yc + row_h * 0.2))
        p.end()

    def region_at(self, y: float) -> Optional[str]:
        for i, r in enumerate(self.rows):
            if self.row_rect(i).contains(5, y):
                return r["region"]
        return None

    def mousePressEvent(self, e) -> None:  # noqa: N802
        name = self.region_at(e.position().y())
        if name is not None:
            self.selected = name
            self.update()
            self.region_clicked.emit(name)


class LayerRegionHeatmap(QWidget):
    """Layer (rows) x region (columns) colours; a click on a column selects the region."""

    region_clicked = Signal(str)

    def __init__(self, parent=None, n_max: int = 30) -> None:
        super().__init__(parent)
        self.n_max = n_max
        self.table = None
        self.title = ""
        self.setMinimumHeight(100)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)

    def set_table(self, layer_region, title: str = "") -> None:
        """A layer x region DataFrame; the ``n_max`` regions with the largest |value| are shown."""
        self.title = title
        if layer_region is None or not len(layer_region):
            self.table = None
        else:
            a = np.abs(layer_region.to_numpy(float))
            score = np.nanmax(np.where(np.isfinite(a), a, -1), axis=0)
            keep = np.argsort(-score, kind="stable")[:self.n_max]
            self.table = layer_region.iloc[:, keep]
        self.update()

    def _cells(self):
        left, top = 60.0, 20.0
        n_l, n_r = self.table.shape
        cw = (self.width() - left - 6) / max(n_r, 1)
        ch = (self.height() - top - 6) / max(n_l, 1)
        return left, top, cw, ch

    def paintEvent(self, _e) -> None:  # noqa: N802
        p = QPainter(self)
        p.fillRect(self.rect(), BG)
        p.setPen(FG)
        p.drawText(QRectF(4, 1, self.width() - 8, 18), Qt.AlignLeft | Qt.AlignVCenter, self.title)
        if self.table is None:
            p.setPen(MUTED)
            p.drawText(self.rect(), Qt.AlignCenter, "No layer x region table for this study")
            p.end()
            return
        a = self.table.to_numpy(float)
        m = float(np.nanmax(np.abs(a))) if np.isfinite(a).any() else 1.0
        m = m or 1.0
        signed = bool(np.nanmin(a) < 0) if np.isfinite(a).any() else True
        left, top, cw, ch = self._cells()
        f = QFont(self.font())
        f.setPointSizeF(7.5)
        p.setFont(f)
        for i, layer in enumerate(self.table.index):
            p.setPen(FG)
            p.drawText(QRectF(0, top + i * ch, left - 4, ch), Qt.AlignRight | Qt.AlignVCenter, str(layer))
            for j in range(a.shape[1]):
                v = a[i, j]
                if not math.isfinite(v):
                    c = NS
                elif signed:
                    t = max(-1.0, min(1.0, v / m))
                    c = QColor.fromRgbF(1.0, 1 - t, 1 - t) if t >= 0 else QColor.fromRgbF(1 + t, 1 + t, 1.0)
                else:
                    t = max(0.0, min(1.0, (v - np.nanmin(a)) / max(m - np.nanmin(a), 1e-12)))
                    c = QColor.fromRgbF(0.25 + 0.75 * t, 0.2 + 0.6 * t, 0.5 - 0.3 * t)
                p.fillRect(QRectF(left + j * cw, top + i * ch, cw - 1, ch - 1), c)
        p.end()

    def region_at(self, x: float) -> Optional[str]:
        if self.table is None:
            return None
        left, _, cw, _ = self._cells()
        j = int((x - left) // cw) if x >= left else -1
        return str(self.table.columns[j]) if 0 <= j < self.table.shape[1] else None

    def column_center(self, name: str) -> Optional[float]:
        if self.table is None or name not in list(self.table.columns):
            return None
        left, _, cw, _ = self._cells()
        return left + (list(self.table.columns).index(name) + 0.5) * cw

    def mousePressEvent(self, e) -> None:  # noqa: N802
        name = self.region_at(e.position().x())
        if name is not None:
            self.setToolTip(name)
            self.region_clicked.emit(name)


class StudiesPanel(QWidget):
    """Pick a workflow and its models, run it as a job, look at the answer.

    Parameters
    ----------
    start_job : callable ``(name, factory, on_done) -> JobHandle`` (the window's ``start_job``)
    project_path : callable returning the open project's file (or None)
    show_map : callable ``(values (n_vertices,), style, title)`` painting the cortex, or None
    select_region : callable ``(name)`` selecting a region in the window, or None
    show_pair : callable ``(values_a, values_b, titles, difference, scores)`` showing two maps
        (n_vertices each) side by side with linked cameras, or None
    """

    study_finished = Signal(object)   # StudyResult

    def __init__(self, start_job: Callable, project_path: Callable[[], Optional[Path]],
                 show_map: Optional[Callable] = None, select_region: Optional[Callable] = None,
                 parent=None, show_pair: Optional[Callable] = None) -> None:
        super().__init__(parent)
        self._start_job = start_job
        self._project_path = project_path
        self._show_map = show_map
        self._select_region = select_region
        self._show_pair = show_pair
        self.project_override: Optional[Path] = None
        self.extra_settings: dict = {}
        self.handle = None
        self.result = None
        self.error: Optional[str] = None

        self.workflow_box = QComboBox()
        for name, (_, text) in WORKFLOWS.items():
            self.workflow_box.addItem(name, name)
            self.workflow_box.setItemData(self.workflow_box.count() - 1, text, Qt.ToolTipRole)
        self.models_edit = QLineEdit()
        self.models_edit.setToolTip("Model references NAME[:LAYER[+LAYER]], separated by spaces; empty on the "
                                    "demo project: the demo's own models")
        self.ablate_box = QComboBox()
        self.ablate_box.addItems(["text", "vision", "audio"])
        self.perm_spin = QSpinBox()
        self.perm_spin.setRange(10, 100000)
        self.perm_spin.setValue(1000)
        self.perm_spin.setToolTip("Block permutations (and bootstrap resamples) of the statistics")
        self.run_button = QPushButton("Run study")
        self.run_button.clicked.connect(self.run_study)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.status = QLabel("Choose a workflow and run it on the open project")
        self.status.setWordWrap(True)
        self.map_box = QComboBox()
        self.map_box.setToolTip("Show this map of the study on the cortex (its own colour scale)")
        self.map_box.currentIndexChanged.connect(self._map_chosen)
        self.pair_a_box = QComboBox()
        self.pair_b_box = QComboBox()
        for box, which in ((self.pair_a_box, "left"), (self.pair_b_box, "right")):
            box.setToolTip(f"Map shown on the {which} of the side-by-side view")
        self.diff_check = QCheckBox("Difference A − B")
        self.diff_check.setChecked(True)
        self.diff_check.setToolTip("Add the difference map A − B (its own diverging scale) beside A and B")
        self.diff_check.toggled.connect(lambda _on: self._pair_shown and self.show_side_by_side())
        self.pair_button = QPushButton("Side by side")
        self.pair_button.setToolTip("Show map A and map B side by side on the cortex, cameras linked")
        self.pair_button.setEnabled(False)
        self.pair_button.clicked.connect(lambda: self.show_side_by_side())
        self._pair_shown = False
        self.bars = RegionBars()
        self.heatmap = LayerRegionHeatmap()
        self.bars.region_clicked.connect(self._region_clicked)
        self.heatmap.region_clicked.connect(self._region_clicked)
        self.workflow_box.currentIndexChanged.connect(self._workflow_chosen)

        form = QFormLayout()
        form.addRow("Workflow", self.workflow_box)
        form.addRow("Models", self.models_edit)
        form.addRow("Ablate", self.ablate_box)
        form.addRow("Permutations", self.perm_spin)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        form.addRow(buttons)
        form.addRow("Map", self.map_box)
        form.addRow("Map A", self.pair_a_box)
        form.addRow("Map B", self.pair_b_box)
        pair_row = QHBoxLayout()
        pair_row.addWidget(self.pair_button)
        pair_row.addWidget(self.diff_check)
        form.addRow(pair_row)
        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(4, 4, 4, 4)
        lv.addLayout(form)
        lv.addWidget(self.status)
        lv.addStretch(1)
        # the form scrolls rather than making the dock (and so the window) taller than a laptop screen
        left_scroll = QScrollArea()
        left_scroll.setWidgetResizable(True)
        left_scroll.setFrameShape(QScrollArea.NoFrame)
        left_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        left_scroll.setWidget(left)
        left_scroll.setMinimumWidth(left.minimumSizeHint().width() + 16)
        split = QSplitter(Qt.Horizontal)
        split.addWidget(left_scroll)
        split.addWidget(self.bars)
        split.addWidget(self.heatmap)
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 3)
        split.setStretchFactor(2, 3)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(split)
        self._workflow_chosen(0)

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(900, 260)

    # ---- running -----------------------------------------------------------------------
    @property
    def workflow(self) -> str:
        return self.workflow_box.currentData()

    def _workflow_chosen(self, _i: int) -> None:
        self.ablate_box.setEnabled(self.workflow == "ablation")
        self.models_edit.setPlaceholderText(f"demo: {DEMO_DEFAULTS.get(self.workflow, '')}")

    def project(self) -> Optional[Path]:
        return self.project_override or self._project_path()

    def settings(self, project: Path):
        from engine.studies.common import StudySettings

        out = Path(project).parent / "studies" / self.workflow
        d = dict(project=str(project), out_dir=str(out), models=self.models_edit.text().split(),
                 ablate=self.ablate_box.currentText(), n_perm=self.perm_spin.value(),
                 n_boot=self.perm_spin.value())
        d.update(self.extra_settings)
        return StudySettings(**d)

    def run_study(self):
        """Start the chosen workflow as a job (returns its JobHandle, or None with a message)."""
        from engine.errors import AlignScopeError
        from engine.studies import run_study_job

        project = self.project()
        if project is None:
            self.status.setText("Open a project first (File > Open), then run a study on it")
            return None
        try:
            settings = self.settings(project)
        except AlignScopeError as exc:
            self.status.setText(str(exc))
            return None
        name = self.workflow
        self.result, self.error = None, None
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.status.setText(f"Running the {name} study…")
        handle = self._start_job(f"Study: {name}", lambda token: run_study_job(name, settings, token=token),
                                 self.show_result)
        handle.failed.connect(self._failed)
        handle.cancelled.connect(lambda: self._ended("Cancelled"))
        handle.progress.connect(lambda p: self.status.setText(f"{name}: {p.message}"[:160]))
        self.handle = handle
        return handle

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()

    def _failed(self, message: str, _tb: str) -> None:
        self.error = message
        self._ended(f"The study stopped: {message}")

    def _ended(self, text: str) -> None:
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.status.setText(text)

    # ---- showing -----------------------------------------------------------------------
    def show_result(self, result) -> None:
        """Show a StudyResult (from the job, or :meth:`engine.studies.common.StudyResult.load`)."""
        self.result = result
        self._ended(f"{result.title}: " + (result.findings[0] if result.findings else "") +
                    f" Report: {result.report}")
        self.map_box.blockSignals(True)
        self.map_box.clear()
        for box in (self.pair_a_box, self.pair_b_box):
            box.clear()
        for name, meta in result.map_meta.items():
            if name.startswith("_") or name not in result.vertex_maps:
                continue
            for box in (self.map_box, self.pair_a_box, self.pair_b_box):
                box.addItem(meta.get("label", name), name)
        self.map_box.blockSignals(False)
        a, b = self.default_pair(result)
        for box, name in ((self.pair_a_box, a), (self.pair_b_box, b)):
            i = box.findData(name) if name is not None else -1
            box.setCurrentIndex(i if i >= 0 else min(box.count() - 1, 0 if box is self.pair_a_box else 1))
        self.pair_button.setEnabled(self._show_pair is not None and self.pair_a_box.count() >= 2)
        self._pair_shown = False
        label = result.map_meta.get("_bars", {}).get("label", result.value_column)
        self.bars.set_rows(result.region_table, result.value_column, label,
                           alpha=float(result.settings.get("alpha", 0.05)))
        lr = result.layer_region
        self.heatmap.set_table(lr, "layer x region " + ("Δr" if result.workflow == "checkpoints" else "r"))
        if self.map_box.count():
            self.map_box.setCurrentIndex(0)
            self._map_chosen(0)
        self.study_finished.emit(result)

    @staticmethod
    def default_pair(result):
        """The two maps a study compares, as ``(name_a, name_b)`` (``map_meta["_pair"]`` of the
        result, else ``r_a``/``r_b`` when present, else the first two maps; None where absent)."""
        pair = result.map_meta.get("_pair") or {}
        names = [k for k in result.map_meta if not k.startswith("_") and k in result.vertex_maps]
        if pair.get("a") in names and pair.get("b") in names:
            return pair["a"], pair["b"]
        if "r_a" in names and "r_b" in names:
            return "r_a", "r_b"
        return (names[0] if names else None), (names[1] if len(names) > 1 else None)

    def show_side_by_side(self, name_a: Optional[str] = None, name_b: Optional[str] = None,
                          difference: Optional[bool] = None):
        """Show two maps of the result side by side (linked cameras) and, with ``difference``
        (default: the check box), their difference A − B. Returns what ``show_pair`` returned."""
        if self.result is None or self._show_pair is None:
            return None
        name_a = name_a or self.pair_a_box.currentData()
        name_b = name_b or self.pair_b_box.currentData()
        if name_a is None or name_b is None:
            self.status.setText("Choose map A and map B to see them side by side")
            return None
        if difference is None:
            difference = self.diff_check.isChecked()
        elif difference != self.diff_check.isChecked():
            self.diff_check.blockSignals(True)
            self.diff_check.setChecked(bool(difference))
            self.diff_check.blockSignals(False)
        meta_a = self.result.map_meta.get(name_a, {})
        meta_b = self.result.map_meta.get(name_b, {})
        scores = meta_a.get("unit") == "r" and meta_b.get("unit") == "r"
        titles = (meta_a.get("label", name_a), meta_b.get("label", name_b))
        out = self._show_pair(np.asarray(self.result.vertex_maps[name_a], dtype=np.float64),
                              np.asarray(self.result.vertex_maps[name_b], dtype=np.float64), titles,
                              bool(difference), scores)
        self._pair_shown = True
        return out

    def map_style(self, name: str):
        """The colour scale of one study map (its own: signed maps symmetric, categorical by category)."""
        from engine.session.colour import MapStyle

        values = np.asarray(self.result.vertex_maps[name], dtype=np.float64)
        meta = self.result.map_meta.get(name, {})
        if meta.get("categorical"):
            n = max(len(meta.get("labels") or []), 1)
            return MapStyle(vmax=float(n), threshold=0.5, signed=False), values + 1.0
        style = MapStyle.for_values(values, threshold_fraction=0.15)
        if not meta.get("signed", True):
            style = MapStyle(vmax=style.vmax, threshold=style.threshold, signed=False)
        if meta.get("threshold") is not None:
            style = MapStyle(vmax=style.vmax, threshold=max(float(meta["threshold"]), 1e-12), signed=style.signed)
        return style, values

    def _map_chosen(self, index: int) -> None:
        if self.result is None or index < 0 or self._show_map is None:
            return
        name = self.map_box.itemData(index)
        if name is None:
            return
        style, values = self.map_style(name)
        self._show_map(values, style, self.map_box.itemText(index))

    def _region_clicked(self, name: str) -> None:
        self.bars.selected = name
        self.bars.update()
        if self._select_region is not None:
            self._select_region(name)


def install_studies_dock(window) -> QDockWidget:
    """Add the Studies dock to a MainWindow (a tab beside Jobs); returns the dock."""
    def show_map(values, style, title):
        cv = window.cortex_view
        if cv.plotter is None or cv.session is None:
            window.status_label.setText("Open a project to see study maps on the cortex")
            return
        n = cv.session.n_vertices if hasattr(cv.session, "n_vertices") else len(values)
        if len(values) != n:
            window.status_label.setText(f"This study's map has {len(values)} vertices; the open surface has {n}")
            return
        cv.set_map(values, style, title)

    def select_region(name):
        session = getattr(window, "session", None)
        atlas = getattr(session, "atlas", None) if session is not None else None
        if atlas is None or name not in list(getattr(atlas, "names", [])):
            window.status_label.setText(f"Region {name!r} is not in the atlas of the open session: open the "
                                        "study's project to select it on the cortex")
            return
        window.select_region(name)   # as the Region box does: time course, cortex outline

    def show_pair(values_a, values_b, titles, difference, scores):
        cv = window.cortex_view
        session = getattr(cv, "session", None)
        if cv.plotter is None or session is None or getattr(session, "surface", None) is None:
            window.status_label.setText("Open a project to see study maps side by side on the cortex")
            return None
        n = session.surface.n_vertices
        if len(values_a) != n or len(values_b) != n:
            window.status_label.setText(f"This study's maps have {len(values_a)} vertices; the open surface has {n}")
            return None
        return cv.show_pair(values_a, values_b, titles=titles, difference=difference, scores=scores)

    panel = StudiesPanel(window.start_job, lambda: getattr(window, "project_path", None), show_map,
                         select_region, show_pair=show_pair)
    dock = QDockWidget("Studies", window)
    dock.setObjectName("studiesDock")
    dock.setWidget(panel)
    dock.setFeatures(QDockWidget.DockWidgetMovable | QDockWidget.DockWidgetFloatable
                     | QDockWidget.DockWidgetClosable)
    window.addDockWidget(Qt.BottomDockWidgetArea, dock)
    jobs = getattr(window, "jobs_dock", None)
    if jobs is not None:
        window.tabifyDockWidget(jobs, dock)
        jobs.raise_()
    window.studies_panel = panel
    window.studies_dock = dock
    return dock
