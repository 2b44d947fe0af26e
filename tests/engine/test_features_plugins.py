"""Extractors from outside the registry: register_family, the entry-point group, low-level features."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest

from engine.errors import ConfigError
from engine.features import plugins, registry
from engine.features.base import BatchFeatures, EpisodeInputs, Extractor, ModelSpec
from engine.features.extract import extract_features
from engine.jobs import Progress


class RampExtractor:
    """A stand-in for a JAX model: feature of TR k = [k, 2k + window]; counts its calls."""

    modality = "multimodal"
    inputs = ("vision", "audio", "text")
    calls = 0

    def __init__(self, spec, device="cpu"):
        self.spec, self.device = spec, device
        self.layers = ["joint"]
        self.identity = {"model": "ramp", "version": 1}

    @classmethod
    def from_spec(cls, spec, device="cpu", folder=None):
        return cls(spec, device)

    def extract(self, episode, tr_indices=None, token=None, ablate="none"):
        RampExtractor.calls += 1
        idx = np.arange(episode.n_trs) if tr_indices is None else np.asarray(tr_indices)
        feats = {"joint": np.stack([idx, 2 * idx + self.spec.window_s], 1).astype(np.float32)}
        yield Progress(1, 1, "ramp", payload=BatchFeatures(idx, feats))
        return feats


def test_register_family_function(tmp_path):
    registry.register_family("ramp", RampExtractor, needs_weights=False)
    registry.register_spec(ModelSpec(name="ramp-1", model="ramp", family="ramp", modality="multimodal",
                                     window_s=3.0))
    ep = EpisodeInputs(n_trs=6, tr_s=1.5)
    out = extract_features(ep, "ramp-1", cache_dir=tmp_path)
    np.testing.assert_array_equal(out["joint"].data, np.stack([np.arange(6), 2 * np.arange(6) + 3.0], 1))
    assert isinstance(RampExtractor(ModelSpec("x")), Extractor)
    assert out["joint"].name == "ramp-1/joint"
    with pytest.raises(ConfigError, match="Supported values are"):
        registry.build_extractor(ModelSpec(name="x", model="x", family="no-such-family"))


def test_entry_point_group_registers_a_family(tmp_path, monkeypatch):
    # A fake installed distribution: a module and a dist-info declaring the entry point.
    (tmp_path / "fake_merlot.py").write_text(textwrap.dedent("""
        from engine.features import registry
        from tests.engine.test_features_plugins import RampExtractor

        def register():
            registry.register_family("fake_merlot", RampExtractor, needs_weights=False)
    """))
    dist = tmp_path / "fake_merlot-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-merlot\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[alignscope.extractors]\nfake_merlot = fake_merlot:register\n"
                                           "broken = fake_merlot:does_not_exist\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.FAMILIES.pop("fake_merlot", None)
    loaded = plugins.load_plugins(force=True)
    assert "fake_merlot" in loaded and "fake_merlot" in registry.FAMILIES
    assert "broken" in plugins.FAILED  # reported, does not stop the others
    spec = ModelSpec(name="merlot", model="merlot", family="fake_merlot", modality="multimodal", window_s=1.0)
    out = extract_features(EpisodeInputs(n_trs=3, tr_s=1.0), spec, use_cache=False)
    np.testing.assert_array_equal(out["joint"].data[:, 1], [1.0, 3.0, 5.0])
    sys.modules.pop("fake_merlot", None)


def test_lowlevel_features_are_a_registered_extractor(tmp_path):
    pytest.importorskip("av")
    from engine.features.lowlevel import lowlevel_features
    from tests.engine import test_features_support as S

    video = S.make_video(tmp_path / "v.mp4", seconds=4.0, size=(32, 48))
    words = S.make_words(seconds=4.0)
    ep = EpisodeInputs(n_trs=3, tr_s=1.2, video_path=video, words=words)
    out = extract_features(ep, "lowlevel", cache_dir=tmp_path / "c")
    direct = lowlevel_features(video, words, 3, 1.2)
    assert set(out) == set(direct)
    for k in direct:
        np.testing.assert_allclose(out[k].data, np.asarray(direct[k], np.float32).reshape(3, -1), rtol=1e-6)
    no_words = extract_features(ep, "lowlevel", use_cache=False, ablate="text")
    assert np.all(no_words["word_rate"].data == 0) and np.any(out["word_rate"].data > 0)
    assert out["luminance"].meta["cache_key"] != extract_features(
        ep, "lowlevel", cache_dir=tmp_path / "c", ablate="text")["luminance"].meta["cache_key"]


def test_tvlt_is_a_registered_multimodal_family(tmp_path):
    pytest.importorskip("torch")
    from pathlib import Path

    from tests.engine import test_features_support as S

    tiny = Path(__file__).resolve().parent / "fixtures" / "tvlt_tiny"
    if not (tiny / "config.json").exists():
        pytest.skip("the tiny TVLT checkpoint (tests/engine/fixtures/tvlt_tiny) is absent")
    video = S.make_video(tmp_path / "v.mp4", seconds=5.0, size=(32, 32))
    ep = EpisodeInputs(n_trs=3, tr_s=1.5, video_path=video)
    kw = dict(family="tvlt", modality="multimodal", layers=(1.0,), window_s=0.7, frames_per_window=2,
              device="cpu", use_cache=False)
    ex = registry.build_extractor(str(tiny), device="cpu", batch_size=2, family="tvlt", modality="multimodal",
                                  layers=(1.0,), window_s=0.7, frames_per_window=2)
    assert type(ex).__name__ == "TvltExtractor" and ex.batch_size == 2
    full = extract_features(ep, str(tiny), **kw)
    silent = extract_features(ep, str(tiny), ablate="audio", **kw)
    (name,) = full
    assert full[name].data.shape[0] == 3 and np.isfinite(full[name].data).all()
    assert not np.allclose(full[name].data, silent[name].data)  # the joint encoder hears the audio
    assert full[name].meta["cache_key"] != silent[name].meta["cache_key"]
