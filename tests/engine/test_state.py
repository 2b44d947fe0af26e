"""AppState: one time value, derived frame/TR, events that do not echo."""

import subprocess
import sys

import numpy as np
import pytest

from engine.errors import ConfigError
from engine.state import AppState, Target
from engine.timeline import Timeline


def make_state():
    tl = Timeline(duration_s=20.0, tr_s=1.49, n_trs=12, fps=25.0)
    return AppState(tl), tl


def test_time_drives_frame_and_tr_through_timeline():
    state, tl = make_state()
    for t in np.linspace(0, 20, 37):
        state.time = t
        assert state.frame_index == tl.frame_index(t) == min(int(np.floor(t * 25 + 1e-9)), 499)
        assert state.tr_index == tl.tr_index(t) == min(int(np.floor(t / 1.49 + 1e-9)), 11)
    state.time = 3.0
    assert state.feature_row(delay_trs=2) == tl.tr_index(3.0) - 2 == 0


def test_time_is_clamped_to_the_episode():
    state, _ = make_state()
    state.time = 99.0
    assert state.time == 20.0
    state.time = -5
    assert state.time == 0.0
    with pytest.raises(ConfigError):
        state.time = float("nan")


def test_events_fire_once_per_change_and_never_for_same_value():
    state, _ = make_state()
    seen = []
    state.events.time.connect(lambda e: seen.append((e.type, e.value, e.old)))
    state.time = 2.5
    state.time = 2.5          # same value: nothing
    state.time = 3.0
    assert seen == [("time", 2.5, 0.0), ("time", 3.0, 2.5)]
    with state.events.time.blocker():
        state.time = 4.0
    assert len(seen) == 2 and state.time == 4.0


def test_view_writing_back_does_not_loop():
    state, _ = make_state()
    calls = []

    def view(e):  # a view that writes back the value it now shows
        calls.append(e.value)
        state.time = e.value

    state.events.time.connect(view)
    state.time = 1.0
    assert calls == [1.0]


def test_failing_callback_does_not_starve_the_others():
    state, _ = make_state()
    got = []

    def broken(e):
        raise RuntimeError("broken view")

    state.events.target.connect(broken)
    state.events.target.connect(lambda e: got.append(e.value))
    with pytest.raises(RuntimeError, match="broken view"):
        state.select_vertex(7)
    assert got == [Target.vertex_target(7)]


def test_target_and_layer_validation():
    state, _ = make_state()
    state.select_region("V1", atlas="glasser")
    assert state.target.label == "V1 (glasser)" and state.target.kind == "region"
    with pytest.raises(ConfigError, match="expected one of"):
        state.layer = "nonsense"
    with pytest.raises(ConfigError):
        Target("vertex", vertex=-1)
    with pytest.raises(ConfigError, match="positive"):
        state.speed = 0
    with pytest.raises(AttributeError, match="expected one of"):
        state.events.nonexistent


def test_new_timeline_reclamps_time_and_emits():
    state, _ = make_state()
    state.time = 18.0
    seen = []
    state.events.time.connect(lambda e: seen.append(e.value))
    state.timeline = Timeline(duration_s=10.0, tr_s=2.0, n_trs=5, fps=10.0)
    assert state.time == 10.0 and seen == [10.0]
    assert state.tr_index == 4


def test_state_imports_no_qt():
    code = "import engine.state, sys; print(any(m.split('.')[0] in ('PySide6','vtk','pyvista') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
