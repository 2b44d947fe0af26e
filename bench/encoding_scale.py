#!/usr/bin/env python3
"""Benchmark: nested leave-one-run-out ridge at scale, Gram path vs himalaya ``RidgeCV``.

Speed (``--scale 1``, the default): 8 runs x 75 TRs (600 TRs), 500 features x 4 delays (2000
columns), 1000 targets, 11 alphas, nested leave-one-run-out (outer: each run held out; inner:
leave-one-run-out over the 7 training runs), at 1x and 4x (8 x 300 = 2400 TRs) the TRs per run.
At 1x the training runs have fewer TRs than features (kernel form), at 4x more (primal form).

- ``engine``: :func:`engine.encoding.gram.nested_ridge_gram_job` on runs given as ``.npy``
  files (streamed, staged on disk, predictions kept per target batch): the Gram path;
- ``himalaya``: ``himalaya.ridge.RidgeCV(alphas, cv=<inner LORO folds>, fit_intercept=False)``
  per outer fold on the same (delayed, z-scored) runs, predicting the held-out run.

Scores: the held-out r per target of every fold himalaya ran, and the alpha chosen; at 1x also
himalaya in float64 on fold 1 (its float32 default is off by up to ~5e-4 in r where the training
runs have far fewer TRs than features and small alphas are chosen; the Gram path is float64).

Memory (the "memory pair", after the speed cases; ``--memory-only`` runs it alone): the engine on
8 runs x 300 TRs (1x, 2400 TRs) and 32 runs x 300 TRs (4x, 9600 TRs), 2000 delayed features, 1000
targets: the TRs grow by runs, as a whole subject's do (300 runs of ~480 TRs), and the training
runs are longer than the features at both sizes (primal form, the regime of real data). Each
child reads every run (the pass that accumulates the Gram) and solves the first outer fold with
3 of the alphas (every outer fold is the same size, and the alphas are looped one at a time:
neither changes the peak; the 31 inner folds x 11 alphas of all 32 folds would take an hour
here). The goal line ``peak memory at 4x over 1x`` is that pair's ratio. The speed cases' own
ratio is printed too: there 1x is a kernel-form case (memory ~ n_train^2 < features^2), so it
compares two forms rather than measuring growth with the TRs.

Each method runs in its own subprocess; peak memory is the process's ``ru_maxrss``. himalaya
takes minutes per outer fold here (an SVD per inner fold), so by default it is timed on
``--himalaya-folds 1`` outer fold(s) and its time for all 8 folds is that time x 8 / k (every
outer fold is the same-sized problem); its scores are compared on those folds.
``--himalaya-folds all`` times every fold. This machine has 2 cores shared with other workers:
timings include contention.

``--extrapolate`` prints the time and memory of a whole-subject fit (150 000 TRs x 4000 features
x 1000 parcels, 300 runs of 500 TRs) from the measured points (and from FLOP counts on a GPU).
``--backend torch_cuda --himalaya-backend torch_cuda`` runs both on a GPU (bench/device_check.sh).
The last line is ``bench encoding_scale: <speed-up> x himalaya nested LORO (goal >= 5)``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ALPHAS = np.logspace(-2, 8, 11)
DELAYS = (1, 2, 3, 4)


def sizes(scale: float, tr_factor: int):
    n_runs = max(8, int(round(8 * scale)))
    n_trs = int(round(75 * tr_factor * max(scale, 0.05)))
    n_feat = 500
    n_targets = 1000
    return n_runs, n_trs, n_feat, n_targets


#: The memory pair: runs of MEM_TRS TRs, MEM_RUNS runs at 1x and 4 x MEM_RUNS at 4x (the TRs grow by
#: runs, as a whole subject's do), training runs longer than the 2000 delayed features: the primal
#: (Gram) form at both sizes, the regime of real data.
MEM_RUNS, MEM_TRS = 8, 300


def make_data(folder: Path, n_runs: int, n_trs: int, n_feat: int, n_targets: int, seed: int = 0) -> None:
    """Prepared (delayed, z-scored per run) runs as .npy files; targets with SNR over two decades."""
    from engine.encoding import preprocess as pp

    rng = np.random.default_rng(seed)
    p = n_feat * len(DELAYS)
    W = (rng.standard_normal((p, n_targets)) / np.sqrt(p)).astype(np.float32)
    snr = np.logspace(-1.5, 0.5, n_targets).astype(np.float32)
    mixing = rng.standard_normal((n_feat, n_feat)).astype(np.float32) / np.sqrt(n_feat)
    for i in range(n_runs):
        latent = rng.standard_normal((n_trs, n_feat)).astype(np.float32)
        x = latent @ mixing * np.logspace(0, -1, n_feat).astype(np.float32)
        xd = pp.delay_runs(pp.zscore_runs([x]), DELAYS)[0]
        y = (xd @ W) * snr + rng.standard_normal((n_trs, n_targets)).astype(np.float32)
        np.save(folder / f"x_{i:03d}.npy", xd)
        np.save(folder / f"y_{i:03d}.npy", pp.zscore_runs([y])[0])


def run_child(method: str, folder: Path, n_runs: int, folds: list, backend: str) -> dict:
    import warnings

    warnings.simplefilter("ignore")
    X = [str(folder / f"x_{i:03d}.npy") for i in range(n_runs)]
    Y = [str(folder / f"y_{i:03d}.npy") for i in range(n_runs)]
    from engine.encoding.results import pearson_r

    scores = {}
    if method in ("engine", "engine_mem"):
        from engine.encoding.gram import RunPlan, nested_ridge_gram_job
        from engine.jobs import run_sync

        outer = range(n_runs) if method == "engine" else folds     # engine_mem: these outer folds only
        plan = RunPlan(test_runs=[[t] for t in outer],
                       train_runs=[[r for r in range(n_runs) if r != t] for t in outer],
                       inner=[[[r] for r in range(n_runs) if r != t] for t in outer])
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        # engine_mem: 3 of the alphas (they are looped, one at a time: the memory does not depend on them)
        out = run_sync(nested_ridge_gram_job(X, Y, ALPHAS if method == "engine" else ALPHAS[::5], plan, backend=backend, stage_in_memory=False,
                                             keep_predictions=False, scratch_dir=str(folder),
                                             on_batch=lambda res: scores.setdefault(res.fold, []).append(res)))
        if backend == "torch_cuda":
            import torch

            torch.cuda.synchronize()
        wall = time.perf_counter() - t0
        fold_r, fold_alpha = {}, {}
        for f, parts in scores.items():
            n_t = sum(p.cols.stop - p.cols.start for p in parts)
            r, a = np.zeros(n_t), np.zeros(n_t)
            for p in parts:
                r[p.cols] = pearson_r(p.measured[0], p.predictions[0])
                a[p.cols] = (ALPHAS if method == "engine" else ALPHAS[::5])[p.best_index]
            fold_r[f], fold_alpha[f] = r, a
        n_folds_timed = len(plan.test_runs)
        extra = dict(estimate_mb=out["memory_bytes"] / 2 ** 20, batch=out["n_targets_batch"])
    else:
        from himalaya.backend import set_backend
        from himalaya.ridge import RidgeCV

        bk = set_backend(backend)
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        dtype = np.float64 if method == "himalaya64" else np.float32
        xs = [np.load(p).astype(dtype) for p in X]
        ys = [np.load(p).astype(dtype) for p in Y]
        t0 = time.perf_counter()
        fold_r, fold_alpha = {}, {}
        for t in folds:
            train = [r for r in range(n_runs) if r != t]
            starts = np.cumsum([0] + [len(ys[r]) for r in train])
            cv = [(np.setdiff1d(np.arange(starts[-1]), np.arange(starts[j], starts[j + 1])),
                   np.arange(starts[j], starts[j + 1])) for j in range(len(train))]
            model = RidgeCV(alphas=ALPHAS, cv=cv, fit_intercept=False, solver_params=dict(warn=False)).fit(
                np.concatenate([xs[r] for r in train]), np.concatenate([ys[r] for r in train]))
            fold_r[t] = pearson_r(ys[t], np.asarray(bk.to_numpy(model.predict(xs[t]))))
            fold_alpha[t] = np.asarray(bk.to_numpy(model.best_alphas_), dtype=np.float64)
        wall = time.perf_counter() - t0
        n_folds_timed = len(folds)
        extra = {}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return dict(wall_s=wall, n_folds_timed=n_folds_timed, peak_mb=peak / 1024, base_mb=rss0 / 1024,
                fold_r={int(k): v.tolist() for k, v in fold_r.items()},
                fold_alpha={int(k): v.tolist() for k, v in fold_alpha.items()}, **extra)


def spawn(method, folder, n_runs, folds, backend) -> dict:
    cmd = [sys.executable, __file__, "--_child", method, "--_data", str(folder), "--_runs", str(n_runs),
           "--_folds", ",".join(map(str, folds)), "--_backend", backend]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{method} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def flops_nested_gram(n_runs, n_trs, p, t, n_alphas=11):
    """Flops (float64) of gram.py's nested LORO loops (inner folds = single runs).

    Primal form when a fold's training TRs outnumber the features, else the kernel form.
    """
    n_train = (n_runs - 1) * n_trs
    inner = (n_runs - 1) * n_alphas * (2 * n_trs * n_trs * t + n_trs ** 3 / 3)   # Cholesky + solves
    if n_train >= p:
        per_fold = (9 * p ** 3                               # eigendecomposition of the downdated Gram
                    + 2 * n_train * p ** 2                   # Q = X_v V for every inner fold
                    + 2 * p * p * t                          # Z = V^T B
                    + n_alphas * (2 * n_train * p * t        # residuals Q D Z
                                  + 2 * n_train * n_trs * p) # H = Q D Q^T
                    + inner + 2 * n_trs * p * (p + t))       # test run
        return n_runs * per_fold + 2 * n_runs * n_trs * p * (p + t)   # + the Gram pass
    per_fold = (2 * n_train ** 2 * p + 9 * n_train ** 3      # kernel and its eigendecomposition
                + 2 * n_trs * n_train * (p + n_train)        # test rows of the kernel
                + 2 * n_train ** 2 * t                       # Z = U^T Y
                + n_alphas * (2 * n_train * n_train * t + 2 * n_train * n_trs * n_train)
                + inner)
    return n_runs * per_fold + 2 * n_runs * n_trs * p * (p + t)


def extrapolate(points: list) -> None:
    """Time and memory of the whole-subject fit from measured points (engine, this machine)."""
    target = dict(n_runs=300, n_trs=500, p=4000, t=1000)
    print("extrapolation to a whole subject: 300 runs x 500 TRs = 150 000 TRs, 4000 features, "
          "1000 parcels, 11 alphas, nested leave-one-run-out")
    f_target = flops_nested_gram(target["n_runs"], target["n_trs"], target["p"], target["t"])
    rates = []
    for pt in points:
        f = flops_nested_gram(pt["n_runs"], pt["n_trs"], pt["p"], pt["t"])
        rates.append(f / pt["wall_s"])
        print(f"  measured: {pt['n_runs']} runs x {pt['n_trs']} TRs, p={pt['p']}, t={pt['t']}: "
              f"{pt['wall_s']:.1f} s for {f / 1e12:.2f} TFLOP (float64) = {f / pt['wall_s'] / 1e9:.1f} GFLOP/s, "
              f"peak {pt['peak_mb']:.0f} MB")
    rate = max(rates) if rates else 20e9
    print(f"  whole subject: {f_target / 1e15:.2f} PFLOP (float64, model of gram.py's loops)")
    print(f"  this machine (best measured rate {rate / 1e9:.1f} GFLOP/s): {f_target / rate / 3600:.1f} h")
    a = np.random.default_rng(0).standard_normal((2000, 2000))
    b = np.random.default_rng(1).standard_normal((2000, 1000))
    a @ b
    t0 = time.perf_counter()
    a @ b
    gemm = 2 * 2000 * 2000 * 1000 / (time.perf_counter() - t0)
    print(f"  this machine at its float64 GEMM rate now ({gemm / 1e9:.1f} GFLOP/s, the loops' ceiling): "
          f"{f_target / gemm / 3600:.1f} h")
    for name, rate_gpu in (("one H200, float64 GEMMs on tensor cores (~67 TFLOP/s peak, 70%)", 67e12 * 0.7),
                           ("one H200, tf32/fp32 (~60 TFLOP/s peak, 70%; float64 kept for the small "
                            "systems)", 60e12 * 0.7),
                           ("one H200, bf16 (790 TFLOP/s peak, 50%) -- not float32-exact, a bound only",
                            790e12 * 0.5)):
        print(f"  {name}: {f_target / rate_gpu / 60:.1f} min")
    p, t, n = target["p"], target["t"], target["n_trs"]
    mem = (8 * p * p * 4 + 8 * p * t * 2 + 8 * (3 * n * p + 2 * n * n + 4 * n * t) + 4 * n * (p + t) * 3)
    print(f"  peak memory (features^2 float64 x4, one target batch of 1000, one run): {mem / 2 ** 30:.2f} GiB "
          f"(independent of the number of runs; the prepared runs stream from disk: "
          f"{4 * 150000 * (p + t) / 2 ** 30:.1f} GiB of scratch)")
    print("  (the current engine, ridge_cv per outer fold, takes one eigendecomposition per inner fold: "
          f"300 x 299 = 89 700 eigendecompositions of 4000 x 4000 ~ {89700 * 9 * 4000 ** 3 / 1e15:.0f} PFLOP "
          "on top, and holds the concatenated runs several times: ~" 
          f"{3 * 4 * 150000 * (p + t) / 2 ** 30:.0f} GiB)")


def memory_pair(backend: str) -> float:
    """Peak memory of the engine at MEM_RUNS x MEM_TRS TRs (1x) and 4 x MEM_RUNS x MEM_TRS (4x),
    primal form at both; the reading pass over every run and the first outer fold (each outer
    fold is the same size: its peak is the fit's). Prints the goal line's ratio."""
    peaks = {}
    for factor in (1, 4):
        n_runs = MEM_RUNS * factor
        with tempfile.TemporaryDirectory(prefix="bench-scale-mem-") as tmp:
            folder = Path(tmp)
            make_data(folder, n_runs, MEM_TRS, 500, 1000, seed=1)
            eng = spawn("engine_mem", folder, n_runs, [0], backend)
        peaks[factor] = eng
        print(f"memory pair {factor}x: {n_runs} runs x {MEM_TRS} TRs = {n_runs * MEM_TRS} TRs, 2000 delayed features, "
              f"1000 targets (primal form): engine peak RSS {eng['peak_mb']:.0f} MB ({eng['base_mb']:.0f} MB "
              f"of imports; estimate printed before the fit {eng['estimate_mb']:.0f} MB), target batch "
              f"{eng['batch']}; reading pass + 1 outer fold in {eng['wall_s']:.1f} s", flush=True)
    ratio = peaks[4]["peak_mb"] / peaks[1]["peak_mb"]
    print(f"peak memory at 4x over 1x: engine {ratio:.2f} (goal <= 1.3; the TRs grew 4x by runs, "
          f"{MEM_RUNS} -> {4 * MEM_RUNS} runs of {MEM_TRS} TRs)", flush=True)
    return ratio


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0, help="size of the case (runs and TRs per run)")
    ap.add_argument("--himalaya-folds", default="1", help="outer folds himalaya is timed on (int or 'all')")
    ap.add_argument("--backend", default="numpy", help="engine backend (numpy, torch, torch_cuda)")
    ap.add_argument("--himalaya-backend", default="numpy", help="himalaya backend (numpy, torch, torch_cuda)")
    ap.add_argument("--factors", default="1,4", help="TR multipliers to run (default 1,4)")
    ap.add_argument("--extrapolate", action="store_true", help="also print the whole-subject extrapolation")
    ap.add_argument("--no-memory-pair", action="store_true", help="skip the memory pair (8 and 32 runs of 300 TRs)")
    ap.add_argument("--memory-only", action="store_true", help="only the memory pair")
    ap.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_data", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_runs", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--_folds", default="", help=argparse.SUPPRESS)
    ap.add_argument("--_backend", default="numpy", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._child:
        folds = [int(f) for f in args._folds.split(",") if f]
        print(json.dumps(run_child(args._child, Path(args._data), args._runs, folds, args._backend)))
        return 0

    if args.memory_only:
        memory_pair(args.backend)
        return 0
    factors = [int(f) for f in args.factors.split(",")]
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (shared machine: timings include "
          f"contention); engine backend {args.backend}, himalaya backend {args.himalaya_backend}")
    results = {}
    points = []
    for factor in factors:
        n_runs, n_trs, n_feat, n_targets = sizes(args.scale, factor)
        p = n_feat * len(DELAYS)
        hf = list(range(n_runs)) if args.himalaya_folds == "all" else \
            list(range(min(n_runs, int(args.himalaya_folds))))
        with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
            folder = Path(tmp)
            make_data(folder, n_runs, n_trs, n_feat, n_targets)
            print(f"{factor}x: {n_runs} runs x {n_trs} TRs = {n_runs * n_trs} TRs, {p} delayed features, "
                  f"{n_targets} targets, {ALPHAS.size} alphas, nested LORO; data "
                  f"{4 * n_runs * n_trs * (p + n_targets) / 2 ** 20:.0f} MB on disk", flush=True)
            eng = spawn("engine", folder, n_runs, [], args.backend)
            print(f"  engine (Gram path): {eng['wall_s']:.1f} s for {n_runs} outer folds, peak RSS "
                  f"{eng['peak_mb']:.0f} MB (estimate printed before the fit: {eng['estimate_mb']:.0f} MB "
                  f"+ {eng['base_mb']:.0f} MB of imports), target batch {eng['batch']}", flush=True)
            him = spawn("himalaya", folder, n_runs, hf, args.himalaya_backend)
            him_all = him["wall_s"] * n_runs / him["n_folds_timed"]
            print(f"  himalaya RidgeCV: {him['wall_s']:.1f} s for {him['n_folds_timed']} outer fold(s) -> "
                  f"{him_all:.1f} s for {n_runs}; peak RSS {him['peak_mb']:.0f} MB", flush=True)
            d_all, d_same, same = [], [], []
            for f in map(str, hf):
                d = np.abs(np.asarray(him["fold_r"][f]) - np.asarray(eng["fold_r"][f]))
                eq = np.isclose(np.asarray(him["fold_alpha"][f]), np.asarray(eng["fold_alpha"][f]), rtol=1e-4)
                d_all.append(d.max())
                d_same.append(d[eq].max() if eq.any() else 0.0)
                same.append(eq.mean())
            dr = max(d_same)
            print(f"  held-out r per fold, engine vs himalaya on the same folds: same alpha for "
                  f"{100 * np.mean(same):.1f}% of targets, max |dr| = {dr:.2e} where the alpha is the same "
                  f"(goal < 1e-4), {max(d_all):.2e} over all targets (himalaya is float32)", flush=True)
            if factor == min(factors):
                h64 = spawn("himalaya64", folder, n_runs, [0], args.himalaya_backend)
                d = np.abs(np.asarray(h64["fold_r"]["0"]) - np.asarray(eng["fold_r"]["0"]))
                eq = np.isclose(np.asarray(h64["fold_alpha"]["0"]), np.asarray(eng["fold_alpha"]["0"]), rtol=1e-4)
                print(f"  engine vs himalaya RidgeCV in float64 (fold 1): same alpha for {100 * eq.mean():.1f}% of "
                      f"targets, max |dr| = {d.max():.2e} (goal < 1e-4)", flush=True)
            results[factor] = dict(engine=eng, himalaya=him, himalaya_all_s=him_all, dr=dr)
            points.append(dict(n_runs=n_runs, n_trs=n_trs, p=p, t=n_targets, wall_s=eng["wall_s"],
                               peak_mb=eng["peak_mb"]))
    lo, hi = min(factors), max(factors)
    if hi != lo:
        m_eng = results[hi]["engine"]["peak_mb"] / results[lo]["engine"]["peak_mb"]
        m_him = results[hi]["himalaya"]["peak_mb"] / results[lo]["himalaya"]["peak_mb"]
        t_eng = results[hi]["engine"]["wall_s"] / results[lo]["engine"]["wall_s"]
        print(f"engine time at {hi}x over {lo}x: {t_eng:.2f} (the TRs grew {hi / lo:.0f}x)")
        print(f"  peak memory of these cases at {hi}x over {lo}x: engine {m_eng:.2f}, himalaya {m_him:.2f} "
              "(where a case's training runs have fewer TRs than features the engine takes the kernel form, "
              "smaller than features^2: that ratio compares two forms, see the memory pair below)")
    if args.no_memory_pair or "cuda" in str(args.backend):
        print("memory pair skipped (--no-memory-pair, or a GPU backend: the pair measures host memory)")
    else:
        memory_pair(args.backend)
    if args.extrapolate:
        extrapolate(points)
    speed = {f: results[f]["himalaya_all_s"] / results[f]["engine"]["wall_s"] for f in factors}
    for f in factors:
        print(f"speed-up at {f}x: {speed[f]:.2f}")
    print(f"bench encoding_scale: {speed[hi]:.2f} x himalaya nested LORO (goal >= 5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
