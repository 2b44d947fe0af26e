"""``alignscope compare``: is encoding model A closer to the brain than model B, target by target
and region by region?

Both results must hold held-out predictions of the same measured responses (same brain
runs, same preprocessing, same targets), e.g. two ``alignscope encode`` runs with the same
``--brain`` and different ``--features``. The statistics are those of
:func:`engine.encoding.stats.compare_models` (two-sided block-swap permutation test of the
difference of Pearson r, block-bootstrap confidence interval, Benjamini-Hochberg FDR across
targets) and, with an atlas, :func:`engine.encoding.regions.region_comparison` (the region
mean of the difference tested against the region means of the same null draws, FDR across
regions).

Examples::

    python main.py compare multimodal.h5 unimodal.h5 --atlas schaefer400 --out table.tsv
    python main.py compare a.h5 b.h5 --labels parcels.tsv --n-perm 5000 --block 20 --out table.tsv

``--labels``: one integer label per target (0 = no region): ``.npy``, a text file with one
integer per line, a ``.tsv``/``.csv`` with a ``label`` column (and optionally ``name``, the
region's name), or an atlas file (``.annot``, ``.label.gii``, ``.dlabel.nii``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_arguments", "run", "read_labels", "check_same_targets", "target_table"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("a", metavar="A.h5", help="encoding result of model A (alignscope encode)")
    parser.add_argument("b", metavar="B.h5", help="encoding result of model B, same brain runs and targets")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--atlas", metavar="NAME",
                       help="bundled atlas for region rows: schaefer100/200/400, glasser360, aparc "
                            "(targets must be fsaverage5 or fsLR32k vertices)")
    group.add_argument("--labels", metavar="FILE",
                       help="one region label per target: .npy, .txt (one integer a line), .tsv/.csv with a "
                            "'label' (and optional 'name') column, or an atlas file")
    parser.add_argument("--n-perm", type=int, default=1000, metavar="N",
                        help="block-swap permutations (default 1000)")
    parser.add_argument("--n-boot", type=int, default=1000, metavar="N",
                        help="block-bootstrap resamples for the intervals (default 1000)")
    parser.add_argument("--block", type=int, default=10, metavar="TRS",
                        help="time-block length in TRs, longer than the HRF (default 10)")
    parser.add_argument("--alpha", type=float, default=0.05, help="FDR level (default 0.05)")
    parser.add_argument("--ci", type=float, default=0.95, help="confidence level (default 0.95)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--top", type=int, default=10, help="rows printed each way (default 10)")
    parser.add_argument("--out", metavar="TSV",
                        help="table written: one row per region with --atlas/--labels, else per target")
    parser.add_argument("--targets-out", metavar="TSV", help="also write the per-target table here")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar or summary line")
    from .output import add_json_argument

    add_json_argument(parser)


def read_labels(path, n_targets=None):
    """(labels (n_targets,) int64, names or None) from a labels file (see the module docstring)."""
    import numpy as np

    from ..errors import DataError, MismatchError, expected_found

    path = Path(path)
    if not path.exists():
        raise DataError(expected_found("labels file", "an existing file", f"no file at {path}"))
    if not path.is_file():
        import stat as _stat

        mode = path.stat().st_mode
        kind = "a folder" if path.is_dir() else "a FIFO" if _stat.S_ISFIFO(mode) else "a device or special file"
        raise DataError(expected_found(f"labels file {path.name}", "a regular file", kind))
    low = path.name.lower()
    names = None
    if low.endswith((".annot", ".gii", ".dlabel.nii", ".nii", ".nii.gz")):
        from ..io.atlases import load_atlas_file

        atlas = load_atlas_file(path)
        labels, names = np.asarray(atlas.labels), list(atlas.names)
    elif low.endswith((".npy", ".npz", ".h5", ".hdf5")):
        from ..io.arrays import read_array

        # one reader for every array format: no pickles, empty arrays, absurd headers, wrong formats
        labels, _ = read_array(path, None, what="labels file")
    elif low.endswith((".tsv", ".csv")):
        import pandas as pd

        table = pd.read_csv(path, sep="\t" if low.endswith(".tsv") else ",")
        if "label" not in table.columns:
            raise DataError(expected_found(f"labels table {path.name}", "a 'label' column (and optional 'name')",
                                           f"columns {list(table.columns)}"))
        labels = table["label"].to_numpy()
        if "name" in table.columns:
            names = {}
            for lab, name in zip(labels, table["name"]):
                names.setdefault(int(lab), str(name))
    else:
        try:
            labels = np.loadtxt(path, ndmin=1)
        except ValueError as exc:
            raise DataError(expected_found(f"labels file {path.name}", "one integer per line", f"{exc}")) from None
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise DataError(expected_found(f"labels in {path.name}", "one label per target (1-D)", labels.shape))
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.issubdtype(labels.dtype, np.number) or not np.all(np.isfinite(labels)) \
                or not np.all(labels == np.round(labels)):
            raise DataError(expected_found(f"labels in {path.name}", "integers (0 = no region)",
                                           f"values of type {labels.dtype}"))
    labels = labels.astype(np.int64)
    if n_targets is not None and labels.size != n_targets:
        raise MismatchError(expected_found(f"labels in {path.name} (one per target)", n_targets, labels.size))
    return labels, names


def _bundled_atlas(name: str, n_targets: int):
    from ..errors import MismatchError, expected_found
    from ..io.atlases import load_atlas
    from ..io.surfaces import N_VERTICES_PER_HEMI, space_for_n_vertices

    space = space_for_n_vertices(n_targets)
    if space is None:
        spaces = ", ".join(f"{s} ({2 * n} vertices)" for s, n in N_VERTICES_PER_HEMI.items())
        raise MismatchError(expected_found(f"targets for atlas {name!r}", f"the vertices of {spaces}",
                                           f"{n_targets} targets (use --labels FILE for parcels or voxels)"))
    atlas = load_atlas(name, space=space)
    return atlas.labels, list(atlas.names)


def check_same_targets(a, b, a_name="A", b_name="B"):
    """Raise MismatchError unless two EncodingResults predicted the same measured responses."""
    import numpy as np

    from ..errors import MismatchError, expected_found

    if a.n_targets != b.n_targets:
        raise MismatchError(expected_found(f"targets of {b_name}", f"{a.n_targets} (as {a_name})", b.n_targets))
    if list(a.run_names) != list(b.run_names):
        raise MismatchError(expected_found(f"runs of {b_name}", f"{list(a.run_names)} (as {a_name})",
                                           list(b.run_names)))
    if len(a.measured) != len(b.measured):
        raise MismatchError(expected_found(f"held-out runs of {b_name}", len(a.measured), len(b.measured)))
    for k, (ma, mb) in enumerate(zip(a.measured, b.measured)):
        if np.shape(ma) != np.shape(mb):
            raise MismatchError(expected_found(f"measured run {a.run_names[k] if k < len(a.run_names) else k} "
                                               f"of {b_name} (TRs, targets)", f"{np.shape(ma)} (as {a_name})",
                                               f"{np.shape(mb)} (different --drop-edges?)"))
        diff = float(np.nanmax(np.abs(np.asarray(ma, np.float64) - np.asarray(mb, np.float64)))) if ma.size else 0.0
        if not diff <= 1e-3 * max(1.0, float(np.nanmax(np.abs(ma))) if ma.size else 1.0):
            raise MismatchError(expected_found(f"measured responses of {b_name}",
                                               f"the same brain data and preprocessing as {a_name}",
                                               f"a largest difference of {diff:.3g} in run {k}"))
    if a.folds and b.folds and [list(f) for f in a.folds] != [list(f) for f in b.folds]:
        raise MismatchError(expected_found(f"outer folds of {b_name}", f"{a.folds} (as {a_name})", b.folds))


def target_table(comparison):
    """Per-target DataFrame: target, r_a, r_b, difference, ci_low, ci_high, p_value, q_value."""
    import numpy as np
    import pandas as pd

    c = comparison
    return pd.DataFrame({"target": np.arange(c.difference.size), "r_a": c.scores_a, "r_b": c.scores_b,
                         "difference": c.difference, "ci_low": c.ci_low, "ci_high": c.ci_high,
                         "p_value": c.p_values, "q_value": c.q_values})


def _print_top(table, name_col, diff_col, q_col, a_name, b_name, k, alpha, what):
    """Rows where each model wins: every significant row (q <= alpha) first, then the largest
    differences up to ``k`` rows, so the count in each heading is always among the rows listed."""
    import numpy as np

    for winner, loser, sign in ((a_name, b_name, 1), (b_name, a_name, -1)):
        d = table[diff_col].to_numpy(dtype=np.float64)
        q = np.nan_to_num(table[q_col].to_numpy(dtype=np.float64), nan=1.0)
        wins = np.isfinite(d) & (sign * np.nan_to_num(d) > 0)
        sig = wins & (q <= alpha)
        order = np.argsort(-sign * np.nan_to_num(d), kind="stable")
        rows = [i for i in order if sig[i]]
        rows += [i for i in order if wins[i] and not sig[i]][:max(0, k - len(rows))]
        print(f"{what} where {winner} beats {loser} ({int(sig.sum())} with q <= {alpha:g}; "
              f"{len(rows)} listed, significant first):")
        if not rows:
            print("  (none)")
        for i in rows:
            row = table.iloc[i]
            star = "*" if sig[i] else " "
            label = row[name_col]
            if isinstance(label, (float, np.floating, int, np.integer)) and float(label).is_integer():
                label = f"target {int(label)}"
            print(f"  {str(label):<32s} delta r = {row[diff_col]:+.4f}  "
                  f"CI [{row['ci_low']:+.4f}, {row['ci_high']:+.4f}]  q = {row[q_col]:.4g} {star}")


def run(args) -> int:
    from .output import json_output

    with json_output(args) as summary:
        return _run(args, summary)


def _run(args, summary) -> int:
    import numpy as np

    from ..atomic import atomic_path
    from ..encoding.regions import region_comparison
    from ..encoding.results import EncodingResult
    from ..encoding.stats import compare_models_job, widening_text
    from ..errors import ConfigError
    from .common import run_job

    for opt, v, lo in (("--n-perm", args.n_perm, 1), ("--n-boot", args.n_boot, 1), ("--block", args.block, 1)):
        if v < lo:
            raise ConfigError(f"{opt}: expected an integer >= {lo}, found {v}")
    if not 0 < args.alpha < 1 or not 0 < args.ci < 1:
        raise ConfigError(f"--alpha/--ci: expected values between 0 and 1, found {args.alpha}, {args.ci}")
    a = EncodingResult.load(args.a)
    b = EncodingResult.load(args.b)
    a_name = f"A ({a.space})" if a.space else "A"
    b_name = f"B ({b.space})" if b.space else "B"
    check_same_targets(a, b, a_name, b_name)
    from ..io.arrays import check_block

    meas = getattr(a, "measured", None)
    if meas is not None:
        meas = [meas] if isinstance(meas, np.ndarray) else list(meas)
        rn = list(getattr(a, "run_names", None) or [])
        check_block(args.block, [np.shape(m)[0] for m in meas], rn if len(rn) == len(meas) else None)
    labels = names = None
    if args.atlas:
        labels, names = _bundled_atlas(args.atlas, a.n_targets)
    elif args.labels:
        labels, names = read_labels(args.labels, a.n_targets)
    comp = run_job(compare_models_job(a, b, n_perm=args.n_perm, n_boot=args.n_boot, block_trs=args.block,
                                      ci=args.ci, seed=args.seed, alpha=args.alpha), "compare", args.no_progress)
    targets = target_table(comp)
    d = comp.difference
    both = np.isfinite(comp.scores_a) & np.isfinite(comp.scores_b)
    q = np.nan_to_num(comp.q_values, nan=1.0)
    better_a = int(np.sum((q <= args.alpha) & (d > 0)))
    better_b = int(np.sum((q <= args.alpha) & (d < 0)))
    print(f"A = {args.a} ({a.space}), B = {args.b} ({b.space}): {a.n_targets} targets, {len(a.run_names)} runs; "
          f"scores as saved by each fit ({int(both.sum())} targets scored by both)")
    print(f"mean r: A {np.mean(comp.scores_a[both]) if both.any() else np.nan:.4f}, "
          f"B {np.mean(comp.scores_b[both]) if both.any() else np.nan:.4f}; "
          f"mean delta r (A - B) = {np.mean(d[both]) if both.any() else np.nan:+.4f}; A above B in "
          f"{int(np.sum(both & (d > 0)))} of {int(both.sum())} targets; FDR q <= {args.alpha:g}: A better in "
          f"{better_a} targets, B better in {better_b} ({args.n_perm} block swaps of {args.block} TRs, "
          f"{args.n_boot} bootstrap resamples{widening_text(comp.settings)})")
    table = None
    if labels is not None:
        table = region_comparison(comp, labels, names, alpha=args.alpha, ci_level=args.ci)
        rq = np.nan_to_num(table["q_value"].to_numpy(dtype=np.float64), nan=1.0)
        rd = table["mean_difference"].to_numpy(dtype=np.float64)
        n_ra, n_rb = int(np.sum((rq <= args.alpha) & (rd > 0))), int(np.sum((rq <= args.alpha) & (rd < 0)))
        print(f"regions: {len(table)}; FDR q <= {args.alpha:g}: A better in {n_ra} "
              f"regions, B better in {n_rb}")
        _print_top(table, "region", "mean_difference", "q_value", "A", "B", args.top, args.alpha, "regions")
    else:
        _print_top(targets, "target", "difference", "q_value", "A", "B", args.top, args.alpha, "targets")
    for out, t in ((args.out, table if table is not None else targets), (args.targets_out, targets)):
        if out:
            with atomic_path(out) as tmp:
                t.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
            print(f"saved {out}")
    summary.update(a=str(args.a), b=str(args.b), space_a=a.space, space_b=b.space, n_targets=int(a.n_targets),
                   n_scored_by_both=int(both.sum()),
                   mean_r_a=float(np.mean(comp.scores_a[both])) if both.any() else None,
                   mean_r_b=float(np.mean(comp.scores_b[both])) if both.any() else None,
                   mean_difference=float(np.mean(d[both])) if both.any() else None,
                   targets_a_above_b=int(np.sum(both & (d > 0))), alpha=args.alpha,
                   targets_a_better=better_a, targets_b_better=better_b, n_perm=args.n_perm, n_boot=args.n_boot,
                   block_trs=args.block, out=args.out, targets_out=args.targets_out)
    if table is not None:
        summary["n_regions"] = int(len(table))
        summary["regions_a_better"], summary["regions_b_better"] = n_ra, n_rb
        summary["regions"] = table.to_dict(orient="records")
    return 0
