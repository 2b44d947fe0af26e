"""What every study shares: the settings, the brain data, model features, fits that are reused,
regions and maps, and the :class:`StudyResult` a workflow returns.

A *model reference* names features the way a user writes them on the command line::

    minilm                  every layer the registry spec extracts (the last one where one is needed)
    minilm:layer03          one layer
    demo-av:visual+joint    two layers of one model, fitted jointly (banded ridge, one penalty each)
    /path/to/checkpoint     a local Hugging Face folder (saved with ``save_pretrained``)

Features come from :func:`engine.features.extract.extract_features_job` (content-addressed
cache: a second study of the same model reads them back), fits from
:func:`engine.encoding.fit.fit_encoding_job` through :func:`fit_spaces_job`; a fit is saved under
``<project>/results/studies/fits/<spec hash>.h5`` and reused when a file with the same spec hash
exists (same features, brain runs, options and code version).

Cross-validation follows :class:`~engine.encoding.options.FitOptions` (``cv="auto"`` by default:
leave-one-run-out over runs of distinct stimuli, grouped by stimulus when runs repeat some,
within-run blocks for a single run or for runs that all show one stimulus); the report states
the scheme used and its warnings.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import ConfigError, DataError, expected_found
from ..jobs import CancelToken, Progress, nested

__all__ = ["StudySettings", "StudyResult", "StudyData", "ModelRef", "parse_model_ref", "fit_spaces_job",
           "STUDY_VERSION", "library_versions", "load_study_data", "region_effects", "Timer", "fits_dir_for",
           "study_options", "brain_data"]

#: Bump when a change in the studies' code changes the numbers they produce (fit reuse key).
STUDY_VERSION = "1"


# ---------------------------------------------------------------------------------- settings
@dataclass
class StudySettings:
    """Everything a study run depends on (stored in its report and ``study.json``).

    Attributes
    ----------
    project : path of the project file (or folder)
    out_dir : folder written: ``report.html``, ``maps/``, ``tables/``, ``study.json``, ``study.npz``
    models : model references (see the module docstring); each workflow says how many it needs
    space : which runs to use when a project has several (``fsaverage5``, ``parcels``...);
        default: fsaverage5 if present, else the first run's space
    atlas : bundled atlas for the regions of vertex data (default: the project's, else schaefer_400)
    fit : :class:`engine.encoding.options.FitOptions` as a dict (``FitOptions.to_dict``)
    pool : ``"auto"``, ``"runs"`` or ``"mean"``: ``mean`` averages the (z-scored) runs of an
        episode into one group-mean run; ``auto`` does so when the runs of an episode come from
        3 or more subjects (ROI studies of many listeners), else keeps every run
    ablate : input removed by the ``ablation`` study (``vision``, ``audio`` or ``text``)
    n_perm, n_boot, block_trs, alpha, ci, seed : statistics (block permutations, bootstrap, FDR)
    device : feature extraction device (``auto``, ``cpu``, ``cuda``)
    cache_dir : feature cache root (default: the user cache)
    episodes : episodes to use (default: all with runs in the chosen space)
    qc : quality checks in the report (:mod:`engine.qc` on the study's runs and episodes):
        ``fast`` (every check but the stimulus-brain sync, which extracts low-level features),
        ``full`` (with the sync) or ``off``
    """

    project: str
    out_dir: str
    models: List[str] = field(default_factory=list)
    space: Optional[str] = None
    atlas: Optional[str] = None
    fit: Dict[str, Any] = field(default_factory=dict)
    pool: str = "auto"
    ablate: str = "text"
    n_perm: int = 1000
    n_boot: int = 1000
    block_trs: int = 10
    alpha: float = 0.05
    ci: float = 0.95
    seed: int = 0
    device: str = "auto"
    cache_dir: Optional[str] = None
    episodes: Optional[List[str]] = None
    qc: str = "fast"

    def __post_init__(self) -> None:
        self.project = str(self.project)
        self.out_dir = str(self.out_dir)
        self.models = [str(m) for m in (self.models or [])]
        if self.pool not in ("auto", "runs", "mean"):
            raise ConfigError(f"pool: got {self.pool!r}. Supported values are: auto, runs, mean")
        if self.qc not in ("fast", "full", "off"):
            raise ConfigError(f"qc: got {self.qc!r}. Supported values are: fast, full, off")
        for name, lo in (("n_perm", 1), ("n_boot", 1), ("block_trs", 1)):
            if int(getattr(self, name)) < lo:
                raise ConfigError(expected_found(name, f"an integer >= {lo}", getattr(self, name)))
        if not 0 < float(self.alpha) < 1 or not 0 < float(self.ci) < 1:
            raise ConfigError(expected_found("alpha and ci", "numbers between 0 and 1", (self.alpha, self.ci)))
        self.fit_options()  # validates the fit settings now, with their names

    def fit_options(self):
        from ..encoding.options import FitOptions

        return FitOptions.from_dict(self.fit)

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["fit"] = self.fit_options().to_dict()
        return d


@dataclass
class StudyResult:
    """What a workflow found and where it wrote it.

    Attributes
    ----------
    workflow : ``encoders``, ``ablation``, ``joint``, ``checkpoints`` or ``layers``
    title : one line saying what was compared
    out_dir, report : the folder and its ``report.html``
    maps : name -> per-target values (n_targets,) (Δr, unique R², best layer...)
    map_meta : name -> {"label", "unit", "signed", "kind" ("continuous"/"categorical"), "files"}
    vertex_maps : name -> (n_vertices,) values on the surface (when the data map onto one)
    region_table : the main per-region table (region, value, ci_low, ci_high, q_value...)
    value_column : the column of ``region_table`` the bars show
    layer_region : layer x region table (checkpoints, layers), or None
    tables : every table written (name -> DataFrame), as CSV under ``tables/``
    findings : sentences that answer the study's question
    settings, timings_s, versions : provenance shown in the report
    """

    workflow: str
    title: str
    out_dir: Path
    report: Optional[Path] = None
    maps: Dict[str, np.ndarray] = field(default_factory=dict)
    map_meta: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    vertex_maps: Dict[str, np.ndarray] = field(default_factory=dict)
    region_table: Any = None
    value_column: str = "mean_difference"
    layer_region: Any = None
    tables: Dict[str, Any] = field(default_factory=dict)
    findings: List[str] = field(default_factory=list)
    settings: Dict[str, Any] = field(default_factory=dict)
    timings_s: Dict[str, float] = field(default_factory=dict)
    versions: Dict[str, str] = field(default_factory=dict)
    space: str = ""
    surface_space: Optional[str] = None
    truth_check: Dict[str, Any] = field(default_factory=dict)
    qc: Dict[str, Any] = field(default_factory=dict)
    qc_html: str = ""

    def summary(self) -> Dict[str, Any]:
        """JSON-able summary (what ``--json`` prints and ``study.json`` holds)."""
        out = {"workflow": self.workflow, "title": self.title, "out_dir": str(self.out_dir),
               "report": str(self.report) if self.report else None, "findings": list(self.findings),
               "maps": {k: {kk: vv for kk, vv in v.items()} for k, v in self.map_meta.items()},
               "tables": {k: f"tables/{k}.csv" for k in self.tables}, "value_column": self.value_column,
               "space": self.space, "surface_space": self.surface_space, "truth_check": self.truth_check,
               "settings": self.settings, "timings_s": self.timings_s, "versions": self.versions,
               "qc": self.qc}
        if self.region_table is not None:
            out["regions"] = json.loads(self.region_table.to_json(orient="records"))
        return out

    @classmethod
    def load(cls, out_dir) -> "StudyResult":
        """Reopen a study folder written by a workflow (``study.json`` + ``study.npz`` + tables)."""
        import pandas as pd

        out_dir = Path(out_dir)
        meta_path = out_dir / "study.json"
        if not meta_path.exists():
            raise DataError(expected_found("study folder", f"{meta_path.name} in {out_dir}", "no such file"))
        meta = json.loads(meta_path.read_text())
        arrays = np.load(out_dir / "study.npz", allow_pickle=False) if (out_dir / "study.npz").exists() else {}
        tables = {k: pd.read_csv(out_dir / rel) for k, rel in meta.get("tables", {}).items()
                  if (out_dir / rel).exists()}
        res = cls(workflow=meta["workflow"], title=meta["title"], out_dir=out_dir,
                  report=Path(meta["report"]) if meta.get("report") else None,
                  maps={k[4:]: arrays[k] for k in getattr(arrays, "files", []) if k.startswith("map_")},
                  map_meta=meta.get("maps", {}),
                  vertex_maps={k[4:]: arrays[k] for k in getattr(arrays, "files", []) if k.startswith("vtx_")},
                  tables=tables, findings=meta.get("findings", []), settings=meta.get("settings", {}),
                  timings_s=meta.get("timings_s", {}), versions=meta.get("versions", {}),
                  value_column=meta.get("value_column", "mean_difference"), space=meta.get("space", ""),
                  surface_space=meta.get("surface_space"), qc=meta.get("qc", {}),
                  truth_check=meta.get("truth_check", {}))
        res.region_table = tables.get("regions")
        lr = tables.get("layer_region")
        if lr is not None:
            res.layer_region = lr.set_index(lr.columns[0])
        return res


class Timer:
    """Wall-clock seconds per named stage (shown in the report)."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.stages: Dict[str, float] = {}
        self._last = self.t0

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        self.stages[name] = round(self.stages.get(name, 0.0) + now - self._last, 3)
        self._last = now

    def total(self) -> float:
        return round(time.perf_counter() - self.t0, 3)


def library_versions() -> Dict[str, str]:
    from importlib import metadata

    out = {}
    for name in ("numpy", "scipy", "scikit-learn", "pandas", "torch", "transformers", "nibabel", "matplotlib",
                 "h5py", "himalaya"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    from .. import __version__

    out["alignscope"] = __version__
    out["studies"] = STUDY_VERSION
    return out


# ---------------------------------------------------------------------------------- models
@dataclass(frozen=True)
class ModelRef:
    """A parsed model reference: the model and the layers (None: the extractor's)."""

    model: str
    layers: Optional[Tuple[str, ...]] = None

    @property
    def label(self) -> str:
        name = Path(self.model).name if ("/" in self.model or "\\" in self.model) else self.model
        return name + (":" + "+".join(self.layers) if self.layers else "")


def parse_model_ref(text: str) -> ModelRef:
    """``NAME[:LAYER[+LAYER...]]`` -> :class:`ModelRef` (see the module docstring)."""
    text = str(text).strip()
    if not text:
        raise ConfigError(expected_found("model", "a registry name, folder or NAME:LAYER", "an empty string"))
    if ":" in text:
        head, tail = text.rsplit(":", 1)
        if head and tail and "/" not in tail and "\\" not in tail:
            layers = tuple(x for x in tail.split("+") if x)
            return ModelRef(head, layers or None)
    return ModelRef(text, None)


# ---------------------------------------------------------------------------------- brain data
@dataclass
class StudyData:
    """The brain runs a study fits, their regions and how values reach the cortex.

    Attributes
    ----------
    project, project_file
    runs : the RunRefs used (one per fitted run; after pooling, the first run of each episode)
    brain : per run (n_trs, n_targets) float32, detrended as ``FitOptions.detrend`` says
    episodes : the episode of each run
    run_names, tr_s, space
    labels, region_names : region of each target (1-based; 0 none) and the regions' names
    vertex_labels, surface_space : atlas on the surface (for maps), when the data map onto one
    repeats : per episode, the (n_runs, n_trs, n_targets) runs of that episode before pooling
        (noise ceiling), when several runs share an episode
    pooled : whether the runs of an episode were averaged
    """

    project: Any
    project_file: Path
    runs: list
    brain: List[np.ndarray]
    episodes: List[str]
    run_names: List[str]
    tr_s: float
    space: str
    labels: np.ndarray
    region_names: List[str]
    parcel_atlas: Any = None
    vertex_labels: Optional[np.ndarray] = None
    surface_space: Optional[str] = None
    repeats: Dict[str, np.ndarray] = field(default_factory=dict)
    pooled: bool = False
    subjects: List[str] = field(default_factory=list)
    volume: Optional["VolumeGrid"] = None
    _features: Dict[Any, Any] = field(default_factory=dict, repr=False)

    @property
    def n_targets(self) -> int:
        return int(self.brain[0].shape[1])

    def to_vertices(self, values: np.ndarray) -> Optional[np.ndarray]:
        """Per-target values on the surface vertices (None when the targets are not on one)."""
        v = np.asarray(values, dtype=np.float64)
        if self.surface_space is None:
            return None
        if self.parcel_atlas is not None:
            return np.asarray(self.parcel_atlas.parcel_to_vertex(v), dtype=np.float64)
        return v

    def data_hash(self) -> str:
        h = hashlib.sha1()
        for r in self.brain:
            h.update(str(r.shape).encode())
            h.update(np.ascontiguousarray(r[:: max(1, r.shape[0] // 64)]).tobytes())
            h.update(np.ascontiguousarray(r.sum(0)).tobytes())
        return h.hexdigest()

    # -- features ------------------------------------------------------------------------------
    def features_job(self, ref: ModelRef, ablate: str = "none", all_layers: bool = False, device: str = "auto",
                     cache_dir=None, token: Optional[CancelToken] = None, overrides: Optional[Dict] = None):
        """Job: ``{layer: [per-run (n_trs, n_features) float32]}`` and the cache keys used.

        Returns ``(spaces, keys)``: ``spaces`` maps each extracted layer name to one array per
        run (runs of the same episode share the extraction); ``keys`` the feature cache keys.
        """
        from ..features.extract import episode_inputs, extract_features_job

        overrides = dict(overrides or {})
        if all_layers:
            overrides["layers"] = ()
        spaces: Dict[str, List[np.ndarray]] = {}
        keys = []
        per_episode: Dict[Any, Any] = {}
        for i, (run, episode) in enumerate(zip(self.runs, self.episodes)):
            n_trs = self.brain[i].shape[0]
            grid = (episode, n_trs, float(run.tr_s), float(run.onset_s))
            memo = (ref.model, ablate, all_layers, grid, tuple(sorted(overrides.items())))
            if memo not in self._features:
                if grid not in per_episode:
                    per_episode[grid] = episode_inputs(self.project, episode, n_trs=n_trs, tr_s=run.tr_s,
                                                       onset_s=run.onset_s)
                gen = extract_features_job(per_episode[grid], ref.model, token=token, ablate=ablate,
                                           cache_dir=cache_dir, device=device, **overrides)
                self._features[memo] = yield from nested(gen, i, len(self.runs), f"features of {ref.label}")
            feats = self._features[memo]
            wanted = list(ref.layers) if ref.layers else list(feats)
            missing = [w for w in wanted if w not in feats]
            if missing:
                raise ConfigError(expected_found(f"layers of {ref.model}", f"names among {list(feats)}",
                                                 missing))
            for name in wanted:
                spaces.setdefault(name, []).append(feats[name].data)
                key = feats[name].meta.get("cache_key")
                if key not in keys:
                    keys.append(key)
        return spaces, keys


def _bundled_atlas_for(n: int, name: Optional[str]):
    from ..io.atlases import load_atlas

    try:
        atlas = load_atlas(name) if name else None
    except Exception:  # noqa: BLE001 - not a bundled atlas: no surface maps
        return None
    return atlas if atlas is not None and atlas.n_parcels == n else None


def load_study_data(settings: StudySettings, detrend: Optional[int] = 1) -> StudyData:
    """Read the project's runs for a study (see :class:`StudySettings` for which ones)."""
    from ..encoding import preprocess as pp
    from ..io.fmri import load_run
    from ..importers import open_project

    project = open_project(settings.project)
    project_file = Path(settings.project)
    if project_file.is_dir():
        found = sorted(project_file.glob("*.alignscope.json"))
        project_file = found[0] if found else project_file / "project.alignscope.json"
    runs = [r for r in project.runs if r.episode]
    if not runs:
        raise DataError(expected_found(f"runs in project {project_file.name}", "at least one run paired with "
                                       "an episode", "none"))
    spaces = list(dict.fromkeys(r.space for r in runs))
    space = settings.space or ("fsaverage5" if "fsaverage5" in spaces else spaces[0])
    if space not in spaces:
        raise ConfigError(expected_found("space", f"one of the project's run spaces {spaces}", space))
    runs = [r for r in runs if r.space == space]
    if settings.episodes:
        known = {r.episode for r in runs}
        bad = [e for e in settings.episodes if e not in known]
        if bad:
            raise ConfigError(expected_found("episodes", f"episodes with {space} runs {sorted(known)}", bad))
        runs = [r for r in runs if r.episode in settings.episodes]
    loaded = [load_run(r, project) for r in runs]
    n_targets = {b.data.shape[1] for b in loaded}
    if len(n_targets) != 1:
        raise DataError(expected_found(f"targets of the {space} runs", "the same number in every run",
                                       sorted(n_targets)))
    tr = {round(float(r.tr_s), 6) for r in runs}
    if len(tr) != 1:
        raise DataError(expected_found("TR of the runs", "one TR for all runs of a study", sorted(tr)))
    tr_s = float(runs[0].tr_s)
    data = [np.asarray(b.data, dtype=np.float32) for b in loaded]
    data = pp.clean_runs(data, detrend=detrend) if detrend is not None else data

    # repeats and pooling
    by_episode: Dict[str, List[int]] = {}
    for i, r in enumerate(runs):
        by_episode.setdefault(r.episode, []).append(i)
    repeats = {}
    pool = settings.pool
    subjects_of = {e: {runs[i].subject for i in idx} for e, idx in by_episode.items()}
    if pool == "auto":
        pool = "mean" if any(len(s) >= 3 for s in subjects_of.values()) else "runs"
    for e, idx in by_episode.items():
        lengths = {data[i].shape[0] for i in idx}
        if len(idx) >= 2 and len(lengths) == 1:
            repeats[e] = np.stack([pp.zscore_runs([data[i]])[0] for i in idx])
    if pool == "mean":
        new_runs, new_data = [], []
        for e, idx in by_episode.items():
            n = min(data[i].shape[0] for i in idx)
            z = [pp.zscore_runs([data[i][:n]])[0] for i in idx]
            new_runs.append(runs[idx[0]])
            new_data.append(np.mean(z, axis=0).astype(np.float32))
        runs_used, data_used = new_runs, new_data
        run_names = [f"{r.episode} (mean of {len(by_episode[r.episode])} runs)" for r in runs_used]
    else:
        runs_used, data_used = runs, data
        run_names = [r.name for r in runs]

    # regions
    n = data_used[0].shape[1]
    labels = np.arange(1, n + 1, dtype=np.int64)
    names = None
    parcel_atlas = None
    vertex_labels = None
    surface_space = None
    from ..io.surfaces import space_for_n_vertices

    vertex_space = space_for_n_vertices(n)
    if vertex_space is not None:
        from ..io.atlases import load_atlas

        atlas_name = settings.atlas or next((a.path.split(":", 1)[1] for a in project.atlases
                                             if a.space == vertex_space and a.path.startswith("builtin:")),
                                            "schaefer_400")
        atlas = load_atlas(atlas_name, space=vertex_space)
        labels = np.asarray(atlas.labels, dtype=np.int64)
        names = list(atlas.names)
        vertex_labels = labels
        surface_space = vertex_space
    else:
        atlas_name = settings.atlas or runs[0].atlas
        parcel_atlas = _bundled_atlas_for(n, atlas_name)
        if parcel_atlas is not None:
            names = list(parcel_atlas.names)
            vertex_labels = np.asarray(parcel_atlas.labels, dtype=np.int64)
            surface_space = parcel_atlas.space
        else:
            col = loaded[0].meta.get("column_names") or project.extra.get("target_names")
            names = [str(c) for c in col] if col and len(col) == n else [f"target {k}" for k in range(1, n + 1)]
    return StudyData(project=project, project_file=project_file, runs=runs_used, brain=data_used,
                     episodes=[r.episode for r in runs_used], run_names=run_names, tr_s=tr_s, space=space,
                     labels=labels, region_names=names, parcel_atlas=parcel_atlas, vertex_labels=vertex_labels,
                     surface_space=surface_space, repeats=repeats, pooled=pool == "mean",
                     subjects=sorted({r.subject for r in runs}),
                     volume=volume_grid(loaded[0], project) if loaded[0].meta.get("format") == "nifti" else None)


# ---------------------------------------------------------------------------------- volume runs
@dataclass
class VolumeGrid:
    """Where the targets of a NIfTI run sit in its volume: maps go back to the grid through it.

    Attributes
    ----------
    shape : (nx, ny, nz) of the run's grid
    affine : (4, 4) voxel -> scanner mm of the run
    mask : (nx, ny, nz) bool, the voxels that are the run's targets (C order, as ``data[mask]``)
    """

    shape: Tuple[int, int, int]
    affine: np.ndarray
    mask: np.ndarray

    @property
    def n_voxels(self) -> int:
        return int(self.mask.sum())

    def to_volume(self, values: np.ndarray) -> np.ndarray:
        """(n_voxels,) per-target values -> (nx, ny, nz) float32, NaN outside the mask."""
        v = np.asarray(values, dtype=np.float32).ravel()
        if v.size != self.n_voxels:
            raise DataError(expected_found("map of a volume run", f"{self.n_voxels} values (voxels in the mask)",
                                           v.size))
        vol = np.full(self.shape, np.nan, dtype=np.float32)
        vol[self.mask] = v
        return vol


def volume_grid(run, project=None) -> Optional[VolumeGrid]:
    """The :class:`VolumeGrid` of a NIfTI :class:`~engine.io.fmri.BrainRun` (None when its mask cannot
    be rebuilt to the run's voxel count).

    The run's meta carries its grid shape, affine and mask source (:func:`engine.io.fmri.load_nifti_run`):
    a mask file on the run's grid is read back (non-zero voxels); otherwise the mask nilearn computed
    (``NiftiMasker`` with the loader's settings) is computed again from the source file.
    """
    import nibabel as nib

    meta = run.meta
    shape = tuple(int(x) for x in (meta.get("shape") or [])[:3])
    affine = np.asarray(meta.get("affine"), dtype=np.float64) if meta.get("affine") is not None else None
    if len(shape) != 3 or affine is None or affine.shape != (4, 4):
        return None
    mask_src = meta.get("mask")
    mask = None
    if mask_src not in (None, "epi", "image"):
        try:
            img = nib.load(str(mask_src))
            m = np.asarray(img.dataobj)
            m = m.reshape(m.shape[:3]) if m.ndim == 4 and m.shape[3] == 1 else m
            if m.shape == shape:
                mask = m != 0
        except Exception:  # noqa: BLE001 - unreadable now: try the masker below
            mask = None
    if mask is None or int(mask.sum()) != run.n_targets:
        try:
            from nilearn.maskers import NiftiMasker

            src = nib.load(str(meta["source"]))
            mask_img = nib.load(str(mask_src)) if mask_src not in (None, "epi", "image") else None
            masker = NiftiMasker(mask_img=mask_img, memory=None, memory_level=0, standardize=None, detrend=False)
            data = np.nan_to_num(np.asarray(src.dataobj, dtype=np.float32))
            masker.fit(nib.Nifti1Image(data, src.affine, src.header))
            mask = np.asarray(masker.mask_img_.dataobj).astype(bool)
        except Exception:  # noqa: BLE001 - no mask to put the maps back: NPY only
            return None
    if mask.shape != shape or int(mask.sum()) != run.n_targets:
        return None
    return VolumeGrid(shape=shape, affine=affine, mask=mask)


# ---------------------------------------------------------------------------------- fitting
def study_options(data: StudyData, options):
    """The fit options a study uses: the user's :class:`~engine.encoding.options.FitOptions` as given
    (``cv="auto"`` is resolved by :func:`engine.encoding.fit.make_cv_plan` from the runs' stimuli and
    subjects; the report shows what it chose)."""
    return options


def brain_data(data: StudyData):
    """The runs as :class:`engine.pipeline.data.BrainData` (what :func:`engine.pipeline.fit.fit_job` fits)."""
    from ..pipeline.data import BrainData

    return BrainData(runs=list(data.brain), names=list(data.run_names), stimuli=list(data.episodes),
                     subjects=[getattr(r, "subject", "sub-01") for r in data.runs], tr_s=data.tr_s,
                     space=data.space, onsets_s=[float(getattr(r, "onset_s", 0.0)) for r in data.runs],
                     provenance={"project": str(data.project_file), "runs": list(data.run_names),
                                 "pooled": data.pooled})


def fit_key(parts: Dict[str, Any]) -> str:
    from ..features.cache import cache_key

    return cache_key(parts)[:20]


def fit_spaces_job(data: StudyData, spaces: Dict[str, List[np.ndarray]], options, name: str,
                   feature_keys: Sequence[str] = (), fits_dir: Optional[Path] = None, token=None,
                   residual_of: Optional[Dict[str, List[np.ndarray]]] = None,
                   extra_key: Optional[Dict[str, Any]] = None):
    """Job: one encoding model of ``spaces`` through :func:`engine.pipeline.fit.fit_job`, reused if saved.

    Several spaces are fitted as ``options.multi_space`` says (banded ridge by default).
    ``residual_of``: unimodal spaces regressed out of the (single) space before encoding
    (residual encoding, :func:`engine.encoding.partition.residualize`, per training fold).

    Returns
    -------
    (EncodingResult, reused: bool)
    """
    from ..encoding import preprocess as pp
    from ..encoding.partition import residualize
    from ..encoding.results import EncodingResult
    from ..encoding.ridge import AlphaOnEdgeWarning
    from ..pipeline.fit import fit_job

    options = study_options(data, options)
    key_parts = {"features": list(feature_keys), "spaces": list(spaces), "brain": data.data_hash(),
                 "runs": data.run_names, "options": options.to_dict(), "version": STUDY_VERSION,
                 "residual_of": sorted(residual_of) if residual_of else None, "extra": extra_key or {}}
    if not feature_keys:  # features made here: hash their values
        h = hashlib.sha1()
        for k, runs in spaces.items():
            for r in runs:
                h.update(np.ascontiguousarray(r).tobytes())
        key_parts["feature_values"] = h.hexdigest()
    key = fit_key(key_parts)
    path = Path(fits_dir) / f"{key}.h5" if fits_dir is not None else None
    if path is not None and path.exists():
        try:
            res = EncodingResult.load(path)
            yield Progress(1, 1, f"{name}: reused the saved fit {path.name}")
            return res, True
        except Exception:  # noqa: BLE001 - unreadable: refit
            pass
    n_runs = len(data.brain)
    for sname, runs in spaces.items():
        if len(runs) != n_runs:
            raise DataError(expected_found(f"runs of features {sname!r}", n_runs, len(runs)))
    transform = None
    if residual_of:
        if len(spaces) != 1:
            raise ConfigError(expected_found("residual encoding", "one joint space", list(spaces)))
        uni = [pp.zscore_runs([np.asarray(x, np.float32) for x in residual_of[u]]) for u in residual_of]
        uni_runs = [np.concatenate([u[i] for u in uni], axis=1) for i in range(n_runs)]
        jname = next(iter(spaces))

        def transform(fspaces, train_runs):
            resid, _ = residualize(fspaces[jname], uni_runs, train_runs)
            return {jname: resid}

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AlphaOnEdgeWarning)
        warnings.simplefilter("ignore", UserWarning)
        gen = fit_job(spaces, brain_data(data), options, space_label=name,
                      provenance={"study_fit_key": key, "feature_cache_keys": list(feature_keys)}, token=token)
        if transform is not None:  # fit_job has no fold_transform: call the encoding job with its keywords
            from ..encoding.fit import fit_encoding_job
            from ..pipeline.fit import fit_kwargs

            gen.close()
            kw = fit_kwargs(brain_data(data), options)
            gen = fit_encoding_job({k: [np.asarray(x, np.float32) for x in v] for k, v in spaces.items()},
                                   list(data.brain), space=name, fold_transform=transform, token=token,
                                   provenance={"study_fit_key": key, "residual_of": sorted(residual_of)}, **kw)
        res = yield from gen
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            res.save(path)
        except OSError:  # a read-only project folder only costs a refit next time
            pass
    return res, False


def fits_dir_for(data: StudyData, settings: StudySettings) -> Path:
    """Where fits are kept: ``<project>/results/studies/fits`` (else ``<out>/fits``)."""
    root = Path(data.project_file).parent
    d = root / "results" / "studies" / "fits"
    try:
        d.mkdir(parents=True, exist_ok=True)
        probe = d / ".write-test"
        probe.write_text("")
        probe.unlink()
        return d
    except OSError:
        return Path(settings.out_dir) / "fits"


# ---------------------------------------------------------------------------------- regions
def region_effects(comparison, data: StudyData, alpha: float, ci: float):
    """Region table of a model comparison (Δr, interval, FDR q), hemisphere-free."""
    from ..encoding.regions import region_comparison

    return region_comparison(comparison, data.labels, data.region_names, alpha=alpha, ci_level=ci)


# ---------------------------------------------------------------------------------- shared steps
def is_demo(data: StudyData) -> bool:
    return "demo_version" in (data.project.extra or {})


def demo_random_minilm(data: StudyData) -> Optional[str]:
    """The demo's randomly initialised MiniLM folder (:func:`engine.demo.random_minilm_folder`), or None
    when the pretrained MiniLM is not installed."""
    from ..demo import random_minilm_folder

    try:
        return str(random_minilm_folder(Path(data.project_file).parent))
    except FileNotFoundError:
        return None


def features_for(data: StudyData, settings: StudySettings, ref: ModelRef, ablate: str = "none",
                 all_layers: bool = False, token=None, step: int = 0, total: int = 1, overrides=None):
    """Job: ``(spaces, keys)`` of a model reference; without layers: the last layer only unless
    ``all_layers`` (then every layer the model has)."""
    gen = data.features_job(ref, ablate=ablate, all_layers=all_layers, device=settings.device,
                            cache_dir=settings.cache_dir, token=token, overrides=overrides)
    spaces, keys = yield from nested(gen, step, total, f"features of {ref.label}" + (
        f" without {ablate}" if ablate != "none" else ""))
    if not ref.layers and not all_layers:
        last = list(spaces)[-1]
        spaces = {last: spaces[last]}
    return spaces, keys


def compare_job(res_a, res_b, settings: StudySettings, token=None, step: int = 0, total: int = 1,
                label: str = "comparison"):
    """Job: :func:`engine.encoding.stats.compare_models_job` with the study's statistics."""
    from ..encoding.stats import compare_models_job

    gen = compare_models_job(res_a, res_b, n_perm=settings.n_perm, n_boot=settings.n_boot,
                             block_trs=settings.block_trs, ci=settings.ci, seed=settings.seed, alpha=settings.alpha,
                             token=token)
    return (yield from nested(gen, step, total, label))


def target_table(comparison):
    """Per-target DataFrame of a model comparison: target, r_a, r_b, difference, ci_low, ci_high, p, q."""
    import pandas as pd

    c = comparison
    return pd.DataFrame({"target": np.arange(c.difference.size), "r_a": c.scores_a, "r_b": c.scores_b,
                         "difference": c.difference, "ci_low": c.ci_low, "ci_high": c.ci_high,
                         "p_value": c.p_values, "q_value": c.q_values})


def hemisphere_of_regions(data: StudyData) -> Dict[str, str]:
    """Region name -> "left"/"right"/"both" from the surface labels (empty without a surface)."""
    if data.vertex_labels is None or data.surface_space is None:
        return {}
    from ..io.surfaces import N_VERTICES_PER_HEMI

    n_left = N_VERTICES_PER_HEMI[data.surface_space]
    lab = np.asarray(data.vertex_labels)
    out = {}
    for k, name in enumerate(data.region_names, 1):
        where = np.flatnonzero(lab == k)
        if where.size == 0:
            continue
        left = np.mean(where < n_left)
        out[name] = "left" if left > 0.9 else ("right" if left < 0.1 else "both")
    return out


def significant_regions(table, value: str, alpha: float, sign: int = 1, q: str = "q_value") -> List[str]:
    t = table[(table[q] <= alpha) & (sign * table[value] > 0)]
    t = t.iloc[np.argsort(-sign * t[value].to_numpy(float), kind="stable")]
    return [str(r) for r in t["region"]]


def describe_regions(names: Sequence[str], k: int = 8) -> str:
    names = list(names)
    if not names:
        return "none"
    return ", ".join(names[:k]) + (f" and {len(names) - k} more" if len(names) > k else "")


def finish(result: StudyResult, data: StudyData, settings: StudySettings, timer: Timer, fits: Dict[str, Any],
           figures_extra=None) -> StudyResult:
    """Fill provenance, write every file and the report; returns ``result``."""
    from .report import write_study

    options = study_options(data, settings.fit_options())
    first = next(iter(fits.values()), None)
    result.settings = settings.to_dict()
    result.settings["fit_used"] = options.to_dict()
    if first is not None:
        result.settings["fit_resolved"] = {
            "delays_trs": list(getattr(first, "delays", []) or []),
            "delays_s": list(getattr(first, "delays_s", []) or []),
            "cv": getattr(first, "cv_label", "") or first.provenance.get("cv", ""),
            "tr_s": data.tr_s}
    result.settings["fits"] = {k: {"space": v.space, "mean_r": float(np.nanmean(v.scores)),
                                   "key": v.provenance.get("study_fit_key")} for k, v in fits.items()}
    result.settings["runs"] = list(data.run_names)
    if first is not None:
        from ..encoding.stats import cv_variance_factor

        # the block-swap nulls and bootstrap intervals were widened by its square root
        result.settings["cv_factor"] = cv_variance_factor(first)
    result.space = data.space
    result.surface_space = data.surface_space
    result.versions = library_versions()
    timer.mark("statistics")
    result.qc, result.qc_html = study_qc(data, settings)
    timer.mark("quality checks")
    result.timings_s = dict(timer.stages)
    result.timings_s["total"] = timer.total()
    if is_demo(data):
        result.truth_check = demo_truth_check(result, data)
    write_study(result, data, figures_extra)
    return result


def study_qc(data: StudyData, settings: StudySettings) -> Tuple[Dict[str, Any], str]:
    """Quality checks of the study's runs and episodes (:func:`engine.qc.run.qc_project`) as
    ``(summary, html_fragment)``: ``summary`` has ``summary`` (pass/warn/fail counts), ``failed``,
    ``sync`` and ``checks`` (name, level, subject, message of each); the fragment is
    :func:`engine.qc.report.to_html`. ``settings.qc == "off"``: ``({}, "")``. A QC that cannot run
    on this project is reported in the section instead of stopping the study."""
    import html as _html

    if settings.qc == "off":
        return {}, ""
    from ..errors import AlignScopeError
    from ..qc.report import to_html
    from ..qc.run import qc_project

    sync = settings.qc == "full"
    episodes = sorted(set(data.episodes))
    # the runs the study read (its space and episodes, every run before pooling), not the whole project
    project = copy.copy(data.project)
    project.runs = [r for r in data.project.runs if r.space == data.space and r.episode in episodes]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report = qc_project(project, episodes=episodes, sync=sync, source=Path(str(data.project_file)).name)
    except AlignScopeError as exc:
        msg = f"The quality checks could not run on this project: {exc}"
        return ({"error": str(exc), "checks": []},
                "<section class=\"alignscope-qc\"><h2>Quality checks</h2><p>" + _html.escape(msg) + "</p></section>")
    checks = list(report.checks)
    title = "Quality checks" + ("" if sync else " (stimulus-brain sync not run: --qc full runs it)")
    return ({"summary": dict(report.summary), "failed": bool(report.failed), "sync": sync,
             "checks": [{"name": c.name, "level": c.level, "subject": c.subject, "message": c.message,
                         "category": c.category} for c in checks]},
            to_html(report, title=title))


def demo_truth_check(result: StudyResult, data: StudyData) -> Dict[str, Any]:
    """Demo only (read after the analysis, never by it): the region table's values in the planted
    regions (regions whose targets carry a planted weight >= 0.5 on average) and in the noise-only
    regions (no planted weight at all)."""
    table = result.region_table
    truth_rel = (data.project.extra or {}).get("truth")
    if table is None or truth_rel is None or data.vertex_labels is None:
        return {}
    path = Path(data.project_file).parent / truth_rel
    if not path.exists():
        return {}
    truth = np.load(path)
    maps = {k[4:]: np.asarray(truth[k], np.float64) for k in truth.files if k.startswith("map_")}
    lab = np.asarray(data.vertex_labels)
    if any(m.size != lab.size for m in maps.values()):
        return {}
    counts = np.bincount(lab, minlength=len(data.region_names) + 1).astype(np.float64)
    anyw = np.max(np.stack(list(maps.values())), axis=0)
    top = np.zeros(len(data.region_names) + 1)
    np.maximum.at(top, lab, anyw)
    value = result.value_column
    has_q = "q_value" in table
    alpha = float(result.settings.get("alpha", 0.05))
    out: Dict[str, Any] = {"value": value, "regions": {}}

    def rows(names):
        t = table[table["region"].isin(names)]
        d = {"n": int(len(t)), "mean": float(np.nanmean(t[value])) if len(t) else float("nan")}
        if has_q:
            d["n_significant_positive"] = int(((t["q_value"] <= alpha) & (t[value] > 0)).sum())
            d["n_significant_negative"] = int(((t["q_value"] <= alpha) & (t[value] < 0)).sum())
        if "best_layer" in t:
            d["best_layers"] = {str(k): int(v) for k, v in t["best_layer"].value_counts().items()}
        return d

    for name, m in maps.items():
        w = np.bincount(lab, weights=m, minlength=len(counts)) / np.maximum(counts, 1)
        planted = [data.region_names[k - 1] for k in range(1, len(counts)) if counts[k] > 0 and w[k] >= 0.5]
        out["regions"][name] = {"regions": planted, **rows(planted)}
    noise = [data.region_names[k - 1] for k in range(1, len(counts)) if counts[k] > 0 and top[k] == 0]
    out["noise"] = {"regions_count": len(noise), **rows(noise)}
    return out
