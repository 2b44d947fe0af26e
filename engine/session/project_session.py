"""An opened project: everything the views read, loaded once, as CPU numpy.

:class:`ProjectSession` is what the desktop application (and a notebook) holds while a
project is open. It composes parts with one job each:

- :attr:`stimulus` (:class:`~engine.session.stimulus.Stimulus`): frames, subtitles, words, proxy;
- :attr:`timebases` (:class:`~engine.session.timebase.TimeBases`): per run, video frame, TR,
  feature row and result row from one place;
- :attr:`attention_source` (:class:`~engine.session.attention.AttentionSource`);
- :attr:`maps` (:class:`~engine.session.maps.BrainMaps`): score maps, responses, time courses;
- :attr:`regions` (:class:`~engine.session.regions.RegionTables`): per-region tables.

The session's methods answer the questions the views ask (``frame_at(t_s)``, ``score_map()``,
``roi_timecourse(run, target)``...) without Qt. A result finished while the project is open is
handed over with :meth:`add_result` and shown with :meth:`set_result`: nothing is reopened.

Example
-------
>>> s = ProjectSession.open("demo.alignscope.json")      # doctest: +SKIP
>>> tr_times_s, measured, predicted = s.roi_timecourse("sub-01_run-1", Target.vertex_target(42))
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..errors import DataError, MismatchError, expected_found
from ..project import Episode, Project
from ..state import Target
from ..timeline import Timeline
from .attention import AttentionSource
from .colour import blend_heatmap
from .maps import BrainMaps
from .opening import LoadedRun, map_size, open_parts
from .regions import RegionTables
from .results import ResultShelf
from .stimulus import Stimulus
from .timebase import TimeBase, TimeBases

__all__ = ["ProjectSession"]


class ProjectSession:
    """One open project, episode and result, ready for the views.

    Parameters
    ----------
    project : Project
    episode : Episode
        The episode being watched.
    video : VideoReader-like or None
    words, cues : DataFrame or None
        ``onset_s, duration_s, word`` and ``onset_s, duration_s, text``.
    runs : list of LoadedRun
        The brain runs paired with ``episode`` (order kept).
    result : EncodingResult or None
    surface : engine.io.surfaces.Surface or None
    atlas : engine.io.atlases.Atlas or None
        ``labels`` (n_vertices,) with 0 = no region and ``names[k - 1]`` naming label ``k``.
        When the runs (and result) are parcel tables of this atlas (one column per parcel, as in
        the Algonauts release), the session is in *parcel mode*: maps are painted on the
        vertices of each parcel and a clicked vertex stands for its parcel.
    result_name : str or None
    run_atlases : dict run name -> Atlas, optional
        Atlases of parcel tables beside vertex runs (painted per parcel).
    """

    def __init__(self, project: Project, episode: Episode, video=None, words=None, cues=None,
                 runs: Sequence[LoadedRun] = (), result=None, surface=None, atlas=None,
                 result_name: Optional[str] = None, run_atlases: Optional[Dict[str, object]] = None) -> None:
        self.project = project
        self.episode = episode
        runs = list(runs)
        n_map = map_size(runs, result, surface)
        # Runs of another size (e.g. parcel tables beside vertex runs) are kept aside: the
        # views show brain maps on the cortex, one value per vertex.
        self.runs: Dict[str, LoadedRun] = {r.name: r for r in runs if n_map is None or r.data.shape[1] == n_map}
        self.other_runs: Dict[str, LoadedRun] = {r.name: r for r in runs if r.name not in self.runs}
        self.parcel_runs: Dict[str, LoadedRun] = {}
        run_atlases_kept: Dict[str, object] = {}
        for name, r in self.other_runs.items():
            a = (run_atlases or {}).get(name)
            if (a is not None and surface is not None and r.data.ndim == 2 and r.data.shape[1] == len(a.names)
                    and np.asarray(a.labels).size == surface.n_vertices):
                self.parcel_runs[name] = r
                run_atlases_kept[name] = a
        self.surface = surface
        self.atlas = atlas
        #: What could not be loaded but did not stop the project opening (the GUI shows these).
        self.notes: List[str] = []
        self.parcel_atlas = None   # set in parcel mode: targets are this atlas's parcels
        if (surface is not None and atlas is not None and n_map is not None and n_map != surface.n_vertices
                and n_map == len(atlas.names) and np.asarray(atlas.labels).size == surface.n_vertices):
            self.parcel_atlas = atlas
        source = None
        if video is not None:
            source = project.path(episode.video) if episode.video else getattr(video, "path", None)
        self.stimulus = Stimulus(video, words, cues, source, episode.name)
        self.timebases = TimeBases(video, self._duration(video), self.run if self.runs else None,
                                   list(self.runs))
        self.attention_source = AttentionSource(project, episode, self._attention_tr_index)
        self.maps = BrainMaps(self.runs, self.parcel_runs, run_atlases_kept, atlas, self.parcel_atlas, surface,
                              self.timebases.get)
        self.regions = RegionTables(atlas, self.parcel_atlas, surface, self._named_result)
        self.shelf = ResultShelf(project)
        self.result = None
        self.result_name: Optional[str] = None
        self._check_runs()
        self._show(result, result_name)

    # ---- opening ------------------------------------------------------------------------
    @classmethod
    def open(cls, project_path, episode: Optional[str] = None, result: Optional[str] = None,
             load_mesh: bool = True) -> "ProjectSession":
        """Open a project file (or folder) and load what the views need
        (see :func:`engine.session.opening.open_parts` for the parameters)."""
        p = open_parts(project_path, episode, result, load_mesh)
        try:
            session = cls(p.project, p.episode, p.video, p.words, p.cues, p.runs, p.result, p.surface, p.atlas,
                          p.result_name, run_atlases=p.run_atlases)
        except MismatchError as exc:
            if p.video is not None:
                p.video.close()
            if p.atlas_note is None:
                raise
            raise MismatchError(f"{exc}; parcel runs are painted through their atlas, and {p.atlas_note}") from None
        if p.atlas_note:
            session.notes.append(p.atlas_note)
        return session

    def close(self) -> None:
        """Release the video file."""
        self.stimulus.close()

    def __enter__(self) -> "ProjectSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- results (see ResultShelf) --------------------------------------------------------
    @property
    def result_names(self) -> List[str]:
        """The project's results (those handed over with :meth:`add_result` included)."""
        return self.shelf.names()

    def add_result(self, name: str, result, path=None) -> None:
        """Hand a finished result to the open session (nothing is reopened).

        ``result`` is the :class:`~engine.encoding.results.EncodingResult` (its file at ``path``)
        or the path of its file (read when shown). The job that wrote the file registered it in
        the project file; here it joins the session's list. The result shown does not change
        unless it is the one replaced.
        """
        if isinstance(result, (str, Path)):
            result, path = None, result
        self.shelf.add(str(name), result, path)
        if str(name) == self.result_name:
            self.set_result(str(name))

    def forget_result(self, name: str) -> None:
        """Drop ``name`` from the session (after the project's result was deleted)."""
        self.shelf.forget(name)
        if name == self.result_name:
            self._show(None, None)

    def rename_result(self, old: str, new: str, path=None) -> None:
        """Follow a result renamed in the project file (its file now at ``path``); the result
        shown stays shown under its new name."""
        self.shelf.rename(old, new, path)
        if self.result_name == old:
            self.result_name = new
            self.timebases.set_result(self.result, new)

    def set_result(self, name: Optional[str]) -> None:
        """Show result ``name`` (None: none). Raises MismatchError when its targets differ from
        the runs' (e.g. a parcel result beside vertex runs: open it with :meth:`open`)."""
        if name is None:
            self._show(None, None)
            return
        self._show(self.load_result(name), name)

    def load_result(self, name: Optional[str] = None):
        """The encoding result ``name`` of the project (the open one when None or the same name)."""
        return self._named_result(name)[1]

    def _named_result(self, name: Optional[str]):
        if name is None or name == self.result_name:
            if self.result is None:
                raise DataError("encoding result: expected one in the project, found none")
            return self.result_name, self.result
        return name, self.shelf.get(name)

    def _show(self, result, name: Optional[str]) -> None:
        if result is not None:
            n = int(np.asarray(result.scores).shape[0])
            n_runs = int(next(iter(self.runs.values())).data.shape[1]) if self.runs else None
            if n_runs is not None and n != n_runs:
                raise MismatchError(expected_found("encoding result targets (scores)", f"{n_runs} like the runs", n))
            if self.surface is not None and n != self.surface.n_vertices and self.parcel_atlas is None:
                raise MismatchError(expected_found("brain map length", f"{self.surface.n_vertices} vertices "
                                                   f"({self.surface.space})", n))
            self.shelf.keep(name, result)
        self.result, self.result_name = result, name
        self.timebases.set_result(result, name)
        self.maps.result = result

    def _check_runs(self) -> None:
        n = None
        for r in self.runs.values():
            if r.data.ndim != 2:
                raise DataError(expected_found(f"run {r.name}", "a (n_trs, n_targets) array", f"shape {r.data.shape}"))
            if n is not None and r.data.shape[1] != n:
                raise MismatchError(expected_found(f"run {r.name} targets", n, r.data.shape[1]))
            n = r.data.shape[1]
        if (self.surface is not None and n is not None and n != self.surface.n_vertices
                and self.parcel_atlas is None):
            raise MismatchError(expected_found("brain map length", f"{self.surface.n_vertices} vertices "
                                               f"({self.surface.space})", n))

    # ---- what is there ------------------------------------------------------------------
    @property
    def video(self):
        """The reader frames are shown from (the scrub proxy once swapped in)."""
        return self.stimulus.video

    @property
    def words(self):
        return self.stimulus.words

    @property
    def cues(self):
        return self.stimulus.cues

    @property
    def video_source_path(self):
        return self.stimulus.source_path

    @property
    def run_names(self) -> List[str]:
        """Runs in the space of the maps (the result's space): these are fitted and compared."""
        return list(self.runs)

    @property
    def display_run_names(self) -> List[str]:
        """Every run the views can show: :attr:`run_names`, then parcel tables painted per parcel."""
        return list(self.runs) + list(self.parcel_runs)

    def run(self, name: Optional[str] = None) -> LoadedRun:
        if not self.runs:
            raise DataError(f"episode {self.episode.name}: expected at least one fMRI run, found none")
        return self.maps.run(name)

    def run_atlas(self, run: Optional[str] = None):
        """The atlas whose parcels are the columns of ``run`` (None for a vertex run)."""
        return self.maps.run_atlas(run)

    @property
    def n_vertices(self) -> int:
        return self.maps.n_vertices

    @property
    def n_targets(self) -> int:
        return self.maps.n_targets

    def to_vertices(self, values: np.ndarray, run: Optional[str] = None) -> np.ndarray:
        return self.maps.to_vertices(values, run)

    def _duration(self, video) -> float:
        if video is not None:
            return float(video.duration_s)
        if self.runs:
            r = next(iter(self.runs.values()))
            return r.ref.onset_s + r.n_trs * r.ref.tr_s
        return 0.0

    @property
    def duration_s(self) -> float:
        return self._duration(self.video)

    @property
    def fps(self) -> float:
        return float(self.video.fps) if self.video is not None else 25.0

    # ---- time ---------------------------------------------------------------------------
    def timebase(self, run: Optional[str] = None) -> TimeBase:
        """Frame, TR, feature row and result row of ``run`` (default: the first run)."""
        return self.timebases.get(run)

    def timeline(self, run: Optional[str] = None) -> Timeline:
        """The clock pairing the episode with ``run`` (cached)."""
        return self.timebases.timeline(run)

    def _attention_tr_index(self, t_s: float) -> int:
        return self.timeline().tr_index(t_s) if self.runs or self.video is not None else 0

    # ---- stimulus -----------------------------------------------------------------------
    def frame_index(self, t_s: float) -> int:
        return self.timeline().frame_index(t_s)

    def frame_at(self, t_s: float) -> Optional[np.ndarray]:
        """RGB frame (H, W, 3) uint8 on screen at ``t_s`` (None without a video)."""
        return None if self.video is None else self.video.frame(self.frame_index(t_s))

    def cue_at(self, t_s: float) -> str:
        return self.stimulus.cue_at(t_s)

    def words_between(self, start_s: float, stop_s: float) -> List[str]:
        return self.stimulus.words_between(start_s, stop_s)

    @property
    def video_is_proxy(self) -> bool:
        return self.stimulus.is_proxy

    def needs_scrub_proxy(self, max_key_spacing: int = 5) -> bool:
        return self.stimulus.needs_scrub_proxy(max_key_spacing)

    def swap_video(self, path) -> bool:
        return self.stimulus.swap_video(path)

    def use_original_video(self) -> bool:
        return self.stimulus.use_original_video()

    # ---- attention overlay (see AttentionSource) -------------------------------------------
    def attention_names(self) -> List[str]:
        return self.attention_source.names()

    def attention(self, name: str):
        return self.attention_source.maps(name)

    def attention_kind(self, name: str) -> str:
        return self.attention_source.kind(name)

    def attention_layers(self, name: str) -> List[str]:
        return self.attention_source.layers(name)

    def attention_heads(self, name: str) -> int:
        return self.attention_source.heads(name)

    def attention_tr(self, name: str, t_s: float) -> Optional[int]:
        return self.attention_source.tr(name, t_s)

    def attention_at(self, name: str, t_s: float, layer="rollout", head="mean"):
        return self.attention_source.at(name, t_s, layer, head)

    def attention_overlay(self, frame_rgb: np.ndarray, name: str, t_s: float, layer="rollout", head="mean",
                          opacity: float = 0.5) -> np.ndarray:
        return self.attention_source.overlay(frame_rgb, name, t_s, layer, head, opacity)

    def attention_frame(self, name: str, t_s: float, layer="rollout", head="mean", opacity: float = 0.5):
        """The frame at ``t_s`` with the patch attention blended over it, (H, W, 3) uint8 RGB
        (the raw frame for token attention, or before the first kept TR)."""
        rgb = self.frame_at(t_s)
        if rgb is None:
            return None
        values, tokens = self.attention_at(name, t_s, layer, head)
        return rgb if values is None or tokens is not None else blend_heatmap(rgb, values, opacity)

    # ---- brain maps (see BrainMaps) --------------------------------------------------------
    def score_map(self) -> np.ndarray:
        return self.maps.score_map()

    def brain_rows(self, run: str):
        return self.maps.brain_rows(run)

    def map_rows(self, run: str, layer: str) -> Optional[np.ndarray]:
        return self.maps.map_rows(run, layer)

    def map_at(self, run: str, layer: str, tr_index: int) -> np.ndarray:
        return self.maps.map_at(run, layer, tr_index)

    def has_prediction(self, run: str) -> bool:
        return self.maps.has_prediction(run)

    def target_vertices(self, target: Target) -> np.ndarray:
        return self.maps.target_vertices(target)

    def target_columns(self, target: Target, run: Optional[str] = None) -> np.ndarray:
        return self.maps.target_columns(target, run)

    def roi_timecourse(self, run: str, target: Target):
        return self.maps.roi_timecourse(run, target)

    def target_score(self, target: Target) -> float:
        return self.maps.target_score(target)

    def region_of_vertex(self, vertex: int) -> Optional[str]:
        return self.maps.region_of_vertex(vertex)

    def region_names(self) -> List[str]:
        return self.maps.region_names()

    # ---- region tables (see RegionTables) -------------------------------------------------
    def region_table(self, result_name: Optional[str] = None, n_boot: int = 1000, ci_level: float = 0.95,
                     seed: int = 0):
        return self.regions.table(result_name, n_boot=n_boot, ci_level=ci_level, seed=seed)

    def region_comparison_job(self, other: str, n_perm: int = 1000, n_boot: int = 1000, seed: int = 0,
                              token=None):
        return self.regions.comparison_job(other, n_perm=n_perm, n_boot=n_boot, seed=seed, token=token)
