"""Scrub proxies: same frames at the same times, every frame a key frame, atomic builds."""

from fractions import Fraction

import numpy as np
import pytest

from engine.errors import JobCancelled
from engine.io.proxy import make_scrub_proxy, make_scrub_proxy_job, open_for_display, proxy_path
from engine.io.video import VideoReader
from engine.jobs import CancelToken, run_sync
from tests.engine.test_io_video import _decode_index, _write_video


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    d = tmp_path_factory.mktemp("proxy-src")
    rng = np.random.default_rng(3)
    vfr_pts = np.concatenate([[0], np.cumsum(rng.integers(15, 110, size=150))[:-1]])
    return {
        "cfg": _write_video(d / "cfg.mp4", 220, options={
            "x264-params": "keyint=50:min-keyint=50:scenecut=0:bframes=3:b-pyramid=normal"}),
        "vfr": _write_video(d / "vfr.mkv", 150, pts=vfr_pts, time_base=Fraction(1, 1000),
                            options={"x264-params": "keyint=40:min-keyint=40:scenecut=0"}),
    }


@pytest.mark.parametrize("kind", ["cfg", "vfr"])
def test_proxy_has_the_same_frames_at_the_same_times(sources, tmp_path, kind):
    proxy = make_scrub_proxy(sources[kind], cache_dir=tmp_path)
    with VideoReader(sources[kind]) as src, VideoReader(proxy) as prx:
        assert prx.n_frames == src.n_frames
        np.testing.assert_allclose(prx.frame_times_s, src.frame_times_s, atol=1e-6)
        assert len(prx.keyframe_indices()) == prx.n_frames          # all-intra
        assert len(src.keyframe_indices()) < src.n_frames / 30
        rng = np.random.default_rng(0)
        for i in rng.integers(0, src.n_frames, 40):
            assert _decode_index(prx.frame(int(i))) == int(i) % 256
        for t in rng.uniform(0, src.duration_s, 40):
            assert _decode_index(prx.frame_at(t)) == _decode_index(src.frame_at(t))


def test_proxy_random_access_decodes_one_packet(sources, tmp_path):
    proxy = make_scrub_proxy(sources["cfg"], cache_dir=tmp_path)
    with VideoReader(proxy) as prx, VideoReader(sources["cfg"]) as src:
        for i in (200, 13, 170, 48, 99):
            prx.frame(i)
            src.frame(i)
        # a long-GOP seek decodes many packets; an all-intra one decodes about one per frame asked
        assert prx.stats["packets_decoded"] <= 5 * 2
        assert src.stats["packets_decoded"] > 3 * prx.stats["packets_decoded"]


def test_open_for_display_prefers_a_built_proxy(sources, tmp_path):
    with open_for_display(sources["cfg"], cache_dir=tmp_path) as r:
        assert r.path == sources["cfg"]
    built = make_scrub_proxy(sources["cfg"], cache_dir=tmp_path)
    assert built == proxy_path(sources["cfg"], cache_dir=tmp_path)
    with open_for_display(sources["cfg"], cache_dir=tmp_path) as r:
        assert r.path == built


def test_scaled_proxy_keeps_aspect_and_even_size(sources, tmp_path):
    proxy = make_scrub_proxy(sources["cfg"], cache_dir=tmp_path, max_height=32)
    with VideoReader(proxy) as prx:
        assert (prx.height, prx.width) == (32, 64)


def test_cancelled_build_leaves_nothing(sources, tmp_path):
    token = CancelToken()
    steps = []

    def on_progress(p):
        steps.append(p.step)
        token.cancel()

    with pytest.raises(JobCancelled):
        run_sync(make_scrub_proxy_job(sources["cfg"], cache_dir=tmp_path), token=token, on_progress=on_progress)
    assert steps == [50]
    assert list(tmp_path.rglob("*.mp4")) == []
