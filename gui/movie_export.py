"""File > Export movie…: a movie of measured or predicted activity over a time range, the
stimulus frame beside the cortex, written in the background.

The movie is drawn by :func:`gui.figure_export.export_movie` in a child Python process
(``python -m gui.movie_export REQUEST_JSON``) that opens the same project, episode and
result: VTK renders there, off-screen, never on a worker thread of the window (VTK belongs
to the GUI thread), and the window stays responsive whatever the movie's length. The job
(:func:`movie_job`, run by :class:`gui.workers.JobManager`) reads the child's progress
lines, and cancelling the job ends the child; the file appears only when complete (written
atomically by ``export_movie``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple

from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFileDialog,
                               QFormLayout, QHBoxLayout, QLabel, QLineEdit, QPushButton, QSpinBox, QVBoxLayout,
                               QWidget)

from engine.errors import ConfigError, DataError
from engine.jobs import Progress

from .cortex_controls import VIEW_DIRECTIONS

__all__ = ["MovieRequest", "movie_job", "MovieDialog"]

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class MovieRequest:
    """What to film: ``layer`` ("measured"/"predicted") of ``run`` from ``start_s`` to ``stop_s``
    (episode seconds) at ``fps``, the cortex seen from ``views`` (both hemispheres), into ``out``.
    ``style`` (the fields of a :class:`~engine.session.colour.MapStyle`) keeps the colours of the
    screen; None: the run's own colour scale."""

    project: str
    run: str
    layer: str
    start_s: float
    stop_s: float
    out: str
    fps: float = 10.0
    views: List[str] = field(default_factory=lambda: ["lateral"])
    episode: Optional[str] = None
    result: Optional[str] = None
    panel_size: Tuple[int, int] = (480, 360)
    style: Optional[dict] = None

    def check(self) -> None:
        """Raise :class:`ConfigError` naming what is wrong before anything starts."""
        if self.layer not in ("measured", "predicted"):
            raise ConfigError(f"movie layer: expected 'measured' or 'predicted', found {self.layer!r}")
        if not self.stop_s > self.start_s >= 0:
            raise ConfigError(f"movie time range: expected 0 <= start < stop, found {self.start_s}..{self.stop_s} s")
        if not 0 < self.fps <= 60:
            raise ConfigError(f"movie frame rate: expected 0 < fps <= 60, found {self.fps}")
        bad = [v for v in self.views if v not in VIEW_DIRECTIONS]
        if bad or not self.views:
            raise ConfigError(f"movie views: expected some of {list(VIEW_DIRECTIONS)}, found {list(self.views)}")
        if not str(self.out).lower().endswith(".mp4"):
            raise ConfigError(f"movie file: expected a name ending in .mp4, found {self.out!r}")


def movie_job(request: MovieRequest, token=None):
    """Job generator: film ``request`` in a child process, yielding its progress.

    Returns ``(path, n_frames)``. Raises :class:`DataError` / :class:`ConfigError` with the
    child's message when it fails; closing the generator (a cancelled job) ends the child.
    """
    request.check()
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    yield Progress(0, 0, "starting the movie writer")
    child = subprocess.Popen([sys.executable, "-m", "gui.movie_export", json.dumps(asdict(request))],
                             cwd=str(REPO_ROOT), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    done = None
    try:
        for line in child.stdout:
            words = line.split(maxsplit=1)
            if not words:
                continue
            if words[0] == "frame" and len(words) == 2:
                step, total = (int(x) for x in words[1].split("/"))
                yield Progress(step, total, f"movie frame {step}/{total}")
            elif words[0] == "done" and len(words) == 2:
                done = json.loads(words[1])
            elif words[0] == "opening":
                yield Progress(0, 0, "opening the project for the movie")
        child.wait()
        err = child.stderr.read()
    finally:
        if child.poll() is None:   # cancelled (generator closed) or failed while reading
            child.terminate()      # the child removes its unfinished temporary file
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        child.stdout.close()
        child.stderr.close()
    if child.returncode != 0 or done is None:
        lines = [ln for ln in (err or "").strip().splitlines() if ln.strip()]
        message = next((ln.split("error: ", 1)[1] for ln in reversed(lines) if "error: " in ln),
                       lines[-1] if lines else f"movie writer exited with code {child.returncode}")
        raise DataError(f"movie: {message}")
    return Path(done["path"]), int(done["frames"])


def _child_main(argv: List[str]) -> int:
    """``python -m gui.movie_export REQUEST_JSON``: open the project and write the movie."""
    import signal

    from engine.errors import AlignScopeError

    def stop(_signum, _frame):   # cancelled: unwind, so that the temporary file is removed
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, stop)

    try:
        request = MovieRequest(**json.loads(argv[0]))
        request.check()
        print("opening", flush=True)
        from engine.session import ProjectSession
        from engine.session.colour import MapStyle

        from .figure_export import export_movie

        session = ProjectSession.open(request.project, episode=request.episode, result=request.result)
        try:
            if request.run not in session.run_names:
                raise ConfigError(f"movie run: expected one of {session.run_names}, found {request.run!r}")
            style = MapStyle(**request.style) if request.style else None
            path, n = export_movie(session, request.run, request.layer, request.start_s, request.stop_s,
                                   request.out, fps=request.fps, style=style, views=request.views,
                                   panel_size=tuple(request.panel_size),
                                   progress=lambda i, total: print(f"frame {i}/{total}", flush=True))
        finally:
            session.close()
    except AlignScopeError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    print("done " + json.dumps({"path": str(path), "frames": n}), flush=True)
    return 0


class MovieDialog(QDialog):
    """Time range, measured/predicted, views, frame rate and output file of a movie.

    Parameters
    ----------
    session : ProjectSession
    project_path : path of the open project
    run : the run shown
    start_s : where the range starts (the current time); it spans 10 s by default
    last_folder : where the file dialog opens
    """

    def __init__(self, session, project_path, run: str, start_s: float = 0.0, layer: str = "measured",
                 last_folder: Optional[str] = None, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export movie")
        self.session = session
        self.project_path = str(project_path)
        self.run = run
        tl = session.timeline(run)
        self.duration_s = float(tl.duration_s)
        form = QFormLayout()
        self.start_spin = QDoubleSpinBox()
        self.stop_spin = QDoubleSpinBox()
        for spin in (self.start_spin, self.stop_spin):
            spin.setRange(0.0, self.duration_s)
            spin.setDecimals(2)
            spin.setSuffix(" s")
            spin.setSingleStep(float(tl.tr_s))
        start = min(max(float(start_s), 0.0), max(self.duration_s - tl.tr_s, 0.0))
        self.start_spin.setValue(start)
        self.stop_spin.setValue(min(start + 10.0, self.duration_s))
        row = QHBoxLayout()
        row.addWidget(self.start_spin)
        row.addWidget(QLabel("to"))
        row.addWidget(self.stop_spin)
        form.addRow("Time range", row)
        self.layer_box = QComboBox()
        self.layer_box.addItem("Measured response", "measured")
        self.layer_box.addItem("Predicted response", "predicted")
        if not session.has_prediction(run):
            self.layer_box.model().item(1).setEnabled(False)
            self.layer_box.setItemData(1, "this run has no prediction in the open result", 3)   # tooltip role
        self.layer_box.setCurrentIndex(1 if layer == "predicted" and session.has_prediction(run) else 0)
        form.addRow("Activity", self.layer_box)
        views = QHBoxLayout()
        self.view_checks = {}
        for name in VIEW_DIRECTIONS:
            c = QCheckBox(name)
            c.setChecked(name == "lateral")
            self.view_checks[name] = c
            views.addWidget(c)
        form.addRow("Views", views)
        self.fps_spin = QSpinBox()
        self.fps_spin.setRange(1, 60)
        self.fps_spin.setValue(10)
        self.fps_spin.setSuffix(" frames/s")
        form.addRow("Frame rate", self.fps_spin)
        folder = Path(last_folder) if last_folder else Path(self.project_path).parent
        self.out_edit = QLineEdit(str(folder / f"{run}_{self.layer_box.currentData()}.mp4"))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.out_edit, 1)
        row.addWidget(browse)
        form.addRow("File", row)
        self.message = QLabel("")
        self.message.setObjectName("paneHint")
        self.message.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.button(QDialogButtonBox.Ok).setText("Export")
        buttons.accepted.connect(self._accept)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.message)
        lay.addWidget(buttons)

    def _browse(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save movie", self.out_edit.text(), "MP4 movie (*.mp4)")
        if path:
            self.out_edit.setText(path if path.lower().endswith(".mp4") else path + ".mp4")

    def request(self) -> MovieRequest:
        """The movie the form describes (checked: raises ConfigError naming what is wrong)."""
        req = MovieRequest(project=self.project_path, run=self.run, layer=self.layer_box.currentData(),
                           start_s=self.start_spin.value(), stop_s=self.stop_spin.value(),
                           out=self.out_edit.text().strip(), fps=float(self.fps_spin.value()),
                           views=[n for n, c in self.view_checks.items() if c.isChecked()],
                           episode=getattr(getattr(self.session, "episode", None), "name", None),
                           result=getattr(self.session, "result_name", None))
        req.check()
        if req.layer == "predicted" and not self.session.has_prediction(self.run):
            raise ConfigError(f"movie: expected a prediction for run {self.run}, found none in the open result")
        return req

    def _accept(self) -> None:
        try:
            self.request()
        except ConfigError as exc:
            self.message.setText(str(exc))
            return
        self.accept()


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
