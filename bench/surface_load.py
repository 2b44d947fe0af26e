#!/usr/bin/env python3
"""Cold load of the cortex a project opens with: fsaverage5 inflated mesh + Schaefer-400 atlas.

Each measurement is a fresh Python process (nothing imported, nothing cached in-process; the OS
file cache is warm after the first repeat). Inside it, the clock runs from before the first
import (numpy included) to the loaded mesh and atlas:

- bundle:  ``engine.io.surfaces.load_fsaverage5("inflated")`` + ``engine.io.atlases.load_atlas("schaefer_400")``
  (reads ``resources/surfaces/fsaverage5.npz``; no nilearn);
- nilearn: the reference, what ``load_fsaverage5`` did before the bundle: ``nilearn.datasets.load_fsaverage
  ("fsaverage5")["inflated"]`` + ``load_fsaverage_data(..., data_type="sulcal")`` + the same atlas.

Repeats are interleaved (bundle, nilearn, bundle, ...) and the medians reported, with the
process wall time (interpreter start included) beside them. Also reports a warm second call
(in-process cache). Usage: ``python bench/surface_load.py [--repeats 7]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

BUNDLE = """
import time, json, sys
t0 = time.perf_counter()
from engine.io.surfaces import load_fsaverage5
from engine.io.atlases import load_atlas
s = load_fsaverage5("inflated")
a = load_atlas("schaefer_400")
t1 = time.perf_counter()
assert s.n_vertices == a.n_vertices == 20484 and s.sulc is not None and a.n_parcels == 400
t2 = time.perf_counter()
s2 = load_fsaverage5("inflated"); a2 = load_atlas("schaefer_400")
t3 = time.perf_counter()
assert s2 is s and a2.labels is a.labels
print(json.dumps({"ms": (t1 - t0) * 1e3, "warm_us": (t3 - t2) * 1e6,
                  "heavy": sorted(m for m in ("nilearn", "sklearn", "scipy", "nibabel") if m in sys.modules)}))
"""

NILEARN = """
import time, json, sys
t0 = time.perf_counter()
import numpy as np
from nilearn import datasets
from engine.io.atlases import load_atlas
mesh = datasets.load_fsaverage("fsaverage5")["inflated"]
left, right = mesh.parts["left"], mesh.parts["right"]
coords = (np.asarray(left.coordinates, np.float32), np.asarray(right.coordinates, np.float32))
faces = (np.asarray(left.faces), np.asarray(right.faces))
d = datasets.load_fsaverage_data(mesh="fsaverage5", mesh_type="inflated", data_type="sulcal")
sulc = np.concatenate([np.asarray(d.data.parts[h], np.float32).ravel() for h in ("left", "right")])
a = load_atlas("schaefer_400")
t1 = time.perf_counter()
assert sulc.shape == (20484,) and a.n_parcels == 400
print(json.dumps({"ms": (t1 - t0) * 1e3, "warm_us": float("nan"),
                  "heavy": sorted(m for m in ("nilearn", "sklearn", "scipy", "nibabel") if m in sys.modules)}))
"""


def _run(code: str) -> dict:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    wall_ms = (time.perf_counter() - t0) * 1e3
    if out.returncode != 0:
        raise SystemExit(f"bench subprocess failed:\n{out.stderr}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["wall_ms"] = wall_ms
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args(argv)
    _run(BUNDLE), _run(NILEARN)   # warm the OS file cache and .pyc files; not counted
    runs = {"bundle": [], "nilearn": []}
    for _ in range(args.repeats):
        runs["bundle"].append(_run(BUNDLE))
        runs["nilearn"].append(_run(NILEARN))
    med = {}
    for name, rs in runs.items():
        ms = [r["ms"] for r in rs]
        wall = [r["wall_ms"] for r in rs]
        med[name] = statistics.median(ms)
        print(f"{name:8s} load {statistics.median(ms):7.1f} ms (min {min(ms):.1f}, max {max(ms):.1f}); "
              f"process wall {statistics.median(wall):7.1f} ms; heavy modules imported: {rs[-1]['heavy']}")
    warm = statistics.median(r["warm_us"] for r in runs["bundle"])
    print(f"bundle   warm second load (in-process cache): {warm:.0f} us")
    print(f"ratio nilearn / bundle: {med['nilearn'] / med['bundle']:.1f}x faster "
          f"({args.repeats} interleaved repeats, medians)")
    print(f"bench surface_load: {med['bundle']:.0f} ms cold load (goal <= 300)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
