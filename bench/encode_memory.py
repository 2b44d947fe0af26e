"""Peak memory of an encoding fit relative to the brain data it reads.

Writes 4 runs x 500 TRs x 2000 features x 50 000 targets as .npy files (400 MB of brain data,
float32) into a scratch folder and fits them in a child process, measuring the child's peak
resident set size (``ru_maxrss``):

- ``cli``: ``python main.py encode --features ... --brain ... --out`` (whatever path the CLI takes:
  here the Gram path, which reads the runs per target batch and writes predictions and measured
  data into the HDF5 result per batch, its batch chosen from a memory target of half the brain
  data, see :func:`engine.pipeline.fit.gram_memory_target`);
- ``gram``: :func:`engine.encoding.gram.fit_encoding_gram` on the ``.npy`` paths (runs read one at
  a time) with ``out_path`` and the same memory target.

The idle baseline: the same child on a tiny data set (4 runs x 30 TRs x 20 features x 10 targets),
measured in the same run: the interpreter, numpy/scipy/h5py, BLAS buffers, whatever the command
imports. Both figures are printed: the total peak over the brain data, and the peak minus that
baseline over the brain data (what the fit itself adds, brain data included). The goal line is
on the latter (documented here): the imports are a constant of a few hundred MB whatever the data.

Usage::

    python bench/encode_memory.py [--variant cli|gram|both] [--folder DIR] [--targets 50000] [--memory-limit BYTES]

Ends with one line ``bench encode_memory: <(peak - baseline) / brain data> x (goal <= 2 x)`` for the
last variant. The machine is shared: the time figures vary with its load; the memory figures do not.
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
brain = sum(np.load(y, mmap_mode="r").nbytes for y in Y)
res = fit_encoding_gram(X, Y, delays=[1, 2], alphas=[1.0, 100.0, 1e4], out_path=f"{{folder}}/gram.h5",
                        verbose=True, memory_limit_bytes={limit!r}, memory_target_bytes=max(0.5 * brain, 2 ** 28))
print("mean r", float(np.nanmean(res.scores)))
"""


def make_data(folder: Path, n_targets: int, n_trs: int = N_TRS, n_features: int = N_FEATURES,
              prefix: str = "") -> int:
    import numpy as np

    rng = np.random.default_rng(0)
    w = rng.standard_normal((min(50, n_features), n_targets)).astype(np.float32) * 0.3
    for i in range(N_RUNS):
        x = rng.standard_normal((n_trs, n_features)).astype(np.float32)
        if not (folder / f"{prefix}b{i}.npy").exists():
            np.save(folder / f"{prefix}f{i}.npy", x)
            y = x[:, :w.shape[0]] @ w + rng.standard_normal((n_trs, n_targets)).astype(np.float32)
            np.save(folder / f"{prefix}b{i}.npy", y.astype(np.float32))
    return N_RUNS * n_trs * n_targets * 4


def argv_for(variant: str, folder: Path, prefix: str, limit) -> list:
    if variant == "cli":
        return [sys.executable, "main.py", "encode", "--features",
                *[str(folder / f"{prefix}f{i}.npy") for i in range(N_RUNS)],
                "--brain", *[str(folder / f"{prefix}b{i}.npy") for i in range(N_RUNS)], "--delays", "1", "2",
                "--alphas", "1,100,10000", "--out", str(folder / f"{prefix}cli.h5"), "--no-progress"]
    child = GRAM_CHILD.replace('f"{{folder}}/f{{i}}.npy"', f'f"{{{{folder}}}}/{prefix}f{{{{i}}}}.npy"') \
        .replace('f"{{folder}}/b{{i}}.npy"', f'f"{{{{folder}}}}/{prefix}b{{{{i}}}}.npy"')
    return [sys.executable, "-c", child.format(repo=str(REPO), folder=str(folder), n_runs=N_RUNS, limit=limit)]


def run_child(argv) -> tuple:
    """Run ``argv`` in a fresh process via a tiny wrapper that reports that process's own peak
    RSS (``ru_maxrss`` of RUSAGE_CHILDREN is a maximum over every child of this process)."""
    t0 = time.time()
    wrapper = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
               "sys.stdout.write(p.stdout); sys.stderr.write(p.stderr); "
               "print('PEAK_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(p.returncode)")
    proc = subprocess.run([sys.executable, "-c", wrapper, *argv], capture_output=True, text=True, cwd=str(REPO))
    if proc.returncode != 0:
        print(proc.stdout[-2000:], proc.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"child failed with {proc.returncode}")
    lines = proc.stdout.splitlines()
    peak_kb = int(next(line.split()[1] for line in reversed(lines) if line.startswith("PEAK_KB")))
    return peak_kb * 1024, time.time() - t0, proc.stdout + proc.stderr


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variant", choices=("cli", "gram", "both"), default="cli")
    ap.add_argument("--folder", default=None)
    ap.add_argument("--targets", type=int, default=50_000)
    ap.add_argument("--memory-limit", type=float, default=None, help="Gram path: memory_limit_bytes")
    args = ap.parse_args()
    folder = Path(args.folder or tempfile.mkdtemp(prefix="alignscope-bench-mem-"))
    folder.mkdir(parents=True, exist_ok=True)
    brain = make_data(folder, args.targets)
    make_data(folder, 10, n_trs=30, n_features=20, prefix="tiny_")
    variants = ["cli", "gram"] if args.variant == "both" else [args.variant]
    ratio = None
    for v in variants:
        base, _, _ = run_child(argv_for(v, folder, "tiny_", args.memory_limit))
        peak, secs, out = run_child(argv_for(v, folder, "", args.memory_limit))
        ratio = (peak - base) / brain
        print(f"{v}: peak RSS {peak / 2 ** 30:.2f} GiB for {brain / 2 ** 30:.2f} GiB of brain data "
              f"({peak / brain:.2f} x in total); idle baseline (same command on a tiny data set) "
              f"{base / 2 ** 30:.2f} GiB; peak minus baseline {(peak - base) / 2 ** 30:.2f} GiB = {ratio:.2f} x "
              f"the brain data; {secs:.0f} s wall (shared machine)")
        for line in out.splitlines():
            if "memory estimate" in line or line.startswith("mean r") or "mean r =" in line:
                print("  " + line.strip())
    print(f"bench encode_memory: {ratio:.2f} x (goal <= 2 x; peak RSS minus the idle baseline, over the brain data)")


if __name__ == "__main__":
    main()
