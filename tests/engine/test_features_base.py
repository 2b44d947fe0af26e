"""Building blocks of feature extraction: layers, windows, pooling, batching, prefetch, preprocessing."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from engine.errors import ConfigError, DataError
from engine.features.base import EpisodeInputs, ModelSpec, resolve_layers, tr_windows
from engine.features.hf import BatchRunner, ImagePreprocessor, context_words, pool_tokens, prefetch


def test_resolve_layers_indices_and_relative_depths():
    # 24 blocks (TRIBE's 0.5/0.75/1.0 of a 24-layer model): hidden states 12, 18, 24.
    assert resolve_layers((0.5, 0.75, 1.0), 24) == [12, 18, 24]
    assert resolve_layers((0, -1, 3), 12) == [0, 12, 3]
    assert resolve_layers((), 2) == [0, 1, 2]
    assert resolve_layers((0.01,), 12) == [1]  # never the embeddings for a depth
    with pytest.raises(ConfigError, match="expected 0..12"):
        resolve_layers((13,), 12)
    with pytest.raises(ConfigError, match=r"\(0, 1\]"):
        resolve_layers((1.5,), 12)


def test_tr_windows_end_at_each_tr_end():
    w = tr_windows(3, 1.5, 3.0, onset_s=2.0)
    np.testing.assert_allclose(w, [[0.5, 3.5], [2.0, 5.0], [3.5, 6.5]])
    w = EpisodeInputs(n_trs=5, tr_s=2.0).windows_s(2.0, [4])
    np.testing.assert_allclose(w, [[8.0, 10.0]])


def test_model_spec_validates_with_supported_values():
    with pytest.raises(ConfigError, match="Supported values are: mean, cls, last"):
        ModelSpec("m", pooling="max")
    with pytest.raises(ConfigError, match="vision, language, audio, multimodal"):
        ModelSpec("m", modality="smell")
    s = ModelSpec("m", options=(("b", 2), ("a", 1)))
    assert s.options == (("a", 1), ("b", 2)) and s.option("b") == 2


def test_context_words_sliding_window():
    onsets = np.array([0.1, 0.5, 1.2, 1.6, 2.9, 3.1])
    tokens = ["a", "b", "c", "d", "e", "f"]
    # TR ending at 3.0 with a 1.5 s window: words before 3.0 are a..e; in the window: d, e.
    ctx, n_in = context_words(onsets, tokens, 1.5, 3.0, max_words=100)
    assert ctx == ["a", "b", "c", "d", "e"] and n_in == 2
    ctx, n_in = context_words(onsets, tokens, 1.5, 3.0, max_words=3)
    assert ctx == ["c", "d", "e"] and n_in == 2
    ctx, n_in = context_words(onsets, tokens, 0.0, 0.05, max_words=3)
    assert ctx == [] and n_in == 0


def test_pool_tokens_matches_numpy():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    h = rng.normal(size=(3, 5, 4)).astype(np.float32)
    m = np.array([[1, 1, 0, 0, 0], [0, 1, 1, 1, 0], [0, 0, 0, 0, 0]], np.float32)
    mean = pool_tokens(torch.from_numpy(h), torch.from_numpy(m), "mean").numpy()
    np.testing.assert_allclose(mean[0], h[0, :2].mean(0), rtol=1e-6)
    np.testing.assert_allclose(mean[1], h[1, 1:4].mean(0), rtol=1e-6)
    np.testing.assert_array_equal(mean[2], 0)  # no token: zeros
    last = pool_tokens(torch.from_numpy(h), torch.from_numpy(m), "last").numpy()
    np.testing.assert_array_equal(last[0], h[0, 1])
    np.testing.assert_array_equal(last[1], h[1, 3])
    cls = pool_tokens(torch.from_numpy(h), None, "cls").numpy()
    np.testing.assert_array_equal(cls, h[:, 0])


def test_batch_runner_halves_on_oom_and_gives_the_same_result():
    calls = []

    def forward(x):
        calls.append(len(x))
        if len(x) > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return {"y": x * 2.0}

    runner = BatchRunner(8)
    x = np.arange(7, dtype=np.float32)[:, None]
    out = runner(forward, x, 7, lambda b, a, z: b[a:z])
    np.testing.assert_array_equal(out["y"], x * 2)
    assert runner.batch_size == 2 and runner.n_halvings == 2
    assert calls[:3] == [7, 4, 2]  # 8 -> 4 -> 2, then pieces of 2
    assert sum(c for c in calls if c <= 2) == 7

    def never_fits(x):
        raise RuntimeError("out of memory")

    with pytest.raises(DataError, match="batch size 1"):
        BatchRunner(4)(never_fits, x, 7, lambda b, a, z: b[a:z])

    def other_error(x):
        raise ValueError("shape mismatch")

    with pytest.raises(ValueError, match="shape mismatch"):
        BatchRunner(4)(other_error, x, 7, lambda b, a, z: b[a:z])


def test_prefetch_keeps_order_runs_ahead_and_reraises():
    produced_on = []

    def items():
        for i in range(6):
            produced_on.append(threading.current_thread().name)
            yield i

    assert list(prefetch(items(), depth=2)) == list(range(6))
    assert set(produced_on) == {"alignscope-prefetch"}

    def broken():
        yield 1
        raise DataError("bad frame")

    got = []
    with pytest.raises(DataError, match="bad frame"):
        for v in prefetch(broken()):
            got.append(v)
    assert got == [1]


def test_image_preprocessor_matches_hf_processor(tmp_path):
    pytest.importorskip("transformers")
    from transformers import CLIPImageProcessor, ViTImageProcessor

    rng = np.random.default_rng(1)
    # Same size as the model input: no resampling, so the result must match to float precision.
    img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path / "vit")
    ours = ImagePreprocessor.from_folder(tmp_path / "vit")(img[None])
    theirs = ViTImageProcessor.from_pretrained(tmp_path / "vit")(images=img, return_tensors="np")["pixel_values"]
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    # CLIP: resize the shortest edge, centre-crop, CLIP mean/std. A 32x48 image -> crop 32x32.
    wide = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        tmp_path / "clip")
    ours = ImagePreprocessor.from_folder(tmp_path / "clip")(wide[None])
    theirs = CLIPImageProcessor.from_pretrained(tmp_path / "clip")(images=wide, return_tensors="np")["pixel_values"]
    assert ours.shape == theirs.shape == (1, 3, 32, 32)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
