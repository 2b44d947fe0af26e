"""Find fMRI runs in a BIDS / fMRIPrep folder from file-name entities.

Entities read: ``sub``, ``ses``, ``task``, ``run``, ``space``, ``desc``, ``hemi`` (plus ``den``
for CIFTI). The TR comes from the JSON sidecar (``RepetitionTime``, with BIDS inheritance up
the folder tree to the dataset root), else the NIfTI header's ``pixdim[4]`` / the CIFTI series
step. ``--tr`` (``tr_s``) gives the TR where the files hold none; where they hold one and it
differs, the clash is reported (and the given value used).

A run's stimulus comes from its ``events.tsv`` ``stim_file`` column (BIDS: a path relative to
the dataset's ``stimuli/`` folder), else from a video named after the task.

This module only reads the folder (:func:`scan_bids_folder`, :func:`read_confound_set`);
:mod:`engine.importers.bids` turns a scan into a :class:`~engine.project.Project`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import ConfigError, DataError, expected_found

ENTITY_ORDER = ("sub", "ses", "task", "acq", "run", "space", "den", "res", "hemi", "desc")
_ENTITY = re.compile(r"^([a-zA-Z]+)-([a-zA-Z0-9.]+)$")
BOLD_SUFFIXES = ("_bold.nii.gz", "_bold.nii", "_bold.func.gii", "_bold.dtseries.nii", "_bold.ptseries.nii")
VIDEO_SUFFIXES = (".mkv", ".mp4", ".avi", ".mov", ".webm")
TR_TOLERANCE_S = 1e-3


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


def space_name(ent: Dict[str, str], extension: str) -> str:
    """AlignScope's space name for a run's entities: fsaverage5, fsLR32k, fsLR91k, parcels, volume."""
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


_space_name = space_name   # older name


def _entity_keys(ent: Dict[str, str]) -> List[str]:
    return [k for k in ent if k not in ("suffix", "extension")]


def inherited(candidates: Sequence[Path], ent: Dict[str, str], suffix: str) -> List[Path]:
    """Files of ``suffix`` whose every entity matches ``ent`` (BIDS inheritance), most specific first."""
    hits = []
    for c in candidates:
        ce = parse_entities(c.name)
        if ce.get("suffix") != suffix:
            continue
        keys = _entity_keys(ce)
        if all(ent.get(k) == ce[k] for k in keys):
            hits.append((len(keys), str(c), c))
    return [c for _, _, c in sorted(hits, key=lambda t: (-t[0], t[1]))]


def sidecar_tr(path: Path, root: Path) -> Optional[float]:
    """``RepetitionTime`` from the nearest matching JSON sidecar (BIDS inheritance up to ``root``)."""
    found = sidecar_tr_source(path, root)
    return found[0] if found else None


def sidecar_tr_source(path: Path, root: Path) -> Optional[Tuple[float, Path]]:
    """(TR, sidecar) from the nearest, most specific matching ``*_bold.json`` up to ``root``."""
    ent = parse_entities(path.name)
    folder = path.parent
    root = root.resolve()
    while True:
        for js in inherited(sorted(folder.glob("*.json")), ent, "bold"):
            try:
                tr = json.loads(js.read_text()).get("RepetitionTime")
            except (OSError, json.JSONDecodeError, AttributeError):
                tr = None
            if tr:
                return float(tr), js
        if folder.resolve() == root or folder.parent == folder:
            return None
        folder = folder.parent


def header_tr(path: Path, declared_only: bool = False) -> Optional[float]:
    """TR from a NIfTI header (pixdim[4], seconds) or a CIFTI series axis.

    ``declared_only``: only a NIfTI header that states its time unit counts (a header with
    unknown units often holds a default 1.0, not a TR).
    """
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
            unit = img.header.get_xyzt_units()[1]
            if declared_only and unit not in ("sec", "msec", "usec"):
                return None
            tr = float(zooms[3])
            return tr / 1000.0 if unit == "msec" else tr / 1e6 if unit == "usec" else tr
    return None


def _matching(candidates: List[Path], ent: Dict[str, str], keys=("sub", "ses", "task", "acq", "run")) -> Optional[Path]:
    for c in candidates:
        ce = parse_entities(c.name)
        if all(ce.get(k) == ent.get(k) for k in keys):
            return c
    return None


@dataclass
class BidsRun:
    """One BOLD run of a BIDS folder (a GIFTI pair is one run, by its ``hemi-L`` file)."""

    path: Path
    entities: Dict[str, str]
    name: str                              # entities joined, without hemi
    subject: str                           # "sub-01"
    task: str
    space: str                             # AlignScope space name
    tr_s: float                            # 0.0 when unknown
    tr_source: str                         # "--tr", "sidecar <name>", "header", "none"
    confounds: Optional[Path] = None
    mask: Optional[Path] = None
    events: Optional[Path] = None
    stim_file: Optional[str] = None        # the events' stim_file value
    stimulus: Optional[Path] = None        # the video it names (or one named after the task)


@dataclass
class BidsScan:
    root: Path
    runs: List[BidsRun] = field(default_factory=list)
    videos: List[Path] = field(default_factory=list)
    problems: List[str] = field(default_factory=list)


def events_stim_files(path: Path) -> List[str]:
    """The distinct non-empty ``stim_file`` values of an events TSV, in order of onset."""
    import pandas as pd

    try:
        table = pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=True)
    except Exception:
        return []
    if "stim_file" not in table.columns:
        return []
    if "onset" in table.columns:
        table = table.sort_values("onset", kind="stable")
    out: List[str] = []
    for v in table["stim_file"].dropna().astype(str):
        v = v.strip()
        if v and v not in out:
            out.append(v)
    return out


def _stimulus_for(stim: str, root: Path, videos: List[Path]) -> Optional[Path]:
    """The file a ``stim_file`` value names: ``<dataset>/stimuli/<value>`` (looking up to two
    folders above a derivatives folder), else a video of that file name anywhere found."""
    rel = Path(stim)
    for base in (root, root.parent, root.parent.parent):
        for cand in (base / "stimuli" / rel, base / rel):
            if cand.is_file():
                return cand.resolve()
    same = [v for v in videos if v.name == rel.name]
    return same[0] if same else None


def scan_bids_folder(path, tr_s: Optional[float] = None, space: Optional[str] = None,
                     desc: Optional[str] = None) -> BidsScan:
    """The BOLD runs under a BIDS or fMRIPrep folder with their TR, confounds, mask and stimulus.

    Parameters
    ----------
    tr_s : float, optional
        The TR given by the user (``--tr``): used where the files hold none; where a sidecar
        (or a header that states its unit) holds a different one, the clash is a problem.
    space, desc : str, optional
        Keep only runs with this ``space-`` / ``desc-``.
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
    events = sorted(p for p in root.rglob("*_events.tsv") if p.is_file())
    if root.parent.name == "derivatives":   # fMRIPrep keeps no events: the raw dataset above has them
        raw = root.parent.parent
        events += sorted(p for p in raw.rglob("*_events.tsv")
                         if p.is_file() and "derivatives" not in p.relative_to(raw).parts)
    search = [root] + [b / "stimuli" for b in (root.parent, root.parent.parent) if (b / "stimuli").is_dir()]
    videos = sorted({v.resolve() for base in search for v in base.rglob("*")
                     if v.suffix.lower() in VIDEO_SUFFIXES and v.is_file()})
    scan = BidsScan(root=root, videos=videos)
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
                scan.problems.append(f"{p.name}: expected its right hemisphere {partner.name}, found nothing")
                continue
        task = ent.get("task", "rest")
        side = sidecar_tr_source(p, root)
        head = header_tr(p, declared_only=True)
        stored, source = (side[0], f"sidecar {side[1].name}") if side else (head, "header") if head else (None, "none")
        if side and head and abs(side[0] - head) > TR_TOLERANCE_S:
            scan.problems.append(f"{p.name}: TR sources disagree: sidecar {side[1].name} says {side[0]} s, the "
                                 f"image header {head} s; the sidecar is used (BIDS) — correct the other, or "
                                 "give --tr to choose")
        if tr_s:
            if stored and abs(stored - tr_s) > TR_TOLERANCE_S:
                scan.problems.append(f"{p.name}: --tr {tr_s} s disagrees with the TR stored with the data "
                                     f"({stored} s, {source}); --tr is used — drop --tr to use the stored one")
            tr, source = float(tr_s), "--tr"
        elif stored:
            tr = float(stored)
        else:
            fallback = header_tr(p)     # a header without a time unit: better than nothing
            if fallback:
                tr, source = fallback, "header (no time unit stated)"
            else:
                scan.problems.append(f"{p.name}: expected a TR (JSON RepetitionTime or NIfTI pixdim[4]), found "
                                     "none; give --tr")
                tr, source = 0.0, "none"
        name = "_".join(f"{k}-{ent[k]}" for k in ENTITY_ORDER if k in ent and k not in ("hemi",))
        conf = _matching(confounds, ent)
        mask = None
        if not p.name.endswith((".gii", "series.nii")):
            mask = _matching([m for m in masks if parse_entities(m.name).get("space") == ent.get("space")], ent)
        ev = inherited(events, ent, "events")
        ev_path = ev[0] if ev else None
        stims = events_stim_files(ev_path) if ev_path else []
        stim_file = stims[0] if stims else None
        stimulus = None
        if stim_file:
            stimulus = _stimulus_for(stim_file, root, videos)
            if stimulus is None:
                where = root.parent.parent if root.parent.name == "derivatives" else root
                scan.problems.append(f"{ev_path.name}: stim_file {stim_file!r}: expected the file under "
                                     f"{where / 'stimuli'}, found nothing (the run has no video)")
            if len(stims) > 1:
                scan.problems.append(f"{ev_path.name}: expected one stim_file per run, found {len(stims)} "
                                     f"({stims[:3]}); the first is used")
        else:
            stimulus = next((v for v in videos if v.stem == task or v.stem.endswith(task)), None)
        scan.runs.append(BidsRun(
            path=p, entities=ent, name=name, subject=f"sub-{ent.get('sub', '01')}", task=task,
            space=space_name(ent, ent.get("extension", "")), tr_s=float(tr), tr_source=source,
            confounds=conf, mask=mask, events=ev_path, stim_file=stim_file, stimulus=stimulus))
    return scan


# ---- fMRIPrep confounds ------------------------------------------------------------------
MOTION6 = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")
CONFOUND_SETS = {
    "motion6": "the 6 rigid-body motion parameters (trans_x/y/z, rot_x/y/z)",
    "motion12": "motion6 + their temporal derivatives",
    "motion24": "motion6 + derivatives + squares of both (Friston 24)",
    "wm_csf": "mean white-matter and CSF signals (white_matter, csf)",
    "wm_csf4": "wm_csf + derivatives",
    "global": "global_signal",
}


def _set_columns(name: str) -> List[Tuple[str, str, str]]:
    """(column, base column, transform) for one named set; transform in '', 'd', 'sq', 'dsq'."""
    if name == "motion6":
        return [(c, c, "") for c in MOTION6]
    if name == "motion12":
        return _set_columns("motion6") + [(f"{c}_derivative1", c, "d") for c in MOTION6]
    if name == "motion24":
        return (_set_columns("motion12") + [(f"{c}_power2", c, "sq") for c in MOTION6]
                + [(f"{c}_derivative1_power2", c, "dsq") for c in MOTION6])
    if name == "wm_csf":
        return [("white_matter", "white_matter", ""), ("csf", "csf", "")]
    if name == "wm_csf4":
        return _set_columns("wm_csf") + [(f"{c}_derivative1", c, "d") for c in ("white_matter", "csf")]
    if name == "global":
        return [("global_signal", "global_signal", "")]
    raise ConfigError(f"confound set: got {name!r}. Supported values are: {', '.join(CONFOUND_SETS)}, "
                      "joined with '+' (e.g. motion24+wm_csf)")


def read_confound_set(path, set_name: str) -> Tuple[np.ndarray, List[str]]:
    """A named set of columns of an fMRIPrep ``*_desc-confounds_timeseries.tsv``.

    Parameters
    ----------
    path : path of the TSV
    set_name : str
        ``motion6``, ``motion12``, ``motion24``, ``wm_csf``, ``wm_csf4``, ``global``, or several
        joined with ``+`` (``motion24+wm_csf``).

    Returns
    -------
    values : ndarray (n_trs, k) float32
    names : list of str (k,)

    Notes
    -----
    ``n/a`` cells (fMRIPrep writes them in the first row of every derivative column) are
    filled: a derivative column's leading ``n/a`` with 0 (no change before the first volume),
    any other column's leading ``n/a`` with its first value; squares are taken after filling.
    Derivatives and squares absent from the file are computed: squares of the base column or of
    the file's derivative column, a missing derivative as the backward difference (first row 0). An ``n/a`` after the first value is an error.
    """
    import pandas as pd

    path = Path(path)
    try:
        table = pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=True)
    except FileNotFoundError:
        raise DataError(expected_found("confounds file", "an existing TSV", f"nothing at {path}")) from None
    except Exception as exc:
        raise DataError(expected_found(f"confounds file {path.name}", "a tab-separated table with a header",
                                       f"unreadable content ({exc.__class__.__name__}: {exc})")) from None
    names = [s.strip() for s in str(set_name).split("+") if s.strip()]
    if not names:
        raise ConfigError(f"confound set: got {set_name!r}. Supported values are: {', '.join(CONFOUND_SETS)}")
    wanted: List[Tuple[str, str, str]] = []
    for n in names:
        for item in _set_columns(n):
            if item[0] not in [w[0] for w in wanted]:
                wanted.append(item)
    n_trs = len(table)

    def filled(col: str, derivative: bool) -> np.ndarray:
        v = np.array(pd.to_numeric(table[col], errors="coerce"), dtype=np.float64)   # a writable copy
        finite = np.flatnonzero(np.isfinite(v))
        if finite.size == 0:
            raise DataError(expected_found(f"confounds file {path.name} column {col}", "numbers", "only n/a"))
        v[:finite[0]] = 0.0 if derivative else v[finite[0]]
        bad = np.flatnonzero(~np.isfinite(v))
        if bad.size:
            raise DataError(expected_found(f"confounds file {path.name} column {col}",
                                           "n/a only in the first rows", f"n/a in rows {bad[:5].tolist()}"))
        return v

    cols = []
    for col, base, how in wanted:
        if col in table.columns:
            cols.append(filled(col, "derivative" in col))
            continue
        if base not in table.columns:
            raise DataError(expected_found(f"confounds file {path.name}", f"column {base!r} (set {set_name})",
                                           f"columns {list(table.columns)[:12]}{' ...' if table.shape[1] > 12 else ''}"))
        b = filled(base, False)
        if f"{base}_derivative1" in table.columns:      # fMRIPrep's own derivative, when it wrote one
            d = filled(f"{base}_derivative1", True)
        else:
            d = np.concatenate([[0.0], np.diff(b)]) if n_trs else b
        cols.append({"": b, "d": d, "sq": b ** 2, "dsq": d ** 2}[how])
    values = np.stack(cols, axis=1).astype(np.float32) if cols else np.zeros((n_trs, 0), np.float32)
    return values, [w[0] for w in wanted]
