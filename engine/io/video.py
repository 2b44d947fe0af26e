"""Frame-exact video reading and audio extraction (PyAV).

Time conventions (shared with :mod:`engine.timeline`)
-----------------------------------------------------
- Episode time 0 is the container's start time (the earliest stream start), so that
  the video's frames and the audio returned by :func:`read_audio` share one clock.
- ``frame_times_s[i]`` is the presentation time of frame ``i`` computed from its packet
  PTS; frame ``i`` is on screen during ``[frame_times_s[i], frame_times_s[i+1])``.
  Variable frame rates are therefore handled exactly: nothing assumes a constant rate.
- ``frame_at(t_s)`` returns the frame on screen at ``t_s`` (clamped to the first / last frame).

How a frame is found
--------------------
The stream's packets are scanned once (demuxing only, no decoding) to build the table
of frame times and key frames; the table is cached per file (path, size, mtime). To get
frame ``i`` the reader either keeps decoding forward from where the decoder is (when the
target is a little ahead), or seeks to the last key frame at or before frame ``i`` and
decodes forward, converting only the target frame to RGB. Pictures that no other
picture references (H.264 ``nal_ref_idc == 0``, HEVC sub-layer non-reference types) and
that precede the target are not decoded at all: for typical B-frame encodes this halves
the work of a seek. Decoded RGB frames sit in a small LRU cache, and the (unconverted)
frames passed on the way to a target are kept too, so that scrubbing back and forth is
smooth. ``VideoReader.stats`` counts seeks, decoded and skipped packets.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Tuple

import numpy as np

from ..errors import DataError

# Decoding forward costs one frame decode per step; a seek costs a flush, a demuxer seek
# and decoding from the key frame. Stay on the current decoder when the target is at most
# this many frames further than the keyframe route would need.
_SEEK_OVERHEAD_FRAMES = 4
_RANDOM_ACCESS_THREADS = 4
_COLORSPACE_UNSPECIFIED = 2  # AVCOL_SPC_UNSPECIFIED


def _open_container(path: Path):
    import av

    if not path.exists():
        raise DataError(f"media file: expected an existing file, found no file at {path}")
    if path.is_dir():
        raise DataError(f"media file: expected a file, found a directory at {path}")
    if path.stat().st_size == 0:
        raise DataError(f"media file {path.name}: expected audio/video data, found an empty file")
    try:
        return av.open(str(path), mode="r")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(
            f"media file {path.name}: expected a readable audio/video container, "
            f"found data FFmpeg cannot open ({exc})"
        ) from exc


def pick_stream(container, kind: str):
    """The stream of ``kind`` ("video"/"audio") to use, or None.

    Skips cover art (attached pictures, as in MP3/M4A files) and prefers the stream
    marked as default (the first one otherwise).
    """
    import av

    streams = [s for s in container.streams if s.type == kind]
    if kind == "video":
        streams = [s for s in streams if not (s.disposition & av.stream.Disposition.attached_pic)]
    if not streams:
        return None
    for s in streams:
        if s.disposition & av.stream.Disposition.default:
            return s
    return streams[0]


def _container_start_s(container) -> float:
    start = container.start_time  # AV_TIME_BASE (microseconds) or None
    return float(start) / 1e6 if start is not None else 0.0


@dataclass(frozen=True)
class _FrameTable:
    """What one scan of a video stream's packets tells."""

    pts: np.ndarray  # n_frames, int64 presentation stamps in stream time base, sorted
    times_s: np.ndarray  # n_frames, float64 seconds from episode start
    key_indices: np.ndarray  # n_keyframes, int64 frame indices of key frames, sorted
    duration_s: float
    video_end_s: float
    droppable: np.ndarray  # n_frames, bool: no other frame references this one (H.264/HEVC)
    seekable: bool = True  # False: stamps are synthetic, decoding restarts from the start


_TABLE_CACHE: "OrderedDict[tuple, _FrameTable]" = OrderedDict()
_TABLE_CACHE_MAX = 64
_TABLE_LOCK = threading.Lock()


def _nal_length_size(stream) -> Optional[int]:
    """NAL length-prefix size of H.264 (avcC) / HEVC (hvcC) packets, None for Annex B."""
    extradata = stream.codec_context.extradata
    if not extradata:
        return None
    ed = bytes(extradata)
    name = stream.codec_context.name
    if name == "h264" and len(ed) >= 7 and ed[0] == 1:
        return (ed[4] & 3) + 1
    if name == "hevc" and len(ed) >= 23 and ed[0] == 1:
        return (ed[21] & 3) + 1
    return None


def _iter_nals(data: memoryview, length_size: Optional[int]):
    """Yield the first bytes (header) of each NAL unit of a packet."""
    n = len(data)
    if length_size:
        pos = 0
        while pos + length_size < n:
            size = int.from_bytes(data[pos:pos + length_size], "big")
            yield data[pos + length_size:pos + length_size + 2]
            pos += length_size + size
    else:  # Annex B: 00 00 01 start codes
        raw = bytes(data[: min(n, 4096)])
        pos = raw.find(b"\x00\x00\x01")
        while pos != -1 and pos + 4 < len(raw):
            yield memoryview(raw)[pos + 3:pos + 5]
            pos = raw.find(b"\x00\x00\x01", pos + 3)


def _is_droppable(packet, codec: str, length_size: Optional[int]) -> bool:
    """True when the packet's picture is never used as a reference.

    H.264: every slice NAL (types 1, 5) has nal_ref_idc == 0. HEVC: every picture NAL is a
    sub-layer non-reference type (TRAIL_N, TSA_N, STSA_N, RADL_N, RASL_N, RSV_VCL_N*)
    in temporal sub-layer 0 (so no higher sub-layer can use it). Such packets can be left
    out when decoding towards a later frame: nothing else depends on them.
    """
    try:
        data = memoryview(packet)
    except TypeError:
        return False
    seen_picture = False
    for header in _iter_nals(data, length_size):
        if len(header) < 2 and codec == "hevc":
            return False
        if codec == "h264":
            nal_type, ref_idc = header[0] & 0x1F, (header[0] >> 5) & 3
            if nal_type in (1, 5):
                if ref_idc != 0:
                    return False
                seen_picture = True
        else:
            nal_type, tid = (header[0] >> 1) & 0x3F, (header[1] & 7) - 1
            if nal_type <= 31:
                if nal_type % 2 == 1 or nal_type > 14 or tid != 0:
                    return False
                seen_picture = True
    return seen_picture


def _scan_frame_table(container, stream, path: Path) -> _FrameTable:
    """Read every video packet's PTS (no decoding) and build the frame-time table."""
    import av

    tb = stream.time_base
    pts_list = []
    key_pts = []
    drop_pts = []
    last_dur = 0
    n_packets = 0
    missing_pts = False
    codec = stream.codec_context.name
    check_refs = codec in ("h264", "hevc")
    length_size = _nal_length_size(stream) if check_refs else None
    try:
        for packet in container.demux(stream):
            if packet.size:
                n_packets += 1
            if packet.size == 0 or packet.is_discard:
                # The flush packet, or a packet an edit list cuts away (never displayed).
                continue
            pts = packet.pts
            if pts is None:
                missing_pts = True
                break
            pts_list.append(pts)
            if packet.is_keyframe:
                key_pts.append(pts)
            elif check_refs and _is_droppable(packet, codec, length_size):
                drop_pts.append(pts)
            last_dur = packet.duration or 0
    except av.error.FFmpegError as exc:
        raise DataError(
            f"video {path.name}: expected a readable video stream, found corrupt data while "
            f"scanning packets ({exc})"
        ) from exc
    if missing_pts:
        # Some containers (AVI, raw streams) leave PTS unset; fall back to decoding once.
        # The stamps are then our own, so the demuxer cannot seek by them: decoding
        # always restarts from the beginning (only key frame: frame 0).
        pts_list, last_dur = _decode_frame_stamps(stream.index, path)
        key_pts, drop_pts = [], []
    if not pts_list:
        raise DataError(f"video {path.name}: expected at least one video frame, found none")
    pts = np.unique(np.asarray(pts_list, dtype=np.int64))  # sorted; duplicate stamps merged
    origin_s = _container_start_s(container)
    times_s = pts.astype(np.float64) * float(tb) - origin_s
    key_pts_arr = np.asarray(sorted(set(key_pts)) or [pts[0]], dtype=np.int64)
    key_indices = np.searchsorted(pts, key_pts_arr)
    key_indices = key_indices[key_indices < len(pts)]
    if len(key_indices) == 0 or key_indices[0] != 0:
        # Decoding must start somewhere: the first frame is reachable by seeking to the start.
        key_indices = np.concatenate([[0], key_indices])
    key_indices = np.unique(key_indices)

    if len(times_s) > 1:
        typical_step = float(np.median(np.diff(times_s)))
    else:
        typical_step = float(last_dur * tb) if last_dur else 0.04
    video_end_s = float(times_s[-1]) + (float(last_dur * tb) if last_dur else typical_step)
    if stream.duration is not None and stream.start_time is not None:
        stream_end_s = float((stream.start_time + stream.duration) * tb) - origin_s
        if stream_end_s > times_s[-1]:
            video_end_s = stream_end_s
    _check_not_truncated(container, stream, path, n_packets, video_end_s, origin_s)
    duration_s = video_end_s
    if container.duration is not None:
        container_s = float(container.duration) / 1e6
        if container_s > times_s[-1]:
            duration_s = container_s
    droppable = np.isin(pts, np.asarray(drop_pts, dtype=np.int64)) if drop_pts else np.zeros(len(pts), bool)
    return _FrameTable(pts, times_s, key_indices.astype(np.int64), duration_s, video_end_s, droppable,
                       seekable=not missing_pts)


def _parse_clock(text: str) -> Optional[float]:
    """'HH:MM:SS.fffffffff' (Matroska DURATION tag) -> seconds."""
    try:
        h, m, sec = text.strip().split(":")
        return int(h) * 3600 + int(m) * 60 + float(sec)
    except (ValueError, AttributeError):
        return None


# Formats whose durations FFmpeg estimates from the bit rate (no header to trust).
_ESTIMATED_DURATION_FORMATS = {"mpegts", "mpeg", "mpegvideo", "h264", "hevc", "m4v", "rawvideo", "mjpeg"}


def _check_not_truncated(container, stream, path: Path, n_packets: int, video_end_s: float,
                         origin_s: float):
    """Compare what the header declares with the packets actually present."""
    if set(container.format.name.split(",")) & _ESTIMATED_DURATION_FORMATS:
        return
    declared_frames = int(stream.frames or 0)
    if declared_frames > 10 and n_packets < 0.98 * declared_frames - 1:
        raise DataError(
            f"video {path.name}: expected {declared_frames} video packets (declared in the file "
            f"header), found only {n_packets}; the file looks truncated or damaged"
        )
    declared_end_s = None
    tag = {k.upper(): v for k, v in (stream.metadata or {}).items()}.get("DURATION")
    if tag:
        declared_end_s = _parse_clock(tag)
    elif stream.duration is not None:
        start = stream.start_time or 0
        declared_end_s = float((start + stream.duration) * stream.time_base) - origin_s
    if declared_end_s is not None and declared_end_s - video_end_s > max(1.0, 0.05 * declared_end_s):
        raise DataError(
            f"video {path.name}: expected frames up to {declared_end_s:.2f} s (declared in the "
            f"file header), found frames only up to {video_end_s:.2f} s; the file looks "
            f"truncated or damaged"
        )


def _decode_frame_stamps(stream_index: int, path: Path):
    """Fallback when packets carry no PTS (raw elementary streams, some AVIs): decode
    the whole stream once (with a fresh demuxer: such streams may not seek) and time
    frames by their stamps or, lacking those, by accumulating frame durations."""
    import av

    container = _open_container(path)
    pts_list = []
    last_dur = 0
    try:
        stream = container.streams[stream_index]
        stream.codec_context.thread_type = "AUTO"
        rate = stream.guessed_rate or stream.average_rate
        default_step = int(round(1 / (float(rate) * float(stream.time_base)))) if rate else 1
        next_pts = 0
        for frame in container.decode(stream):
            pts = frame.pts
            if pts is None:
                pts = getattr(frame, "best_effort_timestamp", None)
            if pts is None or (pts_list and pts <= pts_list[-1]):
                pts = next_pts
            step = int(frame.duration or 0) or default_step
            pts_list.append(int(pts))
            next_pts = int(pts) + max(step, 1)
            last_dur = step
    except av.error.FFmpegError as exc:
        raise DataError(
            f"video {path.name}: expected decodable video, found corrupt data ({exc})"
        ) from exc
    finally:
        container.close()
    return pts_list, last_dur


def _frame_table(container, stream, path: Path) -> _FrameTable:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    with _TABLE_LOCK:
        table = _TABLE_CACHE.get(key)
        if table is not None:
            _TABLE_CACHE.move_to_end(key)
            return table
    table = _scan_frame_table(container, stream, path)
    with _TABLE_LOCK:
        _TABLE_CACHE[key] = table
        while len(_TABLE_CACHE) > _TABLE_CACHE_MAX:
            _TABLE_CACHE.popitem(last=False)
    return table


class VideoReader:
    """Frame-exact random access to a video file.

    Parameters
    ----------
    path : str or Path
        A video file PyAV can open (mp4, mkv, avi, mov, webm...; H.264, HEVC, MPEG-4, VP9, AV1...).
    cache_mb : float
        Memory budget of the LRU cache of decoded RGB frames.
    threads : int or None
        Decoder threads (0 or None = let FFmpeg choose).

    Attributes
    ----------
    n_frames : int
        Number of displayed frames.
    frame_times_s : ndarray, shape (n_frames,)
        Presentation time of each frame (seconds from episode start).
    fps : float
        Average frame rate over the video (``(n_frames - 1) / span``).
    duration_s : float
        Length of the media (the longest stream).
    width, height : int
        Frame size in pixels.
    has_audio : bool
        Whether the file has an audio stream.
    """

    def __init__(self, path, cache_mb: float = 192.0, threads: Optional[int] = None):
        import av

        self.path = Path(path)
        self._container = _open_container(self.path)
        stream = pick_stream(self._container, "video")
        if stream is None:
            kinds = sorted({s.type for s in self._container.streams}) or ["no streams"]
            if self._container.streams.video:
                kinds = [k if k != "video" else "cover art" for k in kinds]
            self._container.close()
            raise DataError(
                f"video {self.path.name}: expected a video stream, found {', '.join(kinds)}"
            )
        self._stream = stream
        try:
            table = _frame_table(self._container, self._stream, self.path)
        except DataError:
            self._container.close()
            raise
        self._table = table
        self._pts = table.pts
        self._pts_to_index = {int(p): i for i, p in enumerate(table.pts)}
        self.frame_times_s = table.times_s
        self.frame_times_s.setflags(write=False)
        self.n_frames = int(len(table.pts))
        self.duration_s = float(table.duration_s)
        span = float(table.times_s[-1] - table.times_s[0])
        if self.n_frames > 1 and span > 0:
            self.fps = (self.n_frames - 1) / span
        else:
            rate = self._stream.average_rate or self._stream.guessed_rate
            self.fps = float(rate) if rate else 0.0
        cc = self._stream.codec_context
        self.width = int(cc.width)
        self.height = int(cc.height)
        self.has_audio = pick_stream(self._container, "audio") is not None
        self.codec = cc.name
        self._key_indices = table.key_indices
        self._droppable_pts = frozenset(int(p) for p in table.pts[table.droppable])
        self._target_pts = -(2**62)
        # Cost of the route via the key frame vs decoding on: count only the frames that
        # must be decoded (droppable ones before the target are skipped).
        self._needed_cumsum = np.concatenate([[0], np.cumsum(~table.droppable)])
        # Random access decoder: frame threading raises throughput, but a frame comes out
        # only after (threads - 1) later packets went in, and every seek flushes them all;
        # a few threads balance seek latency against playback speed. (iter_frames uses
        # its own decoder with as many threads as FFmpeg likes.)
        cc.thread_type = "AUTO"
        cc.thread_count = int(threads) if threads else min(_RANDOM_ACCESS_THREADS, os.cpu_count() or 1)
        self._frame_bytes = max(1, self.width * self.height * 3)
        self._cache_max = max(2, int(cache_mb * 1e6 // self._frame_bytes))
        # Decoded (YUV, unconverted) frames passed on the way to a target: a third of the
        # cache budget (YUV 4:2:0 takes half the bytes of RGB).
        self._passed: "OrderedDict[int, object]" = OrderedDict()
        self._passed_max = int(cache_mb / 3 * 1e6 // max(1, self.width * self.height * 3 // 2))
        self._cache: "OrderedDict[int, np.ndarray]" = OrderedDict()
        self._lock = threading.RLock()
        self._decoder: Optional[Iterator] = None
        self._pos = -1  # index of the last frame the decoder produced (-1 = none)
        self._seek_key = 0  # key frame the current decoding run started from
        self._closed = False
        #: Counters for diagnostics and benchmarks (requests served from the cache,
        #: seeks, packets sent to the decoder, unreferenced packets left out).
        self.stats = {"frames": 0, "cache_hits": 0, "seeks": 0, "packets_decoded": 0,
                      "packets_skipped": 0}
        self._av_error = av.error.FFmpegError

    # ------------------------------------------------------------------ public API
    def __len__(self) -> int:
        return self.n_frames

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"VideoReader({self.path.name!r}, {self.n_frames} frames, {self.width}x{self.height}, "
            f"{self.fps:.3f} fps, {self.duration_s:.3f} s)"
        )

    def close(self) -> None:
        """Release the file and the decoder."""
        with self._lock:
            if not self._closed:
                self._decoder = None
                self._container.close()
                self._cache.clear()
                self._passed.clear()
                self._closed = True

    def frame_index(self, t_s: float) -> int:
        """Index of the frame on screen at ``t_s`` (clamped to ``[0, n_frames - 1]``)."""
        i = int(np.searchsorted(self.frame_times_s, float(t_s) + 1e-9, side="right")) - 1
        return min(max(i, 0), self.n_frames - 1)

    def frame_at(self, t_s: float) -> np.ndarray:
        """RGB frame on screen at ``t_s`` seconds, shape (H, W, 3) uint8."""
        return self.frame(self.frame_index(t_s))

    def frame(self, i: int) -> np.ndarray:
        """RGB frame ``i``, shape (H, W, 3) uint8 (a read-only array; copy to modify)."""
        i = int(i)
        if i < 0:
            i += self.n_frames
        if not 0 <= i < self.n_frames:
            raise IndexError(f"frame index: expected 0..{self.n_frames - 1}, found {i}")
        with self._lock:
            self._check_open()
            self.stats["frames"] += 1
            cached = self._cache.get(i)
            if cached is not None:
                self._cache.move_to_end(i)
                self.stats["cache_hits"] += 1
                return cached
            passed = self._passed.pop(i, None)
            if passed is not None:
                self.stats["cache_hits"] += 1
                rgb = self._to_rgb(passed)
                self._remember(i, rgb)
                return rgb
            rgb = self._decode_to(i)
            self._remember(i, rgb)
            return rgb

    def iter_frames(self, start_s: float = 0.0, stop_s: Optional[float] = None,
                    size_hw: Optional[Tuple[int, int]] = None):
        """Yield ``(i, t_s, rgb)`` for every frame on screen in ``[start_s, stop_s)``.

        Decodes sequentially with its own decoder (one seek at the start, frame
        threading), so it is the fast way to visit a range and does not disturb random
        access (``frame``/``frame_at``) from another thread. Frames are not cached.
        ``size_hw=(height, width)`` resizes each frame (:func:`resize_rgb`).
        """
        self._check_open()
        first = self.frame_index(start_s)
        if stop_s is None:
            last = self.n_frames - 1
        else:
            last = int(np.searchsorted(self.frame_times_s, float(stop_s) - 1e-9, side="left")) - 1
            last = min(last, self.n_frames - 1)
        if last < first:
            return
        container = _open_container(self.path)
        try:
            stream = container.streams[self._stream.index]
            stream.codec_context.thread_type = "AUTO"
            key = self._key_before(first)
            for attempt in range(2):
                if attempt and not self._table.seekable:
                    break
                if attempt:
                    container.seek(0)
                elif key <= 0 or not self._table.seekable:
                    pass  # a freshly opened file is at its start
                else:
                    container.seek(int(self._pts[key]), stream=stream, backward=True, any_frame=False)
                started = False
                idx = -1
                try:
                    for frame in container.decode(stream):
                        idx = self._frame_index_of(frame, previous=idx)
                        if not started and idx > first and attempt == 0 and key > 0:
                            break  # the demuxer landed too late: restart from the beginning
                        started = True
                        if idx < first:
                            continue
                        if idx > last:
                            return
                        rgb = self._to_rgb(frame, read_only=False)
                        if size_hw is not None:
                            rgb = resize_rgb(rgb, size_hw)
                        yield idx, float(self.frame_times_s[idx]), rgb
                    else:
                        return
                except self._av_error as exc:
                    raise DataError(
                        f"video {self.path.name}: expected decodable frames, found corrupt data ({exc})"
                    ) from exc
        finally:
            container.close()

    def keyframe_indices(self) -> np.ndarray:
        """Indices of the key frames (where decoding can start)."""
        return self._key_indices.copy()

    # ------------------------------------------------------------------ decoding
    def _check_open(self) -> None:
        if self._closed:
            raise DataError(f"video {self.path.name}: expected an open reader, found it closed")

    def _remember(self, i: int, rgb: np.ndarray) -> None:
        self._cache[i] = rgb
        self._cache.move_to_end(i)
        while len(self._cache) > self._cache_max:
            self._cache.popitem(last=False)

    def _key_before(self, i: int) -> int:
        k = int(np.searchsorted(self._key_indices, i, side="right")) - 1
        return int(self._key_indices[max(k, 0)])

    def _to_rgb(self, frame, read_only: bool = True) -> np.ndarray:
        if frame.colorspace == _COLORSPACE_UNSPECIFIED and frame.height >= 720:
            # Untagged HD video is BT.709 in practice; players (mpv, VLC) assume so too.
            # (Tagged frames are converted with their own matrix; untagged SD as BT.601.)
            rgb = frame.reformat(format="rgb24", src_colorspace="ITU709").to_ndarray()
        else:
            rgb = frame.to_ndarray(format="rgb24")
        if rgb.shape[0] != self.height or rgb.shape[1] != self.width:
            # A mid-stream resolution change: keep one frame size for the whole video.
            import cv2

            rgb = cv2.resize(rgb, (self.width, self.height), interpolation=cv2.INTER_AREA)
        if read_only:
            rgb.setflags(write=False)
        return rgb

    def _frame_index_of(self, frame, previous: Optional[int] = None) -> int:
        """Frame index from the frame's stamp; without one (streams with synthetic
        stamps decode from the start), the frame after ``previous``."""
        pts = frame.pts
        if pts is None:
            pts = getattr(frame, "best_effort_timestamp", None)
        if pts is None or not self._table.seekable:
            return (self._pos if previous is None else previous) + 1
        idx = self._pts_to_index.get(int(pts))
        if idx is None:
            idx = int(np.searchsorted(self._pts, int(pts), side="right")) - 1
        return idx

    def _restart(self) -> None:
        """Reopen the file: the way back to the start for streams that cannot seek."""
        index = self._stream.index
        thread_count = self._stream.codec_context.thread_count
        self._container.close()
        self._container = _open_container(self.path)
        self._stream = self._container.streams[index]
        self._stream.codec_context.thread_type = "AUTO"
        self._stream.codec_context.thread_count = thread_count

    def _seek_to_key(self, key_index: int) -> None:
        self._decoder = None
        if not self._table.seekable:
            self._restart()
        elif key_index <= 0:
            self._container.seek(0)
        else:
            self._container.seek(
                int(self._pts[key_index]), stream=self._stream, backward=True, any_frame=False
            )
        self._decoder = self._decode_packets()
        self._pos = -1 if key_index <= 0 else key_index - 1
        self._seek_key = max(key_index, 0)
        self.stats["seeks"] += 1

    def _decode_packets(self):
        """Decode the stream from the demuxer's position, leaving out pictures nobody
        references while they are before the frame asked for (``self._target_pts``)."""
        cc = self._stream.codec_context
        cc.flush_buffers()
        droppable = self._droppable_pts
        for packet in self._container.demux(self._stream):
            if packet.size == 0:
                break
            pts = packet.pts
            if droppable and pts is not None and pts < self._target_pts and pts in droppable:
                self.stats["packets_skipped"] += 1
                continue
            self.stats["packets_decoded"] += 1
            for frame in cc.decode(packet):
                yield frame
        for frame in cc.decode(None):
            yield frame

    def _next_frame(self):
        if self._decoder is None:
            return None
        try:
            return next(self._decoder)
        except StopIteration:
            self._decoder = None
            return None
        except self._av_error as exc:
            self._decoder = None
            raise DataError(
                f"video {self.path.name}: expected decodable frames, found corrupt data ({exc})"
            ) from exc

    def _decode_to(self, i: int) -> np.ndarray:
        self._target_pts = int(self._pts[i])
        key = self._key_before(i)
        need = self._needed_cumsum
        forward_ok = (
            self._decoder is not None
            and self._pos < i
            and (need[i] - need[self._pos + 1]) <= (need[i] - need[key]) + _SEEK_OVERHEAD_FRAMES
        )
        if not forward_ok:
            self._seek_to_key(key)
        tries = 0
        last_frame, last_idx = None, -1
        while True:
            frame = self._next_frame()
            if frame is None:
                if last_frame is not None and last_idx <= i:
                    # The stream ended before the target (a frame the decoder could not
                    # produce): give the last frame shown before it.
                    return self._to_rgb(last_frame)
                if tries < 2:
                    tries += 1
                    self._seek_to_key(0)
                    continue
                raise DataError(
                    f"video {self.path.name}: expected frame {i} to be decodable, found the "
                    f"stream ends before it"
                )
            idx = self._frame_index_of(frame)
            if idx > i and last_frame is None:
                # The demuxer landed after the target: restart from an earlier key frame.
                if tries >= 3:
                    raise DataError(
                        f"video {self.path.name}: expected frame {i} after seeking, found "
                        f"frame {idx} first"
                    )
                tries += 1
                earlier = int(np.searchsorted(self._key_indices, key, side="left")) - 1
                key = int(self._key_indices[max(earlier, 0)]) if tries < 3 else 0
                self._seek_to_key(key)
                continue
            self._pos = idx
            if idx == i:
                return self._to_rgb(frame)
            if idx > i:
                # Target frame missing from the decoded stream: show the one before.
                return self._to_rgb(last_frame)
            self._keep_passed(idx, frame)
            last_frame, last_idx = frame, idx

    def _keep_passed(self, idx: int, frame) -> None:
        """Keep a frame decoded on the way to a target (not yet converted to RGB): a
        step back while scrubbing then needs no seek."""
        if self._passed_max <= 0 or idx in self._cache or idx < self._seek_key:
            # (Frames before the key frame decoding started from are leading pictures of
            # an open GOP whose references were never decoded: not to be shown.)
            return
        self._passed[idx] = frame
        self._passed.move_to_end(idx)
        while len(self._passed) > self._passed_max:
            self._passed.popitem(last=False)


def resize_rgb(rgb: np.ndarray, size_hw: Tuple[int, int]) -> np.ndarray:
    """Resize an RGB frame with OpenCV (area averaging when shrinking, bicubic when growing).

    Parameters
    ----------
    rgb : ndarray, shape (H, W, 3) uint8
    size_hw : (height, width)
        Output size in pixels.

    Returns
    -------
    ndarray, shape (height, width, 3) uint8
    """
    import cv2

    h, w = int(size_hw[0]), int(size_hw[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"size_hw: expected positive (height, width), found {size_hw}")
    if rgb.shape[:2] == (h, w):
        return rgb
    shrinking = h * w < rgb.shape[0] * rgb.shape[1]
    return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)


def read_audio(path, sr: Optional[int] = 16000) -> Tuple[np.ndarray, int]:
    """Read the first audio stream of a file as mono float32 at ``sr`` Hz.

    Works for audio files (wav, mp3, flac, ogg...) and the audio track of video files.
    Sample 0 is episode time 0 (the container's start), the same clock as
    :attr:`VideoReader.frame_times_s`: if the audio stream starts late, leading zeros
    are inserted; if it starts early, the early samples are dropped.

    Parameters
    ----------
    path : str or Path
        Media file.
    sr : int or None
        Output sampling rate in Hz (None: the stream's own rate).

    Returns
    -------
    samples : ndarray, shape (n_samples,), float32
        Mono signal (left and right averaged; more than two channels are first
        downmixed to stereo by FFmpeg), nominally in [-1, 1].
    sr : int
        The sampling rate of ``samples``.

    Raises
    ------
    DataError
        If the file is missing, unreadable or has no audio stream.
    """
    import av

    path = Path(path)
    if sr is not None:
        sr = int(sr)
        if sr <= 0:
            raise DataError(f"audio sampling rate: expected a positive integer, found {sr}")
    container = _open_container(path)
    try:
        stream = pick_stream(container, "audio")
        if stream is None:
            kinds = sorted({s.type for s in container.streams}) or ["no streams"]
            raise DataError(
                f"audio {path.name}: expected an audio stream, found only {', '.join(kinds)}"
            )
        if sr is None:
            sr = int(stream.codec_context.sample_rate or 0)
            if sr <= 0:
                raise DataError(f"audio {path.name}: expected a sampling rate in the header, found none")
        stream.codec_context.thread_type = "AUTO"
        # Mono = the plain average of left and right. (FFmpeg's own stereo->mono downmix
        # scales by 1/sqrt(2) instead, which would change the level of a mono recording
        # stored as two identical channels.) Multichannel audio is first downmixed to
        # stereo with FFmpeg's standard matrix.
        n_channels = stream.codec_context.channels or 2
        out_layout = "mono" if n_channels == 1 else "stereo"
        resampler = av.AudioResampler(format="fltp", layout=out_layout, rate=sr)
        chunks = []
        first_t_s = None
        origin_s = _container_start_s(container)
        end_s = None
        if stream.duration is not None and stream.start_time is not None:
            # Encoders pad the last packet (AAC frames are 1024 samples); the stream
            # duration says where the real signal ends.
            end_s = float((stream.start_time + stream.duration) * stream.time_base) - origin_s
        try:
            for frame in container.decode(stream):
                if first_t_s is None and frame.pts is not None:
                    first_t_s = float(frame.pts * frame.time_base) - origin_s
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().mean(axis=0))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().mean(axis=0))
        except av.error.FFmpegError as exc:
            raise DataError(
                f"audio {path.name}: expected decodable audio, found corrupt data ({exc})"
            ) from exc
    finally:
        container.close()
    samples = np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)
    if not len(samples):
        raise DataError(f"audio {path.name}: expected audio samples, found an empty audio stream")
    offset = int(round((first_t_s or 0.0) * sr))
    if offset > 0:
        samples = np.concatenate([np.zeros(offset, np.float32), samples])
    elif offset < 0:
        samples = samples[-offset:]
    if end_s is not None and end_s > 0:
        n_end = int(round(end_s * sr))
        if len(samples) > n_end:
            samples = samples[:n_end]
    return np.ascontiguousarray(samples), sr


def probe_frame_count(path) -> int:
    """Count frames by decoding the whole video stream (slow; for checks and tests)."""
    container = _open_container(Path(path))
    try:
        stream = pick_stream(container, "video")
        if stream is None:
            raise DataError(f"video {Path(path).name}: expected a video stream, found none")
        stream.codec_context.thread_type = "AUTO"
        return sum(1 for _ in container.decode(stream))
    finally:
        container.close()
