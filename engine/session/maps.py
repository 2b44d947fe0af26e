"""Brain maps: what the cortex and the time course show for a run, a TR and a target.

:class:`BrainMaps` turns the runs and the open encoding result into per-vertex maps (scores,
measured or predicted response at a TR) and time courses of a vertex or region. Result rows
are placed on the run through the session's :class:`~engine.session.timebase.TimeBase`.
Parcel tables (one column per parcel) are painted on the vertices of each parcel.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from ..errors import ConfigError, DataError, MismatchError, expected_found
from ..state import Target
from .timebase import TimeBase

__all__ = ["BrainMaps"]


class BrainMaps:
    """Maps and time courses of one episode's runs and the open result.

    Parameters
    ----------
    runs : dict name -> LoadedRun
        Runs in the space of the maps (fitted and compared).
    parcel_runs : dict name -> LoadedRun
        Parcel tables beside vertex runs, painted through ``run_atlases[name]``.
    run_atlases : dict name -> Atlas
    atlas : Atlas or None
        Regions of the maps (``labels`` per vertex, 0 = none; ``names[k - 1]`` names label k).
    parcel_atlas : Atlas or None
        Set in parcel mode: the maps' targets are this atlas's parcels.
    surface : Surface or None
    timebase : callable
        ``timebase(run) -> TimeBase`` (cached by the session).
    """

    def __init__(self, runs: Dict[str, object], parcel_runs: Dict[str, object], run_atlases: Dict[str, object],
                 atlas, parcel_atlas, surface, timebase: Callable[[Optional[str]], TimeBase]) -> None:
        self.runs = runs
        self.parcel_runs = parcel_runs
        self.run_atlases = run_atlases
        self.atlas = atlas
        self.parcel_atlas = parcel_atlas
        self.surface = surface
        self._timebase = timebase
        self.result = None
        self._zscored: Dict[str, np.ndarray] = {}   # raw runs z-scored per target, for the maps

    # ---- sizes and runs ---------------------------------------------------------------------
    @property
    def n_targets(self) -> int:
        if self.result is not None:
            return int(np.asarray(self.result.scores).shape[0])
        if self.runs:
            return int(next(iter(self.runs.values())).data.shape[1])
        return self.surface.n_vertices if self.surface is not None else 0

    @property
    def n_vertices(self) -> int:
        """Length of the maps the cortex shows (the surface's vertices when there is one)."""
        return self.surface.n_vertices if self.surface is not None else self.n_targets

    def run(self, name: Optional[str] = None):
        if not self.runs:
            raise DataError("episode: expected at least one fMRI run, found none")
        if name is None:
            return next(iter(self.runs.values()))
        if name in self.runs:
            return self.runs[name]
        if name in self.parcel_runs:
            return self.parcel_runs[name]
        raise DataError(expected_found("run", f"one of {list(self.runs) + list(self.parcel_runs)}", repr(name)))

    def run_atlas(self, run: Optional[str] = None):
        """The atlas whose parcels are the columns of ``run`` (None for a vertex run)."""
        if run is not None and run in self.run_atlases:
            return self.run_atlases[run]
        return self.parcel_atlas

    def to_vertices(self, values: np.ndarray, run: Optional[str] = None) -> np.ndarray:
        """Per-target values (..., n_targets) as per-vertex values (..., n_vertices) float32.

        The identity in vertex space; in parcel mode (or for a parcel-table ``run``) each
        vertex gets its parcel's value (NaN on the medial wall).
        """
        values = np.asarray(values, dtype=np.float32)
        atlas = self.run_atlas(run)
        return values if atlas is None else atlas.parcel_to_vertex(values)

    # ---- rows --------------------------------------------------------------------------------
    def has_prediction(self, run: str) -> bool:
        """True when the encoding result holds held-out predictions for ``run``."""
        return self._timebase(self.run(run).name).result_index is not None

    def brain_rows(self, run: str) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
        """All rows of ``run``: (tr_times_s (n,), measured (n, n_targets), predicted (n, n_targets) or None).

        With an encoding result, measured and predicted are the result's held-out rows (same
        preprocessing on both), placed on the run by its time base; without one, measured is
        the raw run.
        """
        r = self.run(run)
        tb = self._timebase(r.name)
        if tb.result_error is not None:
            raise MismatchError(tb.result_error)
        if tb.first_result_tr is None:
            return tb.tr_times(), r.data, None
        i = tb.result_index
        pred = np.asarray(self.result.predictions[i], dtype=np.float32)
        meas = np.asarray(self.result.measured[i], dtype=np.float32) if self.result.measured else r.data
        if meas.shape != pred.shape:
            raise MismatchError(expected_found(f"result rows of run {r.name}", f"measured {meas.shape}",
                                               f"predicted {pred.shape}"))
        return tb.result_tr_times(), meas, pred

    def map_rows(self, run: str, layer: str) -> Optional[np.ndarray]:
        """Rows (n, n_targets) the cortex shows for ``layer`` of ``run``: the result's held-out
        rows (z-scored by the fit), or for a run without a result its data z-scored per target
        over the run (file units differ between targets: a baseline of 1000 would hide the
        response). None when there is nothing to show (no prediction)."""
        _, meas, pred = self.brain_rows(run)
        if layer == "predicted":
            return pred
        if pred is not None:
            return meas
        name = self.run(run).name
        if name not in self._zscored:
            m = meas.astype(np.float64)
            sd = m.std(0)
            self._zscored[name] = ((m - m.mean(0)) / np.where(sd > 0, sd, 1.0)).astype(np.float32)
        return self._zscored[name]

    def score_map(self) -> np.ndarray:
        """Encoding score (Pearson r) per vertex, (n_vertices,) float32; NaN without a result."""
        if self.result is None:
            return np.full(self.n_vertices, np.nan, dtype=np.float32)
        return self.to_vertices(np.asarray(self.result.scores, dtype=np.float32).ravel())

    def map_at(self, run: str, layer: str, tr_index: int) -> np.ndarray:
        """The map the cortex shows: "score", or "measured"/"predicted" at TR ``tr_index`` of the
        run, (n_vertices,) float32 (NaN at an edge TR the fit dropped; see :meth:`map_rows`)."""
        if layer == "score":
            return self.score_map()
        if layer not in ("measured", "predicted"):
            raise ConfigError(f"layer: expected one of ['score', 'measured', 'predicted'], found {layer!r}")
        rows = self.map_rows(run, layer)
        if rows is None:
            return np.full(self.n_vertices, np.nan, dtype=np.float32)
        tb = self._timebase(self.run(run).name)
        k = tb.result_row_of_tr(tr_index) if tb.first_result_tr is not None else int(tr_index)
        if k is None or not 0 <= k < rows.shape[0]:
            return np.full(self.n_vertices, np.nan, dtype=np.float32)
        return self.to_vertices(rows[k], run)

    # ---- targets -----------------------------------------------------------------------------
    def target_vertices(self, target: Target) -> np.ndarray:
        """Vertex indices a target covers (one for a vertex, every labelled one for a region)."""
        if target.kind == "vertex":
            if not 0 <= target.vertex < self.n_vertices:
                raise DataError(expected_found("vertex", f"0..{self.n_vertices - 1}", target.vertex))
            return np.array([target.vertex])
        if self.atlas is None:
            raise DataError(f"region {target.region!r}: expected an atlas in the project, found none")
        names = list(self.atlas.names)
        if target.region not in names:
            raise DataError(expected_found("region", f"one of the {len(names)} names of the atlas",
                                           repr(target.region)))
        idx = np.flatnonzero(np.asarray(self.atlas.labels) == names.index(target.region) + 1)
        if idx.size == 0:
            raise DataError(f"region {target.region!r}: expected vertices with its label, found none")
        return idx

    def target_columns(self, target: Target, run: Optional[str] = None) -> np.ndarray:
        """Columns of the runs (and result) a target covers: its vertices, or in parcel mode
        (or for a parcel-table ``run``) its parcel (a vertex stands for the parcel it lies in;
        a region of another atlas for the parcels its vertices lie in)."""
        atlas = self.run_atlas(run)
        if atlas is None:
            return self.target_vertices(target)
        labels = np.asarray(atlas.labels)
        if target.kind == "vertex":
            self.target_vertices(target)   # bounds check
            k = int(labels[target.vertex])
            if k == 0:
                raise DataError(expected_found(f"vertex {target.vertex}", f"a vertex inside a parcel of {atlas.name}",
                                               "the medial wall (no parcel)"))
            return np.array([k - 1])
        names = list(atlas.names)
        if target.region in names:
            return np.array([names.index(target.region)])
        if self.atlas is not None and self.atlas is not atlas and target.region in list(self.atlas.names):
            inside = np.unique(labels[self.target_vertices(target)])
            inside = inside[inside > 0]
            if inside.size:
                return inside - 1
        raise DataError(expected_found("region", f"one of the {len(names)} names of the atlas {atlas.name}",
                                       repr(target.region)))

    def roi_timecourse(self, run: str, target: Target) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Measured and predicted time courses of a vertex or region (mean over its columns).

        Returns
        -------
        tr_times_s : (n,) float64
            Episode time at which each TR starts.
        measured, predicted : (n,) float32
            ``predicted`` is all-NaN when there is no result for ``run``.
        """
        times, meas, pred = self.brain_rows(run)
        cols = self.target_columns(target, run)
        m = meas[:, cols].mean(axis=1, dtype=np.float64).astype(np.float32)
        p = np.full_like(m, np.nan) if pred is None else pred[:, cols].mean(axis=1, dtype=np.float64).astype(np.float32)
        return np.asarray(times, dtype=float), m, p

    def target_score(self, target: Target) -> float:
        """Score of a vertex, or mean score over a region's vertices (NaN without a result, or
        on the medial wall in parcel mode)."""
        if self.result is None:
            return float("nan")
        values = self.score_map()[self.target_vertices(target)]
        values = values[np.isfinite(values)]
        return float(values.mean()) if values.size else float("nan")

    def region_of_vertex(self, vertex: int) -> Optional[str]:
        if self.atlas is None:
            return None
        lab = int(np.asarray(self.atlas.labels)[int(vertex)])
        return None if lab <= 0 else str(self.atlas.names[lab - 1])

    def region_names(self) -> List[str]:
        if self.atlas is None:
            return []
        present = set(np.unique(np.asarray(self.atlas.labels)).tolist())
        return [n for k, n in enumerate(self.atlas.names, 1) if k in present]
