"""One analysis, from a project to a registered result: what the Run menu, ``encode --project``,
the demo and Python all start.

>>> from engine.pipeline import AnalysisSpec, run_analysis_job
>>> from engine.jobs import run_sync
>>> spec = AnalysisSpec(name="minilm", model="minilm", layers=[0.5, 1.0])      # doctest: +SKIP
>>> outcome = run_sync(run_analysis_job("study.alignscope.json", spec))          # doctest: +SKIP
>>> outcome.result.scores, outcome.result_path                                   # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np

from ..encoding.options import FitOptions
from ..errors import ConfigError, expected_found
from ..jobs import Progress

__all__ = ["AnalysisSpec", "AnalysisOutcome", "run_analysis_job", "analysis_inputs_job", "ABLATIONS"]

ABLATIONS = ("none", "vision", "audio", "text")


@dataclass
class AnalysisSpec:
    """Everything one analysis needs besides the project: the window's analysis dialog fills one,
    the CLI builds one from its flags, and ``to_dict()`` is what the dialog remembers and what the
    result's provenance stores (``provenance["analysis"]``).

    Attributes
    ----------
    name : str
        Result name in the project (default: the model and its layers). A result of the same
        name is replaced: the window asks before starting.
    model : str
        Registry name (:func:`~engine.pipeline.features.list_models`), a local model folder, a
        Hub id in the offline cache, or ``"lowlevel"``.
    layers : list, optional
        Hidden-state indices (int, -1 = last) or relative depths (float in (0, 1]) for
        transformers; names for ``lowlevel`` (:func:`~engine.pipeline.features.model_layers`).
        None: the model's default.
    pooling : "mean", "cls" or "last", optional
    window_s : float, optional
        Stimulus window ending at each TR's end (vision/audio models), seconds.
    context_words : int, optional
        Language models: words of context up to each TR's end.
    frames_per_window : int, optional
    device : str
        ``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:N``.
    dtype : str, optional
        ``auto``, ``float32``, ``float16``, ``bfloat16``.
    ablate : str
        ``none``, ``vision``, ``audio`` or ``text``: run the model with one input removed.
    episodes, runs, subjects : list of str, optional
        Which of the project's runs to fit (default: all); runs are of one ``space``.
    space : str, optional
        fsaverage5, fsLR32k, parcels, volume... (default: the first selected run's).
    per_layer : bool
        One result per layer (named ``<name>-<layer>``) instead of one model of all layers.
    fit : FitOptions
        Delays, alphas, CV, preprocessing, banded/joint (:class:`engine.encoding.options.FitOptions`).
    batch_size : int, optional
    use_cache : bool
        Read and write the feature cache (:mod:`engine.features.cache`).
    cache_dir : str, optional
    """

    name: str = ""
    model: str = "lowlevel"
    layers: Optional[List[Union[int, float, str]]] = None
    pooling: Optional[str] = None
    window_s: Optional[float] = None
    context_words: Optional[int] = None
    frames_per_window: Optional[int] = None
    device: str = "auto"
    dtype: Optional[str] = None
    ablate: str = "none"
    episodes: Optional[List[str]] = None
    runs: Optional[List[str]] = None
    subjects: Optional[List[str]] = None
    space: Optional[str] = None
    per_layer: bool = False
    fit: FitOptions = field(default_factory=FitOptions)
    batch_size: Optional[int] = None
    use_cache: bool = True
    cache_dir: Optional[str] = None

    def __post_init__(self) -> None:
        if isinstance(self.fit, dict):
            self.fit = FitOptions.from_dict(self.fit)
        if self.ablate not in ABLATIONS:
            raise ConfigError(f"ablate: got {self.ablate!r}. Supported values are: {', '.join(ABLATIONS)}")
        if self.layers is not None:
            self.layers = list(self.layers)
        for k in ("episodes", "runs", "subjects"):
            v = getattr(self, k)
            if v is not None:
                setattr(self, k, [str(x) for x in v])

    @property
    def result_name(self) -> str:
        """``name``, or ``<model>`` plus its layers (``minilm 0.5,1.0``)."""
        if self.name:
            return self.name
        base = Path(str(self.model)).name or str(self.model)
        return base + (" " + ",".join(map(str, self.layers)) if self.layers else "")

    def to_dict(self) -> Dict[str, Any]:
        """Plain JSON-able dict (the dialog's remembered settings; provenance)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["fit"] = self.fit.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Optional[Dict[str, Any]]) -> "AnalysisSpec":
        """Inverse of :meth:`to_dict`; unknown keys are refused with their names."""
        d = dict(d or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"analysis settings: unknown setting(s) {unknown}. Supported: {sorted(names)}")
        d["fit"] = FitOptions.from_dict(d.get("fit"))
        return cls(**d)

    def replace(self, **changes) -> "AnalysisSpec":
        return dataclasses.replace(self, **changes)


@dataclass
class AnalysisOutcome:
    """What a finished analysis returns (the job's return value).

    Attributes
    ----------
    result : EncodingResult
        The fitted result (per layer: the first layer's; all in ``results``).
    result_name : str
        Its name in the project (``project.results``).
    result_path : Path
        Its .h5 file.
    project_file : Path
        The project file the job was STARTED on, already updated on disk. The window hands
        ``result`` to the open session if it shows that project; nothing is reloaded.
    results : dict
        ``{result name: (EncodingResult, Path)}`` of every result written (several with per_layer).
    """

    result: Any
    result_name: str
    result_path: Path
    project_file: Path
    results: Dict[str, Any] = field(default_factory=dict)


def _feature_grids(refs, brain) -> Dict[tuple, List[int]]:
    """Runs grouped by the TR grid their features need: (episode, onset); one extraction per group."""
    grids: Dict[tuple, List[int]] = {}
    for i, ref in enumerate(refs):
        grids.setdefault((ref.episode, round(float(brain.onsets_s[i]), 6)), []).append(i)
    return grids


def _features_for_runs_job(pdata, refs, brain, spec, token, step0, total):
    """{layer: [per-run (n_trs, k) arrays]}, provenance of the extraction.

    Runs of one episode with one onset share one extraction (as many TRs as the longest of
    them; each run takes its first rows); runs that dropped different first volumes get
    features on their own grid."""
    from .features import episode_features_job

    per_grid, prov = {}, {}
    step = step0
    for (ep, onset), idx in _feature_grids(refs, brain).items():
        n_trs = max(brain.runs[i].shape[0] for i in idx)
        inputs = pdata.episode_inputs(ep, n_trs=n_trs, tr_s=brain.tr_s, onset_s=onset)
        gen = episode_features_job(inputs, spec.model, layers=spec.layers, pooling=spec.pooling,
                                   window_s=spec.window_s, context_words=spec.context_words,
                                   frames_per_window=spec.frames_per_window, device=spec.device, dtype=spec.dtype,
                                   ablate=spec.ablate, batch_size=spec.batch_size, cache_dir=spec.cache_dir,
                                   use_cache=spec.use_cache, token=token)
        while True:
            try:
                p = next(gen)
            except StopIteration as stop:
                spaces = stop.value
                break
            done = int(n_trs * p.fraction) if p.total else 0
            yield Progress(step + min(done, n_trs), total, f"features of {ep}: {p.message}")
        step += n_trs
        for i in idx:
            per_grid[i] = {layer: fs.data[:brain.runs[i].shape[0]] for layer, fs in spaces.items()}
        first = next(iter(spaces.values()))
        key = ep if onset == 0 else f"{ep}@{onset:g}s"
        prov[key] = {"cache_key": first.meta.get("cache_key"), "spec": first.meta.get("spec"),
                     "ablate": first.meta.get("ablate")}
    layers = list(per_grid[0])
    out = {layer: [per_grid[i][layer] for i in range(len(refs))] for layer in layers}
    return out, prov


def analysis_inputs_job(project_path, spec: AnalysisSpec, token=None, fit_steps: int = 100):
    """Job: the data of an analysis -- runs loaded once, features extracted (cached) -- without fitting.

    Returns ``(project data, brain data, {layer: per-run arrays}, feature provenance, steps done,
    total steps)``; the total leaves ``fit_steps`` per model plus one for saving (see
    :func:`run_analysis_job`). ``stats`` uses it to rebuild a result's inputs.
    """
    from .data import ProjectData

    if not isinstance(spec, AnalysisSpec):
        raise ConfigError(expected_found("analysis spec", "an AnalysisSpec", type(spec).__name__))
    pdata = ProjectData(project_path)
    refs = pdata.select_runs(spec.episodes, spec.runs, spec.subjects, spec.space)
    n_runs = len(refs)
    n_fits = len(spec.layers or [1]) if spec.per_layer else 1
    brain = None
    gen = pdata.load_brain_job(refs, token=token, confounds=spec.fit.confounds)
    while True:
        try:
            p = next(gen)
        except StopIteration as stop:
            brain = stop.value
            break
        yield Progress(p.step, n_runs + 1 + fit_steps * n_fits + 1, p.message)
    # now the TR counts are known: one step per TR to extract
    n_feature_steps = sum(max(brain.runs[i].shape[0] for i in idx) for idx in _feature_grids(refs, brain).values())
    total = n_runs + n_feature_steps + fit_steps * n_fits + 1
    spaces, feat_prov = yield from _features_for_runs_job(pdata, refs, brain, spec, token, n_runs, total)
    return pdata, brain, spaces, feat_prov, n_runs + n_feature_steps, total


def run_analysis_job(project_path, spec: AnalysisSpec, token=None):
    """Job: features (cached) -> fit -> result saved in the project's ``results/`` and registered.

    One :class:`~engine.jobs.Progress` stream whose steps are proportional to the work
    (one per run loaded, one per TR extracted, 100 per model fitted, one for saving), so a
    caller can show an ETA; cancellable at every step (nothing is written before the end).

    Parameters
    ----------
    project_path : path
        Project file, a folder holding one, or a data folder (Algonauts, BIDS: it gets a
        project file). The result is written to THIS project's file (re-read, updated, written
        atomically), whatever the window shows meanwhile.
    spec : AnalysisSpec
    token : CancelToken, optional

    Returns
    -------
    AnalysisOutcome
    """
    from .fit import fit_job, fit_per_layer_job
    from .results import save_result

    pdata, brain, spaces, feat_prov, step, total = yield from analysis_inputs_job(project_path, spec, token)
    if spec.per_layer:
        total = step + 100 * len(spaces) + 1
    prov = {"analysis": spec.to_dict(), "project": str(Path(pdata.project_file).resolve()),
            "extraction": {"model": spec.model, "episodes": feat_prov}}
    fit = (fit_per_layer_job(spaces, brain, spec.fit, provenance=prov, token=token) if spec.per_layer
           else fit_job(spaces, brain, spec.fit, space_label=brain.space, provenance=prov, token=token))
    span = total - 1 - step
    while True:
        try:
            p = next(fit)
        except StopIteration as stop:
            fitted = stop.value
            break
        yield Progress(step + int(span * p.fraction), total, f"fitting: {p.message}")
    if token is not None:
        token.raise_if_cancelled()
    yield Progress(total - 1, total, "saving the result")
    written = {}
    if spec.per_layer:
        for layer, res in fitted.items():
            res.space = brain.space or res.space
            name = f"{spec.result_name}-{layer}"
            written[name] = (res, save_result(pdata.project_file, res, name)[1])
    else:
        name = spec.result_name
        written[name] = (fitted, save_result(pdata.project_file, fitted, name)[1])
    first = next(iter(written))
    yield Progress(total, total, f"saved {written[first][1].name}")
    return AnalysisOutcome(result=written[first][0], result_name=first, result_path=written[first][1],
                           project_file=Path(pdata.project_file), results=written)
