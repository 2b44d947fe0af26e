"""The Algonauts 2025 release of the Courtois NeuroMod data, opened as a Project.

Layout (``algonauts_2025.competitors/``)::

    fmri/sub-01/func/sub-01_task-friends_space-MNI152NLin2009cAsym_atlas-Schaefer18_parcel-1000Par7Net_desc-s123456_bold.h5
        datasets ``ses-003_task-s01e02a`` each (n_trs, 1000) parcels
    fmri/sub-01/func/sub-01_task-movie10_space-..._bold.h5
        datasets ``ses-001_task-bourne01`` or ``ses-005_task-figures01_run-1`` (repeats)
    fmri/sub-01/atlas/sub-01_space-MNI152NLin2009cAsym_atlas-Schaefer18_parcel-1000Par7Net_desc-dseg_parcellation.nii.gz
    stimuli/movies/friends/s1/friends_s01e02a.mkv       stimuli/transcripts/friends/s1/friends_s01e02a.tsv
    stimuli/movies/movie10/bourne/bourne01.mkv          stimuli/transcripts/movie10/bourne/movie10_bourne01.tsv

Episodes are the stimulus parts (``friends_s01e02a``, ``movie10_bourne01``); each subject's
dataset pairs with the episode of the same part name. TR is 1.49 s.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..errors import DataError, expected_found
from ..project import AtlasRef, Episode, Project, RunRef

ALGONAUTS_TR_S = 1.49
N_PARCELS = 1000
# Runs absent from the release itself (not a problem of the user's copy).
KNOWN_MISSING = {
    ("sub-02", "friends_s05e20a"),
    ("sub-05", "friends_s04e01a"),
    ("sub-05", "friends_s04e01b"),
    ("sub-05", "friends_s04e13b"),
}
_KEY = re.compile(r"^ses-(?P<ses>\d+)_task-(?P<task>[A-Za-z0-9]+?)(?:_run-(?P<run>\d+))?$")
_FRIENDS = re.compile(r"^s(?P<season>\d+)e(?P<episode>\d+)(?P<part>[a-z])$")
_H5 = re.compile(r"^(?P<sub>sub-[A-Za-z0-9]+)_task-(?P<task>[A-Za-z0-9]+)_.*bold\.h5$")


def episode_for_key(key: str) -> Tuple[str, Optional[int], Optional[str]]:
    """``ses-003_task-s01e02a`` -> (``friends_s01e02a``, None, session ``003``);
    ``ses-005_task-figures01_run-2`` -> (``movie10_figures01``, 2, ``005``)."""
    m = _KEY.match(key)
    if m is None:
        raise DataError(expected_found("Algonauts dataset name", "ses-<n>_task-<part>[_run-<k>]", repr(key)))
    task = m.group("task")
    run = int(m.group("run")) if m.group("run") else None
    name = f"friends_{task}" if _FRIENDS.match(task) else f"movie10_{task}"
    return name, run, m.group("ses")


def _stimulus_paths(root: Path) -> Dict[str, Dict[str, Path]]:
    """episode name -> {"video": path, "words": path} for the stimuli found under ``root``."""
    found: Dict[str, Dict[str, Path]] = {}
    for p in root.rglob("*.mkv"):
        stem = p.stem
        if p.parent.parent.name == "movie10" or "movie10" in p.parts:
            name = stem if stem.startswith("movie10_") else f"movie10_{stem}"
        else:
            name = stem
        found.setdefault(name, {})["video"] = p
    for p in root.rglob("*.tsv"):
        if "transcripts" not in p.parts:
            continue
        found.setdefault(p.stem, {})["words"] = p
    return found


def _part_sort_key(name: str):
    m = re.match(r"^friends_s(\d+)e(\d+)([a-z])$", name)
    if m:
        return (0, int(m.group(1)), int(m.group(2)), m.group(3))
    return (1, 0, 0, name)


def open_algonauts_folder(path, tr_s: float = ALGONAUTS_TR_S) -> Project:
    """Build a Project from an Algonauts 2025 folder (``algonauts_2025.competitors`` or a copy).

    Parameters
    ----------
    path : folder holding ``fmri/`` and/or ``stimuli/`` (searched recursively)

    Returns
    -------
    Project
        ``root`` is ``path``; paths are relative to it. ``extra["missing_runs"]`` lists, per
        subject, episodes another subject has a run for but this one has not (``known`` True for
        the four runs absent from the release); ``extra["problems"]`` lists datasets that are not
        (n_trs, 1000) or have unreadable names.
    """
    import h5py

    root = Path(path).resolve()
    if not root.is_dir():
        raise DataError(expected_found("Algonauts folder", "an existing folder", f"nothing at {root}"))
    h5_files = sorted(p for p in root.rglob("sub-*_bold.h5") if _H5.match(p.name))
    stimuli = _stimulus_paths(root)
    if not h5_files and not stimuli:
        raise DataError(expected_found(f"Algonauts folder {root}", "fmri/sub-XX/func/*_bold.h5 files or "
                                       "stimuli/movies/**/*.mkv", "neither"))
    project = Project(name=root.name, root=root)
    problems: List[str] = []
    runs_by_subject: Dict[str, set] = {}
    episode_names = set(stimuli)
    for h5 in h5_files:
        m = _H5.match(h5.name)
        subject = m.group("sub")
        try:
            with h5py.File(h5, "r") as f:
                items = [(k, f[k].shape if isinstance(f[k], h5py.Dataset) else None) for k in f.keys()]
        except Exception as exc:
            problems.append(f"{h5.name}: expected a readable HDF5 file, found {exc.__class__.__name__}: {exc}")
            continue
        for key, shape in items:
            try:
                episode, run, ses = episode_for_key(key)
            except DataError as exc:
                problems.append(f"{h5.name}: {exc}")
                continue
            if shape is None or len(shape) != 2 or shape[1] != N_PARCELS:
                problems.append(f"{h5.name}:{key}: expected shape (n_trs, {N_PARCELS}), found {shape}")
                continue
            episode_names.add(episode)
            runs_by_subject.setdefault(subject, set()).add(episode)
            project.runs.append(RunRef(
                name=f"{subject}_{key}", path=project.relative(h5), episode=episode, subject=subject,
                space="parcels", tr_s=tr_s, dataset=key, atlas="schaefer1000"))
    for atlas in sorted(root.rglob("sub-*_desc-dseg_parcellation.nii*")):
        sub = atlas.name.split("_")[0]
        project.atlases.append(AtlasRef(name=f"{sub}_schaefer1000", path=project.relative(atlas),
                                        space="MNI152NLin2009cAsym"))
    for name in sorted(episode_names, key=_part_sort_key):
        s = stimuli.get(name, {})
        project.episodes.append(Episode(
            name=name,
            video=project.relative(s["video"]) if "video" in s else None,
            words=project.relative(s["words"]) if "words" in s else None))
    project.runs.sort(key=lambda r: (r.subject, _part_sort_key(r.episode), r.name))
    missing = []
    all_run_episodes = set().union(*runs_by_subject.values()) if runs_by_subject else set()
    for subject in sorted(runs_by_subject):
        for ep in sorted(all_run_episodes - runs_by_subject[subject], key=_part_sort_key):
            missing.append({"subject": subject, "episode": ep, "known": (subject, ep) in KNOWN_MISSING})
    no_video = [e.name for e in project.episodes if e.video is None and any(r.episode == e.name for r in project.runs)]
    project.extra.update({
        "layout": "algonauts2025",
        "subjects": sorted(runs_by_subject),
        "missing_runs": missing,
        "episodes_without_video": no_video,
        "problems": problems,
    })
    return project


def subject_atlas(project: Project, subject: str, space: str = "fsaverage5"):
    """The subject's Schaefer-1000 parcellation (volume) projected to the surface.

    Parcel ``k`` is volume label ``k`` (column ``k - 1`` of the subject's runs); parcels no
    vertex samples keep no vertices.
    """
    from .atlases import project_volume_labels

    for a in project.atlases:
        if a.name == f"{subject}_schaefer1000":
            atlas = project_volume_labels(project.path(a.path), space=space, name=a.name)
            if atlas.n_parcels < N_PARCELS:   # the top labels sampled nowhere still count
                atlas.names += [f"label_{k}" for k in range(atlas.n_parcels + 1, N_PARCELS + 1)]
            return atlas
    raise DataError(expected_found(f"atlas of {subject}", f"{subject}_schaefer1000 in the project",
                                   f"atlases {[a.name for a in project.atlases]}"))
