"""Per-episode stimulus checks: frame drops and time-stamp jumps, audio/video length,
subtitle and word timings past the end or overlapping, long silences."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from ..errors import AlignScopeError
from . import checks as C
from .checks import Check


def frame_gaps(frame_times_s: np.ndarray, factor: float = C.FRAME_GAP_FACTOR) -> Dict[str, Any]:
    """Frame-time steps longer than ``factor`` x the typical (median) step.

    Returns
    -------
    dict
        ``step_s`` typical step; ``gaps`` indices ``i`` where frame ``i`` follows ``i - 1`` late;
        ``gap_s`` their steps; ``missing`` estimated frames missing at each; ``backwards`` indices
        where time goes back or stands still.
    """
    t = np.asarray(frame_times_s, dtype=np.float64)
    steps = np.diff(t)
    if steps.size == 0:
        return {"step_s": 0.0, "gaps": np.zeros(0, int), "gap_s": np.zeros(0), "missing": np.zeros(0, int),
                "backwards": np.zeros(0, int)}
    step = float(np.median(steps[steps > 0])) if (steps > 0).any() else 0.0
    late = np.flatnonzero(steps > factor * step) if step > 0 else np.zeros(0, int)
    missing = np.maximum(np.round(steps[late] / step).astype(int) - 1, 1) if step > 0 else np.zeros(0, int)
    return {"step_s": step, "gaps": late + 1, "gap_s": steps[late], "missing": missing,
            "backwards": np.flatnonzero(steps <= 0) + 1}


def silences(samples: np.ndarray, sr: int, min_s: float = C.SILENCE_MIN_S, db: float = C.SILENCE_DB,
             window_s: float = 0.1) -> List[List[float]]:
    """Stretches ``[start_s, stop_s]`` at least ``min_s`` long whose loudness stays ``db`` below the
    95th-percentile RMS of the recording (100 ms windows)."""
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    win = max(1, int(round(window_s * sr)))
    n = x.size // win
    if n == 0:
        return []
    rms = np.sqrt((x[:n * win].reshape(n, win) ** 2).mean(axis=1))
    ref = float(np.percentile(rms, 95))
    if ref <= 0:
        return [[0.0, n * window_s]] if n * window_s >= min_s else []
    quiet = rms < ref * 10 ** (db / 20.0)
    return [[a * window_s, (b + 1) * window_s] for a, b in C.stretches(quiet) if (b + 1 - a) * window_s >= min_s]


def _timing_checks(table, what: str, name: str, end_s: Optional[float], subject: str) -> List[Check]:
    out: List[Check] = []
    if table is None or len(table) == 0:
        return out
    on = table["onset_s"].to_numpy(dtype=float)
    off = on + table["duration_s"].to_numpy(dtype=float)
    det: Dict[str, Any] = {"n": int(len(on)), "first_onset_s": float(on.min()), "last_offset_s": float(off.max())}
    problems = []
    level = "pass"
    neg = np.flatnonzero(on < 0)
    if neg.size:
        problems.append(f"{neg.size} onset(s) before 0 s")
        level = "fail"
    if end_s is not None:
        past = np.flatnonzero(off > end_s + C.TEXT_PAST_END_S)
        det["n_past_end"] = int(past.size)
        if past.size:
            problems.append(f"{past.size} {what} ending after the video ({end_s:.2f} s), the last at "
                            f"{off.max():.2f} s: timings for another cut of the episode, or a wrong offset")
            level = "fail"
    order = np.argsort(on, kind="stable")
    on_s, off_s = on[order], off[order]
    dur_s = off_s - on_s
    overlap_s = off_s[:-1] - on_s[1:]
    # an overlap matters when it is more than half the shorter of the two items (timings from
    # another alignment, a shifted block); a few tens of ms of overlap (subtitle editors, word
    # ends rounded up) changes nothing
    shorter = np.minimum(dur_s[:-1], dur_s[1:])
    big = overlap_s > np.maximum(C.OVERLAP_TOLERANCE_S, C.OVERLAP_FRACTION * shorter)
    small = (overlap_s > C.OVERLAP_TOLERANCE_S) & ~big
    overl = np.flatnonzero(big) + 1
    det["n_overlapping"] = int(overl.size)
    det["n_small_overlaps"] = int(small.sum())
    if overl.size:
        problems.append(f"{overl.size} {what} overlapping the previous one by more than half its length "
                        f"(first at {on_s[overl[0]]:.2f} s)")
        level = C.worst([level, "warn"])
    if problems:
        out.append(Check(f"{what}_timing", level, f"{subject}: expected {what} inside the video, one after another; "
                         f"found " + "; ".join(problems) + f" ({name})", subject=subject, category="episode",
                         details=det, view="timeline", data={"onsets_s": on, "offsets_s": off, "end_s": end_s}))
    else:
        out.append(Check(f"{what}_timing", "pass", f"{subject}: {len(on)} {what} from {on.min():.1f} to "
                         f"{off.max():.1f} s, inside the video, none overlapping"
                         + (f" by more than half a {what[:-1]} ({int(small.sum())} shorter overlaps)" if small.any()
                            else "") + f" ({name})", subject=subject,
                         category="episode", details=det))
    return out


def check_episode(name: str, video=None, audio=None, words=None, cues=None,
                  words_source: str = "words", cues_source: str = "subtitles") -> List[Check]:
    """Stimulus checks of one episode.

    Parameters
    ----------
    name : str
        Episode name (the checks' subject).
    video, audio : path, optional
        The episode's video and (when separate) audio file.
    words : DataFrame[onset_s, duration_s, word], optional
    cues : DataFrame[onset_s, duration_s, text], optional
    words_source, cues_source : str
        File names shown in the messages.

    Returns
    -------
    list of Check
    """
    from ..io.video import VideoReader, read_audio

    out: List[Check] = []
    end_s = None
    if video is not None:
        video = Path(video)
        try:
            with VideoReader(video) as reader:
                times = np.asarray(reader.frame_times_s, dtype=float)
                fps = float(reader.fps)
                n_frames = int(reader.n_frames)
                has_audio = bool(reader.has_audio)
                declared = int(reader._stream.frames or 0)
                step = float(np.median(np.diff(times))) if times.size > 1 else (1.0 / fps if fps else 0.0)
                end_s = float(times[-1] + step) if times.size else 0.0
        except AlignScopeError as exc:
            out.append(Check("video", "fail", f"{name}: {exc}", subject=name, category="episode"))
            video = None
        if video is not None:
            g = frame_gaps(times)
            n_missing = int(g["missing"].sum())
            det = {"n_frames": n_frames, "declared_frames": declared, "fps": fps, "step_s": g["step_s"],
                   "n_gaps": int(g["gaps"].size), "n_missing_frames": n_missing,
                   "gaps_at_s": times[g["gaps"] - 1] if g["gaps"].size else [],
                   "gap_s": g["gap_s"], "duration_s": end_s}
            payload = {"frame_times_s": times}
            if g["gaps"].size:
                longest = float(g["gap_s"].max())
                level = "fail" if (longest > C.FRAME_JUMP_FAIL_S or n_missing > 0.01 * n_frames) else "warn"
                at = ", ".join(f"{times[i - 1]:.2f} s (+{s:.3f} s)" for i, s in zip(g["gaps"][:5], g["gap_s"][:5]))
                out.append(Check("frame_times", level, f"{name}: expected a frame every {g['step_s'] * 1000:.1f} ms, "
                                 f"found {g['gaps'].size} time-stamp jump(s), about {n_missing} frame(s) missing: at "
                                 f"{at}{' ...' if g['gaps'].size > 5 else ''}; video time drifts against the audio and "
                                 "the brain after each", subject=name, category="episode", details=det,
                                 view="frames", data=payload))
            else:
                out.append(Check("frame_times", "pass", f"{name}: {n_frames} frames, one every "
                                 f"{g['step_s'] * 1000:.1f} ms, no drops or jumps", subject=name, category="episode",
                                 details=det, view="frames", data=payload))
            if declared and abs(declared - n_frames) > 1:
                out.append(Check("frame_count", "warn", f"{name}: the header declares {declared} frames, found "
                                 f"{n_frames} displayable frames", subject=name, category="episode",
                                 details={"declared": declared, "found": n_frames}))
            # audio against video
            audio_path = Path(audio) if audio is not None else (video if has_audio else None)
            if audio_path is None:
                out.append(Check("audio_video", "warn", f"{name}: expected an audio track (or a separate audio "
                                 "file) for audio features and the sync check, found none", subject=name,
                                 category="episode"))
    else:
        audio_path = Path(audio) if audio is not None else None
    if audio_path is not None:
        try:
            samples, sr = read_audio(audio_path, sr=16000)
        except AlignScopeError as exc:
            out.append(Check("audio_video", "fail", f"{name}: {exc}", subject=name, category="episode"))
            samples, sr = None, None
        if samples is not None:
            audio_s = samples.size / float(sr)
            if end_s is not None:
                diff = audio_s - end_s
                det = {"audio_s": audio_s, "video_s": end_s, "difference_s": diff}
                if abs(diff) > C.AV_WARN_S:
                    level = "fail" if abs(diff) > C.AV_FAIL_S else "warn"
                    out.append(Check("audio_video", level, f"{name}: expected audio and video of the same length "
                                     f"(within {C.AV_WARN_S} s), found audio {audio_s:.2f} s and video {end_s:.2f} s "
                                     f"({diff:+.2f} s)", subject=name, category="episode", details=det))
                else:
                    out.append(Check("audio_video", "pass", f"{name}: audio {audio_s:.2f} s and video {end_s:.2f} s "
                                     f"agree ({diff:+.2f} s)", subject=name, category="episode", details=det))
            elif end_s is None:
                end_s = audio_s
            quiet = silences(samples, sr)
            det = {"silences_s": quiet, "min_s": C.SILENCE_MIN_S, "threshold_db": C.SILENCE_DB}
            if quiet:
                spans = ", ".join(f"{a:.1f}-{b:.1f} s" for a, b in quiet[:5])
                out.append(Check("silence", "warn", f"{name}: expected sound throughout, found {len(quiet)} silence(s) "
                                 f"of {C.SILENCE_MIN_S:g} s or more ({C.SILENCE_DB:g} dB below the loud parts): {spans}"
                                 "; audio features are flat there (padding, or a missing track?)", subject=name,
                                 category="episode", details=det))
            else:
                out.append(Check("silence", "pass", f"{name}: no silence of {C.SILENCE_MIN_S:g} s or more",
                                 subject=name, category="episode", details=det))
    out += _timing_checks(words, "words", words_source, end_s, name)
    out += _timing_checks(cues, "subtitles", cues_source, end_s, name)
    return out
