"""An Algonauts 2025 folder as a :class:`~engine.project.Project` (runs paired with the
stimulus parts, known-missing runs and the held-out test episodes marked)."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

from ..errors import DataError, expected_found
from ..io.algonauts import (ALGONAUTS_TR_S, KNOWN_MISSING, N_PARCELS, is_release_test_episode, part_sort_key,
                            scan_algonauts_folder)
from ..project import AtlasRef, Episode, Project, RunRef

__all__ = ["open_algonauts_folder", "subject_atlas", "subject_atlas_path"]


def open_algonauts_folder(path, tr_s: Optional[float] = None) -> Project:
    """Build a Project from an Algonauts 2025 folder (``algonauts_2025.competitors`` or a copy).

    Parameters
    ----------
    path : folder holding ``fmri/`` and/or ``stimuli/`` (searched recursively)
    tr_s : float, optional
        The TR the user gave (``--tr``); the release's is 1.49 s and another value is a problem.

    Returns
    -------
    Project
        ``root`` is ``path``; paths are relative to it. ``extra`` holds ``layout``, ``tr_s``,
        ``subjects``, ``missing_runs`` (per subject, episodes with fMRI for another subject but
        not this one; ``known`` True for the four runs absent from the release),
        ``held_out_episodes`` (stimuli without fMRI for any subject, with the reason: the
        release's test set, Friends season 7, or simply no run), ``episodes_without_video``
        and ``problems`` (datasets that are not (n_trs, 1000) or have unreadable names).
    """
    scan = scan_algonauts_folder(path)
    root = scan.root
    project = Project(name=root.name, root=root)
    problems: List[str] = list(scan.problems)
    tr = ALGONAUTS_TR_S
    if tr_s is not None and abs(float(tr_s) - ALGONAUTS_TR_S) > 1e-3:
        problems.append(f"--tr {tr_s} s disagrees with the Algonauts 2025 release's TR ({ALGONAUTS_TR_S} s); "
                        "--tr is used — drop it to use the release's")
        tr = float(tr_s)
    runs_by_subject: Dict[str, set] = {}
    for r in scan.runs:
        runs_by_subject.setdefault(r.subject, set()).add(r.episode)
        project.runs.append(RunRef(
            name=f"{r.subject}_{r.key}", path=project.relative(r.path), episode=r.episode, subject=r.subject,
            space="parcels", tr_s=tr, dataset=r.key, atlas="schaefer1000"))
    for sub, atlas in sorted(scan.atlases.items()):
        project.atlases.append(AtlasRef(name=f"{sub}_schaefer1000", path=project.relative(atlas),
                                        space="MNI152NLin2009cAsym"))
    episode_names = set(scan.stimuli) | {r.episode for r in scan.runs}
    for name in sorted(episode_names, key=part_sort_key):
        s = scan.stimuli.get(name, {})
        project.episodes.append(Episode(
            name=name,
            video=project.relative(s["video"]) if "video" in s else None,
            words=project.relative(s["words"]) if "words" in s else None))
    project.runs.sort(key=lambda r: (r.subject, part_sort_key(r.episode), r.name))
    with_runs = set().union(*runs_by_subject.values()) if runs_by_subject else set()
    missing = []
    for subject in sorted(runs_by_subject):
        for ep in sorted(with_runs - runs_by_subject[subject], key=part_sort_key):
            missing.append({"subject": subject, "episode": ep, "known": (subject, ep) in KNOWN_MISSING})
    held_out = []
    for e in project.episodes:
        if e.name in with_runs:
            continue
        reason = ("the release's test set (Friends season 7): stimuli without fMRI"
                  if is_release_test_episode(e.name) else "no subject has a run of it in this folder")
        held_out.append({"episode": e.name, "reason": reason})
    no_video = [e.name for e in project.episodes if e.video is None and e.name in with_runs]
    project.extra.update({
        "layout": "algonauts2025",
        "tr_s": tr,
        "subjects": sorted(runs_by_subject),
        "missing_runs": missing,
        "held_out_episodes": held_out,
        "episodes_without_video": no_video,
        "problems": problems,
    })
    return project


def subject_atlas_path(project: Project, subject: str) -> Path:
    """The subject's Schaefer-1000 label NIfTI (MNI volume) registered in the project."""
    for a in project.atlases:
        if a.name == f"{subject}_schaefer1000":
            return project.path(a.path)
    raise DataError(expected_found(f"atlas of {subject}", f"{subject}_schaefer1000 in the project",
                                   f"atlases {[a.name for a in project.atlases]}"))


def subject_atlas(project: Project, subject: str, space: str = "fsaverage5", cache_dir=None):
    """The subject's Schaefer-1000 parcellation (volume) projected to the surface (cached).

    Parcel ``k`` is volume label ``k`` (column ``k - 1`` of the subject's runs); parcels no
    vertex samples keep no vertices. See :func:`engine.io.atlases.surface_atlas_from_volume`.
    """
    from ..io.atlases import surface_atlas_from_volume

    return surface_atlas_from_volume(subject_atlas_path(project, subject), n_parcels=N_PARCELS, space=space,
                                     name=f"{subject}_schaefer1000", cache_dir=cache_dir).atlas


def _known_missing(subject: str, episode: str) -> bool:
    return (subject, episode) in KNOWN_MISSING
