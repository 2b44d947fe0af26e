import numpy as np
import pytest

from engine.errors import ConfigError
from engine.timeline import Timeline, bin_to_trs


def test_frame_and_tr_indices_derive_from_time():
    tl = Timeline(duration_s=10.0, tr_s=1.49, n_trs=6, fps=25.0)
    assert tl.n_frames == 250
    assert tl.frame_index(0.0) == 0
    assert tl.frame_index(0.039) == 0 and tl.frame_index(0.04) == 1
    assert tl.frame_index(99.0) == 249          # clamped
    assert tl.tr_index(1.48) == 0 and tl.tr_index(1.49) == 1
    assert tl.tr_index(100.0) == 5
    assert tl.tr_time(2) == pytest.approx(2.98)
    assert tl.feature_row(3 * 1.49 + 0.1, delay_trs=2) == 1


def test_variable_frame_rate_uses_timestamps():
    times = np.array([0.0, 0.1, 0.15, 0.4, 0.41])
    tl = Timeline(duration_s=0.5, tr_s=1.0, n_trs=1, frame_times_s=times)
    assert [tl.frame_index(t) for t in (0.0, 0.12, 0.2, 0.405, 0.45)] == [0, 1, 2, 3, 4]


def test_onset_offset_shifts_trs():
    tl = Timeline(duration_s=20, tr_s=2.0, n_trs=5, onset_s=4.0)
    assert tl.tr_index(4.0) == 0 and tl.tr_index(7.9) == 1
    np.testing.assert_allclose(tl.tr_times(), [4, 6, 8, 10, 12])


def test_bad_tr_is_refused():
    with pytest.raises(ConfigError, match="positive"):
        Timeline(duration_s=1, tr_s=0, n_trs=1)


def test_bin_to_trs_mean_and_sum():
    t = np.array([0.1, 0.5, 1.2, 2.5, 2.6, 2.7])
    v = np.array([1.0, 3.0, 5.0, 1.0, 1.0, 4.0])
    np.testing.assert_allclose(bin_to_trs(t, v, 4, 1.0), [2.0, 5.0, 2.0, 2.0])   # empty bin 3 carries bin 2
    np.testing.assert_allclose(bin_to_trs(t, np.ones(6), 4, 1.0, reduce="sum"), [2, 1, 3, 0])
