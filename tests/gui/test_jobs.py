"""Jobs on worker threads: progress, failures shown (window keeps working), cancel, no leaks."""

import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from engine.errors import DataError
from engine.jobs import Progress
from gui.workers import JobManager


def counting_job(n, out_path=None, step_s=0.0, fail_at=None, exc=None, log=None):
    """Yields one Progress per step; writes ``out_path`` atomically only after the last step."""
    def factory(token):
        def gen():
            for i in range(n):
                if fail_at is not None and i == fail_at:
                    raise exc
                time.sleep(step_s)
                if log is not None:
                    log.append(i)
                yield Progress(i + 1, n, f"step {i + 1} of {n}")
            if out_path is not None:
                fd, tmp = tempfile.mkstemp(dir=Path(out_path).parent, prefix=".tmp-")
                with os.fdopen(fd, "w") as fh:
                    fh.write(f"{n} steps\n")
                os.replace(tmp, out_path)
            return n * 10
        return gen()
    return factory


def os_thread_count():
    return len(os.listdir("/proc/self/task"))


def test_a_job_reports_progress_and_its_result(qtbot):
    jm = JobManager()
    seen = []
    h = jm.start("count", counting_job(5))
    h.progress.connect(lambda p: seen.append(p.step))
    with qtbot.waitSignal(h.ended, timeout=5000) as blocker:
        pass
    assert blocker.args == ["finished"]
    assert h.result == 50 and h.state == "finished"
    assert h.last_progress.step == 5 and h.last_progress.total == 5
    assert jm.active == []


def test_not_running_means_the_result_has_arrived(qtbot):
    """The worker thread ends before its queued result reaches the GUI thread: a handle seen
    "not running" must already hold its final state (CI once saw 'running' there)."""
    jm = JobManager()
    h = jm.start("count", counting_job(1))
    assert h._thread.wait(5000)              # the thread is over; no event handled yet
    assert h.running and h.state == "running"
    qtbot.waitUntil(lambda: not h.running, timeout=5000)
    assert h.state == "finished" and h.result == 10


def test_a_failing_job_shows_its_error_and_the_window_keeps_working(window, qtbot):
    h = window.start_job("Load bad file", counting_job(4, fail_at=2,
                                                        exc=DataError("run: expected 20484 columns, found 100")))
    qtbot.waitUntil(lambda: h.state == "failed", timeout=5000)
    row = window.job_panel.rows[-1]
    assert row.state == "failed"
    assert "expected 20484 columns, found 100" in row.message.text()
    box = window.last_error_box
    assert box is not None and box.isVisible()
    assert box.windowTitle() == "Load bad file failed"
    assert "expected 20484 columns, found 100" in box.text()
    # the window still answers: move the time, pick a vertex, run another job
    box.close()
    window.video_view.slider.setValue(2500)
    assert window.state.time == pytest.approx(2.5)
    assert window.video_view.shown_frame_index == 25
    window.state.select_vertex(3)
    assert window.timecourse_view.measured is not None
    ok = window.start_job("after", counting_job(2))
    qtbot.waitUntil(lambda: ok.state == "finished", timeout=5000)


def test_a_bug_in_a_job_is_reported_with_its_traceback(window, qtbot):
    h = window.start_job("buggy", counting_job(3, fail_at=1, exc=ZeroDivisionError("division by zero")))
    qtbot.waitUntil(lambda: h.state == "failed", timeout=5000)
    assert h.error == "ZeroDivisionError: division by zero"
    assert "Traceback" in h.error_traceback and "counting_job" in h.error_traceback or "gen" in h.error_traceback
    assert window.last_error_box.detailedText() == h.error_traceback
    assert window.errors_shown[-1] == ("buggy failed", "ZeroDivisionError: division by zero")


def test_cancel_stops_within_one_step_and_leaves_no_output(window, qtbot, tmp_path):
    out = tmp_path / "features.txt"
    log = []
    h = window.start_job("long", counting_job(200, out_path=out, step_s=0.02, log=log))
    qtbot.waitUntil(lambda: h.last_progress is not None and h.last_progress.step >= 3, timeout=5000)
    row = window.job_panel.rows[-1]
    row.button.click()                      # the row's Cancel button
    steps_at_cancel = len(log)
    qtbot.waitUntil(lambda: h.state == "cancelled", timeout=5000)
    assert len(log) <= steps_at_cancel + 1  # stopped at the next cancel point
    assert row.state == "cancelled" and row.button.text() == "Dismiss"
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []   # no temporary file left behind either
    h.wait(2000)
    assert not h.running


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux /proc to count threads")
def test_no_thread_leaks(qtbot):
    jm = JobManager()
    warm = jm.start("warm", counting_job(1))
    qtbot.waitUntil(lambda: not jm.active, timeout=5000)
    qtbot.wait(50)
    before_os, before_py = os_thread_count(), threading.active_count()
    handles = [jm.start(f"job {i}", counting_job(3, step_s=0.01)) for i in range(6)]
    handles.append(jm.start("fails", counting_job(3, fail_at=1, exc=RuntimeError("x"))))
    cancelled = jm.start("cancelled", counting_job(500, step_s=0.01))
    cancelled.cancel()
    qtbot.waitUntil(lambda: not jm.active, timeout=10000)
    qtbot.wait(100)
    assert [h.state for h in handles] == ["finished"] * 6 + ["failed"]
    assert cancelled.state == "cancelled"
    assert all(h._thread is None for h in handles + [cancelled, warm])
    assert os_thread_count() == before_os
    assert threading.active_count() == before_py


def test_closing_the_window_cancels_running_jobs(qtbot, session):
    from gui.cortex_view import live_plotter_count
    from gui.main_window import MainWindow

    w = MainWindow(interactive_3d=False)
    qtbot.addWidget(w)
    w.set_session(session)
    h = w.start_job("endless", counting_job(10_000, step_s=0.01))
    qtbot.waitUntil(lambda: h.last_progress is not None, timeout=5000)
    t0 = time.monotonic()
    w.close()
    assert time.monotonic() - t0 < 2.0
    assert not h.running and h.token.cancelled
    assert live_plotter_count() == 0


def test_extract_features_job_runs_the_engine(window, qtbot, synthetic):
    """Run > Extract low-level features on the synthetic episode, through the worker thread."""
    h = window.start_extract_features()
    assert h is not None
    qtbot.waitUntil(lambda: h.state != "running", timeout=60000)
    assert h.state == "finished", h.error
    feats = h.result
    n_trs = synthetic.runs["sub-01_run-1"].shape[0]
    assert set(feats) >= {"luminance", "motion", "word_rate"}
    assert all(v.shape[0] == n_trs for v in feats.values())
    # the planted video's left half brightens by LEVEL_STEP grey levels per frame (10 per TR):
    # mean luminance must increase from TR to TR
    lum = feats["luminance"][:, 0]
    assert np.all(np.diff(lum) > 0), lum
    env = feats["audio_envelope"][:, 0]   # the tone gets louder every second (= every TR)
    assert np.all(np.diff(env[:-1]) > 0), env
    # word rate: words with onsets in [0,1): Hello, there; [2,3): How, are, you; [4,5): Fine, thanks
    np.testing.assert_array_equal(feats["word_rate"][:, 0], [2, 0, 3, 0, 2, 0])
    assert "Features of ep ready" in window.status_label.text()


def test_fit_encoding_job_hands_the_result_to_the_open_session(qtbot, tmp_path):
    """Run > Fit encoding model (low-level features): the pipeline's analysis on a worker thread;
    the result is saved in the project, handed to the OPEN session (same session, same meshes,
    time and selection kept) and coloured on the cortex; its file equals the same AnalysisSpec
    run from Python."""
    import shutil
    import warnings

    from engine.jobs import run_sync
    from engine.pipeline import AnalysisSpec, run_analysis_job
    from engine.project import Project
    from gui.main_window import MainWindow
    from tests.gui.synthetic import write_project

    # 30 TRs a run: the inner CV (blocked within the one training run, 10 s gaps) has room
    syn = write_project(tmp_path / "proj", n_targets=20484, n_trs=30, seconds=30.0)
    shutil.copytree(syn.project_path.parent, tmp_path / "copy")
    w = MainWindow(interactive_3d=False)
    qtbot.addWidget(w)
    assert w.open_project(syn.project_path)
    session, plotter = w.session, w.cortex_view.plotter
    w.state.time = 17.3
    w.state.select_vertex(11)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # alpha-on-edge warnings on short runs
        h = w.start_fit_encoding()
        qtbot.waitUntil(lambda: h.state != "running", timeout=120000)
        assert h.state == "finished", h.error
        outcome = h.result
        assert w.session is session and session.result_name == "lowlevel (GUI)"
        assert Project.load(syn.project_path).results["lowlevel (GUI)"] == "results/lowlevel_gui.h5"
        assert [w.result_box.itemText(i) for i in range(w.result_box.count())] == ["synthetic", "lowlevel (GUI)"]
        assert w.result_box.currentText() == "lowlevel (GUI)"
        np.testing.assert_array_equal(w.cortex_view.current_values, np.asarray(outcome.result.scores, np.float32))
        assert w.cortex_view.plotter is plotter     # same surface: meshes kept, only colours rewritten
        assert w.state.time == pytest.approx(17.3) and w.state.target.vertex == 11
        spec = AnalysisSpec.from_dict(outcome.result.provenance["analysis"])
        ref = run_sync(run_analysis_job(tmp_path / "copy" / syn.project_path.name, spec))
    np.testing.assert_array_equal(outcome.result.scores, ref.result.scores)
    np.testing.assert_array_equal(outcome.result.predictions[1], ref.result.predictions[1])
    w.close()
