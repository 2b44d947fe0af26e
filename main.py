#!/usr/bin/env python3
"""AlignScope entry point: argument parsing only.

``python main.py`` (or ``python main.py gui``) opens the desktop application; the other
sub-commands run the same engine headless (:mod:`engine.pipeline`). Every sub-command lives in
``engine/cli/<name>.py`` (``gui`` in ``gui/app.py``, ``selftest`` in ``gui/selftest.py``) and
exposes ``add_arguments(parser)`` and ``run(args) -> int``; the modules are imported plainly
here, and nothing heavy is imported until a command runs, so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys

# Every sub-command module is import-light by contract (no numpy-heavy, torch, Qt or nilearn
# imports at module level: they happen inside run()), so --help answers at once.
from engine.cli import compare, demo, encode, extract, info, partition, project, qc, stats, study
from gui import app as gui_app
from gui import selftest as gui_selftest

# name -> (module with add_arguments(parser) and run(args), one-line help)
COMMANDS = {
    "gui": (gui_app, "open the desktop application (default)"),
    "demo": (demo, "write the demo project and run the whole pipeline headless"),
    "info": (info, "report what a file or folder holds and what is wrong with it"),
    "extract": (extract, "extract per-TR model features from a stimulus (video, audio, words, events)"),
    "encode": (encode, "fit cross-validated encoding models and save the scores"),
    "partition": (partition, "variance partitioning (unique/shared R2) of 2-3 feature spaces"),
    "compare": (compare, "compare two encoding results target by target and region by region"),
    "study": (study, "a reference study (encoders, ablation, joint, checkpoints, layers) as a report"),
    "stats": (stats, "permutation p and FDR q of an encoding result, per target and region"),
    "qc": (qc, "quality checks: data, stimulus-brain sync, reliability (exit 1 on a failure)"),
    "project": (project, "write the project file of an Algonauts 2025 or BIDS/fMRIPrep folder (project init)"),
    "selftest": (gui_selftest, "check this installation (Qt, OpenGL, video, torch, data folders, a small demo fit)"),
}


def build_parser() -> argparse.ArgumentParser:
    from engine.cli.output import EXIT_CODES_TEXT

    parser = argparse.ArgumentParser(
        prog="alignscope",
        description="AlignScope: align multimodal AI models with fMRI of people watching TV.",
        epilog=EXIT_CODES_TEXT + "\n\n--json (commands that print results): one JSON summary on stdout, the usual "
        "lines on stderr.\nThe user's guide: docs/guide/index.md",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        module.add_arguments(p)
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = ["gui"] + argv
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    module = args._module
    from engine.errors import AlignScopeError

    terminated, restore = _handle_sigterm(args.command)
    try:
        return int(module.run(args) or 0)
    except AlignScopeError as exc:  # a user's mistake: a message, never a traceback
        print(f"alignscope {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and closed: not an error of the command
        import os

        sys.stdout = open(os.devnull, "w")
        return 0
    except KeyboardInterrupt:
        # SIGTERM arrives as KeyboardInterrupt too: every atomic write removes its temp file
        # on the way out, so nothing half-written is left (a resumable cache keeps whole parts)
        sig = "terminated" if terminated else "interrupted"
        print(f"alignscope {args.command}: {sig}; nothing half-written was left", file=sys.stderr)
        return 143 if terminated else 130
    finally:
        restore()


def _handle_sigterm(command):
    """SIGTERM (``kill``, a cluster's job time limit) unwinds like Ctrl-C, so writes clean up.

    Returns a list that is non-empty once SIGTERM arrived, and a function restoring the
    previous handler. Not for the GUI (Qt's own loop).
    """
    import signal
    import threading

    seen = []
    if command == "gui" or threading.current_thread() is not threading.main_thread():
        return seen, lambda: None

    def on_term(signum, frame):
        if not seen:
            seen.append(signum)
            raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, on_term)
    except (ValueError, OSError):  # pragma: no cover - not the main thread / platform
        return seen, lambda: None
    return seen, lambda: signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
