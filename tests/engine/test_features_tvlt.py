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
