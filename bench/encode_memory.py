"""Peak memory of an encoding fit relative to the brain data it reads.

Writes 4 runs x 500 TRs x 2000 features x 50 000 targets as .npy files (400 MB of brain data,
float32) into a scratch folder and fits them in a child process, measuring the child's peak
resident set size (``ru_maxrss``):

- ``cli``: ``python main.py encode --features ... --brain ... --out`` (whatever path the CLI takes);
- ``gram``: :func:`engine.encoding.gram.fit_encoding_gram` on the ``.npy`` paths (runs read one at
  a time) with ``out_path`` (predictions written per target batch).

Usage::

    python bench/encode_memory.py [--variant cli|gram|both] [--folder DIR] [--targets 50000] [--memory-limit BYTES]

``--memory-limit`` is the Gram path's ``memory_limit_bytes`` (default: 70 % of what is available, so on
a large machine the fit uses the memory it has, in one target batch).

Ends with one line ``bench encode_memory: <peak / brain data> x (goal <= 2 x)`` for the last variant.
The machine is shared: the time figures vary with its load; the memory figures do not.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
N_RUNS, N_TRS, N_FEATURES = 4, 500, 2000

GRAM_CHILD = """
import sys, numpy as np
sys.path.insert(0, {repo!r})
from engine.encoding.gram import fit_encoding_gram
folder = {folder!r}
X = [f"{{folder}}/f{{i}}.npy" for i in range({n_runs})]
Y = [f"{{folder}}/b{{i}}.npy" for i in range({n_runs})]
res = fit_encoding_gram(X, Y, delays=[1, 2], alphas=[1.0, 100.0, 1e4], out_path=f"{{folder}}/gram.h5",
                        verbose=True, memory_limit_bytes={limit!r})
print("mean r", float(np.nanmean(res.scores)))
"""


def make_data(folder: Path, n_targets: int) -> int:
    import numpy as np

    rng = np.random.default_rng(0)
    w = rng.standard_normal((50, n_targets)).astype(np.float32) * 0.3
    for i in range(N_RUNS):
        x = rng.standard_normal((N_TRS, N_FEATURES)).astype(np.float32)
        if not (folder / f"b{i}.npy").exists():
            np.save(folder / f"f{i}.npy", x)
            y = x[:, :50] @ w + rng.standard_normal((N_TRS, n_targets)).astype(np.float32)
            np.save(folder / f"b{i}.npy", y.astype(np.float32))
    return N_RUNS * N_TRS * n_targets * 4


def run_child(argv) -> tuple:
    t0 = time.time()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=str(REPO))
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode != 0:
        print(proc.stdout[-2000:], proc.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"child failed with {proc.returncode}")
    if peak_kb <= before:
        print("note: ru_maxrss of children is a maximum over all children; run one variant per process "
              "for exact figures", file=sys.stderr)
    return peak_kb * 1024, time.time() - t0, proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variant", choices=("cli", "gram", "both"), default="gram")
    ap.add_argument("--folder", default=None)
    ap.add_argument("--targets", type=int, default=50_000)
    ap.add_argument("--memory-limit", type=float, default=None, help="Gram path: memory_limit_bytes")
    args = ap.parse_args()
    folder = Path(args.folder or tempfile.mkdtemp(prefix="alignscope-bench-mem-"))
    folder.mkdir(parents=True, exist_ok=True)
    brain = make_data(folder, args.targets)
    variants = ["cli", "gram"] if args.variant == "both" else [args.variant]
    ratio = None
    for v in variants:
        if v == "cli":
            argv = [sys.executable, "main.py", "encode", "--features", *[str(folder / f"f{i}.npy") for i in range(N_RUNS)],
                    "--brain", *[str(folder / f"b{i}.npy") for i in range(N_RUNS)], "--delays", "1", "2",
                    "--alphas", "1,100,10000", "--out", str(folder / "cli.h5"), "--no-progress"]
        else:
            argv = [sys.executable, "-c", GRAM_CHILD.format(repo=str(REPO), folder=str(folder), n_runs=N_RUNS,
                                                          limit=args.memory_limit)]
        peak, secs, out = run_child(argv)
        ratio = peak / brain
        print(f"{v}: peak RSS {peak / 2 ** 30:.2f} GiB for {brain / 2 ** 30:.2f} GiB of brain data "
              f"({ratio:.2f} x), {secs:.0f} s wall (shared machine)")
        for line in out.splitlines():
            if "memory estimate" in line or line.startswith("mean r"):
                print("  " + line.strip())
    print(f"bench encode_memory: {ratio:.2f} x (goal <= 2 x)")


if __name__ == "__main__":
    main()
