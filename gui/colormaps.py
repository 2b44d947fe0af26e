"""Colouring brain maps on a grey cortex: a thresholded cold-hot map and the sulcal background.

Pure numpy so that the cortex view and its colour bar paint exactly the same colours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

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


@dataclass(frozen=True)
class MapStyle:
    """How values become colours: |value| < threshold shows the cortex, vmax saturates."""

    vmax: float
    threshold: float
    signed: bool = True

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


def value_colors(values: np.ndarray, style: MapStyle) -> np.ndarray:
    """Colours (n, 3) float in [0, 1] of values beyond the threshold (others undefined)."""
    v = np.asarray(values, dtype=np.float64)
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


def map_rgb(values: np.ndarray, style: MapStyle, background: np.ndarray) -> np.ndarray:
    """Per-vertex RGB uint8 (n, 3): background where |value| < threshold or NaN, the map elsewhere."""
    v = np.asarray(values, dtype=np.float64)
    show = np.isfinite(v) & ((np.abs(v) if style.signed else v) >= style.threshold)
    rgb = background.copy()
    if show.any():
        rgb[show] = value_colors(v[show], style)
    return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)
