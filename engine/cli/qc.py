"""``alignscope qc``: quality checks of a project, a data folder, or runs + an episode.

Exit status 0 when nothing failed (warnings allowed), 1 when a check failed, 2 (from
``main.py``) when the input cannot be read at all. Imports stay inside functions.
"""

from __future__ import annotations


def add_arguments(parser) -> None:
    parser.add_argument("path", nargs="?", default=None,
                        help="a project file, a folder holding one, or an Algonauts 2025 / BIDS folder")
    parser.add_argument("--runs", nargs="+", metavar="RUN", default=None,
                        help="run files (tables, NIfTI, GIFTI, CIFTI) recorded while one episode was watched")
    parser.add_argument("--episode", metavar="VIDEO", default=None, help="the episode's video (with --runs)")
    parser.add_argument("--audio", metavar="AUDIO", default=None, help="a separate audio file (with --runs)")
    parser.add_argument("--words", metavar="WORDS", default=None,
                        help="word timings (TSV, TextGrid, Algonauts transcript) (with --runs)")
    parser.add_argument("--subtitles", metavar="SRT", default=None, help="subtitles .srt/.vtt (with --runs)")
    parser.add_argument("--confounds", nargs="+", metavar="TSV", default=None,
                        help="fMRIPrep confounds TSV or SPM rp_*.txt, one per run (with --runs)")
    parser.add_argument("--tr", type=float, default=None, metavar="S", help="TR in seconds for tables (with --runs)")
    parser.add_argument("--space", default=None, help="space of table runs (default: from the column count)")
    parser.add_argument("--names", nargs="+", metavar="NAME", default=None,
                        help="names of the columns of tables without a header, e.g. ROI names (with --runs)")
    parser.add_argument("--only", nargs="+", metavar="EPISODE", default=None,
                        help="check only these episodes (and their runs) of a project or data folder")
    parser.add_argument("--no-sync", action="store_true", help="skip the stimulus-brain sync check")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--html", metavar="FILE", default=None, help="also write an HTML fragment of the report")
    parser.add_argument("--maps", metavar="DIR", default=None,
                        help="write the maps behind the checks: tSNR per run (.npy; also .nii.gz in volume space "
                             "for NIfTI runs) and the noise ceiling per group (.npy)")
    parser.add_argument("--failures", action="store_true", help="list only warnings and failures")


def run(args) -> int:
    from pathlib import Path

    from engine.errors import ConfigError
    from engine.qc import report
    from engine.qc.run import qc_files, qc_path

    if (args.path is None) == (args.runs is None):
        raise ConfigError("qc: expected a PATH (project or data folder) or --runs RUN [RUN ...], found "
                          + ("both" if args.path else "neither"))
    if args.runs is None and any((args.episode, args.audio, args.words, args.subtitles, args.confounds, args.names)):
        raise ConfigError("qc: --episode/--audio/--words/--subtitles/--confounds/--names go with --runs, found them "
                          "with PATH")
    if args.runs is not None:
        rep = qc_files(args.runs, tr_s=args.tr, video=args.episode, words=args.words, audio=args.audio,
                       subtitles=args.subtitles, confounds=args.confounds, space=args.space, sync=not args.no_sync,
                       target_names=args.names)
    else:
        rep = qc_path(args.path, sync=not args.no_sync, episodes=args.only)
    if args.maps:
        from engine.qc.run import write_maps

        written = write_maps(rep, args.maps)
        if not args.json:
            print(f"maps: {len(written)} file(s) in {args.maps}")
    if args.html:
        from engine.atomic import write_text_atomic

        write_text_atomic(Path(args.html), report.to_html(rep) + "\n")
    if args.json:
        print(report.to_json(rep))
    else:
        print(report.format_text(rep, show_pass=not args.failures))
    return 1 if rep.failed else 0
