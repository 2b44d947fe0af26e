"""``alignscope project init FOLDER [--out FILE]``: write the project file of a data folder on purpose.

    python main.py project init algonauts_2025.competitors
    python main.py project init derivatives/fmriprep --tr 2.0 --out study.alignscope.json

An Algonauts 2025 or BIDS / fMRIPrep folder is read as every command reads it (the runs
paired with their episodes, the TR from the data, held-out and missing runs marked) and
saved as ``<FOLDER>/<folder name>.alignscope.json`` (or ``--out``), atomically. Every
command accepts the folder itself too; the file is where results get registered.
Imports stay inside functions.
"""

from __future__ import annotations


from .output import add_json_argument, json_output


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    init = sub.add_parser("init", help="write the project file of an Algonauts 2025 or BIDS/fMRIPrep folder",
                          description="write the project file of an Algonauts 2025 or BIDS/fMRIPrep folder")
    init.add_argument("folder", help="data folder (Algonauts 2025 or BIDS / fMRIPrep)")
    init.add_argument("--out", default=None, metavar="FILE",
                      help="project file to write (default: FOLDER/<folder name>.alignscope.json)")
    init.add_argument("--tr", type=float, default=None, metavar="S",
                      help="TR in seconds where the data store none (a clash with a stored TR is reported)")
    init.add_argument("--atlas", default=None, metavar="NAME",
                      help="atlas of the regions for surface data (a bundled name such as schaefer200, glasser360, "
                           "or an atlas file); default: schaefer400 for fsaverage5/fsLR32k runs")
    init.add_argument("--force", action="store_true", help="replace an existing project file")
    add_json_argument(init)


def run(args) -> int:
    with json_output(args) as summary:
        return _init(args, summary)


def _init(args, summary) -> int:
    from pathlib import Path

    from ..errors import ConfigError, DataError
    from ..importers import default_project_file, detect_layout, open_data_folder, pairing_table
    from ..project import PROJECT_SUFFIX

    if getattr(args, "action", None) != "init":
        raise ConfigError("project: expected an action (init), found none; try `project init FOLDER`")
    folder = Path(args.folder)
    if detect_layout(folder, data_only=True) is None:
        found = ("nothing at that path" if not folder.exists() else
                 "a project file, not a data folder" if detect_layout(folder) == "project" else "neither")
        raise DataError(f"project init {folder}: expected an Algonauts 2025 folder or a BIDS / fMRIPrep folder, "
                        f"found {found}")
    out = Path(args.out) if args.out else default_project_file(folder)
    if not out.name.endswith(PROJECT_SUFFIX):
        raise ConfigError(f"--out: expected a file name ending in {PROJECT_SUFFIX}, found {out.name}")
    if out.exists() and not args.force:
        raise DataError(f"project init: expected no file at {out}, found one (give --force to rebuild it from the "
                        "data; its results are kept)")
    previous = None
    if out.exists():
        from ..project import Project

        try:
            previous = Project.load(out)
        except Exception:   # a broken file is simply replaced
            previous = None
    project = open_data_folder(folder, tr_s=args.tr)
    if args.atlas:
        _set_atlas(project, args.atlas)
    if previous is not None:   # rebuilding: the fits already made stay registered
        for name, rel in previous.results.items():   # relative to the folder; save() rebases them
            project.results.setdefault(name, project.relative(previous.path(rel)))
    path = project.save(out)
    trs = sorted({r.tr_s for r in project.runs})
    rows = pairing_table(project)
    held = [r["episode"] for r in rows if r["held_out"]]
    missing = [m for m in project.extra.get("missing_runs", [])]
    print(f"wrote {path}")
    print(f"  layout: {project.extra.get('layout')}, {len(project.episodes)} episodes, {len(project.runs)} runs, "
          f"subjects {sorted({r.subject for r in project.runs})}")
    print(f"  TR: {', '.join(f'{t} s' for t in trs) or 'none found (give --tr)'}")
    if held:
        print(f"  held out (stimuli without fMRI): {len(held)} episodes, e.g. {held[:3]}")
    if missing:
        known = sum(bool(m.get("known")) for m in missing)
        print(f"  missing runs: {len(missing)} ({known} known absent from the release)")
    if project.atlases and project.atlases[0].path.startswith("builtin:"):
        print(f"  atlas: {project.atlases[0].name} ({project.atlases[0].space}); change it with --atlas")
    for p in project.extra.get("problems", []):
        print(f"  problem: {p}")
    summary.update({"project_file": str(path), "layout": project.extra.get("layout"),
                    "n_episodes": len(project.episodes), "n_runs": len(project.runs),
                    "subjects": sorted({r.subject for r in project.runs}), "tr_s": trs, "held_out": held,
                    "missing_runs": missing, "atlas": project.atlases[0].name if project.atlases else None,
                    "problems": list(project.extra.get("problems", []))})
    return 0


def _set_atlas(project, name: str) -> None:
    """Put the atlas the user chose first in ``project.atlases`` (checked by loading it)."""
    from pathlib import Path

    from ..io.atlases import load_atlas
    from ..project import AtlasRef

    spaces = sorted({r.space for r in project.runs if r.space in ("fsaverage5", "fsLR32k")}) or ["fsaverage5"]
    atlas = load_atlas(name, space=spaces[0])          # an unknown name or a bad file fails here, clearly
    if Path(name).exists():
        ref = AtlasRef(name=atlas.name, path=project.relative(Path(name).resolve()), space=atlas.space)
    else:
        ref = AtlasRef(name=atlas.name, path=f"builtin:{atlas.name}", space=spaces[0])
    project.atlases = [ref] + [a for a in project.atlases if not a.path.startswith("builtin:")]
