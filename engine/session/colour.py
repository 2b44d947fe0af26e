"""Colours and blending, pure numpy: the one home of every colour table the views paint with.

- inferno (perceptually uniform, dark -> bright) for attention heat maps over a frame
  (:func:`heatmap_rgb`, :func:`heatmap_frame`, :func:`blend_heatmap`, :func:`blend`) and
  the shading of words under the video (:func:`token_shading`);
- a thresholded cold-hot map on a grey cortex for brain maps (:class:`MapStyle`,
  :func:`value_colors`, :func:`cortex_background`, :func:`map_rgb`); the cortex view and its
  colour bar paint exactly these colours (``gui.colormaps`` is a view of this module).

OpenCV (``cv2``) is used where installed for resizing and blending (same sampling, ~10x faster
at 720p); numpy gives the same numbers without it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from ..errors import ConfigError

__all__ = ["INFERNO", "INFERNO_LUT", "INFERNO_LUT_U8", "upsample_grid", "heatmap_rgb", "heatmap_frame", "blend",
           "blend_heatmap", "is_special_token", "token_shading", "MapStyle", "value_colors",
           "cortex_background", "map_rgb", "CMAPS", "SEQUENTIAL_CMAPS", "DIVERGING_CMAPS", "cmap_colors",
           "difference_map", "shared_style"]

# matplotlib's "inferno" at 33 evenly spaced points (perceptually uniform, dark -> bright).
INFERNO = np.array([
    [0.001, 0.000, 0.014], [0.014, 0.011, 0.072], [0.042, 0.028, 0.141], [0.082, 0.043, 0.215],
    [0.129, 0.047, 0.291], [0.183, 0.040, 0.355], [0.238, 0.037, 0.396], [0.291, 0.046, 0.419],
    [0.342, 0.062, 0.429], [0.391, 0.081, 0.433], [0.441, 0.099, 0.432], [0.491, 0.117, 0.426],
    [0.541, 0.135, 0.415], [0.591, 0.153, 0.400], [0.640, 0.171, 0.381], [0.689, 0.192, 0.358],
    [0.736, 0.216, 0.330], [0.781, 0.243, 0.300], [0.822, 0.275, 0.266], [0.861, 0.312, 0.231],
    [0.894, 0.353, 0.194], [0.923, 0.399, 0.155], [0.947, 0.449, 0.115], [0.965, 0.502, 0.074],
    [0.978, 0.558, 0.035], [0.986, 0.616, 0.026], [0.988, 0.675, 0.065], [0.984, 0.736, 0.130],
    [0.975, 0.798, 0.206], [0.961, 0.859, 0.298], [0.948, 0.917, 0.411], [0.955, 0.966, 0.540],
    [0.988, 0.998, 0.645]], dtype=np.float32)
#: inferno at 256 levels, (256, 3) float in [0, 1] and uint8.
INFERNO_LUT = np.stack([np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(INFERNO)), INFERNO[:, c])
                        for c in range(3)], axis=1)
INFERNO_LUT_U8 = (INFERNO_LUT * 255.0 + 0.5).astype(np.uint8)


def _cv2():
    """OpenCV when installed, else None (numpy gives the same numbers, slower)."""
    try:
        import cv2
    except ImportError:
        return None
    return cv2


def _min_max(v: np.ndarray):
    finite = np.isfinite(v)
    lo = float(v[finite].min()) if finite.any() else 0.0
    hi = float(v[finite].max()) if finite.any() else 1.0
    return finite, lo, hi


def upsample_grid(values: np.ndarray, size_hw) -> np.ndarray:
    """A ``(grid_h, grid_w)`` patch map stretched over a ``(H, W)`` frame, float32.

    Bilinear between patch centres (each patch covers ``H / grid_h`` x ``W / grid_w``
    pixels, as the model's patches covered the resized frame); the edges are clamped.
    """
    v = np.asarray(values, dtype=np.float32)
    if v.ndim != 2:
        raise ConfigError(f"attention map: expected a (grid_h, grid_w) array, found shape {v.shape}")
    h, w = int(size_hw[0]), int(size_hw[1])
    gh, gw = v.shape
    cv2 = _cv2()
    if cv2 is not None:   # same sampling (pixel centres, clamped edges)
        return cv2.resize(np.ascontiguousarray(v), (w, h), interpolation=cv2.INTER_LINEAR)
    ys = np.clip((np.arange(h) + 0.5) * gh / h - 0.5, 0, gh - 1)   # pixel centre in patch units
    xs = np.clip((np.arange(w) + 0.5) * gw / w - 0.5, 0, gw - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, gh - 1), np.minimum(x0 + 1, gw - 1)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = v[y0][:, x0] * (1 - fx) + v[y0][:, x1] * fx
    bottom = v[y1][:, x0] * (1 - fx) + v[y1][:, x1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def heatmap_rgb(values: np.ndarray) -> np.ndarray:
    """Values coloured with inferno after scaling min..max to 0..1, (..., 3) float32 in [0, 1]."""
    v = np.asarray(values, dtype=np.float32)
    finite, lo, hi = _min_max(v)
    x = np.where(finite, (v - lo) / (hi - lo) if hi > lo else 0.0, 0.0)
    idx = np.clip(np.round(x * 255), 0, 255).astype(np.intp)
    return INFERNO_LUT[idx].astype(np.float32)


def heatmap_frame(grid_values: np.ndarray, size_hw) -> np.ndarray:
    """A grid map upsampled to ``(H, W)`` and coloured with inferno (min..max), (H, W, 3) uint8.

    Scales to 0..255 on the grid first (bilinear upsampling stays within the grid's range,
    so the result equals colouring the upsampled map) and indexes a uint8 table.
    """
    v = np.asarray(grid_values, dtype=np.float32)
    finite, lo, hi = _min_max(v)
    scaled = np.where(finite, (v - lo) * (255.0 / (hi - lo)) if hi > lo else 0.0, 0.0).astype(np.float32)
    idx = np.clip(upsample_grid(scaled, size_hw) + 0.5, 0, 255).astype(np.uint8)
    return INFERNO_LUT_U8[idx]


def blend(frame_u8: np.ndarray, heat_u8: np.ndarray, opacity: float) -> np.ndarray:
    """``(1 - opacity) * frame + opacity * heat``, both (H, W, 3) uint8, rounded to uint8."""
    a = float(np.clip(opacity, 0.0, 1.0))
    cv2 = _cv2()
    if cv2 is not None:
        return cv2.addWeighted(frame_u8, 1.0 - a, heat_u8, a, 0.0)
    out = frame_u8.astype(np.float32) * (1.0 - a) + heat_u8.astype(np.float32) * a
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def blend_heatmap(frame_rgb: np.ndarray, grid_values: np.ndarray, opacity: float = 0.5) -> np.ndarray:
    """Frame (H, W, 3) uint8 with the grid map upsampled, coloured (inferno) and blended at
    ``opacity`` (0: the frame, 1: the map alone), (H, W, 3) uint8."""
    frame = np.ascontiguousarray(np.asarray(frame_rgb)[..., :3], dtype=np.uint8)
    return blend(frame, heatmap_frame(grid_values, frame.shape[:2]), opacity)


_SPECIAL_TOKEN = re.compile(r"^(\[[A-Z]+\]|<\|?[a-z_]+\|?>|</?s>|<pad>|<unk>)$")


def is_special_token(token: str) -> bool:
    """``[CLS]``, ``[SEP]``, ``<s>``, ``<|endoftext|>``...: markers, not words of the context."""
    return bool(_SPECIAL_TOKEN.match(str(token)))


def token_shading(tokens: Sequence[str], weights: np.ndarray) -> np.ndarray:
    """Shading in [0, 1] per token: weight over the largest weight of a word token.

    Special tokens (``[CLS]``, ``[SEP]``, ``<s>``...) soak up much attention as "no-op"
    targets; they get their own shading (clipped to 1) but do not set the scale of the words.
    """
    w = np.clip(np.asarray(weights, dtype=np.float32)[: len(tokens)], 0, None)
    words = np.array([not is_special_token(t) for t in tokens], dtype=bool)
    ref = float(w[words].max()) if words.any() and w[words].max() > 0 else (float(w.max()) if w.size else 0.0)
    return np.clip(w / ref, 0, 1).astype(np.float32) if ref > 0 else np.zeros_like(w)


# ---- brain maps on the cortex ------------------------------------------------------------
# cold_hot (as in nilearn's surface plots): beyond the threshold the colour starts dark and
# brightens towards the extremes, so a weak value is never mistaken for the grey cortex.
_HOT = np.array([[0.45, 0.00, 0.00], [0.85, 0.05, 0.00], [1.00, 0.45, 0.00], [1.00, 0.85, 0.10],
                 [1.00, 1.00, 0.70]])
_COLD = np.array([[0.00, 0.10, 0.45], [0.00, 0.30, 0.90], [0.10, 0.65, 1.00], [0.45, 0.90, 1.00],
                  [0.80, 1.00, 1.00]])


def _ramp(stops: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Linear interpolation through colour stops; x in [0, 1] -> (n, 3) in [0, 1]."""
    pos = np.linspace(0.0, 1.0, len(stops))
    return np.stack([np.interp(x, pos, stops[:, c]) for c in range(3)], axis=-1)


# Colour-blind-safe tables (matplotlib's, 17 evenly spaced stops): sequential viridis and cividis,
# diverging RdBu_r and PuOr_r (ColorBrewer). "cold_hot" is nilearn's map above (not CVD-safe but familiar).
_VIRIDIS = np.array([
    [0.267, 0.005, 0.329], [0.282, 0.095, 0.417], [0.279, 0.175, 0.483], [0.259, 0.252, 0.525], [0.23, 0.322, 0.546],
    [0.199, 0.388, 0.555], [0.173, 0.449, 0.558], [0.149, 0.508, 0.557], [0.128, 0.567, 0.551], [0.121, 0.626, 0.533],
    [0.158, 0.684, 0.502], [0.246, 0.739, 0.452], [0.369, 0.789, 0.383], [0.516, 0.831, 0.294], [0.678, 0.864, 0.19],
    [0.846, 0.887, 0.1], [0.993, 0.906, 0.144]])
_CIVIDIS = np.array([
    [0.0, 0.135, 0.305], [0.0, 0.179, 0.415], [0.103, 0.22, 0.436], [0.195, 0.264, 0.426], [0.264, 0.308, 0.423],
    [0.324, 0.351, 0.426], [0.381, 0.395, 0.436], [0.435, 0.44, 0.451], [0.489, 0.485, 0.471], [0.548, 0.532, 0.472],
    [0.609, 0.58, 0.464], [0.672, 0.629, 0.448], [0.736, 0.681, 0.424], [0.803, 0.734, 0.39], [0.871, 0.79, 0.343],
    [0.941, 0.848, 0.276], [0.996, 0.909, 0.218]])
_RDBU_R = np.array([
    [0.02, 0.188, 0.38], [0.089, 0.321, 0.565], [0.163, 0.445, 0.698], [0.247, 0.556, 0.754], [0.421, 0.676, 0.819],
    [0.606, 0.79, 0.88], [0.761, 0.869, 0.925], [0.878, 0.926, 0.952], [0.969, 0.966, 0.965], [0.984, 0.898, 0.847],
    [0.982, 0.801, 0.706], [0.96, 0.668, 0.536], [0.895, 0.504, 0.4], [0.817, 0.332, 0.281], [0.728, 0.155, 0.197],
    [0.577, 0.055, 0.149], [0.404, 0.0, 0.122]])
_PUOR_R = np.array([
    [0.176, 0.0, 0.294], [0.272, 0.096, 0.444], [0.373, 0.229, 0.569], [0.482, 0.416, 0.658], [0.602, 0.563, 0.75],
    [0.718, 0.696, 0.837], [0.812, 0.812, 0.899], [0.895, 0.9, 0.94], [0.969, 0.967, 0.964], [0.986, 0.91, 0.804],
    [0.995, 0.835, 0.624], [0.993, 0.737, 0.42], [0.932, 0.609, 0.224], [0.851, 0.484, 0.07], [0.74, 0.381, 0.035],
    [0.618, 0.298, 0.027], [0.498, 0.231, 0.031]])
SEQUENTIAL_CMAPS = {"viridis": _VIRIDIS, "cividis": _CIVIDIS, "inferno": INFERNO.astype(np.float64)}
DIVERGING_CMAPS = {"RdBu_r": _RDBU_R, "PuOr_r": _PUOR_R}
#: every colour map a brain map can use; "cold_hot" (the default) is nilearn's thresholded map.
CMAPS = ("cold_hot",) + tuple(DIVERGING_CMAPS) + tuple(SEQUENTIAL_CMAPS)


@dataclass(frozen=True)
class MapStyle:
    """How values become colours: |value| < threshold shows the cortex, vmax saturates.

    ``cmap`` is one of :data:`CMAPS`. A sequential map spans ``vmin`` (default: the threshold
    for an unsigned map, -vmax for a signed one) .. ``vmax``; a diverging one -vmax .. vmax
    (white at 0). ``opacity`` blends the map over the grey cortex (1: the map alone).
    """

    vmax: float
    threshold: float
    signed: bool = True
    cmap: str = "cold_hot"
    vmin: Optional[float] = None
    opacity: float = 1.0

    def __post_init__(self) -> None:
        if self.cmap not in CMAPS:
            raise ConfigError(f"colour map: expected one of {list(CMAPS)}, found {self.cmap!r}")

    @property
    def low(self) -> float:
        """Value at the bottom of the colour bar."""
        if self.vmin is not None:
            return float(self.vmin)
        return -self.vmax if self.signed else 0.0

    @classmethod
    def for_values(cls, values: np.ndarray, threshold_fraction: float = 0.15,
                   percentile: float = 99.0, threshold: Optional[float] = None) -> "MapStyle":
        finite = np.abs(values[np.isfinite(values)])
        if finite.size == 0:
            return cls(vmax=1.0, threshold=1.0)
        vmax = float(np.percentile(finite, percentile)) or float(finite.max()) or 1.0
        thr = float(threshold) if threshold is not None else threshold_fraction * vmax
        return cls(vmax=vmax, threshold=min(thr, vmax * 0.999),
                   signed=bool((values[np.isfinite(values)] < -thr).any()))


def cmap_colors(name: str, x: np.ndarray) -> np.ndarray:
    """Colours (n, 3) float in [0, 1] of positions ``x`` in [0, 1] along a sequential or diverging map."""
    stops = SEQUENTIAL_CMAPS.get(name)
    if stops is None:
        stops = DIVERGING_CMAPS.get(name)
    if stops is None:
        raise ConfigError(f"colour map: expected one of {list(SEQUENTIAL_CMAPS) + list(DIVERGING_CMAPS)}, found {name!r}")
    return _ramp(stops, np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0))


def value_colors(values: np.ndarray, style: MapStyle) -> np.ndarray:
    """Colours (n, 3) float in [0, 1] of values beyond the threshold (others undefined)."""
    v = np.asarray(values, dtype=np.float64)
    if style.cmap in DIVERGING_CMAPS:
        span = max(style.vmax, 1e-12)
        return cmap_colors(style.cmap, 0.5 + 0.5 * v / span)
    if style.cmap in SEQUENTIAL_CMAPS:
        lo = style.vmin if style.vmin is not None else (-style.vmax if style.signed else style.threshold)
        return cmap_colors(style.cmap, (v - lo) / max(style.vmax - lo, 1e-12))
    span = max(style.vmax - style.threshold, 1e-12)
    x = np.clip((np.abs(v) - style.threshold) / span, 0.0, 1.0)
    out = _ramp(_HOT, x)
    neg = v < 0
    if neg.any():
        out[neg] = _ramp(_COLD, x[neg])
    return out


def cortex_background(n_vertices: int, sulc: Optional[np.ndarray]) -> np.ndarray:
    """Grey shading (n, 3) float in [0, 1]: sulci darker than gyri, like FreeSurfer's curvature."""
    if sulc is None or len(sulc) != n_vertices:
        return np.full((n_vertices, 3), 0.72)
    s = np.asarray(sulc, dtype=np.float64)
    # nilearn's sulcal depth is positive in sulci; binarise softly for a calm background
    g = np.where(s > 0, 0.55, 0.80)
    return np.repeat(g[:, None], 3, axis=1)


def map_rgb(values: np.ndarray, style: MapStyle, background: np.ndarray,
            hidden: Optional[np.ndarray] = None) -> np.ndarray:
    """Per-vertex RGB uint8 (n, 3): background where |value| < threshold, NaN or ``hidden``
    (e.g. q above the FDR level), the map elsewhere blended at ``style.opacity``."""
    v = np.asarray(values, dtype=np.float64)
    show = np.isfinite(v) & ((np.abs(v) if style.signed else v) >= style.threshold)
    if hidden is not None:
        show &= ~np.asarray(hidden, dtype=bool)
    rgb = background.copy()
    if show.any():
        a = float(np.clip(style.opacity, 0.0, 1.0))
        colors = value_colors(v[show], style)
        rgb[show] = colors if a >= 1.0 else (1.0 - a) * rgb[show] + a * colors
    return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)


def difference_map(map_a: np.ndarray, map_b: np.ndarray) -> np.ndarray:
    """``map_a - map_b`` per vertex, float32 (NaN where either is NaN).

    Raises :class:`ConfigError` when the maps do not have the same length (two results on
    different surfaces or atlases cannot be subtracted vertex by vertex).
    """
    a = np.asarray(map_a, dtype=np.float32).ravel()
    b = np.asarray(map_b, dtype=np.float32).ravel()
    if a.shape != b.shape:
        raise ConfigError(f"difference map: expected two maps of the same length, found {a.size} and {b.size}")
    return (a - b).astype(np.float32)


def shared_style(maps, threshold_fraction: float = 0.15, cmap: str = "cold_hot") -> MapStyle:
    """One colour scale for several maps (99th percentile of |value| over all), so that maps
    shown side by side are comparable colour for colour."""
    values = np.concatenate([np.asarray(m, dtype=np.float32).ravel() for m in maps])
    s = MapStyle.for_values(values, threshold_fraction=threshold_fraction)
    return MapStyle(vmax=s.vmax, threshold=s.threshold, signed=s.signed, cmap=cmap)
