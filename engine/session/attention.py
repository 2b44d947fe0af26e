"""The attention source: attention files registered in the project, read per kept TR.

``project.extra["attention"]`` maps a name to a file written by
:func:`engine.features.attention.save_attention` (or to ``{"path": ..., "episode": ...}`` to
tie it to one episode). :class:`AttentionSource` loads each file once, answers "what did the
model attend to at ``t_s``" through the session's time base, and caches the coloured overlay.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

from ..errors import ConfigError, DataError, expected_found
from ..project import Episode, Project
from .colour import blend, heatmap_frame

__all__ = ["AttentionSource"]


class AttentionSource:
    """Attention maps of one episode.

    Parameters
    ----------
    project : Project
    episode : Episode
    tr_index : callable
        ``tr_index(t_s) -> int``: the TR being acquired at ``t_s`` (the session's time base).
    """

    def __init__(self, project: Project, episode: Episode, tr_index: Callable[[float], int]) -> None:
        self.project = project
        self.episode = episode
        self._tr_index = tr_index
        self._maps: Dict[str, object] = {}          # name -> AttentionMaps (loaded on first use)
        self._cache: "OrderedDict[tuple, tuple]" = OrderedDict()

    def registry(self) -> Dict[str, str]:
        """Name -> relative path of the attention files registered for this episode."""
        reg = (self.project.extra or {}).get("attention") or {}
        if not isinstance(reg, dict):
            raise ConfigError(f"project extra['attention']: expected a mapping name -> file, "
                              f"found {type(reg).__name__}")
        out = {}
        for name, value in reg.items():
            if isinstance(value, dict):
                if value.get("episode") not in (None, self.episode.name):
                    continue   # another episode's attention
                value = value.get("path")
            if not isinstance(value, str) or not value:
                raise ConfigError(expected_found(f"project extra['attention'][{name!r}]",
                                                 "a relative file path (or {'path': ..., 'episode': ...})",
                                                 repr(value)))
            out[str(name)] = value
        return out

    def names(self) -> List[str]:
        """Attention files registered in ``project.extra["attention"]`` for this episode."""
        return list(self.registry())

    def maps(self, name: str):
        """The :class:`~engine.features.base.AttentionMaps` registered as ``name`` (loaded once)."""
        if name not in self._maps:
            names = self.names()
            if name not in names:
                raise DataError(expected_found("attention file", f"one of {names}", repr(name)))
            path = self.project.path(self.registry()[name])
            if path is None or not Path(path).exists():
                raise DataError(expected_found(f"attention file {name!r}", f"{path} to exist", "nothing there"))
            from ..features.attention import load_attention

            maps = load_attention(path)
            if maps.kind not in ("patches", "tokens", "video_patches"):
                raise DataError(expected_found(f"attention {name!r} kind", "patches, tokens or video_patches",
                                               repr(maps.kind)))
            if maps.kind == "tokens" and len(maps.meta.get("tokens", [])) != len(maps.tr_indices):
                raise DataError(expected_found(f"attention {name!r} tokens", f"one list per kept TR "
                                               f"({len(maps.tr_indices)})", len(maps.meta.get("tokens", []))))
            self._maps[name] = maps
        return self._maps[name]

    def kind(self, name: str) -> str:
        """``"patches"`` (a map over the frame) or ``"tokens"`` (weights over words)."""
        kind = self.maps(name).kind
        return "patches" if kind == "video_patches" else kind

    def layers(self, name: str) -> List[str]:
        """``"rollout"`` then the layer names, as :meth:`at` takes them."""
        return ["rollout"] + [str(x) for x in self.maps(name).layers]

    def heads(self, name: str) -> int:
        """Heads kept per layer (1 when the file kept only their mean)."""
        return int(self.maps(name).maps.shape[2])

    def tr(self, name: str, t_s: float) -> Optional[int]:
        """The kept TR whose attention is shown at ``t_s``: the nearest kept TR at or before
        the TR being acquired then; None before the first kept one."""
        kept = np.asarray(self.maps(name).tr_indices)
        pos = int(np.searchsorted(kept, self._tr_index(t_s), side="right")) - 1
        return None if pos < 0 else int(kept[pos])

    def at(self, name: str, t_s: float, layer="rollout", head="mean"):
        """Attention shown at ``t_s``: (values, tokens).

        ``values`` is ``(grid_h, grid_w)`` float32 for image models (time slots of video models
        averaged) or ``(n_tokens,)`` for language models, None before the first kept TR;
        ``tokens`` the context's tokens for language models (else None). ``layer`` is
        ``"rollout"``, a layer name or its 1-based number; ``head`` "mean" or a 0-based index.
        """
        maps = self.maps(name)
        tr = self.tr(name, t_s)
        if tr is None:
            return None, None
        layer_i = self._layer(maps, layer)
        head_i = self._head(maps, head, layer_i)
        key = (name, tr, layer_i, head_i)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        pos = int(np.searchsorted(np.asarray(maps.tr_indices), tr))
        if layer_i is None:
            values = np.asarray(maps.rollout[pos], dtype=np.float32)
        else:
            per_head = np.asarray(maps.maps[pos, layer_i], dtype=np.float32)   # n_heads, ...
            values = per_head.mean(0) if head_i is None else per_head[head_i]
        if maps.kind == "video_patches":
            values = values.mean(0)   # n_time_slots, gh, gw -> gh, gw
        tokens = None
        if maps.kind == "tokens":
            tokens = [str(t) for t in maps.meta["tokens"][pos]]
            values = values[: len(tokens)]   # maps are padded to the longest context
        out = (np.ascontiguousarray(values, dtype=np.float32), tokens)
        self._remember(key, out, 256)
        return out

    def overlay(self, frame_rgb: np.ndarray, name: str, t_s: float, layer="rollout", head="mean",
                opacity: float = 0.5) -> np.ndarray:
        """``frame_rgb`` (H, W, 3) uint8 with the patch attention at ``t_s`` blended over it.

        The coloured, upsampled map is cached per (file, kept TR, layer, head, frame size), so
        scrubbing within a TR only blends. The frame itself is returned for token attention or
        before the first kept TR.
        """
        values, tokens = self.at(name, t_s, layer, head)
        if values is None or tokens is not None:
            return frame_rgb
        maps = self.maps(name)
        layer_i = self._layer(maps, layer)
        key = ("heat", name, self.tr(name, t_s), layer_i, self._head(maps, head, layer_i),
               tuple(frame_rgb.shape[:2]))
        heat = self._cache.get(key)
        if heat is None:
            heat = heatmap_frame(values, frame_rgb.shape[:2])   # H, W, 3 uint8
            self._remember(key, heat, 64)
        return blend(np.ascontiguousarray(frame_rgb[..., :3]), heat, opacity)

    def _remember(self, key, value, limit: int) -> None:
        self._cache[key] = value
        while len(self._cache) > limit:
            self._cache.popitem(last=False)

    @staticmethod
    def _layer(maps, layer) -> Optional[int]:
        names = [str(x) for x in maps.layers]
        if layer is None or layer == "rollout":
            return None
        if isinstance(layer, (int, np.integer)) and 1 <= int(layer) <= len(names):
            return int(layer) - 1
        if str(layer) in names:
            return names.index(str(layer))
        raise ConfigError(f"attention layer: got {layer!r}. Supported values are: rollout, "
                          f"{', '.join(names)} (or 1..{len(names)})")

    @staticmethod
    def _head(maps, head, layer_i) -> Optional[int]:
        if head is None or head == "mean" or layer_i is None:
            return None
        n = int(maps.maps.shape[2])
        if maps.meta.get("heads") == "mean" or not isinstance(head, (int, np.integer)) or not 0 <= int(head) < n:
            raise ConfigError(expected_found("attention head", "'mean'" + (f" or 0..{n - 1}"
                                             if maps.meta.get("heads") != "mean" else " (this file kept only "
                                             "the mean over heads)"), repr(head)))
        return int(head)
