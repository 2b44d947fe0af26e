"""``alignscope encode``: fit cross-validated encoding models and save an EncodingResult (.h5).

Examples::

    # one feature file and one brain file per run, in the same order
    python main.py encode --features ep1.h5 ep2.h5 ep3.h5 --brain run1.npy run2.npy run3.npy --tr 1.49 --out enc.h5
    # GIFTI runs (the right hemisphere is found beside each left one), TR from the sidecars
    python main.py encode --features a.h5 b.h5 --brain sub-01_run-1_hemi-L_bold.func.gii \\
        sub-01_run-2_hemi-L_bold.func.gii --out enc.h5
    # an Algonauts-style HDF5 holding every run as a dataset
    python main.py encode --features s01e01a.h5 s01e01b.h5 --brain sub-01_bold.h5 --tr 1.49 \\
        --brain-datasets ses-001_task-s01e01a ses-001_task-s01e01b --drop-edges 5 5 --pca 250 --out enc.h5
    # a project's runs, features extracted (and cached) by the pipeline, result registered in the project
    python main.py encode --project study.alignscope.json --model minilm --layers 0.5,1.0 --name minilm

Feature files: ``.npy`` (n_trs, n_features); ``.npz`` or ``.h5`` whose arrays (or an
``/features`` group, as ``alignscope extract`` writes) are feature spaces (layers): choose with
``--layer`` (repeatable); several layers make one model (banded ridge by default, ``--joint``
for one penalty) or one model per layer (``--per-layer``). Every fit goes through
:mod:`engine.pipeline`; the delays (TRs and seconds) and the CV used are printed and stored.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import add_brain_arguments, add_fit_arguments
from .output import add_json_argument, json_output

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--features", nargs="+", metavar="FILE",
                        help="feature files, one per run (.npy/.npz/.h5), or one folder of <episode>.h5/.npy")
    parser.add_argument("--layer", action="append", default=None, metavar="NAME",
                        help="feature space (layer) inside .npz/.h5 feature files; repeatable")
    parser.add_argument("--per-layer", action="store_true",
                        help="several layers: one model per layer, saved as OUT-<layer>.h5")
    add_brain_arguments(parser)
    a = parser.add_argument_group("extraction with --project (engine.pipeline.AnalysisSpec)")
    a.add_argument("--model", default=None, help="with --project: extract features of this model (registry "
                   "name, local folder, cached Hub id or lowlevel) instead of reading --features")
    a.add_argument("--layers", default=None, help="with --model: comma-separated indices / relative depths "
                   "(0.5,1.0) or low-level names (motion,word_rate)")
    a.add_argument("--pooling", choices=("mean", "cls", "last"), default=None)
    a.add_argument("--window", type=float, default=None, metavar="S", help="stimulus window per TR, seconds")
    a.add_argument("--context", type=int, default=None, metavar="WORDS", help="language context in words")
    a.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    a.add_argument("--dtype", choices=("auto", "float32", "float16", "bfloat16"), default=None)
    a.add_argument("--ablate", choices=("none", "vision", "audio", "text"), default="none")
    a.add_argument("--episodes", nargs="+", default=None, metavar="NAME", help="with --project: these episodes")
    a.add_argument("--subjects", nargs="+", default=None, metavar="SUB", help="with --project: these subjects")
    a.add_argument("--runs", nargs="+", default=None, metavar="RUN", help="with --project: these runs")
    a.add_argument("--space", default=None, help="with --project: runs of this space (default: the first run's)")
    a.add_argument("--name", default=None, help="with --model: result name in the project")
    add_fit_arguments(parser)
    d = parser.add_argument_group("distributed")
    d.add_argument("--scheduler", default=None, metavar="ADDR",
                   help="run chunks of targets on Dask: 'local' (a LocalCluster on this machine) "
                        "or a scheduler address such as tcp://host:8786 (default: in-process)")
    d.add_argument("--chunks", type=int, default=None, metavar="N",
                   help="with --scheduler: split the targets into N chunks (default: one per worker)")
    d.add_argument("--workers", type=int, default=None, metavar="N",
                   help="with --scheduler local: number of Dask workers")
    parser.add_argument("--out", metavar="H5", help="output EncodingResult file (.h5)")
    parser.add_argument("--top", type=int, default=10, help="top targets printed (default 10)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar or summary line")
    add_json_argument(parser)


def feature_spaces_from_files(features, brain, layers=None):
    """({layer: [per-run arrays]}, provenance) from feature files (one per run, or a folder)."""
    from ..errors import ConfigError, MismatchError, expected_found
    from ..pipeline.data import file_sha256, read_feature_file, resolve_feature_files

    if not features:
        raise ConfigError("encode: expected --features FILE... (one per run) or a folder, found none")
    files = resolve_feature_files(features, brain.stimuli)
    feats = [read_feature_file(f, layers) for f in files]
    names = list(feats[0])
    for f, d in zip(files, feats):
        if list(d) != names:
            raise MismatchError(expected_found(f"layers of {f.name}", names, list(d)))
    prov = {"features": [str(f.resolve()) for f in files], "features_sha256": [file_sha256(f) for f in files]}
    return {l: [d[l] for d in feats] for l in names}, prov


def spec_from_args(args, options):
    """The :class:`~engine.pipeline.AnalysisSpec` of ``encode --project P --model M``."""
    from ..pipeline import AnalysisSpec
    from .extract import parse_layers

    layers = parse_layers(args.layers)
    return AnalysisSpec(name=args.name or "", model=args.model, layers=list(layers) if layers else None,
                        pooling=args.pooling, window_s=args.window, context_words=args.context, device=args.device,
                        dtype=args.dtype, ablate=args.ablate, episodes=args.episodes, runs=args.runs,
                        subjects=args.subjects, space=args.space, per_layer=args.per_layer, fit=options)


def print_result(name, result, top: int) -> None:
    """Scores (mean over all targets, median over reliable ones), the fit settings used (delays in
    TRs and seconds, CV) and the top targets."""
    import numpy as np

    from ..pipeline.fit import describe_fit

    s = np.asarray(result.scores, dtype=np.float64)
    st = result.summary_stats()
    print(f"{name}: {result.n_targets} targets, {len(result.run_names)} runs, {len(result.folds)} folds; "
          f"mean r = {st['mean_r']:.4f} (all targets), median r = {st['median_r_reliable']:.4f} over "
          f"{st['n_reliable']} reliable targets ({st['reliable_rule']}), max r = {np.nanmax(s):.4f}")
    print(f"  {describe_fit(result)}")
    best = result.top_targets(top)
    print("top targets (index: r, alpha): " + ", ".join(f"{i}: {s[i]:.3f}, {result.alphas[i]:.3g}" for i in best))


def result_summary(name, result, out=None, top: int = 10) -> dict:
    """The ``--json`` record of one fitted result (scores, fit settings, where it was saved)."""
    import numpy as np

    s = np.asarray(result.scores, dtype=np.float64)
    best = result.top_targets(top)
    return {"name": name, "out": None if out is None else str(out), "n_targets": int(result.n_targets),
            "runs": [str(r) for r in result.run_names], "n_folds": len(result.folds),
            **result.summary_stats(), "max_r": float(np.nanmax(s)) if np.isfinite(s).any() else None,
            "tr_s": result.tr_s, "delays_trs": [int(d) for d in result.delays],
            "delays_s": [float(d) for d in result.delays_s], "cv": str(result.cv_label),
            "top_targets": [{"target": int(i), "r": float(s[i]), "alpha": float(result.alphas[i])} for i in best],
            "warnings": [str(w) for w in result.warnings]}


def run(args) -> int:
    with json_output(args) as summary:
        return _run(args, summary)


def _run(args, summary) -> int:
    import warnings

    from ..errors import ConfigError
    from ..pipeline.fit import fit_job, fit_per_layer_job
    from .common import brain_from_args, check_out_is_not_an_input, fit_options_from_args, print_warnings, run_job

    options = fit_options_from_args(args)
    if args.model:
        if args.features:
            raise ConfigError("encode: expected --model (features extracted from the project's stimuli) or "
                              "--features FILES, found both")
        if not args.project:
            raise ConfigError("encode --model: expected --project PATH (whose episodes are extracted), found none")
        from ..pipeline import run_analysis_job

        spec = spec_from_args(args, options)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            outcome = run_job(run_analysis_job(args.project, spec), "encode", args.no_progress)
        print_warnings(caught)
        summary.update(project=str(outcome.project_file), results=[])
        for name, (result, path) in outcome.results.items():
            print_result(name, result, args.top)
            out = None
            if args.out:
                out = Path(args.out) if len(outcome.results) == 1 else \
                    Path(args.out).with_name(f"{Path(args.out).stem}-{name}.h5")
                result.save(out)
                print(f"saved {out}")
            print(f"registered {name!r} in {outcome.project_file} ({path})")
            summary["results"].append({**result_summary(name, result, out, args.top), "registered": str(path)})
        return 0
    if not args.out:
        raise ConfigError("encode: expected --out RESULT.h5, found none")
    check_out_is_not_an_input(args.out, (args.features or []) + (args.brain or []), "encode")
    brain = brain_from_args(args, "encode")
    spaces, feat_prov = feature_spaces_from_files(args.features, brain, args.layer)
    brain.provenance.update(feat_prov)
    dask = dict(scheduler=args.scheduler, n_chunks=args.chunks, n_workers=args.workers)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if args.per_layer:
            fitted = run_job(fit_per_layer_job(spaces, brain, options, **dask), "encode", args.no_progress)
            outs = {layer: (res, Path(args.out).with_name(f"{Path(args.out).stem}-{layer.replace('/', '_')}.h5"))
                    for layer, res in fitted.items()}
        else:
            # on the Gram path the result is written to --out as it is fit (per target batch)
            res = run_job(fit_job(spaces, brain, options, out_path=Path(args.out), verbose=True, **dask), "encode",
                          args.no_progress)
            outs = {"+".join(spaces): (res, Path(args.out))}
    print_warnings(caught)
    summary["results"] = []
    for name, (result, out) in outs.items():
        if result.provenance.get("result_path") != str(out):     # not written by the fit itself
            result.save(out)
        print_result(name, result, args.top)
        print(f"saved {out}")
        summary["results"].append(result_summary(name, result, out, args.top))
    return 0
