"""``alignscope stats RESULT.h5``: is each target (and region) predicted better than chance?

The result's inputs are rebuilt from its provenance (a project analysis, or the brain and
feature files ``encode`` read, checked by SHA-256; :mod:`engine.pipeline.significance`), the
stimulus features are permuted in time within runs (``--method block``: blocks of ``--block``
TRs shuffled; ``circular``: circular shifts) and the WHOLE cross-validated fit is repeated
``--n-perm`` times (:func:`engine.encoding.significance.significance_job`). p-values are
one-sided, ``(1 + #{null >= observed}) / (1 + n_perm)``; q-values are Benjamini-Hochberg FDR
across targets. p and q are written into the result file (the window can threshold at q).
With ``--atlas``/``--labels``, each region's mean r is tested against the region means of the
same permutations (FDR across regions).

Examples::

    python main.py stats enc.h5 --n-perm 200
    python main.py stats enc.h5 --n-perm 1000 --method shift --atlas schaefer400 --out regions.tsv
"""

from __future__ import annotations

import argparse

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("result", metavar="RESULT.h5", help="encoding result (encode, or a project analysis)")
    parser.add_argument("--n-perm", type=int, default=200, metavar="N",
                        help="permutations, each a whole cross-validated refit (default 200)")
    parser.add_argument("--method", choices=("block", "circular", "shift"), default="block",
                        help="block: shuffle blocks of TRs within runs; circular (shift): rotate each run")
    parser.add_argument("--block", type=int, default=None, metavar="TRS",
                        help="block length in TRs (default: the TRs in 20 s)")
    parser.add_argument("--alpha", type=float, default=0.05, help="FDR level (default 0.05)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--atlas", metavar="NAME", help="bundled atlas for region rows (fsaverage5/fsLR32k targets)")
    group.add_argument("--labels", metavar="FILE", help="one region label per target (see compare --help)")
    parser.add_argument("--out", metavar="TSV", help="table written: one row per region with --atlas/--labels, "
                        "else per target")
    parser.add_argument("--scheduler", default=None, metavar="ADDR",
                        help="run permutations on Dask: 'local' or a scheduler address")
    parser.add_argument("--workers", type=int, default=None, metavar="N", help="with --scheduler local: workers")
    parser.add_argument("--top", type=int, default=10, help="regions printed (default 10)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar or summary line")
    from .output import add_json_argument

    add_json_argument(parser)


def run(args) -> int:
    from .output import json_output

    with json_output(args) as summary:
        return _run(args, summary)


def _run(args, summary) -> int:
    import warnings

    import numpy as np
    import pandas as pd

    from ..atomic import atomic_path
    from ..encoding.results import EncodingResult
    from ..errors import ConfigError
    from ..pipeline.significance import significance_job
    from .common import print_warnings, run_job

    if args.n_perm < 1:
        raise ConfigError(f"--n-perm: expected an integer >= 1, found {args.n_perm}")
    if not 0 < args.alpha < 1:
        raise ConfigError(f"--alpha: expected a value between 0 and 1, found {args.alpha}")
    labels = names = None
    if args.atlas or args.labels:
        from .compare import _bundled_atlas, read_labels

        n_targets = EncodingResult.load(args.result).n_targets
        labels, names = (_bundled_atlas(args.atlas, n_targets) if args.atlas else read_labels(args.labels, n_targets))
    method = "circular" if args.method == "shift" else args.method
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sig = run_job(significance_job(args.result, n_perm=args.n_perm, method=method, block_trs=args.block,
                                       seed=args.seed, alpha=args.alpha, labels=labels, names=names,
                                       scheduler=args.scheduler, n_workers=args.workers), "stats", args.no_progress)
    print_warnings(caught)
    st = sig.settings
    p = np.asarray(sig.p_values, np.float64)
    q = np.nan_to_num(np.asarray(sig.q_values, np.float64), nan=1.0)
    print(f"{args.result}: {p.size} targets; {args.n_perm} {method} permutations"
          f"{' of blocks of ' + str(st.get('block_trs')) + ' TRs' if method == 'block' else ''} "
          f"(the whole CV refit each time)")
    print(f"targets with q <= {args.alpha:g}: {int(np.sum(q <= args.alpha))} of {p.size}; smallest p = "
          f"{np.nanmin(p):.4g} (attainable: {st.get('min_attainable_p', float('nan')):.4g})")
    print(sig.message)
    if not sig.reachable:
        print(f"hint: --n-perm >= {int(np.ceil(1 / args.alpha))} makes p <= {args.alpha:g} attainable "
              f"(when the runs allow that many distinct permutations)")
    table = pd.DataFrame({"target": np.arange(p.size), "r": sig.observed, "p_value": p, "q_value": sig.q_values})
    if sig.region_table is not None:
        table = sig.region_table
        rq = np.nan_to_num(table["q_region"].to_numpy(np.float64), nan=1.0)
        order = np.argsort(-np.nan_to_num(table["mean_score"].to_numpy(np.float64), nan=-np.inf), kind="stable")
        print(f"regions with q <= {args.alpha:g}: {int(np.sum(rq <= args.alpha))} of {len(table)} "
              f"(top {min(args.top, len(table))} by mean r):")
        for i in order[:args.top]:
            row = table.iloc[i]
            print(f"  {str(row['region']):<32s} mean r = {row['mean_score']:+.4f}  p = {row['p_region']:.4g}  "
                  f"q = {row['q_region']:.4g} {'*' if rq[i] <= args.alpha else ' '}")
    if args.out:
        with atomic_path(args.out) as tmp:
            table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
        print(f"saved {args.out}")
    print(f"p and q written into {args.result}")
    summary.update(result=str(args.result), n_targets=int(p.size), n_perm=args.n_perm, method=method,
                   block_trs=st.get("block_trs") if method == "block" else None, alpha=args.alpha,
                   targets_significant=int(np.sum(q <= args.alpha)), min_p=float(np.nanmin(p)),
                   min_attainable_p=st.get("min_attainable_p"), reachable=bool(sig.reachable),
                   message=str(sig.message), out=args.out)
    if sig.region_table is not None:
        summary["regions_significant"] = int(np.sum(rq <= args.alpha))
        summary["regions"] = table.to_dict(orient="records")
    return 0
