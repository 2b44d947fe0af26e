"""``python main.py gui``: start the desktop application.

Arguments (parsed in main.py so that ``--help`` never imports Qt): ``project`` (a project
file or folder), ``--demo``, ``--screenshot PNG`` (render the window once shown, write the
PNG and a JSON of pane rectangles beside it, then quit), ``--quit-after S`` and
``--attention NAME[:LAYER[:HEAD[:OPACITY]]]`` (the attention overlay on at start; also read from
the environment variable ``ALIGNSCOPE_ATTENTION`` while main.py does not declare it) and
``--cortex-labels [N]`` (atlas borders and the names of the N largest regions of each view on) and
``--time S`` (go to S seconds into the episode once the project is open).

Starting the GUI imports no torch and no transformers: those load only inside jobs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

RESOURCES = Path(__file__).resolve().parents[1] / "resources"
STYLE_SHEET = RESOURCES / "style" / "alignscope.qss"
SCREENSHOT_DELAY_MS = 1200


def add_arguments(parser) -> None:
    """Arguments of ``main.py gui`` (import-light: ``--help`` must not import Qt)."""
    parser.add_argument("project", nargs="?", help="project file (.alignscope.json) or data folder to open")
    parser.add_argument("--demo", action="store_true", help="open the bundled demo project (written on first use)")
    parser.add_argument("--screenshot", metavar="PNG", help="render the window to PNG once it is shown, then quit")
    parser.add_argument("--quit-after", type=float, default=None, metavar="S", help="quit after S seconds (tests)")
    parser.add_argument("--attention", metavar="NAME[:LAYER[:HEAD[:OPACITY]]]", default=None,
                        help="start with the attention overlay of this project attention file on, "
                             "e.g. minilm:rollout (also ALIGNSCOPE_ATTENTION)")
    parser.add_argument("--time", type=float, default=None, metavar="S",
                        help="once the project is open, go to S seconds into the episode")
    parser.add_argument("--cortex-labels", type=int, nargs="?", const=8, default=None, metavar="N",
                        help="start with the names of the N largest atlas regions facing each cortex view "
                             "(default 8) and the atlas borders on")


def protect_none_refcount() -> bool:
    """Work around PySide6 6.12.0 on Python < 3.12: its void methods return ``None`` without a
    new reference, so every call (``setText``, ``update``, ``setValue``...) lowers None's
    reference count, and after some ten thousand calls (seconds of video playback) Python
    aborts with "none_dealloc: deallocating None". PySide6 6.11.3 is fine; Python >= 3.12
    makes None immortal. Where the leak is measured, None gets a reference count no program
    can exhaust (what Python 3.12 does for it). Returns True when the fix was applied.
    """
    if sys.version_info >= (3, 12) or getattr(protect_none_refcount, "applied", False):
        return False
    from PySide6.QtCore import QObject

    probe = QObject()
    before = sys.getrefcount(None)
    for _ in range(64):
        probe.setObjectName("probe")          # a void method
    leaked = before - sys.getrefcount(None)
    if leaked < 32:
        return False
    import ctypes

    ctypes.c_ssize_t.from_address(id(None)).value += 1 << 40
    protect_none_refcount.applied = True
    return True


def make_application(argv=None):
    """The QApplication (made once), with AlignScope's style sheet."""
    from PySide6.QtWidgets import QApplication

    protect_none_refcount()
    app = QApplication.instance()
    if app is None:
        os.environ.setdefault("QT_AUTO_SCREEN_SCALE_FACTOR", "1")
        app = QApplication(list(argv) if argv is not None else [sys.argv[0]])
        app.setApplicationName("AlignScope")
        app.setOrganizationName("AlignScope")
        app.setStyle("Fusion")
        if STYLE_SHEET.exists():
            app.setStyleSheet(STYLE_SHEET.read_text(encoding="utf-8"))
    return app


def _show_attention(window, spec: str) -> None:
    """Turn the attention overlay on as ``NAME[:LAYER[:HEAD[:OPACITY]]]`` asks."""
    parts = spec.split(":")
    name = parts[0] or None
    vv = window.video_view
    names = [vv.attention_box.itemText(i) for i in range(vv.attention_box.count())]
    if not names:
        print("alignscope gui: warning: this project registers no attention file", file=sys.stderr)
        return
    if name not in names:
        print(f"alignscope gui: warning: attention {name!r} not in {names}; showing {names[0]!r}", file=sys.stderr)
        name = names[0]
    head = parts[2] if len(parts) > 2 else None
    vv.set_attention(True, name=name, layer=parts[1] if len(parts) > 1 and parts[1] else None,
                     head=None if head in (None, "") else (head if head == "mean" else int(head)),
                     opacity=float(parts[3]) if len(parts) > 3 else None)


def run(args) -> int:
    """Open the main window; returns the exit code."""
    import pyvista as pv
    from PySide6.QtCore import QTimer

    from .main_window import MainWindow

    app = make_application()
    if app.platformName() in ("offscreen", "minimal"):
        pv.OFF_SCREEN = True
    from .state_store import attach, restore_session

    window = MainWindow()
    store = attach(window)   # recent projects, title with the path, camera per project, session saved at close
    if store.load_error:
        print(f"alignscope gui: warning: {store.load_error}", file=sys.stderr)
    window.show()
    status = {"code": 0, "shot": False}

    screenshot: Optional[str] = getattr(args, "screenshot", None)

    def shoot() -> None:
        if status["shot"]:
            return
        status["shot"] = True
        try:
            window.cortex_view.render()
            app.processEvents()
            path = window.save_screenshot(screenshot)
            print(f"screenshot written: {path}")
        except Exception as exc:  # noqa: BLE001 - report, then quit with an error code
            print(f"alignscope gui: error: screenshot failed: {exc}", file=sys.stderr)
            status["code"] = 1
        window.close()
        app.quit()

    def failed(message: str) -> None:
        print(f"alignscope gui: error: {message}", file=sys.stderr)
        status["code"] = 2
        if screenshot:
            QTimer.singleShot(0, shoot)   # inside the event loop, so that quit() ends it

    attention = getattr(args, "attention", None) or os.environ.get("ALIGNSCOPE_ATTENTION")
    if attention:
        # NAME[:LAYER[:HEAD[:OPACITY]]], e.g. "minilm" or "vit:rollout:mean:0.6": the overlay on at start
        window.project_opened.connect(lambda _p: _show_attention(window, attention))
    labels = getattr(args, "cortex_labels", None)
    if labels is not None:
        window.project_opened.connect(
            lambda _p: window.cortex_view.apply_settings(labels=labels > 0, label_count=max(labels, 1), borders=True))
    start_s = getattr(args, "time", None)
    if start_s is not None:
        window.project_opened.connect(lambda _p: setattr(window.state, "time", float(start_s)))
    if screenshot:
        # once the project is on screen, give the panes a moment to lay out and render
        window.project_opened.connect(lambda _p: QTimer.singleShot(SCREENSHOT_DELAY_MS, shoot))
    if getattr(args, "demo", False):
        handle = window.open_demo()
        if handle is None:
            failed("the demo project is not available in this build")
        else:
            handle.failed.connect(lambda msg, _tb: failed(f"demo project: {msg}"))
    elif getattr(args, "project", None):
        if not window.open_project(args.project):
            failed(window.errors_shown[-1][1] if window.errors_shown else "cannot open the project")
    elif screenshot:
        QTimer.singleShot(SCREENSHOT_DELAY_MS, shoot)   # an empty window (no session restored: reproducible)
    else:
        try:   # no project asked for: reopen the last session (project, result, run, time, layout)
            restore_session(window, store)
        except Exception as exc:  # noqa: BLE001 - a stale session never stops the application starting
            print(f"alignscope gui: warning: last session not restored: {exc}", file=sys.stderr)
    quit_after = getattr(args, "quit_after", None)
    if quit_after is not None:
        QTimer.singleShot(int(quit_after * 1000), lambda: (window.close(), app.quit()))
    app.exec()
    window.shutdown()
    return status["code"]
