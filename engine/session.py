"""An opened project: everything the views read, loaded once, as CPU numpy.

:class:`ProjectSession` is what the desktop application (and a notebook) holds while a
project is open: the :class:`~engine.project.Project`, the episode's video reader, its
words and subtitle cues, the brain runs paired with the episode, an encoding result,
the cortical surface and an atlas. It answers the questions the views ask —
``frame_at(t_s)``, ``cue_at(t_s)``, ``score_map()``, ``roi_timecourse(run, target)`` —
without Qt, so every answer is testable headless.

Example
-------
>>> s = ProjectSession.open("demo.alignscope.json")      # doctest: +SKIP
>>> tr_times_s, measured, predicted = s.roi_timecourse("sub-01_run-1", Target.vertex_target(42))
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .errors import ConfigError, DataError, MismatchError, expected_found
from .project import Episode, Project, RunRef
from .state import Target
from .timeline import Timeline

__all__ = ["LoadedRun", "ProjectSession", "load_surface"]


@dataclass
class LoadedRun:
    """One fMRI run in memory."""

    ref: RunRef
    data: np.ndarray          # n_trs, n_targets float32

    @property
    def name(self) -> str:
        return self.ref.name

    @property
    def n_trs(self) -> int:
        return int(self.data.shape[0])


def _optional_module(name: str):
    """Import an engine module that another part of the project may not have written yet."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            return None
        raise


def load_surface(kind: str = "inflated"):
    """fsaverage5 surface through ``engine.io.surfaces`` (nilearn's bundled copy underneath)."""
    surfaces = _optional_module("engine.io.surfaces")
    if surfaces is not None and hasattr(surfaces, "load_fsaverage5"):
        return surfaces.load_fsaverage5(kind)
    raise DataError("surface: expected engine.io.surfaces.load_fsaverage5, found no such module")


class ProjectSession:
    """One open project, episode and result, ready for the views.

    Parameters
    ----------
    project : Project
    episode : Episode
        The episode being watched.
    video : VideoReader-like or None
        ``.frame(i)``, ``.frame_times_s``, ``.fps``, ``.duration_s``, ``.n_frames``.
    words, cues : DataFrame or None
        ``onset_s, duration_s, word`` and ``onset_s, duration_s, text``.
    runs : list of LoadedRun
        The brain runs paired with ``episode`` (order kept).
    result : EncodingResult-like or None
        ``scores (n_targets,)``, ``predictions`` / ``measured`` lists per run, ``run_names``.
    surface : engine.io.surfaces.Surface or None
    atlas : engine.io.atlases.Atlas or None
        ``labels`` (n_vertices,) with 0 = no region and ``names[k - 1]`` naming label ``k``.
        When the runs (and result) are parcel tables of this atlas (one column per parcel,
        as in the Algonauts release), the session is in *parcel mode*: maps are painted
        on the vertices of each parcel and a clicked vertex stands for its parcel.
    result_name : str or None
    """

    def __init__(self, project: Project, episode: Episode, video=None, words=None, cues=None,
                 runs: Sequence[LoadedRun] = (), result=None, surface=None, atlas=None,
                 result_name: Optional[str] = None) -> None:
        self.project = project
        self.episode = episode
        self.video = video
        self.words = words
        self.cues = cues
        runs = list(runs)
        n_map = self._map_size(runs, result, surface)
        # Runs of another size (e.g. parcel tables beside vertex runs) are kept aside: the
        # views show brain maps on the cortex, one value per vertex.
        self.runs: Dict[str, LoadedRun] = {r.name: r for r in runs if n_map is None or r.data.shape[1] == n_map}
        self.other_runs: Dict[str, LoadedRun] = {r.name: r for r in runs if r.name not in self.runs}
        self.result = result
        self.result_name = result_name
        self.surface = surface
        self.atlas = atlas
        self.parcel_atlas = None   # set in parcel mode: targets are this atlas's parcels
        if (surface is not None and atlas is not None and n_map is not None and n_map != surface.n_vertices
                and n_map == len(atlas.names) and np.asarray(atlas.labels).size == surface.n_vertices):
            self.parcel_atlas = atlas
        self._timelines: Dict[str, Timeline] = {}
        self._check_consistency()
        self._cue_onsets_s, self._cue_offsets_s, self._cue_texts = self._index_cues(cues)

    # ---- opening ------------------------------------------------------------------------
    @classmethod
    def open(cls, project_path, episode: Optional[str] = None, result: Optional[str] = None,
             load_mesh: bool = True) -> "ProjectSession":
        """Open a project file (or folder) and load what the views need.

        Parameters
        ----------
        project_path : str or Path
            ``*.alignscope.json`` or a folder holding one.
        episode : str, optional
            Episode name (default: the first one that has runs, else the first one).
        result : str, optional
            Key of ``project.results`` (default: the first one).
        load_mesh : bool
            Load the fsaverage5 surface (skip it for headless use that needs no mesh).
        """
        project = Project.load(project_path)
        if not project.episodes:
            raise DataError(f"project {project.name}: expected at least one episode, found none")
        if episode is None:
            with_runs = [e for e in project.episodes if project.runs_for(e.name)]
            ep = (with_runs or project.episodes)[0]
        else:
            ep = project.episode(episode)

        video = None
        if ep.video:
            from .io.video import VideoReader

            video = VideoReader(project.path(ep.video))
        words = cues = None
        if ep.words or ep.subtitles:
            text = _optional_module("engine.io.text")
            if text is None:
                raise DataError("episode text: expected engine.io.text (read_words/read_cues), found no such module")
            if ep.words:
                words = text.read_words(project.path(ep.words))
            if ep.subtitles:
                cues = text.read_cues(project.path(ep.subtitles))

        runs = [LoadedRun(ref, _load_run_data(ref, project)) for ref in project.runs_for(ep.name)]

        res = None
        result_name = None
        if project.results:
            result_name = result if result is not None else next(iter(project.results))
            if result_name not in project.results:
                raise DataError(expected_found("result", f"one of {list(project.results)}", repr(result_name)))
            from .encoding.results import EncodingResult

            res = EncodingResult.load(project.path(project.results[result_name]))

        surface = load_surface("inflated") if load_mesh else None
        atlas = None
        n_map = cls._map_size(runs, res, surface)
        parcel_refs = [r.ref for r in runs if r.ref.atlas and r.data.shape[1] == n_map]
        if surface is not None and n_map != surface.n_vertices and parcel_refs:
            atlases = _optional_module("engine.io.atlases")
            if atlases is not None:
                atlas = atlases.load_atlas(parcel_refs[0].atlas, space=surface.space)
        if atlas is None:
            atlas = _load_first_atlas(project)
        return cls(project, ep, video, words, cues, runs, res, surface, atlas, result_name)

    def close(self) -> None:
        """Release the video file."""
        if self.video is not None and hasattr(self.video, "close"):
            self.video.close()

    def __enter__(self) -> "ProjectSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- checks -------------------------------------------------------------------------
    @staticmethod
    def _map_size(runs, result, surface) -> Optional[int]:
        if result is not None:
            return int(np.asarray(result.scores).shape[0])
        sizes = [int(r.data.shape[1]) for r in runs if r.data.ndim == 2]
        if surface is not None and (int(surface.n_vertices) in sizes or not sizes):
            return int(surface.n_vertices)     # vertex runs first
        vertex_runs = [r for r in runs if r.ref.space != "parcels"]
        return int(vertex_runs[0].data.shape[1]) if vertex_runs else (int(runs[0].data.shape[1]) if runs else None)

    def _check_consistency(self) -> None:
        n = None
        for r in self.runs.values():
            if r.data.ndim != 2:
                raise DataError(expected_found(f"run {r.name}", "a (n_trs, n_targets) array", f"shape {r.data.shape}"))
            if n is not None and r.data.shape[1] != n:
                raise MismatchError(expected_found(f"run {r.name} targets", n, r.data.shape[1]))
            n = r.data.shape[1]
        if self.result is not None:
            scores = np.asarray(self.result.scores)
            if n is not None and scores.shape[0] != n:
                raise MismatchError(expected_found("encoding result targets (scores)", f"{n} like the runs",
                                                   scores.shape[0]))
            n = scores.shape[0]
        if self.surface is not None and n is not None and n != self.surface.n_vertices and self.parcel_atlas is None:
            raise MismatchError(expected_found("brain map length", f"{self.surface.n_vertices} vertices "
                                               f"({self.surface.space})", n))

    # ---- what is there ------------------------------------------------------------------
    @property
    def run_names(self) -> List[str]:
        return list(self.runs)

    @property
    def n_vertices(self) -> int:
        """Length of the maps the cortex shows (the surface's vertices when there is one)."""
        return self.surface.n_vertices if self.surface is not None else self.n_targets

    def to_vertices(self, values: np.ndarray) -> np.ndarray:
        """Per-target values (..., n_targets) as per-vertex values (..., n_vertices) float32.

        The identity in vertex space; in parcel mode each vertex gets its parcel's value
        (NaN on the medial wall).
        """
        values = np.asarray(values, dtype=np.float32)
        if self.parcel_atlas is None:
            return values
        return self.parcel_atlas.parcel_to_vertex(values)

    @property
    def n_targets(self) -> int:
        if self.result is not None:
            return int(np.asarray(self.result.scores).shape[0])
        if self.runs:
            return int(next(iter(self.runs.values())).data.shape[1])
        return self.surface.n_vertices if self.surface is not None else 0

    @property
    def duration_s(self) -> float:
        if self.video is not None:
            return float(self.video.duration_s)
        if self.runs:
            r = next(iter(self.runs.values()))
            return r.ref.onset_s + r.n_trs * r.ref.tr_s
        return 0.0

    @property
    def fps(self) -> float:
        return float(self.video.fps) if self.video is not None else 25.0

    def run(self, name: Optional[str] = None) -> LoadedRun:
        if not self.runs:
            raise DataError(f"episode {self.episode.name}: expected at least one fMRI run, found none")
        if name is None:
            return next(iter(self.runs.values()))
        try:
            return self.runs[name]
        except KeyError:
            raise DataError(expected_found("run", f"one of {self.run_names}", repr(name))) from None

    def timeline(self, run: Optional[str] = None) -> Timeline:
        """The clock pairing the episode with ``run`` (cached)."""
        key = run or ""
        if key not in self._timelines:
            frame_times = None if self.video is None else np.asarray(self.video.frame_times_s, dtype=float)
            if self.runs:
                r = self.run(run)
                tr_s, n_trs, onset_s = float(r.ref.tr_s), r.n_trs, float(r.ref.onset_s)
            else:
                tr_s, n_trs, onset_s = 1.0, max(int(math.ceil(self.duration_s)), 1), 0.0
            self._timelines[key] = Timeline(duration_s=self.duration_s, tr_s=tr_s, n_trs=n_trs, fps=self.fps,
                                            frame_times_s=frame_times, onset_s=onset_s)
        return self._timelines[key]

    # ---- stimulus -----------------------------------------------------------------------
    def frame_index(self, t_s: float) -> int:
        return self.timeline().frame_index(t_s)

    def frame_at(self, t_s: float) -> Optional[np.ndarray]:
        """RGB frame (H, W, 3) uint8 on screen at ``t_s`` (None without a video)."""
        if self.video is None:
            return None
        return self.video.frame(self.frame_index(t_s))

    @staticmethod
    def _index_cues(cues):
        if cues is None or len(cues) == 0:
            return np.zeros(0), np.zeros(0), []
        order = np.argsort(np.asarray(cues["onset_s"], dtype=float), kind="stable")
        on = np.asarray(cues["onset_s"], dtype=float)[order]
        off = on + np.asarray(cues["duration_s"], dtype=float)[order]
        texts = [str(x) for x in np.asarray(cues["text"], dtype=object)[order]]
        return on, off, texts

    def cue_at(self, t_s: float) -> str:
        """Subtitle text on screen at ``t_s`` ("" between cues); overlapping cues are joined."""
        if not self._cue_texts:
            return ""
        t_s = float(t_s)
        last = int(np.searchsorted(self._cue_onsets_s, t_s, side="right"))
        shown = [self._cue_texts[i] for i in range(last) if self._cue_offsets_s[i] > t_s]
        return "\n".join(shown)

    def words_between(self, start_s: float, stop_s: float) -> List[str]:
        """Words whose onset falls in ``[start_s, stop_s)``."""
        if self.words is None or len(self.words) == 0:
            return []
        on = np.asarray(self.words["onset_s"], dtype=float)
        keep = (on >= start_s) & (on < stop_s)
        return [str(w) for w in np.asarray(self.words["word"], dtype=object)[keep]]

    # ---- brain maps ---------------------------------------------------------------------
    def score_map(self) -> np.ndarray:
        """Encoding score (Pearson r) per vertex, (n_vertices,) float32; NaN without a result."""
        if self.result is None:
            return np.full(self.n_vertices, np.nan, dtype=np.float32)
        return self.to_vertices(np.asarray(self.result.scores, dtype=np.float32).ravel())

    def _result_run_index(self, run: str) -> Optional[int]:
        if self.result is None:
            return None
        names = list(getattr(self.result, "run_names", []) or [])
        if run in names:
            return names.index(run)
        if not names and run in self.runs and len(self.result.predictions) == len(self.runs):
            return self.run_names.index(run)
        return None

    def _result_first_tr(self, run: str, n_kept: int) -> int:
        """TR of the run that the result's first row stands for (edges may have been dropped)."""
        n_trs = self.run(run).n_trs
        if n_kept == n_trs:
            return 0
        prov = dict(getattr(self.result, "provenance", {}) or {})
        for key in ("n_start", "drop_start", "n_start_dropped"):
            if key in prov:
                return int(prov[key])
        edges = prov.get("drop_edges")
        if isinstance(edges, (list, tuple)) and edges:
            return int(edges[0])
        return max((n_trs - n_kept) // 2, 0)

    def brain_rows(self, run: str) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
        """All rows of ``run``: (tr_times_s (n,), measured (n, n_targets), predicted (n, n_targets) or None).

        With an encoding result, measured and predicted are the result's held-out rows
        (same preprocessing on both); without one, measured is the raw run.
        """
        r = self.run(run)
        tl = self.timeline(r.name)
        i = self._result_run_index(r.name)
        if i is None:
            return tl.tr_times(), r.data, None
        pred = np.asarray(self.result.predictions[i], dtype=np.float32)
        meas_list = getattr(self.result, "measured", None)
        meas = np.asarray(meas_list[i], dtype=np.float32) if meas_list else r.data
        if meas.shape != pred.shape:
            raise MismatchError(expected_found(f"result rows of run {r.name}", f"measured {meas.shape}",
                                               f"predicted {pred.shape}"))
        first = self._result_first_tr(r.name, pred.shape[0])
        times = tl.tr_time(first) + np.arange(pred.shape[0]) * tl.tr_s
        return times, meas, pred

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

    def target_columns(self, target: Target) -> np.ndarray:
        """Columns of the runs (and result) a target covers: its vertices, or in parcel
        mode its parcel (a vertex stands for the parcel it lies in)."""
        if self.parcel_atlas is None:
            return self.target_vertices(target)
        labels = np.asarray(self.parcel_atlas.labels)
        if target.kind == "vertex":
            self.target_vertices(target)   # bounds check
            k = int(labels[target.vertex])
            if k == 0:
                raise DataError(expected_found(f"vertex {target.vertex}",
                                               f"a vertex inside a parcel of {self.parcel_atlas.name}",
                                               "the medial wall (no parcel)"))
            return np.array([k - 1])
        names = list(self.parcel_atlas.names)
        if target.region not in names:
            raise DataError(expected_found("region", f"one of the {len(names)} names of the atlas",
                                           repr(target.region)))
        return np.array([names.index(target.region)])

    def roi_timecourse(self, run: str, target: Target) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Measured and predicted time courses of a vertex or region (mean over its vertices).

        Returns
        -------
        tr_times_s : (n,) float64
            Episode time at which each TR starts.
        measured, predicted : (n,) float32
            ``predicted`` is all-NaN when the session holds no result for ``run``.
        """
        times, meas, pred = self.brain_rows(run)
        cols = self.target_columns(target)
        m = meas[:, cols].mean(axis=1, dtype=np.float64).astype(np.float32)
        if pred is None:
            p = np.full_like(m, np.nan)
        else:
            p = pred[:, cols].mean(axis=1, dtype=np.float64).astype(np.float32)
        return np.asarray(times, dtype=float), m, p

    def target_score(self, target: Target) -> float:
        """Score of a vertex, or mean score over a region's vertices (NaN without a result,
        or on the medial wall in parcel mode)."""
        if self.result is None:
            return float("nan")
        values = self.score_map()[self.target_vertices(target)]
        values = values[np.isfinite(values)]
        return float(values.mean()) if values.size else float("nan")

    def map_at(self, run: str, layer: str, tr_index: int) -> np.ndarray:
        """The map the cortex shows: "score", or "measured"/"predicted" at one TR, (n_vertices,) float32."""
        if layer == "score":
            return self.score_map()
        if layer not in ("measured", "predicted"):
            raise ConfigError(f"layer: expected one of ['score', 'measured', 'predicted'], found {layer!r}")
        times, meas, pred = self.brain_rows(run)
        rows = meas if layer == "measured" else pred
        if rows is None:
            return np.full(self.n_vertices, np.nan, dtype=np.float32)
        tl = self.timeline(run)
        first = int(round((times[0] - tl.onset_s) / tl.tr_s)) if len(times) else 0
        k = int(tr_index) - first
        if not 0 <= k < rows.shape[0]:
            return np.full(self.n_vertices, np.nan, dtype=np.float32)  # an edge TR the result dropped
        return self.to_vertices(rows[k])

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


def _load_run_data(ref: RunRef, project: Project) -> np.ndarray:
    fmri = _optional_module("engine.io.fmri")
    if fmri is not None and hasattr(fmri, "load_run"):
        run = fmri.load_run(ref, project)
        data = np.asarray(run.data, dtype=np.float32)
    else:
        path = project.path(ref.path)
        if path is None or path.suffix != ".npy":
            raise DataError(expected_found(f"run {ref.name}", "a .npy file (engine.io.fmri is not available)",
                                           str(path)))
        if not path.exists():
            raise DataError(expected_found(f"run {ref.name}", f"{path} to exist", "nothing there"))
        data = np.load(path).astype(np.float32, copy=False)
        if ref.dropped_volumes:
            data = data[int(ref.dropped_volumes):]
    if data.ndim != 2:
        raise DataError(expected_found(f"run {ref.name}", "a 2-D (n_trs, n_targets) array", f"shape {data.shape}"))
    return data


def _load_first_atlas(project: Project):
    """The project's first atlas (``builtin:<name>`` or a file), via engine.io.atlases."""
    if not project.atlases:
        return None
    atlases = _optional_module("engine.io.atlases")
    if atlases is None:
        return None
    ref = project.atlases[0]
    if ref.path and not ref.path.startswith("builtin:"):
        return atlases.load_atlas(str(project.path(ref.path)), space=ref.space)
    return atlases.load_atlas(ref.path or ref.name, space=ref.space)
