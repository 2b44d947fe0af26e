"""TVLT in plain PyTorch agrees with transformers 4.57.6 (fixture made by make_tvlt_reference.py)."""

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from engine.errors import ConfigError, DataError, ModelNotFoundError  # noqa: E402
from engine.features import tvlt  # noqa: E402
from engine.features.tvlt import (TvltConfig, TvltPreprocessing, load_tvlt, tvlt_audio_values,  # noqa: E402
                                  tvlt_pixel_values)

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TINY = FIXTURES / "tvlt_tiny"
TINY_PRETRAINING = FIXTURES / "tvlt_tiny_pretraining"
ATOL = 1e-5


@pytest.fixture(scope="module")
def ref():
    with np.load(FIXTURES / "tvlt_reference.npz") as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def tiny():
    return load_tvlt(TINY)


def test_audio_values_match_tvlt_feature_extractor_defaults(ref):
    values, mask = tvlt_audio_values([ref["fe_default_wave1"], ref["fe_default_wave2"]])
    assert values.shape == ref["fe_default_audio_values"].shape and values.dtype == np.float32
    np.testing.assert_allclose(values, ref["fe_default_audio_values"], atol=ATOL, rtol=0)
    np.testing.assert_array_equal(mask, ref["fe_default_audio_mask"])
    single, _ = tvlt_audio_values(ref["fe_default_wave1"])
    np.testing.assert_allclose(single, ref["fe_default_single_audio_values"], atol=ATOL, rtol=0)
    # the padded tail of the shorter clip is padding, and the mask says so
    assert mask[1].sum() < mask[0].sum()


@pytest.mark.parametrize("tag", ["landscape", "portrait"])
def test_pixel_values_match_tvlt_image_processor_defaults(ref, tag):
    frames = ref[f"ip_default_{tag}_frames"]
    values, mask = tvlt_pixel_values(frames)
    assert values.shape == tuple(ref[f"ip_default_{tag}_shape"])
    np.testing.assert_allclose(values[..., ::4, ::4], ref[f"ip_default_{tag}_sub"], atol=ATOL, rtol=0)
    assert values.astype(np.float64).sum() == pytest.approx(float(ref[f"ip_default_{tag}_sum"]), abs=1e-2)
    assert mask.shape == (1, 2 * 196) and mask.min() == 1


def test_tiny_checkpoint_preprocessing_from_its_folder(ref, tiny):
    _model, config, _info = tiny
    settings = TvltPreprocessing.from_folder(TINY, config)
    assert settings.crop_hw == (32, 32) and settings.feature_size == 32
    pixels, pmask = tvlt_pixel_values(list(ref["tiny_frames"]), settings, patch_size=config.image_patch_size[0],
                                      max_frames=config.num_frames)
    np.testing.assert_allclose(pixels, ref["tiny_pixel_values"], atol=ATOL, rtol=0)
    np.testing.assert_array_equal(pmask, ref["tiny_pixel_mask"])
    audio, amask = tvlt_audio_values([ref["tiny_waves_0"], ref["tiny_waves_1"]], settings)
    np.testing.assert_allclose(audio, ref["tiny_audio_values"], atol=ATOL, rtol=0)
    np.testing.assert_array_equal(amask, ref["tiny_audio_mask"])


def test_state_dict_keys_are_transformers_tvltmodel_keys(ref, tiny):
    model, _config, info = tiny
    assert sorted(model.state_dict().keys()) == sorted(ref["tiny_state_dict_keys"].tolist())
    assert info["ignored_keys"] == []


def test_full_size_layout_is_tvlt_base(ref):
    """Names and shapes of a full-size (ZinengTang/tvlt-base) TvltModel and TvltForPreTraining."""
    with torch.device("meta"):
        model = tvlt.build_tvlt_model(TvltConfig())
    ours = sorted(f"{k}:{tuple(v.shape)}" for k, v in model.state_dict().items())
    assert ours == sorted(ref["default_model_keys"].tolist())
    encoder_in_pretraining = sorted(k[len("tvlt."):] for k in ref["default_pretraining_keys"].tolist()
                                    if k.startswith("tvlt."))
    assert ours == encoder_in_pretraining


def _run(model, ref, output_attentions):
    t = lambda k: torch.from_numpy(ref[k])  # noqa: E731
    with torch.no_grad():
        return model(t("tiny_pixel_values"), t("tiny_audio_values"), pixel_mask=t("tiny_pixel_mask"),
                     audio_mask=t("tiny_audio_mask"), output_hidden_states=True,
                     output_attentions=output_attentions)


def test_tiny_model_outputs_match_transformers(ref, tiny):
    model, config, _info = tiny
    out = _run(model, ref, output_attentions=True)
    np.testing.assert_allclose(out["last_hidden_state"].numpy(), ref["tiny_last_hidden_state"], atol=ATOL, rtol=0)
    np.testing.assert_allclose(out["last_pixel_hidden_state"].numpy(), ref["tiny_last_pixel_hidden_state"],
                               atol=ATOL, rtol=0)
    np.testing.assert_allclose(out["last_audio_hidden_state"].numpy(), ref["tiny_last_audio_hidden_state"],
                               atol=ATOL, rtol=0)
    assert len(out["hidden_states"]) == config.num_hidden_layers + 1
    for i, h in enumerate(out["hidden_states"]):
        np.testing.assert_allclose(h.numpy(), ref[f"tiny_hidden_state_{i}"], atol=ATOL, rtol=0)
    assert len(out["attentions"]) == config.num_hidden_layers
    for i, a in enumerate(out["attentions"]):
        np.testing.assert_allclose(a.numpy(), ref[f"tiny_attention_{i}"], atol=ATOL, rtol=0)
    # the padded audio patches of the second clip get no attention
    n_pad = int((ref["tiny_audio_mask"][1] == 0).sum())
    assert n_pad > 0 and out["attentions"][0][1, :, :, -n_pad:].abs().max() < 1e-6


def test_fused_attention_path_matches_eager(ref, tiny):
    model, _config, _info = tiny
    fused = _run(model, ref, output_attentions=False)
    assert fused["attentions"] is None
    np.testing.assert_allclose(fused["last_hidden_state"].numpy(), ref["tiny_last_hidden_state"], atol=ATOL, rtol=0)
    for i, h in enumerate(fused["hidden_states"]):
        np.testing.assert_allclose(h.numpy(), ref[f"tiny_hidden_state_{i}"], atol=ATOL, rtol=0)


def test_fewer_frames_and_no_masks(ref, tiny):
    model, _config, _info = tiny
    with torch.no_grad():
        out = model(torch.from_numpy(ref["tiny_pixel_values"][:1, :3]), torch.from_numpy(ref["tiny_audio_values"][:1]))
    np.testing.assert_allclose(out["last_hidden_state"].numpy(), ref["tiny_nomask_3frames_last_hidden_state"],
                               atol=ATOL, rtol=0)


def test_pretraining_checkpoint_loads_its_encoder(ref):
    model, _config, info = load_tvlt(TINY_PRETRAINING)
    assert info["ignored_keys"], "decoder and heads should be reported as ignored"
    assert not any(k.startswith("tvlt.") for k in info["ignored_keys"])
    expected_ignored = sorted(k for k in ref["pretraining_state_dict_keys"].tolist() if not k.startswith("tvlt."))
    assert info["ignored_keys"] == expected_ignored
    out = _run(model, ref, output_attentions=False)
    np.testing.assert_allclose(out["last_hidden_state"].numpy(), ref["tiny_last_hidden_state"], atol=ATOL, rtol=0)


def test_bin_checkpoint_loads_like_safetensors(tmp_path, ref, tiny):
    import shutil

    from safetensors.torch import load_file

    shutil.copy(TINY / "config.json", tmp_path / "config.json")
    torch.save(load_file(str(TINY / "model.safetensors")), tmp_path / "pytorch_model.bin")
    model, _config, _info = load_tvlt(tmp_path)
    out = _run(model, ref, output_attentions=False)
    np.testing.assert_allclose(out["last_hidden_state"].numpy(), ref["tiny_last_hidden_state"], atol=ATOL, rtol=0)


def test_wrong_weights_and_missing_models_raise(tmp_path):
    import json
    import shutil

    # a config that disagrees with the weights
    cfg = json.loads((TINY / "config.json").read_text())
    cfg["intermediate_size"] = 48
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    shutil.copy(TINY / "model.safetensors", tmp_path / "model.safetensors")
    with pytest.raises(DataError, match="expected shape"):
        load_tvlt(tmp_path)
    # missing layers
    cfg["intermediate_size"] = 64
    cfg["num_hidden_layers"] = 3
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(DataError, match="missing"):
        load_tvlt(tmp_path)
    with pytest.raises(ModelNotFoundError):
        load_tvlt("nobody/no-such-tvlt-model")
    with pytest.raises(ConfigError, match="model_type"):
        TvltConfig.from_dict({"model_type": "vit"})


def test_config_round_trip_and_defaults():
    c = TvltConfig()
    assert c.num_patches_per_image == 196 and c.num_freq_patches == 8 and c.max_time_patches == 128
    again = TvltConfig.from_dict(c.to_dict())
    assert again == c
    s = TvltPreprocessing.for_config(c)
    assert s.hop_length == 512 and s.sampling_rate == 44100 and s.crop_hw == (224, 224)


# --------------------------------------------------------------------------- the extractor

TR_S = 0.5
N_TRS = 8
FPS = 10
SR = 44100
FLASH_TR, TONE_TR = 2, 5


def _write_episode(folder, flash_tr=FLASH_TR, tone_tr=TONE_TR, seed=0):
    """Lossless video, black except a textured picture during ``flash_tr``; silent audio except a
    tone during ``tone_tr``."""
    import av
    from fractions import Fraction

    from scipy.io import wavfile

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    video = folder / "episode.mkv"
    n_frames = int(N_TRS * TR_S * FPS)
    with av.open(str(video), "w") as container:
        stream = container.add_stream("ffv1", rate=Fraction(FPS, 1))
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv444p"
        for i in range(n_frames):
            img = np.zeros((32, 48, 3), np.uint8)
            if flash_tr is not None and int(i / FPS / TR_S) == flash_tr:
                img[:] = rng.integers(60, 255, (32, 48, 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    t = np.arange(int(N_TRS * TR_S * SR)) / SR
    audio = np.zeros_like(t)
    if tone_tr is not None:
        on = (t >= tone_tr * TR_S) & (t < (tone_tr + 1) * TR_S)
        audio[on] = 0.5 * np.sin(2 * np.pi * 880.0 * t[on])
    wav = folder / "episode.wav"
    wavfile.write(str(wav), SR, (audio * 32767).astype(np.int16))
    return video, wav


@pytest.fixture(scope="module")
def episode(tmp_path_factory):
    from engine.features.base import EpisodeInputs

    pytest.importorskip("engine.io.video")
    video, wav = _write_episode(tmp_path_factory.mktemp("tvlt_episode"))
    return EpisodeInputs(n_trs=N_TRS, tr_s=TR_S, video_path=video, audio_path=wav)


def _spec(**changes):
    from engine.features.base import ModelSpec

    fields = dict(model=str(TINY), family="tvlt", modality="multimodal", layers=(), window_s=TR_S,
                  frames_per_window=2, options=(("split_modalities", True),), name="tvlt-tiny")
    fields.update(changes)
    return ModelSpec(**fields)


@pytest.fixture(scope="module")
def extractor():
    from engine.features.tvlt import TvltExtractor

    return TvltExtractor(_spec(), TINY, device="cpu", batch_size=3)


def _extract(extractor, episode, **kwargs):
    from engine.jobs import run_sync

    return run_sync(extractor.extract(episode, **kwargs))


def _same(a, b):
    return np.allclose(a, b, atol=1e-5, rtol=0)


def test_extractor_layers_and_shapes(extractor, episode):
    feats = _extract(extractor, episode)
    assert extractor.layers == ["layer00", "video.layer00", "audio.layer00", "layer01", "video.layer01",
                                "audio.layer01", "layer02", "video.layer02", "audio.layer02"]
    for name in extractor.layers:
        assert feats[name].shape == (N_TRS, 32) and feats[name].dtype == np.float32


def test_planted_flash_and_tone_land_in_their_trs(extractor, episode):
    feats = _extract(extractor, episode)
    still = [k for k in range(N_TRS) if k not in (FLASH_TR, TONE_TR)]
    # embeddings: video tokens see only frames, audio tokens only sound
    video0, audio0 = feats["video.layer00"], feats["audio.layer00"]
    for k in range(N_TRS):
        assert _same(video0[k], video0[still[0]]) == (k != FLASH_TR), k
        assert _same(audio0[k], audio0[still[0]]) == (k != TONE_TR), k
    # after attention both TRs stand out in every stream; the still TRs stay identical
    for name in ("layer02", "video.layer02", "audio.layer02"):
        f = feats[name]
        assert all(_same(f[k], f[still[0]]) for k in still), name
        assert not _same(f[FLASH_TR], f[still[0]]) and not _same(f[TONE_TR], f[still[0]]), name


def test_rows_do_not_depend_on_the_chunk_they_are_asked_in(extractor, episode):
    full = _extract(extractor, episode)
    part = _extract(extractor, episode, tr_indices=[TONE_TR, FLASH_TR, 0])
    for name in extractor.layers:
        np.testing.assert_allclose(part[name], full[name][[TONE_TR, FLASH_TR, 0]], atol=1e-5, rtol=0)


def test_modality_ablation_removes_exactly_one_input(extractor, episode, tmp_path):
    from engine.features.base import EpisodeInputs

    no_video = _extract(extractor, episode, ablate="vision")
    no_audio = _extract(extractor, episode, ablate="audio")
    for name in ("layer02", "video.layer02", "audio.layer02"):
        # blank frames: the flash is gone, the tone is still there
        assert _same(no_video[name][FLASH_TR], no_video[name][0])
        assert not _same(no_video[name][TONE_TR], no_video[name][0])
        # silence: the tone is gone, the flash is still there
        assert _same(no_audio[name][TONE_TR], no_audio[name][0])
        assert not _same(no_audio[name][FLASH_TR], no_audio[name][0])
    # with the video blanked, a different video gives the same features
    video2, _ = _write_episode(tmp_path / "other", flash_tr=6, tone_tr=None, seed=3)
    other = EpisodeInputs(n_trs=N_TRS, tr_s=TR_S, video_path=video2, audio_path=episode.audio_path)
    no_video_other = _extract(extractor, other, ablate="vision")
    np.testing.assert_allclose(no_video_other["layer02"], no_video["layer02"], atol=1e-5, rtol=0)
    from engine.errors import ConfigError as _ConfigError

    with pytest.raises(_ConfigError, match="ablation"):
        _extract(extractor, episode, ablate="text")


def _direct_inputs(episode, k, n_frames=2):
    """The inputs of TR k built by hand from the reader and the processors' reimplementation."""
    from engine.io.video import VideoReader, read_audio

    settings = TvltPreprocessing.from_folder(TINY, TvltConfig.from_folder(TINY))
    start, end = k * TR_S, (k + 1) * TR_S
    times = start + (np.arange(n_frames) + 0.5) / n_frames * (end - start)
    with VideoReader(episode.video_path) as reader:
        frames = np.stack([reader.frame_at(t) for t in times])
    samples, sr = read_audio(episode.audio_path, sr=SR)
    a = int(round(start * sr))
    wave = samples[a:a + int(round(TR_S * sr))]
    pixels, pmask = tvlt_pixel_values(frames, settings, 8, 4)
    audio, amask = tvlt_audio_values(wave, settings)
    return pixels, audio, pmask, amask


def test_features_equal_the_model_run_by_hand(extractor, episode, tiny):
    model, _config, _info = tiny
    feats = _extract(extractor, episode, tr_indices=[TONE_TR])
    pixels, audio, _pm, _am = _direct_inputs(episode, TONE_TR)
    with torch.no_grad():
        out = model(torch.from_numpy(pixels), torch.from_numpy(audio), output_hidden_states=True)
    n_pix = pixels.shape[1] * 16
    for i in range(3):
        h = out["hidden_states"][i][0].numpy()
        np.testing.assert_allclose(feats[f"layer{i:02d}"][0], h[1:].mean(0), atol=1e-5, rtol=0)
        np.testing.assert_allclose(feats[f"video.layer{i:02d}"][0], h[1:1 + n_pix].mean(0), atol=1e-5, rtol=0)
        np.testing.assert_allclose(feats[f"audio.layer{i:02d}"][0], h[1 + n_pix:].mean(0), atol=1e-5, rtol=0)


def test_attention_maps_for_the_overlay(extractor, episode, tiny, tmp_path):
    from engine.jobs import run_sync

    model, config, _info = tiny
    video = run_sync(extractor.extract_attention(episode, [FLASH_TR, TONE_TR]))
    audio = run_sync(extractor.extract_attention(episode, [FLASH_TR, TONE_TR], stream="audio"))
    n_time = extractor.n_audio_tokens // 2
    L, H = config.num_hidden_layers, config.num_attention_heads
    assert video.kind == "patches" and list(video.tr_indices) == [FLASH_TR, TONE_TR]
    assert video.maps.shape == (2, L, H, 4, 4) and video.maps.dtype == np.float16
    assert video.rollout.shape == (2, 4, 4)
    assert audio.kind == "spectrogram" and audio.maps.shape == (2, L, H, n_time, 2)
    assert audio.rollout.shape == (2, n_time, 2)
    share = np.asarray(video.meta["modality_share"])
    assert share.shape == (L, 3)
    np.testing.assert_allclose(share.sum(-1), 1.0, atol=1e-3)
    # the frame shown is the window's last one
    assert video.meta["frame_times_s"][1] == pytest.approx((TONE_TR + 0.75) * TR_S)
    pixels, audio_in, pm, am = _direct_inputs(episode, TONE_TR)
    with torch.no_grad():
        out = model(torch.from_numpy(pixels), torch.from_numpy(audio_in), torch.from_numpy(pm),
                    torch.from_numpy(am), output_attentions=True)
    for layer in range(L):
        row = out["attentions"][layer][0, :, 0].numpy()  # heads, tokens
        np.testing.assert_allclose(video.maps[1, layer].astype(np.float32).reshape(H, -1), row[:, 17:33], atol=2e-3)
        np.testing.assert_allclose(audio.maps[1, layer].astype(np.float32).reshape(H, -1), row[:, 33:], atol=2e-3)
    roll = tvlt.attention_rollout([a.numpy() for a in out["attentions"]])[0, 0]
    np.testing.assert_allclose(video.rollout[1].astype(np.float32).ravel(), roll[17:33], atol=2e-3)
    np.testing.assert_allclose(audio.rollout[1].astype(np.float32).ravel(), roll[33:], atol=2e-3)
    # the maps survive the project's attention file format
    attention = pytest.importorskip("engine.features.attention")
    if hasattr(attention, "save_attention"):
        back = attention.load_attention(attention.save_attention(audio, tmp_path / "att.h5"))
        np.testing.assert_array_equal(back.maps, audio.maps)
        assert back.meta["modality_share"] == audio.meta["modality_share"] and back.kind == "spectrogram"
    # a budget of one TR keeps one TR; none raises
    per_tr_mib = (L * H + 1) * 16 * 2 / 2 ** 20
    small = run_sync(extractor.extract_attention(episode, list(range(N_TRS)), max_mb=1.5 * per_tr_mib))
    assert len(small.tr_indices) == 1
    with pytest.raises(ConfigError, match="budget"):
        run_sync(extractor.extract_attention(episode, [0], max_mb=1e-9))
    with pytest.raises(ConfigError, match="stream"):
        run_sync(extractor.extract_attention(episode, [0], stream="text"))


def test_attention_rollout_of_identity_attention_is_identity():
    eye = np.broadcast_to(np.eye(5), (1, 2, 5, 5))
    np.testing.assert_allclose(tvlt.attention_rollout([eye, eye])[0], np.eye(5), atol=1e-6)
    rng = np.random.default_rng(0)
    a = rng.random((1, 2, 5, 5))
    a /= a.sum(-1, keepdims=True)
    r = tvlt.attention_rollout([a])[0]
    expected = 0.5 * a.mean(1)[0] + 0.5 * np.eye(5)
    np.testing.assert_allclose(r, expected / expected.sum(-1, keepdims=True), atol=1e-6)


def test_extractor_rejects_windows_and_frames_the_model_cannot_take():
    from engine.features.tvlt import TvltExtractor

    with pytest.raises(ConfigError, match="frames per window"):
        TvltExtractor(_spec(frames_per_window=8), TINY, device="cpu")
    with pytest.raises(ConfigError, match="at most"):
        TvltExtractor(_spec(window_s=2.0), TINY, device="cpu")


def test_registry_builds_tvlt_from_a_folder():
    registry = pytest.importorskip("engine.features.registry")
    from engine.features.tvlt import TvltExtractor

    ex = registry.build_extractor(str(TINY), device="cpu", family="tvlt", modality="multimodal",
                                  window_s=TR_S, frames_per_window=2, layers=(1.0,))
    assert isinstance(ex, TvltExtractor) and ex.layers == ["layer02"]


def test_checkpoint_resizing_larger_than_its_crop(tmp_path, episode):
    """A processor that resizes to 40 px and crops 32: the mask follows the model's patches."""
    import json
    import shutil

    from engine.features.tvlt import TvltExtractor

    folder = tmp_path / "tvlt_resize40"
    shutil.copytree(TINY, folder)
    pp = json.loads((folder / "preprocessor_config.json").read_text())
    pp["size"] = {"shortest_edge": 40}
    (folder / "preprocessor_config.json").write_text(json.dumps(pp))
    ex = TvltExtractor(_spec(model=str(folder)), folder, device="cpu", batch_size=2)
    assert ex.settings.shortest_edge == 40 and ex.settings.crop_hw == (32, 32)
    feats = _extract(ex, episode, tr_indices=[FLASH_TR, 0])
    assert np.all(np.isfinite(feats["layer02"])) and not _same(feats["layer02"][0], feats["layer02"][1])
