"""Joint image-text models (CLIP): image embeddings of the frames, text embeddings of the words.

Per TR: ``frames_per_window`` frames of the window go through the image tower (the
projected, L2-normalised ``image_embeds``, averaged over frames); the words of the window
(at most ``context_words`` of them, the latest) go through the text tower (``text_embeds``).
Outputs: ``vision.embeds``, ``text.embeds``, ``similarity`` (their cosine, one column)
and, per requested layer, ``vision.layerNN`` (patch mean or CLS) and ``text.layerNN``
(mean over the text's tokens). Ablations: ``vision`` = mid-grey frames, ``text`` = the
empty string.
"""

from __future__ import annotations

from typing import Any, Dict

import numpy as np

from .base import EpisodeInputs, layer_name, resolve_layers
from .hf import (FrameSource, HFExtractor, ImagePreprocessor, _words_arrays, load_model, pool_tokens,
                 set_offline, window_frame_times)

__all__ = ["CLIPJointExtractor"]


class CLIPJointExtractor(HFExtractor):
    inputs = ("vision", "text")
    modality = "multimodal"

    def load(self) -> None:
        set_offline()
        from transformers import AutoTokenizer, CLIPModel

        self.model = load_model(CLIPModel, self.folder, self.spec, self.device, self.dtype,
                                attn="eager" if self.attention else "sdpa")
        self.config = self.model.config
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.folder), local_files_only=True)
        self.preprocess = ImagePreprocessor.from_folder(self.folder, self.config.vision_config)
        self.n_blocks = int(self.config.vision_config.num_hidden_layers)
        n_text = int(self.config.text_config.num_hidden_layers)
        self.vision_layers = resolve_layers(self.spec.layers, self.n_blocks)
        self.text_layers = resolve_layers(self.spec.layers, n_text)
        self.layers = (["vision.embeds", "text.embeds", "similarity"]
                       + [layer_name(i, "vision") for i in self.vision_layers]
                       + [layer_name(i, "text") for i in self.text_layers])
        self.max_tokens = int(self.config.text_config.max_position_embeddings)
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else (self.tokenizer.eos_token_id or 0))
        self.n_frames = int(self.spec.frames_per_window)

    def bytes_per_item(self) -> float:
        h, w = self.preprocess.out_hw
        patch = int(self.config.vision_config.patch_size)
        n_tokens = (h // patch) * (w // patch) + 1
        elem = 2 if self.device.startswith("cuda") else 4
        return 12.0 * (self.n_frames * n_tokens + self.max_tokens) * self.config.vision_config.hidden_size * elem * 4

    def open_sources(self, episode: EpisodeInputs, ablate: str) -> Dict[str, Any]:
        onsets, tokens = _words_arrays(None if ablate == "text" else episode.words)
        return {"frames": FrameSource(episode.video_path, blank=(ablate == "vision"), threads=self.decode_threads),
                "onsets": onsets, "tokens": tokens}

    def prepare(self, sources, episode, tr_indices, ablate) -> Dict[str, np.ndarray]:
        windows = episode.windows_s(self.spec.window_s, tr_indices)
        frames = sources["frames"].frames(window_frame_times(windows, self.n_frames))
        texts = []
        onsets, tokens = sources["onsets"], sources["tokens"]
        for a, b in windows:
            inside = [t for o, t in zip(onsets, tokens) if a <= o < b]
            texts.append(" ".join(inside[-self.spec.context_words:]))
        enc = self.tokenizer(texts, padding="max_length", truncation=True, max_length=self.max_tokens,
                             return_tensors="np")
        return {"pixels": self.prepare_pixels(frames), "input_ids": enc["input_ids"].astype(np.int64),
                "attention_mask": enc["attention_mask"].astype(np.int64)}

    def forward(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        import torch

        pixels = batch["pixels"]
        n, f = pixels.shape[:2]
        x = self.pixels_to_device(pixels.reshape((n * f,) + pixels.shape[2:]))
        used = max(1, int(batch["attention_mask"].sum(1).max()))
        ids = self.to_device(batch["input_ids"][:, :used], float_dtype=False)
        att = self.to_device(batch["attention_mask"][:, :used], float_dtype=False)
        with torch.inference_mode():
            out = self.model(input_ids=ids, attention_mask=att, pixel_values=x, output_hidden_states=True)
        image = out.image_embeds.float().reshape(n, f, -1).mean(1)  # n, d_proj
        text = out.text_embeds.float()  # n, d_proj
        cos = torch.nn.functional.cosine_similarity(image, text, dim=1)[:, None]
        result = {"vision.embeds": image.cpu().numpy(), "text.embeds": text.cpu().numpy(),
                  "similarity": cos.cpu().numpy()}
        vh = out.vision_model_output.hidden_states
        for i in self.vision_layers:
            hs = vh[i][:, 1:] if self.spec.pooling == "mean" else vh[i]
            pooled = pool_tokens(hs, None, "cls" if self.spec.pooling == "cls" else "mean")
            result[layer_name(i, "vision")] = pooled.reshape(n, f, -1).mean(1).cpu().numpy()
        th = out.text_model_output.hidden_states
        for i in self.text_layers:
            result[layer_name(i, "text")] = pool_tokens(th[i], att, "mean").cpu().numpy()
        return {k: v.astype(np.float32) for k, v in result.items()}
