"""The Algonauts 2025 release of the Courtois NeuroMod data: what its folders hold.

Layout (``algonauts_2025.competitors/``)::

    fmri/sub-01/func/sub-01_task-friends_space-MNI152NLin2009cAsym_atlas-Schaefer18_parcel-1000Par7Net_desc-s123456_bold.h5
        datasets ``ses-003_task-s01e02a`` each (n_trs, 1000) parcels
    fmri/sub-01/func/sub-01_task-movie10_space-..._bold.h5
        datasets ``ses-001_task-bourne01`` or ``ses-005_task-figures01_run-1`` (repeats)
    fmri/sub-01/atlas/sub-01_space-MNI152NLin2009cAsym_atlas-Schaefer18_parcel-1000Par7Net_desc-dseg_parcellation.nii.gz
    stimuli/movies/friends/s1/friends_s01e02a.mkv       stimuli/transcripts/friends/s1/friends_s01e02a.tsv
    stimuli/movies/movie10/bourne/bourne01.mkv          stimuli/transcripts/movie10/bourne/movie10_bourne01.tsv

Episodes are the stimulus parts (``friends_s01e02a``, ``movie10_bourne01``); each subject's
dataset pairs with the episode of the same part name. TR is 1.49 s. Season 7 of *Friends* is
the held-out test set: its stimuli are released, its fMRI is not.

This module only reads the folder (:func:`scan_algonauts_folder`); turning the scan into a
:class:`~engine.project.Project` is :mod:`engine.importers.algonauts`'s job, so the project
file model and this reader do not import each other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..errors import DataError, expected_found

ALGONAUTS_TR_S = 1.49
N_PARCELS = 1000
# Runs absent from the release itself (not a problem of the user's copy).
KNOWN_MISSING = {
    ("sub-02", "friends_s05e20a"),
    ("sub-05", "friends_s04e01a"),
    ("sub-05", "friends_s04e01b"),
    ("sub-05", "friends_s04e13b"),
}
#: Friends seasons whose fMRI is withheld in the release (the competition's test set).
HELD_OUT_SEASONS = (7,)
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


def friends_season(episode: str) -> Optional[int]:
    """``friends_s07e03a`` -> 7; None for a name that is not a Friends part."""
    m = re.match(r"^friends_s(\d+)e\d+[a-z]$", episode)
    return int(m.group(1)) if m else None


def is_release_test_episode(episode: str) -> bool:
    """True for the episodes the release holds out (Friends season 7)."""
    return friends_season(episode) in HELD_OUT_SEASONS


def part_sort_key(name: str):
    """Sort Friends parts by season, episode, part; Movie10 parts after them by name."""
    m = re.match(r"^friends_s(\d+)e(\d+)([a-z])$", name)
    if m:
        return (0, int(m.group(1)), int(m.group(2)), m.group(3))
    return (1, 0, 0, name)


def find_stimuli(root: Path) -> Dict[str, Dict[str, Path]]:
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


@dataclass
class AlgonautsRun:
    """One HDF5 dataset of the release: a subject's run of one stimulus part."""

    subject: str                  # "sub-01"
    key: str                      # HDF5 dataset name, "ses-003_task-s01e02a"
    episode: str                  # "friends_s01e02a"
    path: Path                    # the subject's HDF5 file
    n_trs: int
    repeat: Optional[int] = None  # Movie10 repeats: _run-1 / _run-2


@dataclass
class AlgonautsScan:
    """What an Algonauts 2025 folder holds, in plain terms (no project)."""

    root: Path
    runs: List[AlgonautsRun] = field(default_factory=list)
    atlases: Dict[str, Path] = field(default_factory=dict)          # subject -> label NIfTI
    stimuli: Dict[str, Dict[str, Path]] = field(default_factory=dict)
    problems: List[str] = field(default_factory=list)

    @property
    def subjects(self) -> List[str]:
        return sorted({r.subject for r in self.runs})


def scan_algonauts_folder(path) -> AlgonautsScan:
    """Read the runs, per-subject atlases and stimuli of an Algonauts 2025 folder.

    Datasets that are not ``(n_trs, 1000)`` or whose names cannot be read are listed in
    ``problems`` (the rest still load).
    """
    import h5py

    root = Path(path).resolve()
    if not root.is_dir():
        raise DataError(expected_found("Algonauts folder", "an existing folder", f"nothing at {root}"))
    h5_files = sorted(p for p in root.rglob("sub-*_bold.h5") if _H5.match(p.name))
    stimuli = find_stimuli(root)
    if not h5_files and not stimuli:
        raise DataError(expected_found(f"Algonauts folder {root}", "fmri/sub-XX/func/*_bold.h5 files or "
                                       "stimuli/movies/**/*.mkv", "neither"))
    scan = AlgonautsScan(root=root, stimuli=stimuli)
    for h5 in h5_files:
        subject = _H5.match(h5.name).group("sub")
        try:
            with h5py.File(h5, "r") as f:
                items = [(k, f[k].shape if isinstance(f[k], h5py.Dataset) else None) for k in f.keys()]
        except Exception as exc:
            scan.problems.append(f"{h5.name}: expected a readable HDF5 file, found {exc.__class__.__name__}: {exc}")
            continue
        for key, shape in items:
            try:
                episode, repeat, _ses = episode_for_key(key)
            except DataError as exc:
                scan.problems.append(f"{h5.name}: {exc}")
                continue
            if shape is None or len(shape) != 2 or shape[1] != N_PARCELS:
                scan.problems.append(f"{h5.name}:{key}: expected shape (n_trs, {N_PARCELS}), found {shape}")
                continue
            scan.runs.append(AlgonautsRun(subject, key, episode, h5, int(shape[0]), repeat))
    for atlas in sorted(root.rglob("sub-*_desc-dseg_parcellation.nii*")):
        scan.atlases.setdefault(atlas.name.split("_")[0], atlas)
    return scan
