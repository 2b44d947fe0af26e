"""Running engine jobs on worker threads: the ONLY module of AlignScope that knows about threads.

A job is an engine generator (see :mod:`engine.jobs`): each ``yield`` is a progress report
and a cancel point. :class:`JobManager` runs each job on its own ``QThread``; progress,
the result, a failure (with its traceback) or the cancellation reach the GUI thread as Qt
signals of a :class:`JobHandle`. Nothing is lost: an exception in a job becomes the
handle's ``failed`` signal, never a silent thread death.

Only CPU numpy / plain Python crosses threads; VTK and widgets are never touched here.
"""

from __future__ import annotations

import time
import traceback
from typing import Any, Callable, List, Optional

from PySide6.QtCore import QCoreApplication, QObject, QThread, Signal

from engine.errors import AlignScopeError, JobCancelled
from engine.jobs import CancelToken, Job, Progress, drive

__all__ = ["JobHandle", "JobManager"]

RUNNING, FINISHED, FAILED, CANCELLED = "running", "finished", "failed", "cancelled"


class _JobThread(QThread):
    """Drives one job generator; reports through queued signals."""

    progressed = Signal(object)     # Progress
    succeeded = Signal(object)      # the job's return value
    errored = Signal(str, str)      # message, traceback
    was_cancelled = Signal()

    def __init__(self, job: Job, min_interval_s: float = 0.03) -> None:
        super().__init__()
        self.job = job
        self._min_interval_s = min_interval_s
        self._last_emit = 0.0

    def _report(self, p: Progress) -> None:
        # Throttle: a job that yields thousands of times a second must not flood the GUI.
        now = time.monotonic()
        final = bool(p.total) and p.step >= p.total
        if final or p.payload is not None or now - self._last_emit >= self._min_interval_s:
            self._last_emit = now
            self.progressed.emit(p)

    def run(self) -> None:  # noqa: D401 - Qt override, runs on the worker thread
        try:
            result = drive(self.job.start(), self.job.token, on_progress=self._report)
        except JobCancelled:
            self.was_cancelled.emit()
        except AlignScopeError as exc:   # a user's mistake: the message is what matters
            self.errored.emit(str(exc), traceback.format_exc())
        except BaseException as exc:     # noqa: BLE001 - a bug: show it with its traceback
            self.errored.emit(f"{type(exc).__name__}: {exc}", traceback.format_exc())
        else:
            self.succeeded.emit(result)


class JobHandle(QObject):
    """The GUI thread's view of one running job.

    Signals
    -------
    progress(Progress), finished(result), failed(message, traceback), cancelled(),
    ended(state): emitted once, after the thread has stopped, with the final state.
    """

    progress = Signal(object)
    finished = Signal(object)
    failed = Signal(str, str)
    cancelled = Signal()
    ended = Signal(str)

    def __init__(self, job: Job, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.job = job
        self.state = RUNNING
        self.result: Any = None
        self.error: Optional[str] = None
        self.error_traceback: Optional[str] = None
        self.last_progress: Optional[Progress] = None
        self._thread = _JobThread(job)
        self._thread.progressed.connect(self._on_progress)
        self._thread.succeeded.connect(self._on_success)
        self._thread.errored.connect(self._on_error)
        self._thread.was_cancelled.connect(self._on_cancel)
        self._thread.finished.connect(self._on_thread_finished)

    @property
    def name(self) -> str:
        return self.job.name

    @property
    def token(self) -> CancelToken:
        return self.job.token

    @property
    def running(self) -> bool:
        """True until the GUI thread has handled the job's end (``ended`` emitted).

        Not ``QThread.isFinished()``: the worker thread finishes before its queued result
        reaches the GUI thread, and a caller that saw "not running" must find the final
        ``state`` and ``result`` already set.
        """
        return self._thread is not None

    def start(self) -> None:
        self._thread.start()

    def cancel(self) -> None:
        """Ask the job to stop at its next step (it raises JobCancelled there)."""
        self.job.token.cancel()

    def wait(self, timeout_ms: Optional[int] = 10000) -> bool:
        """Block until the thread ended (True) or the timeout passed (False); None: no timeout."""
        thread = self._thread
        if thread is None:
            return True
        done = thread.wait() if timeout_ms is None else thread.wait(timeout_ms)
        if done:   # deliver the thread's queued result and end now, so the state is final
            QCoreApplication.sendPostedEvents(self, 0)
        return done

    # ---- slots (GUI thread) -------------------------------------------------------------
    def _on_progress(self, p: Progress) -> None:
        self.last_progress = p
        self.progress.emit(p)

    def _on_success(self, result) -> None:
        self.state, self.result = FINISHED, result
        self.finished.emit(result)

    def _on_error(self, message: str, tb: str) -> None:
        self.state, self.error, self.error_traceback = FAILED, message, tb
        self.failed.emit(message, tb)

    def _on_cancel(self) -> None:
        self.state = CANCELLED
        self.cancelled.emit()

    def _on_thread_finished(self) -> None:
        if self.state == RUNNING:  # the thread ended without reporting: should not happen
            self.state, self.error = FAILED, "the job's thread ended without a result"
            self.failed.emit(self.error, "")
        thread, self._thread = self._thread, None
        thread.deleteLater()
        self.ended.emit(self.state)


class JobManager(QObject):
    """Starts jobs on worker threads and keeps track of the running ones."""

    job_started = Signal(object)   # JobHandle

    def __init__(self, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self._handles: List[JobHandle] = []

    def start(self, name_or_job, factory: Optional[Callable[[CancelToken], Any]] = None) -> JobHandle:
        """Start a job: ``start(Job(...))`` or ``start("name", lambda token: gen)``."""
        job = name_or_job if isinstance(name_or_job, Job) else Job(str(name_or_job), factory)
        handle = JobHandle(job, self)
        self._handles.append(handle)
        handle.ended.connect(lambda _state, h=handle: self._forget(h))
        self.job_started.emit(handle)
        handle.start()
        return handle

    def _forget(self, handle: JobHandle) -> None:
        if handle in self._handles:
            self._handles.remove(handle)

    @property
    def active(self) -> List[JobHandle]:
        """Handles whose thread has not ended yet."""
        return list(self._handles)

    def shutdown(self, timeout_ms: Optional[int] = None) -> bool:
        """Cancel every job and wait for their threads (on window close). True if all stopped.

        Without a timeout it waits for each job to reach its next cancel point: a QThread
        destroyed while running would abort the whole process.
        """
        for h in self._handles:
            h.cancel()
        return all(h.wait(timeout_ms) for h in list(self._handles))
