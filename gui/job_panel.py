"""The job panel: one row per background job with a progress bar, ETA, its message and Cancel.

A failed job's row turns red and shows the error; the panel reports it through
``error_reported`` so that the main window shows a dialog and keeps working.
"""

from __future__ import annotations

import time
from typing import List, Optional

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QFrame, QHBoxLayout, QLabel, QProgressBar, QPushButton, QScrollArea,
                               QSizePolicy, QVBoxLayout, QWidget)

from engine.jobs import Progress

from .workers import CANCELLED, FAILED, FINISHED, JobHandle, JobManager


def eta_s(step: float, total: float, elapsed_s: float) -> Optional[float]:
    """Seconds left at the pace so far: ``elapsed * (total - step) / step`` (None before the first
    step is done or when the job does not say how many steps it has)."""
    if not total or step <= 0 or elapsed_s <= 0:
        return None
    return max(float(elapsed_s) * (float(total) - float(step)) / float(step), 0.0)


def format_duration(seconds: float) -> str:
    """``42 s``, ``3:05``, ``1:02:03``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


class JobRow(QFrame):
    """One job: name, progress bar, message, Cancel (then Dismiss once it ended)."""

    dismissed = Signal(object)

    def __init__(self, handle: JobHandle, parent=None) -> None:
        super().__init__(parent)
        self.handle = handle
        self.setObjectName("jobRow")
        self.setProperty("jobState", "running")
        self.name_label = QLabel(handle.name)
        self.name_label.setObjectName("jobName")
        self.name_label.setMinimumWidth(140)
        self.bar = QProgressBar()
        self.bar.setRange(0, 0)  # busy until the first report says how many steps
        self.bar.setTextVisible(True)
        self.bar.setFixedWidth(180)
        self.eta_label = QLabel("")
        self.eta_label.setObjectName("jobEta")
        self.eta_label.setMinimumWidth(90)
        self.eta_label.setToolTip("Time left at the pace so far (from the job's steps and the time elapsed)")
        self.started_s = time.monotonic()
        self.message = QLabel("starting…")
        self.message.setObjectName("jobMessage")
        self.message.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Preferred)
        self.message.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.button = QPushButton("Cancel")
        self.button.setToolTip("Stop this job at its next step; nothing half-written is kept")
        self.button.clicked.connect(self._clicked)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(6, 3, 6, 3)
        lay.addWidget(self.name_label)
        lay.addWidget(self.bar)
        lay.addWidget(self.eta_label)
        lay.addWidget(self.message, 1)
        lay.addWidget(self.button)
        handle.progress.connect(self._on_progress)
        handle.finished.connect(lambda _r: self._set_state(FINISHED, "done"))
        handle.failed.connect(lambda msg, _tb: self._set_state(FAILED, msg))
        handle.cancelled.connect(lambda: self._set_state(CANCELLED, "cancelled"))

    @property
    def state(self) -> str:
        return self.property("jobState")

    def _on_progress(self, p: Progress, now_s: Optional[float] = None) -> None:
        if p.total:
            self.bar.setRange(0, int(p.total))
            self.bar.setValue(int(p.step))
            self.bar.setFormat(f"{p.step}/{p.total}")
            elapsed = (time.monotonic() if now_s is None else now_s) - self.started_s
            left = eta_s(p.step, p.total, elapsed)
            self.eta_label.setText("" if left is None else f"ETA {format_duration(left)}")
        if p.message:
            self.message.setText(p.message)

    def _set_state(self, state: str, text: str) -> None:
        self.setProperty("jobState", state)
        if state == FINISHED:
            self.bar.setRange(0, max(self.bar.maximum(), 1))
            self.bar.setValue(self.bar.maximum())
        elif self.bar.maximum() == 0:
            self.bar.setRange(0, 1)
            self.bar.setValue(0)
        self.message.setText(text)
        self.message.setToolTip(self.handle.error_traceback or text)
        self.eta_label.setText(format_duration(time.monotonic() - self.started_s) if state == FINISHED else "")
        self.button.setText("Dismiss")
        self.button.setToolTip("Remove this row")
        # re-polish so the style sheet's [jobState="failed"] rule applies now
        for w in (self, self.message, self.name_label):
            w.style().unpolish(w)
            w.style().polish(w)

    def _clicked(self) -> None:
        if self.handle.state == "running":
            self.button.setEnabled(False)
            self.message.setText("cancelling…")
            self.handle.cancel()
        else:
            self.dismissed.emit(self)


class JobPanel(QWidget):
    """Rows for the jobs of a :class:`JobManager`."""

    error_reported = Signal(str, str, str)   # job name, message, traceback

    def __init__(self, manager: JobManager, parent=None) -> None:
        super().__init__(parent)
        self.manager = manager
        self.rows: List[JobRow] = []
        self._list = QVBoxLayout()
        self._list.setContentsMargins(0, 0, 0, 0)
        self._list.setSpacing(2)
        self._list.addStretch(1)
        inner = QWidget()
        inner.setLayout(self._list)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.NoFrame)
        scroll.setWidget(inner)
        scroll.setMinimumHeight(0)
        scroll.setVisible(False)        # shown with the first job; keeps the dock slim until then
        self.scroll = scroll
        self.empty_label = QLabel("No jobs yet. Run > New analysis… starts one.")
        self.empty_label.setObjectName("paneHint")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.empty_label)
        lay.addWidget(scroll, 1)
        manager.job_started.connect(self.add_job)

    def sizeHint(self):  # noqa: N802 - a slim dock until jobs arrive
        from PySide6.QtCore import QSize

        return QSize(800, 64)

    def add_job(self, handle: JobHandle) -> JobRow:
        row = JobRow(handle)
        row.dismissed.connect(self._remove_row)
        handle.failed.connect(lambda msg, tb, h=handle: self.error_reported.emit(h.name, msg, tb))
        self._list.insertWidget(self._list.count() - 1, row)
        self.rows.append(row)
        self.empty_label.setVisible(False)
        self.scroll.setVisible(True)
        return row

    def _remove_row(self, row: JobRow) -> None:
        self.rows.remove(row)
        row.setParent(None)
        row.deleteLater()
        self.empty_label.setVisible(not self.rows)
        self.scroll.setVisible(bool(self.rows))
