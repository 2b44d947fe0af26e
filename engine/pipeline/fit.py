"""Fits from :class:`~engine.encoding.options.FitOptions`: ridge, banded ridge, per layer, partition.

Every fit of the CLI, the window, the demo and Python goes through :func:`fit_job` (or
:func:`fit_per_layer_job`, :func:`partition_job`), which hands the options, the TR, the runs'
stimuli and subjects to :func:`engine.encoding.fit.fit_encoding_job`. That function resolves
the options against the data (delays in TRs from seconds; the CV from the runs and their
stimuli; trimming; preprocessing) and records what it did in the result (``delays``,
``delays_s``, ``tr_s``, ``cv_label``, ``warnings``, ``provenance["fit_options"]``).
This module adds the data's provenance and refuses a fit whose delays are in seconds when no
TR is known (instead of guessing one).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import numpy as np

from ..errors import ConfigError
from ..jobs import Progress

__all__ = ["check_inputs", "FitInputWarning", "fit_job", "fit_per_layer_job", "partition_job", "fit_kwargs", "describe_fit", "use_gram",
           "gram_memory_target", "brain_bytes"]


def fit_kwargs(brain, options, confounds_runs=None) -> Dict[str, Any]:
    """Keywords of :func:`engine.encoding.fit.fit_encoding_job` for ``brain`` and ``options``.

    Raises :class:`~engine.errors.ConfigError` naming ``--tr`` when the delays are in seconds
    and no TR is known.
    """
    options = options.validate()
    if confounds_runs is None:
        confounds_runs = brain.confounds
    if options.confounds and confounds_runs is None:
        raise ConfigError(f"confounds {options.confounds!r}: expected runs of a project whose runs name their "
                          "fMRIPrep confounds tables (--project), found brain files without them")
    if brain.tr_s is None and options.delays is None:
        raise ConfigError("TR: the delays are given in seconds (--delays-s), so the TR is needed; expected it from "
                          "the brain files or the project, found none (give --tr SECONDS, or --delays in TRs)")
    return dict(options=options, tr_s=brain.tr_s,
                stimulus_ids=list(brain.stimuli) if brain.stimuli_known else None,
                subjects=list(brain.subjects), confounds_runs=confounds_runs, run_names=list(brain.names))


def _provenance(brain, extra=None) -> Dict[str, Any]:
    prov = {"data": dict(brain.provenance), "subjects": list(brain.subjects)}
    if brain.stimuli_known:
        prov["stimuli"] = list(brain.stimuli)
    prov.update(extra or {})
    return prov


def _spaces(spaces) -> Dict[str, List[np.ndarray]]:
    return {str(k): [np.asarray(x, np.float32) for x in v] for k, v in spaces.items()}


class FitInputWarning(UserWarning):
    """A fit input that works but deserves a look (constant targets or columns, acausal delays)."""


def check_inputs(spaces, brain, options, tr_s=None) -> List[str]:
    """Check a fit's inputs up front (:func:`engine.io.arrays.check_fit_inputs`) and warn.

    Raises ConfigError/DataError for what cannot work (``pca`` above the features, delays
    longer than a run, all features constant); each warning is issued as a
    :class:`FitInputWarning` and returned.
    """
    import warnings

    from ..io.arrays import check_fit_inputs

    try:
        delays = options.resolved_delays(tr_s)
    except ConfigError:
        delays = []
    pca = options.pca
    found = []
    for name, runs in spaces.items():
        p = pca.get(name) if isinstance(pca, dict) else pca
        names = list(brain.names)
        found += check_fit_inputs({name: runs}, brain.runs, delays=delays, pca=p,
                                  run_names=names if len(names) == len(brain.runs) else None)
    for text in dict.fromkeys(found):
        warnings.warn(text, FitInputWarning, stacklevel=2)
    return list(dict.fromkeys(found))


def fit_job(spaces: Dict[str, List[np.ndarray]], brain, options, space_label: Optional[str] = None,
            provenance: Optional[Dict[str, Any]] = None, token=None, scheduler=None, n_chunks=None,
            n_workers=None, confounds_runs=None, out_path=None, verbose: bool = False):
    """Job: one cross-validated encoding model of ``spaces`` (several: banded or joint) -> EncodingResult.

    Parameters
    ----------
    spaces : dict space name -> list (one per run) of (n_trs_run, n_features) arrays
    brain : :class:`~engine.pipeline.data.BrainData`
    options : :class:`~engine.encoding.options.FitOptions`
    space_label : str, optional
        ``EncodingResult.space`` (default: the space names joined by "+").
    provenance : dict, optional
        Merged into the result's provenance.
    scheduler, n_chunks, n_workers : optional
        Fit chunks of targets on Dask (:func:`engine.encoding.distributed.fit_encoding_distributed_job`).
    confounds_runs : list of (n_trs_run, k) arrays, optional
        Confounds regressed out of each brain run.
    out_path : path, optional
        On the Gram path, the result is written there (HDF5, atomically) as it is fit, the
        predictions and measured data per target batch; the returned result then holds none in
        memory and ``result.provenance["result_path"]`` names the file (the other paths leave
        saving to the caller).
    verbose : bool
        Print the Gram path's memory estimate (and target batch) before the fit.

    On the Gram path the target batch is chosen from a memory target tied to the size of the
    brain data (:func:`gram_memory_target`), so that the fit's own memory stays about half the
    brain data beside it (never below what one batch needs, never above what is available).
    """
    from ..encoding.fit import fit_encoding_job

    kw = fit_kwargs(brain, options, confounds_runs)
    kw["provenance"] = _provenance(brain, provenance)
    if space_label is not None:
        kw["space"] = space_label
    spaces = _spaces(spaces)
    check_inputs(spaces, brain, kw["options"], kw["tr_s"])
    if scheduler:
        from ..encoding.distributed import fit_encoding_distributed_job

        job = fit_encoding_distributed_job(spaces, brain.runs, scheduler=scheduler, n_chunks=n_chunks,
                                           n_workers=n_workers, token=token, **kw)
    elif use_gram(spaces, brain.runs, kw["options"], kw["tr_s"]):
        gram_kw = dict(out_path=out_path, verbose=verbose, memory_target_bytes=gram_memory_target(brain.runs))
        job = _gram_or_fallback(spaces, brain.runs, token, kw, gram_kw)
    else:
        job = fit_encoding_job(spaces, brain.runs, token=token, **kw)
    return (yield from job)


#: Above this many (training TRs x model columns), a fit whose folds are whole runs takes the
#: Gram path (:mod:`engine.encoding.gram`: cost grows with the data, not the folds; memory bounded
#: by features^2, a target batch and one run). Below it the direct path is as fast and exact.
GRAM_MIN_CELLS = 4_000_000
#: Brain data at least this large (bytes) also takes the Gram path, whatever the features: the
#: direct path holds several whole copies of it (measured, z-scored, predicted), the Gram path
#: one target batch (it reads and writes the runs per batch).
GRAM_MIN_BRAIN_BYTES = 1 << 28
#: The Gram path's memory target, as a fraction of the brain data (which is in memory beside
#: it), and its floor (small fits: one batch of every target).
GRAM_MEMORY_PER_BRAIN = 0.5
GRAM_MEMORY_FLOOR_BYTES = 1 << 28


def brain_bytes(runs) -> int:
    """Bytes of the brain runs as float32 (what the fit reads)."""
    return int(sum(4 * int(np.prod(np.shape(r))) for r in runs))


def gram_memory_target(runs) -> float:
    """Memory the Gram path aims at for these brain runs: ``GRAM_MEMORY_PER_BRAIN`` x their size,
    at least ``GRAM_MEMORY_FLOOR_BYTES`` (the target batch follows from it)."""
    return float(max(GRAM_MEMORY_PER_BRAIN * brain_bytes(runs), GRAM_MEMORY_FLOOR_BYTES))


def use_gram(spaces, runs, options, tr_s=None) -> bool:
    """Whether a fit goes through the Gram path: supported settings, >= 3 runs (so inner folds are
    whole runs too) and a problem large enough for it to pay, in time (training TRs x model
    columns >= ``GRAM_MIN_CELLS``) or in memory (brain data >= ``GRAM_MIN_BRAIN_BYTES``)."""
    from ..encoding.gram import gram_supported

    ok, _why = gram_supported(options, n_spaces=len(spaces))
    if not ok or len(runs) < 3:
        return False
    n_trs = sum(int(np.shape(r)[0]) for r in runs)
    n_delays = len(options.resolved_delays(tr_s)) if (tr_s or options.delays is not None) else 4
    n_cols = sum(int(np.shape(v[0])[1]) for v in spaces.values()) * n_delays
    return n_trs * n_cols >= GRAM_MIN_CELLS or brain_bytes(runs) >= GRAM_MIN_BRAIN_BYTES


def _gram_or_fallback(spaces, runs, token, kw, gram_kw=None):
    """The Gram job; when its CV plan turns out not to be made of whole runs (e.g. one stimulus in
    the training set), the direct job instead: the same answer, found another way."""
    from ..encoding.fit import fit_encoding_job
    from ..encoding.gram import NotEnoughMemoryError, fit_encoding_gram_job
    from ..errors import ConfigError

    gen = fit_encoding_gram_job(spaces, runs, token=token, **kw, **(gram_kw or {}))
    try:
        first = next(gen)
    except StopIteration as stop:
        return stop.value
    except NotEnoughMemoryError:
        raise                      # the direct path would need more: say so before reading anything
    except ConfigError:
        return (yield from fit_encoding_job(spaces, runs, token=token, **kw))
    yield first
    return (yield from gen)


def fit_per_layer_job(spaces, brain, options, provenance=None, token=None, **dask):
    """Job: one model per space (layer) -> ``{space: EncodingResult}``; one Progress stream."""
    spaces = _spaces(spaces)
    out = {}
    names = list(spaces)
    for k, name in enumerate(names):
        gen = fit_job({name: spaces[name]}, brain, options, space_label=name, provenance=provenance, token=token,
                      **dask)
        out[name] = yield from _scaled(gen, k, len(names), f"{name}: ")
    return out


def _scaled(gen, index: int, count: int, prefix: str = "", units: int = 100):
    """Run a sub-job as part ``index`` of ``count`` equal parts of one progress bar of ``count * units`` steps."""
    while True:
        try:
            p = next(gen)
        except StopIteration as stop:
            return stop.value
        inner = int(units * p.fraction) if p.total else 0
        yield Progress(index * units + min(inner, units), count * units, prefix + p.message, p.payload)


def partition_job(spaces, brain, options, residual=None, provenance=None, token=None):
    """Job: variance partitioning of 2-3 spaces (+ residual analysis).

    ``residual`` is ``(joint name, [unimodal names])``. Returns ``(PartitionResult,
    EncodingResult or None, provenance)``; the provenance holds the data's and the fit's
    settings as resolved (delays in TRs and seconds, CV used).
    """
    from ..encoding.partition import residual_encoding, variance_partition_job

    spaces = _spaces(spaces)
    kw = fit_kwargs(brain, options)
    check_inputs(spaces, brain, kw["options"], kw["tr_s"])
    part = yield from variance_partition_job(spaces, brain.runs, token=token, **kw)
    resid = None
    if residual:
        joint, uni = residual
        total = len(part.r2) + 1
        yield Progress(total - 1, total, f"residual: {joint} minus {'+'.join(uni)}")
        resid = residual_encoding(spaces[joint], {u: spaces[u] for u in uni}, brain.runs, joint_name=joint,
                                  token=token, **kw)
        yield Progress(total, total, "residual done")
    joint = part.models.get("+".join(part.space_names))
    prov = _provenance(brain, provenance)
    if joint is not None:
        prov.update({"delays_trs": list(joint.delays), "delays_s": list(getattr(joint, "delays_s", []) or []),
                     "tr_s": getattr(joint, "tr_s", brain.tr_s), "cv_used": getattr(joint, "cv_label", ""),
                     "fit_options": joint.provenance.get("fit_options", options.to_dict())})
    return part, resid, prov


def describe_fit(result_or_prov) -> str:
    """One line: the delays (TRs and seconds), the CV used and how several spaces were fit."""
    prov = getattr(result_or_prov, "provenance", result_or_prov) or {}
    d = list(getattr(result_or_prov, "delays", None) or prov.get("delays_trs") or [])
    secs = list(getattr(result_or_prov, "delays_s", None) or prov.get("delays_s") or [])
    tr = getattr(result_or_prov, "tr_s", None) or prov.get("tr_s")
    cv = getattr(result_or_prov, "cv_label", None) or prov.get("cv_used") or \
        (prov.get("cv") or {}).get("label", "") if isinstance(prov.get("cv"), dict) else prov.get("cv_used", "?")
    text = f"delays {d[0]}-{d[-1]} TRs" if d else "delays ?"
    if secs and tr:
        text += f" ({secs[0]:.2f}-{secs[-1]:.2f} s at TR {tr:g} s)"
    text += f"; CV: {cv or '?'}"
    how = prov.get("multi_space")
    if how and len(prov.get("features", {}) or {}) > 1:
        text += f"; spaces: {how}"
    return text
