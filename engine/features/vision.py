"""Vision extractors: image transformers on frames, video transformers on clips.

Image models (CLIP vision tower, ViT, and any ``AutoModel`` taking ``pixel_values`` with a
CLS token) see ``frames_per_window`` frames spread evenly over each TR's window; token
states are pooled within a frame (``mean`` over patches, or the ``cls`` token) and then
averaged over the frames. Video models (VideoMAE, V-JEPA 2) see those frames as one clip;
their tokens are pooled by ``mean`` (they have no CLS token).
"""

from __future__ import annotations

from typing import Any, Dict

import numpy as np

from ..errors import ConfigError
from .base import EpisodeInputs
from .hf import FrameSource, HFExtractor, ImagePreprocessor, load_model, pool_tokens, window_frame_times

__all__ = ["ImageExtractor", "VideoExtractor"]

_IMAGE_CLASSES = {
    "clip": "CLIPVisionModel",
    "vit": "ViTModel",
    "siglip": "SiglipVisionModel",
    "dinov2": "Dinov2Model",
    "auto_image": "AutoModel",
}
_VIDEO_CLASSES = {
    "videomae": "VideoMAEModel",
    "vjepa2": "VJEPA2Model",
}


def _model_class(name: str):
    import transformers

    return getattr(transformers, name)


class ImageExtractor(HFExtractor):
    """Per-frame image transformer; features averaged over the frames of each window."""

    inputs = ("vision",)
    modality = "vision"

    def load(self) -> None:
        cls = _model_class(_IMAGE_CLASSES.get(self.spec.family, "AutoModel"))
        extra = {"add_pooling_layer": False} if self.spec.family == "vit" else {}
        self.model = load_model(cls, self.folder, self.spec, self.device, self.dtype,
                                attn="eager" if self.attention else "sdpa", **extra)
        self.config = self.model.config
        self.preprocess = ImagePreprocessor.from_folder(self.folder, self.config)
        self.n_blocks = int(self.config.num_hidden_layers)
        self.use_layers(self.n_blocks)
        # SigLIP has no CLS token; CLIP/ViT/DINOv2 put it first.
        self.has_cls = self.spec.family not in ("siglip",)
        if self.spec.pooling == "cls" and not self.has_cls:
            raise ConfigError(f"pooling of {self.spec.name!r}: this model has no CLS token; "
                              f"expected mean or last, found cls")
        self.n_frames = int(self.spec.frames_per_window)

    def bytes_per_item(self) -> float:
        h, w = self.preprocess.out_hw
        patch = int(getattr(self.config, "patch_size", 16))
        n_tokens = (h // patch) * (w // patch) + 1
        elem = 2 if self.device.startswith("cuda") else 4
        return 12.0 * self.n_frames * n_tokens * self.config.hidden_size * elem * 4

    def open_sources(self, episode: EpisodeInputs, ablate: str) -> Dict[str, Any]:
        return {"frames": FrameSource(episode.video_path, blank=(ablate == "vision"), threads=self.decode_threads)}

    def frame_times(self, episode: EpisodeInputs, tr_indices: np.ndarray) -> np.ndarray:
        """``(n, n_frames)`` seconds of the frames each TR sees."""
        return window_frame_times(episode.windows_s(self.spec.window_s, tr_indices), self.n_frames)

    def prepare(self, sources, episode, tr_indices, ablate) -> np.ndarray:
        frames = sources["frames"].frames(self.frame_times(episode, tr_indices))  # n, F, H, W, 3
        return self.prepare_pixels(frames)  # n, F, 3, h, w float32 (CPU) or n, F, h, w, 3 uint8 (GPU)

    def forward(self, pixels: np.ndarray) -> Dict[str, np.ndarray]:
        import torch

        n, f = pixels.shape[:2]
        x = self.pixels_to_device(pixels.reshape((n * f,) + pixels.shape[2:]))
        with torch.inference_mode():
            out = self.model(pixel_values=x, output_hidden_states=True)
        result = {}
        for i, name in zip(self.layer_indices, self.layers):
            hs = out.hidden_states[i]  # n*f, n_tokens, d
            if self.spec.pooling == "mean" and self.has_cls:
                hs = hs[:, 1:]  # patches only
            pooled = pool_tokens(hs, None, self.spec.pooling)  # n*f, d
            result[name] = pooled.reshape(n, f, -1).mean(1).float().cpu().numpy()
        return result

    # -- attention for the overlay --------------------------------------------------------
    def attention_forward(self, pixels: np.ndarray):
        """Per-layer attentions of one frame per TR: list of ``(n, heads, tokens, tokens)``."""
        import torch

        if not self.attention:
            raise ConfigError("attention: expected an extractor built with attention=True, found False")
        x = self.to_device(pixels)
        with torch.inference_mode():
            out = self.model(pixel_values=x, output_attentions=True)
        if not out.attentions or out.attentions[0] is None:
            raise ConfigError(f"attention of {self.spec.name!r}: expected attention maps, found none "
                              f"(the model must run with eager attention)")
        return [a.float().cpu().numpy() for a in out.attentions]

    @property
    def grid_hw(self):
        patch = int(getattr(self.config, "patch_size", 16))
        h, w = self.preprocess.out_hw
        return h // patch, w // patch


class VideoExtractor(HFExtractor):
    """Video transformer on a clip of the frames of each window (VideoMAE, V-JEPA 2)."""

    inputs = ("vision",)
    modality = "vision"

    def load(self) -> None:
        cls = _model_class(_VIDEO_CLASSES[self.spec.family])
        self.model = load_model(cls, self.folder, self.spec, self.device, self.dtype,
                                attn="eager" if self.attention else "sdpa")
        self.config = self.model.config
        self.preprocess = ImagePreprocessor.from_folder(self.folder, self.config)
        self.n_blocks = int(self.config.num_hidden_layers)
        self.use_layers(self.n_blocks)
        if self.spec.pooling == "cls":
            raise ConfigError(f"pooling of {self.spec.name!r}: video models have no CLS token; "
                              f"expected mean or last, found cls")
        tubelet = int(getattr(self.config, "tubelet_size", 1))
        if self.spec.family == "videomae":
            self.n_frames = int(self.config.num_frames)  # fixed by its position embeddings
        else:
            self.n_frames = int(np.ceil(self.spec.frames_per_window / tubelet) * tubelet)

    def bytes_per_item(self) -> float:
        h, w = self.preprocess.out_hw
        patch = int(getattr(self.config, "patch_size", 16))
        tubelet = int(getattr(self.config, "tubelet_size", 1))
        n_tokens = (h // patch) * (w // patch) * max(1, self.n_frames // tubelet)
        elem = 2 if self.device.startswith("cuda") else 4
        return 12.0 * n_tokens * self.config.hidden_size * elem * 4

    def open_sources(self, episode, ablate):
        return {"frames": FrameSource(episode.video_path, blank=(ablate == "vision"), threads=self.decode_threads)}

    def prepare(self, sources, episode, tr_indices, ablate) -> np.ndarray:
        times = window_frame_times(episode.windows_s(self.spec.window_s, tr_indices), self.n_frames)
        return self.prepare_pixels(sources["frames"].frames(times))  # n, T, 3, h, w (or n, T, h, w, 3 uint8)

    def forward(self, clips: np.ndarray) -> Dict[str, np.ndarray]:
        import torch

        x = self.pixels_to_device(clips)
        with torch.inference_mode():
            if self.spec.family == "vjepa2":
                out = self.model(pixel_values_videos=x, skip_predictor=True, output_hidden_states=True)
            else:
                out = self.model(pixel_values=x, output_hidden_states=True)
        hidden = out.hidden_states
        result = {}
        for i, name in zip(self.layer_indices, self.layers):
            result[name] = pool_tokens(hidden[i], None, self.spec.pooling).float().cpu().numpy()
        return result
