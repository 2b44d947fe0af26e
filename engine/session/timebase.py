"""One time base per run: video frame, TR, feature row and result row from ONE place.

A :class:`TimeBase` pairs the episode's clock (:class:`engine.timeline.Timeline`: frames and
TRs) with the rows of the open encoding result for that run. Result rows may start later than
the run (edge TRs dropped before the fit): the TR the result's first row stands for is read
from the result (``provenance["first_tr"]``, an int or ``{run: int}``). A result written before
that key existed is placed once from ``provenance["drop_edges"][0]``, and the time base says so
in :attr:`TimeBase.note`; nothing is guessed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import MismatchError, expected_found
from ..timeline import Timeline

__all__ = ["TimeBase", "TimeBases", "result_first_tr", "result_run_index"]


def result_first_tr(result, run: str, n_trs: int, n_rows: int,
                    result_name: Optional[str] = None) -> Tuple[int, Optional[str]]:
    """TR of ``run`` that row 0 of the result's rows for it stands for, and a note when derived.

    Parameters
    ----------
    result : EncodingResult
        Its ``provenance`` may hold ``"first_tr"`` (int, or a mapping run name -> int) and
        ``"drop_edges"`` ([n_start, n_end] TRs dropped before the fit).
    run : str
    n_trs : int
        TRs of the run as loaded.
    n_rows : int
        Rows of the result for this run.
    result_name : str, optional
        For messages.

    Returns
    -------
    first_tr : int
    note : str or None
        Set when ``first_tr`` was derived from ``drop_edges`` (an older result).

    Raises
    ------
    MismatchError
        When the result's rows do not fit inside the run, or the first TR is neither stored
        nor derivable while the row count differs from the run's TR count.
    """
    label = f"result {result_name!r}" if result_name else "result"
    prov = dict(result.provenance or {})
    first = prov.get("first_tr")
    note = None
    if isinstance(first, dict):
        first = first.get(run)
    if first is None:
        edges = prov.get("drop_edges")
        if isinstance(edges, (list, tuple)) and edges:
            first = int(edges[0])
            if first:
                note = (f"{label}: the first TR of its rows is not stored in the result; derived from its "
                        f"provenance drop_edges = {list(edges)} (row 0 = TR {first} of run {run})")
        elif n_rows == n_trs:
            first = 0
        else:
            raise MismatchError(expected_found(f"{label} rows of run {run}",
                                               f"{n_trs} rows (one per TR) or a stored first TR",
                                               f"{n_rows} rows and no first_tr / drop_edges in its provenance"))
    first = int(first)
    if first < 0 or first + n_rows > n_trs:
        raise MismatchError(expected_found(f"{label} rows of run {run}",
                                           f"rows inside the run's {n_trs} TRs",
                                           f"{n_rows} rows starting at TR {first}"))
    return first, note


@dataclass(frozen=True)
class TimeBase:
    """Episode time -> video frame, TR, delayed feature row and result row, for one run.

    Attributes
    ----------
    timeline : Timeline
        The episode's clock paired with the run.
    run : str or None
    first_result_tr : int or None
        TR of the run that the result's first row stands for (None: no result rows).
    n_result_rows : int
    note : str or None
        How ``first_result_tr`` was obtained when it was not stored in the result.
    result_error : str or None
        Why the result's rows for this run cannot be placed on it (the clock still works).
    result_index : int or None
        Position of the run in the result's lists (None: the result holds no rows for it).
    """

    timeline: Timeline
    run: Optional[str] = None
    first_result_tr: Optional[int] = None
    n_result_rows: int = 0
    note: Optional[str] = None
    result_error: Optional[str] = None
    result_index: Optional[int] = None

    @property
    def tr_s(self) -> float:
        return float(self.timeline.tr_s)

    @property
    def n_trs(self) -> int:
        return int(self.timeline.n_trs)

    def frame_index(self, t_s: float) -> int:
        """Video frame on screen at ``t_s``."""
        return self.timeline.frame_index(t_s)

    def tr_index(self, t_s: float) -> int:
        """TR of the run being acquired at ``t_s`` (clamped to the run)."""
        return self.timeline.tr_index(t_s)

    def tr_time(self, k: int) -> float:
        """Episode time at which TR ``k`` starts."""
        return self.timeline.tr_time(k)

    def feature_row(self, t_s: float, delay_trs: int = 0) -> int:
        """Row of a per-TR feature matrix that the response at ``t_s`` sees ``delay_trs`` TRs back."""
        return self.timeline.feature_row(t_s, delay_trs)

    def result_row_of_tr(self, k: int) -> Optional[int]:
        """Row of the result holding TR ``k`` (None: no result, or an edge TR the fit dropped)."""
        if self.first_result_tr is None:
            return None
        row = int(k) - self.first_result_tr
        return row if 0 <= row < self.n_result_rows else None

    def result_row(self, t_s: float) -> Optional[int]:
        """Row of the result for the TR being acquired at ``t_s`` (see :meth:`result_row_of_tr`)."""
        return self.result_row_of_tr(self.tr_index(t_s))

    def result_tr_times(self) -> np.ndarray:
        """Episode time (s) at which the TR of each result row starts, (n_result_rows,) float64."""
        first = self.first_result_tr or 0
        return self.timeline.tr_time(first) + np.arange(self.n_result_rows) * self.timeline.tr_s

    def tr_times(self) -> np.ndarray:
        """Episode time (s) at which each TR of the run starts, (n_trs,) float64."""
        return self.timeline.tr_times()


def result_run_index(result, run: str, fitted_runs: Sequence[str]) -> Optional[int]:
    """Index of ``run`` in the result's runs (None: the result holds no rows for it).

    A result without run names is matched by position when it holds one prediction per
    fitted run of the session (``fitted_runs``, in order).
    """
    if result is None:
        return None
    names = list(result.run_names or [])
    if run in names:
        return names.index(run)
    if not names and run in fitted_runs and len(result.predictions) == len(fitted_runs):
        return list(fitted_runs).index(run)
    return None


class TimeBases:
    """The time base of each run of an open episode, built once per run and result.

    Parameters
    ----------
    video : VideoReader-like or None
        ``frame_times_s`` and ``fps`` give the frames.
    duration_s : float
        Length of the episode.
    run_lookup : callable
        ``run_lookup(name or None) -> LoadedRun`` (raises when unknown); None when the
        episode has no runs.
    fitted_runs : list of str
        Runs in the space of the maps (a result without run names is matched to them).
    """

    def __init__(self, video, duration_s: float, run_lookup: Optional[Callable], fitted_runs: Sequence[str]) -> None:
        self._video = video
        self._duration_s = float(duration_s)
        self._run_lookup = run_lookup
        self._fitted_runs = list(fitted_runs)
        self._cache: Dict[str, TimeBase] = {}
        self._timelines: Dict[str, Timeline] = {}   # kept across results: the clock does not change
        self.result = None
        self.result_name: Optional[str] = None

    def set_result(self, result, name: Optional[str]) -> None:
        """Use ``result``'s rows from now on (time bases are rebuilt on next use)."""
        self.result, self.result_name = result, name
        self._cache.clear()

    def result_run_index(self, run: str) -> Optional[int]:
        return result_run_index(self.result, run, self._fitted_runs)

    def timeline(self, run: Optional[str] = None) -> Timeline:
        """The clock pairing the episode with ``run`` (frames and TRs)."""
        return self.get(run).timeline

    def get(self, run: Optional[str] = None) -> TimeBase:
        key = run or ""
        if key not in self._cache:
            self._cache[key] = self._build(run)
        return self._cache[key]

    @property
    def notes(self) -> List[str]:
        """How the result's first TR was obtained where the result did not store it."""
        return [tb.note for tb in self._cache.values() if tb.note]

    def _clock(self, run: Optional[str]) -> Timeline:
        key = run or ""
        if key not in self._timelines:
            video = self._video
            frame_times = None if video is None else np.asarray(video.frame_times_s, dtype=float)
            fps = float(video.fps) if video is not None else 25.0
            if self._run_lookup is None:
                tr_s, n_trs, onset_s = 1.0, max(int(math.ceil(self._duration_s)), 1), 0.0
            else:
                r = self._run_lookup(run)
                tr_s, n_trs, onset_s = float(r.ref.tr_s), r.n_trs, float(r.ref.onset_s)
            self._timelines[key] = Timeline(duration_s=self._duration_s, tr_s=tr_s, n_trs=n_trs, fps=fps,
                                            frame_times_s=frame_times, onset_s=onset_s)
        return self._timelines[key]

    def _build(self, run: Optional[str]) -> TimeBase:
        tl = self._clock(run)
        if self._run_lookup is None:
            return TimeBase(tl)
        r = self._run_lookup(run)
        i = self.result_run_index(r.name)
        if i is None:
            return TimeBase(tl, r.name)
        n_rows = int(np.asarray(self.result.predictions[i]).shape[0])
        try:
            first, note = result_first_tr(self.result, r.name, r.n_trs, n_rows, self.result_name)
        except MismatchError as exc:   # frames and TRs still work; the rows are refused where asked
            return TimeBase(tl, r.name, result_error=str(exc), result_index=i)
        return TimeBase(tl, r.name, first, n_rows, note, result_index=i)
