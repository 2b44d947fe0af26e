"""Low-level stimulus features, one row per TR.

These are the nuisance / baseline feature spaces every encoding study controls for:
how bright and how contrasted the picture is, how much it moves, how loud the sound
is and where its energy lies in frequency, and how many words are spoken.

Every feature is computed on the stimulus' own clock (frame time stamps from the
video reader, audio sample times) and then aggregated into TR bins with
:func:`engine.timeline.bin_to_trs`, so TR ``k`` summarises exactly the stimulus shown
during ``[onset_s + k*tr_s, onset_s + (k+1)*tr_s)``.

Columns of each feature space (see :data:`FEATURE_COLUMNS`):

- ``luminance`` (1): mean grey level of the frame, 0 (black) .. 1 (white).
- ``contrast`` (1): RMS contrast, the standard deviation of the grey levels (0 .. 0.5).
- ``motion`` (3): mean absolute grey-level change between consecutive frames per second;
  mean Farneback optical-flow magnitude over the image (motion energy), and mean flow
  speed of the moving pixels alone (how fast things move, whatever their size), both in
  image widths per second. Flow is computed at a reduced resolution of
  :data:`MOTION_WIDTH_PX` pixels wide, on frame pairs at most :data:`FLOW_RATE_HZ` times
  a second.
- ``audio_envelope`` (2): RMS amplitude and mean Hilbert envelope of the waveform.
- ``mel`` (:data:`N_MEL_BANDS`): log-mel power spectrum (natural log), 25 ms windows,
  10 ms hop, bands between 0 Hz and the Nyquist frequency, averaged over each TR.
- ``word_rate`` (1): number of words whose onset falls in the TR.

Only ``audio_envelope`` and ``mel`` need sound. A video without an audio track (and no
separate ``audio_path``) is a usable stimulus for the visual and word features: those are
returned, the two audio features are left out with a note (:class:`MissingAudioWarning`), and
asking for them by name raises a :class:`~engine.errors.DataError` that says the file has no
audio track and what to do. Audio is decoded only when an audio feature is asked for.

TRs that lie after the end of the stimulus (a run a few volumes longer than its
video) get the value of an absent stimulus: black picture, no motion, silence, no
words. A run that outlasts its stimulus by more than ``max_overhang_trs`` is a wrong
pairing and raises :class:`engine.errors.MismatchError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator, Optional, Tuple

import numpy as np

from ..errors import ConfigError, DataError, MismatchError
from ..jobs import CancelToken, Progress, run_sync
from ..timeline import bin_to_trs

__all__ = [
    "FEATURE_COLUMNS",
    "AUDIO_FEATURES",
    "MissingAudioWarning",
    "has_audio_track",
    "N_MEL_BANDS",
    "MOTION_WIDTH_PX",
    "lowlevel_features",
    "lowlevel_features_job",
    "frame_features_job",
    "audio_features",
    "word_rate",
    "mel_filterbank",
    "hz_to_mel",
    "mel_to_hz",
]

N_MEL_BANDS = 32
MOTION_WIDTH_PX = 160
FLOW_RATE_HZ = 12.0
MOVING_PX = 0.5  # flow magnitude (pixels per frame at MOTION_WIDTH_PX) above which a pixel moves
AUDIO_SR = 16000
WIN_S = 0.025
HOP_S = 0.010
LOG_EPS = 1e-10

FEATURE_COLUMNS = {
    "luminance": ["mean_grey"],
    "contrast": ["rms_contrast"],
    "motion": ["frame_difference_per_s", "optical_flow_widths_per_s", "moving_speed_widths_per_s"],
    "audio_envelope": ["rms", "hilbert_envelope"],
    "mel": [f"mel_{i:02d}" for i in range(N_MEL_BANDS)],
    "word_rate": ["words_per_tr"],
}


# --------------------------------------------------------------------------- helpers

def _check_trs(n_trs: int, tr_s: float) -> None:
    if int(n_trs) != n_trs or n_trs < 0:
        raise ConfigError(f"n_trs: expected a non-negative integer, found {n_trs!r}")
    if not np.isfinite(tr_s) or tr_s <= 0:
        raise ConfigError(f"tr_s: expected a positive number of seconds, found {tr_s!r}")


def _check_overhang(what: str, stimulus_end_s: float, n_trs: int, tr_s: float, onset_s: float,
                    max_overhang_trs: float) -> None:
    run_end_s = onset_s + n_trs * tr_s
    overhang_s = run_end_s - stimulus_end_s
    if overhang_s > max_overhang_trs * tr_s + 1e-6:
        raise MismatchError(
            f"{what} duration: expected at least {run_end_s - max_overhang_trs * tr_s:.2f} s to cover "
            f"{n_trs} TRs of {tr_s} s from onset {onset_s} s (up to {max_overhang_trs} TRs may overhang), "
            f"found {stimulus_end_s:.2f} s")


def _after_end(n_trs: int, tr_s: float, onset_s: float, stimulus_end_s: float) -> np.ndarray:
    """Mask (n_trs,) of TRs that start at or after the end of the stimulus."""
    starts_s = onset_s + np.arange(n_trs) * tr_s
    return starts_s >= stimulus_end_s - 1e-9


def _to_grey(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W) float32 grey level in 0..1 (ITU-R BT.601 weights)."""
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0


def _small(grey: np.ndarray, width_px: int) -> np.ndarray:
    import cv2

    h, w = grey.shape
    if w <= width_px:
        return grey
    height_px = max(1, int(round(h * width_px / w)))
    return cv2.resize(grey, (width_px, height_px), interpolation=cv2.INTER_AREA)


def _flow_speed(prev_small: np.ndarray, small: np.ndarray) -> Tuple[float, float]:
    """Farneback optical flow in pixels (of the small image) per frame.

    Returns the mean magnitude over the whole image and over the moving pixels (magnitude
    above :data:`MOVING_PX`; 0 when nothing moves).
    """
    import cv2

    a = np.clip(prev_small * 255.0, 0, 255).astype(np.uint8)
    b = np.clip(small * 255.0, 0, 255).astype(np.uint8)
    # Three pyramid levels and a 15 px window: cheaper settings lose displacements > ~3 px.
    flow = cv2.calcOpticalFlowFarneback(a, b, None, pyr_scale=0.5, levels=3, winsize=15,
                                        iterations=3, poly_n=5, poly_sigma=1.2, flags=0)
    magnitude = np.hypot(flow[..., 0], flow[..., 1])
    moving = magnitude[magnitude > MOVING_PX]
    return float(magnitude.mean()), float(moving.mean()) if moving.size else 0.0


# --------------------------------------------------------------------------- video

def frame_features_job(frames: Iterable[Tuple[float, np.ndarray]], n_trs: int, tr_s: float,
                       onset_s: float = 0.0, stimulus_end_s: Optional[float] = None,
                       n_frames: int = 0, optical_flow: bool = True, flow_rate_hz: float = FLOW_RATE_HZ,
                       token: Optional[CancelToken] = None):
    """Job: luminance, contrast and motion per TR from an iterable of ``(t_s, rgb)`` frames.

    Parameters
    ----------
    frames : iterable of (float, (H, W, 3) uint8)
        Frames in presentation order with their start times in seconds (episode clock).
        Include the frame just before ``onset_s`` if there is one: motion at the first
        kept frame is measured against it.
    n_trs, tr_s, onset_s
        The TR grid (see :mod:`engine.timeline`).
    stimulus_end_s : float, optional
        When the last frame stops being shown; TRs starting after it get zeros.
        Defaults to the last frame time plus the median frame interval.
    n_frames : int
        Expected number of frames, for progress reports only (0 = unknown).
    optical_flow : bool
        Compute the Farneback flow columns of ``motion`` (else they are zero).
    flow_rate_hz : float
        Optical flow is measured on consecutive frame pairs at most this often (the
        expensive part; every pair for videos up to this frame rate). Frame differences
        use every pair.

    Yields
    ------
    Progress

    Returns
    -------
    dict
        ``luminance`` (n_trs, 1), ``contrast`` (n_trs, 1), ``motion`` (n_trs, 3), float32.
    """
    _check_trs(n_trs, tr_s)
    times_s, lum, con = [], [], []
    diff_times_s, diffs, flow_times_s, flows = [], [], [], []
    prev_t_s, prev_grey_small, last_flow_t_s = None, None, -np.inf
    report_every = 50
    for i, (t_s, rgb) in enumerate(frames):
        if token is not None:
            token.raise_if_cancelled()
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise DataError(f"video frame {i}: expected an (H, W, 3) RGB array, found shape {rgb.shape}")
        grey = _to_grey(rgb)
        times_s.append(float(t_s))
        lum.append(float(grey.mean()))
        con.append(float(grey.std()))
        small = _small(grey, MOTION_WIDTH_PX)
        if prev_grey_small is not None:
            dt_s = float(t_s) - prev_t_s
            if dt_s <= 0:
                raise DataError(f"video frame {i}: expected increasing time stamps, found {t_s} after {prev_t_s}")
            diff_times_s.append(float(t_s))
            diffs.append(float(np.mean(np.abs(small - prev_grey_small))) / dt_s)
            if not optical_flow:
                flow_times_s.append(float(t_s))
                flows.append((0.0, 0.0))
            elif float(t_s) - last_flow_t_s >= 1.0 / flow_rate_hz - 1e-6:
                flow_times_s.append(float(t_s))
                mean_px, moving_px = _flow_speed(prev_grey_small, small)
                flows.append((mean_px / small.shape[1] / dt_s, moving_px / small.shape[1] / dt_s))
                last_flow_t_s = float(t_s)
        prev_t_s, prev_grey_small = float(t_s), small
        if i % report_every == 0:
            yield Progress(i, n_frames, f"frame {i}" + (f" of {n_frames}" if n_frames else ""))
    if not times_s:
        raise DataError("video: expected at least one frame, found none")

    times_s = np.asarray(times_s)
    if stimulus_end_s is None:
        step_s = float(np.median(np.diff(times_s))) if len(times_s) > 1 else tr_s
        stimulus_end_s = float(times_s[-1] + step_s)
    after = _after_end(n_trs, tr_s, onset_s, stimulus_end_s)
    out = {
        "luminance": bin_to_trs(times_s, np.asarray(lum)[:, None], n_trs, tr_s, onset_s),
        "contrast": bin_to_trs(times_s, np.asarray(con)[:, None], n_trs, tr_s, onset_s),
    }
    if diffs:
        out["motion"] = np.concatenate(
            [bin_to_trs(np.asarray(diff_times_s), np.asarray(diffs)[:, None], n_trs, tr_s, onset_s),
             bin_to_trs(np.asarray(flow_times_s), np.asarray(flows), n_trs, tr_s, onset_s)], axis=1)
    else:
        out["motion"] = np.zeros((n_trs, 3))
    for key in out:
        out[key][after] = 0.0
        out[key] = out[key].astype(np.float32)
    yield Progress(n_frames or len(times_s), n_frames or len(times_s), "frames done")
    return out


# --------------------------------------------------------------------------- audio

def hz_to_mel(f_hz):
    """HTK mel scale: ``2595 * log10(1 + f / 700)``."""
    return 2595.0 * np.log10(1.0 + np.asarray(f_hz, dtype=float) / 700.0)


def mel_to_hz(mel):
    """Inverse of :func:`hz_to_mel`."""
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=float) / 2595.0) - 1.0)


def mel_filterbank(sr: int, n_fft: int, n_mels: int = N_MEL_BANDS, fmin_hz: float = 0.0,
                   fmax_hz: Optional[float] = None) -> np.ndarray:
    """Triangular mel filterbank (HTK scale, peak 1), shape ``(n_mels, n_fft // 2 + 1)``.

    Band ``m`` rises linearly from centre ``m-1`` to centre ``m`` and falls to centre ``m+1``,
    with ``n_mels + 2`` centres equally spaced in mel between ``fmin_hz`` and ``fmax_hz``.
    """
    fmax_hz = sr / 2.0 if fmax_hz is None else fmax_hz
    if not 0 <= fmin_hz < fmax_hz <= sr / 2.0:
        raise ConfigError(f"mel range: expected 0 <= fmin < fmax <= {sr / 2}, found {fmin_hz}..{fmax_hz}")
    fft_hz = np.linspace(0.0, sr / 2.0, n_fft // 2 + 1)
    centres_hz = mel_to_hz(np.linspace(hz_to_mel(fmin_hz), hz_to_mel(fmax_hz), n_mels + 2))
    lower, centre, upper = centres_hz[:-2, None], centres_hz[1:-1, None], centres_hz[2:, None]
    rising = (fft_hz[None, :] - lower) / (centre - lower)
    falling = (upper - fft_hz[None, :]) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


def mel_band_centres_hz(sr: int = AUDIO_SR, n_mels: int = N_MEL_BANDS) -> np.ndarray:
    """Centre frequency (n_mels,) in Hz of each band of :func:`mel_filterbank`."""
    return mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sr / 2.0), n_mels + 2))[1:-1]


def audio_features(samples: np.ndarray, sr: int, n_trs: int, tr_s: float, onset_s: float = 0.0,
                   n_mels: int = N_MEL_BANDS, max_overhang_trs: float = 5.0,
                   chunk_frames: int = 8192) -> dict:
    """Envelope and log-mel spectrum per TR from a mono waveform.

    Parameters
    ----------
    samples : (n_samples,) float
        Mono waveform, sample ``n`` played at ``n / sr`` seconds (episode clock).
    sr : int
        Sampling rate in Hz.
    n_trs, tr_s, onset_s
        The TR grid.
    n_mels : int
        Number of mel bands.
    max_overhang_trs : float
        How many TRs the run may extend past the end of the audio.
    chunk_frames : int
        Analysis frames processed at once (bounds memory on long episodes).

    Returns
    -------
    dict
        ``audio_envelope`` (n_trs, 2) [RMS, mean Hilbert envelope] and ``mel`` (n_trs, n_mels)
        natural-log mel power, float32.
    """
    from scipy.signal import hilbert
    from scipy.fft import next_fast_len

    _check_trs(n_trs, tr_s)
    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    if x.size == 0:
        raise DataError("audio: expected samples, found an empty waveform")
    if not np.all(np.isfinite(x)):
        raise DataError("audio: expected finite samples, found NaN or infinity")
    duration_s = x.size / float(sr)
    _check_overhang("audio", duration_s, n_trs, tr_s, onset_s, max_overhang_trs)

    win = int(round(WIN_S * sr))
    hop = int(round(HOP_S * sr))
    n_fft = 1 << int(np.ceil(np.log2(win)))
    # Frame j covers samples [j*hop, j*hop + win); stamped at its centre.
    n_frames = max(1, 1 + (x.size - win) // hop) if x.size >= win else 1
    padded = np.zeros(max(x.size, (n_frames - 1) * hop + win), dtype=np.float32)
    padded[:x.size] = x
    centres_s = (np.arange(n_frames) * hop + win / 2.0) / sr

    envelope = np.abs(hilbert(x.astype(np.float64), N=next_fast_len(x.size))[:x.size]).astype(np.float32)
    fbank = mel_filterbank(sr, n_fft, n_mels)  # n_mels, n_fft // 2 + 1
    window = np.hanning(win + 1)[:-1].astype(np.float32)  # periodic Hann

    frame_rms = np.empty(n_frames, dtype=np.float64)
    frame_env = np.empty(n_frames, dtype=np.float64)
    frame_logmel = np.empty((n_frames, n_mels), dtype=np.float64)
    env_padded = np.zeros_like(padded)
    env_padded[:x.size] = envelope
    for start in range(0, n_frames, chunk_frames):
        stop = min(n_frames, start + chunk_frames)
        idx = (np.arange(start, stop) * hop)[:, None] + np.arange(win)[None, :]  # chunk, win
        seg = padded[idx]
        frame_rms[start:stop] = np.sqrt(np.mean(seg.astype(np.float64) ** 2, axis=1))
        frame_env[start:stop] = env_padded[idx].mean(axis=1)
        power = np.abs(np.fft.rfft(seg * window, n=n_fft, axis=1)) ** 2  # chunk, n_fft // 2 + 1
        frame_logmel[start:stop] = np.log(power @ fbank.T + LOG_EPS)

    after = _after_end(n_trs, tr_s, onset_s, duration_s)
    env_trs = bin_to_trs(centres_s, np.stack([frame_rms, frame_env], axis=1), n_trs, tr_s, onset_s)
    mel_trs = bin_to_trs(centres_s, frame_logmel, n_trs, tr_s, onset_s)
    env_trs[after] = 0.0
    mel_trs[after] = np.log(LOG_EPS)
    return {"audio_envelope": env_trs.astype(np.float32), "mel": mel_trs.astype(np.float32)}


# --------------------------------------------------------------------------- words

def word_rate(words, n_trs: int, tr_s: float, onset_s: float = 0.0) -> np.ndarray:
    """Number of words whose onset falls in each TR, shape (n_trs, 1) float32.

    Parameters
    ----------
    words : DataFrame[onset_s, duration_s, word] or None
        Word timings on the episode clock; None (no transcript) gives zeros.
    """
    _check_trs(n_trs, tr_s)
    if words is None or len(words) == 0:
        return np.zeros((n_trs, 1), dtype=np.float32)
    if "onset_s" not in getattr(words, "columns", []):
        found = list(getattr(words, "columns", [type(words).__name__]))
        raise DataError(f"words: expected a table with columns onset_s, duration_s, word, found {found}")
    onsets_s = np.asarray(words["onset_s"], dtype=float)
    keep = np.isfinite(onsets_s)
    counts = bin_to_trs(onsets_s[keep], np.ones((int(keep.sum()), 1)), n_trs, tr_s, onset_s, reduce="sum")
    return counts.astype(np.float32)


# --------------------------------------------------------------------------- all together

#: The features that need sound.
AUDIO_FEATURES = ("audio_envelope", "mel")


class MissingAudioWarning(UserWarning):
    """A stimulus has no audio track: the audio features were left out (a note, not a failure)."""


def has_audio_track(path) -> bool:
    """True when the media file at ``path`` holds an audio stream (False when unreadable)."""
    try:
        import av

        with av.open(str(path)) as container:
            return any(s.type == "audio" for s in container.streams)
    except Exception:  # noqa: BLE001 - unreadable: let the reader say why later
        return True


class LowLevelFeatures(dict):
    """The features computed; asking for an audio feature of a silent stimulus says why it is absent."""

    def __init__(self, *args, missing_reason: Optional[str] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.missing_reason = missing_reason

    def __missing__(self, key):
        if key in AUDIO_FEATURES and self.missing_reason:
            raise DataError(self.missing_reason)
        raise KeyError(key)

def _video_frames(reader, onset_s: float, end_s: float = np.inf) -> Iterator[Tuple[float, np.ndarray]]:
    """Frames from the one just before ``onset_s`` (motion needs a predecessor) to the first one
    after ``end_s`` (no TR bin reaches past it: the rest of a long video is not decoded)."""
    times_s = np.asarray(reader.frame_times_s, dtype=float)
    first = max(0, int(np.searchsorted(times_s, onset_s + 1e-9, side="right")) - 2)
    start_s = float(times_s[first]) if len(times_s) else 0.0
    for _i, t_s, rgb in reader.iter_frames(start_s=start_s):
        yield float(t_s), rgb
        if t_s > end_s:
            return


def lowlevel_features_job(video_path, words, n_trs: int, tr_s: float, onset_s: float = 0.0,
                          audio_path=None, token: Optional[CancelToken] = None,
                          max_overhang_trs: float = 5.0, optical_flow: bool = True,
                          layers: Optional[Iterable[str]] = None):
    """Job variant of :func:`lowlevel_features`: yields :class:`engine.jobs.Progress`.

    Returns the same dict as :func:`lowlevel_features`.
    """
    import warnings

    from ..io.video import VideoReader, read_audio

    _check_trs(n_trs, tr_s)
    video_path = Path(video_path)
    if not video_path.exists():
        raise DataError(f"video: expected a file at {video_path}, found nothing")
    wanted = list(FEATURE_COLUMNS) if layers is None else [str(x) for x in layers]
    unknown = [x for x in wanted if x not in FEATURE_COLUMNS]
    if unknown:
        raise ConfigError(f"low-level features: expected names among {list(FEATURE_COLUMNS)}, found {unknown}")
    need_audio = any(x in AUDIO_FEATURES for x in wanted)
    missing_reason = None
    if need_audio and audio_path is None and not has_audio_track(video_path):
        missing_reason = (f"audio features {list(AUDIO_FEATURES)}: expected an audio track in {video_path.name}, "
                          "found none (a silent video). Give a separate audio file on the same clock (--audio "
                          "FILE), or use the visual and word features only (--layers luminance,contrast,motion,"
                          "word_rate)")
        if layers is not None:
            raise DataError(missing_reason)
        warnings.warn(f"{video_path.name} has no audio track: the visual and word features are computed, the "
                      f"audio features {list(AUDIO_FEATURES)} are left out", MissingAudioWarning, stacklevel=2)
        need_audio = False
    out = {}
    with VideoReader(video_path) as reader:
        n_frames = int(reader.n_frames)
        fps = float(reader.fps) if reader.fps else 0.0
        times_s = np.asarray(reader.frame_times_s, dtype=float)
        last_step_s = 1.0 / fps if fps > 0 else (float(np.median(np.diff(times_s))) if len(times_s) > 1 else tr_s)
        video_end_s = float(times_s[-1] + last_step_s) if len(times_s) else 0.0
        _check_overhang("video", video_end_s, n_trs, tr_s, onset_s, max_overhang_trs)
        total = n_frames + 2
        gen = frame_features_job(_video_frames(reader, onset_s, onset_s + (n_trs + 1) * tr_s), n_trs, tr_s, onset_s,
                                 stimulus_end_s=video_end_s, n_frames=n_frames,
                                 optical_flow=optical_flow, token=token)
        while True:
            try:
                p = next(gen)
            except StopIteration as stop:
                out.update(stop.value)
                break
            yield Progress(min(p.step, n_frames), total, f"low-level video features: {p.message}")

    if token is not None:
        token.raise_if_cancelled()
    if need_audio:
        yield Progress(n_frames, total, "low-level audio features")
        samples, sr = read_audio(Path(audio_path) if audio_path is not None else video_path, sr=AUDIO_SR)
        out.update(audio_features(samples, sr, n_trs, tr_s, onset_s, max_overhang_trs=max_overhang_trs))
    yield Progress(n_frames + 1, total, "word rate")
    out["word_rate"] = word_rate(words, n_trs, tr_s, onset_s)
    yield Progress(total, total, "low-level features done")
    keep = [key for key in FEATURE_COLUMNS if key in out and (layers is None or key in wanted)]
    return LowLevelFeatures({key: out[key] for key in keep}, missing_reason=missing_reason)


def lowlevel_features(video_path, words, n_trs: int, tr_s: float, onset_s: float = 0.0,
                      audio_path=None, token: Optional[CancelToken] = None,
                      max_overhang_trs: float = 5.0, optical_flow: bool = True,
                      layers: Optional[Iterable[str]] = None) -> dict:
    """Low-level visual, auditory and word-rate features of one episode, one row per TR.

    Parameters
    ----------
    video_path : path
        The episode's video file (its audio track is used unless ``audio_path`` is given).
    words : DataFrame[onset_s, duration_s, word] or None
        Word timings on the episode clock (None: ``word_rate`` is zero).
    n_trs : int
        Number of TRs of the paired fMRI run.
    tr_s : float
        Repetition time in seconds.
    onset_s : float
        Episode time at which the first TR starts.
    audio_path : path, optional
        A separate audio file on the same clock as the video.
    token : CancelToken, optional
        Checked between frames.
    max_overhang_trs : float
        How many TRs the run may extend past the end of the stimulus (those TRs get the
        values of an absent stimulus); more raises :class:`MismatchError`.
    optical_flow : bool
        Compute the Farneback optical-flow column of ``motion``.
    layers : iterable of str, optional
        Only these features (default all); audio is decoded only for an audio feature.

    Returns
    -------
    dict of str -> (n_trs, k) float32
        Keys ``luminance``, ``contrast``, ``motion``, ``audio_envelope``, ``mel``, ``word_rate``
        (or ``layers``); columns as listed in :data:`FEATURE_COLUMNS`. A silent video without
        ``audio_path`` and ``layers=None`` gives no audio keys (with a :class:`MissingAudioWarning`);
        reading one then raises :class:`~engine.errors.DataError` saying why.

    Raises
    ------
    DataError
        An audio feature named in ``layers`` for a stimulus without an audio track.
    """
    return run_sync(lowlevel_features_job(video_path, words, n_trs, tr_s, onset_s, audio_path,
                                          token=token, max_overhang_trs=max_overhang_trs,
                                          optical_flow=optical_flow, layers=layers), token=token)
