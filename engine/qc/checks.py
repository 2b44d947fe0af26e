"""The result of one quality check, and the thresholds every check uses.

A :class:`Check` says what was checked (``name``), about what (``subject``: a run, an
episode, a group of runs), how it went (``level``: ``pass``, ``warn`` or ``fail``), in one
sentence a researcher can act on (``message``), with the numbers behind it (``details``,
JSON-serialisable) and the arrays a viewer needs to show it (``data``: never written to
JSON). ``view`` names the view that shows it (see :data:`VIEWS`).

Levels
------
- ``fail``: the data would silently ruin a fit (a run shifted against its stimulus, a dead
  run, duplicated volumes, subtitles past the end of the video...). ``alignscope qc`` exits 1.
- ``warn``: worth a look before trusting a map (motion stretches, dropped frames, raw units
  with drift, long silences, regions with no reliable signal).
- ``pass``: checked and fine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional

import numpy as np

LEVELS = ("pass", "warn", "fail")
LEVEL_RANK = {name: k for k, name in enumerate(LEVELS)}

#: Views the GUI knows how to open (``Check.view``).
VIEWS = {
    "tsnr_map": "temporal SNR per target on the cortex",
    "carpet": "targets x time image, ordered by region",
    "motion": "framewise displacement and motion traces with flagged volumes",
    "global_signal": "global signal over time",
    "sync": "stimulus-brain cross-correlation against the lag",
    "reliability_map": "noise ceiling per target on the cortex",
    "frames": "frame-time steps of the video",
    "timeline": "stimulus timings against the video's length",
}

#: Categories, in the order reports list them.
CATEGORIES = ("run", "episode", "sync", "reliability")

# ---- thresholds (the defaults users keep; each is named in the message that uses it) ----
FD_THRESHOLD_MM = 0.5            # Power et al. 2012: volumes with FD > 0.5 mm are flagged
FD_RADIUS_MM = 50.0              # rotations (radians) to displacement on a 50 mm sphere (Power 2012)
MOTION_FAIL_FRACTION = 0.20      # more than 20 % flagged volumes: the run is unusable as is
TSNR_WARN = 10.0                 # median temporal SNR below this: very noisy data
RAW_UNITS_MEAN_OVER_SD = 5.0     # |mean| / sd of a target above this: scanner units, not % or z
DRIFT_WARN_FRACTION = 0.25       # median variance fraction explained by slow drifts (quadratic)
GS_SPIKE_Z = 6.0                 # robust z of the global-signal change between volumes
DEAD_WARN_FRACTION = 0.0         # any dead target (outside the medial wall) is reported
SYNC_MAX_LAG_TRS = 8             # lags searched, each way
SYNC_OK_LAG_TRS = 1              # |best lag| <= 1 TR after HRF convolution: in sync
SYNC_TOP_FRACTION = 0.02         # targets most responsive to a feature (at each lag): top 2 %
SYNC_N_NULL = 60                 # circular-shift null draws
SYNC_MIN_TRS = 30                # shorter runs cannot place a lag against a null
FRAME_GAP_FACTOR = 1.5           # a frame step > 1.5 x the typical step is a drop / jump
FRAME_JUMP_FAIL_S = 0.5          # one jump longer than this (or > 1 % frames missing): fail
AV_WARN_S = 0.5                  # |audio - video| duration
AV_FAIL_S = 2.0
TEXT_PAST_END_S = 0.5            # word or cue ending this long after the video
OVERLAP_TOLERANCE_S = 0.05
OVERLAP_FRACTION = 0.5           # overlaps longer than half the shorter item are reported
SILENCE_MIN_S = 10.0             # a silence this long is reported
SILENCE_DB = -40.0               # below this level (dB re the 95th-percentile loudness) is silence
CEILING_NEAR_ZERO = 0.01         # noise ceiling (variance fraction) at or below: no reliable signal


@dataclass
class Check:
    """One quality check's outcome.

    Attributes
    ----------
    name : str
        What was checked (``motion``, ``tsnr``, ``sync``, ``frame_times`` ...).
    level : {"pass", "warn", "fail"}
    message : str
        One sentence: what was expected, what was found, what to do.
    subject : str
        What it is about (a run name, an episode name, ``episode/space`` for groups).
    category : {"run", "episode", "sync", "reliability"}
    details : dict
        Numbers behind the message (JSON-serialisable).
    view : str or None
        Key of :data:`VIEWS` that shows it, None when there is nothing to see.
    data : dict
        Arrays for the view (not serialised).
    """

    name: str
    level: str
    message: str
    subject: str = ""
    category: str = "run"
    details: Dict[str, Any] = field(default_factory=dict)
    view: Optional[str] = None
    data: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        if self.level not in LEVELS:
            raise ValueError(f"Check level: expected one of {LEVELS}, found {self.level!r}")
        if self.view is not None and self.view not in VIEWS:
            raise ValueError(f"Check view: expected one of {sorted(VIEWS)} or None, found {self.view!r}")

    @property
    def failed(self) -> bool:
        return self.level == "fail"

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready dict (``data`` left out)."""
        return {"name": self.name, "level": self.level, "category": self.category, "subject": self.subject,
                "message": self.message, "view": self.view, "details": to_jsonable(self.details)}


def worst(levels: Iterable[str]) -> str:
    """The most severe of ``levels`` (``pass`` when empty)."""
    return max(levels, key=LEVEL_RANK.__getitem__, default="pass")


def summary(checks: List[Check]) -> Dict[str, int]:
    """Counts per level."""
    out = {name: 0 for name in LEVELS}
    for c in checks:
        out[c.level] += 1
    return out


def to_jsonable(obj):
    """numpy scalars/arrays, tuples and paths to plain JSON types (NaN -> None)."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if np.isfinite(v) else None
    if obj is None or isinstance(obj, (int, str)):
        return obj
    return str(obj)


def stretches(mask: np.ndarray) -> List[List[int]]:
    """Runs of True in a boolean vector as ``[[first, last], ...]`` (inclusive indices)."""
    m = np.asarray(mask, dtype=bool).astype(np.int8)
    if m.size == 0:
        return []
    edges = np.diff(np.concatenate([[0], m, [0]]))
    starts = np.flatnonzero(edges == 1)
    stops = np.flatnonzero(edges == -1) - 1
    return [[int(a), int(b)] for a, b in zip(starts, stops)]


def short_list(items, limit: int = 5) -> str:
    items = list(items)
    shown = ", ".join(str(i) for i in items[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")
