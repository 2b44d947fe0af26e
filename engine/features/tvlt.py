"""TVLT, the Textless Vision-Language Transformer (Tang, Cho, Nie & Bansal, NeurIPS 2022).

TVLT reads raw video frames and an audio spectrogram (no text, no speech recognition)
with one transformer over both. It was removed from transformers 5 (last shipped in
4.57.6); this module provides it in plain PyTorch so that a user's checkpoint (e.g.
``ZinengTang/tvlt-base`` downloaded earlier, safetensors or ``pytorch_model.bin``) loads
with ``strict=True`` under the ORIGINAL Hugging Face weight names
(``pixel_embeddings.*``, ``audio_embeddings.*``, ``encoder.layer.N.*``, ``cls_embedding``,
``layernorm.*``; a ``TvltForPreTraining`` checkpoint's ``tvlt.`` prefix is stripped and its
decoders/heads are ignored).

What is here
------------
- :class:`TvltConfig`: the fields of transformers' ``TvltConfig`` read from ``config.json``.
- :func:`tvlt_audio_values`: the log-mel spectrogram exactly as ``TvltFeatureExtractor``
  computed it (44.1 kHz, 2048-point FFT, hop 512, 128 Slaney mel bands, dB scaled to [-1, 1]).
- :func:`tvlt_pixel_values`: frames as ``TvltImageProcessor`` prepared them (shortest edge
  224 with Pillow's bilinear filter, centre crop 224x224, scaled to [-1, 1]).
- :func:`build_tvlt_model` / :func:`load_tvlt`: the encoder, eager attention (attention maps)
  or PyTorch's fused attention.
- :class:`TvltExtractor`: per-TR features for :mod:`engine.features.extract`: the frames and
  the audio of each TR's window, pooled token states per layer, attention maps, and the
  modality ablations (blank video, silent audio).

All three pieces were checked against transformers 4.57.6 (to 1e-5) with the fixture made by
``tests/engine/fixtures/make_tvlt_reference.py``.

torch is imported inside functions only.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, Generator, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import ConfigError, DataError, ModelNotFoundError
from ..jobs import CancelToken, Progress
from .base import AttentionMaps, EpisodeInputs, check_ablation, layer_name, resolve_layers
from .hf import AudioSource, FrameSource, HFExtractor, episode_tr_indices, pool_tokens, window_frame_times

__all__ = [
    "TvltConfig", "TvltPreprocessing", "tvlt_audio_values", "tvlt_pixel_values",
    "tvlt_mel_filters", "build_tvlt_model", "load_tvlt", "load_tvlt_state_dict", "TvltExtractor",
    "TVLTExtractor", "resolve_model_folder", "attention_rollout",
]


# --------------------------------------------------------------------------- configuration

@dataclass
class TvltConfig:
    """The architecture of a TVLT model (the fields of transformers' ``TvltConfig``).

    Defaults are those of ``ZinengTang/tvlt-base``. Decoder and pre-training fields are
    kept so a config round-trips, but only the encoder is built here.
    """

    image_size: int = 224
    spectrogram_length: int = 2048
    frequency_length: int = 128
    image_patch_size: Tuple[int, int] = (16, 16)
    audio_patch_size: Tuple[int, int] = (16, 16)
    num_image_channels: int = 3
    num_audio_channels: int = 1
    num_frames: int = 8
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-6
    qkv_bias: bool = True
    use_mean_pooling: bool = False
    decoder_num_attention_heads: int = 16
    decoder_hidden_size: int = 512
    decoder_num_hidden_layers: int = 8
    decoder_intermediate_size: int = 2048
    pixel_mask_ratio: float = 0.75
    audio_mask_ratio: float = 0.15
    audio_mask_type: str = "frame-level"
    task_matching: bool = True
    task_mae: bool = True
    loss_type: str = "classification"
    architectures: Tuple[str, ...] = ()
    extra: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.image_patch_size = _pair(self.image_patch_size, "image_patch_size")
        self.audio_patch_size = _pair(self.audio_patch_size, "audio_patch_size")
        self.architectures = tuple(self.architectures or ())
        if isinstance(self.image_size, (list, tuple)):
            if len(set(self.image_size)) != 1:
                raise ConfigError(f"TVLT image_size: expected a square size, found {self.image_size}")
            self.image_size = int(self.image_size[0])
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(f"TVLT hidden_size: expected a multiple of num_attention_heads "
                              f"({self.num_attention_heads}), found {self.hidden_size}")
        if self.hidden_act not in _ACTIVATIONS:
            raise ConfigError(f"TVLT hidden_act: got {self.hidden_act!r}. "
                              f"Supported values are: {', '.join(sorted(_ACTIVATIONS))}")
        if self.image_size % self.image_patch_size[0] or self.image_size % self.image_patch_size[1]:
            raise ConfigError(f"TVLT image_size: expected a multiple of the patch size "
                              f"{self.image_patch_size}, found {self.image_size}")
        if self.frequency_length % self.audio_patch_size[1]:
            raise ConfigError(f"TVLT frequency_length: expected a multiple of the audio patch width "
                              f"{self.audio_patch_size[1]}, found {self.frequency_length}")

    # derived sizes
    @property
    def num_patches_per_image(self) -> int:
        return (self.image_size // self.image_patch_size[0]) * (self.image_size // self.image_patch_size[1])

    @property
    def image_grid(self) -> Tuple[int, int]:
        return self.image_size // self.image_patch_size[0], self.image_size // self.image_patch_size[1]

    @property
    def num_freq_patches(self) -> int:
        return self.frequency_length // self.audio_patch_size[1]

    @property
    def max_time_patches(self) -> int:
        return self.spectrogram_length // self.audio_patch_size[0]

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "TvltConfig":
        """Build from a ``config.json`` dictionary; unknown keys are kept in ``extra``."""
        model_type = d.get("model_type", "tvlt")
        if model_type != "tvlt":
            raise ConfigError(f"TVLT config: expected model_type 'tvlt', found {model_type!r}")
        names = {f.name for f in fields(cls)} - {"extra"}
        known = {k: v for k, v in d.items() if k in names}
        extra = {k: v for k, v in d.items() if k not in names and k != "model_type"}
        return cls(**known, extra=extra)

    @classmethod
    def from_folder(cls, folder) -> "TvltConfig":
        """Read ``config.json`` in ``folder``."""
        path = Path(folder) / "config.json"
        if not path.is_file():
            raise DataError(f"TVLT checkpoint {folder}: expected a config.json, found none")
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: expected JSON, found unreadable text ({exc})") from exc
        return cls.from_dict(d)

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        extra = d.pop("extra")
        d["image_patch_size"] = list(self.image_patch_size)
        d["audio_patch_size"] = list(self.audio_patch_size)
        d["architectures"] = list(self.architectures)
        d["model_type"] = "tvlt"
        return {**extra, **d}


def _pair(value, what: str) -> Tuple[int, int]:
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    value = tuple(int(v) for v in value)
    if len(value) != 2:
        raise ConfigError(f"TVLT {what}: expected two integers, found {value}")
    return value


# --------------------------------------------------------------------------- preprocessing

IMAGENET_STANDARD_MEAN = (0.5, 0.5, 0.5)
IMAGENET_STANDARD_STD = (0.5, 0.5, 0.5)


@dataclass
class TvltPreprocessing:
    """Settings of ``TvltImageProcessor`` and ``TvltFeatureExtractor`` for one checkpoint.

    Read from ``preprocessor_config.json`` where present (either processor's keys), else the
    processors' defaults sized by the model config.
    """

    shortest_edge: Optional[int] = 224
    resize_hw: Optional[Tuple[int, int]] = None
    crop_hw: Optional[Tuple[int, int]] = (224, 224)
    resample: int = 2  # PIL bilinear
    rescale_factor: float = 1 / 255
    image_mean: Tuple[float, ...] = IMAGENET_STANDARD_MEAN
    image_std: Tuple[float, ...] = IMAGENET_STANDARD_STD
    do_resize: bool = True
    do_center_crop: bool = True
    do_rescale: bool = True
    do_normalize: bool = True
    sampling_rate: int = 44100
    n_fft: int = 2048
    hop_length_to_sampling_rate: int = 86
    feature_size: int = 128
    spectrogram_length: int = 2048
    audio_patch_size: Tuple[int, int] = (16, 16)
    padding_value: float = 0.0

    @property
    def hop_length(self) -> int:
        return self.sampling_rate // self.hop_length_to_sampling_rate

    @classmethod
    def for_config(cls, config: TvltConfig, pp: Optional[Dict[str, Any]] = None) -> "TvltPreprocessing":
        pp = dict(pp or {})
        s = cls(shortest_edge=config.image_size, crop_hw=(config.image_size, config.image_size),
                feature_size=config.frequency_length, spectrogram_length=config.spectrogram_length,
                audio_patch_size=config.audio_patch_size)
        size = pp.get("size")
        if isinstance(size, dict) and "shortest_edge" in size:
            s.shortest_edge, s.resize_hw = int(size["shortest_edge"]), None
        elif isinstance(size, dict) and "height" in size:
            s.shortest_edge, s.resize_hw = None, (int(size["height"]), int(size["width"]))
        elif isinstance(size, int):
            s.shortest_edge, s.resize_hw = int(size), None
        crop = pp.get("crop_size")
        if isinstance(crop, dict):
            s.crop_hw = (int(crop["height"]), int(crop["width"]))
        elif isinstance(crop, int):
            s.crop_hw = (crop, crop)
        for key in ("resample", "rescale_factor", "do_resize", "do_center_crop", "do_rescale", "do_normalize",
                    "sampling_rate", "n_fft", "hop_length_to_sampling_rate", "feature_size",
                    "spectrogram_length", "padding_value"):
            if key in pp:
                setattr(s, key, type(getattr(s, key))(pp[key]))
        if "image_mean" in pp:
            s.image_mean = tuple(np.broadcast_to(np.asarray(pp["image_mean"], float), (3,)))
        if "image_std" in pp:
            s.image_std = tuple(np.broadcast_to(np.asarray(pp["image_std"], float), (3,)))
        if pp.get("feature_extractor_type") == "TvltFeatureExtractor" and "patch_size" in pp:
            s.audio_patch_size = _pair(pp["patch_size"], "patch_size")
        if s.feature_size != config.frequency_length:
            raise ConfigError(f"TVLT preprocessor feature_size: expected the model's frequency_length "
                              f"{config.frequency_length}, found {s.feature_size}")
        out_hw = s.crop_hw if s.do_center_crop else (s.resize_hw or (s.shortest_edge, s.shortest_edge))
        if tuple(out_hw) != (config.image_size, config.image_size):
            raise ConfigError(f"TVLT image size: expected frames of {config.image_size}x{config.image_size} "
                              f"for this model, found a preprocessor giving {out_hw[0]}x{out_hw[1]}")
        return s

    @classmethod
    def from_folder(cls, folder, config: TvltConfig) -> "TvltPreprocessing":
        pp: Dict[str, Any] = {}
        for name in ("preprocessor_config.json", "feature_extractor_config.json"):
            path = Path(folder) / name
            if path.is_file():
                try:
                    pp.update(json.loads(path.read_text()))
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}: expected JSON, found unreadable text ({exc})") from exc
        return cls.for_config(config, pp)


# Slaney mel scale (as librosa and transformers.audio_utils define it)
def _hz_to_mel_slaney(f_hz: np.ndarray) -> np.ndarray:
    f_hz = np.asarray(f_hz, dtype=float)
    mels = 3.0 * f_hz / 200.0
    log_region = f_hz >= 1000.0
    mels = np.where(log_region, 15.0 + np.log(np.maximum(f_hz, 1e-12) / 1000.0) * (27.0 / np.log(6.4)), mels)
    return mels


def _mel_to_hz_slaney(mels: np.ndarray) -> np.ndarray:
    mels = np.asarray(mels, dtype=float)
    f_hz = 200.0 * mels / 3.0
    log_region = mels >= 15.0
    return np.where(log_region, 1000.0 * np.exp(np.log(6.4) / 27.0 * (mels - 15.0)), f_hz)


def tvlt_mel_filters(sampling_rate: int = 44100, n_fft: int = 2048, n_mels: int = 128,
                     fmax_hz: float = 22050.0) -> np.ndarray:
    """Slaney-normalised triangular mel filters on the Slaney scale, ``(n_fft // 2 + 1, n_mels)``.

    TvltFeatureExtractor fixes the upper edge at 22050 Hz whatever the sampling rate.
    """
    mel_freqs = np.linspace(_hz_to_mel_slaney(0.0), _hz_to_mel_slaney(fmax_hz), n_mels + 2)
    filter_hz = _mel_to_hz_slaney(mel_freqs)
    fft_hz = np.linspace(0, sampling_rate // 2, n_fft // 2 + 1)
    diff = np.diff(filter_hz)
    slopes = filter_hz[None, :] - fft_hz[:, None]  # n_bins, n_mels + 2
    down = -slopes[:, :-2] / diff[:-1]
    up = slopes[:, 2:] / diff[1:]
    filters = np.maximum(np.zeros(1), np.minimum(down, up))
    filters *= (2.0 / (filter_hz[2:n_mels + 2] - filter_hz[:n_mels]))[None, :]
    return filters


@functools.lru_cache(maxsize=4)
def _cached_mel_filters(sampling_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    return tvlt_mel_filters(sampling_rate, n_fft, n_mels)


def _log_mel(waveform: np.ndarray, s: TvltPreprocessing, chunk_frames: int = 512) -> np.ndarray:
    """``TvltFeatureExtractor._np_extract_fbank_features``: (feature_size, n_frames - 1) float32."""
    n_fft, hop = s.n_fft, s.hop_length
    x = np.asarray(waveform, dtype=np.float32).reshape(-1)
    if x.size <= n_fft // 2:
        raise DataError(f"TVLT audio window: expected more than {n_fft // 2} samples "
                        f"({(n_fft // 2) / s.sampling_rate:.3f} s at {s.sampling_rate} Hz), found {x.size}")
    x = np.pad(x, (n_fft // 2, n_fft // 2), mode="reflect").astype(np.float64)
    window = np.hanning(n_fft + 1)[:-1]  # periodic Hann, float64
    n_frames = int(1 + np.floor((x.size - n_fft) / hop))
    mel_t = _cached_mel_filters(s.sampling_rate, n_fft, s.feature_size).T  # n_mels, n_bins
    mel = np.empty((s.feature_size, n_frames), dtype=np.float64)
    for start in range(0, n_frames, chunk_frames):
        stop = min(n_frames, start + chunk_frames)
        idx = (np.arange(start, stop) * hop)[:, None] + np.arange(n_fft)[None, :]
        spec = np.fft.rfft(x[idx] * window, axis=1).astype(np.complex64)  # frames, n_bins
        power = np.abs(spec, dtype=np.float64) ** 2.0
        mel[:, start:stop] = np.dot(mel_t, power.T)
    mel = np.maximum(1e-10, mel)
    db = 10.0 * (np.log10(np.clip(mel, 1e-10, None)) - np.log10(1.0))
    db = np.clip(db, db.max() - 80.0, None).astype(np.float32)
    db = db[:, :-1] - 20.0
    return np.clip(db / 40.0, -2.0, 0.0) + 1.0


def tvlt_audio_values(waveforms, settings: Optional[TvltPreprocessing] = None
                      ) -> Tuple[np.ndarray, np.ndarray]:
    """Audio spectrograms as ``TvltFeatureExtractor`` made them.

    Parameters
    ----------
    waveforms : (n_samples,) array or list of them
        Mono waveforms at ``settings.sampling_rate`` (44100 Hz for ZinengTang/tvlt-base).
    settings : TvltPreprocessing, optional
        Defaults to the processor defaults.

    Returns
    -------
    audio_values : (batch, 1, n_time, feature_size) float32
        Log-mel spectrogram scaled to [-1, 1], time padded with ``padding_value`` to a
        multiple of the patch height (16 frames).
    audio_mask : (batch, n_audio_patches) float32
        1 for patches holding audio, 0 for padding.
    """
    s = settings or TvltPreprocessing()
    if isinstance(waveforms, np.ndarray) and waveforms.ndim == 1:
        waveforms = [waveforms]
    feats = [_log_mel(w, s).T[: s.spectrogram_length] for w in waveforms]  # each n_time, n_mels
    freq_len = s.feature_size // s.audio_patch_size[1]
    patch_t = s.audio_patch_size[0]
    n_patches = [math.ceil(f.shape[0] / patch_t) * freq_len for f in feats]
    max_patches = max(n_patches)
    mask = np.array([[1.0] * n + [0.0] * (max_patches - n) for n in n_patches], dtype=np.float32)
    max_time = max_patches // freq_len * patch_t
    values = np.full((len(feats), 1, max_time, s.feature_size), s.padding_value, dtype=np.float32)
    for i, f in enumerate(feats):
        values[i, 0, : f.shape[0]] = f
    return values, mask


def _resize_hw(h: int, w: int, s: TvltPreprocessing) -> Tuple[int, int]:
    if s.resize_hw is not None:
        return s.resize_hw
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = s.shortest_edge, int(s.shortest_edge * long / short)
    return (new_long, new_short) if w <= h else (new_short, new_long)


def _center_crop(img: np.ndarray, crop_hw: Tuple[int, int]) -> np.ndarray:
    """transformers' ``center_crop`` on an (H, W, C) array, zero padding when too small."""
    h, w = img.shape[:2]
    ch, cw = crop_hw
    top, left = (h - ch) // 2, (w - cw) // 2
    if top >= 0 and left >= 0 and top + ch <= h and left + cw <= w:
        return img[top:top + ch, left:left + cw]
    nh, nw = max(ch, h), max(cw, w)
    padded = np.zeros((nh, nw) + img.shape[2:], dtype=img.dtype)
    tp, lp = math.ceil((nh - h) / 2), math.ceil((nw - w) / 2)
    padded[tp:tp + h, lp:lp + w] = img
    top, left = top + tp, left + lp
    return padded[max(0, top):min(nh, top + ch), max(0, left):min(nw, left + cw)]


def _preprocess_frame(rgb: np.ndarray, s: TvltPreprocessing) -> np.ndarray:
    """One (H, W, 3) uint8 frame -> (3, h, w) float32, as ``TvltImageProcessor`` does."""
    img = np.asarray(rgb)
    if img.ndim != 3 or img.shape[2] != 3:
        raise DataError(f"TVLT frame: expected an (H, W, 3) RGB array, found shape {img.shape}")
    if img.dtype != np.uint8:
        raise DataError(f"TVLT frame: expected uint8 pixels (0..255), found {img.dtype}")
    if s.do_resize:
        from PIL import Image

        h, w = _resize_hw(img.shape[0], img.shape[1], s)
        img = np.array(Image.fromarray(np.ascontiguousarray(img)).resize((w, h), resample=s.resample))
    if s.do_center_crop:
        img = _center_crop(img, s.crop_hw)
    out = img.astype(np.float64) * s.rescale_factor if s.do_rescale else img
    out = out.astype(np.float32)
    if s.do_normalize:
        out = (out - np.asarray(s.image_mean, np.float32)) / np.asarray(s.image_std, np.float32)
    return out.transpose(2, 0, 1)


def tvlt_pixel_values(videos, settings: Optional[TvltPreprocessing] = None, patch_size: int = 16,
                      max_frames: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Video frames as ``TvltImageProcessor`` prepared them.

    Parameters
    ----------
    videos : (n_frames, H, W, 3) uint8 array, or a list of them (a batch)
        RGB frames.
    settings : TvltPreprocessing, optional
    patch_size : int
        The model's image patch size (for the mask).
    max_frames : int, optional
        The model's ``num_frames``: more frames raise :class:`ConfigError`.

    Returns
    -------
    pixel_values : (batch, n_frames, 3, h, w) float32
    pixel_mask : (batch, n_frames * patches_per_frame) float32
        1 for real frames, 0 for the padding of shorter videos in a batch.
    """
    s = settings or TvltPreprocessing()
    if isinstance(videos, np.ndarray) and videos.ndim == 4:
        videos = [videos]
    lengths = [len(v) for v in videos]
    if max_frames is not None and max(lengths) > max_frames:
        raise ConfigError(f"TVLT frames per window: expected at most {max_frames} (the model's num_frames), "
                          f"found {max(lengths)}")
    edge = s.shortest_edge if s.shortest_edge is not None else s.crop_hw[0]
    per_frame = (edge // patch_size) ** 2  # as the processor counts them
    n_max = max(lengths)
    mask = np.array([[1.0] * (n * per_frame) + [0.0] * ((n_max - n) * per_frame) for n in lengths], np.float32)
    processed = [np.stack([_preprocess_frame(f, s) for f in v]) for v in videos]
    shape = processed[0].shape[1:]
    values = np.zeros((len(videos), n_max) + shape, np.float32)
    for i, p in enumerate(processed):
        values[i, : len(p)] = p
    return values, mask


# --------------------------------------------------------------------------- the model

_ACTIVATIONS = {"gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "silu", "swish", "quick_gelu", "gelu_fast"}


def _activation(name: str):
    import torch
    import torch.nn.functional as F

    if name == "gelu":
        return F.gelu
    if name in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
        return functools.partial(F.gelu, approximate="tanh")
    if name == "relu":
        return F.relu
    if name in ("silu", "swish"):
        return F.silu
    if name == "quick_gelu":
        return lambda x: x * torch.sigmoid(1.702 * x)
    raise ConfigError(f"TVLT hidden_act: got {name!r}. Supported values are: {', '.join(sorted(_ACTIVATIONS))}")


@functools.lru_cache(maxsize=1)
def _torch_modules():
    """The encoder's modules; module and attribute names are transformers' (state-dict keys)."""
    import torch
    from torch import nn

    class PixelPatchEmbeddings(nn.Module):
        def __init__(self, c: TvltConfig):
            super().__init__()
            self.num_patches_per_image = c.num_patches_per_image
            self.hidden_size = c.hidden_size
            self.projection = nn.Conv2d(c.num_image_channels, c.hidden_size, kernel_size=c.image_patch_size,
                                        stride=c.image_patch_size)

        def forward(self, pixel_values):
            b, f, ch, h, w = pixel_values.shape
            x = self.projection(pixel_values.reshape(b * f, ch, h, w)).flatten(2).transpose(1, 2)
            return x.reshape(b, f * self.num_patches_per_image, self.hidden_size)

    class AudioPatchEmbeddings(nn.Module):
        def __init__(self, c: TvltConfig):
            super().__init__()
            self.projection = nn.Conv2d(c.num_audio_channels, c.hidden_size, kernel_size=c.audio_patch_size,
                                        stride=c.audio_patch_size)

        def forward(self, audio_values):
            return self.projection(audio_values).flatten(2).transpose(1, 2)

    class PixelEmbeddings(nn.Module):
        def __init__(self, c: TvltConfig):
            super().__init__()
            self.patch_embeddings = PixelPatchEmbeddings(c)
            self.num_patches_per_image = c.num_patches_per_image
            self.type_embed_v = nn.Parameter(torch.zeros(1, 1, c.hidden_size))
            self.temporal_embed = nn.Parameter(torch.zeros(1, c.num_frames, c.hidden_size))
            self.pos_embed_v = nn.Parameter(torch.zeros(1, c.num_patches_per_image, c.hidden_size))

        def forward(self, pixel_values):
            n_frames = pixel_values.shape[1]
            x = self.patch_embeddings(pixel_values)
            x = x + self.pos_embed_v.repeat(1, n_frames, 1)
            x = x + torch.repeat_interleave(self.temporal_embed[:, :n_frames], self.num_patches_per_image, dim=1)
            return x + self.type_embed_v

    class AudioEmbeddings(nn.Module):
        def __init__(self, c: TvltConfig):
            super().__init__()
            self.patch_embeddings = AudioPatchEmbeddings(c)
            self.num_freq_patches = c.num_freq_patches
            self.type_embed_a = nn.Parameter(torch.zeros(1, 1, c.hidden_size))
            self.pos_embed_a = nn.Parameter(torch.zeros(1, c.max_time_patches, c.hidden_size))
            self.freq_embed = nn.Parameter(torch.zeros(1, c.num_freq_patches, c.hidden_size))

        def forward(self, audio_values):
            x = self.patch_embeddings(audio_values)
            n_time = x.shape[1] // self.num_freq_patches
            x = x + self.freq_embed.repeat(1, n_time, 1)
            x = x + torch.repeat_interleave(self.pos_embed_a[:, :n_time], self.num_freq_patches, dim=1)
            return x + self.type_embed_a

    class SelfAttention(nn.Module):
        def __init__(self, c: TvltConfig):
            super().__init__()
            self.num_attention_heads = c.num_attention_heads
            self.attention_head_size = c.hidden_size // c.num_attention_heads
            self.query = nn.Linear(c.hidden_size, c.hidden_size, bias=c.qkv_bias)
            self.key = nn.Linear(c.hidden_size, c.hidden_size, bias=c.qkv_bias)
            self.value = nn.Linear(c.hidden_size, c.hidden_size, bias=c.qkv_bias)

        def _heads(self, x):
            b, n, _ = x.shape
            return x.view(b, n, self.num_attention_heads, self.attention_head_size).permute(0, 2, 1, 3)

        def forward(self, x, additive_mask=None, output_attentions=False):
            q, k, v = self._heads(self.query(x)), self._heads(self.key(x)), self._heads(self.value(x))
            if output_attentions:
                scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.attention_head_size)
                if additive_mask is not None:
                    scores = scores + additive_mask
                probs = torch.softmax(scores, dim=-1)  # b, heads, n, n
                context = torch.matmul(probs, v)
            else:
                probs = None
                context = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=additive_mask)
            b, _, n, _ = context.shape
            return context.permute(0, 2, 1, 3).reshape(b, n, -1), probs

    class SelfOutput(nn.Module):
        def __init__(self, c: TvltConfig):
            super().__init__()
            self.dense = nn.Linear(c.hidden_size, c.hidden_size)

        def forward(self, x):
            return self.dense(x)

    class Attention(nn.Module):
        def __init__(self, c: TvltConfig):
            super().__init__()
            self.attention = SelfAttention(c)
            self.output = SelfOutput(c)

        def forward(self, x, additive_mask=None, output_attentions=False):
            context, probs = self.attention(x, additive_mask, output_attentions)
            return self.output(context), probs

    class Intermediate(nn.Module):
        def __init__(self, c: TvltConfig):
            super().__init__()
            self.dense = nn.Linear(c.hidden_size, c.intermediate_size)
            self.act = _activation(c.hidden_act)

        def forward(self, x):
            return self.act(self.dense(x))

    class Output(nn.Module):
        def __init__(self, c: TvltConfig):
            super().__init__()
            self.dense = nn.Linear(c.intermediate_size, c.hidden_size)

        def forward(self, x, residual):
            return self.dense(x) + residual

    class Layer(nn.Module):
        """Pre-norm block (timm's ``Block``)."""

        def __init__(self, c: TvltConfig):
            super().__init__()
            self.attention = Attention(c)
            self.intermediate = Intermediate(c)
            self.output = Output(c)
            self.layernorm_before = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
            self.layernorm_after = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

        def forward(self, x, additive_mask=None, output_attentions=False):
            attended, probs = self.attention(self.layernorm_before(x), additive_mask, output_attentions)
            x = attended + x
            return self.output(self.intermediate(self.layernorm_after(x)), x), probs

    class Encoder(nn.Module):
        def __init__(self, c: TvltConfig):
            super().__init__()
            self.layer = nn.ModuleList([Layer(c) for _ in range(c.num_hidden_layers)])

    class TvltEncoderModel(nn.Module):
        """TVLT's encoder (transformers' ``TvltModel``): CLS + video patches + audio patches.

        ``forward`` returns a dict: ``last_hidden_state`` (after the final LayerNorm),
        ``last_pixel_hidden_state``, ``last_audio_hidden_state``, ``hidden_states`` (tuple of
        ``num_hidden_layers + 1``: embeddings, then each block's output, before the final
        LayerNorm), ``attentions`` (tuple of ``(B, heads, T, T)``, eager) when asked.
        """

        def __init__(self, c: TvltConfig):
            super().__init__()
            self.config = c
            self.pixel_embeddings = PixelEmbeddings(c)
            self.audio_embeddings = AudioEmbeddings(c)
            self.encoder = Encoder(c)
            self.cls_embedding = nn.Parameter(torch.zeros(1, 1, c.hidden_size))
            self.layernorm = None if c.use_mean_pooling else nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

        def forward(self, pixel_values, audio_values, pixel_mask=None, audio_mask=None,
                    output_attentions: bool = False, output_hidden_states: bool = False):
            c = self.config
            if pixel_values.ndim != 5 or pixel_values.shape[2] != c.num_image_channels \
                    or tuple(pixel_values.shape[-2:]) != (c.image_size, c.image_size):
                raise DataError(f"TVLT pixel_values: expected (batch, frames, {c.num_image_channels}, "
                                f"{c.image_size}, {c.image_size}), found {tuple(pixel_values.shape)}")
            if pixel_values.shape[1] > c.num_frames:
                raise DataError(f"TVLT pixel_values: expected at most {c.num_frames} frames, "
                                f"found {pixel_values.shape[1]}")
            if audio_values.ndim != 4 or audio_values.shape[1] != c.num_audio_channels \
                    or audio_values.shape[3] != c.frequency_length or audio_values.shape[2] > c.spectrogram_length:
                raise DataError(f"TVLT audio_values: expected (batch, {c.num_audio_channels}, <= "
                                f"{c.spectrogram_length}, {c.frequency_length}), found {tuple(audio_values.shape)}")
            pixel_x = self.pixel_embeddings(pixel_values)
            audio_x = self.audio_embeddings(audio_values)
            b = pixel_values.shape[0]
            x = torch.cat([self.cls_embedding.repeat(b, 1, 1), pixel_x, audio_x], 1)
            additive = None
            if pixel_mask is not None and audio_mask is not None:
                mask = torch.cat([pixel_mask[:, :1], pixel_mask, audio_mask], 1).to(x.dtype)
                additive = (1.0 - mask[:, None, None, :]) * torch.finfo(x.dtype).min
            hidden, attentions = [], []
            for layer in self.encoder.layer:
                if output_hidden_states:
                    hidden.append(x)
                x, probs = layer(x, additive, output_attentions)
                if output_attentions:
                    attentions.append(probs)
            if output_hidden_states:
                hidden.append(x)
            out = self.layernorm(x) if self.layernorm is not None else x
            n_pix = pixel_x.shape[1]
            return {
                "last_hidden_state": out,
                "last_pixel_hidden_state": out[:, 1:1 + n_pix],
                "last_audio_hidden_state": out[:, 1 + n_pix:],
                "hidden_states": tuple(hidden) if output_hidden_states else None,
                "attentions": tuple(attentions) if output_attentions else None,
            }

    return TvltEncoderModel


def build_tvlt_model(config: TvltConfig):
    """An uninitialised (zero embeddings, default layers) TVLT encoder for ``config``, in eval mode."""
    return _torch_modules()(config).eval()


def _weight_files(folder: Path) -> List[Path]:
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = folder / index_name
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError) as exc:
                raise DataError(f"{index}: expected a weight_map, found unreadable content ({exc})") from exc
            return [folder / name for name in sorted(set(weight_map.values()))]
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return [folder / name]
    found = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    raise DataError(f"TVLT checkpoint {folder}: expected model.safetensors or pytorch_model.bin, "
                    f"found {found or 'nothing'}")


def load_tvlt_state_dict(folder) -> Tuple[Dict[str, Any], List[str]]:
    """Read a checkpoint's tensors and keep the encoder's (``TvltModel``) keys.

    Returns
    -------
    state_dict : dict of str -> tensor
        Keys as in transformers' ``TvltModel.state_dict()``.
    ignored : list of str
        Keys of a ``TvltForPreTraining``/task checkpoint outside the encoder (decoders, heads).
    """
    import torch

    folder = Path(folder)
    raw: Dict[str, Any] = {}
    for path in _weight_files(folder):
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            raw.update(load_file(str(path)))
        else:
            raw.update(torch.load(str(path), map_location="cpu", weights_only=True))
    if any(k.startswith("tvlt.") for k in raw):
        state = {k[len("tvlt."):]: v for k, v in raw.items() if k.startswith("tvlt.")}
        ignored = sorted(k for k in raw if not k.startswith("tvlt."))
    else:
        state, ignored = raw, []
    return state, ignored


def resolve_model_folder(model: str, revision: Optional[str] = None) -> Path:
    """A local folder for ``model``: a folder path, or a hub id already in the offline cache."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if path.is_file():
        return path.parent
    import os

    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(model), revision=revision, local_files_only=True))
    except Exception as exc:  # noqa: BLE001 - any hub error means "not available offline"
        raise ModelNotFoundError(f"TVLT model {model!r}: expected a local folder or a copy in the Hugging Face "
                                 f"cache (downloads are off), found neither ({type(exc).__name__})") from exc


def load_tvlt(model, device: str = "cpu", dtype=None):
    """Load a TVLT checkpoint (transformers layout) into the pure-PyTorch encoder.

    Parameters
    ----------
    model : str or Path
        A checkpoint folder (config.json + model.safetensors or pytorch_model.bin), or a hub
        id present in the offline cache.
    device : str
    dtype : torch.dtype, optional
        Defaults to float32.

    Returns
    -------
    model : torch.nn.Module
        The encoder in eval mode, weights loaded with ``strict=True``.
    config : TvltConfig
    info : dict
        ``folder``, ``ignored_keys`` (decoder/heads of a pre-training checkpoint),
        ``weights_fingerprint`` (sha256 of the names, sizes and first and last MiB of the weight files).

    Raises
    ------
    ModelNotFoundError, DataError
        No such checkpoint; weights whose names or shapes do not match the config.
    """
    import torch

    folder = resolve_model_folder(str(model))
    config = TvltConfig.from_folder(folder)
    net = build_tvlt_model(config)
    state, ignored = load_tvlt_state_dict(folder)
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise DataError(f"TVLT checkpoint {folder}: expected the weights of transformers' TvltModel, found "
                        f"{len(missing)} missing (e.g. {missing[:3]}) and {len(unexpected)} unexpected "
                        f"(e.g. {unexpected[:3]})")
    bad = [(k, tuple(state[k].shape), tuple(v.shape)) for k, v in expected.items() if state[k].shape != v.shape]
    if bad:
        k, found, want = bad[0]
        raise DataError(f"TVLT checkpoint {folder}: weight {k} expected shape {want} (from config.json), "
                        f"found {found} ({len(bad)} mismatched)")
    net.load_state_dict(state, strict=True)
    net = net.to(device=device, dtype=dtype or torch.float32).eval()
    digest = hashlib.sha256()
    for path in _weight_files(folder):
        stat = path.stat()
        digest.update(f"{path.name}:{stat.st_size}:".encode())
        with open(path, "rb") as fh:  # first and last MiB: cheap, and changes with the weights
            digest.update(fh.read(1 << 20))
            if stat.st_size > 2 << 20:
                fh.seek(-(1 << 20), 2)
                digest.update(fh.read(1 << 20))
    return net, config, {"folder": str(folder), "ignored_keys": ignored, "weights_fingerprint": digest.hexdigest()}



# --------------------------------------------------------------------------- the extractor

def attention_rollout(attentions: Sequence[np.ndarray]) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema 2020) through all layers.

    Parameters
    ----------
    attentions : sequence of (batch, heads, tokens, tokens) arrays, first layer first

    Returns
    -------
    (batch, tokens, tokens) float32
        Row ``i``: how much each input token flows into token ``i`` at the top, counting the
        residual path as half of every layer (heads averaged, rows renormalised).
    """
    rollout = None
    for a in attentions:
        a = np.asarray(a, dtype=np.float64).mean(axis=1)  # batch, tokens, tokens
        a = 0.5 * a + 0.5 * np.eye(a.shape[-1])[None]
        a /= a.sum(axis=-1, keepdims=True)
        rollout = a if rollout is None else a @ rollout
    return rollout.astype(np.float32)


class TvltExtractor(HFExtractor):
    """TVLT features per TR: the frames and the audio of each TR's window, one transformer.

    For TR ``k`` the window is ``spec.window_s`` seconds ending at the end of the TR. The
    model sees ``spec.frames_per_window`` frames spread evenly over the window (at most the
    checkpoint's ``num_frames``, 8 for tvlt-base) and the log-mel spectrogram of the
    window's audio (resampled to 44.1 kHz; at most ``spectrogram_length`` frames, 23.8 s).

    Layers are hidden states (0 = embeddings, ``num_hidden_layers`` = last block, before
    the final LayerNorm) pooled over the video and audio tokens by ``spec.pooling``
    (``mean``; ``cls`` takes the CLS token). With the option ``split_modalities=True``
    each layer also gives ``video.layerNN`` and ``audio.layerNN``: the mean of the video
    patch tokens and of the audio patch tokens alone.

    Ablations (``ablate=``): ``"vision"`` feeds mid-grey frames, ``"audio"`` silence.
    """

    inputs = ("vision", "audio")
    modality = "multimodal"

    @classmethod
    def from_spec(cls, spec, device: str = "auto", folder=None, **kwargs) -> "TvltExtractor":
        """Build from a spec; ``folder`` defaults to resolving ``spec.model`` offline."""
        folder = Path(folder) if folder is not None else resolve_model_folder(spec.model, spec.revision)
        return cls(spec, folder, device=device, **kwargs)

    def load(self) -> None:
        self.model, self.config, info = load_tvlt(self.folder, device=self.device, dtype=self.dtype)
        self.identity.setdefault("weights_fingerprint", info["weights_fingerprint"])
        self.ignored_keys = info["ignored_keys"]
        self.settings = TvltPreprocessing.from_folder(self.folder, self.config)
        c, s = self.config, self.settings
        if self.spec.frames_per_window > c.num_frames:
            raise ConfigError(f"frames per window of {self.spec.name!r}: expected at most {c.num_frames} "
                              f"(the model's num_frames), found {self.spec.frames_per_window}")
        self.n_frames = int(self.spec.frames_per_window)
        self.window_samples = int(round(self.spec.window_s * s.sampling_rate))
        n_spec = self.window_samples // s.hop_length  # spectrogram frames the window gives
        if n_spec > c.spectrogram_length:
            longest_s = c.spectrogram_length * s.hop_length / s.sampling_rate
            raise ConfigError(f"stimulus window of {self.spec.name!r}: expected at most {longest_s:.2f} s "
                              f"({c.spectrogram_length} spectrogram frames), found {self.spec.window_s} s")
        if n_spec < s.audio_patch_size[0]:
            shortest_s = s.audio_patch_size[0] * s.hop_length / s.sampling_rate
            raise ConfigError(f"stimulus window of {self.spec.name!r}: expected at least {shortest_s:.2f} s "
                              f"(one audio patch), found {self.spec.window_s} s")
        self.n_blocks = int(c.num_hidden_layers)
        self.layer_indices = resolve_layers(self.spec.layers, self.n_blocks)
        self.split = bool(self.spec.option("split_modalities", False))
        self.layers = []
        for i in self.layer_indices:
            self.layers.append(layer_name(i))
            if self.split:
                self.layers += [layer_name(i, "video"), layer_name(i, "audio")]

    # -- sizes ---------------------------------------------------------------------------
    @property
    def n_video_tokens(self) -> int:
        return self.n_frames * self.config.num_patches_per_image

    @property
    def n_audio_tokens(self) -> int:
        n_time = math.ceil((self.window_samples // self.settings.hop_length) / self.settings.audio_patch_size[0])
        return n_time * self.config.num_freq_patches

    def bytes_per_item(self) -> float:
        n_tokens = 1 + self.n_video_tokens + self.n_audio_tokens
        elem = 2 if self.device.startswith("cuda") else 4
        return 12.0 * n_tokens * self.config.hidden_size * elem * 4

    # -- stimulus ------------------------------------------------------------------------
    def open_sources(self, episode: EpisodeInputs, ablate: str) -> Dict[str, Any]:
        sources: Dict[str, Any] = {"frames": FrameSource(episode.video_path, blank=(ablate == "vision"))}
        try:
            sources["audio"] = AudioSource(episode.audio_source, sr=self.settings.sampling_rate,
                                           silent=(ablate == "audio"))
        except BaseException:
            sources["frames"].close()
            raise
        return sources

    def _audio_window(self, audio, start_s: float) -> np.ndarray:
        """``window_samples`` samples from ``start_s`` (zeros outside the recording or when silent)."""
        a = int(round(start_s * self.settings.sampling_rate))
        out = np.zeros(self.window_samples, np.float32)
        if audio.silent:
            return out
        lo, hi = max(a, 0), min(a + self.window_samples, len(audio.samples))
        if hi > lo:
            out[lo - a:hi - a] = audio.samples[lo:hi]
        return out

    def prepare(self, sources, episode, tr_indices, ablate) -> Dict[str, np.ndarray]:
        windows_s = episode.windows_s(self.spec.window_s, tr_indices)  # n, 2
        times_s = window_frame_times(windows_s, self.n_frames)  # n, n_frames
        frames = sources["frames"].frames(times_s)  # n, n_frames, H, W, 3
        pixels, _ = tvlt_pixel_values(list(frames), self.settings, self.config.image_patch_size[0],
                                      self.config.num_frames)
        # every frame is real; sized by the model's patches (the processor counts them from
        # its resize edge, which differs from the crop when a checkpoint resizes larger)
        pixel_mask = np.ones((len(frames), self.n_video_tokens), np.float32)
        waves = [self._audio_window(sources["audio"], start_s) for start_s in windows_s[:, 0]]
        audio, audio_mask = tvlt_audio_values(waves, self.settings)
        return {"pixel_values": pixels, "audio_values": audio, "pixel_mask": pixel_mask, "audio_mask": audio_mask}

    # -- model ---------------------------------------------------------------------------
    def _run(self, inputs: Dict[str, np.ndarray], output_attentions: bool = False):
        import torch

        with torch.inference_mode():
            return self.model(self.to_device(inputs["pixel_values"]), self.to_device(inputs["audio_values"]),
                              pixel_mask=self.to_device(inputs["pixel_mask"]),
                              audio_mask=self.to_device(inputs["audio_mask"]),
                              output_hidden_states=True, output_attentions=output_attentions)

    def forward(self, inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        import torch

        out = self._run(inputs)
        pixel_mask = self.to_device(inputs["pixel_mask"])
        audio_mask = self.to_device(inputs["audio_mask"])
        n_pix = pixel_mask.shape[1]
        # pooled over the video and audio patches (the CLS token is left out of "mean")
        mask = torch.cat([torch.zeros_like(pixel_mask[:, :1]), pixel_mask, audio_mask], 1)
        result = {}
        for i in self.layer_indices:
            hidden = out["hidden_states"][i]  # n, 1 + n_pix + n_audio, d
            result[layer_name(i)] = pool_tokens(hidden, mask, self.spec.pooling).float().cpu().numpy()
            if self.split:
                video = pool_tokens(hidden[:, 1:1 + n_pix], pixel_mask, "mean")
                audio = pool_tokens(hidden[:, 1 + n_pix:], audio_mask, "mean")
                result[layer_name(i, "video")] = video.float().cpu().numpy()
                result[layer_name(i, "audio")] = audio.float().cpu().numpy()
        return result

    # -- attention for the overlay -------------------------------------------------------
    def token_layout(self) -> Dict[str, Any]:
        """Where the video and audio tokens sit in the sequence (for drawing attention maps)."""
        gh, gw = self.config.image_grid
        n_time = self.n_audio_tokens // self.config.num_freq_patches
        return {"cls": [0, 1], "video": [1, 1 + self.n_video_tokens],
                "audio": [1 + self.n_video_tokens, 1 + self.n_video_tokens + self.n_audio_tokens],
                "video_grid": [self.n_frames, gh, gw], "audio_grid": [n_time, self.config.num_freq_patches],
                "audio_frame_s": self.settings.hop_length / self.settings.sampling_rate,
                "audio_patch_frames": self.settings.audio_patch_size[0]}

    def extract_attention(self, episode: EpisodeInputs, tr_indices: Sequence[int],
                          token: Optional[CancelToken] = None, ablate: str = "none",
                          max_mb: float = 32.0, stream: str = "video") -> Generator[Progress, None, AttentionMaps]:
        """Attention of the CLS token, per layer and head, for the overlay.

        Parameters
        ----------
        stream : {"video", "audio"}
            ``video`` (the image models' convention, ``kind="patches"``): ``maps``
            ``(n_kept, n_layers, n_heads, grid_h, grid_w)`` float16 is the CLS query's
            attention to the patches of the frame closest to each TR's end, ``rollout``
            ``(n_kept, grid_h, grid_w)`` its rollout through all layers.
            ``audio`` (``kind="spectrogram"``): the same for the spectrogram patches of the
            window, ``(..., n_time, n_freq)``; ``meta["audio_frame_s"]`` and
            ``meta["audio_patch_frames"]`` give the time axis.

        Both carry ``meta["modality_share"]``: per layer (``n_layers`` x 3), the CLS row's
        attention mass on [CLS, all video patches, all audio patches], averaged over heads
        and the kept TRs. TRs are subsampled evenly to stay under ``max_mb`` MiB.
        """
        if stream not in ("video", "audio"):
            raise ConfigError(f"attention stream: got {stream!r}. Supported values are: video, audio")
        token = token or CancelToken()
        ablate = check_ablation(ablate, self.inputs)
        idx = episode_tr_indices(episode, tr_indices)
        c = self.config
        layout = self.token_layout()
        v0, v1 = layout["video"]
        a0, a1 = layout["audio"]
        if stream == "video":
            keys = slice(v1 - c.num_patches_per_image, v1)  # the frame closest to the TR's end
            grid = list(c.image_grid)
        else:
            keys = slice(a0, a1)
            grid = list(layout["audio_grid"])
        n_lh = self.n_blocks * c.num_attention_heads
        per_tr = (n_lh + 1) * grid[0] * grid[1] * 2  # float16 bytes
        n_keep = int(max_mb * 2 ** 20 // per_tr)
        if n_keep < 1:
            raise ConfigError(f"attention size budget: expected room for one TR ({per_tr / 2 ** 20:.3f} MiB), "
                              f"found max_mb={max_mb}")
        if n_keep < len(idx):
            idx = idx[np.unique(np.linspace(0, len(idx) - 1, n_keep).round().astype(int))]
        sources = self.open_sources(episode, ablate)
        maps, rolls = [], []
        share = np.zeros((self.n_blocks, 3))
        try:
            batch = max(1, min(self.batch_size, 4))
            for start in range(0, len(idx), batch):
                token.raise_if_cancelled()
                b = idx[start:start + batch]
                out = self._run(self.prepare(sources, episode, b, ablate), output_attentions=True)
                att = [a.float().cpu().numpy() for a in out["attentions"]]  # L x (n, H, T, T)
                rows = np.stack([a[:, :, 0, :] for a in att], 1)  # n, L, H, T
                roll = attention_rollout(att)[:, 0, :]  # n, T
                n = len(b)
                maps.append(rows[..., keys].reshape((n, self.n_blocks, -1) + tuple(grid)).astype(np.float16))
                rolls.append(roll[:, keys].reshape((n,) + tuple(grid)).astype(np.float16))
                share += np.stack([rows[..., 0], rows[..., v0:v1].sum(-1), rows[..., a0:a1].sum(-1)],
                                  -1).mean(2).sum(0)  # L, 3
                yield Progress(min(start + batch, len(idx)), len(idx),
                               f"{self.spec.name}: {stream} attention, TRs {int(b[0])}-{int(b[-1])}")
        finally:
            self.close_sources(sources)
        windows_s = episode.windows_s(self.spec.window_s, idx)
        meta = {"grid": grid, "heads": "all", "query": "cls", "max_mb": max_mb, "model": str(self.spec.model),
                "stream": stream, "layout": layout, "ablate": ablate, "window_s": float(self.spec.window_s),
                "modality_share": (share / len(idx)).round(5).tolist(),
                "modality_share_columns": ["cls", "video", "audio"]}
        if stream == "video":
            meta["frame_times_s"] = window_frame_times(windows_s, self.n_frames)[:, -1].tolist()
        else:
            meta["window_start_s"] = windows_s[:, 0].tolist()
        return AttentionMaps(tr_indices=idx, layers=[layer_name(i) for i in range(1, self.n_blocks + 1)],
                             maps=np.concatenate(maps), rollout=np.concatenate(rolls),
                             kind="patches" if stream == "video" else "spectrogram", meta=meta)


TVLTExtractor = TvltExtractor  # the name the registry looks up
