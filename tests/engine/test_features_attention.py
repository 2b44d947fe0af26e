"""Attention rollout against a hand-computed example; attention maps for the overlay."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import ConfigError
from engine.features.attention import (attention_rollout, cls_patch_maps, kept_tr_indices, load_attention,
                                       save_attention)


def test_rollout_hand_computed_two_layers():
    # One head, two tokens. A' = 0.5*A + 0.5*I (rows already sum to 1):
    #   A1 = [[1, 0], [.5, .5]] -> A1' = [[1, 0], [.25, .75]]
    #   A2 = [[.5, .5], [0, 1]] -> A2' = [[.75, .25], [0, 1]]
    #   rollout = A2' @ A1' = [[.75 + .0625, .1875], [.25, .75]] = [[.8125, .1875], [.25, .75]]
    a1 = np.array([[[1.0, 0.0], [0.5, 0.5]]])
    a2 = np.array([[[0.5, 0.5], [0.0, 1.0]]])
    np.testing.assert_allclose(attention_rollout([a1, a2]), [[0.8125, 0.1875], [0.25, 0.75]])
    # Two heads are averaged before the residual: heads [[1,0],[0,1]] and [[0,1],[1,0]] -> uniform.
    h = np.array([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [1.0, 0.0]]])
    np.testing.assert_allclose(attention_rollout([h]), [[0.75, 0.25], [0.25, 0.75]])
    # Batched input keeps the leading axes; rows stay distributions.
    rng = np.random.default_rng(0)
    att = [rng.dirichlet(np.ones(5), size=(3, 2, 5)) for _ in range(4)]  # batch 3, heads 2, 5 tokens
    r = attention_rollout(att)
    assert r.shape == (3, 5, 5)
    np.testing.assert_allclose(r.sum(-1), 1.0)
    with pytest.raises(ConfigError, match="mean, max, min"):
        attention_rollout(att, head_fusion="median")


def test_cls_patch_maps_and_budget():
    att = np.zeros((2, 5, 5))
    att[:, 0] = [0.2, 0.1, 0.2, 0.3, 0.2]  # CLS row; 4 patches on a 2x2 grid
    m = cls_patch_maps(att, (2, 2))
    np.testing.assert_allclose(m[1], [[0.1, 0.2], [0.3, 0.2]])
    kept = kept_tr_indices(np.arange(100), bytes_per_tr=2 ** 20, max_mb=10)
    assert len(kept) == 10 and kept[0] == 0 and kept[-1] == 99


@pytest.fixture(scope="module")
def vit_setup(tmp_path_factory):
    pytest.importorskip("transformers")
    from engine.features.base import EpisodeInputs
    from tests.engine import test_features_support as S

    root = tmp_path_factory.mktemp("att")
    video = S.make_video(root / "v.mp4", seconds=4.3, size=(32, 32), audio=False)
    vit = S.tiny_vit(root / "vit")
    bert = S.tiny_bert(root / "bert")
    words = S.make_words(seconds=4.0, rate_hz=3.0)
    return EpisodeInputs(n_trs=4, tr_s=1.0, video_path=video, words=words), vit, bert


def test_vit_attention_maps_match_the_model_and_respect_the_budget(vit_setup):
    import torch
    from transformers import ViTImageProcessor, ViTModel

    from engine.features.extract import extract_attention_job
    from engine.io.video import VideoReader
    from engine.jobs import run_sync

    ep, vit, _ = vit_setup
    maps = run_sync(extract_attention_job(ep, str(vit), device="cpu", frames_per_window=2, window_s=1.0))
    # 2 layers, 2 heads, 32 px / 8 px patches = 4x4 grid.
    assert maps.maps.shape == (4, 2, 2, 4, 4) and maps.maps.dtype == np.float16
    assert maps.rollout.shape == (4, 4, 4) and maps.kind == "patches"
    # Independent computation: the frame nearest each TR's end (the last of 2 window samples, at +0.75 s).
    model = ViTModel.from_pretrained(vit, add_pooling_layer=False, attn_implementation="eager").eval()
    proc = ViTImageProcessor.from_pretrained(vit)
    with VideoReader(ep.video_path) as r:
        frames = [r.frame_at(k + 0.75) for k in range(4)]
    with torch.no_grad():
        att = model(pixel_values=torch.from_numpy(proc(images=frames, return_tensors="np")["pixel_values"]),
                    output_attentions=True).attentions
    expected = att[1][:, :, 0, 1:].reshape(4, 2, 4, 4).numpy()
    np.testing.assert_allclose(maps.maps[:, 1].astype(np.float32), expected, atol=2e-3)
    roll = attention_rollout([a.numpy() for a in att])[:, 0, 1:].reshape(4, 4, 4)
    np.testing.assert_allclose(maps.rollout.astype(np.float32), roll, atol=2e-3)
    # A budget for 2 TRs keeps 2 (evenly spread); maps stay under it.
    per_tr = (2 * 2 + 1) * 16 * 2
    small = run_sync(extract_attention_job(ep, str(vit), device="cpu", max_mb=2.5 * per_tr / 2 ** 20))
    assert list(small.tr_indices) == [0, 3] and small.nbytes <= 2.5 * per_tr
    # Stored for the GUI and read back unchanged.
    path = save_attention(maps, ep.video_path.parent / "attention.h5")
    back = load_attention(path)
    np.testing.assert_array_equal(back.maps, maps.maps)
    np.testing.assert_array_equal(back.rollout, maps.rollout)
    assert back.layers == ["layer01", "layer02"] and back.meta["grid"] == [4, 4]


def test_language_attention_from_the_last_window_token(vit_setup):
    from engine.features.extract import extract_attention_job
    from engine.jobs import run_sync

    ep, _, bert = vit_setup
    maps = run_sync(extract_attention_job(ep, str(bert), device="cpu", window_s=1.0, context_words=6))
    assert maps.kind == "tokens" and maps.maps.shape[:3] == (4, 2, 2)
    for i, toks in enumerate(maps.meta["tokens"]):
        row = maps.maps[i, :, :, :len(toks)].astype(np.float32)
        np.testing.assert_allclose(row.sum(-1), 1.0, atol=5e-3)  # a distribution over the real tokens
        assert np.all(maps.maps[i, :, :, len(toks):] == 0)  # nothing on padding
        assert toks[0] == "[CLS]" and toks[-1] == "[SEP]"


@pytest.mark.parametrize("family", ["videomae", "vjepa2"])
def test_video_attention_received_per_patch(vit_setup, tmp_path, family):
    from engine.features.extract import extract_attention_job
    from engine.jobs import run_sync
    from tests.engine import test_features_support as S

    ep = vit_setup[0]
    folder = (S.tiny_videomae if family == "videomae" else S.tiny_vjepa2)(tmp_path / family)
    maps = run_sync(extract_attention_job(ep, str(folder), device="cpu", frames_per_window=4, window_s=2.0))
    # 4 frames, tubelet 2 -> 2 time slots of a 4x4 grid; 2 layers, 2 heads.
    assert maps.kind == "video_patches" and maps.maps.shape == (4, 2, 2, 2, 4, 4)
    # Every query row sums to 1, so the mean over queries of the received attention sums to 1.
    np.testing.assert_allclose(maps.maps.astype(np.float32).sum((-3, -2, -1)), 1.0, atol=1e-2)
    np.testing.assert_allclose(maps.rollout.astype(np.float32).sum((-3, -2, -1)), 1.0, atol=1e-2)
    # Heads are averaged when they would not leave room for enough TRs.
    per_tr_all = (2 * 2 + 1) * 32 * 2
    small = run_sync(extract_attention_job(ep, str(folder), device="cpu", frames_per_window=4, window_s=2.0,
                                           max_mb=3 * per_tr_all / 2 ** 20))
    assert small.meta["heads"] == "mean" and small.maps.shape[2] == 1 and len(small.tr_indices) == 4
