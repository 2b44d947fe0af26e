"""``encode`` in bounded memory: large brain data takes the Gram path, which reads the runs per
target batch and writes predictions and measured data into the result file per batch; the
scores are those of the direct path, and the peak memory stays within twice the brain data."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from engine.encoding.fit import fit_encoding
from engine.encoding.options import FitOptions
from engine.encoding.results import EncodingResult
from engine.jobs import run_sync
from engine.pipeline import fit as pfit
from engine.pipeline.data import BrainData

ROOT = Path(__file__).resolve().parents[2]


def _runs(n_runs, n_trs, n_feat, n_targets, seed=0):
    """Features and brain runs; the first tenth of the targets follow feature 0 two TRs later."""
    rng = np.random.default_rng(seed)
    X = [rng.standard_normal((n_trs, n_feat)).astype(np.float32) for _ in range(n_runs)]
    Y = []
    for x in X:
        y = rng.standard_normal((n_trs, n_targets)).astype(np.float32)
        y[2:, : n_targets // 10] += 1.5 * x[:-2, :1]
        Y.append(y)
    return X, Y


def test_gram_route_in_batches_written_to_file_equals_direct_path(tmp_path, monkeypatch):
    X, Y = _runs(4, 60, 8, 300)
    names = [f"run-{i}" for i in range(4)]
    brain = BrainData(runs=Y, names=names, stimuli=names, subjects=["sub-01"] * 4, tr_s=2.0)
    opts = FitOptions(delays=[1, 2, 3], alphas=[1.0, 10.0, 100.0, 1e3, 1e4])
    monkeypatch.setattr(pfit, "GRAM_MIN_BRAIN_BYTES", 1)            # this brain data counts as large
    monkeypatch.setattr(pfit, "GRAM_MEMORY_FLOOR_BYTES", 0)
    monkeypatch.setattr(pfit, "GRAM_MEMORY_PER_BRAIN", 0.0)         # the smallest target: batches of MIN_BATCH
    assert pfit.use_gram({"f": X}, Y, opts, 2.0)
    out = tmp_path / "res.h5"
    res = run_sync(pfit.fit_job({"f": X}, brain, opts, out_path=out))
    assert res.provenance["solver"] == "gram" and res.provenance["result_path"] == str(out)
    assert res.predictions == []                                     # nothing held in memory
    assert res.provenance["n_targets_batch"] < 300                   # several target batches
    ref = fit_encoding({"f": X}, Y, options=opts, tr_s=2.0, run_names=names, stimulus_ids=names,
                       subjects=["sub-01"] * 4)
    loaded = EncodingResult.load(out)
    np.testing.assert_allclose(loaded.scores, ref.scores, atol=2e-5)
    np.testing.assert_allclose(res.scores, ref.scores, atol=2e-5)
    np.testing.assert_array_equal(loaded.alphas_per_fold, ref.alphas_per_fold)
    scale = max(np.abs(p).max() for p in ref.predictions)
    for a, b in zip(loaded.predictions, ref.predictions):
        np.testing.assert_allclose(a / scale, b / scale, atol=2e-5)
    for a, b in zip(loaded.measured, ref.measured):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert ref.scores[:30].min() > 0.3 and abs(ref.scores[30:].mean()) < 0.05   # planted truth


CHILD = textwrap.dedent("""
    import json, sys, warnings
    sys.path.insert(0, sys.argv[2])
    warnings.simplefilter("ignore")
    import numpy as np
    import main as entry
    from engine.encoding.results import EncodingResult
    from engine.jobs import run_sync
    from engine.pipeline import fit as pfit
    from engine.pipeline.data import BrainData
    from engine.encoding.options import FitOptions
    folder, n_runs = sys.argv[1], int(sys.argv[3])
    # this brain data (tens of MB) stands for a large one: the thresholds scaled down with it
    pfit.GRAM_MIN_BRAIN_BYTES = 1 << 20
    pfit.GRAM_MEMORY_FLOOR_BYTES = 1 << 20

    def cli(prefix):
        argv = ["encode", "--features", *[f"{folder}/{prefix}f{i}.npy" for i in range(n_runs)],
                "--brain", *[f"{folder}/{prefix}b{i}.npy" for i in range(n_runs)], "--delays", "1", "2",
                "--alphas", "1,100,10000", "--out", f"{folder}/{prefix}out.h5", "--no-progress"]
        assert entry.main(argv) == 0

    import threading, time

    def rss_mb():
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * 4096 / 2 ** 20

    class Peak:
        # resident memory sampled every millisecond: ru_maxrss would hide a growth under the
        # imports' own peak
        def __enter__(self):
            self.start, self.peak, self.stop = rss_mb(), 0.0, False
            self.thread = threading.Thread(target=self.poll, daemon=True)
            self.thread.start()
            return self

        def poll(self):
            while not self.stop:
                self.peak = max(self.peak, rss_mb())
                time.sleep(0.001)

        def __exit__(self, *exc):
            self.stop = True
            self.thread.join()
            self.growth = self.peak - self.start

    cli("tiny_")                      # warm-up: imports, BLAS and HDF5 buffers are not the fit's growth
    # the pipeline on memory-mapped runs, result written per target batch
    Y = [np.load(f"{folder}/b{i}.npy", mmap_mode="r") for i in range(n_runs)]
    X = [np.load(f"{folder}/f{i}.npy") for i in range(n_runs)]
    names = [f"run-{i}" for i in range(n_runs)]
    brain = BrainData(runs=Y, names=names, stimuli=names, subjects=["sub-01"] * n_runs, tr_s=None,
                      stimuli_known=False)   # as the CLI reads .npy runs: no TR, stimuli unknown
    with Peak() as pipe:
        res = run_sync(pfit.fit_job({"f": X}, brain, FitOptions(delays=[1, 2], alphas=[1.0, 100.0, 1e4]),
                                    out_path=f"{folder}/pipe.h5"))
    with Peak() as run:
        cli("")                        # what a user runs
    out = EncodingResult.load(f"{folder}/out.h5")
    print(json.dumps(dict(pipe_mb=pipe.growth, cli_mb=run.growth,
                          batch=res.provenance["n_targets_batch"], solver=res.provenance["solver"],
                          cli_solver=out.provenance.get("solver"), pipe_scores=res.scores.tolist(),
                          cli_scores=out.scores.tolist(), n_pred=sum(int(np.isfinite(p).all()) for p in out.predictions))))
""")


def _write(folder: Path, prefix: str, n_runs: int, n_trs: int, n_feat: int, n_targets: int) -> float:
    X, Y = _runs(n_runs, n_trs, n_feat, n_targets, seed=1)
    for i in range(n_runs):
        np.save(folder / f"{prefix}f{i}.npy", X[i])
        np.save(folder / f"{prefix}b{i}.npy", Y[i])
    return n_runs * n_trs * n_targets * 4 / 2 ** 20


def test_encode_peak_memory_within_twice_the_brain_data(tmp_path):
    brain_mb = _write(tmp_path, "", 4, 100, 10, 16_000)              # 24 MB of brain data
    _write(tmp_path, "tiny_", 4, 30, 10, 50)
    proc = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path), str(ROOT), "4"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["solver"] == "gram" and out["cli_solver"] == "gram"
    assert out["batch"] < 16_000                                      # several target batches
    # the direct path holds the brain data about five times (measured, z-scored, predicted...);
    # here the CLI holds it once (read whole) and the fit a batch of it
    assert out["pipe_mb"] < 2.0 * brain_mb, out
    assert out["cli_mb"] < 2.0 * brain_mb, out
    assert out["n_pred"] == 4
    np.testing.assert_allclose(out["cli_scores"], out["pipe_scores"], atol=1e-6)
    scores = np.asarray(out["cli_scores"])
    assert scores[:1600].min() > 0.3 and abs(scores[1600:].mean()) < 0.02   # planted truth found


def test_not_enough_memory_is_a_clear_error_not_a_fallback(tmp_path, monkeypatch):
    from engine.encoding import gram
    from engine.errors import ConfigError

    X, Y = _runs(4, 40, 6, 50)
    names = [f"run-{i}" for i in range(4)]
    brain = BrainData(runs=Y, names=names, stimuli=names, subjects=["sub-01"] * 4, tr_s=2.0)
    monkeypatch.setattr(pfit, "GRAM_MIN_BRAIN_BYTES", 1)
    monkeypatch.setattr(gram, "available_memory", lambda backend="numpy": 10_000)   # 7 kB for the fit
    out = tmp_path / "res.h5"
    with pytest.raises(ConfigError, match=r"memory for the Gram ridge fit.*at most 6\.8 KB.*needed for a single target"):
        run_sync(pfit.fit_job({"f": X}, brain, FitOptions(delays=[1, 2]), out_path=out))
    assert not out.exists() and not list(tmp_path.iterdir())         # nothing half-written
