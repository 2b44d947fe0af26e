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
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .errors import AlignScopeError, ConfigError, DataError, MismatchError, expected_found
from .project import Episode, Project, RunRef, open_project
from .state import Target
from .timeline import Timeline

__all__ = ["LoadedRun", "ProjectSession", "load_surface", "upsample_grid", "heatmap_rgb", "blend_heatmap",
           "heatmap_frame", "token_shading", "is_special_token", "INFERNO"]

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
_INFERNO_LUT = np.stack([np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(INFERNO)), INFERNO[:, c])
                         for c in range(3)], axis=1)   # 256, 3 in [0, 1]


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
    cv2 = _optional_module("cv2")
    if cv2 is not None:   # same sampling (pixel centres, clamped edges), ~10x faster at 720p
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
    finite = np.isfinite(v)
    lo = float(v[finite].min()) if finite.any() else 0.0
    hi = float(v[finite].max()) if finite.any() else 1.0
    x = np.where(finite, (v - lo) / (hi - lo) if hi > lo else 0.0, 0.0)
    idx = np.clip(np.round(x * 255), 0, 255).astype(np.intp)
    return _INFERNO_LUT[idx].astype(np.float32)


_INFERNO_LUT_U8 = (_INFERNO_LUT * 255.0 + 0.5).astype(np.uint8)


def heatmap_frame(grid_values: np.ndarray, size_hw) -> np.ndarray:
    """A grid map upsampled to ``(H, W)`` and coloured with inferno (min..max), (H, W, 3) uint8.

    Scales to 0..255 on the grid first (bilinear upsampling stays within the grid's range,
    so the result equals colouring the upsampled map) and indexes a uint8 table.
    """
    v = np.asarray(grid_values, dtype=np.float32)
    finite = np.isfinite(v)
    lo = float(v[finite].min()) if finite.any() else 0.0
    hi = float(v[finite].max()) if finite.any() else 1.0
    scaled = np.where(finite, (v - lo) * (255.0 / (hi - lo)) if hi > lo else 0.0, 0.0).astype(np.float32)
    idx = np.clip(upsample_grid(scaled, size_hw) + 0.5, 0, 255).astype(np.uint8)
    return _INFERNO_LUT_U8[idx]


def _blend(frame_u8: np.ndarray, heat_u8: np.ndarray, opacity: float) -> np.ndarray:
    a = float(np.clip(opacity, 0.0, 1.0))
    cv2 = _optional_module("cv2")
    if cv2 is not None:
        return cv2.addWeighted(frame_u8, 1.0 - a, heat_u8, a, 0.0)
    out = frame_u8.astype(np.float32) * (1.0 - a) + heat_u8.astype(np.float32) * a
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def blend_heatmap(frame_rgb: np.ndarray, grid_values: np.ndarray, opacity: float = 0.5) -> np.ndarray:
    """Frame (H, W, 3) uint8 with the grid map upsampled, coloured (inferno) and blended at
    ``opacity`` (0: the frame, 1: the map alone), (H, W, 3) uint8."""
    frame = np.ascontiguousarray(np.asarray(frame_rgb)[..., :3], dtype=np.uint8)
    return _blend(frame, heatmap_frame(grid_values, frame.shape[:2]), opacity)


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
                 result_name: Optional[str] = None, run_atlases: Optional[Dict[str, object]] = None) -> None:
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
        # Parcel tables beside vertex runs (e.g. the demo's Schaefer-400 tables): shown painted
        # per parcel on the cortex through their own atlas.
        self.parcel_runs: Dict[str, LoadedRun] = {}
        self._run_atlases: Dict[str, object] = {}
        for name, r in self.other_runs.items():
            a = (run_atlases or {}).get(name)
            if (a is not None and surface is not None and r.data.ndim == 2 and r.data.shape[1] == len(a.names)
                    and np.asarray(a.labels).size == surface.n_vertices):
                self.parcel_runs[name] = r
                self._run_atlases[name] = a
        self.result = result
        self.result_name = result_name
        self.surface = surface
        self.atlas = atlas
        #: What could not be loaded but did not stop the project opening (the GUI shows these).
        self.notes: List[str] = []
        self.parcel_atlas = None   # set in parcel mode: targets are this atlas's parcels
        if (surface is not None and atlas is not None and n_map is not None and n_map != surface.n_vertices
                and n_map == len(atlas.names) and np.asarray(atlas.labels).size == surface.n_vertices):
            self.parcel_atlas = atlas
        self._timelines: Dict[str, Timeline] = {}
        self._zscored_rows: Dict[tuple, np.ndarray] = {}   # raw runs z-scored per target, for the maps
        self._attention: Dict[str, object] = {}          # name -> AttentionMaps (loaded on first use)
        self._attention_cache: "OrderedDict[tuple, tuple]" = OrderedDict()
        self.video_source_path = None if video is None else getattr(video, "path", None)
        if episode.video and self.video_source_path is not None:
            self.video_source_path = project.path(episode.video)
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
            ``*.alignscope.json``, a folder holding one, or an Algonauts 2025 / BIDS data folder
            (see :func:`engine.project.open_project`).
        episode : str, optional
            Episode name (default: the first one that has runs, else the first one).
        result : str, optional
            Key of ``project.results`` (default: the first one).
        load_mesh : bool
            Load the fsaverage5 surface (skip it for headless use that needs no mesh).
        """
        project = open_project(project_path)
        if not project.episodes:
            raise DataError(f"project {project.name}: expected at least one episode, found none")
        if episode is None:
            with_runs = [e for e in project.episodes if project.runs_for(e.name)]
            ep = (with_runs or project.episodes)[0]
        else:
            ep = project.episode(episode)

        video = None
        if ep.video:
            from .io.proxy import open_for_display

            video = open_for_display(project.path(ep.video))   # the scrub proxy when one is built
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
                try:
                    atlas = atlases.load_atlas(parcel_refs[0].atlas, space=surface.space)
                except AlignScopeError:
                    atlas = None   # not bundled (e.g. Algonauts' Schaefer-1000): the project's own atlas
        atlas_note = None
        if atlas is None:
            try:
                atlas = _load_first_atlas(project, surface.space if surface is not None else "fsaverage5")
            except AlignScopeError as exc:   # the data still opens; regions are unavailable
                atlas_note = f"atlas {project.atlases[0].name}: {exc}"
        run_atlases: Dict[str, object] = {}
        if surface is not None:
            atlases = _optional_module("engine.io.atlases")
            by_name: Dict[str, object] = {}
            for r in runs:
                if r.ref.atlas and r.data.shape[1] != n_map and atlases is not None:
                    if r.ref.atlas not in by_name:
                        try:
                            by_name[r.ref.atlas] = atlases.load_atlas(r.ref.atlas, space=surface.space)
                        except AlignScopeError:
                            by_name[r.ref.atlas] = None   # an unknown atlas: the run stays hidden
                    run_atlases[r.name] = by_name[r.ref.atlas]
        try:
            session = cls(project, ep, video, words, cues, runs, res, surface, atlas, result_name,
                          run_atlases={k: v for k, v in run_atlases.items() if v is not None})
        except MismatchError as exc:
            if atlas_note is None:
                raise
            raise MismatchError(f"{exc}; parcel runs are painted through their atlas, and {atlas_note}") from None
        if atlas_note:
            session.notes.append(atlas_note)
        return session

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
        """Runs in the space of the maps (the result's space): these are fitted and compared."""
        return list(self.runs)

    @property
    def display_run_names(self) -> List[str]:
        """Every run the views can show: :attr:`run_names`, then parcel tables painted per parcel."""
        return list(self.runs) + list(self.parcel_runs)

    def run_atlas(self, run: Optional[str] = None):
        """The atlas whose parcels are the columns of ``run`` (None for a vertex run)."""
        if run is not None and run in self._run_atlases:
            return self._run_atlases[run]
        return self.parcel_atlas

    @property
    def n_vertices(self) -> int:
        """Length of the maps the cortex shows (the surface's vertices when there is one)."""
        return self.surface.n_vertices if self.surface is not None else self.n_targets

    def to_vertices(self, values: np.ndarray, run: Optional[str] = None) -> np.ndarray:
        """Per-target values (..., n_targets) as per-vertex values (..., n_vertices) float32.

        The identity in vertex space; in parcel mode (or for a parcel-table ``run``) each
        vertex gets its parcel's value (NaN on the medial wall).
        """
        values = np.asarray(values, dtype=np.float32)
        atlas = self.run_atlas(run)
        if atlas is None:
            return values
        return atlas.parcel_to_vertex(values)

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
        if name in self.runs:
            return self.runs[name]
        if name in self.parcel_runs:
            return self.parcel_runs[name]
        raise DataError(expected_found("run", f"one of {self.display_run_names}", repr(name)))

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

    # ---- scrub proxy --------------------------------------------------------------------
    @property
    def video_is_proxy(self) -> bool:
        """True when frames are shown from the scrub proxy instead of the episode's file."""
        return (self.video is not None and self.video_source_path is not None
                and Path(self.video.path).resolve() != Path(self.video_source_path).resolve())

    def needs_scrub_proxy(self, max_key_spacing: int = 5) -> bool:
        """True when the episode's key frames are sparse (a seek decodes more than
        ``max_key_spacing`` frames on average) and frames are not already shown from a proxy."""
        if self.video is None or self.video_source_path is None or self.video_is_proxy:
            return False
        keys = np.asarray(self.video.keyframe_indices())
        n = int(self.video.n_frames)
        spacing = n / max(len(keys), 1)   # mean frames per key frame
        return n > max_key_spacing and spacing > max_key_spacing

    def swap_video(self, path) -> bool:
        """Show frames from ``path`` (the scrub proxy, or the original file) from now on.

        The new reader must hold the same frames at the same times (so the timeline, and
        the frame index shown at the current time, do not change); otherwise it is closed,
        the current reader is kept and a MismatchError says why. Returns True if swapped.
        """
        from .io.video import VideoReader

        if self.video is None:
            raise DataError(f"episode {self.episode.name}: expected a video to swap, found none")
        path = Path(path)
        if Path(self.video.path).resolve() == path.resolve():
            return False
        new = VideoReader(path)
        old_times = np.asarray(self.video.frame_times_s)
        if new.n_frames != self.video.n_frames or not np.allclose(new.frame_times_s, old_times, atol=1e-6):
            found = f"{new.n_frames} frames" + (" at other times" if new.n_frames == self.video.n_frames else "")
            new.close()
            raise MismatchError(expected_found(f"frames of {path.name}",
                                               f"{len(old_times)} frames at the episode's times", found))
        old, self.video = self.video, new
        old.close()
        return True

    def use_original_video(self) -> bool:
        """Show frames from the episode's own file again (True if that changed anything)."""
        if not self.video_is_proxy:
            return False
        return self.swap_video(self.video_source_path)

    # ---- attention overlay --------------------------------------------------------------
    def _attention_registry(self) -> Dict[str, str]:
        """``project.extra["attention"]``: name -> relative path of a file written by
        :func:`engine.features.attention.save_attention`; a value may also be
        ``{"path": ..., "episode": ...}`` to tie the file to one episode of the project."""
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

    def attention_names(self) -> List[str]:
        """Attention files registered in ``project.extra["attention"]`` for this episode."""
        return list(self._attention_registry())

    def attention(self, name: str):
        """The :class:`~engine.features.base.AttentionMaps` registered as ``name`` (loaded once)."""
        if name not in self._attention:
            names = self.attention_names()
            if name not in names:
                raise DataError(expected_found("attention file", f"one of {names}", repr(name)))
            path = self.project.path(self._attention_registry()[name])
            if path is None or not Path(path).exists():
                raise DataError(expected_found(f"attention file {name!r}", f"{path} to exist", "nothing there"))
            from .features.attention import load_attention

            maps = load_attention(path)
            if maps.kind not in ("patches", "tokens", "video_patches"):
                raise DataError(expected_found(f"attention {name!r} kind", "patches, tokens or video_patches",
                                               repr(maps.kind)))
            if maps.kind == "tokens" and len(maps.meta.get("tokens", [])) != len(maps.tr_indices):
                raise DataError(expected_found(f"attention {name!r} tokens", f"one list per kept TR "
                                               f"({len(maps.tr_indices)})", len(maps.meta.get("tokens", []))))
            self._attention[name] = maps
        return self._attention[name]

    def attention_kind(self, name: str) -> str:
        """``"patches"`` (a map over the frame) or ``"tokens"`` (weights over words)."""
        kind = self.attention(name).kind
        return "patches" if kind == "video_patches" else kind

    def attention_layers(self, name: str) -> List[str]:
        """``"rollout"`` then the layer names, as ``attention_at`` takes them."""
        return ["rollout"] + [str(x) for x in self.attention(name).layers]

    def attention_heads(self, name: str) -> int:
        """Heads kept per layer (1 when the file kept only their mean)."""
        return int(self.attention(name).maps.shape[2])

    def attention_tr(self, name: str, t_s: float) -> Optional[int]:
        """The kept TR whose attention is shown at ``t_s``: the nearest kept TR at or before
        the TR being acquired then (through the timeline); None before the first kept one."""
        kept = np.asarray(self.attention(name).tr_indices)
        k = self.timeline().tr_index(t_s) if self.runs or self.video is not None else 0
        pos = int(np.searchsorted(kept, k, side="right")) - 1
        return None if pos < 0 else int(kept[pos])

    def attention_at(self, name: str, t_s: float, layer="rollout", head="mean"):
        """Attention shown at ``t_s``.

        Parameters
        ----------
        name : str
            One of :meth:`attention_names`.
        t_s : float
            Seconds into the episode; the kept TR is :meth:`attention_tr`.
        layer : str or int
            ``"rollout"``, a layer name (e.g. ``"layer06"``) or its 1-based number.
        head : "mean" or int
            Mean over heads, or one head (0-based); ignored for the rollout.

        Returns
        -------
        values : ndarray float32 or None
            ``(grid_h, grid_w)`` for image models (time slots of video models averaged),
            ``(n_tokens,)`` for language models (the context's tokens); None before the first kept TR.
        tokens : list of str or None
            The context's tokens for language models.
        """
        maps = self.attention(name)
        tr = self.attention_tr(name, t_s)
        if tr is None:
            return None, None
        layer_i = self._attention_layer(maps, layer)
        head_i = self._attention_head(maps, head, layer_i)
        key = (name, tr, layer_i, head_i)
        if key in self._attention_cache:
            self._attention_cache.move_to_end(key)
            return self._attention_cache[key]
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
        self._attention_cache[key] = out
        while len(self._attention_cache) > 256:
            self._attention_cache.popitem(last=False)
        return out

    @staticmethod
    def _attention_layer(maps, layer) -> Optional[int]:
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
    def _attention_head(maps, head, layer_i) -> Optional[int]:
        if head is None or head == "mean" or layer_i is None:
            return None
        n = int(maps.maps.shape[2])
        if maps.meta.get("heads") == "mean" or not isinstance(head, (int, np.integer)) or not 0 <= int(head) < n:
            raise ConfigError(expected_found("attention head", "'mean'" + (f" or 0..{n - 1}"
                                             if maps.meta.get("heads") != "mean" else " (this file kept only "
                                             "the mean over heads)"), repr(head)))
        return int(head)

    def attention_overlay(self, frame_rgb: np.ndarray, name: str, t_s: float, layer="rollout", head="mean",
                          opacity: float = 0.5) -> np.ndarray:
        """``frame_rgb`` (H, W, 3) uint8 with the patch attention at ``t_s`` blended over it.

        The coloured, upsampled map is cached per (file, kept TR, layer, head, frame size),
        so scrubbing within a TR only blends. The frame itself is returned for token
        attention or before the first kept TR.
        """
        values, tokens = self.attention_at(name, t_s, layer, head)
        if values is None or tokens is not None:
            return frame_rgb
        tr = self.attention_tr(name, t_s)
        key = ("heat", name, tr, self._attention_layer(self.attention(name), layer),
               self._attention_head(self.attention(name), head, self._attention_layer(self.attention(name), layer)),
               tuple(frame_rgb.shape[:2]))
        heat = self._attention_cache.get(key)
        if heat is None:
            heat = heatmap_frame(values, frame_rgb.shape[:2])
            self._attention_cache[key] = heat   # H, W, 3 uint8
            while len(self._attention_cache) > 64:
                self._attention_cache.popitem(last=False)
        return _blend(np.ascontiguousarray(frame_rgb[..., :3]), heat, opacity)

    def attention_frame(self, name: str, t_s: float, layer="rollout", head="mean", opacity: float = 0.5):
        """The frame at ``t_s`` with the patch attention blended over it, (H, W, 3) uint8 RGB.

        The raw frame for token attention, or before the first kept TR.
        """
        rgb = self.frame_at(t_s)
        if rgb is None:
            return None
        values, tokens = self.attention_at(name, t_s, layer, head)
        if values is None or tokens is not None:
            return rgb
        return blend_heatmap(rgb, values, opacity)

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

    def target_columns(self, target: Target, run: Optional[str] = None) -> np.ndarray:
        """Columns of the runs (and result) a target covers: its vertices, or in parcel
        mode (or for a parcel-table ``run``) its parcel (a vertex stands for the parcel it
        lies in; a region of another atlas for the parcels its vertices lie in)."""
        atlas = self.run_atlas(run)
        if atlas is None:
            return self.target_vertices(target)
        labels = np.asarray(atlas.labels)
        if target.kind == "vertex":
            self.target_vertices(target)   # bounds check
            k = int(labels[target.vertex])
            if k == 0:
                raise DataError(expected_found(f"vertex {target.vertex}",
                                               f"a vertex inside a parcel of {atlas.name}",
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
        """Measured and predicted time courses of a vertex or region (mean over its vertices).

        Returns
        -------
        tr_times_s : (n,) float64
            Episode time at which each TR starts.
        measured, predicted : (n,) float32
            ``predicted`` is all-NaN when the session holds no result for ``run``.
        """
        times, meas, pred = self.brain_rows(run)
        cols = self.target_columns(target, run)
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

    def has_prediction(self, run: str) -> bool:
        """True when the encoding result holds held-out predictions for ``run``."""
        return self._result_run_index(self.run(run).name) is not None

    def map_rows(self, run: str, layer: str) -> Optional[np.ndarray]:
        """Rows (n, n_targets) the cortex shows for ``layer`` of ``run``: the result's held-out
        rows (z-scored by the fit), or for a run without a result its data z-scored per target
        over the run (file units differ between targets: a baseline of 1000 would hide the
        response). None when there is nothing to show (no prediction)."""
        times, meas, pred = self.brain_rows(run)
        if layer == "predicted":
            return pred
        if pred is not None:
            return meas
        key = ("zscored", self.run(run).name)
        if key not in self._zscored_rows:
            m = meas.astype(np.float64)
            sd = m.std(0)
            z = (m - m.mean(0)) / np.where(sd > 0, sd, 1.0)
            self._zscored_rows[key] = z.astype(np.float32)
        return self._zscored_rows[key]

    def map_at(self, run: str, layer: str, tr_index: int) -> np.ndarray:
        """The map the cortex shows: "score", or "measured"/"predicted" at one TR, (n_vertices,) float32
        (see :meth:`map_rows`)."""
        if layer == "score":
            return self.score_map()
        if layer not in ("measured", "predicted"):
            raise ConfigError(f"layer: expected one of ['score', 'measured', 'predicted'], found {layer!r}")
        times, _, _ = self.brain_rows(run)
        rows = self.map_rows(run, layer)
        if rows is None:
            return np.full(self.n_vertices, np.nan, dtype=np.float32)
        tl = self.timeline(run)
        first = int(round((times[0] - tl.onset_s) / tl.tr_s)) if len(times) else 0
        k = int(tr_index) - first
        if not 0 <= k < rows.shape[0]:
            return np.full(self.n_vertices, np.nan, dtype=np.float32)  # an edge TR the result dropped
        return self.to_vertices(rows[k], run)

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

    # ---- region tables ------------------------------------------------------------------
    def _region_labels(self) -> Tuple[np.ndarray, np.ndarray]:
        """Atlas label per target of the result (n_targets,) and vertices per label (n_labels + 1,)."""
        if self.atlas is None:
            raise DataError("region table: expected an atlas in the project, found none")
        vertex_labels = np.asarray(self.atlas.labels).astype(np.int64)
        n_vertices = np.bincount(np.clip(vertex_labels, 0, None), minlength=len(self.atlas.names) + 1)
        if self.parcel_atlas is not None:   # one target per parcel
            return np.arange(1, len(self.atlas.names) + 1, dtype=np.int64), n_vertices
        return vertex_labels, n_vertices

    def _hemispheres(self) -> Dict[int, str]:
        """"left", "right" or "both" per atlas label (left-hemisphere vertices come first)."""
        labels = np.asarray(self.atlas.labels).astype(np.int64)
        n_left = int(getattr(self.surface, "n_left", 0) or labels.size // 2)
        left = np.bincount(np.clip(labels[:n_left], 0, None), minlength=len(self.atlas.names) + 1)
        right = np.bincount(np.clip(labels[n_left:], 0, None), minlength=len(self.atlas.names) + 1)
        return {k: ("both" if left[k] and right[k] else "left" if left[k] else "right")
                for k in range(1, len(self.atlas.names) + 1)}

    def load_result(self, name: Optional[str] = None):
        """The encoding result ``name`` of the project (the open one when None or the same name)."""
        if name is None or name == self.result_name:
            if self.result is None:
                raise DataError("encoding result: expected one in the project, found none")
            return self.result
        if name not in self.project.results:
            raise DataError(expected_found("result", f"one of {list(self.project.results)}", repr(name)))
        from .encoding.results import EncodingResult

        return EncodingResult.load(self.project.path(self.project.results[name]))

    def region_table(self, result_name: Optional[str] = None, n_boot: int = 1000, ci_level: float = 0.95,
                     seed: int = 0):
        """One row per atlas region: how well the result predicts it.

        Parameters
        ----------
        result_name : str, optional
            A key of ``project.results`` (default: the open result).
        n_boot, ci_level, seed
            Bootstrap over the region's targets (:func:`engine.encoding.regions.region_summary`,
            ``ci="targets"``).

        Returns
        -------
        DataFrame with ``region, label, hemisphere, n_vertices, n_targets, mean_r, ci_low,
        ci_high, frac_positive`` (fraction of the region's targets with r > 0), sorted by
        ``mean_r`` descending (NaN last).
        """
        from .encoding.regions import make_regions, region_means, region_summary

        result = self.load_result(result_name)
        scores = np.asarray(result.scores, dtype=np.float64).ravel()   # n_targets
        labels, n_vertices = self._region_labels()
        names = list(self.atlas.names)
        table = region_summary(scores, labels, names, ci="targets", n_boot=n_boot, ci_level=ci_level, seed=seed)
        regions = make_regions(labels, names, n_targets=scores.size)
        positive = np.where(np.isfinite(scores), (scores > 0).astype(np.float64), np.nan)
        hemis = self._hemispheres()
        table = table.rename(columns={"mean_score": "mean_r"}).drop(columns=["frac_significant"])
        table["frac_positive"] = region_means(positive, regions)
        table.insert(2, "hemisphere", [hemis[int(k)] for k in table["label"]])
        table.insert(3, "n_vertices", [int(n_vertices[int(k)]) for k in table["label"]])
        return table.sort_values("mean_r", ascending=False, na_position="last", kind="stable").reset_index(drop=True)

    def region_comparison_job(self, other: str, n_perm: int = 1000, n_boot: int = 1000, seed: int = 0,
                              token=None):
        """Job: region by region, the open result minus result ``other`` (paired block tests).

        Runs :func:`engine.encoding.stats.compare_models_job` (block-swap permutations,
        block bootstrap) on the two results' held-out predictions, then
        :func:`engine.encoding.regions.region_comparison` on the atlas.

        Returns
        -------
        DataFrame with ``region, label, n_targets, mean_a, mean_b, mean_difference`` (the test
        statistic), ``delta_r`` (region mean of the saved scores' difference, open minus
        ``other``), ``ci_low, ci_high`` (of the statistic), ``p_value, q_value`` (BH-FDR across
        regions), ``frac_targets_a_better``.

        Raises
        ------
        MismatchError
            When the two results do not cover the same targets or runs.
        """
        from .encoding.regions import make_regions, region_comparison, region_means
        from .encoding.stats import compare_models_job
        from .jobs import Progress

        mine = self.load_result(None)
        yield Progress(0, 0, f"loading result {other!r}")
        theirs = self.load_result(other)
        n_a, n_b = np.asarray(mine.scores).size, np.asarray(theirs.scores).size
        if n_a != n_b:
            raise MismatchError(expected_found(f"result {other!r} targets", f"{n_a} like {self.result_name!r}",
                                               n_b) + " (results of different targets cannot be compared)")
        runs_a = list(getattr(mine, "run_names", []) or [])
        runs_b = list(getattr(theirs, "run_names", []) or [])
        if runs_a and runs_b and runs_a != runs_b:
            raise MismatchError(expected_found(f"runs of result {other!r}", runs_a, runs_b))
        if token is not None:
            token.raise_if_cancelled()
        comparison = yield from compare_models_job(mine, theirs, n_perm=n_perm, n_boot=n_boot, seed=seed,
                                                   token=token)
        labels, _ = self._region_labels()
        names = list(self.atlas.names)
        table = region_comparison(comparison, labels, names)
        # delta r of the saved scores (the region table's mean r columns); the test statistic
        # ``mean_difference`` centres both models' predictions alike, so it can differ by ~1e-3
        diff = np.asarray(mine.scores, dtype=np.float64).ravel() - np.asarray(theirs.scores, dtype=np.float64).ravel()
        table.insert(6, "delta_r", region_means(diff, make_regions(labels, names, n_targets=diff.size)))
        return table


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


def _load_first_atlas(project: Project, surface_space: str = "fsaverage5"):
    """The project's first atlas (``builtin:<name>`` or a file), via engine.io.atlases.

    A label volume (e.g. the per-subject Schaefer-1000 NIfTI of the Algonauts release) is
    projected onto the surface the views show.
    """
    if not project.atlases:
        return None
    atlases = _optional_module("engine.io.atlases")
    if atlases is None:
        return None
    ref = project.atlases[0]
    if ref.path and not ref.path.startswith("builtin:"):
        path = str(project.path(ref.path))
        volume = path.endswith((".nii", ".nii.gz")) and not path.endswith((".dlabel.nii", ".label.nii"))
        return atlases.load_atlas(path, space=surface_space if volume else ref.space)
    return atlases.load_atlas(ref.path or ref.name, space=ref.space)
