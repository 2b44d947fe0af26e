"""Significance of a saved result: its inputs rebuilt from its provenance, permutations refit.

A result records what it was made from: an analysis of a project (``provenance["analysis"]`` and
``["project"]``: the runs are reloaded and the features come from the cache) or files given to
``encode`` (``provenance["data"]``: brain and feature files, checked against their SHA-256). With
its :class:`~engine.encoding.options.FitOptions`, that is enough to refit it on permuted stimuli
(:func:`engine.encoding.significance.significance_job`: block or circular-shift permutations
within runs, the whole CV refit each time) and write p and q (BH-FDR) into the result file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..errors import ConfigError, DataError, MismatchError, expected_found
from ..jobs import Progress

__all__ = ["result_inputs_job", "significance_job"]


def _options(result):
    from ..encoding.options import FitOptions

    d = dict(getattr(result, "options", None) or result.provenance.get("fit_options") or {})
    if not d:
        raise DataError(expected_found("fit settings of the result", "provenance['fit_options']",
                                       "none (a result written before FitOptions; refit it with encode)"))
    return FitOptions.from_dict(d)


def result_inputs_job(result, token=None):
    """Job: ``(spaces {name: per-run arrays}, BrainData, FitOptions)`` a result was fitted on.

    Raises :class:`~engine.errors.DataError` when the provenance names no inputs, or
    :class:`~engine.errors.MismatchError` when a file changed since the fit (SHA-256).
    """
    from .data import file_sha256, load_brain_files, read_feature_file

    prov = result.provenance or {}
    options = _options(result)
    if prov.get("analysis") and prov.get("project"):
        from .analysis import AnalysisSpec, analysis_inputs_job

        spec = AnalysisSpec.from_dict(prov["analysis"])
        gen = analysis_inputs_job(prov["project"], spec, token=token)
        _, brain, spaces, _, _, _ = yield from gen
        if len(result.feature_names) == 1 and result.feature_names[0] in spaces and len(spaces) > 1:
            spaces = {result.feature_names[0]: spaces[result.feature_names[0]]}   # one layer of per_layer
        return spaces, brain, options
    data = prov.get("data") or {}
    if not data.get("brain") or not data.get("features"):
        raise DataError(expected_found("inputs of the result", "provenance naming its project analysis or its "
                                       "brain and feature files (results of encode or the analysis pipeline)",
                                       "neither"))
    yield Progress(0, 2, "reading the brain files")
    for key, files in (("brain", data["brain"]), ("features", data["features"])):
        hashes = data.get(f"{key}_sha256") or []
        for f, h in zip(files, hashes):
            if not Path(f).exists():
                raise DataError(expected_found(f"{key} file of the result", "an existing file", f"no file at {f}"))
            if file_sha256(f) != h:
                raise MismatchError(expected_found(f"{key} file {f}", "the bytes the result was fitted on",
                                                   "a file changed since (SHA-256 differs)"))
    brain = load_brain_files(data["brain"], data.get("brain_datasets"), tr_s=result.tr_s or prov.get("tr_s"),
                             mask=data.get("mask"))
    if prov.get("stimuli"):
        brain.stimuli, brain.stimuli_known = list(prov["stimuli"]), True
    yield Progress(1, 2, "reading the feature files")
    feats = [read_feature_file(f, list(result.feature_names) or None) for f in data["features"]]
    spaces = {layer: [d[layer] for d in feats] for layer in feats[0]}
    yield Progress(2, 2, "inputs ready")
    return spaces, brain, options


def significance_job(result_path, n_perm: int = 200, method: str = "block", block_trs: Optional[int] = None,
                     seed: int = 0, alpha: float = 0.05, labels=None, names=None, scheduler=None,
                     n_workers: Optional[int] = None, token=None):
    """Job: permutation significance of a saved result file, p and q written into it.

    The result's inputs are rebuilt (:func:`result_inputs_job`) and handed to
    :func:`engine.encoding.significance.significance_job` (the whole CV refit per permutation,
    BH-FDR across targets, regions with ``labels``/``names``, a message when significance is out
    of reach by construction).

    Parameters
    ----------
    result_path : path of an EncodingResult (.h5)
    n_perm : int
        Permutations (each a whole cross-validated fit); the smallest p is 1 / (1 + n_perm).
    method : "block" or "circular"
        Shuffled blocks of TRs within runs, or a circular shift of each run.
    block_trs : int, optional
        Block length (default: the TRs in 20 s).
    labels, names : optional
        One region label per target (and region names): adds the region table.
    scheduler, n_workers : optional
        Run the permutations on Dask (:func:`engine.encoding.distributed.run_tasks`).

    Returns
    -------
    engine.encoding.significance.SignificanceResult
    """
    from ..encoding.results import EncodingResult
    from ..encoding.significance import significance_job as _significance_job

    if int(n_perm) < 1:
        raise ConfigError(expected_found("--n-perm", "an integer >= 1", n_perm))
    result = EncodingResult.load(result_path)
    spaces, brain, options = yield from _scaled(result_inputs_job(result, token=token), 0, 5, "inputs: ")
    if block_trs is not None and method == "block":
        import numpy as np

        from ..io.arrays import check_block

        lengths = [int(np.shape(r)[0]) for r in brain.runs]
        run_names = list(brain.names)
        check_block(int(block_trs), lengths, run_names if len(run_names) == len(lengths) else None,
                    option="--block")
    gen = _significance_job(result_path, spaces, brain.runs, n_perm=int(n_perm), method=method,
                            block_trs=block_trs, alpha=alpha, labels=labels, names=names, seed=int(seed),
                            options=options, tr_s=brain.tr_s,
                            stimulus_ids=list(brain.stimuli) if brain.stimuli_known else None,
                            subjects=list(brain.subjects), confounds_runs=brain.confounds, write=True,
                            scheduler=scheduler, n_workers=n_workers, token=token)
    sig = yield from _scaled(gen, 5, 100, "")
    yield Progress(100, 100, "p and q written")
    return sig


def _scaled(gen, start: int, stop: int, prefix: str = ""):
    while True:
        try:
            p = next(gen)
        except StopIteration as s:
            return s.value
        yield Progress(start + int((stop - start) * p.fraction), 100, prefix + p.message, p.payload)
