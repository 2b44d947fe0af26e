"""Run every quality check of a project, a data folder, or runs + an episode.

Entry points
------------
- :func:`qc_path` (a project file, a folder holding one, an Algonauts / BIDS folder),
  :func:`qc_project` (a :class:`~engine.project.Project`), :func:`qc_files` (run files +
  an episode's files): each returns a :class:`QCReport`.
- :func:`qc_job`: the job all of them run (yields :class:`~engine.jobs.Progress`, cancellable),
  for the GUI's worker thread.

Runs are read as recorded (NaN set to 0 and reported), without the project's preprocessing:
the checks see what the scanner wrote, and are told which drifts the preprocessing removes.
Runs of one episode in one space are grouped for the reliability check.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..errors import AlignScopeError, DataError
from ..jobs import CancelToken, Progress, run_sync
from . import checks as C
from .checks import Check


@dataclass
class EpisodeInput:
    """The stimulus files of one episode (absolute paths or None)."""

    name: str
    video: Optional[Path] = None
    audio: Optional[Path] = None
    words: Optional[Path] = None
    subtitles: Optional[Path] = None


@dataclass
class RunInput:
    """One run to check: its data as recorded and what it pairs with."""

    run: Any                                   # engine.io.fmri.BrainRun (raw)
    episode: Optional[str] = None
    onset_s: float = 0.0
    motion: Optional[Dict[str, Any]] = None    # engine.qc.brain.read_motion
    nan_note: Optional[str] = None
    target_names: Optional[List[str]] = None
    problem: Optional[str] = None              # could not be loaded (reported as a failed check)
    name: str = ""


@dataclass
class QCReport:
    """All checks of one QC run, and what was checked."""

    checks: List[Check]
    source: str = ""
    runs: List[str] = field(default_factory=list)
    episodes: List[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(c.failed for c in self.checks)

    @property
    def summary(self) -> Dict[str, int]:
        return C.summary(self.checks)

    def by_subject(self, subject: str) -> List[Check]:
        return [c for c in self.checks if c.subject == subject]

    def find(self, name: str, subject: Optional[str] = None) -> List[Check]:
        return [c for c in self.checks if c.name == name and (subject is None or c.subject == subject)]

    def to_dict(self) -> Dict[str, Any]:
        return {"source": self.source, "summary": self.summary, "failed": self.failed, "runs": self.runs,
                "episodes": self.episodes, "checks": [c.to_dict() for c in self.checks]}


# ==== inputs ==========================================================================
def subject_of(path) -> str:
    """Subject from a file name: ``sub-XX`` (BIDS) or a leading ``s18``-like token, else the stem."""
    name = Path(path).name
    m = re.search(r"(sub-[A-Za-z0-9]+)", name)
    if m:
        return m.group(1)
    m = re.match(r"([A-Za-z]*\d+)[-_.]", name)
    if m:
        return m.group(1)
    return name.split(".")[0]


def _nan_note(run) -> Optional[str]:
    for step in run.meta.get("preprocessing", []):
        if step.get("step") == "nan_repair":
            return step.get("where")
    return None


def _load_raw(ref, project) -> RunInput:
    from ..io import fmri
    from .brain import read_motion

    run = fmri.load_run(ref, project, preprocessing={"nan_policy": "zero"})
    names = run.meta.get("column_names") or run.meta.get("parcel_names")
    if names is None and ref.atlas:
        try:
            from ..io.atlases import load_atlas

            atlas = load_atlas(ref.atlas)
            names = list(atlas.names) if len(atlas.names) == run.n_targets else None
        except AlignScopeError:
            names = None
    motion = read_motion(project.path(ref.confounds)) if ref.confounds else None
    return RunInput(run, ref.episode, float(ref.onset_s or 0.0), motion, _nan_note(run), names, name=ref.name)


def project_inputs(project, episodes: Optional[Sequence[str]] = None):
    """(run inputs, episode inputs) of a project; a run that cannot be read becomes a problem."""
    wanted = set(episodes) if episodes else None
    eps = {}
    for e in project.episodes:
        if wanted is not None and e.name not in wanted:
            continue
        eps[e.name] = EpisodeInput(e.name, project.path(e.video), project.path(e.audio), project.path(e.words),
                                   project.path(e.subtitles))
    runs = []
    for ref in project.runs:
        if wanted is not None and ref.episode not in wanted:
            continue
        try:
            runs.append(_load_raw(ref, project))
        except AlignScopeError as exc:
            runs.append(RunInput(None, ref.episode, problem=str(exc), name=ref.name))
    return runs, eps


def file_inputs(paths: Sequence, tr_s: Optional[float] = None, video=None, words=None, audio=None,
                subtitles=None, confounds: Optional[Sequence] = None, space: Optional[str] = None,
                episode: Optional[str] = None, target_names: Optional[Sequence[str]] = None):
    """(run inputs, episode inputs) for run files paired with one episode (``target_names`` name the
    columns of tables without a header)."""
    from ..io import fmri
    from .brain import read_motion

    ep_name = episode or (Path(video).stem if video else Path(audio).stem if audio else "episode")
    eps = {ep_name: EpisodeInput(ep_name, Path(video) if video else None, Path(audio) if audio else None,
                                 Path(words) if words else None, Path(subtitles) if subtitles else None)}
    if confounds and len(confounds) != len(paths):
        raise DataError(f"--confounds: expected one file per run ({len(paths)}), found {len(confounds)}")
    runs = []
    for k, p in enumerate(paths):
        p = Path(p)
        name = p.name.split(".")[0]
        try:
            kind = fmri.file_kind(p)
            subj = subject_of(p)
            if kind == "table":
                if tr_s is None:
                    raise DataError(f"{p.name}: expected a TR for a table of time courses (give --tr SECONDS), "
                                    "found none")
                run = fmri.load_table_run(p, tr_s, space="parcels", name=name, subject=subj, episode=ep_name)
                n = run.n_targets
                run.space = space or next((s for s, v in fmri.N_VERTICES_BY_SPACE.items() if v == n), "parcels")
            elif kind == "nifti":
                run = fmri.load_nifti_run(p, tr_s=tr_s, name=name, subject=subj, episode=ep_name)
            elif kind == "cifti":
                run = fmri.load_cifti_run(p, tr_s=tr_s, name=name, subject=subj, episode=ep_name)
            else:
                run = fmri.load_gifti_run(p, tr_s=tr_s, name=name, subject=subj, episode=ep_name)
            data, rec = fmri.repair_nonfinite(run.data, "zero", f"run {name}")
            run.data = data
            motion = read_motion(confounds[k]) if confounds else None
            names = run.meta.get("column_names") or run.meta.get("parcel_names")
            if target_names:
                if len(target_names) != run.n_targets:
                    raise DataError(f"--names: expected {run.n_targets} names (the columns of {p.name}), found "
                                    f"{len(target_names)}")
                names = list(target_names)
            runs.append(RunInput(run, ep_name, 0.0, motion, rec["where"] if rec else None, names, name=name))
        except AlignScopeError as exc:
            runs.append(RunInput(None, ep_name, problem=str(exc), name=name))
    return runs, eps


# ==== helpers =========================================================================
_ATLAS_CACHE: Dict[str, Any] = {}


def _vertex_groups(n_targets: int):
    """Region group per vertex and the medial wall, for fsaverage5 / fsLR32k vertex runs."""
    from .brain import region_group

    space = {20484: "fsaverage5", 64984: "fsLR32k"}.get(n_targets)
    if space is None:
        return None, None, None
    if space not in _ATLAS_CACHE:
        try:
            from ..io.atlases import load_atlas

            atlas = load_atlas("schaefer400", space)
            groups = np.array([""] + [region_group(n) for n in atlas.names], dtype=object)
            labels = np.asarray(atlas.labels)
            _ATLAS_CACHE[space] = (list(groups[labels]), labels == 0, labels)
            _ATLAS_CACHE[(space, "names")] = list(atlas.names)
        except Exception:   # noqa: BLE001 - the bundled atlas is optional here
            _ATLAS_CACHE[space] = (None, None, None)
    return _ATLAS_CACHE[space]


def _read_text(ep: EpisodeInput):
    from ..io.text import read_cues, read_words

    words = cues = None
    notes = []
    for path, what in ((ep.words, "words"), (ep.subtitles, "subtitles")):
        if path is None:
            continue
        try:
            if what == "words":
                words = read_words(path)
            else:
                cues = read_cues(path)
                if words is None and ep.words is None:
                    words = read_words(path)
        except AlignScopeError as exc:
            notes.append(Check(f"{what}_timing", "fail", f"{ep.name}: {exc}", subject=ep.name, category="episode"))
    return words, cues, notes


# ==== the job =========================================================================
def qc_job(runs: List[RunInput], episodes: Dict[str, EpisodeInput], preprocessing: Optional[Dict] = None,
           sync: bool = True, token: Optional[CancelToken] = None, source: str = ""):
    """Check every run and episode; yields Progress, returns a :class:`QCReport`.

    Parameters
    ----------
    runs : list of RunInput
    episodes : dict name -> EpisodeInput
    preprocessing : dict, optional
        The project's preprocessing spec (drifts it removes are not reported; its
        ``nan_policy`` decides whether NaN fail).
    sync : bool
        Run the stimulus-brain sync check (computes low-level features of each episode).
    """
    from .brain import check_run
    from .episode import check_episode
    from .reliability import check_reliability
    from .sync import check_sync

    pre = dict(preprocessing or {})
    nan_policy = pre.get("nan_policy", "error")
    out: List[Check] = []
    total = len(episodes) + 2 * len(runs) + 1
    step = 0
    ep_info: Dict[str, Dict[str, Any]] = {}
    for ep in episodes.values():
        if token is not None:
            token.raise_if_cancelled()
        yield Progress(step, total, f"QC: episode {ep.name}")
        words, cues, notes = _read_text(ep)
        checks = check_episode(ep.name, ep.video, ep.audio, words, cues,
                               words_source=ep.words.name if ep.words else "words",
                               cues_source=ep.subtitles.name if ep.subtitles else "subtitles")
        out += notes + checks
        duration = None
        for c in checks:
            if c.name == "frame_times":
                duration = c.details.get("duration_s")
            elif c.name == "audio_video" and duration is None and "audio_s" in c.details:
                duration = c.details["audio_s"]
        ep_info[ep.name] = {"duration_s": duration, "words": words, "features": {}}
        step += 1

    groups: Dict[tuple, Dict[str, Any]] = {}
    for ri in runs:
        if token is not None:
            token.raise_if_cancelled()
        yield Progress(step, total, f"QC: run {ri.name}")
        step += 1
        if ri.run is None:
            out.append(Check("load", "fail", f"{ri.name}: {ri.problem}", subject=ri.name, category="run"))
            step += 1
            continue
        run = ri.run
        wall = parcel_labels = None
        if ri.target_names is not None and len(ri.target_names) == run.n_targets:
            from .brain import region_group

            target_groups = [region_group(n) for n in ri.target_names]
        else:
            target_groups, wall, parcel_labels = _vertex_groups(run.n_targets)
        info = ep_info.get(ri.episode or "", {})
        run_checks = check_run(run.data, run.tr_s, ri.name, preprocessing=pre, motion=ri.motion,
                               episode_duration_s=info.get("duration_s"), onset_s=ri.onset_s,
                               groups=target_groups, medial_wall=wall, nan_note=ri.nan_note, nan_policy=nan_policy)
        for c in run_checks:
            c.data.setdefault("source", run.meta.get("source"))
            c.data.setdefault("format", run.meta.get("format"))
            c.data.setdefault("space", run.space)
            c.data.setdefault("run", ri.name)
            c.data.setdefault("target_names", ri.target_names)
        out += run_checks
        dead_run = any(c.name == "dead_targets" and c.level == "fail" for c in run_checks)
        # stimulus-brain sync
        yield Progress(step, total, f"QC: sync of {ri.name}")
        step += 1
        ep = episodes.get(ri.episode or "")
        if sync and ep is not None and not dead_run and (ep.video is not None or ep.audio is not None):
            key = (run.n_trs, float(run.tr_s), ri.onset_s)
            feats = info.setdefault("features", {}).get(key)
            if feats is None:
                feats = _episode_features(ep, info, run.n_trs, run.tr_s, ri.onset_s, token)
                info["features"][key] = feats
            if isinstance(feats, str):
                out.append(Check("sync", "warn", f"{ri.name}: the sync cannot be checked: {feats}", subject=ri.name,
                                 category="sync"))
            else:
                c = check_sync(ri.name, run.data, run.tr_s, feats, regions=parcel_labels)
                c.data.update(run=ri.name, space=run.space)
                out.append(c)
        if not dead_run:
            g = groups.setdefault((ri.episode, run.space, run.n_targets), {"runs": {}, "subjects": {}, "names": None,
                                                                          "labels": parcel_labels})
            g["runs"][ri.name] = run.data
            g["subjects"][ri.name] = run.subject
            g["names"] = g["names"] or ri.target_names
    yield Progress(step, total, "QC: reliability")
    for (episode, space, _n), g in groups.items():
        labels = g.get("labels")
        region_names = _ATLAS_CACHE.get(({20484: "fsaverage5", 64984: "fsLR32k"}.get(_n), "names")) \
            if labels is not None else None
        c = check_reliability(f"{episode} / {space}", g["runs"], g["subjects"], g["names"],
                              region_labels=labels, region_names=region_names)
        if c is not None:
            c.data.update(space=space, run=next(iter(g["runs"])), target_names=g["names"])
            out.append(c)
    order = {name: k for k, name in enumerate(C.CATEGORIES)}
    out.sort(key=lambda c: order.get(c.category, 99))   # stable: runs keep their order
    yield Progress(total, total, "QC done")
    return QCReport(out, source=source, runs=[r.name for r in runs], episodes=list(episodes))


def _episode_features(ep: EpisodeInput, info: Dict[str, Any], n_trs: int, tr_s: float, onset_s: float, token):
    """Per-TR sync features of an episode (its stimulus traces read once), or why there are none."""
    from .sync import stimulus_features, stimulus_traces

    try:
        if "traces" not in info:
            info["traces"] = stimulus_traces(ep.video, ep.audio, info.get("words"), token=token)
        return stimulus_features(info["traces"], n_trs, tr_s, onset_s)
    except AlignScopeError as exc:
        return str(exc)


def write_maps(report: QCReport, out_dir) -> List[Path]:
    """Write the maps behind the checks: per run ``<run>_tsnr.npy`` (one value per target) and,
    for NIfTI runs, ``<run>_tsnr.nii.gz`` in volume space; per group ``<episode>_<space>_ceiling.npy``.
    Each file is written atomically. Returns the paths written."""
    from ..atomic import atomic_path
    from .brain import tsnr_volume

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: List[Path] = []

    def save_npy(path: Path, values) -> None:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, np.asarray(values, dtype=np.float32))
        written.append(path)

    def safe(name: str) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")

    for c in report.checks:
        if c.name == "tsnr" and "tsnr" in c.data:
            save_npy(out / f"{safe(c.subject)}_tsnr.npy", c.data["tsnr"])
            if c.data.get("format") == "nifti" and c.data.get("source"):
                import nibabel as nib

                path = out / f"{safe(c.subject)}_tsnr.nii.gz"
                img = tsnr_volume(c.data["source"])
                with atomic_path(path) as tmp:      # the temporary name ends in .nii.gz too
                    nib.save(img, str(tmp))
                written.append(path)
        elif c.name == "reliability" and "ceiling" in c.data:
            save_npy(out / f"{safe(c.subject)}_ceiling.npy", c.data["ceiling"])
    return written


# ==== front ends ======================================================================
def open_any(path):
    """A project from what a user points at (engine.importers.load_project when there)."""
    from ..importers import load_project

    return load_project(path)


def qc_project(project, episodes: Optional[Sequence[str]] = None, sync: bool = True,
               token: Optional[CancelToken] = None, source: str = "") -> QCReport:
    """Every check of a project (optionally only some episodes)."""
    runs, eps = project_inputs(project, episodes)
    return run_sync(qc_job(runs, eps, project.preprocessing, sync=sync, token=token,
                           source=source or project.name), token=token)


def qc_project_job(project, episodes: Optional[Sequence[str]] = None, sync: bool = True,
                   token: Optional[CancelToken] = None, source: str = ""):
    """Job variant of :func:`qc_project` (runs are read inside the job)."""
    yield Progress(0, 0, "QC: reading runs")
    runs, eps = project_inputs(project, episodes)
    return (yield from qc_job(runs, eps, project.preprocessing, sync=sync, token=token,
                              source=source or project.name))


def qc_path(path, sync: bool = True, token: Optional[CancelToken] = None,
            episodes: Optional[Sequence[str]] = None) -> QCReport:
    """Every check of a project file, a folder holding one, or an Algonauts / BIDS folder
    (optionally only some episodes: an unknown name is an error)."""
    project = open_any(path)
    if episodes:
        known = [e.name for e in project.episodes]
        unknown = [e for e in episodes if e not in known]
        if unknown:
            raise DataError(f"--only: expected episodes of {path} ({C.short_list(known, 8)}), found {unknown}")
    return qc_project(project, episodes=episodes, sync=sync, token=token, source=str(path))


def qc_files(paths: Sequence, tr_s: Optional[float] = None, video=None, words=None, audio=None, subtitles=None,
             confounds: Optional[Sequence] = None, space: Optional[str] = None, sync: bool = True,
             preprocessing: Optional[Dict] = None, token: Optional[CancelToken] = None,
             target_names: Optional[Sequence[str]] = None) -> QCReport:
    """Every check of run files recorded while one episode was watched."""
    runs, eps = file_inputs(paths, tr_s, video, words, audio, subtitles, confounds, space,
                            target_names=target_names)
    if video is None and audio is None and words is None and subtitles is None:
        eps = {}
    return run_sync(qc_job(runs, eps, preprocessing, sync=sync, token=token,
                           source=", ".join(str(p) for p in paths[:3]) + (" ..." if len(paths) > 3 else "")),
                    token=token)
