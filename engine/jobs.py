"""Background jobs without threads.

A *job* is a generator that yields :class:`Progress` reports. Each ``yield`` is both a
progress report and a cancel point: the runner checks the :class:`CancelToken` between
steps, and a job that writes files writes them atomically at the end (or per finished
chunk), so a cancelled job leaves no partial output.

The engine never starts threads for jobs. ``gui/workers.py`` runs the same generators
on a worker thread; :func:`run_sync` runs them here, for the CLI and the tests.

Example
-------
>>> def count(n, token=None):
...     for i in range(n):
...         yield Progress(i + 1, n, f"step {i + 1}")
...     return n
>>> run_sync(count(3))
3
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Generator, Optional

from .errors import JobCancelled

__all__ = ["Progress", "CancelToken", "JobCancelled", "run_sync", "Job", "TerminalProgress", "nested"]


@dataclass
class Progress:
    """One progress report.

    Parameters
    ----------
    step : int
        Steps done so far (0 <= step <= total).
    total : int
        Total number of steps (0 when unknown).
    message : str
        What is happening, in the user's words.
    payload : object, optional
        A partial result the GUI may show (CPU numpy arrays only, never tensors).
    """

    step: int
    total: int
    message: str = ""
    payload: Any = None

    @property
    def fraction(self) -> float:
        return float(self.step) / self.total if self.total else 0.0


class CancelToken:
    """A thread-safe flag a job checks between steps."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise JobCancelled("cancelled by the user")


JobGenerator = Generator[Progress, None, Any]


@dataclass
class Job:
    """A named job: a factory that makes the generator, given a cancel token.

    ``factory(token)`` must return a generator of :class:`Progress`. The generator's
    ``return`` value is the job's result.
    """

    name: str
    factory: Callable[[CancelToken], JobGenerator]
    token: CancelToken = field(default_factory=CancelToken)

    def start(self) -> JobGenerator:
        return self.factory(self.token)


def nested(gen: JobGenerator, step: int, total: int, label: str = "") -> Generator[Progress, None, Any]:
    """Run a sub-job inside a job: its reports become ``step`` of the outer ``total``.

    ``result = yield from nested(sub_job(...), step, total, "features")`` keeps the outer
    progress bar monotonic while still showing what the sub-job is doing (its message, and
    its own fraction as a payload-free suffix).
    """
    while True:
        try:
            p = next(gen)
        except StopIteration as stop:
            return stop.value
        inner = f" ({p.step}/{p.total})" if p.total else ""
        message = f"{label}: {p.message}{inner}" if label else f"{p.message}{inner}"
        yield Progress(step, total, message, p.payload)


def drive(gen: JobGenerator, token: Optional[CancelToken] = None,
          on_progress: Optional[Callable[[Progress], None]] = None) -> Any:
    """Run a job generator to completion, checking ``token`` between steps.

    Returns the generator's return value. Raises :class:`JobCancelled` when the token is
    set (after closing the generator, so its ``finally`` blocks run and clean up), and
    re-raises any exception the job raised.
    """
    token = token or CancelToken()
    try:
        while True:
            token.raise_if_cancelled()
            try:
                report = next(gen)
            except StopIteration as stop:
                return stop.value
            if on_progress is not None and isinstance(report, Progress):
                on_progress(report)
    except BaseException:
        gen.close()
        raise


class TerminalProgress:
    """A one-line progress bar on a terminal (stderr); plain lines when not a TTY."""

    def __init__(self, name: str = "", stream=None, width: int = 30) -> None:
        self.name = name
        self.stream = stream or sys.stderr
        self.width = width
        self._last = 0.0
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        done = p.total and p.step >= p.total
        if not done and now - self._last < 0.2:
            return
        self._last = now
        if p.total:
            filled = int(self.width * p.fraction)
            bar = "#" * filled + "-" * (self.width - filled)
            line = f"{self.name} [{bar}] {p.step}/{p.total} {p.message}"
        else:
            line = f"{self.name} {p.message}"
        if self._tty:
            self.stream.write("\r" + line[:120].ljust(120))
            if done:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def run_sync(gen: JobGenerator, token: Optional[CancelToken] = None,
             on_progress: Optional[Callable[[Progress], None]] = None,
             progress_bar: bool = False, name: str = "") -> Any:
    """Run a job in this thread (CLI, tests, notebooks) and return its result."""
    if progress_bar and on_progress is None:
        on_progress = TerminalProgress(name)
    return drive(gen, token, on_progress)
