"""A study's data, loaded once: brain runs (from a project or from files) and feature files.

:class:`BrainData` is what every fit takes: runs of ``(n_trs, n_targets)`` float32 with their
names, stimulus (episode) ids, subjects, TR and provenance. It comes from a project
(:meth:`ProjectData.load_brain_job`, runs as the project pairs them) or from files
(:func:`load_brain_files`, every fMRI format ``info`` calls usable: NIfTI with a mask, GIFTI
hemisphere pairs, CIFTI, parcel tables, npy/npz/h5).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..errors import ConfigError, DataError, MismatchError, expected_found
from ..jobs import Progress

__all__ = ["BrainData", "ProjectData", "project_file_for", "read_feature_file", "resolve_feature_files",
           "read_brain_file", "load_brain_files", "file_sha256"]


def file_sha256(path) -> str:
    """SHA-256 of a file's bytes (provenance); memoised by :mod:`engine.features.cache`."""
    from ..features.cache import file_sha256 as _sha

    return _sha(path)


# ---------------------------------------------------------------------------- brain data
@dataclass
class BrainData:
    """Brain runs ready to fit.

    Attributes
    ----------
    runs : list of (n_trs_run, n_targets) float32
    names : list of str, one per run
    stimuli : list of str
        Episode (stimulus) of each run: runs with one stimulus are grouped in CV. For brain files
        these are the run names, used to find ``<name>.h5`` feature files (``stimuli_known`` False:
        the fit then finds repeated stimuli from the features themselves).
    subjects : list of str
    tr_s : float or None
        Repetition time (None when no file or option said it).
    space : str or None
        fsaverage5, fsLR32k, parcels, volume...
    onsets_s : list of float
        Episode time of each run's first TR.
    confounds : list of (n_trs_run, k) arrays, optional
        A named confound set per run (fMRIPrep tables of a project), regressed out by the fit.
    provenance : dict
    """

    runs: List[np.ndarray]
    names: List[str]
    stimuli: List[str]
    subjects: List[str]
    tr_s: Optional[float] = None
    space: Optional[str] = None
    onsets_s: List[float] = field(default_factory=list)
    provenance: Dict[str, Any] = field(default_factory=dict)
    stimuli_known: bool = True
    confounds: Optional[List[np.ndarray]] = None

    @property
    def n_targets(self) -> int:
        return int(self.runs[0].shape[1]) if self.runs else 0


def read_brain_file(path, dataset: Optional[str] = None, tr_s: Optional[float] = None, mask=None):
    """One fMRI run from any file ``info`` calls usable (:func:`engine.io.fmri.read_brain_file`):
    NIfTI with a mask (or nilearn's EPI mask), a GIFTI hemisphere pair, CIFTI dtseries/ptseries,
    parcel tables and arrays (npy/npz/h5, ``dataset`` when several). ``tr_s`` overrides the
    file's TR; tables carry none (``meta["tr_known"]`` is then False)."""
    from ..io.fmri import read_brain_file as _read

    return _read(path, dataset=dataset, mask=mask, tr_s=tr_s)


def _known_tr(run) -> Optional[float]:
    tr = float(getattr(run, "tr_s", 0.0) or 0.0)
    known = run.meta.get("tr_known", run.meta.get("tr_source") != "none")
    return tr if known and tr > 0 else None


def load_brain_files(paths: Sequence, datasets: Optional[Sequence[str]] = None, tr_s: Optional[float] = None,
                     mask=None) -> BrainData:
    """Brain runs from files: one file per run, or one npz/h5 file with ``datasets`` (one per run).

    The TR is ``tr_s`` when given, else the files' own (NIfTI header, JSON sidecar, CIFTI
    series step); runs whose TRs disagree are refused.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise ConfigError("brain runs: expected --brain FILE... (or a project), found none")
    if datasets:
        if len(paths) != 1:
            raise ConfigError(expected_found("--brain with --brain-datasets", "one file", len(paths)))
        loaded = [read_brain_file(paths[0], d, tr_s, mask) for d in datasets]
        names = [str(d) for d in datasets]
    else:
        loaded = [read_brain_file(p, None, tr_s, mask) for p in paths]
        names = [p.name.split(".")[0] for p in paths]
    trs = {round(t, 6) for t in (_known_tr(r) for r in loaded) if t is not None}
    if len(trs) > 1:
        raise MismatchError(expected_found("TR of the brain runs", "one TR", f"{sorted(trs)} s (give --tr)"))
    tr = float(tr_s) if tr_s else (trs.pop() if trs else None)
    widths = {r.data.shape[1] for r in loaded}
    if len(widths) != 1:
        raise MismatchError(expected_found("targets per brain run", "the same in every run",
                                           f"{[r.data.shape[1] for r in loaded]}"))
    prov = {"brain": [str(p.resolve()) for p in paths], "brain_sha256": [file_sha256(p) for p in paths],
            "brain_format": loaded[0].meta.get("format")}
    if datasets:
        prov["brain_datasets"] = list(datasets)
    if mask is not None:
        prov["mask"] = str(Path(mask).resolve())
    return BrainData(runs=[np.asarray(r.data, np.float32) for r in loaded], names=names, stimuli=list(names),
                     subjects=[r.subject for r in loaded], tr_s=tr, space=loaded[0].space,
                     onsets_s=[0.0] * len(loaded), provenance=prov, stimuli_known=False)


# ---------------------------------------------------------------------------- projects
def project_file_for(path) -> Path:
    """The project file of ``path``: a project file, a folder holding one, or a data folder
    (Algonauts, BIDS) that gets a project file ``<folder>/<name>.alignscope.json`` (results need a home)."""
    from ..importers import detect_layout, open_project
    from ..project import PROJECT_SUFFIX

    path = Path(path)
    if detect_layout(path) == "project":
        return path if path.is_file() else sorted(path.glob(f"*{PROJECT_SUFFIX}"))[0]
    return open_project(path).save(path)


class ProjectData:
    """A project opened once for one analysis: its file, its runs and its episodes.

    Parameters
    ----------
    path : project file, folder holding one, or a data folder (see :func:`project_file_for`)
    """

    def __init__(self, path) -> None:
        from ..project import Project

        self.project_file = project_file_for(path)
        self.project = Project.load(self.project_file)

    def select_runs(self, episodes: Optional[Sequence[str]] = None, runs: Optional[Sequence[str]] = None,
                    subjects: Optional[Sequence[str]] = None, space: Optional[str] = None) -> list:
        """The project's runs (RunRef) kept by the filters; all of one space (default: the first run's)."""
        refs = list(self.project.runs)
        if not refs:
            raise DataError(expected_found(f"project {self.project.name}", "fMRI runs", "none"))
        for what, wanted, get in (("episodes", episodes, lambda r: r.episode), ("runs", runs, lambda r: r.name),
                                  ("subjects", subjects, lambda r: r.subject)):
            if wanted:
                known = sorted({get(r) for r in refs})
                unknown = [w for w in wanted if w not in known]
                if unknown:
                    raise ConfigError(expected_found(f"{what} of project {self.project.name}",
                                                     f"some of {known[:12]}", unknown))
                refs = [r for r in refs if get(r) in set(wanted)]
        if space is None:
            space = refs[0].space if refs else None
        spaces = sorted({r.space for r in refs})
        refs = [r for r in refs if r.space == space]
        if not refs:
            raise DataError(expected_found(f"runs in space {space!r}", f"runs (spaces here: {spaces})", "none"))
        return refs

    def load_brain_job(self, refs, token=None, confounds: Optional[str] = None):
        """Job: load the runs ``refs`` (project preprocessing applied) -> :class:`BrainData`;
        with ``confounds`` (a set name: ``motion24``, ``motion24+wm_csf``...) each run's table too."""
        from ..io.fmri import load_run

        loaded = []
        for k, ref in enumerate(refs):
            if token is not None:
                token.raise_if_cancelled()
            yield Progress(k, len(refs), f"loading {ref.name}")
            loaded.append(load_run(ref, self.project))
        trs = {round(float(r.tr_s), 6) for r in refs}
        if len(trs) != 1:
            raise MismatchError(expected_found("TR of the selected runs", "one TR", f"{sorted(trs)} s"))
        conf = None
        if confounds:
            from ..importers import confounds_for_runs

            conf = confounds_for_runs(self.project, refs, confounds, n_trs=[r.data.shape[0] for r in loaded])
        yield Progress(len(refs), len(refs), "runs loaded")
        return BrainData(confounds=conf, runs=[np.asarray(r.data, np.float32) for r in loaded],
                         names=[r.name for r in refs],
                         stimuli=[r.episode for r in refs], subjects=[r.subject for r in refs],
                         tr_s=float(refs[0].tr_s), space=refs[0].space, onsets_s=[float(r.onset_s) for r in refs],
                         provenance={"project": str(Path(self.project_file).resolve()),
                                     "brain": [str(self.project.path(r.path)) for r in refs]})

    def episode_inputs(self, episode: str, n_trs: int, tr_s: float, onset_s: float):
        """The :class:`~engine.features.base.EpisodeInputs` of an episode on a TR grid."""
        from ..features.extract import episode_inputs

        return episode_inputs(self.project, episode, n_trs=n_trs, tr_s=tr_s, onset_s=onset_s)


# ---------------------------------------------------------------------------- feature files
def read_feature_file(path, layers: Optional[Sequence[str]] = None) -> Dict[str, np.ndarray]:
    """``{layer: (n_trs, n_features) float32}`` from a .npy/.npz/.h5 feature file.

    ``.h5`` files written by ``alignscope extract`` hold ``/features/<layer>``; other .h5/.npz
    files' top-level arrays are the layers; ``.npy`` is one layer named ``features``.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(expected_found("feature file", "an existing file", f"no file at {path}"))
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".npz", ".h5", ".hdf5"):
        raise DataError(expected_found(f"feature file {path.name}", "a .npy, .npz or .h5 file", suffix or "no suffix"))
    from ..io.arrays import describe_arrays, read_array, read_arrays

    # one reader for every format: no pickles, empty arrays, absurd headers, lazy HDF5, wrong formats
    if suffix == ".npy" and not layers:
        arrays = {"features": read_array(path, None, what="feature file")[0]}
    else:
        try:
            arrays = read_arrays(path, names=list(layers) if layers else None, group="features",
                                 what="feature file")
        except DataError:
            if not layers and suffix != ".npy":
                try:
                    infos = describe_arrays(path, "feature file")
                except DataError:
                    infos = []
                if len(infos) == 1:     # one array: say exactly what is wrong with it
                    read_array(path, infos[0].name or None, what="feature file")
            raise
    bad = {k: v.shape for k, v in arrays.items() if v.ndim not in (1, 2)}
    if bad and not any(v.ndim in (1, 2) for v in arrays.values()):
        raise DataError(expected_found(f"feature file {path}", "2-D (n_trs, n_features) arrays",
                                       ", ".join(f"{k} of shape {s}" for k, s in bad.items())))
    arrays = {k: (v[:, None] if v.ndim == 1 else v) for k, v in arrays.items()}
    arrays = {k: v for k, v in arrays.items() if v.ndim == 2}
    if not arrays:
        raise DataError(expected_found(f"feature file {path}", "2-D (n_trs, n_features) arrays", "none"))
    if layers:
        missing = [l for l in layers if l not in arrays]
        if missing:
            raise DataError(expected_found(f"layers in {path.name}", f"{missing}", f"layers {sorted(arrays)}"))
        arrays = {l: arrays[l] for l in layers}
    return {k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()}


def resolve_feature_files(features: Sequence, stimuli: Sequence[str], what: str = "feature files") -> List[Path]:
    """One feature file per run: the files as given, or ``<episode>.h5/.npz/.npy`` of one folder."""
    if len(features) == 1 and Path(features[0]).is_dir():
        folder = Path(features[0])
        files = []
        for ep in stimuli:
            found = [folder / f"{ep}{s}" for s in (".h5", ".npz", ".npy") if (folder / f"{ep}{s}").exists()]
            if not found:
                raise DataError(expected_found(f"feature file for {ep!r} in {folder}", f"{ep}.h5/.npz/.npy", "none"))
            files.append(found[0])
    else:
        files = [Path(p) for p in features]
    if len(files) != len(stimuli):
        raise MismatchError(expected_found(what, f"{len(stimuli)} (one per brain run)", len(files)))
    return files


# ---------------------------------------------------------------------------- stimulus files
def classify_stimulus(path) -> str:
    """``"video"``, ``"audio"``, ``"words"`` or ``"events"``: what a stimulus file is, by name and content.

    Media by extension; ``.TextGrid``/``.srt``/``.vtt`` are word timings; a ``.tsv``/``.csv``/``.txt``
    table is an events file when it has BIDS ``onset`` and ``duration`` columns and no word/text
    column, or is a headerless FSL three-column file (onset, duration, amplitude); otherwise word
    timings (:func:`engine.io.text.read_words` reads them).
    """
    import re

    from ..io.media_info import AUDIO_EXTENSIONS, VIDEO_EXTENSIONS

    path = Path(path)
    if not path.exists():
        raise DataError(expected_found("stimulus file", "an existing file", f"no file at {path}"))
    low = path.name.lower()
    suffix = path.suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        return "video"
    if suffix in AUDIO_EXTENSIONS:
        return "audio"
    if low.endswith((".textgrid", ".srt", ".vtt")):
        return "words"
    if suffix in (".tsv", ".csv", ".txt"):
        try:
            first = path.read_text(encoding="utf-8-sig", errors="replace").strip().splitlines()[0]
        except (OSError, IndexError):
            raise DataError(expected_found(f"stimulus table {path.name}", "a header row or numbers", "an empty file"))
        cells = [c.strip().lower() for c in re.split(r"[\t,]|\s+", first) if c.strip()]
        if {"onset", "duration"} <= set(cells) and not {"word", "words", "text", "token"} & set(cells):
            return "events"
        try:
            numbers = [float(c) for c in cells]
        except ValueError:
            numbers = None
        if numbers is not None and len(numbers) == 3:
            return "events"
        return "words"
    raise DataError(expected_found(f"stimulus file {path.name}",
                                   "a video, an audio file, word timings (.TextGrid/.srt/.vtt/.tsv) or an "
                                   "events table (.tsv/.txt)", suffix or "no extension"))
