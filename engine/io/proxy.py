"""Scrub proxies: an all-intra copy of an episode for instant random access.

A random seek in a long-GOP video must decode from the previous key frame: with a key frame
every 25 frames (every 250 in broadcast encodes) that is 10-100 decodes per seek, 40-400 ms
at 720p on a laptop core. Video editors solve this with *proxy media*; so does AlignScope.
The proxy is an H.264 file in which every frame is a key frame (``tune=fastdecode``: no
CABAC, no deblocking), so any frame decodes on its own in a few milliseconds.

Exactness is kept: the proxy carries the source's presentation time stamps and time base
frame for frame, so ``frame_times_s`` and every frame index agree with the original (this is
checked when the proxy is built and again when it is opened). The proxy is for *display*;
feature extraction always reads the original file.

Proxies live in a cache folder keyed by the source's path, size, modification time and the
proxy settings, and are written to a temporary file that is renamed into place, so a
cancelled build leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
import numpy as np

from ..atomic import atomic_path
from ..errors import DataError
from ..jobs import Progress

PROXY_VERSION = 1


def default_proxy_dir() -> Path:
    """Where scrub proxies are cached: ``proxies`` in the cache root (:func:`engine.paths.cache_dir`)."""
    from ..paths import cache_dir

    return cache_dir("proxies")


def proxy_path(video_path, max_height: int = 720, crf: int = 23, cache_dir=None) -> Path:
    """Cache location of the proxy of ``video_path`` for these settings."""
    src = Path(video_path).resolve()
    st = src.stat()
    key = f"{src}|{st.st_size}|{st.st_mtime_ns}|{max_height}|{crf}|v{PROXY_VERSION}"
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    folder = Path(cache_dir) if cache_dir is not None else default_proxy_dir()
    return folder / f"{src.stem}.{digest}.proxy.mp4"


def make_scrub_proxy_job(video_path, out_path=None, max_height: int = 720, crf: int = 23,
                         cache_dir=None, token=None):
    """Job: write the all-intra proxy of ``video_path``; returns its path.

    Parameters
    ----------
    video_path : path
        The original episode video.
    out_path : path, optional
        Where to write; default :func:`proxy_path` in the cache folder.
    max_height : int
        Frames taller than this are scaled down (aspect kept, even width).
    crf : int
        x264 quality (lower is better; 23 is visually clean for display).
    """
    import av

    from .video import VideoReader, pick_stream

    video_path = Path(video_path)
    out_path = Path(out_path) if out_path is not None else proxy_path(video_path, max_height, crf, cache_dir)
    if out_path.exists():
        return out_path
    with VideoReader(video_path) as source:
        expected_times = np.array(source.frame_times_s)
        n_frames = source.n_frames
        width, height = source.width, source.height
    if height > max_height:
        width = int(round(width * max_height / height / 2)) * 2
        height = int(max_height)
    width, height = max(2, width - width % 2), max(2, height - height % 2)

    with atomic_path(out_path) as tmp:
        with av.open(str(video_path)) as inp, av.open(str(tmp), mode="w", format="mp4") as out:
            ist = pick_stream(inp, "video")
            ist.thread_type = "AUTO"
            ost = out.add_stream("libx264", rate=ist.average_rate or 25)
            ost.width, ost.height = width, height
            ost.pix_fmt = "yuv420p"
            ost.gop_size = 1
            ost.options = {"tune": "fastdecode", "preset": "ultrafast", "crf": str(crf), "g": "1",
                           "keyint_min": "1", "bf": "0"}
            ost.codec_context.time_base = ist.time_base
            ost.time_base = ist.time_base
            ost.thread_type = "AUTO"
            done = 0
            for frame in inp.decode(ist):
                if frame.pts is None:
                    raise DataError(f"scrub proxy of {video_path.name}: expected time stamps on every "
                                    f"frame, found a frame without one (raw stream?)")
                small = frame.reformat(width=width, height=height, format="yuv420p")
                small.pts, small.time_base = frame.pts, frame.time_base
                for packet in ost.encode(small):
                    out.mux(packet)
                done += 1
                if done % 50 == 0:
                    if token is not None:
                        token.raise_if_cancelled()
                    yield Progress(done, n_frames, f"scrub proxy: frame {done}/{n_frames}")
            for packet in ost.encode():
                out.mux(packet)
        with VideoReader(tmp) as proxy:
            times = np.array(proxy.frame_times_s)
        if len(times) != n_frames or not np.allclose(times, expected_times, atol=1e-6):
            raise DataError(f"scrub proxy of {video_path.name}: expected {n_frames} frames at the source's "
                            f"times, found {len(times)} frames"
                            + ("" if len(times) != n_frames else " at other times"))
    yield Progress(n_frames, n_frames, "scrub proxy ready")
    return out_path


def make_scrub_proxy(video_path, out_path=None, max_height: int = 720, crf: int = 23, cache_dir=None,
                     token=None) -> Path:
    """Synchronous :func:`make_scrub_proxy_job`."""
    from ..jobs import run_sync

    return run_sync(make_scrub_proxy_job(video_path, out_path, max_height, crf, cache_dir), token=token)


def open_for_display(video_path, max_height: int = 720, crf: int = 23, cache_dir=None):
    """A :class:`~engine.io.video.VideoReader` for showing frames: the proxy when one is built.

    The proxy is used only if its frame times match the original's; otherwise the original
    is opened (and nothing is lost: the proxy is merely a faster route to the same frames).
    """
    from .video import VideoReader

    original = VideoReader(video_path)
    path = proxy_path(video_path, max_height, crf, cache_dir)
    if not path.exists():
        return original
    try:
        proxy = VideoReader(path)
    except DataError:
        return original
    if proxy.n_frames == original.n_frames and np.allclose(proxy.frame_times_s, original.frame_times_s,
                                                          atol=1e-6):
        original.close()
        return proxy
    proxy.close()
    return original
