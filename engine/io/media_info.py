"""What a stimulus file holds, and what is wrong with it (for the ``info`` command).

:func:`describe_media` returns a JSON-serialisable dict; :func:`check_media` returns a
list of human-readable problems ("expected X, found Y"), empty when the file is fine.
Both accept videos, audio files, subtitles/word timings and BIDS events files.
"""

from __future__ import annotations

from pathlib import Path
from typing import List

import numpy as np

from ..errors import AlignScopeError, DataError

VIDEO_EXTENSIONS = {".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".wmv", ".flv"}
AUDIO_EXTENSIONS = {".wav", ".mp3", ".flac", ".ogg", ".m4a", ".aac", ".opus", ".wma", ".aiff", ".aif"}
TEXT_EXTENSIONS = {".srt", ".vtt", ".webvtt", ".textgrid"}
TABLE_EXTENSIONS = {".tsv", ".csv", ".txt", ".tab"}

#: Longest key-frame interval before seeking gets noticeably slow (seconds).
SLOW_SEEK_KEYFRAME_INTERVAL_S = 10.0


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    name = path.name.lower()
    if suffix in VIDEO_EXTENSIONS:
        return "video"
    if suffix in AUDIO_EXTENSIONS:
        return "audio"
    if suffix in TEXT_EXTENSIONS:
        return "text"
    if suffix in TABLE_EXTENSIONS:
        if name.endswith(("_events.tsv", "_events.csv", "events.tsv")):
            return "events"
        return "text"
    return "media"  # unknown extension: let FFmpeg try


def _media(path: Path) -> dict:
    """Container-level facts, plus the frame table when there is a video stream."""
    import av

    from .video import VideoReader, _open_container, pick_stream

    container = _open_container(path)
    try:
        info = {
            "format": container.format.name,
            "duration_s": float(container.duration) / 1e6 if container.duration is not None else None,
            "bit_rate": int(container.bit_rate) if container.bit_rate else None,
            "streams": [s.type for s in container.streams],
        }
        audio = None
        a = pick_stream(container, "audio")
        if a is not None:
            cc = a.codec_context
            audio_dur = float(a.duration * a.time_base) if a.duration is not None else None
            audio = {
                "codec": cc.name,
                "sample_rate": int(cc.sample_rate or 0),
                "channels": int(cc.channels or 0),
                "duration_s": audio_dur,
            }
        v = pick_stream(container, "video")
        has_video = v is not None
        declared_frames = int(v.frames or 0) if has_video else 0
    except av.error.FFmpegError as exc:
        raise DataError(f"{path.name}: expected readable media, found {exc}") from exc
    finally:
        container.close()
    info["audio"] = audio
    info["video"] = None
    if has_video:
        with VideoReader(path) as reader:
            times = reader.frame_times_s
            steps = np.diff(times)
            keys = reader.keyframe_indices()
            key_times = times[keys]
            key_gaps = np.diff(np.concatenate([key_times, [times[-1]]])) if len(keys) else np.array([0.0])
            vfr = bool(len(steps) > 1 and (steps.max() - steps.min()) > 0.1 * np.median(steps) + 1e-4)
            info["video"] = {
                "codec": reader.codec,
                "width": reader.width,
                "height": reader.height,
                "n_frames": reader.n_frames,
                "declared_frames": declared_frames,
                "fps": float(reader.fps),
                "variable_frame_rate": vfr,
                "first_frame_s": float(times[0]),
                "last_frame_s": float(times[-1]),
                "n_keyframes": int(len(keys)),
                "max_keyframe_interval_s": float(key_gaps.max()) if len(key_gaps) else 0.0,
                "seekable": bool(reader._table.seekable),
            }
            info["duration_s"] = float(reader.duration_s)
    return info


def describe_media(path) -> dict:
    """Describe a stimulus file.

    Parameters
    ----------
    path : str or Path
        A video, audio, subtitle/word-timing or BIDS events file.

    Returns
    -------
    dict
        Always ``path``, ``name``, ``kind`` ("video", "audio", "text", "events"),
        ``size_bytes``. A video without an audio track adds ``notes`` (usable for visual
        features; audio features need a separate audio file). Media add ``format``, ``duration_s``, ``video`` (codec, width,
        height, n_frames, fps, variable_frame_rate, n_keyframes, ...) and ``audio``
        (codec, sample_rate, channels, duration_s), each None when absent. Text adds
        ``n_cues``, ``n_words``, ``first_onset_s``, ``last_offset_s``; events add
        ``n_events`` and ``trial_types`` (name -> count).

    Raises
    ------
    DataError
        Missing or unreadable file.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"stimulus file: expected an existing file, found no file at {path}")
    kind = _kind(path)
    out = {"path": str(path), "name": path.name, "kind": kind, "size_bytes": int(path.stat().st_size)}
    if kind in ("video", "audio", "media"):
        info = _media(path)
        out.update(info)
        out["kind"] = "video" if info["video"] else ("audio" if info["audio"] else "media")
        if info["video"] and info["audio"] is None:
            # a note, not a problem: the visual and word features need no sound
            out["notes"] = ["no audio track: usable for visual and word features; audio features "
                            "(audio_envelope, mel, audio models) need a separate audio file on the same clock"]
    elif kind == "text":
        from .text import read_cues, read_words

        words = read_words(path)
        cues = read_cues(path)
        ends = (cues["onset_s"] + cues["duration_s"]) if len(cues) else []
        out.update({
            "n_cues": int(len(cues)),
            "n_words": int(len(words)),
            "first_onset_s": float(cues["onset_s"].min()) if len(cues) else None,
            "last_offset_s": float(np.max(ends)) if len(cues) else None,
        })
        if "n_pauses" in words.attrs:
            out["n_pauses"] = int(words.attrs["n_pauses"])
    elif kind == "events":
        from .events import read_events

        events = read_events(path)
        counts = events["trial_type"].value_counts()
        out.update({
            "n_events": int(len(events)),
            "trial_types": {str(k): int(v) for k, v in counts.sort_index().items()},
            "first_onset_s": float(events["onset_s"].min()) if len(events) else None,
            "last_offset_s": float((events["onset_s"] + events["duration_s"]).max()) if len(events) else None,
            "extra_columns": [c for c in events.columns if c not in ("onset_s", "duration_s", "trial_type")],
        })
    return out


def check_media(path) -> List[str]:
    """List what is wrong with (or surprising about) a stimulus file.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    list of str
        One sentence per problem, naming what was expected and what was found; an
        empty list when nothing was found. A file that cannot be read at all gives one
        item (the reader's error message).
    """
    path = Path(path)
    try:
        info = describe_media(path)
    except AlignScopeError as exc:
        return [str(exc)]
    problems: List[str] = []
    name = path.name
    if info["size_bytes"] == 0:
        problems.append(f"{name}: expected data, found an empty file")
    kind = info["kind"]
    if kind == "video":
        v = info["video"]
        if v["declared_frames"] and v["declared_frames"] != v["n_frames"]:
            problems.append(
                f"{name}: the header declares {v['declared_frames']} frames, found {v['n_frames']} "
                f"displayable frames (frame counts below follow the displayable frames)"
            )
        if v["n_frames"] < 2:
            problems.append(f"{name}: expected a moving image, found {v['n_frames']} frame(s)")
        if not v["seekable"]:
            problems.append(
                f"{name}: expected a container with frame time stamps (mp4, mkv), found a stream "
                f"without them: every step back decodes from the start (remux it, e.g. "
                f"'ffmpeg -i {name} -c copy out.mkv')"
            )
        elif v["max_keyframe_interval_s"] > SLOW_SEEK_KEYFRAME_INTERVAL_S:
            problems.append(
                f"{name}: expected key frames at most {SLOW_SEEK_KEYFRAME_INTERVAL_S:.0f} s apart for "
                f"responsive seeking, found gaps up to {v['max_keyframe_interval_s']:.1f} s "
                f"(re-encode with a shorter GOP for smooth scrubbing)"
            )
        if v["first_frame_s"] > 0.5:
            problems.append(
                f"{name}: expected the first frame near 0 s, found it at {v['first_frame_s']:.2f} s"
            )
        audio = info.get("audio")
        if audio and audio.get("duration_s") is not None:
            video_end = v["last_frame_s"] + (1.0 / v["fps"] if v["fps"] else 0.0)
            if abs(audio["duration_s"] - video_end) > 1.0:
                problems.append(
                    f"{name}: expected audio and video of the same length, found audio "
                    f"{audio['duration_s']:.2f} s and video {video_end:.2f} s"
                )
    elif kind == "audio":
        if not info.get("duration_s"):
            problems.append(f"{name}: expected audio samples, found a duration of 0 s")
    elif kind == "media":
        problems.append(
            f"{name}: expected an audio or video stream, found {', '.join(info.get('streams') or []) or 'none'}"
        )
    elif kind == "text":
        if info["n_cues"] == 0:
            problems.append(f"{name}: expected subtitle cues or words, found none")
        else:
            from .text import read_cues

            cues = read_cues(path)
            onsets = cues["onset_s"].to_numpy(float)
            ends = onsets + cues["duration_s"].to_numpy(float)
            overlaps = int(np.sum(onsets[1:] < ends[:-1] - 1e-6))
            if overlaps:
                problems.append(
                    f"{name}: expected cues one after another, found {overlaps} cue(s) overlapping the previous one"
                )
            if onsets.min() < 0:
                problems.append(f"{name}: expected onsets >= 0 s, found {onsets.min():.3f} s")
    elif kind == "events":
        if info["n_events"] == 0:
            problems.append(f"{name}: expected events, found an empty table")
        elif info["first_onset_s"] is not None and info["first_onset_s"] < 0:
            problems.append(
                f"{name}: expected onsets >= 0 s (from the first volume), found {info['first_onset_s']:.3f} s"
            )
    return problems
