"""``alignscope partition``: variance partitioning of 2 or 3 feature spaces (and residual analysis).

How much of each target's held-out variance is explained *uniquely* by one feature space
and how much is *shared* between spaces (de Heer et al. 2017): every non-empty subset of
the spaces gets its own cross-validated encoding model (the same folds, delays and alpha
grid), and inclusion-exclusion on their held-out R^2 gives the regions of the Venn diagram
(:mod:`engine.encoding.partition`).

Examples::

    # one feature file per run for each space, in the order of the brain runs
    python main.py partition --space vision=v1.npy,v2.npy,v3.npy --space language=l1.npy,l2.npy,l3.npy \\
        --brain run1.npy run2.npy run3.npy --out partition.h5
    # layers of `alignscope extract` files as the spaces (like encode --layer)
    python main.py partition --features ep1.h5 ep2.h5 ep3.h5 --layer vision --layer language \\
        --brain run1.npy run2.npy run3.npy --out partition.h5
    # a layer inside each space's files (NAME:LAYER=FILES), files from a folder of <episode>.h5
    python main.py partition --space vision:layer_6=vit_feats/ --space language:layer_8=bert_feats/ \\
        --project study.alignscope.json --out partition.h5
    # study 1: does the joint (multimodal) space explain anything beyond the unimodal ones?
    python main.py partition --space vision=... --space language=... --space joint=... \\
        --residual joint=vision,language --brain ... --out partition.h5

The output HDF5 holds one dataset per region of the Venn diagram (``unique:vision``,
``shared:vision&language``, ...; each (n_targets,) held-out R^2), ``total`` (R^2 of the
model on all spaces), ``r2/<subset>`` and ``scores/<subset>`` (R^2 and Pearson r of every
subset model, subsets named ``vision+language``), ``residual/<joint>/{r2,scores,alphas}``
with ``--residual``, and the provenance as JSON attributes. Read it with
:func:`read_partition`.
"""

from __future__ import annotations

import argparse
import sys

from .common import add_brain_arguments, add_fit_arguments

__all__ = ["add_arguments", "run", "parse_space", "read_partition", "region_key"]


def read_partition(path) -> dict:
    """Read a file written by ``alignscope partition`` (:func:`engine.pipeline.results.read_partition`)."""
    from ..pipeline.results import read_partition as _read

    return _read(path)


def region_key(region_name: str) -> str:
    """``"unique vision"`` -> ``"unique:vision"`` (:func:`engine.pipeline.results.region_key`)."""
    from ..pipeline.results import region_key as _key

    return _key(region_name)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--space", action="append", default=None, metavar="NAME[:LAYER]=FILE[,FILE...]",
                        help="a feature space: its files, one per run (comma-separated, .npy/.npz/.h5), or "
                             "one folder of <episode>.h5/.npy; ':LAYER' picks an array inside .npz/.h5 "
                             "files. Give 2 or 3 (repeat the option)")
    parser.add_argument("--features", nargs="+", metavar="FILE",
                        help="instead of --space: feature files (one per run) whose --layer arrays are the spaces")
    parser.add_argument("--layer", action="append", default=None, metavar="NAME",
                        help="with --features: a layer (array) that is one feature space; repeat 2 or 3 times")
    add_brain_arguments(parser)
    parser.add_argument("--residual", metavar="JOINT=UNI1[,UNI2]",
                        help="also encode space JOINT after regressing the unimodal spaces out of it "
                             "(fit on training runs only): what the joint space explains beyond them")
    add_fit_arguments(parser)
    parser.add_argument("--out", metavar="H5", help="output file (.h5)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar or summary line")
    from .output import add_json_argument

    add_json_argument(parser)


# --------------------------------------------------------------------------- parsing

def parse_space(text: str):
    """``"NAME[:LAYER]=FILE[,FILE...]"`` -> (name, layer or None, [files])."""
    from ..errors import ConfigError

    name, sep, files = str(text).partition("=")
    layer = None
    if ":" in name:
        name, layer = name.split(":", 1)
        layer = layer.strip() or None
    name = name.strip()
    paths = [f.strip() for f in files.split(",") if f.strip()]
    if not sep or not name or not paths:
        raise ConfigError(f"--space: expected NAME=FILE[,FILE...] (or NAME:LAYER=FILES), found {text!r}")
    if any(c in name for c in "+&/"):
        raise ConfigError(f"--space name: expected no '+', '&' or '/' (they name subsets and regions), "
                          f"found {name!r}")
    return name, layer, paths


def parse_residual(text: str, space_names):
    """``"JOINT=UNI1,UNI2"`` -> (joint, [unimodal...]), all among ``space_names``."""
    from ..errors import ConfigError, expected_found

    joint, sep, rest = str(text).partition("=")
    joint = joint.strip()
    uni = [u.strip() for u in rest.split(",") if u.strip()]
    if not sep or not joint or not uni:
        raise ConfigError(f"--residual: expected JOINT=UNIMODAL1[,UNIMODAL2], found {text!r}")
    for n in [joint] + uni:
        if n not in space_names:
            raise ConfigError(expected_found(f"--residual space {n!r}", f"one of the spaces {list(space_names)}",
                                             repr(n)))
    if joint in uni:
        raise ConfigError(expected_found("--residual", "a joint space that is not among the unimodal ones",
                                         f"{joint!r} on both sides"))
    return joint, uni


def _load_spaces(args, episodes):
    """{space name: list of (n_trs_run, n_features) float32}, {space: [files]} (provenance)."""
    from ..errors import ConfigError, DataError, MismatchError, expected_found
    from ..pipeline.data import file_sha256, read_feature_file, resolve_feature_files

    spaces, prov = {}, {}
    if args.space and (args.features or args.layer):
        raise ConfigError("partition: expected either --space NAME=FILES (repeated) or --features FILES with "
                          "--layer NAME (repeated), found both")
    if args.space:
        for text in args.space:
            name, layer, paths = parse_space(text)
            if name in spaces:
                raise ConfigError(expected_found("--space names", "different names", f"{name!r} twice"))
            files = resolve_feature_files(paths, episodes, what=f"feature files of space {name!r}")
            runs = []
            for f in files:
                arrays = read_feature_file(f, [layer] if layer else None)
                if len(arrays) != 1:
                    raise DataError(expected_found(f"feature file {f.name} of space {name!r}",
                                                   "one array (or NAME:LAYER=FILES to pick one)",
                                                   f"{len(arrays)} arrays: {sorted(arrays)[:6]}"))
                runs.append(next(iter(arrays.values())))
            spaces[name] = runs
            prov[name] = {"files": [str(f.resolve()) for f in files],
                          "sha256": [file_sha256(f) for f in files], "layer": layer}
    elif args.features:
        if not args.layer:
            raise ConfigError("partition --features: expected --layer NAME for each feature space (2 or 3), "
                              "found none")
        files = resolve_feature_files(args.features, episodes)
        feats = [read_feature_file(f, args.layer) for f in files]
        for layer in args.layer:
            if any(c in layer for c in "+&"):
                raise ConfigError(f"--layer as a space name: expected no '+' or '&', found {layer!r}")
            spaces[layer] = [d[layer] for d in feats]
            prov[layer] = {"files": [str(f.resolve()) for f in files],
                           "sha256": [file_sha256(f) for f in files], "layer": layer}
    else:
        raise ConfigError("partition: expected --space NAME=FILES (2 or 3 times) or --features FILES "
                          "--layer A --layer B, found neither")
    if not 2 <= len(spaces) <= 3:
        raise ConfigError(expected_found("variance partitioning", "2 or 3 feature spaces",
                                         f"{len(spaces)} ({', '.join(spaces)})"))
    for name, runs in spaces.items():
        for k, r in enumerate(runs):
            if r.shape[1] != runs[0].shape[1]:
                raise MismatchError(expected_found(f"features per TR of space {name!r} in run {k}",
                                                   runs[0].shape[1], r.shape[1]))
    return spaces, prov


def summary_line(name: str, values) -> str:
    """``name: mean R2 = ..., median = ..., N% of M targets > 0``."""
    import numpy as np

    v = np.asarray(values, dtype=np.float64)
    finite = v[np.isfinite(v)]
    pos = 100.0 * np.mean(finite > 0) if finite.size else float("nan")
    return (f"{name:<34s} mean R2 = {np.nanmean(v):+.4f}  median = {np.nanmedian(v):+.4f}  "
            f"> 0: {pos:5.1f}% of {v.size} targets")


# --------------------------------------------------------------------------- run

def _stats(values) -> dict:
    import numpy as np

    v = np.asarray(values, dtype=np.float64)
    finite = v[np.isfinite(v)]
    return {"mean_r2": float(np.nanmean(v)) if finite.size else None,
            "median_r2": float(np.nanmedian(v)) if finite.size else None,
            "fraction_above_0": float(np.mean(finite > 0)) if finite.size else None, "n_targets": int(v.size)}


def run(args) -> int:
    from .output import json_output

    with json_output(args) as summary:
        return _run(args, summary)


def _run(args, summary) -> int:
    import warnings

    from ..errors import ConfigError
    from ..pipeline.fit import describe_fit, partition_job
    from ..pipeline.results import write_partition
    from .common import brain_from_args, check_out_is_not_an_input, fit_options_from_args, print_warnings, run_job

    if not args.out:
        raise ConfigError("partition: expected --out RESULT.h5, found none")
    options = fit_options_from_args(args)
    check_out_is_not_an_input(args.out, (args.features or []) + (args.brain or []), "partition")
    brain = brain_from_args(args, "partition")
    spaces, space_prov = _load_spaces(args, brain.stimuli)
    residual = parse_residual(args.residual, list(spaces)) if args.residual else None
    brain.provenance["spaces"] = space_prov
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        part, resid, prov = run_job(partition_job(spaces, brain, options, residual=residual), "partition",
                                    args.no_progress)
    print_warnings(caught)
    joint_key = "+".join(part.space_names)
    settings = {k: v for k, v in part.models[joint_key].provenance.items()
                if k not in ("features", "input_hashes", "n_features_model")}
    provenance = {**settings, **prov, "analysis": "variance partitioning (inclusion-exclusion of held-out R^2)",
                  "residual": (None if residual is None else
                               {"joint": residual[0], "unimodal": residual[1],
                                "method": "ridge from unimodal to joint features fit on training runs, "
                                          "residual encoded (Dong & Toneva 2023)"})}
    write_partition(args.out, part, resid, provenance)
    n_targets = part.total.size
    print(f"variance partitioning of {', '.join(part.space_names)}: {n_targets} targets, {len(brain.names)} runs, "
          f"{len(part.models[joint_key].folds)} folds (held-out R2)")
    print(f"  {describe_fit(prov)}")
    print(summary_line(f"total ({joint_key})", part.total))
    for name, values in part.regions.items():
        print(summary_line(region_key(name), values))
    if resid is not None:
        print(summary_line(f"joint {residual[0]} (as fitted)", part.r2[residual[0]]))
        print(summary_line(f"residual: {resid.space}", resid.r2))
    print(f"saved {args.out}")
    summary.update(out=str(args.out), spaces=list(part.space_names), n_targets=int(n_targets),
                   runs=[str(n) for n in brain.names], n_folds=len(part.models[joint_key].folds),
                   fit=describe_fit(prov), total=_stats(part.total),
                   regions={region_key(name): _stats(values) for name, values in part.regions.items()},
                   residual=None if resid is None else {"space": resid.space, **_stats(resid.r2)})
    return 0
