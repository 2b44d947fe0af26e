"""What every fitting sub-command shares: the FitOptions flags (in ONE place), the brain-run
flags, and running a job with a progress bar on a terminal (one summary line otherwise).

Import-light: ``--help`` imports this module; numpy and the engine load inside functions.
"""

from __future__ import annotations

import argparse
import sys
import time

__all__ = ["check_out_is_not_an_input", "add_fit_arguments", "fit_options_from_args", "add_brain_arguments",
           "brain_from_args", "parse_alphas", "parse_cv", "run_job", "print_warnings"]


def add_fit_arguments(parser: argparse.ArgumentParser, multi_space: bool = True) -> None:
    """The flags of :class:`engine.encoding.options.FitOptions` (defaults from it, shown in --help)."""
    g = parser.add_argument_group("fit options (engine.encoding.options.FitOptions)")
    g.add_argument("--delays-s", type=float, nargs=2, default=None, metavar=("FIRST", "LAST"),
                   help="FIR delay window in seconds, turned into TRs with the data's TR (default 2 10)")
    g.add_argument("--delays", type=int, nargs="+", default=None, metavar="TRS",
                   help="expert: FIR delays in TRs (overrides --delays-s)")
    g.add_argument("--alphas", default=None, metavar="LO:HI:N or A,B,...",
                   help="ridge grid: N values log-spaced from LO to HI, or a comma list (default 0.01:1e8:11)")
    g.add_argument("--cv", default="auto", metavar="auto|loro|within-run|stimulus|K",
                   help="outer CV: auto (from the runs: leave-one-run-out, grouped by stimulus when runs repeat "
                        "one, blocked within a single run), loro, within-run, stimulus, or K grouped folds "
                        "(default auto)")
    g.add_argument("--inner-cv", default=None, metavar="loro|K", help="inner CV choosing alphas (default: "
                   "leave one group out within the training set)")
    g.add_argument("--n-blocks", type=int, default=None, metavar="N", help="blocks per run for within-run CV "
                   "(default 5)")
    g.add_argument("--gap-trs", type=int, default=None, metavar="N", help="TRs left out between train and test "
                   "blocks in within-run CV (default: the longest delay)")
    g.add_argument("--detrend", default="1", metavar="ORDER|none",
                   help="polynomial order removed from each run before z-scoring (default 1: linear)")
    g.add_argument("--high-pass", type=float, default=None, metavar="SECONDS",
                   help="high-pass cut-off period in seconds (cosine basis), e.g. 128")
    g.add_argument("--confounds", default=None, metavar="SET",
                   help="confounds regressed out of each run: motion6, motion24, motion24+wm_csf...")
    g.add_argument("--no-zscore", action="store_true", help="do not z-score runs")
    g.add_argument("--drop-edges", type=int, nargs=2, default=None, metavar=("START", "END"),
                   help="TRs dropped at the start and end of every run (default 0 0)")
    g.add_argument("--pca", default=None, metavar="K",
                   help="PCA per feature space fit on training runs: components (int) or variance (0-1)")
    if multi_space:
        m = g.add_mutually_exclusive_group()
        m.add_argument("--banded", dest="multi_space", action="store_const", const="banded",
                       help="several spaces: banded ridge, one penalty per space and target (default)")
        m.add_argument("--joint", dest="multi_space", action="store_const", const="joint",
                       help="several spaces: one ridge over the concatenated spaces")
        g.add_argument("--banded-iter", type=int, default=None, metavar="N",
                       help="random candidates searched by banded ridge (default 20)")
    g.add_argument("--trim-tolerance-trs", type=int, default=None, metavar="N",
                   help="feature and brain runs differing by at most N TRs are cut to the shorter, with a "
                        "warning recorded in the result; beyond it they are refused (default 2)")
    g.add_argument("--backend", default=None, choices=("numpy", "torch", "torch_cuda"),
                   help="ridge backend (default numpy)")
    g.add_argument("--n-targets-batch", type=int, default=None, metavar="N",
                   help="targets solved at once (memory bound)")


def parse_alphas(text: str):
    """``"LO:HI:N"`` (N values log-spaced from LO to HI) or ``"a,b,c"`` -> list of alphas."""
    import numpy as np

    from ..errors import ConfigError

    try:
        if ":" in text:
            lo, hi, n = text.split(":")
            lo, hi = float(lo), float(hi)
            if lo <= 0 or hi <= 0:
                raise ValueError
            return [float(a) for a in np.logspace(np.log10(lo), np.log10(hi), int(n))]
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--alphas: expected LO:HI:N (positive alphas, log-spaced) or a comma list of numbers, "
                          f"found {text!r}") from None


def parse_cv(text):
    """``"5"`` -> 5; other CV names stay strings (None stays None)."""
    if text is None:
        return None
    return int(text) if str(text).isdigit() else str(text)


def fit_options_from_args(args, base=None):
    """A :class:`~engine.encoding.options.FitOptions` from :func:`add_fit_arguments`' flags.

    Flags left unset keep ``base``'s values (default: FitOptions' defaults).
    """
    from ..encoding.options import FitOptions
    from ..errors import ConfigError

    base = base or FitOptions()
    changes = {}
    if args.delays_s is not None:
        changes["delays_s"] = tuple(args.delays_s)
    if args.delays is not None:
        changes["delays"] = list(args.delays)
    if args.alphas is not None:
        changes["alphas"] = parse_alphas(args.alphas)
    changes["cv"] = parse_cv(args.cv)
    if args.inner_cv is not None:
        changes["inner_cv"] = parse_cv(args.inner_cv)
    for flag, key in (("n_blocks", "n_blocks"), ("gap_trs", "gap_trs"), ("high_pass", "high_pass_s"),
                      ("confounds", "confounds"), ("backend", "backend"), ("n_targets_batch", "n_targets_batch"),
                      ("banded_iter", "banded_n_iter"), ("multi_space", "multi_space"),
                      ("trim_tolerance_trs", "trim_tolerance_trs")):
        value = getattr(args, flag, None)
        if value is not None:
            changes[key] = value
    detrend = str(args.detrend).strip().lower()
    if detrend in ("none", "no", "off"):
        changes["detrend"] = None
    else:
        try:
            changes["detrend"] = int(detrend)
        except ValueError:
            raise ConfigError(f"--detrend: expected a polynomial order (0, 1, 2...) or none, found {args.detrend!r}") \
                from None
    if args.no_zscore:
        changes["zscore"] = False
    if args.drop_edges is not None:
        changes["drop_edges"] = tuple(args.drop_edges)
    if args.pca is not None:
        try:
            changes["pca"] = float(args.pca) if "." in str(args.pca) else int(args.pca)
        except ValueError:
            raise ConfigError(f"--pca: expected components (an int) or a variance fraction, found {args.pca!r}") \
                from None
    return base.replace(**changes)


def add_brain_arguments(parser: argparse.ArgumentParser) -> None:
    """``--brain``/``--brain-datasets``/``--brain-mask``/``--tr``/``--project`` (one home for the brain runs)."""
    g = parser.add_argument_group("brain runs")
    g.add_argument("--brain", nargs="+", metavar="FILE",
                   help="brain files, one per run: NIfTI (.nii/.nii.gz, with --brain-mask), GIFTI (one hemisphere "
                        "file; its partner is found), CIFTI (.dtseries/.ptseries.nii), tables (.tsv/.csv/.txt) or "
                        "arrays (.npy/.npz/.h5); or one .npz/.h5 with --brain-datasets")
    g.add_argument("--brain-datasets", nargs="+", metavar="NAME",
                   help="datasets of the brain .h5/.npz, one per run (Algonauts: ses-001_task-s01e02a ...)")
    g.add_argument("--brain-mask", metavar="NIFTI", help="brain mask for NIfTI runs (default: nilearn's EPI mask)")
    g.add_argument("--tr", type=float, default=None, metavar="S",
                   help="repetition time in seconds, when the brain files do not say (tables, arrays)")
    g.add_argument("--project", metavar="PATH",
                   help="project file, or an Algonauts/BIDS folder: its runs are the brain runs")


def brain_from_args(args, command: str):
    """:class:`~engine.pipeline.data.BrainData` from ``--project`` or ``--brain`` files."""
    from ..errors import ConfigError

    if getattr(args, "project", None):
        from ..jobs import run_sync
        from ..pipeline.data import ProjectData

        pdata = ProjectData(args.project)
        refs = pdata.select_runs(getattr(args, "episodes", None), getattr(args, "runs", None),
                                 getattr(args, "subjects", None), getattr(args, "space", None))
        return run_sync(pdata.load_brain_job(refs, confounds=getattr(args, "confounds", None)))
    if not args.brain:
        raise ConfigError(f"{command}: expected --brain FILE... or --project PATH, found neither")
    from ..pipeline.data import load_brain_files

    return load_brain_files(args.brain, args.brain_datasets, tr_s=args.tr, mask=args.brain_mask)


def run_job(gen, name: str, no_progress: bool = False, stream=None):
    """Run a job here: a live bar on a terminal (``stderr.isatty()``), else one summary line at the end."""
    from ..jobs import TerminalProgress, run_sync

    stream = stream or sys.stderr
    tty = hasattr(stream, "isatty") and stream.isatty()
    t0 = time.monotonic()
    last = []
    bar = TerminalProgress(name, stream=stream) if tty and not no_progress else None

    def on_progress(p):
        last[:] = [p]
        if bar is not None:
            bar(p)

    out = run_sync(gen, on_progress=on_progress)
    if bar is None and not no_progress:
        steps = f"{last[0].step}/{last[0].total} steps, " if last and last[0].total else ""
        print(f"{name}: done ({steps}{time.monotonic() - t0:.1f} s)", file=stream)
    return out


def print_warnings(caught, stream=None) -> None:
    """Each distinct warning once (``warning: ...``)."""
    stream = stream or sys.stderr
    seen = set()
    for w in caught:
        text = str(w.message)
        if text not in seen:
            seen.add(text)
            print(f"warning: {text}", file=stream)


def check_out_is_not_an_input(out, inputs, command: str) -> None:
    """Refuse an output path that is one of the input files (it would be replaced by the result)."""
    from pathlib import Path

    from ..errors import ConfigError

    if out is None:
        return
    target = Path(out).resolve()
    for p in inputs or []:
        if Path(p).resolve() == target:
            raise ConfigError(f"{command} --out {out}: expected a new file, found one of the inputs "
                              f"(it would be overwritten by the result)")
