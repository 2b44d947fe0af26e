"""Low-level features recover planted truth: luminance, contrast, motion, envelope, mel, word rate."""

import numpy as np
import pandas as pd
import pytest

from engine.errors import ConfigError, DataError, MismatchError
from engine.features import lowlevel
from engine.features.lowlevel import (FEATURE_COLUMNS, audio_features, frame_features_job,
                                      mel_band_centres_hz, mel_filterbank, word_rate)
from engine.jobs import CancelToken, JobCancelled, run_sync

TR_S = 1.0
FPS = 10.0


def _luminance_frames(levels, fps=FPS, tr_s=TR_S, size=(24, 32), seed=0):
    """Frames whose grey level is ``levels[k]`` (+ small noise) during TR k."""
    rng = np.random.default_rng(seed)
    n_per_tr = int(round(fps * tr_s))
    frames = []
    for k, level in enumerate(levels):
        for j in range(n_per_tr):
            t_s = (k * n_per_tr + j) / fps
            img = np.clip(level + rng.normal(0, 3, size), 0, 255).astype(np.uint8)
            frames.append((t_s, np.repeat(img[:, :, None], 3, axis=2)))
    return frames


def _square_frames(speeds_px, fps=FPS, tr_s=TR_S, size=(60, 120), side=16):
    """A bright square moving right at ``speeds_px[k]`` pixels per frame during TR k."""
    n_per_tr = int(round(fps * tr_s))
    frames, x = [], 4.0
    h, w = size
    for k, v in enumerate(speeds_px):
        for j in range(n_per_tr):
            t_s = (k * n_per_tr + j) / fps
            img = np.full((h, w, 3), 30, np.uint8)
            x0 = int(round(x)) % (w - side)
            img[22:22 + side, x0:x0 + side] = 220
            frames.append((t_s, img))
            x += v
    return frames


def test_luminance_and_contrast_recovered_per_tr():
    rng = np.random.default_rng(1)
    levels = rng.uniform(20, 235, size=12)
    out = run_sync(frame_features_job(_luminance_frames(levels), n_trs=12, tr_s=TR_S))
    assert out["luminance"].shape == (12, 1) and out["luminance"].dtype == np.float32
    r = np.corrcoef(out["luminance"][:, 0], levels)[0, 1]
    assert r > 0.99
    # absolute scale: grey level / 255
    np.testing.assert_allclose(out["luminance"][:, 0], levels / 255.0, atol=0.01)
    # contrast is the noise std (3 grey levels) except where clipping bites
    assert np.all(np.abs(out["contrast"][:, 0] - 3 / 255.0) < 0.004)


def test_contrast_tracks_planted_rms_contrast():
    rng = np.random.default_rng(2)
    stds = rng.uniform(2, 40, size=8)
    frames = []
    for k, s in enumerate(stds):
        for j in range(10):
            img = np.clip(128 + rng.normal(0, s, (40, 40)), 0, 255).astype(np.uint8)
            frames.append((k + j / 10.0, np.repeat(img[:, :, None], 3, axis=2)))
    out = run_sync(frame_features_job(frames, n_trs=8, tr_s=1.0, optical_flow=False))
    np.testing.assert_allclose(out["contrast"][:, 0], stds / 255.0, rtol=0.05)


def test_motion_tracks_square_speed():
    speeds = np.array([0, 1, 3, 2, 5, 0, 4, 1], dtype=float)
    out = run_sync(frame_features_job(_square_frames(speeds), n_trs=len(speeds), tr_s=TR_S))
    motion = out["motion"]
    assert motion.shape == (len(speeds), 2)
    assert np.corrcoef(motion[:, 0], speeds)[0, 1] > 0.95
    assert np.corrcoef(motion[:, 1], speeds)[0, 1] > 0.95
    # a still square gives no motion (TR 0; TR 5 starts with the step from TR 4's last frame)
    assert motion[0].max() < 1e-6
    # speed ratios: 5 px/frame moves about 5x as much as 1 px/frame
    assert 3.5 < motion[4, 1] / motion[1, 1] < 6.5


def test_frames_binned_exactly_with_onset_and_variable_rate():
    # frames at irregular times; TR k must average exactly the frames in [onset + k*tr, onset + (k+1)*tr)
    rng = np.random.default_rng(3)
    times_s = np.sort(rng.uniform(0, 10, 200))
    times_s = np.unique(np.round(times_s, 4))
    values = rng.uniform(0, 255, times_s.size).astype(np.uint8)
    frames = [(t, np.full((8, 8, 3), v, np.uint8)) for t, v in zip(times_s, values)]
    onset_s, tr_s, n_trs = 0.7, 1.3, 7
    out = run_sync(frame_features_job(frames, n_trs=n_trs, tr_s=tr_s, onset_s=onset_s, optical_flow=False))
    for k in range(n_trs):
        sel = (times_s >= onset_s + k * tr_s) & (times_s < onset_s + (k + 1) * tr_s)
        assert out["luminance"][k, 0] == pytest.approx(values[sel].mean() / 255.0, abs=1e-5)


def test_after_end_of_stimulus_is_black_and_silent():
    frames = _luminance_frames([200, 200, 200])
    out = run_sync(frame_features_job(frames, n_trs=5, tr_s=TR_S))
    assert out["luminance"][:3, 0].min() > 0.7
    assert np.all(out["luminance"][3:] == 0)


def _am_tone(mod_levels, carrier_hz=1000.0, sr=16000, tr_s=TR_S, seed=0):
    n_per_tr = int(sr * tr_s)
    t = np.arange(n_per_tr * len(mod_levels)) / sr
    amp = np.repeat(mod_levels, n_per_tr)
    return (amp * np.sin(2 * np.pi * carrier_hz * t)).astype(np.float32)


def test_envelope_follows_planted_amplitude_modulation():
    rng = np.random.default_rng(4)
    amps = rng.uniform(0.05, 0.9, size=10)
    x = _am_tone(amps)
    out = audio_features(x, 16000, n_trs=10, tr_s=TR_S)
    env = out["audio_envelope"]
    assert env.shape == (10, 2) and env.dtype == np.float32
    assert np.corrcoef(env[:, 0], amps)[0, 1] > 0.99
    assert np.corrcoef(env[:, 1], amps)[0, 1] > 0.99
    # a sine's RMS is amplitude / sqrt(2); its Hilbert envelope is the amplitude
    # (analysis windows straddling a TR edge mix two amplitudes: absolute tolerance)
    np.testing.assert_allclose(env[:, 0], amps / np.sqrt(2), atol=0.01)
    np.testing.assert_allclose(env[:, 1], amps, atol=0.015)


def test_envelope_follows_smooth_modulation_at_a_different_tr():
    sr, tr_s, n_trs = 8000, 1.49, 12
    t = np.arange(int(sr * tr_s * n_trs)) / sr
    mod = 0.5 + 0.4 * np.sin(2 * np.pi * t / 9.0)
    x = (mod * np.random.default_rng(5).standard_normal(t.size)).astype(np.float32)
    env = audio_features(x, sr, n_trs=n_trs, tr_s=tr_s)["audio_envelope"]
    expected = np.array([mod[int(k * tr_s * sr):int((k + 1) * tr_s * sr)].mean() for k in range(n_trs)])
    assert np.corrcoef(env[:, 0], expected)[0, 1] > 0.99


@pytest.mark.parametrize("freq_hz", [300.0, 1200.0, 5000.0])
def test_tone_peaks_in_its_mel_band(freq_hz):
    sr = 16000
    x = _am_tone(np.full(3, 0.5), carrier_hz=freq_hz, sr=sr)
    mel = audio_features(x, sr, n_trs=3, tr_s=TR_S)["mel"]
    assert mel.shape == (3, lowlevel.N_MEL_BANDS)
    centres = mel_band_centres_hz(sr)
    expected_band = int(np.argmin(np.abs(centres - freq_hz)))
    assert np.all(np.argmax(mel, axis=1) == expected_band)


def test_mel_filterbank_shape_and_peaks():
    fb = mel_filterbank(16000, 512, 32)
    assert fb.shape == (32, 257)
    assert np.all(fb.max(axis=1) > 0.5) and fb.max() <= 1.0 + 1e-6
    # bands are ordered: peak bins increase strictly
    assert np.all(np.diff(np.argmax(fb, axis=1)) > 0)


def test_word_rate_counts_onsets_per_tr():
    rng = np.random.default_rng(6)
    onsets = np.sort(rng.uniform(0.0, 20.0, 57))
    words = pd.DataFrame({"onset_s": onsets, "duration_s": 0.2, "word": ["w"] * 57})
    onset_s, tr_s, n_trs = 1.0, 1.49, 12
    rate = word_rate(words, n_trs, tr_s, onset_s)
    expected = [np.sum((onsets >= onset_s + k * tr_s) & (onsets < onset_s + (k + 1) * tr_s)) for k in range(n_trs)]
    np.testing.assert_array_equal(rate[:, 0], expected)
    assert word_rate(None, n_trs, tr_s).shape == (n_trs, 1)
    with pytest.raises(DataError):
        word_rate(pd.DataFrame({"start": [1.0]}), n_trs, tr_s)


def test_errors_name_expected_and_found():
    with pytest.raises(ConfigError, match="expected a positive"):
        word_rate(None, 3, 0.0)
    with pytest.raises(MismatchError, match="expected at least"):
        audio_features(np.zeros(16000, np.float32), 16000, n_trs=20, tr_s=1.0)


def test_cancel_stops_frame_job():
    token = CancelToken()
    token.cancel()
    with pytest.raises(JobCancelled):
        run_sync(frame_features_job(_luminance_frames([10, 20]), 2, TR_S, token=token), token=token)


def test_feature_columns_cover_every_key():
    assert set(FEATURE_COLUMNS) == {"luminance", "contrast", "motion", "audio_envelope", "mel", "word_rate"}
