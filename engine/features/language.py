"""Language extractors: encoder (BERT, MiniLM) and causal (GPT-2, Llama) models.

For each TR the model reads a *sliding context*: the words with onset before the TR's
end, the last ``context_words`` of them, joined by spaces. The states of the tokens of
the words inside the TR's window (onset in ``[end - window_s, end)``) are pooled:
``mean`` over those tokens, ``last`` token, or ``cls`` (the model's first token, e.g.
BERT's [CLS], which sees the whole context). A TR whose window holds no word gives a row
of zeros (no speech), the usual choice for the encoding models.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

import numpy as np

from .base import EpisodeInputs
from .hf import HFExtractor, _words_arrays, context_words, load_model, pool_tokens, set_offline

__all__ = ["LanguageExtractor", "tokenize_context"]


def tokenize_context(tokenizer, context: List[str], n_in_window: int, max_tokens: int
                     ) -> Tuple[np.ndarray, np.ndarray]:
    """Token ids of ``context`` and a mask of the tokens of its last ``n_in_window`` words.

    Words are dropped from the front until the tokens fit in ``max_tokens``.

    Returns
    -------
    ids : ndarray, (n_tokens,) int64
    window_mask : ndarray, (n_tokens,) float32
        1 for tokens overlapping the window's words (special tokens excluded).
    """
    words = list(context)
    while True:
        text = " ".join(words)
        window_start = len(" ".join(words[:len(words) - n_in_window]))
        if n_in_window and len(words) > n_in_window:
            window_start += 1  # the space before the first window word
        enc = tokenizer(text, return_offsets_mapping=True, return_special_tokens_mask=True,
                        add_special_tokens=True)
        ids = np.asarray(enc["input_ids"], dtype=np.int64)
        if len(ids) <= max_tokens or len(words) <= max(n_in_window, 1):
            break
        overflow = len(ids) - max_tokens
        words = words[max(1, min(overflow // 2, len(words) - n_in_window - 1)):]
    if len(ids) > max_tokens:  # the window alone is too long: keep its last tokens
        keep = slice(len(ids) - max_tokens, len(ids))
    else:
        keep = slice(0, len(ids))
    offsets = np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2)
    special = np.asarray(enc["special_tokens_mask"], dtype=bool)
    mask = (~special) & (offsets[:, 1] > window_start) & (offsets[:, 1] > offsets[:, 0])
    if n_in_window == 0:
        mask[:] = False
    return ids[keep], mask[keep].astype(np.float32)


class LanguageExtractor(HFExtractor):
    """Any ``AutoModel`` text model with a fast tokenizer (BERT family, GPT-2, Llama...)."""

    inputs = ("text",)
    modality = "language"

    def load(self) -> None:
        set_offline()
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(
            str(self.folder), local_files_only=True, trust_remote_code=bool(self.spec.trust_remote_code))
        if not getattr(self.tokenizer, "is_fast", False):
            from ..errors import ModelNotFoundError

            raise ModelNotFoundError(f"tokenizer of {self.spec.name!r}: expected a fast tokenizer "
                                     f"(tokenizer.json), found a slow one in {self.folder}")
        self.model = load_model(AutoModel, self.folder, self.spec, self.device, self.dtype,
                                attn="eager" if self.attention else "sdpa")
        self.config = self.model.config
        text_cfg = getattr(self.config, "text_config", None) or self.config
        self.n_blocks = int(text_cfg.num_hidden_layers)
        self.use_layers(self.n_blocks)
        max_pos = getattr(text_cfg, "max_position_embeddings", None) or getattr(text_cfg, "n_positions", 512)
        self.max_tokens = int(min(max_pos, int(self.spec.option("max_tokens", 4096))))
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else (self.tokenizer.eos_token_id or 0))
        self._words = None

    def bytes_per_item(self) -> float:
        n_tokens = min(self.max_tokens, int(self.spec.context_words * 1.5) + 4)
        elem = 2 if self.device.startswith("cuda") else 4
        d = self.config.hidden_size if hasattr(self.config, "hidden_size") else 1024
        return 16.0 * n_tokens * d * elem * 4

    def open_sources(self, episode: EpisodeInputs, ablate: str) -> Dict[str, Any]:
        if ablate == "text" or episode.words is None:
            return {"onsets": np.zeros(0), "tokens": []}
        onsets, tokens = _words_arrays(episode.words)
        return {"onsets": onsets, "tokens": tokens}

    def prepare(self, sources, episode, tr_indices, ablate) -> Dict[str, np.ndarray]:
        windows = episode.windows_s(self.spec.window_s, tr_indices)
        seqs, masks = [], []
        for start_s, end_s in windows:
            ctx, n_in = context_words(sources["onsets"], sources["tokens"], start_s, end_s,
                                      self.spec.context_words)
            ids, mask = tokenize_context(self.tokenizer, ctx, n_in, self.max_tokens)
            seqs.append(ids)
            masks.append(mask)
        length = max(1, max(len(s) for s in seqs))
        n = len(seqs)
        input_ids = np.full((n, length), self.pad_id, np.int64)
        attention = np.zeros((n, length), np.int64)
        window = np.zeros((n, length), np.float32)
        for i, (s, m) in enumerate(zip(seqs, masks)):
            input_ids[i, :len(s)] = s
            attention[i, :len(s)] = 1
            window[i, :len(s)] = m
        return {"input_ids": input_ids, "attention_mask": attention, "window_mask": window}

    def forward(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        import torch

        ids = self.to_device(batch["input_ids"], float_dtype=False)
        att = self.to_device(batch["attention_mask"], float_dtype=False)
        window = torch.from_numpy(batch["window_mask"]).to(self.device)
        # Trim the padding every row of this sub-batch shares (the batch may be split on OOM).
        used = int(batch["attention_mask"].sum(1).max()) if len(batch["attention_mask"]) else 1
        ids, att, window = ids[:, :max(used, 1)], att[:, :max(used, 1)], window[:, :max(used, 1)]
        with torch.inference_mode():
            out = self.model(input_ids=ids, attention_mask=att, output_hidden_states=True)
        result = {}
        for i, name in zip(self.layer_indices, self.layers):
            pooled = pool_tokens(out.hidden_states[i], window, self.spec.pooling)
            if self.spec.pooling == "cls":  # the first token sees the context; zero when no words
                pooled = out.hidden_states[i][:, 0].float() * (window.sum(1) > 0)[:, None].float()
            result[name] = pooled.float().cpu().numpy()
        return result
