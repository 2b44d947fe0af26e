"""Audio extractors: Wav2Vec2-style models on the waveform, the Whisper encoder on log-mels.

Each TR's window (``window_s`` seconds ending at the TR's end, zero-padded before the
recording starts) is fed to the model; the frame states of every requested layer are
pooled (``mean`` over frames, or the ``last`` frame). The ``audio`` ablation feeds
silence.
"""

from __future__ import annotations

from typing import Any, Dict

import numpy as np

from .base import EpisodeInputs
from .hf import AudioSource, HFExtractor, load_model, pool_tokens, read_json, set_offline

__all__ = ["WaveformExtractor", "WhisperExtractor"]


class WaveformExtractor(HFExtractor):
    """Wav2Vec2, HuBERT, WavLM (``AutoModel`` on ``input_values`` at 16 kHz)."""

    inputs = ("audio",)
    modality = "audio"

    def load(self) -> None:
        from transformers import AutoModel

        self.model = load_model(AutoModel, self.folder, self.spec, self.device, self.dtype,
                                attn="eager" if self.attention else "sdpa")
        self.config = self.model.config
        pp = read_json(self.folder / "preprocessor_config.json")
        self.sr = int(pp.get("sampling_rate", 16000))
        self.normalize = bool(pp.get("do_normalize", True))
        self.use_layers(self.config.num_hidden_layers, pooling_without_cls=True)

    def bytes_per_item(self) -> float:
        n_frames = self.spec.window_s * 50
        elem = 2 if self.device.startswith("cuda") else 4
        return 16.0 * (n_frames * self.config.hidden_size + self.spec.window_s * self.sr * 8) * elem * 4

    def open_sources(self, episode: EpisodeInputs, ablate: str) -> Dict[str, Any]:
        return {"audio": AudioSource(episode.audio_source, sr=self.sr, silent=(ablate == "audio"))}

    def prepare(self, sources, episode, tr_indices, ablate) -> np.ndarray:
        windows = episode.windows_s(self.spec.window_s, tr_indices)
        wav = np.stack([sources["audio"].window(a, b) for a, b in windows])  # n, n_samples
        n = int(round(self.spec.window_s * self.sr))
        wav = wav[:, :n] if wav.shape[1] >= n else np.pad(wav, ((0, 0), (0, n - wav.shape[1])))
        if self.normalize:  # as Wav2Vec2FeatureExtractor: zero mean, unit variance per window
            wav = (wav - wav.mean(1, keepdims=True)) / np.sqrt(wav.var(1, keepdims=True) + 1e-7)
        return wav.astype(np.float32)

    def forward(self, wav: np.ndarray) -> Dict[str, np.ndarray]:
        import torch

        x = self.to_device(wav)
        with torch.inference_mode():
            out = self.model(input_values=x, output_hidden_states=True)
        return {name: pool_tokens(out.hidden_states[i], None, self.spec.pooling).float().cpu().numpy()
                for i, name in zip(self.layer_indices, self.layers)}


class WhisperExtractor(HFExtractor):
    """Whisper's encoder. Windows are padded to Whisper's input length; only the encoder
    positions covering the window's audio are pooled (not the padding).

    Option ``context_s`` (``ModelSpec.options``): the encoder hears that many seconds of
    audio up to the TR's end (at most Whisper's 30 s), and the positions of the last
    ``window_s`` seconds are pooled, so they carry what came before (like the language
    models' word context). Default: the window alone."""

    inputs = ("audio",)
    modality = "audio"

    def load(self) -> None:
        set_offline()
        from transformers import WhisperFeatureExtractor, WhisperModel

        self.feature_extractor = WhisperFeatureExtractor.from_pretrained(str(self.folder), local_files_only=True)
        model = load_model(WhisperModel, self.folder, self.spec, self.device, self.dtype,
                           attn="eager" if self.attention else "sdpa")
        self.model = model.get_encoder()
        self.config = model.config
        self.sr = int(self.feature_extractor.sampling_rate)
        self.use_layers(self.config.encoder_layers, pooling_without_cls=True)
        self.max_samples = int(self.feature_extractor.n_samples)

    def bytes_per_item(self) -> float:
        elem = 2 if self.device.startswith("cuda") else 4
        return 16.0 * self.config.max_source_positions * self.config.d_model * elem * 4

    def open_sources(self, episode, ablate):
        return {"audio": AudioSource(episode.audio_source, sr=self.sr, silent=(ablate == "audio"))}

    def prepare(self, sources, episode, tr_indices, ablate) -> Dict[str, np.ndarray]:
        context_s = max(float(self.spec.option("context_s", self.spec.window_s)), self.spec.window_s)
        ends_s = episode.windows_s(self.spec.window_s, tr_indices)[:, 1]
        hop = int(self.feature_extractor.hop_length)
        n_pos = self.config.max_source_positions
        n_window = int(round(self.spec.window_s * self.sr))
        waves, masks = [], np.zeros((len(ends_s), n_pos), np.float32)
        for i, end_s in enumerate(ends_s):
            w = sources["audio"].window(end_s - context_s, end_s)
            w = w[-self.max_samples:]  # keep the end: the window ends at the TR's end
            waves.append(w)
            stop = max(1, min(n_pos, int(np.ceil(len(w) / hop / 2))))  # positions holding audio
            start = max(0, stop - max(1, int(np.ceil(min(n_window, len(w)) / hop / 2))))
            masks[i, start:stop] = 1  # the window's positions (the last ones)
        feats = self.feature_extractor(waves, sampling_rate=self.sr, return_tensors="np")["input_features"]
        return {"input_features": feats.astype(np.float32), "mask": masks}

    def forward(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        import torch

        x = self.to_device(batch["input_features"])
        mask = torch.from_numpy(batch["mask"]).to(self.device)
        with torch.inference_mode():
            out = self.model(input_features=x, output_hidden_states=True)
        return {name: pool_tokens(out.hidden_states[i], mask, self.spec.pooling).float().cpu().numpy()
                for i, name in zip(self.layer_indices, self.layers)}


class FeatureAudioExtractor(HFExtractor):
    """Models fed by their own feature extractor (filter banks), e.g. W2V-BERT 2.0
    (``Wav2Vec2BertModel`` + ``SeamlessM4TFeatureExtractor``), TRIBE's audio model.
    Frames are pooled by ``mean`` (over the frames the attention mask keeps) or ``last``."""

    inputs = ("audio",)
    modality = "audio"

    def load(self) -> None:
        set_offline()
        from transformers import AutoFeatureExtractor, AutoModel

        self.feature_extractor = AutoFeatureExtractor.from_pretrained(
            str(self.folder), local_files_only=True, trust_remote_code=bool(self.spec.trust_remote_code))
        self.model = load_model(AutoModel, self.folder, self.spec, self.device, self.dtype,
                                attn="eager" if self.attention else "sdpa")
        self.config = self.model.config
        self.sr = int(getattr(self.feature_extractor, "sampling_rate", 16000))
        self.use_layers(self.config.num_hidden_layers, pooling_without_cls=True)

    def bytes_per_item(self) -> float:
        elem = 2 if self.device.startswith("cuda") else 4
        return 16.0 * self.spec.window_s * 50 * self.config.hidden_size * elem * 4

    def open_sources(self, episode, ablate):
        return {"audio": AudioSource(episode.audio_source, sr=self.sr, silent=(ablate == "audio"))}

    def prepare(self, sources, episode, tr_indices, ablate) -> Dict[str, np.ndarray]:
        windows = episode.windows_s(self.spec.window_s, tr_indices)
        n = int(round(self.spec.window_s * self.sr))
        waves = []
        for a, b in windows:
            w = sources["audio"].window(a, b)
            waves.append(w[:n] if len(w) >= n else np.pad(w, (0, n - len(w))))
        enc = self.feature_extractor(waves, sampling_rate=self.sr, return_tensors="np", padding=True,
                                     return_attention_mask=True)
        main = "input_features" if "input_features" in enc else "input_values"
        mask = enc.get("attention_mask")
        if mask is None:
            mask = np.ones(enc[main].shape[:2], np.int64)
        return {main: enc[main].astype(np.float32), "attention_mask": np.asarray(mask, np.int64)}

    def forward(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        import torch

        main = "input_features" if "input_features" in batch else "input_values"
        x = self.to_device(batch[main])
        att = self.to_device(batch["attention_mask"], float_dtype=False)
        with torch.inference_mode():
            out = self.model(**{main: x}, attention_mask=att, output_hidden_states=True)
        result = {}
        for i, name in zip(self.layer_indices, self.layers):
            hs = out.hidden_states[i]
            mask = att if hs.shape[1] == att.shape[1] else None  # frames = feature frames for W2V-BERT
            result[name] = pool_tokens(hs, mask, self.spec.pooling).float().cpu().numpy()
        return result
