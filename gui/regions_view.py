"""The Regions dock: the open result region by region, and compared with another result.

A view only: the table comes from :meth:`engine.session.ProjectSession.region_table` and the
comparison from :meth:`~engine.session.ProjectSession.region_comparison_job`, run through the
window's job manager (a worker thread), never on the GUI thread. Clicking a row selects that
region on the shared :class:`~engine.state.AppState` (the time course shows the region mean
measured vs predicted and the cortex outlines it).
"""

from __future__ import annotations

import math
from typing import Callable, List, Optional

import numpy as np
from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QHBoxLayout, QHeaderView, QLabel, QTableView,
                               QVBoxLayout, QWidget)

from engine.errors import AlignScopeError

__all__ = ["RegionTableModel", "RegionsView"]

_HEMI = {"left": "L", "right": "R", "both": "L+R"}


def _fmt(value, digits: int = 3) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    return "–" if math.isnan(v) else f"{v:.{digits}f}"


def _fmt_p(value) -> str:
    v = float(value)
    if math.isnan(v):
        return "–"
    return f"{v:.2g}" if v < 0.01 else f"{v:.3f}"


class RegionTableModel(QAbstractTableModel):
    """Rows of a region table (a DataFrame from the engine), sortable by any column.

    Columns: Region, Hemi, Vertices, Mean r, 95% CI, r > 0, then Δr and p (FDR) once a
    comparison is merged in (:meth:`set_comparison`).
    """

    BASE = [("Region", "region"), ("Hemi", "hemisphere"), ("Vertices", "n_vertices"), ("Mean r", "mean_r"),
            ("95% CI", "ci_low"), ("r > 0", "frac_positive")]
    COMPARE = [("Δr", "delta_r"), ("p (FDR)", "q_value")]
    TIPS = {
        "Region": "Atlas region (parcel)",
        "Hemi": "Hemisphere of the region's vertices",
        "Vertices": "Cortical vertices carrying this label",
        "Mean r": "Mean held-out Pearson r over the region's targets",
        "95% CI": "95% bootstrap interval of the mean (targets resampled)",
        "r > 0": "Fraction of the region's targets with r > 0",
        "Δr": "Region mean r of this result minus that of the other result",
        "p (FDR)": "Paired block-swap permutation test of Δr, Benjamini-Hochberg FDR across regions",
    }

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.rows: List[dict] = []
        self.columns = list(self.BASE)
        self._sort = (3, Qt.DescendingOrder)

    # ---- data in -----------------------------------------------------------------------
    def set_table(self, table) -> None:
        """Show an engine region table (a DataFrame, or None for no rows); any comparison is dropped."""
        self.beginResetModel()
        records = [] if table is None else table.to_dict("records")
        self.rows = [dict(r) for r in records]
        self.columns = list(self.BASE)
        self._apply_sort()
        self.endResetModel()

    def set_comparison(self, comparison) -> None:
        """Merge a region comparison (``label, mean_difference, p_value, q_value``) by label."""
        records = comparison.to_dict("records")
        by_label = {int(r["label"]): r for r in records}
        self.beginResetModel()
        for row in self.rows:
            c = by_label.get(int(row["label"]), {})
            row["delta_r"] = float(c.get("delta_r", c.get("mean_difference", np.nan)))
            row["p_value"] = float(c.get("p_value", np.nan))
            row["q_value"] = float(c.get("q_value", np.nan))
        self.columns = list(self.BASE) + list(self.COMPARE)
        self._apply_sort()
        self.endResetModel()

    def clear_comparison(self) -> None:
        if len(self.columns) == len(self.BASE):
            return
        self.beginResetModel()
        self.columns = list(self.BASE)
        if self._sort[0] >= len(self.columns):
            self._sort = (3, Qt.DescendingOrder)
        self._apply_sort()
        self.endResetModel()

    def region_at(self, row: int) -> Optional[str]:
        return str(self.rows[row]["region"]) if 0 <= row < len(self.rows) else None

    def row_of(self, region: str) -> int:
        for i, r in enumerate(self.rows):
            if str(r["region"]) == region:
                return i
        return -1

    def column_of(self, key: str) -> int:
        return [k for _, k in self.columns].index(key)

    # ---- Qt model ------------------------------------------------------------------------
    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self.columns)

    def headerData(self, section, orientation, role=Qt.DisplayRole):  # noqa: N802
        if orientation != Qt.Horizontal or not 0 <= section < len(self.columns):
            return None
        title = self.columns[section][0]
        if role == Qt.DisplayRole:
            return title
        if role == Qt.ToolTipRole:
            return self.TIPS.get(title)
        return None

    def data(self, index, role=Qt.DisplayRole):
        if not index.isValid():
            return None
        row = self.rows[index.row()]
        title, key = self.columns[index.column()]
        if role == Qt.DisplayRole:
            if key == "region":
                return str(row["region"])
            if key == "hemisphere":
                return _HEMI.get(str(row["hemisphere"]), str(row["hemisphere"]))
            if key == "n_vertices":
                return str(int(row["n_vertices"]))
            if key == "ci_low":
                return f"[{_fmt(row['ci_low'])}, {_fmt(row['ci_high'])}]"
            if key == "frac_positive":
                v = float(row["frac_positive"])
                return "–" if math.isnan(v) else f"{100 * v:.0f}%"
            if key == "q_value":
                return _fmt_p(row.get("q_value", np.nan))
            if key == "delta_r":
                v = float(row.get("delta_r", np.nan))
                return "–" if math.isnan(v) else f"{v:+.3f}"
            return _fmt(row.get(key, np.nan))
        if role == Qt.UserRole:
            return self._sort_key(row, key)
        if role == Qt.TextAlignmentRole:
            return int((Qt.AlignLeft if key == "region" else Qt.AlignRight) | Qt.AlignVCenter)
        if role == Qt.ForegroundRole and key == "delta_r":
            v = float(row.get("delta_r", np.nan))
            q = float(row.get("q_value", np.nan))
            if not math.isnan(v) and not math.isnan(q) and q <= 0.05:
                return QColor("#1a7f37") if v > 0 else QColor("#b42318")
        if role == Qt.ToolTipRole and key == "q_value":
            return f"uncorrected p = {_fmt_p(row.get('p_value', np.nan))}"
        return None

    @staticmethod
    def _sort_key(row: dict, key: str):
        v = row.get(key)
        if key in ("region", "hemisphere"):
            return str(v)
        v = float(np.nan if v is None else v)
        return v

    def _apply_sort(self) -> None:
        col, order = self._sort
        if col >= len(self.columns):
            return
        key = self.columns[col][1]
        descending = order == Qt.DescendingOrder
        if key in ("region", "hemisphere"):
            self.rows.sort(key=lambda r: str(r.get(key)), reverse=descending)
            return
        # numbers: NaN always last, whatever the direction
        finite = [r for r in self.rows if not math.isnan(self._sort_key(r, key))]
        missing = [r for r in self.rows if math.isnan(self._sort_key(r, key))]
        finite.sort(key=lambda r: self._sort_key(r, key), reverse=descending)
        self.rows = finite + missing

    def sort(self, column: int, order=Qt.AscendingOrder) -> None:
        self.layoutAboutToBeChanged.emit()
        self._sort = (int(column), order)
        self._apply_sort()
        self.layoutChanged.emit()


class RegionsView(QWidget):
    """The Regions dock's widget.

    Parameters
    ----------
    state : AppState
    start_job : callable ``(name, factory, on_done) -> JobHandle``
        The window's job runner (``MainWindow.start_job``).

    Signals
    -------
    region_selected(str): a row was clicked (the window selects the region like its combo box).
    """

    region_selected = Signal(str)
    N_PERM = 1000
    N_BOOT = 1000

    def __init__(self, state, start_job: Callable, parent=None) -> None:
        super().__init__(parent)
        self.state = state
        self.start_job = start_job
        self.session = None
        self.table = None                 # the engine's DataFrame for the open result
        self.comparison = None            # the engine's region comparison (DataFrame) or None
        self.compare_job = None
        self.compared_with: Optional[str] = None
        self.setObjectName("regionsPane")

        self.title = QLabel("Regions")
        self.title.setObjectName("paneTitle")
        self.compare_box = QComboBox()
        self.compare_box.setMinimumWidth(160)
        self.compare_box.setSizeAdjustPolicy(QComboBox.AdjustToContents)
        self.compare_box.setToolTip("Compare the open result region by region with another result of the "
                                    "project (paired block permutation test, FDR across regions)")
        self.compare_box.currentIndexChanged.connect(self._compare_chosen)
        self.message = QLabel("")
        self.message.setObjectName("regionsMessage")
        self.message.setWordWrap(True)
        head = QHBoxLayout()
        head.setContentsMargins(4, 2, 4, 2)
        head.addWidget(self.title)
        head.addSpacing(12)
        head.addWidget(QLabel("Compare with"))
        head.addWidget(self.compare_box)
        head.addSpacing(8)
        head.addWidget(self.message, 1)

        self.model = RegionTableModel(self)
        self.view = QTableView()
        self.view.setObjectName("regionsTable")
        self.view.setModel(self.model)
        self.view.setSortingEnabled(True)
        self.view.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SingleSelection)
        self.view.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.view.setAlternatingRowColors(True)
        self.view.verticalHeader().setVisible(False)
        self.view.verticalHeader().setDefaultSectionSize(22)
        hh = self.view.horizontalHeader()
        hh.setSectionResizeMode(QHeaderView.Interactive)
        hh.setStretchLastSection(True)
        hh.setSortIndicator(3, Qt.DescendingOrder)
        self.view.clicked.connect(self._row_clicked)
        self.view.activated.connect(self._row_clicked)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addLayout(head)
        lay.addWidget(self.view, 1)
        self.state.events.target.connect(self._on_target)
        self._show_empty("Open a project with an encoding result and an atlas")

    # ---- session -----------------------------------------------------------------------
    def set_session(self, session) -> None:
        """Show the open result's region table (computed by the engine)."""
        self.session = session
        self.comparison = None
        self.compared_with = None
        if self.compare_job is not None and self.compare_job.running:
            self.compare_job.cancel()
        self.compare_job = None
        self.compare_box.blockSignals(True)
        self.compare_box.clear()
        self.compare_box.blockSignals(False)
        if session is None:
            self._show_empty("Open a project with an encoding result and an atlas")
            return
        if session.atlas is None:
            self._show_empty("No atlas in this project: region tables need one (add it to the project's atlases)")
            return
        if session.result is None:
            self._show_empty("No encoding result yet: fit one (Run > Fit encoding model) to see regions")
            return
        try:
            self.table = session.region_table()
        except AlignScopeError as exc:
            self._show_empty(f"Region table unavailable: {exc}")
            return
        atlas_name = getattr(session.atlas, "name", "atlas")
        self.title.setText(f"<b>{session.result_name}</b> by region ({atlas_name}, {len(self.table)} regions)")
        self.model.set_table(self.table)
        self.view.horizontalHeader().setSortIndicator(3, Qt.DescendingOrder)
        others = [n for n in session.project.results if n != session.result_name]
        self.compare_box.blockSignals(True)
        self.compare_box.addItem("— none —")
        self.compare_box.addItems(others)
        self.compare_box.setEnabled(bool(others))
        self.compare_box.blockSignals(False)
        self.message.setText("" if others else "no other result to compare with")
        self.view.setEnabled(True)
        self.view.resizeColumnsToContents()
        self._on_target(None)

    def _show_empty(self, text: str) -> None:
        self.table = None
        self.model.set_table(None)
        self.title.setText("Regions")
        self.message.setText(text)
        self.compare_box.setEnabled(False)
        self.view.setEnabled(False)

    # ---- comparison ----------------------------------------------------------------------
    def _compare_chosen(self, index: int) -> None:
        if index <= 0:
            self.clear_comparison()
            return
        self.compare_with(self.compare_box.itemText(index))

    def clear_comparison(self) -> None:
        if self.compare_job is not None and self.compare_job.running:
            self.compare_job.cancel()
        self.compare_job = None
        self.comparison = None
        self.compared_with = None
        self.model.clear_comparison()
        self.message.setText("")

    def compare_with(self, other: str):
        """Start the region comparison with result ``other`` as a job; returns its handle."""
        s = self.session
        if s is None or s.result is None or s.atlas is None:
            return None
        if self.compare_job is not None and self.compare_job.running:
            self.compare_job.cancel()
        i = self.compare_box.findText(other)
        if i > 0 and i != self.compare_box.currentIndex():
            self.compare_box.blockSignals(True)
            self.compare_box.setCurrentIndex(i)
            self.compare_box.blockSignals(False)
        self.model.clear_comparison()
        mine = s.result_name
        n_perm, n_boot = int(self.N_PERM), int(self.N_BOOT)
        self.message.setText(f"comparing {mine} with {other}… ({n_perm} permutations, see Jobs)")

        def factory(token):
            return s.region_comparison_job(other, n_perm=n_perm, n_boot=n_boot, token=token)

        handle = self.start_job(f"Compare regions: {mine} − {other}", factory,
                                lambda table: self._comparison_done(s, other, table))
        handle.failed.connect(lambda message, _tb: self._comparison_failed(s, other, message))
        self.compare_job = handle
        return handle

    def _comparison_done(self, session, other: str, table) -> None:
        if session is not self.session:
            return   # another project or result is shown now
        self.comparison = table
        self.compared_with = other
        self.model.set_comparison(table)
        q = np.asarray(table["q_value"], dtype=float)
        d = np.asarray(table["delta_r"], dtype=float)
        n_up = int(np.sum((q <= 0.05) & (d > 0)))
        n_down = int(np.sum((q <= 0.05) & (d < 0)))
        self.message.setText(f"Δr = {session.result_name} − {other}: {n_up} regions better, {n_down} worse "
                             f"(FDR q ≤ 0.05)")
        self.view.resizeColumnsToContents()

    def _comparison_failed(self, session, other: str, message: str) -> None:
        if session is not self.session:
            return
        self.message.setText(f"Cannot compare with {other}: {message}")
        self.compare_box.blockSignals(True)
        self.compare_box.setCurrentIndex(0)
        self.compare_box.blockSignals(False)

    # ---- selection -----------------------------------------------------------------------
    def _row_clicked(self, index) -> None:
        name = self.model.region_at(index.row())
        if name is not None:
            self.region_selected.emit(name)

    def select_row(self, region: str) -> bool:
        """Click the row of ``region`` (as a user would); False when it is not in the table."""
        row = self.model.row_of(region)
        if row < 0:
            return False
        index = self.model.index(row, 0)
        self.view.setCurrentIndex(index)
        self._row_clicked(index)
        return True

    def _on_target(self, _e) -> None:
        t = self.state.target
        if t is None or t.kind != "region":
            return
        row = self.model.row_of(t.region)
        if row >= 0 and self.view.currentIndex().row() != row:
            self.view.selectRow(row)
            self.view.scrollTo(self.model.index(row, 0))

    def close_view(self) -> None:
        try:
            self.state.events.target.disconnect(self._on_target)
        except (RuntimeError, TypeError):
            pass
        if self.compare_job is not None and self.compare_job.running:
            self.compare_job.cancel()
