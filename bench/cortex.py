#!/usr/bin/env python3
"""Benchmark: one cortex update per TR (colours written in place into the meshes + one render).

Opens the demo project (written on first use; ``--project`` for another) in a
:class:`gui.cortex_view.CortexView` showing the measured response, then steps through the
run's TRs: each step writes 20 484 vertex colours into the existing point data and renders
once (MNE Brain's way); the bench asserts that VTK drew the scene exactly once per step
(counted on a renderer's StartEvent) and times until the window was repainted. Measured beside, in the same run:

- an idle baseline: setting a time inside the TR already shown (the view must do nothing);
- a render-only baseline: one render with unchanged colours (the floor an update cannot beat).

CPU time per update (all threads of the process, llvmpipe's included) is printed too: it
changes less than wall-clock time when other processes share the machine.
Use a real X server to time the on-screen QtInteractor (``xvfb-run -a python bench/cortex.py``);
without one it renders off-screen (EGL/OSMesa) into an image and says so. Last line:
``bench cortex: <median> ms per update (goal <= 60)``. The machine's load changes the
figures: report them as measured.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

if not os.environ.get("DISPLAY"):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", help="project file (default: the demo, written on first use)")
    parser.add_argument("--updates", type=int, default=60, help="TR steps to time")
    args = parser.parse_args()

    import numpy as np

    from engine.demo import ensure_demo_project
    from engine.session import ProjectSession
    from engine.state import AppState
    from gui.app import make_application
    from gui.cortex_view import CortexView

    app = make_application()
    session = ProjectSession.open(args.project or ensure_demo_project())
    state = AppState(session.timeline())
    state.run = session.run_names[0]
    view = CortexView(state, session)
    view.resize(900, 640)
    view.show()
    for _ in range(10):
        app.processEvents()
        time.sleep(0.02)
    state.layer = "measured"
    tl = state.timeline
    n = min(args.updates, tl.n_trs - 1)

    cpu_ms = {}

    def timed(fn, count, name):
        out = []
        c0 = time.process_time()      # CPU of every thread of this process (llvmpipe's included)
        for i in range(count):
            t0 = time.perf_counter()
            fn(i)
            app.processEvents()
            out.append((time.perf_counter() - t0) * 1000.0)
        cpu_ms[name] = (time.process_time() - c0) * 1000.0 / max(count, 1)
        return np.array(out)

    # count what VTK really draws (a renderer's StartEvent), not only what the view asked for
    vtk_renders = [0]
    first_renderer = view._renderers[0][2]
    tag = first_renderer.AddObserver("StartEvent", lambda *_: vtk_renders.__setitem__(0, vtk_renders[0] + 1))
    renders_before = view.render_count
    update = timed(lambda i: setattr(state, "time", tl.tr_time(i % n + 1) + 0.01), n, "update")
    assert view.render_count - renders_before == n, "every TR step must ask for one render"
    assert vtk_renders[0] == n, f"every TR step must draw the scene exactly once, found {vtk_renders[0]} for {n}"
    first_renderer.RemoveObserver(tag)
    idle = timed(lambda i: setattr(state, "time", tl.tr_time(n) + 0.02 + 0.001 * (i % 5)), n, "idle")
    render_only = timed(lambda i: view.render(), n, "render")   # processEvents inside: the paint that renders
    host = "QtInteractor on X" if view.interactive else f"off-screen image ({view.fallback_reason or 'no X server'})"
    med = float(np.median(update))
    print(f"host: {host}; window {view.width()}x{view.height()}; {session.surface.n_vertices} vertices; {n} TR steps")
    print(f"idle (time inside the shown TR): median {np.median(idle):.2f} ms")
    print(f"render only (same colours):      median {np.median(render_only):.2f} ms")
    print(f"update (colours + render):       median {med:.2f} ms, p95 {np.percentile(update, 95):.2f} ms, "
          f"{med / max(np.median(render_only), 1e-6):.2f}x render only")
    print(f"CPU time per update (all threads, load-independent): {cpu_ms['update']:.1f} ms "
          f"(render only {cpu_ms['render']:.1f} ms; {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f})")
    view.close()
    session.close()
    print(f"bench cortex: {med:.1f} ms per update (goal <= 60)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
