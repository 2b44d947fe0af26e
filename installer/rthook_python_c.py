"""PyInstaller runtime hook: ``AlignScope -c CODE`` runs CODE, as ``python -c CODE`` would.

Inside the bundle ``sys.executable`` is the AlignScope program, not a Python interpreter;
``selftest`` (and anything else that starts ``[sys.executable, "-c", code]`` to probe Qt or
OpenGL in a child process that may crash) then reaches this hook before ``main.py`` parses
the arguments. Only ``-c`` as the first argument is taken; everything else goes to ``main.py``.
"""

import sys

if getattr(sys, "frozen", False) and len(sys.argv) >= 3 and sys.argv[1] == "-c":
    _code = sys.argv[2]
    sys.argv = ["-c"] + sys.argv[3:]
    _globals = {"__name__": "__main__", "__builtins__": __builtins__}
    try:
        exec(compile(_code, "<string>", "exec"), _globals)
    except SystemExit as _exit:
        raise
    except BaseException:
        import traceback

        traceback.print_exc()
        sys.exit(1)
    sys.exit(0)
