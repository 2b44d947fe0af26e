"""``alignscope stats RESULT.h5``: is each target (and region) predicted better than chance?

The result's inputs are rebuilt from its provenance (a project analysis, or the brain and
feature files ``encode`` read, checked by SHA-256), the stimulus features are permuted in time
within runs (``--method block``: blocks of ``--block`` TRs shuffled; ``shift``: circular
shifts) and the WHOLE cross-validated fit is repeated ``--n-perm`` times. p-values are
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

__all__ = ["add_arguments", "run", "distinct_permutations"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("result", metavar="RESULT.h5", help="encoding result (encode, or a project analysis)")
    parser.add_argument("--n-perm", type=int, default=200, metavar="N",
                        help="permutations, each a whole cross-validated refit (default 200)")
    parser.add_argument("--method", choices=("block", "shift"), default="block",
                        help="block: shuffle blocks of TRs within runs; shift: circular shift of each run")
    parser.add_argument("--block", type=int, default=None, metavar="TRS",
                        help="block length in TRs (default: the longest delay + 1, at least 10)")
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
    parser.add_argument("--no-progress", action="store_true", help="no progress bar or summary line")


def distinct_permutations(run_lengths, method: str, block_trs: int) -> float:
    """How many different permutations the scheme can draw (inf when astronomically many)."""
    import math

    total = 1.0
    for n in run_lengths:
        if method == "block":
            k = max(1, -(-int(n) // int(block_trs)))
            total *= math.factorial(k) if k < 170 else math.inf
        else:
            total *= max(1, int(n) - 2 * max(10, int(n) // 10) + 1)
        if total > 1e12:
            return math.inf
    return total


def run(args) -> int:
    import warnings

    import numpy as np
    import pandas as pd

    from ..atomic import atomic_path
    from ..errors import ConfigError
    from ..pipeline.significance import significance_job
    from .common import print_warnings, run_job

    if args.n_perm < 1:
        raise ConfigError(f"--n-perm: expected an integer >= 1, found {args.n_perm}")
    if not 0 < args.alpha < 1:
        raise ConfigError(f"--alpha: expected a value between 0 and 1, found {args.alpha}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result, perm = run_job(significance_job(args.result, n_perm=args.n_perm, method=args.method,
                                                block_trs=args.block, seed=args.seed, alpha=args.alpha,
                                                scheduler=args.scheduler, n_workers=args.workers),
                               "stats", args.no_progress)
    print_warnings(caught)
    block = perm.settings.get("block_trs", args.block)
    lengths = [np.shape(m)[0] for m in result.measured]
    n_distinct = distinct_permutations(lengths, args.method, block)
    p_min = 1.0 / (1 + args.n_perm)
    s = np.asarray(result.scores, np.float64)
    q = np.nan_to_num(result.q_values, nan=1.0)
    print(f"{args.result}: {result.n_targets} targets, {len(result.run_names)} runs; {args.n_perm} "
          f"{args.method} permutations ({'blocks of ' + str(block) + ' TRs, ' if args.method == 'block' else ''}"
          f"the whole CV refit each time)")
    print(f"targets with q <= {args.alpha:g}: {int(np.sum(q <= args.alpha))} of {result.n_targets}; "
          f"smallest p = {np.nanmin(result.p_values):.4g} (attainable: {p_min:.4g})")
    if p_min > args.alpha:
        print(f"note: with {args.n_perm} permutations no p can be below {p_min:.3g} > {args.alpha:g}: nothing can be "
              f"significant by construction; use --n-perm >= {int(np.ceil(1 / args.alpha))}")
    if n_distinct < args.n_perm:
        print(f"note: the scheme has only {int(n_distinct)} distinct permutations of these runs "
              f"({len(lengths)} runs of {lengths} TRs): p-values cannot go below about {1 / n_distinct:.3g} and "
              f"repeat; use --method shift or shorter --block")
    table = pd.DataFrame({"target": np.arange(result.n_targets), "r": s, "p_value": result.p_values,
                          "q_value": result.q_values})
    if args.atlas or args.labels:
        from ..encoding.regions import make_regions, region_means
        from ..encoding.stats import fdr_bh, permutation_p_values
        from .compare import _bundled_atlas, read_labels

        labels, names = (_bundled_atlas(args.atlas, result.n_targets) if args.atlas
                         else read_labels(args.labels, result.n_targets))
        regions = make_regions(labels, names, n_targets=result.n_targets)
        obs = region_means(s, regions)
        null = region_means(np.asarray(perm.null, np.float64), regions)
        rp = permutation_p_values(obs, null)
        _, rq = fdr_bh(rp, alpha=args.alpha)
        table = pd.DataFrame({"region": regions.names, "label": regions.labels,
                              "n_targets": [int(np.sum(labels == l)) for l in regions.labels],
                              "mean_r": obs, "p_value": rp, "q_value": rq})
        sig = np.nan_to_num(rq, nan=1.0) <= args.alpha
        print(f"regions with q <= {args.alpha:g}: {int(sig.sum())} of {len(table)}")
        for i in np.argsort(-np.nan_to_num(obs, nan=-np.inf), kind="stable")[:10]:
            print(f"  {str(table['region'][i]):<32s} mean r = {obs[i]:+.4f}  p = {rp[i]:.4g}  q = {rq[i]:.4g}"
                  f" {'*' if sig[i] else ' '}")
    if args.out:
        with atomic_path(args.out) as tmp:
            table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
        print(f"saved {args.out}")
    print(f"p and q written into {args.result}")
    return 0
