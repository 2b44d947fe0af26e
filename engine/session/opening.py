"""Opening a project for the views: episode, video, text, runs, result, surface and atlases.

:func:`open_parts` reads everything :class:`engine.session.ProjectSession` holds (one call,
one place); :func:`load_result` reads one of the project's results. Files of other formats
are read through :mod:`engine.io` (brain runs, atlases, surfaces, text).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..errors import AlignScopeError, DataError, expected_found
from ..importers import open_project
from ..project import Episode, Project, RunRef

__all__ = ["LoadedRun", "OpenedParts", "open_parts", "load_surface", "load_result", "load_run_data",
           "map_size", "load_project_atlas"]


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


@dataclass
class OpenedParts:
    """What :func:`open_parts` read: the arguments of ``ProjectSession(...)`` plus notes."""

    project: Project
    episode: Episode
    video: object = None
    words: object = None
    cues: object = None
    runs: List[LoadedRun] = field(default_factory=list)
    result: object = None
    surface: object = None
    atlas: object = None
    result_name: Optional[str] = None
    run_atlases: Dict[str, object] = field(default_factory=dict)
    atlas_note: Optional[str] = None


def load_surface(kind: str = "inflated"):
    """The fsaverage5 surface (nilearn's bundled copy underneath)."""
    from ..io.surfaces import load_fsaverage5

    return load_fsaverage5(kind)


def load_result(project: Project, name: str):
    """The :class:`~engine.encoding.results.EncodingResult` registered as ``name`` in ``project``."""
    from ..encoding.results import EncodingResult

    if name not in project.results:
        raise DataError(expected_found("result", f"one of {list(project.results)}", repr(name)))
    path = project.path(project.results[name])
    if path is None or not Path(path).exists():
        raise DataError(expected_found(f"result {name!r}", f"its file {path} to exist", "nothing there"))
    return EncodingResult.load(path)


def load_run_data(ref: RunRef, project: Project) -> np.ndarray:
    """A run's data (n_trs, n_targets) float32 through :func:`engine.io.fmri.load_run`."""
    from ..io.fmri import load_run

    data = np.asarray(load_run(ref, project).data, dtype=np.float32)
    if data.ndim != 2:
        raise DataError(expected_found(f"run {ref.name}", "a 2-D (n_trs, n_targets) array", f"shape {data.shape}"))
    return data


def map_size(runs: Sequence[LoadedRun], result, surface) -> Optional[int]:
    """Length of the maps the session shows: the result's targets, else the vertex runs' columns."""
    if result is not None:
        return int(np.asarray(result.scores).shape[0])
    sizes = [int(r.data.shape[1]) for r in runs if r.data.ndim == 2]
    if surface is not None and (int(surface.n_vertices) in sizes or not sizes):
        return int(surface.n_vertices)     # vertex runs first
    vertex_runs = [r for r in runs if r.ref.space != "parcels"]
    return int(vertex_runs[0].data.shape[1]) if vertex_runs else (int(runs[0].data.shape[1]) if runs else None)


def load_project_atlas(project: Project, surface_space: str = "fsaverage5"):
    """The project's first atlas (``builtin:<name>`` or a file), None when it lists none.

    A label volume (e.g. the per-subject Schaefer-1000 NIfTI of the Algonauts release) is
    projected onto the surface the views show.
    """
    if not project.atlases:
        return None
    from ..io.atlases import load_atlas

    ref = project.atlases[0]
    if ref.path and not ref.path.startswith("builtin:"):
        path = str(project.path(ref.path))
        volume = path.endswith((".nii", ".nii.gz")) and not path.endswith((".dlabel.nii", ".label.nii"))
        return load_atlas(path, space=surface_space if volume else ref.space)
    return load_atlas(ref.path or ref.name, space=ref.space)


def _choose_episode(project: Project, episode: Optional[str]) -> Episode:
    if not project.episodes:
        raise DataError(f"project {project.name}: expected at least one episode, found none")
    if episode is not None:
        return project.episode(episode)
    with_runs = [e for e in project.episodes if project.runs_for(e.name)]
    return (with_runs or project.episodes)[0]


def _atlases(runs, n_map, surface, project):
    """The atlas of the maps, its note when it could not be read, and the atlas of each parcel
    table beside vertex runs (run name -> Atlas)."""
    from ..io.atlases import load_atlas

    atlas = None
    parcel_refs = [r.ref for r in runs if r.ref.atlas and r.data.shape[1] == n_map]
    note = None
    if surface is not None and n_map != surface.n_vertices and parcel_refs:
        try:   # a bundled atlas, or the subject's own (Algonauts' Schaefer-1000 NIfTI projected, cached)
            from ..importers import run_surface_atlas

            painted = run_surface_atlas(project, parcel_refs[0], space=surface.space)
            atlas = painted.atlas
            if painted.n_reached < painted.n_parcels:
                note = (f"{painted.n_reached} of {painted.n_parcels} parcels of {atlas.name} reach the cortex "
                        f"({100 * painted.fraction_reached:.1f}%); the others are not painted")
        except AlignScopeError:
            atlas = None   # not readable: the project's own atlas
    if atlas is None:
        try:
            atlas = load_project_atlas(project, surface.space if surface is not None else "fsaverage5")
        except AlignScopeError as exc:   # the data still opens; regions are unavailable
            note = f"atlas {project.atlases[0].name}: {exc}"
    run_atlases: Dict[str, object] = {}
    if surface is not None:
        by_name: Dict[str, object] = {}
        for r in runs:
            if r.ref.atlas and r.data.shape[1] != n_map:
                if r.ref.atlas not in by_name:
                    try:
                        by_name[r.ref.atlas] = load_atlas(r.ref.atlas, space=surface.space)
                    except AlignScopeError:
                        by_name[r.ref.atlas] = None   # an unknown atlas: the run stays hidden
                if by_name[r.ref.atlas] is not None:
                    run_atlases[r.name] = by_name[r.ref.atlas]
    return atlas, note, run_atlases


def open_parts(project_path, episode: Optional[str] = None, result: Optional[str] = None,
               load_mesh: bool = True) -> OpenedParts:
    """Read a project file (or folder) and everything the views need for one episode.

    Parameters
    ----------
    project_path : str or Path
        ``*.alignscope.json``, a folder holding one, or an Algonauts 2025 / BIDS data folder
        (see :func:`engine.importers.load_project`).
    episode : str, optional
        Episode name (default: the first one that has runs, else the first one).
    result : str, optional
        Key of ``project.results`` (default: the first one).
    load_mesh : bool
        Load the fsaverage5 surface (skip it for headless use that needs no mesh).
    """
    project = open_project(project_path)
    ep = _choose_episode(project, episode)
    parts = OpenedParts(project, ep)
    if ep.video:
        from ..io.proxy import open_for_display

        parts.video = open_for_display(project.path(ep.video))   # the scrub proxy when one is built
    if ep.words or ep.subtitles:
        from ..io.text import read_cues, read_words

        if ep.words:
            parts.words = read_words(project.path(ep.words))
        if ep.subtitles:
            parts.cues = read_cues(project.path(ep.subtitles))
    parts.runs = [LoadedRun(ref, load_run_data(ref, project)) for ref in project.runs_for(ep.name)]
    if project.results:
        parts.result_name = result if result is not None else next(iter(project.results))
        parts.result = load_result(project, parts.result_name)
    parts.surface = load_surface("inflated") if load_mesh else None
    n_map = map_size(parts.runs, parts.result, parts.surface)
    parts.atlas, parts.atlas_note, parts.run_atlases = _atlases(parts.runs, n_map, parts.surface, project)
    return parts
