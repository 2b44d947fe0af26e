"""Find fMRI runs in a BIDS / fMRIPrep folder from file-name entities.

Entities read: ``sub``, ``ses``, ``task``, ``run``, ``space``, ``desc``, ``hemi`` (plus ``den``
for CIFTI). The TR comes from the JSON sidecar (``RepetitionTime``, with BIDS inheritance up
the folder tree), else the NIfTI header's ``pixdim[4]``, unless ``tr_s`` overrides both.
Episodes are named after the task (a movie-watching task names its stimulus, e.g.
``task-s01e02a``); ``events.tsv`` files and a ``stimuli/`` folder are attached when found.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Dict, List, Optional

from ..errors import DataError, expected_found
from ..project import Episode, Project, RunRef

ENTITY_ORDER = ("sub", "ses", "task", "acq", "run", "space", "den", "res", "hemi", "desc")
_ENTITY = re.compile(r"^([a-zA-Z]+)-([a-zA-Z0-9.]+)$")
BOLD_SUFFIXES = ("_bold.nii.gz", "_bold.nii", "_bold.func.gii", "_bold.dtseries.nii", "_bold.ptseries.nii")
VIDEO_SUFFIXES = (".mkv", ".mp4", ".avi", ".mov", ".webm")


def parse_entities(filename: str) -> Dict[str, str]:
    """``sub-01_ses-1_task-x_run-2_space-fsaverage5_hemi-L_bold.func.gii`` -> {sub: 01, ...,
    suffix: bold, extension: .func.gii}."""
    name = Path(filename).name
    stem, dot, ext = name.partition(".")
    parts = stem.split("_")
    out: Dict[str, str] = {}
    for part in parts[:-1]:
        m = _ENTITY.match(part)
        if m:
            out[m.group(1)] = m.group(2)
    last = parts[-1]
    m = _ENTITY.match(last)
    if m:
        out[m.group(1)] = m.group(2)
    else:
        out["suffix"] = last
    out["extension"] = dot + ext
    return out


def _space_name(ent: Dict[str, str], extension: str) -> str:
    space = ent.get("space", "")
    if extension.endswith("dtseries.nii"):
        return "fsLR91k" if ent.get("den", "91k") == "91k" else "grayordinates"
    if extension.endswith("ptseries.nii"):
        return "parcels"
    if space in ("fsaverage5", "fsaverage6", "fsaverage"):
        return space
    if space == "fsLR":
        return "fsLR32k"
    return "volume"


def sidecar_tr(path: Path, root: Path) -> Optional[float]:
    """``RepetitionTime`` from the nearest matching JSON sidecar (BIDS inheritance)."""
    ent = parse_entities(path.name)
    folder = path.parent
    root = root.resolve()
    while True:
        for js in sorted(folder.glob("*.json")):
            je = parse_entities(js.name)
            if je.get("suffix") != "bold":
                continue
            keys = [k for k in je if k not in ("suffix", "extension")]
            if all(ent.get(k) == je[k] for k in keys):
                try:
                    tr = json.loads(js.read_text()).get("RepetitionTime")
                except (OSError, json.JSONDecodeError):
                    tr = None
                if tr:
                    return float(tr)
        if folder.resolve() == root or folder.parent == folder:
            return None
        folder = folder.parent


def header_tr(path: Path) -> Optional[float]:
    """TR from a NIfTI header (pixdim[4], seconds) or a CIFTI series axis."""
    import nibabel as nib

    try:
        img = nib.load(str(path))
    except Exception:
        return None
    name = path.name.lower()
    if name.endswith(("dtseries.nii", "ptseries.nii")):
        try:
            ax = img.header.get_axis(0)
            return float(ax.step) * (0.001 if ax.unit == "MSEC" else 1.0) or None
        except Exception:
            return None
    if name.endswith((".nii", ".nii.gz")):
        zooms = img.header.get_zooms()
        if len(zooms) > 3 and zooms[3] > 0:
            tr = float(zooms[3])
            return tr / 1000.0 if img.header.get_xyzt_units()[1] == "msec" else tr
    return None


def _matching(candidates: List[Path], ent: Dict[str, str], keys=("sub", "ses", "task", "acq", "run")) -> Optional[Path]:
    for c in candidates:
        ce = parse_entities(c.name)
        if all(ce.get(k) == ent.get(k) for k in keys):
            return c
    return None


def discover_bids(path, tr_s: Optional[float] = None, space: Optional[str] = None,
                  desc: Optional[str] = None) -> Project:
    """Build a Project from the BOLD runs under a BIDS or fMRIPrep folder.

    Parameters
    ----------
    tr_s : float, optional
        Overrides the sidecar / header TR for every run.
    space : str, optional
        Keep only runs in this ``space-`` (e.g. ``fsaverage5``, ``MNI152NLin2009cAsym``).
    desc : str, optional
        Keep only runs with this ``desc-`` (e.g. ``preproc``).

    Returns
    -------
    Project
        One RunRef per run (a GIFTI pair is one run, referenced by its ``hemi-L`` file), with
        confounds (``desc-confounds_timeseries.tsv``) and brain mask (``desc-brain_mask``) attached.
        ``extra["problems"]`` lists runs whose TR could not be found or whose hemisphere partner is absent.
    """
    root = Path(path).resolve()
    if not root.is_dir():
        raise DataError(expected_found("BIDS folder", "an existing folder", f"nothing at {root}"))
    files = sorted(p for p in root.rglob("sub-*") if p.is_file())
    bold = [p for p in files if p.name.endswith(BOLD_SUFFIXES)]
    if not bold:
        raise DataError(expected_found(f"BIDS folder {root}", "files named sub-*_bold.nii[.gz], "
                                       "*_bold.func.gii or *_bold.dtseries.nii", "none"))
    confounds = [p for p in files if p.name.endswith(("_desc-confounds_timeseries.tsv", "_desc-confounds_regressors.tsv"))]
    masks = [p for p in files if p.name.endswith(("_desc-brain_mask.nii.gz", "_desc-brain_mask.nii"))]
    events = [p for p in files if p.name.endswith("_events.tsv")]
    videos = [p for p in root.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()]
    project = Project(name=root.name, root=root)
    problems: List[str] = []
    tasks: Dict[str, Episode] = {}
    for p in bold:
        ent = parse_entities(p.name)
        if space and ent.get("space") != space:
            continue
        if desc and ent.get("desc") != desc:
            continue
        if ent.get("hemi") == "R":
            continue
        if ent.get("hemi") == "L":
            partner = p.with_name(p.name.replace("hemi-L", "hemi-R"))
            if not partner.exists():
                problems.append(f"{p.name}: expected its right hemisphere {partner.name}, found nothing")
                continue
        task = ent.get("task", "rest")
        tr = tr_s or sidecar_tr(p, root) or header_tr(p)
        if tr is None:
            problems.append(f"{p.name}: expected a TR (JSON RepetitionTime or NIfTI pixdim[4]), found none; "
                            "give tr_s")
            tr = 0.0
        name = "_".join(f"{k}-{ent[k]}" for k in ENTITY_ORDER if k in ent and k not in ("hemi",))
        conf = _matching(confounds, ent)
        mask = None
        if not p.name.endswith((".gii", "series.nii")):
            mask = _matching([m for m in masks if parse_entities(m.name).get("space") == ent.get("space")], ent)
        project.runs.append(RunRef(
            name=name, path=project.relative(p), episode=task, subject=f"sub-{ent.get('sub', '01')}",
            space=_space_name(ent, ent.get("extension", "")), tr_s=float(tr),
            confounds=project.relative(conf) if conf else None,
            mask=project.relative(mask) if mask else None))
        if task not in tasks:
            ev = _matching(events, ent, keys=("task",))
            video = next((v for v in videos if v.stem == task or v.stem.endswith(task)), None)
            tasks[task] = Episode(name=task, video=project.relative(video) if video else None,
                                  events=project.relative(ev) if ev else None)
    project.episodes = [tasks[t] for t in sorted(tasks)]
    project.extra.update({"layout": "bids", "problems": problems})
    return project
