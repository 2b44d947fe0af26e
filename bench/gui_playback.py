#!/usr/bin/env python3
"""Benchmark: playback of the demo in the desktop application, against the video's own frame rate.

Opens the demo project (written on first use) in the main window on Qt's ``offscreen``
platform (the 3D pane renders off-screen through EGL/OSMesa), shows the measured response
on the cortex (one cortex render per TR), plays ``--seconds`` of the episode at 1x and
reports:

- frames shown per second of wall clock, as a ratio to the video's frame rate (25 fps);
- drift of the video clock against the wall clock (playback follows the wall clock and
  drops frames rather than drifting, so this stays within about one timer tick);
- the cost of one cortex update: writing 20 484 colours into the meshes' point data,
  and the render that follows (anti-aliasing off).

Run ``python bench/gui_playback.py``; the last line is
``bench gui_playback: <ratio> x video frame rate (goal >= 0.8)``. The machine's load
changes these figures: report them as measured.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="wall-clock seconds of playback")
    parser.add_argument("--layer", default="measured", choices=["score", "measured", "predicted"])
    args = parser.parse_args()

    import numpy as np
    import pyvista as pv
    from PySide6.QtCore import QTimer

    from engine.demo import ensure_demo_project
    from gui.app import make_application
    from gui.colormaps import map_rgb
    from gui.main_window import MainWindow

    pv.OFF_SCREEN = True
    project = ensure_demo_project()
    app = make_application()
    w = MainWindow(interactive_3d=False)
    w.resize(1500, 920)
    w.show()
    if not w.open_project(project):
        print(w.errors_shown[-1], file=sys.stderr)
        return 1
    fps_video = float(w.session.video.fps)
    shown = set()
    out = {}

    def on_time(_e):
        shown.add(w.video_view.shown_frame_index)

    def start():
        w.state.layer = args.layer
        w.state.time = 10.0
        w.state.events.time.connect(on_time)
        out["t0_wall"], out["t0_video"], out["renders0"] = time.monotonic(), w.state.time, w.cortex_view.render_count
        w.state.playing = True
        QTimer.singleShot(int(args.seconds * 1000), stop)

    def stop():
        w.state.playing = False
        wall = time.monotonic() - out["t0_wall"]
        out.update(wall=wall, video=w.state.time - out["t0_video"], frames=len(shown),
                   renders=w.cortex_view.render_count - out["renders0"], dropped=w.video_view.dropped_frames)
        out.update(cortex_update_ms())
        w.close()   # inside the event loop: VTK objects must not outlive it
        app.quit()

    def cortex_update_ms():
        cv = w.cortex_view
        values = np.random.default_rng(0).standard_normal(w.session.n_targets).astype(np.float32)
        n = 20
        t = time.perf_counter()
        for _ in range(n):
            rgb = map_rgb(values, cv.current_style, cv._background)
            for hemi, ds in cv._datasets:
                ds.point_data["rgb"][:] = rgb[: cv._n_left] if hemi == "left" else rgb[cv._n_left:]
        write_ms = (time.perf_counter() - t) / n * 1000
        t = time.perf_counter()
        for k in range(n):
            cv.set_map(values * (1 + 0.01 * k), cv.current_style)
        return {"write_ms": write_ms, "update_ms": (time.perf_counter() - t) / n * 1000,
                "size": tuple(cv.plotter.window_size)}

    QTimer.singleShot(800, start)
    app.exec()

    fps_shown = out["frames"] / out["wall"]
    drift_ms = (out["video"] - out["wall"]) * 1000
    print(f"playback {args.seconds:g} s at 1x, cortex layer {args.layer!r}: {out['frames']} distinct frames "
          f"in {out['wall']:.2f} s = {fps_shown:.1f} fps (video {fps_video:g} fps), {out['dropped']} dropped, "
          f"{out['renders']} cortex renders")
    print(f"video clock - wall clock after {out['wall']:.2f} s: {drift_ms:+.0f} ms")
    write_ms, update_ms = out["write_ms"], out["update_ms"]
    print(f"cortex update ({out['size'][0]}x{out['size'][1]} px, 4 views): colours into point data "
          f"{write_ms:.1f} ms, with the render {update_ms:.1f} ms")
    print(f"bench gui_playback: {fps_shown / fps_video:.2f} x video frame rate (goal >= 0.8)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
