"""``python main.py demo --out DIR``: write the demo project and run the whole pipeline headless
(:func:`engine.pipeline.demo.run_demo_pipeline`, the same pipeline every command uses)."""

from __future__ import annotations


def add_arguments(parser) -> None:
    parser.add_argument("--out", required=True, metavar="DIR", help="folder to write the demo project into")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the generator (default 0)")
    parser.add_argument("--backend", default="numpy", choices=["numpy", "torch", "torch_cuda"],
                        help="ridge backend (default numpy)")
    parser.add_argument("--no-fit", action="store_true", help="only write the data, fit nothing")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar or summary line")
    from .output import add_json_argument

    add_json_argument(parser)


def run(args) -> int:
    from .output import json_output

    with json_output(args) as out:
        return _run(args, out)


def _run(args, out) -> int:
    from pathlib import Path

    from ..demo import write_demo_project
    from ..pipeline.demo import run_demo_pipeline
    from .common import run_job

    project_file = write_demo_project(Path(args.out), seed=args.seed)
    print(f"demo project written: {project_file}")
    out["project"] = str(project_file)
    if args.no_fit:
        return 0
    summary = run_job(run_demo_pipeline(project_file, backend=args.backend), "demo", args.no_progress)
    print(f"{'region':<12} {'space':<9} {'median r':>9} {'map corr':>9}  (map: unique R^2 of the space)")
    for region, row in summary.items():
        if region in ("noise", "pipeline"):
            continue
        print(f"{region:<12} {row['feature_space']:<9} {row['median_r']:9.3f} {row['map_correlation']:9.3f}")
    noise = summary["noise"]
    print(f"{'noise':<12} {'-':<9} {noise['median_r']:9.3f}   (p95 {noise['p95_r']:.3f})")
    print(f"summary: {Path(args.out) / 'summary.json'}")
    out.update(summary_file=str(Path(args.out) / "summary.json"), regions=summary)
    return 0
