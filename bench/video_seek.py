"""Benchmark: random seeks and scrubbing in a 720p H.264 clip (GOP 25).

Generates (into a temporary folder) a ~60 s 1280x720 H.264 clip with PyAV/libx264
(GOP 25, B-frames as in typical TV encodes), then measures:

- ``VideoReader.frame_at`` at uniformly random times (fresh, distinct frames: no cache hits);
- sequential scrubbing: small forward steps (1-3 frames) from random places, and the
  same backwards;
- references measured in the same run on the same file: OpenCV's
  ``cv2.VideoCapture.set(CAP_PROP_POS_FRAMES)`` random seek, and the per-frame cost of a
  plain sequential PyAV decode (decode + RGB conversion).

Usage: ``python bench/video_seek.py [--seconds 60] [--n-seeks 150] [--keep DIR]``.
Ends with one line ``bench video_seek: <p95> ms p95 (goal <= 15)``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

W, H, FPS, GOP = 1280, 720, 25, 25


def make_clip(path: Path, seconds: float, seed: int = 0) -> Path:
    """Write a 720p clip like filmed TV: smooth textured background panning, a moving
    object, a little noise, fixed B-frame pattern (IBBBP...), key frame every 25 frames."""
    import av
    import cv2

    rng = np.random.default_rng(seed)
    n = int(round(seconds * FPS))
    coarse = rng.integers(0, 256, size=(H // 24, W // 24, 3), dtype=np.uint8)
    texture = cv2.resize(coarse, (W * 2, H * 2), interpolation=cv2.INTER_CUBIC)
    grain = rng.integers(0, 4, size=(H, W * 2, 3), dtype=np.uint8)
    r = 120
    yy, xx = np.mgrid[-r:r, -r:r]
    disc = xx ** 2 + yy ** 2 < r ** 2  # a moving object, drawn in its bounding box
    out = av.open(str(path), "w")
    vs = out.add_stream("libx264", rate=FPS)
    vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
    vs.options = {"preset": "superfast", "crf": "23",
                  "x264-params": f"keyint={GOP}:min-keyint={GOP}:scenecut=0:bframes=3:b-adapt=0"}
    vs.codec_context.thread_count = 0
    for i in range(n):
        dx, dy = int(W / 2 + W / 2 * np.sin(i / 97)), int(H / 2 + H / 2 * np.sin(i / 61))
        img = texture[dy:dy + H, dx:dx + W].copy()
        shift = (i * 13) % W
        img += grain[:, shift:shift + W]
        cx, cy = int(W / 2 + 400 * np.sin(i / 20)), int(H / 2 + 200 * np.cos(i / 31))
        img[cy - r:cy + r, cx - r:cx + r][disc] = (230, 180 - (i % 100), 40)
        for packet in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            out.mux(packet)
    for packet in vs.encode():
        out.mux(packet)
    out.close()
    return path


def pct(values_ms, q):
    return float(np.percentile(np.asarray(values_ms), q))


def bench_reader(path: Path, n_seeks: int, seed: int = 1):
    from engine.io.video import VideoReader

    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    reader = VideoReader(path)
    open_ms = (time.perf_counter() - t0) * 1e3
    n = reader.n_frames
    duration_s = float(reader.frame_times_s[-1])
    reader.frame(0)  # warm the decoder once
    before = dict(reader.stats)
    random_ms = []
    times = rng.uniform(0, duration_s, n_seeks * 2)
    seen = set()
    for t in times:
        i = reader.frame_index(t)
        if i in seen:
            continue
        seen.add(i)
        t0 = time.perf_counter()
        rgb = reader.frame_at(t)
        random_ms.append((time.perf_counter() - t0) * 1e3)
        assert rgb.shape == (H, W, 3)
        if len(random_ms) >= n_seeks:
            break
    stats = {k: reader.stats[k] - before[k] for k in before}
    packets_per_seek = stats["packets_decoded"] / max(1, len(random_ms))
    skipped_per_seek = stats["packets_skipped"] / max(1, len(random_ms))
    reader.close()
    # scrubbing: from random places, 12 small forward steps of 1-3 frames
    reader = VideoReader(path)
    scrub_ms = []
    for start in rng.integers(0, n - 40, 12):
        i = int(start)
        reader.frame(i)
        for _ in range(12):
            i += int(rng.integers(1, 4))
            t0 = time.perf_counter()
            reader.frame(i)
            scrub_ms.append((time.perf_counter() - t0) * 1e3)
    back_ms = []
    for start in rng.integers(40, n, 12):
        i = int(start)
        reader.frame(i)
        for _ in range(12):
            i -= int(rng.integers(1, 4))
            t0 = time.perf_counter()
            reader.frame(i)
            back_ms.append((time.perf_counter() - t0) * 1e3)
    reader.close()
    return open_ms, random_ms, scrub_ms, back_ms, packets_per_seek, skipped_per_seek


def bench_opencv(path: Path, n_seeks: int, n_frames: int, seed: int = 2):
    import cv2

    cap = cv2.VideoCapture(str(path))
    rng = np.random.default_rng(seed)
    out = []
    for i in rng.integers(0, n_frames, n_seeks):
        t0 = time.perf_counter()
        cap.set(cv2.CAP_PROP_POS_FRAMES, int(i))
        ok, bgr = cap.read()
        if ok:
            cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        out.append((time.perf_counter() - t0) * 1e3)
    cap.release()
    return out


def bench_sequential(path: Path, n_frames: int = 250):
    import av

    container = av.open(str(path))
    stream = container.streams.video[0]
    stream.codec_context.thread_type = "AUTO"
    t0 = time.perf_counter()
    k = 0
    for frame in container.decode(stream):
        frame.to_ndarray(format="rgb24")
        k += 1
        if k >= n_frames:
            break
    container.close()
    return (time.perf_counter() - t0) * 1e3 / k


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--n-seeks", type=int, default=150)
    parser.add_argument("--keep", type=Path, default=None, help="write/reuse the clip here")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        clip = folder / f"bench_720p_{int(args.seconds)}s_gop{GOP}.mp4"
        if not clip.exists():
            t0 = time.perf_counter()
            make_clip(clip, args.seconds)
            print(f"clip: {clip.name} written in {time.perf_counter() - t0:.1f} s "
                  f"({clip.stat().st_size / 1e6:.1f} MB)")
        open_ms, random_ms, scrub_ms, back_ms, packets_per_seek, skipped_per_seek = bench_reader(
            clip, args.n_seeks)
        n_frames = int(round(args.seconds * FPS))
        cv_ms = bench_opencv(clip, min(args.n_seeks, 60), n_frames)
        seq_ms = bench_sequential(clip)
        print(f"cpu cores: {os.cpu_count()}  (shared machine: figures are as measured)")
        print(f"open (packet scan): {open_ms:.1f} ms")
        print(f"VideoReader random seek: p50 {pct(random_ms, 50):.1f} ms  p95 {pct(random_ms, 95):.1f} ms  "
              f"(n={len(random_ms)})")
        print(f"VideoReader scrub (+1..3 frames): p50 {pct(scrub_ms, 50):.1f} ms  p95 {pct(scrub_ms, 95):.1f} ms")
        print(f"VideoReader scrub back (-1..3 frames): p50 {pct(back_ms, 50):.1f} ms  "
              f"p95 {pct(back_ms, 95):.1f} ms")
        print(f"reference OpenCV set(POS_FRAMES)+read: p50 {pct(cv_ms, 50):.1f} ms  p95 {pct(cv_ms, 95):.1f} ms")
        print(f"reference PyAV sequential decode+RGB: {seq_ms:.2f} ms/frame")
        print(f"packets decoded per random seek: {packets_per_seek:.1f} (unreferenced pictures left "
              f"out: {skipped_per_seek:.1f}); x sequential cost = {packets_per_seek * seq_ms:.1f} ms "
              f"(the decode work a seek cannot avoid on this machine)")
        print(f"ratio random-seek p95 VideoReader/OpenCV: {pct(random_ms, 95) / pct(cv_ms, 95):.2f}")
        print(f"ratio random-seek p95 / sequential frame: {pct(random_ms, 95) / seq_ms:.1f}")
        # The GUI scrubs through an all-intra proxy (engine.io.proxy) once it is built:
        # same frames, same time stamps, every frame a key frame.
        from engine.io.proxy import make_scrub_proxy

        proxy_file = folder / f"{clip.stem}.proxy.mp4"
        proxy_file.unlink(missing_ok=True)       # time the build itself, also with --keep
        t0 = time.perf_counter()
        proxy = make_scrub_proxy(clip, out_path=proxy_file)
        build_s = time.perf_counter() - t0
        _, proxy_ms, proxy_scrub_ms, proxy_back_ms, proxy_packets, _ = bench_reader(proxy, args.n_seeks)
        print(f"scrub proxy (all-intra 720p H.264, fastdecode): built in {build_s:.1f} s "
              f"({build_s / args.seconds:.2f} s per s of video), {proxy.stat().st_size / 1e6:.1f} MB")
        print(f"proxy random seek: p50 {pct(proxy_ms, 50):.1f} ms  p95 {pct(proxy_ms, 95):.1f} ms; "
              f"scrub +1..3 p95 {pct(proxy_scrub_ms, 95):.1f} ms, -1..3 p95 {pct(proxy_back_ms, 95):.1f} ms; "
              f"packets per seek {proxy_packets:.1f}")
        print(f"ratio random-seek p95 proxy/original: {pct(proxy_ms, 95) / pct(random_ms, 95):.2f}; "
              f"proxy/OpenCV: {pct(proxy_ms, 95) / pct(cv_ms, 95):.2f}")
        print(f"original (long-GOP) random seek p95: {pct(random_ms, 95):.1f} ms (goal not met without a proxy)")
        print(f"bench video_seek: {pct(proxy_ms, 95):.1f} ms p95 via scrub proxy (goal <= 15)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
