"""The main window's analyses and results: Run > New analysis…, Run > Fit, and the Result menu.

A mixin of :class:`gui.main_window.MainWindow` (it uses the window's ``session``, ``state``,
``project_path``, panes, ``start_job`` and ``show_error``). A finished analysis
(:class:`engine.pipeline.AnalysisOutcome`) is handed to the OPEN session
(:meth:`engine.session.ProjectSession.add_result`): nothing is reopened, so playback, time,
selection and attention settings stay; a job of another project leaves the window alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
from PySide6.QtWidgets import QInputDialog, QLineEdit, QMenu, QMessageBox

from engine.errors import AlignScopeError, MismatchError

from .workers import JobHandle

__all__ = ["AnalysisActions"]


class AnalysisActions:
    """Run > New analysis…, Run > Fit encoding model, Result > Rename / Delete (a window mixin)."""

    def start_fit_encoding(self) -> Optional[JobHandle]:
        """Run > Fit encoding model (low-level features): the pipeline's analysis of this episode's
        runs with the low-level features and the default fit (delays 2-10 s, detrended runs, banded
        ridge over the feature groups, CV chosen from the runs), handed to the open session when done."""
        from engine.encoding.options import FitOptions
        from engine.pipeline import AnalysisSpec

        got = self._episode_inputs()
        if got is None or self.project_path is None:
            return None
        s, run = got
        spec = AnalysisSpec(name="lowlevel (GUI)", model="lowlevel",
                            layers=["luminance", "contrast", "motion", "audio_envelope", "word_rate"],
                            episodes=[s.episode.name], space=run.ref.space,
                            fit=FitOptions())
        return self.start_analysis(spec)

    # ---- analyses and results ---------------------------------------------------------------
    def open_analysis_dialog(self):
        """Run > New analysis…: the analysis dialog for the open project (non-modal)."""
        from .analysis_dialog import AnalysisDialog

        if self.session is None or self.project_path is None:
            self.show_error("No project", "expected an open project with fMRI runs, found none")
            return None
        dialog = AnalysisDialog(self.session, self.project_path, parent=self, settings=self.settings)
        dialog.start_requested.connect(self.start_analysis)
        self.analysis_dialog = dialog
        dialog.show()
        return dialog

    def start_analysis(self, spec, project_path=None) -> JobHandle:
        """Run :func:`engine.pipeline.run_analysis_job` for ``spec`` on ``project_path`` (default:
        the open project) as a job; its result is handed to the open session when it is done."""
        from engine.pipeline import run_analysis_job

        started_on = Path(project_path or self.project_path)

        def factory(token):
            return run_analysis_job(started_on, spec, token=token)

        return self.start_job(f"Analysis “{spec.result_name}”", factory,
                              lambda outcome: self.result_ready(outcome, started_on))

    def _shows_project(self, *paths) -> bool:
        if self.session is None or self.project_path is None:
            return False
        here = Path(self.project_path).resolve()
        return any(Path(p).resolve() == here for p in paths if p is not None)

    def result_ready(self, outcome, started_on=None) -> None:
        """A finished analysis (an :class:`engine.pipeline.AnalysisOutcome`): its results join the
        open session when it shows the project the job was started on, and the new result is
        shown with playback, time, selection and attention settings kept. A job of another
        project only updated that project's file (done by the job): the window stays as it is."""
        name = outcome.result_name
        mean_r = float(np.nanmean(np.asarray(outcome.result.scores, dtype=np.float64)))
        if not self._shows_project(started_on, outcome.project_file):
            self.status_label.setText(f"Result “{name}” (mean r = {mean_r:.3f}) saved in "
                                      f"{Path(outcome.project_file).name}, which is not the open project")
            return
        for result_name, (result, path) in (outcome.results or {name: (outcome.result, outcome.result_path)}).items():
            self.session.add_result(result_name, result, path)
        if self.show_result(name, quiet=True):
            self.status_label.setText(f"Encoding result “{name}” saved and shown (mean r = {mean_r:.3f})")
        else:
            self._fill_boxes()
            self.status_label.setText(f"Encoding result “{name}” saved (mean r = {mean_r:.3f}); pick it in Result")

    def show_result(self, name: Optional[str], quiet: bool = False) -> bool:
        """Show result ``name`` of the open project; time, playback, selection and attention
        settings stay. A result of other targets than the runs shown reopens the episode."""
        s = self.session
        if s is None:
            return False
        try:
            s.set_result(name)
        except MismatchError:
            if quiet:
                return False
            return self._reopen(episode=s.episode.name, result=name, keep_place=True)
        except AlignScopeError as exc:
            if not quiet:
                self.show_error("Cannot show result", str(exc))
            self._fill_boxes()
            return False
        target = self.state.target
        self.state.result = name
        for view in (self.cortex_view, self.timecourse_view, self.regions_view):
            view.set_session(s)   # same surface: the cortex only gets new colours
        self._fill_boxes()
        if target is not None:   # re-select: the views draw the selection for the new result
            with self.state.events.target.blocker():
                self.state.target = None
            self.state.target = target
        if self.state.run in s.run_names:
            s.timebase(self.state.run)   # placed now: a result without a stored first TR says how
        notes = s.timebases.notes
        self.status_label.setText(f"Showing result “{name}”" + "".join(f" — note: {n}" for n in notes)
                                  if name else "No encoding result shown")
        return True

    def rename_result(self, old: str, new: str) -> bool:
        """Rename a result of the open project (its file follows); the view stays."""
        from engine.pipeline import rename_result

        s = self.session
        if s is None or self.project_path is None:
            return False
        try:
            from engine.pipeline.data import project_file_for

            relpath = rename_result(project_file_for(self.project_path), old, new)
        except AlignScopeError as exc:
            self.show_error("Cannot rename result", str(exc))
            return False
        s.rename_result(old, new, s.project.path(relpath))
        if self.state.result == old:
            self.state.result = new
        self._fill_boxes()
        self.regions_view.set_session(s)
        self.status_label.setText(f"Result “{old}” renamed “{new}”")
        return True

    def delete_result(self, name: str, delete_file: bool = True) -> bool:
        """Delete a result of the open project (and its file); another result is shown if it was."""
        from engine.pipeline import delete_result
        from engine.pipeline.data import project_file_for

        s = self.session
        if s is None or self.project_path is None:
            return False
        try:
            delete_result(project_file_for(self.project_path), name, delete_file=delete_file)
        except AlignScopeError as exc:
            self.show_error("Cannot delete result", str(exc))
            return False
        shown = name == s.result_name
        s.forget_result(name)
        if shown:
            others = s.result_names
            if not (others and self.show_result(others[0], quiet=True)):
                self.show_result(None, quiet=True)
        self._fill_boxes()
        self.status_label.setText(f"Result “{name}” deleted")
        return True

    def _ask_rename_result(self, name: Optional[str] = None) -> None:
        name = name or (self.session.result_name if self.session is not None else None)
        if not name:
            self.show_error("No result", "expected a result to rename, found none in this project")
            return
        new, ok = QInputDialog.getText(self, "Rename result", f"New name for “{name}”:", QLineEdit.Normal, name)
        if ok and new.strip() and new.strip() != name:
            self.rename_result(name, new.strip())

    def _ask_delete_result(self, name: Optional[str] = None) -> None:
        name = name or (self.session.result_name if self.session is not None else None)
        if not name:
            self.show_error("No result", "expected a result to delete, found none in this project")
            return
        answer = QMessageBox.question(self, "Delete result",
                                      f"Delete the result “{name}” from the project and its file from disk?")
        if answer == QMessageBox.Yes:
            self.delete_result(name)

    def _result_context_menu(self, pos) -> None:
        if self.session is None or not self.session.result_names:
            return
        name = self.result_box.currentText()
        menu = QMenu(self)
        menu.addAction(f"Rename “{name}”…", lambda: self._ask_rename_result(name))
        menu.addAction(f"Delete “{name}”…", lambda: self._ask_delete_result(name))
        menu.exec(self.result_box.mapToGlobal(pos))
