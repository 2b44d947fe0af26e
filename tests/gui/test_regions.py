"""The Regions dock: per-region table of the open result, row selection, comparison job."""

import threading

import numpy as np
import pytest
from PySide6.QtCore import QTimer, Qt

from gui.regions_view import RegionTableModel


def _column(model, key):
    return model.column_of(key)


def _cell(model, row, key):
    return model.data(model.index(row, _column(model, key)))


def test_region_table_planted_means_sorting_and_click(window, synthetic, qtbot):
    w = window
    view = w.regions_view
    model = view.model
    labels, scores = synthetic.labels, np.asarray(synthetic.scores, dtype=np.float64)
    assert model.rowCount() == len(synthetic.region_names)
    # the engine's mean r per region equals the planted scores averaged over the atlas label
    for k, name in enumerate(synthetic.region_names, 1):
        row = model.row_of(name)
        assert row >= 0
        r = model.rows[row]
        assert r["mean_r"] == pytest.approx(np.mean(scores[labels == k]), abs=1e-6)
        assert r["n_vertices"] == int(np.sum(labels == k))
        assert r["frac_positive"] == pytest.approx(np.mean(scores[labels == k] > 0), abs=1e-9)
        assert r["ci_low"] <= r["mean_r"] <= r["ci_high"]
        assert _cell(model, row, "mean_r") == f"{np.mean(scores[labels == k]):.3f}"
    # regions 1, 2 lie in the left hemisphere (first half of the vertices), 3, 4 in the right
    assert model.rows[model.row_of("Region 1")]["hemisphere"] == "left"
    assert model.rows[model.row_of("Region 4")]["hemisphere"] == "right"

    # default order: mean r descending -> the planted high-r region 2 first
    means = [r["mean_r"] for r in model.rows]
    assert means == sorted(means, reverse=True)
    assert model.region_at(0) == "Region 2"
    # the user clicks the header of another column, then back to Mean r (ascending, then descending)
    header = view.view.horizontalHeader()
    header.setSortIndicator(_column(model, "n_vertices"), Qt.AscendingOrder)
    sizes = [r["n_vertices"] for r in model.rows]
    assert sizes == sorted(sizes)
    header.setSortIndicator(_column(model, "mean_r"), Qt.AscendingOrder)
    assert model.rows[0]["mean_r"] == pytest.approx(min(means))
    header.setSortIndicator(_column(model, "mean_r"), Qt.DescendingOrder)
    assert model.region_at(0) == "Region 2"

    # clicking a row selects the region like the Region box: state, combo, time course title
    row = model.row_of("Region 3")
    rect = view.view.visualRect(model.index(row, 0))
    qtbot.mouseClick(view.view.viewport(), Qt.LeftButton, pos=rect.center())
    assert w.state.target is not None and w.state.target.kind == "region"
    assert w.state.target.region == "Region 3"
    assert w.region_box.currentText() == "Region 3"
    assert "Region 3" in w.timecourse_view.title.text()
    # the time course is the region mean of the measured rows
    cols = np.flatnonzero(labels == 3)
    run = w.state.run
    i = synthetic.result.run_names.index(run)
    assert np.allclose(w.timecourse_view.measured, synthetic.measured[i][:, cols].mean(1), atol=1e-5)
    # selecting the region elsewhere (the Region box) highlights its row
    w.region_box.setCurrentIndex(w.region_box.findText("Region 1"))
    assert view.view.currentIndex().row() == model.row_of("Region 1")


def test_compare_with_result_of_other_targets_is_a_message(window, synthetic, qtbot, tmp_path):
    from engine.encoding.results import EncodingResult

    w = window
    project = w.session.project
    other = EncodingResult(scores=np.zeros(10, np.float32), alphas=np.ones(10, np.float32),
                           predictions=[np.zeros((5, 10), np.float32)] * 2,
                           measured=[np.zeros((5, 10), np.float32)] * 2, run_names=list(synthetic.runs),
                           space="custom")
    other.save(tmp_path / "small.h5")
    saved = dict(project.results)
    project.results = dict(saved, small=str(tmp_path / "small.h5"))
    try:
        w.regions_view.set_session(w.session)
        assert w.regions_view.compare_box.findText("small") > 0
        handle = w.regions_view.compare_with("small")
        qtbot.waitUntil(lambda: not handle.running, timeout=10000)
        qtbot.wait(20)
        msg = w.regions_view.message.text()
        assert "Cannot compare with small" in msg and "different targets" in msg, msg
        assert w.regions_view.comparison is None
        assert w.regions_view.model.columnCount() == len(RegionTableModel.BASE)
        assert w.regions_view.compare_box.currentIndex() == 0
        assert w.isVisible()   # the window is still there and working
        w.regions_view.select_row("Region 2")
        assert w.state.target.region == "Region 2"
    finally:
        project.results = saved


def test_compare_visual_with_audio_on_the_demo(demo_project, qtbot):
    import gc

    from engine.encoding.regions import make_regions, region_means
    from engine.encoding.results import EncodingResult
    from engine.importers import open_project
    from gui.cortex_view import live_plotter_count
    from gui.main_window import MainWindow

    w = MainWindow(interactive_3d=False)
    qtbot.addWidget(w)
    w.proxy_action.setChecked(False)   # no scrub proxy job beside the one under test
    w.resize(1300, 850)
    w.show()
    try:
        assert w.open_project(demo_project, result="visual"), w.errors_shown
        view = w.regions_view
        atlas = w.session.atlas
        assert atlas is not None and len(atlas.names) == 400   # the demo's Schaefer-400
        labels = np.asarray(atlas.labels)
        scores_v = np.asarray(w.session.result.scores, dtype=np.float64)
        k = int(labels[np.nanargmax(np.where(labels > 0, scores_v, np.nan))])
        row = view.model.rows[view.model.row_of(atlas.names[k - 1])]
        assert row["mean_r"] == pytest.approx(np.nanmean(scores_v[labels == k]), abs=1e-6)
        assert view.model.rows[0]["mean_r"] == pytest.approx(max(r["mean_r"] for r in view.model.rows))

        view.N_PERM = view.N_BOOT = 200   # keep the test short; the dock's default is 1000
        job_threads = []
        original = w.session.region_comparison_job

        def recorded(*args, **kwargs):
            job_threads.append(threading.get_ident())
            return (yield from original(*args, **kwargs))

        w.session.region_comparison_job = recorded
        ticks = []
        timer = QTimer()
        timer.timeout.connect(lambda: ticks.append(1))
        timer.start(20)
        view.compare_box.setCurrentIndex(view.compare_box.findText("audio"))   # as the user does
        handle = view.compare_job
        assert handle is not None and handle.running
        qtbot.waitUntil(lambda: not handle.running, timeout=60000)
        timer.stop()
        qtbot.wait(20)
        assert job_threads and job_threads[0] != threading.get_ident(), "ran on the GUI thread"
        assert len(ticks) >= 5, "the GUI thread was blocked while the comparison ran"
        assert view.compared_with == "audio", view.message.text()
        assert view.model.columnCount() == len(RegionTableModel.BASE) + len(RegionTableModel.COMPARE)

        rows = {int(r["label"]): r for r in view.model.rows}
        # delta r is the region mean of (visual r - audio r), against the saved results
        project = open_project(demo_project)
        audio = EncodingResult.load(project.path(project.results["audio"]))
        regions = make_regions(labels, list(atlas.names))
        expected = region_means(scores_v - np.asarray(audio.scores, dtype=np.float64), regions)
        got = np.array([rows[int(lab)]["delta_r"] for lab in regions.labels])
        assert np.allclose(got, expected, atol=1e-4, equal_nan=True)

        truth = np.load(project.path("truth/truth.npz"))
        visual_core = truth["map_visual"] >= 0.5
        auditory_core = truth["map_auditory"] >= 0.5
        vis = [int(p) for p in np.unique(labels[visual_core & (labels > 0)])
               if np.mean(visual_core[labels == p]) >= 0.5 and not auditory_core[labels == p].any()]
        aud = [int(p) for p in np.unique(labels[auditory_core & (labels > 0)])
               if np.mean(auditory_core[labels == p]) >= 0.5 and not visual_core[labels == p].any()]
        assert len(vis) >= 5 and len(aud) >= 5
        assert all(rows[p]["delta_r"] > 0 for p in vis), [(atlas.names[p - 1], rows[p]["delta_r"]) for p in vis]
        assert all(rows[p]["delta_r"] < 0 for p in aud), [(atlas.names[p - 1], rows[p]["delta_r"]) for p in aud]
        assert all("Vis" in atlas.names[p - 1] for p in vis)
        assert np.median([rows[p]["q_value"] for p in vis + aud]) <= 0.05
        # sorting by delta r puts the largest visual advantage first
        view.view.horizontalHeader().setSortIndicator(view.model.column_of("delta_r"), Qt.DescendingOrder)
        assert view.model.rows[0]["delta_r"] == pytest.approx(np.nanmax(expected), abs=1e-4)
        # ... and every planted visual parcel above every planted auditory one
        order = [view.model.region_at(i) for i in range(view.model.rowCount())]
        assert max(order.index(atlas.names[p - 1]) for p in vis) < min(order.index(atlas.names[p - 1]) for p in aud)
    finally:
        w.close()
        gc.collect()
    assert live_plotter_count() == 0


def test_region_table_of_a_parcel_result(tmp_path):
    """Algonauts-style parcel tables: one target per parcel, vertex counts from the atlas."""
    from engine.session import ProjectSession
    from tests.gui.synthetic import write_parcel_project

    path, atlas, _runs, _meas, _preds, scores = write_parcel_project(tmp_path)
    with ProjectSession.open(path) as s:
        assert s.parcel_atlas is not None
        table = s.region_table(n_boot=50)
    labels = np.asarray(atlas.labels)
    assert len(table) == atlas.n_parcels
    assert table["mean_r"].iloc[0] == pytest.approx(float(np.max(scores)), abs=1e-6)
    for _, row in table.iloc[[0, 7, -1]].iterrows():
        k = int(row["label"])
        assert row["mean_r"] == pytest.approx(float(scores[k - 1]), abs=1e-6)
        assert row["n_vertices"] == int(np.sum(labels == k)) and row["n_targets"] == 1
        assert row["hemisphere"] == ("left" if "_LH_" in row["region"] else "right")
