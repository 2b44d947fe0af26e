"""``--json`` for every sub-command that prints results, the same way everywhere.

With ``--json`` the command's one machine-readable summary is the only thing on stdout (one
JSON object, written when the command succeeds); the human-readable lines it prints anyway go
to stderr, next to the progress bar (a terminal) or the one summary line (not a terminal).
Without ``--json`` nothing changes. On an error nothing is written to stdout: the message is on
stderr and the exit status says what happened (see :data:`EXIT_CODES`).

Import-light: ``--help`` imports this module.
"""

from __future__ import annotations

import contextlib
import json
import sys

__all__ = ["EXIT_CODES", "EXIT_CODES_TEXT", "add_json_argument", "json_output", "to_jsonable"]

# the exit statuses of every sub-command (main.py's --help epilog and docs/guide/troubleshooting.md)
EXIT_CODES = {
    0: "success",
    1: "checks failed or problems found (info, qc, selftest); the report says which",
    2: "usage or input error: a one-paragraph message on stderr names what was expected and what was found",
    130: "interrupted (Ctrl-C); nothing half-written is left",
    143: "terminated (SIGTERM, e.g. a cluster's time limit); nothing half-written is left",
}

EXIT_CODES_TEXT = "exit status:\n" + "\n".join(f"  {code:<4} {text}" for code, text in EXIT_CODES.items())


def add_json_argument(parser) -> None:
    parser.add_argument("--json", action="store_true",
                        help="print one JSON summary on stdout (the usual lines go to stderr)")


def to_jsonable(obj):
    """numpy scalars/arrays, paths and sets -> plain JSON values (NaN -> null)."""
    import math
    from pathlib import PurePath

    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, PurePath):
        return str(obj)
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):       # numpy array or scalar
        return to_jsonable(obj.tolist())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    return str(obj)


@contextlib.contextmanager
def json_output(args):
    """``with json_output(args) as summary: ...; summary.update(...)``.

    Inside the block, with ``args.json`` set, ``print`` goes to stderr; when the block ends
    without an exception the ``summary`` dict is printed to stdout as one JSON object.
    """
    summary: dict = {}
    if not getattr(args, "json", False):
        yield summary
        return
    stdout = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):
        yield summary
    stdout.write(json.dumps(to_jsonable(summary), indent=2, allow_nan=False) + "\n")
    stdout.flush()
