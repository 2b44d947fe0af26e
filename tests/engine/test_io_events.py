"""BIDS events reading and boxcar regressors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine.errors import ConfigError, DataError
from engine.io.events import events_to_regressors, read_events

EVENTS = (
    "onset\tduration\ttrial_type\tresponse_time\tstim_file\n"
    "10.5\t2.0\tface\t0.61\tface01.png\n"
    "1.0\t3.0\thouse\tn/a\thouse01.png\n"
    "4.0\tn/a\tbeep\t0.4\tn/a\n"
    "11.0\t2.0\tface\t0.55\tface02.png\n"
    "20.0\t1.5\tn/a\tn/a\tx.png\n"
)


def test_read_events_normalises_columns(tmp_path):
    path = tmp_path / "sub-01_task-x_events.tsv"
    path.write_text(EVENTS)
    ev = read_events(path)
    assert list(ev.columns[:3]) == ["onset_s", "duration_s", "trial_type"]
    np.testing.assert_allclose(ev["onset_s"], [1.0, 4.0, 10.5, 11.0, 20.0])  # sorted
    np.testing.assert_allclose(ev["duration_s"], [3.0, 0.0, 2.0, 2.0, 1.5])  # n/a -> impulse
    assert ev["trial_type"].tolist() == ["house", "beep", "face", "face", "event"]
    assert ev["response_time"].dtype == np.float64
    assert np.isnan(ev["response_time"].iloc[0]) and ev["response_time"].iloc[2] == pytest.approx(0.61)
    assert ev["stim_file"].tolist() == ["house01.png", None, "face01.png", "face02.png", "x.png"]


def _brute_force(events, n_trs, tr_s, start_s, tt, step=1e-3):
    """Fraction of each TR covered, by sampling time finely (reference)."""
    t = start_s + np.arange(0, n_trs * tr_s, step) + step / 2
    covered = np.zeros_like(t, dtype=bool)
    for o, d, kind in events[["onset_s", "duration_s", "trial_type"]].itertuples(index=False):
        if kind == tt and d > 0:
            covered |= (t >= o) & (t < o + d)
    return covered.reshape(n_trs, -1).mean(axis=1)


def test_regressors_match_brute_force_coverage():
    rng = np.random.default_rng(0)
    n = 40
    events = pd.DataFrame({
        "onset_s": rng.uniform(-3, 60, n),
        "duration_s": rng.uniform(0.05, 6, n),
        "trial_type": rng.choice(["a", "b", "c"], n).astype(object),
    })
    n_trs, tr_s, start_s = 30, 2.0, 1.25
    reg = events_to_regressors(events, n_trs, tr_s, start_s=start_s)
    assert list(reg.columns) == ["a", "b", "c"] and reg.shape == (n_trs, 3)
    assert reg.dtypes.unique().tolist() == [np.float32]
    for tt in "abc":
        np.testing.assert_allclose(reg[tt].to_numpy(), _brute_force(events, n_trs, tr_s, start_s, tt), atol=2e-3)
    assert reg.to_numpy().max() <= 1.0  # overlaps counted once


def test_regressors_exact_small_case_and_impulses(tmp_path):
    path = tmp_path / "events.tsv"
    path.write_text(EVENTS)
    ev = read_events(path)
    reg = events_to_regressors(ev, n_trs=12, tr_s=2.0, trial_types=["face", "house", "beep", "absent"])
    # face: [10.5, 13.0) as the union of [10.5, 12.5) and [11, 13): TR 5 gets 1.5/2, TR 6 gets 1/2
    np.testing.assert_allclose(reg["face"].to_numpy()[4:8], [0.0, 0.75, 0.5, 0.0])
    # house [1, 4): TR0 0.5, TR1 1.0
    np.testing.assert_allclose(reg["house"].to_numpy()[:3], [0.5, 1.0, 0.0])
    # beep impulse at 4.0 s -> TR 2 only
    np.testing.assert_array_equal(np.flatnonzero(reg["beep"].to_numpy()), [2])
    assert reg["absent"].sum() == 0
    # the 'event' at 20 s lies in TR 10
    reg_all = events_to_regressors(ev, n_trs=12, tr_s=2.0)
    assert list(reg_all.columns) == ["beep", "event", "face", "house"]
    np.testing.assert_allclose(reg_all["event"].to_numpy()[10], 0.75)


def test_event_errors(tmp_path):
    with pytest.raises(DataError, match="expected an existing file"):
        read_events(tmp_path / "none.tsv")
    path = tmp_path / "bad.tsv"
    path.write_text("start\tduration\ttrial_type\n1\t2\ta\n")
    with pytest.raises(DataError, match=r"expected BIDS events columns onset, duration.*found start, duration, trial_type \(missing onset\)"):
        read_events(path)
    path.write_text("onset\tduration\ttrial_type\n1\t2\ta\nn/a\t1\tb\n5\t1\tc\n")
    with pytest.raises(DataError, match=r"found 1 n/a or NaN onset\(s\) at line\(s\) 3"):
        read_events(path)
    path.write_text("onset\tduration\ttrial_type\n1\t2\ta\n3\t-1\tb\n")
    with pytest.raises(DataError, match=r"line 3: expected a duration >= 0 s, found -1"):
        read_events(path)
    path.write_text("onset\tduration\n1\tabc\n")
    with pytest.raises(DataError, match=r"line 2: expected a number in column 'duration', found 'abc'"):
        read_events(path)
    ev = pd.DataFrame({"onset_s": [1.0], "duration_s": [1.0], "trial_type": ["a"]})
    with pytest.raises(ConfigError):
        events_to_regressors(ev, 10, 0.0)
    with pytest.raises(DataError, match="expected columns onset_s, duration_s, trial_type"):
        events_to_regressors(ev.drop(columns="trial_type"), 10, 2.0)
