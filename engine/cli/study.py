"""``alignscope study NAME``: one of the reference studies as one command, written as a report.

Examples::

    python main.py study encoders --project demo.alignscope.json --out encoders/
    python main.py study encoders --project p.alignscope.json --out out/ --models clip-vit-b32 vit-base
    python main.py study ablation --project p.alignscope.json --out out/ --models tvlt-base --ablate vision
    python main.py study joint --project p.alignscope.json --out out/ --models clip-vit-b32 bert-base clip-vit-b32-joint
    python main.py study checkpoints --project p.alignscope.json --out out/ --models ./finetuned ./pretrained
    python main.py study layers --project p.alignscope.json --out out/ --models minilm word-rate

Workflows: encoders, ablation, joint, checkpoints, layers (see :mod:`engine.studies`). On the
demo project the models may be left out (the demo's own models are used). The folder gets
``report.html`` (self-contained), ``maps/`` (GIFTI per hemisphere for surface data, NPY), ``tables/``
(CSV), ``study.json`` and ``study.npz``; fits are kept in ``<project>/results/studies/fits`` and
reused by the next study with the same features, runs and settings.
"""

from __future__ import annotations

import argparse

__all__ = ["add_arguments", "run"]

WORKFLOW_NAMES = ("encoders", "ablation", "joint", "checkpoints", "layers")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", choices=WORKFLOW_NAMES, metavar="NAME",
                        help="workflow: " + ", ".join(WORKFLOW_NAMES))
    parser.add_argument("--project", required=True, metavar="P", help="project file or folder")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for report.html, maps and tables")
    parser.add_argument("--models", nargs="+", default=None, metavar="MODEL",
                        help="model references NAME[:LAYER[+LAYER]] (registry name, folder or Hub id); "
                             "encoders: A B; ablation: M; joint: U1 U2 J; checkpoints: A B; layers: M [BASELINE...]")
    parser.add_argument("--ablate", default="text", choices=("vision", "audio", "text"),
                        help="ablation: the input removed (default text)")
    parser.add_argument("--space", default=None, help="runs of this space (default fsaverage5 if present)")
    parser.add_argument("--atlas", default=None, help="bundled atlas for the regions of vertex data "
                                                      "(default: the project's, else schaefer_400)")
    parser.add_argument("--episodes", nargs="+", default=None, metavar="EP", help="episodes to use (default all)")
    parser.add_argument("--pool", default="auto", choices=("auto", "runs", "mean"),
                        help="average the runs of an episode (mean), keep them (runs), or auto: average when "
                             "they come from 3+ subjects")
    parser.add_argument("--n-perm", type=int, default=1000, metavar="N", help="block permutations (default 1000)")
    parser.add_argument("--n-boot", type=int, default=1000, metavar="N", help="bootstrap resamples (default 1000)")
    parser.add_argument("--block", type=int, default=10, metavar="TRS", help="time block in TRs (default 10)")
    parser.add_argument("--alpha", type=float, default=0.05, help="FDR level (default 0.05)")
    parser.add_argument("--ci", type=float, default=0.95, help="interval level (default 0.95)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="feature extraction device (auto, cpu, cuda)")
    parser.add_argument("--cache-dir", default=None, help="feature cache folder (default the user cache)")
    fit = parser.add_argument_group("fit options (engine.encoding.options.FitOptions; defaults are its defaults)")
    fit.add_argument("--delays-s", type=float, nargs=2, default=None, metavar=("FIRST", "LAST"),
                     help="FIR delay window in seconds (default 2 10)")
    fit.add_argument("--cv", default=None, help="auto, loro, within-run, stimulus or K")
    fit.add_argument("--n-blocks", type=int, default=None, help="blocks per run for within-run CV (default 5)")
    fit.add_argument("--pca", default=None, help="PCA per feature space: components (int) or variance (0-1)")
    fit.add_argument("--multi-space", default=None, choices=("banded", "joint"),
                     help="several spaces in one model: banded ridge (default) or one joint ridge")
    fit.add_argument("--backend", default=None, choices=("numpy", "torch", "torch_cuda"))
    parser.add_argument("--qc", default="fast", choices=("fast", "full", "off"),
                        help="quality checks in the report: fast (all but the stimulus-brain sync, default), "
                             "full (with the sync) or off")
    parser.add_argument("--json", action="store_true", help="print the study summary as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def fit_dict(args) -> dict:
    d = {}
    if args.delays_s is not None:
        d["delays_s"] = tuple(args.delays_s)
    if args.cv is not None:
        d["cv"] = int(args.cv) if str(args.cv).isdigit() else args.cv
    if args.n_blocks is not None:
        d["n_blocks"] = args.n_blocks
    if args.pca is not None:
        d["pca"] = float(args.pca) if "." in str(args.pca) else int(args.pca)
    if args.multi_space is not None:
        d["multi_space"] = args.multi_space
    if args.backend is not None:
        d["backend"] = args.backend
    return d


def run(args) -> int:
    import json
    import time

    from ..studies import run_study_job
    from .common import run_job
    from ..studies.common import StudySettings

    settings = StudySettings(project=args.project, out_dir=args.out, models=args.models or [], space=args.space,
                             atlas=args.atlas, fit=fit_dict(args), pool=args.pool, ablate=args.ablate,
                             n_perm=args.n_perm, n_boot=args.n_boot, block_trs=args.block, alpha=args.alpha,
                             ci=args.ci, seed=args.seed, device=args.device, cache_dir=args.cache_dir,
                             episodes=args.episodes, qc=args.qc)
    t0 = time.perf_counter()
    # a live bar on a terminal, one summary line otherwise (never a line per step into a log)
    result = run_job(run_study_job(args.name, settings), f"study {args.name}",
                     no_progress=bool(args.no_progress or args.json))
    wall = time.perf_counter() - t0
    if args.json:
        summary = result.summary()
        summary["wall_s"] = round(wall, 2)
        print(json.dumps(summary, indent=2, default=str))
        return 0
    print(result.title)
    for line in result.findings:
        print(f"- {line}")
    print(f"report: {result.report} ({wall:.1f} s)")
    return 0
