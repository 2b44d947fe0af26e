"""Data folders as projects: the layer above the project file model and the folder readers.

``engine.project`` knows the project file; ``engine.io.algonauts`` / ``engine.io.bids`` know
the folders; this package turns a folder into a :class:`~engine.project.Project` and is what
every command, the window and a notebook call to open what a user points at:

- :func:`load_project` (``open_project``): a project file, a folder holding one, an Algonauts
  2025 folder or a BIDS / fMRIPrep folder -> Project. Never writes.
- :func:`ensure_project_file`: the project file of that path, written for a data folder when a
  result needs a home.
- :func:`episode_tr`: the TR of an episode, from the runs paired with it (a clash is an error).
- :func:`confounds_for_runs`: a named confound set per run, for the fit.
- :func:`pairing_table`: episode <-> runs per subject, missing and held-out marked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from ..errors import ConfigError, DataError, MismatchError, expected_found
from ..project import PROJECT_SUFFIX, Project, RunRef

__all__ = ["detect_layout", "load_project", "open_project", "open_data_folder", "ensure_project_file", "default_project_file",
           "episode_tr", "confounds_for_runs", "pairing_table", "format_pairing_table", "run_surface_atlas",
           "open_algonauts_folder", "discover_bids"]

TR_TOLERANCE_S = 1e-3


def detect_layout(path, data_only: bool = False) -> Optional[str]:
    """What a path is: ``"project"`` (a project file, or a folder holding one), ``"algonauts"``
    (an Algonauts 2025 folder), ``"bids"`` (a BIDS / fMRIPrep folder), or None.

    ``data_only``: the layout of the data in a folder, even when a project file lies in it.
    """
    path = Path(path)
    if path.is_file():
        return "project" if path.name.endswith(PROJECT_SUFFIX) and not data_only else None
    if not path.is_dir():
        return None
    if not data_only and any(path.glob(f"*{PROJECT_SUFFIX}")):
        return "project"
    if any(path.rglob("sub-*_task-*_bold.h5")) or (path / "stimuli" / "movies").is_dir():
        return "algonauts"
    if (path / "dataset_description.json").exists() or any(path.glob("sub-*/**/*_bold.*")):
        return "bids"
    return None


def open_algonauts_folder(path, tr_s: Optional[float] = None) -> Project:
    """See :func:`engine.importers.algonauts.open_algonauts_folder`."""
    from .algonauts import open_algonauts_folder as _open

    return _open(path, tr_s=tr_s)


def discover_bids(path, tr_s: Optional[float] = None, space: Optional[str] = None,
                  desc: Optional[str] = None) -> Project:
    """See :func:`engine.importers.bids.discover_bids`."""
    from .bids import discover_bids as _discover

    return _discover(path, tr_s=tr_s, space=space, desc=desc)


def load_project(path, tr_s: Optional[float] = None) -> Project:
    """Open what a user points at as a :class:`~engine.project.Project`; nothing is written.

    Parameters
    ----------
    path : path
        A ``*.alignscope.json`` file, a folder holding one, an Algonauts 2025 folder (its runs
        paired with the episode parts) or a BIDS / fMRIPrep folder (runs found by file-name
        entities). A data folder opened this way has ``root`` at the folder.
    tr_s : float, optional
        The user's ``--tr`` for data folders (where the files hold none); ignored for a
        project file, whose runs store theirs.
    """
    layout = detect_layout(path)
    if layout == "project":
        return Project.load(path)
    if layout == "algonauts":
        return open_algonauts_folder(path, tr_s=tr_s)
    if layout == "bids":
        return discover_bids(path, tr_s=tr_s)
    raise DataError(f"{path}: expected a *{PROJECT_SUFFIX} project file, a folder holding one, an Algonauts "
                    f"2025 folder (fmri/sub-XX/func/*_bold.h5, stimuli/movies/) or a BIDS folder "
                    f"(dataset_description.json, sub-XX/**/*_bold.*), found "
                    + ("nothing at that path" if not Path(path).exists() else "none of these"))


open_project = load_project


def open_data_folder(path, tr_s: Optional[float] = None) -> Project:
    """Read an Algonauts 2025 or BIDS / fMRIPrep folder as data, ignoring a project file in it
    (``project init --force`` rebuilds one this way). Never writes."""
    layout = detect_layout(path, data_only=True)
    if layout == "algonauts":
        return open_algonauts_folder(path, tr_s=tr_s)
    if layout == "bids":
        return discover_bids(path, tr_s=tr_s)
    raise DataError(f"{path}: expected an Algonauts 2025 folder (fmri/sub-XX/func/*_bold.h5, stimuli/movies/) or a "
                    "BIDS folder (dataset_description.json, sub-XX/**/*_bold.*), found "
                    + ("nothing at that path" if not Path(path).exists() else "neither"))


def default_project_file(folder) -> Path:
    """Where a data folder's project file goes: ``<folder>/<folder name>.alignscope.json``."""
    folder = Path(folder).resolve()
    return folder / f"{folder.name}{PROJECT_SUFFIX}"


def ensure_project_file(path, tr_s: Optional[float] = None) -> Path:
    """The project file of ``path``; for a data folder, one is written first (results need a home).

    A project file (or a folder holding one) is returned as is. A data folder gets
    ``<folder>/<folder name>.alignscope.json`` (atomically); where the folder cannot be written
    the error says to run ``project init FOLDER --out FILE``.
    """
    path = Path(path)
    if detect_layout(path) == "project":
        return path if path.is_file() else sorted(path.glob(f"*{PROJECT_SUFFIX}"))[0]
    project = load_project(path, tr_s=tr_s)
    out = default_project_file(path)
    try:
        return project.save(out)
    except OSError as exc:
        raise DataError(expected_found(f"project file for {path}", f"a writable folder to hold {out.name}",
                                       f"{exc.__class__.__name__}: {exc}; run `python main.py project init "
                                       f"{path} --out FILE` to put the project file elsewhere")) from None


# ---- TR ----------------------------------------------------------------------------------
def episode_tr(project: Project, episode: Optional[str] = None, tr_s: Optional[float] = None,
               runs: Optional[Sequence[RunRef]] = None) -> float:
    """The TR (seconds) of an episode, from the runs paired with it.

    Parameters
    ----------
    episode : str, optional
        Episode name (``runs`` may be given instead).
    tr_s : float, optional
        The user's ``--tr``. Used when no run gives a TR (a stimulus without fMRI, e.g. a held-out
        test episode, takes the project's TR when all its runs share one); must agree with it otherwise.

    Raises
    ------
    MismatchError
        The paired runs disagree, or ``--tr`` disagrees with them.
    ConfigError
        No run, no project TR and no ``--tr``.
    """
    if runs is None:
        runs = project.runs_for(episode) if episode is not None else list(project.runs)
    trs = sorted({round(float(r.tr_s), 6) for r in runs if r.tr_s and r.tr_s > 0})
    what = f"episode {episode}" if episode else "these runs"
    if len(trs) > 1:
        raise MismatchError(expected_found(f"TR of {what}", "one TR shared by its runs",
                                           f"{trs} s across {len(runs)} runs; fit runs of one TR together"))
    if not trs:
        everything = sorted({round(float(r.tr_s), 6) for r in project.runs if r.tr_s and r.tr_s > 0})
        stored = project.extra.get("tr_s")
        if len(everything) == 1:
            trs = everything
        elif stored:
            trs = [float(stored)]
    if not trs:
        if tr_s:
            return float(tr_s)
        raise ConfigError(expected_found(f"TR of {what}", "runs paired with it, or --tr S",
                                         "neither (give --tr)"))
    if tr_s and abs(float(tr_s) - trs[0]) > TR_TOLERANCE_S:
        raise MismatchError(expected_found(f"TR of {what}", f"{trs[0]} s (from its runs)",
                                           f"--tr {tr_s}; drop --tr (the runs' TR is used) or fix the runs' TR"))
    return float(trs[0])


# ---- confounds ---------------------------------------------------------------------------
def confounds_for_runs(project: Project, runs: Sequence[Union[RunRef, str]], set_name: str,
                       n_trs: Optional[Sequence[int]] = None) -> List[np.ndarray]:
    """A named confound set for each run, read from its fMRIPrep confounds TSV.

    Parameters
    ----------
    runs : RunRef or run names
    set_name : str
        ``motion6``, ``motion12``, ``motion24``, ``wm_csf``, ``wm_csf4``, ``global`` or several
        joined with ``+`` (``motion24+wm_csf``); see :func:`engine.io.bids.read_confound_set`
        (``n/a`` first rows filled: derivatives with 0, other columns with their first value).
    n_trs : sequence of int, optional
        Each run's TR count; a table of another length is an error.

    Returns
    -------
    list of ndarray (n_trs, k) float32, one per run, in the order given.
    """
    from ..io.bids import read_confound_set

    by_name = {r.name: r for r in project.runs}
    out = []
    for i, r in enumerate(runs):
        ref = by_name.get(r) if isinstance(r, str) else r
        if ref is None:
            raise DataError(expected_found("run", f"one of {list(by_name)[:5]}...", repr(r)))
        if not ref.confounds:
            raise DataError(expected_found(f"confounds of run {ref.name}", "a desc-confounds_timeseries.tsv "
                                           "beside it (fMRIPrep)", "none; drop --confounds for these runs"))
        values, _names = read_confound_set(project.path(ref.confounds), set_name)
        if n_trs is not None and values.shape[0] != int(n_trs[i]):
            raise MismatchError(expected_found(f"confounds of run {ref.name}", f"{int(n_trs[i])} rows (one per TR)",
                                               f"{values.shape[0]} rows in {Path(ref.confounds).name}"))
        out.append(values)
    return out


# ---- pairing -------------------------------------------------------------------------------
def pairing_table(project: Project) -> List[Dict]:
    """Episode <-> runs per subject.

    Returns
    -------
    list of dict, one per episode, in project order:
        ``episode``, ``video`` / ``words`` (bool: found), ``held_out`` (None or the reason),
        ``subjects``: {subject: {"runs": [run names], "status": "paired" | "missing" |
        "known missing" | "held out"}}.
    """
    subjects = sorted({r.subject for r in project.runs})
    missing = {(m["subject"], m["episode"]): m.get("known", False) for m in project.extra.get("missing_runs", [])}
    held = {h["episode"]: h["reason"] for h in project.extra.get("held_out_episodes", [])}
    runs: Dict[tuple, List[str]] = {}
    for r in project.runs:
        runs.setdefault((r.episode, r.subject), []).append(r.name)
    rows = []
    for e in project.episodes:
        per = {}
        for s in subjects:
            names = runs.get((e.name, s), [])
            if names:
                status = "paired"
            elif e.name in held:
                status = "held out"
            elif (s, e.name) in missing and missing[(s, e.name)]:
                status = "known missing"
            else:
                status = "missing"
            per[s] = {"runs": names, "status": status}
        rows.append({"episode": e.name, "video": e.video is not None, "words": e.words is not None,
                     "held_out": held.get(e.name), "subjects": per})
    return rows


def format_pairing_table(rows: List[Dict], max_rows: Optional[int] = None) -> str:
    """The pairing table as aligned text: one line per episode, one column per subject
    (``1``/``2`` runs, ``missing``, ``known-missing``, ``held-out``)."""
    if not rows:
        return "(no episodes)"
    subjects = list(rows[0]["subjects"])
    cell = {"missing": "MISSING", "known missing": "known-missing", "held out": "held-out"}
    width = max(len("episode"), max(len(r["episode"]) for r in rows))
    cols = [max(len(s), 13) for s in subjects]
    head = "episode".ljust(width) + "  video words  " + "  ".join(s.ljust(c) for s, c in zip(subjects, cols))
    lines = [head]
    shown = rows if max_rows is None else rows[:max_rows]
    for r in shown:
        cells = []
        for s, c in zip(subjects, cols):
            p = r["subjects"][s]
            text = (f"{len(p['runs'])} run" + ("s" if len(p["runs"]) > 1 else "")) if p["status"] == "paired" \
                else cell[p["status"]]
            cells.append(text.ljust(c))
        note = f"  ({r['held_out']})" if r["held_out"] else ""
        lines.append(r["episode"].ljust(width) + "  " + ("yes" if r["video"] else "-").ljust(5) + " "
                     + ("yes" if r["words"] else "-").ljust(5) + "  " + "  ".join(cells).rstrip() + note)
    if max_rows is not None and len(rows) > max_rows:
        lines.append(f"... ({len(rows) - max_rows} more episodes; --json lists all)")
    return "\n".join(lines)


# ---- atlases -------------------------------------------------------------------------------
def run_surface_atlas(project: Project, run: Union[RunRef, str], space: str = "fsaverage5", cache_dir=None):
    """How a parcel run is painted on the cortex.

    For an Algonauts run (``atlas="schaefer1000"``) the subject's own Schaefer-1000 NIfTI
    is projected to ``space`` (cached); for a run naming a bundled atlas, that atlas.

    Returns
    -------
    engine.io.atlases.SurfaceProjection or None
        ``.atlas`` (vertex -> parcel labels), ``.fraction_reached`` (parcels with >= 1 vertex);
        None for a run that names no atlas (vertex data).
    """
    from ..io import atlases as atl

    ref = next((r for r in project.runs if r.name == run), None) if isinstance(run, str) else run
    if ref is None:
        raise DataError(expected_found("run", f"one of {[r.name for r in project.runs][:5]}...", repr(run)))
    if not ref.atlas:
        return None
    if ref.atlas == "schaefer1000":
        from .algonauts import subject_atlas_path

        from ..io.algonauts import N_PARCELS

        return atl.surface_atlas_from_volume(subject_atlas_path(project, ref.subject), n_parcels=N_PARCELS,
                                             space=space, name=f"{ref.subject}_schaefer1000", cache_dir=cache_dir)
    atlas = atl.load_atlas(ref.atlas if "/" not in ref.atlas else str(project.path(ref.atlas)), space=space)
    return atl.SurfaceProjection(atlas, float((atlas.vertices_per_parcel() > 0).mean()),
                                 int((atlas.vertices_per_parcel() > 0).sum()), atlas.n_parcels, None)
