"""One source of truth for time.

The current time is seconds into the episode (``t_s``). Frame index, TR index and
delayed-feature row are *derived* from it here and nowhere else; views never
recompute them ad hoc.

Conventions
-----------
- Frame ``i`` is shown during ``[frame_times_s[i], frame_times_s[i+1])``.
- TR ``k`` (volume ``k`` of the run, after dropped volumes) is acquired during
  ``[onset_s + k*tr_s, onset_s + (k+1)*tr_s)``; its time stamp is the start of that interval.
- A feature row for TR ``k`` summarises the stimulus window ending at the end of TR ``k``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from .errors import ConfigError


@dataclass(frozen=True)
class Timeline:
    """Map episode time to frames and TRs.

    Parameters
    ----------
    duration_s : float
        Length of the episode (stimulus) in seconds.
    tr_s : float
        Repetition time of the fMRI run paired with the episode.
    n_trs : int
        Number of TRs of the run.
    fps : float, optional
        Nominal frame rate; used when ``frame_times_s`` is not given.
    frame_times_s : sequence of float, optional
        Exact presentation time of every frame (variable frame rate).
    onset_s : float
        Episode time at which the first kept volume starts.
    """

    duration_s: float
    tr_s: float
    n_trs: int
    fps: float = 25.0
    frame_times_s: Optional[Sequence[float]] = None
    onset_s: float = 0.0

    def __post_init__(self):
        if self.tr_s <= 0:
            raise ConfigError(f"TR: expected a positive number of seconds, found {self.tr_s}")
        if self.n_trs < 0:
            raise ConfigError(f"TR count: expected >= 0, found {self.n_trs}")
        if self.frame_times_s is not None:
            object.__setattr__(self, "frame_times_s", np.asarray(self.frame_times_s, dtype=float))

    @property
    def n_frames(self) -> int:
        if self.frame_times_s is not None:
            return len(self.frame_times_s)
        return int(np.floor(self.duration_s * self.fps + 1e-9))

    def clamp(self, t_s: float) -> float:
        return float(min(max(t_s, 0.0), max(self.duration_s, 0.0)))

    def frame_index(self, t_s: float) -> int:
        """Index of the frame on screen at ``t_s``."""
        t_s = self.clamp(t_s)
        n = self.n_frames
        if n == 0:
            return 0
        if self.frame_times_s is not None:
            i = int(np.searchsorted(self.frame_times_s, t_s + 1e-9, side="right")) - 1
        else:
            i = int(np.floor(t_s * self.fps + 1e-9))
        return int(min(max(i, 0), n - 1))

    def frame_time(self, i: int) -> float:
        if self.frame_times_s is not None:
            return float(self.frame_times_s[int(i)])
        return float(i) / self.fps

    def tr_index(self, t_s: float) -> int:
        """Index of the TR being acquired at ``t_s`` (clamped to the run)."""
        k = int(np.floor((t_s - self.onset_s) / self.tr_s + 1e-9))
        return int(min(max(k, 0), max(self.n_trs - 1, 0)))

    def tr_time(self, k: int) -> float:
        """Episode time at which TR ``k`` starts."""
        return self.onset_s + float(k) * self.tr_s

    def tr_times(self) -> np.ndarray:
        return self.onset_s + np.arange(self.n_trs) * self.tr_s

    def feature_row(self, t_s: float, delay_trs: int = 0) -> int:
        """Row of a feature matrix that a response at ``t_s`` sees with a delay of ``delay_trs``."""
        return int(min(max(self.tr_index(t_s) - int(delay_trs), 0), max(self.n_trs - 1, 0)))


def tr_bins(n_trs: int, tr_s: float, onset_s: float = 0.0) -> np.ndarray:
    """Edges (n_trs + 1,) in seconds of the TR intervals."""
    return onset_s + np.arange(n_trs + 1) * float(tr_s)


def bin_to_trs(times_s: Sequence[float], values: np.ndarray, n_trs: int, tr_s: float,
               onset_s: float = 0.0, reduce: str = "mean") -> np.ndarray:
    """Aggregate samples stamped at ``times_s`` into TR bins.

    Parameters
    ----------
    times_s : (n_samples,)
    values : (n_samples, ...) array
    reduce : {"mean", "sum"}
        Empty bins get 0 for "sum" and the previous bin's value (or 0) for "mean".

    Returns
    -------
    (n_trs, ...) array
    """
    times_s = np.asarray(times_s, dtype=float)
    values = np.asarray(values, dtype=float)
    if reduce not in ("mean", "sum"):
        raise ConfigError(f"reduce: expected one of 'mean', 'sum', found {reduce!r}")
    idx = np.floor((times_s - onset_s) / tr_s + 1e-9).astype(int)
    keep = (idx >= 0) & (idx < n_trs)
    out = np.zeros((n_trs,) + values.shape[1:], dtype=float)
    counts = np.bincount(idx[keep], minlength=n_trs).astype(float)
    np.add.at(out, idx[keep], values[keep])
    if reduce == "mean":
        nz = counts > 0
        out[nz] /= counts[nz].reshape((-1,) + (1,) * (out.ndim - 1))
        for k in range(1, n_trs):  # carry the last value into empty bins (e.g. frames slower than TRs)
            if not nz[k]:
                out[k] = out[k - 1]
    return out


# ---- feature rows vs brain TRs -------------------------------------------------------------
class AlignmentWarning(UserWarning):
    """Feature and brain runs of slightly different lengths were trimmed to the shorter."""


@dataclass(frozen=True)
class LengthAlignment:
    """What :func:`align_lengths` decided for one run (stored in provenance via :meth:`to_dict`).

    Attributes
    ----------
    n_trs : int
        The common length both are cut to.
    n_feature_trs, n_brain_trs : int
        The lengths found.
    trimmed : {"none", "features", "brain"}
        Which one lost rows (always at its end).
    n_trimmed : int
    tolerance_trs : int
    """

    name: str
    n_trs: int
    n_feature_trs: int
    n_brain_trs: int
    trimmed: str
    n_trimmed: int
    tolerance_trs: int

    def to_dict(self) -> dict:
        return {"run": self.name, "n_trs": self.n_trs, "n_feature_trs": self.n_feature_trs,
                "n_brain_trs": self.n_brain_trs, "trimmed": self.trimmed, "n_trimmed": self.n_trimmed,
                "tolerance_trs": self.tolerance_trs, "where": "end"}

    @property
    def note(self) -> str:
        if self.trimmed == "none":
            return f"{self.name}: {self.n_trs} TRs, features and brain agree"
        return (f"{self.name}: features have {self.n_feature_trs} rows, the brain run {self.n_brain_trs} TRs; "
                f"the last {self.n_trimmed} {'feature rows' if self.trimmed == 'features' else 'brain TRs'} "
                f"dropped (within the tolerance of {self.tolerance_trs} TRs)")


def align_lengths(n_feature_trs: int, n_brain_trs: int, tolerance_trs: int = 2, name: str = "run",
                  warn: bool = True) -> LengthAlignment:
    """Decide how a feature run and a brain run of slightly different lengths line up.

    Both start at the run's first kept volume (the episode onset); the longer one is cut at
    its end to the shorter when they differ by at most ``tolerance_trs`` (e.g. the Algonauts
    2025 release has transcripts of 70 chunks for runs of 69 TRs), with an
    :class:`AlignmentWarning`. Beyond the tolerance nothing is guessed.

    Raises
    ------
    MismatchError
        The lengths differ by more than ``tolerance_trs``; the message says what to do.
    """
    from .errors import MismatchError

    nf, nb, tol = int(n_feature_trs), int(n_brain_trs), int(tolerance_trs)
    if tol < 0:
        raise ConfigError(f"trim tolerance: expected >= 0 TRs, found {tolerance_trs}")
    diff = nf - nb
    if abs(diff) > tol:
        longer = "features" if diff > 0 else "brain run"
        raise MismatchError(
            f"{name}: expected feature rows and brain TRs to agree within {tol} TRs, found {nf} feature rows vs "
            f"{nb} brain TRs (the {longer} {abs(diff)} TRs longer). Check that the features were extracted "
            f"for this run's episode with the run's TR and onset (re-extract with the run's --tr / --n-trs), or, "
            f"if the difference is expected, raise the tolerance (--trim-tolerance-trs {abs(diff)}, "
            f"FitOptions.trim_tolerance_trs)")
    trimmed = "none" if diff == 0 else ("features" if diff > 0 else "brain")
    out = LengthAlignment(name, min(nf, nb), nf, nb, trimmed, abs(diff), tol)
    if warn and diff:
        import warnings

        warnings.warn(out.note, AlignmentWarning, stacklevel=2)
    return out


def trim_to_common(features: np.ndarray, brain: np.ndarray, tolerance_trs: int = 2, name: str = "run",
                   warn: bool = True):
    """Cut ``features`` (n_feature_trs, ...) and ``brain`` (n_brain_trs, ...) to their common
    length by :func:`align_lengths`; returns ``(features, brain, LengthAlignment)`` (views)."""
    a = align_lengths(len(features), len(brain), tolerance_trs, name, warn=warn)
    return features[:a.n_trs], brain[:a.n_trs], a
