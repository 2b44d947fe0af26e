"""The session's parts: one time base per run (frame, TR, feature row, result row), results handed
to an open session without reopening it, colours in one module."""

import copy

import numpy as np
import pytest

from engine.encoding.results import EncodingResult
from engine.errors import MismatchError
from engine.session import LoadedRun, ProjectSession
from engine.session.timebase import TimeBase, result_first_tr
from engine.state import Target
from engine.timeline import Timeline
from tests.gui.synthetic import N_START, TR_S, make_session, write_project


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    return write_project(tmp_path_factory.mktemp("proj"), n_targets=100, n_trs=6, seconds=6.0)


def _result(n_rows, n_targets=100, provenance=None, seed=0, runs=("sub-01_run-1", "sub-01_run-2")):
    rng = np.random.default_rng(seed)
    pred = [rng.standard_normal((n_rows, n_targets)).astype(np.float32) for _ in runs]
    meas = [rng.standard_normal((n_rows, n_targets)).astype(np.float32) for _ in runs]
    return EncodingResult(scores=rng.uniform(-0.2, 0.8, n_targets).astype(np.float32), alphas=np.ones(n_targets),
                          predictions=pred, measured=meas, run_names=list(runs), space="custom",
                          provenance=dict(provenance or {}))


def test_first_tr_is_read_from_the_result_or_derived_once_from_drop_edges():
    assert result_first_tr(_result(4, provenance={"first_tr": 2}), "sub-01_run-1", 6, 4) == (2, None)
    per_run = _result(5, provenance={"first_tr": {"sub-01_run-1": 1, "sub-01_run-2": 0}})
    assert result_first_tr(per_run, "sub-01_run-1", 6, 5) == (1, None)
    assert result_first_tr(per_run, "sub-01_run-2", 6, 5) == (0, None)
    first, note = result_first_tr(_result(3, provenance={"drop_edges": [2, 1]}), "sub-01_run-1", 6, 3, "old")
    assert first == 2 and "drop_edges = [2, 1]" in note and "'old'" in note
    assert result_first_tr(_result(6), "sub-01_run-1", 6, 6) == (0, None)   # one row per TR
    with pytest.raises(MismatchError, match="no first_tr / drop_edges"):
        result_first_tr(_result(4), "sub-01_run-1", 6, 4)                  # never guessed
    with pytest.raises(MismatchError, match="rows inside the run's 6 TRs"):
        result_first_tr(_result(4, provenance={"first_tr": 3}), "sub-01_run-1", 6, 4)


def test_one_time_base_gives_frame_tr_feature_row_and_result_row():
    tl = Timeline(duration_s=12.0, tr_s=1.5, n_trs=8, fps=10.0, onset_s=0.0)
    tb = TimeBase(tl, "run", first_result_tr=2, n_result_rows=5)
    t = 4.6                                    # TR 3 (4.5-6.0 s), frame 46
    assert tb.frame_index(t) == 46 and tb.tr_index(t) == 3
    assert tb.feature_row(t, delay_trs=2) == 1 and tb.feature_row(0.2, delay_trs=2) == 0
    assert tb.result_row(t) == 1               # TR 3 is the result's row 1 (rows start at TR 2)
    assert tb.result_row(1.0) is None          # TR 0: an edge TR the fit dropped
    assert tb.result_row_of_tr(6) == 4 and tb.result_row_of_tr(7) is None
    np.testing.assert_allclose(tb.result_tr_times(), [3.0, 4.5, 6.0, 7.5, 9.0])
    assert TimeBase(tl, "run").result_row(t) is None


def test_session_places_result_rows_through_the_time_base(syn):
    s = make_session(syn, load_mesh=False)
    tb = s.timebase("sub-01_run-2")
    assert tb.first_result_tr == N_START and tb.n_result_rows == 6 - N_START and tb.note is None
    assert s.timeline("sub-01_run-2") is tb.timeline
    k = 4
    row = tb.result_row_of_tr(k)
    np.testing.assert_array_equal(s.map_at("sub-01_run-2", "predicted", k), syn.predictions[1][row])
    times, _, _ = s.brain_rows("sub-01_run-2")
    np.testing.assert_allclose(times, tb.result_tr_times())
    np.testing.assert_allclose(times, (N_START + np.arange(6 - N_START)) * TR_S)
    s.close()


def _own(syn):
    """The synthetic project with its own Project object (sessions register results in it)."""
    mine = copy.copy(syn)
    mine.project = copy.deepcopy(syn.project)
    return mine


def test_a_result_without_a_stored_first_tr_is_placed_from_drop_edges_and_says_so(syn):
    p = _own(syn).project
    runs = [LoadedRun(r, syn.runs[r.name]) for r in p.runs]
    old = _result(4, provenance={"drop_edges": [2, 0]})
    s = ProjectSession(p, p.episodes[0], runs=runs, result=old, result_name="old")
    times, meas, pred = s.roi_timecourse("sub-01_run-1", Target.vertex_target(3))
    np.testing.assert_allclose(times, [2.0, 3.0, 4.0, 5.0])
    np.testing.assert_array_equal(pred, old.predictions[0][:, 3])
    assert any("derived from its provenance drop_edges" in n for n in s.timebases.notes)
    # a result whose rows cannot be placed: the clock works, the rows are refused with a reason
    s.add_result("bad", _result(4), path=syn.project_path.parent / "results" / "bad.h5")
    s.set_result("bad")
    assert s.timeline("sub-01_run-1").n_trs == 6
    with pytest.raises(MismatchError, match="no first_tr"):
        s.roi_timecourse("sub-01_run-1", Target.vertex_target(3))


def test_a_result_handed_over_is_shown_without_reopening(syn, tmp_path):
    s = make_session(_own(syn), load_mesh=False)
    video, clock = s.video, s.timeline("sub-01_run-1")
    new = _result(6 - N_START, provenance={"first_tr": N_START}, seed=3)
    path = tmp_path / "new.h5"
    new.save(path)
    s.add_result("new", new, path)
    assert s.result_names == ["synthetic", "new"] and s.result_name == "synthetic"   # listed, not shown yet
    s.set_result("new")
    assert s.video is video and s.timeline("sub-01_run-1") is clock          # nothing reopened
    np.testing.assert_array_equal(s.score_map(), new.scores)
    _, _, pred = s.roi_timecourse("sub-01_run-1", Target.vertex_target(9))
    np.testing.assert_array_equal(pred, new.predictions[0][:, 9])
    # by path only: read when shown
    s.add_result("from file", path)
    s.set_result("from file")
    np.testing.assert_array_equal(s.score_map(), new.scores)
    # renamed and forgotten
    s.rename_result("from file", "renamed", path)
    assert s.result_name == "renamed" and "from file" not in s.result_names
    s.forget_result("renamed")
    assert s.result is None and np.isnan(s.score_map()).all()
    with pytest.raises(MismatchError, match="like the runs"):   # other targets: refused, nothing changed
        s.add_result("parcels", _result(5, n_targets=40, provenance={"first_tr": 1}), path=tmp_path / "p.h5")
        s.set_result("parcels")
    assert s.result is None
    s.close()


def test_gui_colormaps_is_a_view_of_the_engine_module():
    """gui.colormaps re-exports the engine's tables: the same objects, no second copy."""
    import gui.colormaps as g   # pure numpy, no Qt
    from engine.session import colour

    assert g.map_rgb is colour.map_rgb and g.MapStyle is colour.MapStyle
    assert g.value_colors is colour.value_colors and g.cortex_background is colour.cortex_background
