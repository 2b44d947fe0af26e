"""``main.py partition``: files in, the numbers of variance_partition / residual_encoding out."""

import subprocess
import sys
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

import main
from engine.cli.partition import read_partition
from engine.encoding import preprocess as pp
from engine.encoding.partition import residual_encoding, variance_partition

ROOT = Path(__file__).resolve().parents[2]
N_RUNS, N_TRS, N_TARGETS = 3, 60, 30
ONLY_A = slice(0, 15)      # targets driven by space A alone
BOTH = slice(15, 30)       # targets driven by A and B
FIT = dict(delays=(1,), alphas=np.logspace(-1, 4, 6))
FIT_ARGS = ["--delays", "1", "--alphas", "0.1:1e4:6", "--no-progress"]


def _planted(seed=0):
    rng = np.random.default_rng(seed)
    A = [rng.standard_normal((N_TRS, 3)).astype(np.float32) for _ in range(N_RUNS)]
    B = [rng.standard_normal((N_TRS, 3)).astype(np.float32) for _ in range(N_RUNS)]
    WA = rng.standard_normal((3, N_TARGETS))
    WB = rng.standard_normal((3, N_TARGETS))
    WB[:, ONLY_A] = 0.0
    Y = [(pp.delay_runs([a], [1])[0] @ WA + pp.delay_runs([b], [1])[0] @ WB
          + 0.5 * rng.standard_normal((N_TRS, N_TARGETS))).astype(np.float32) for a, b in zip(A, B)]
    return A, B, Y


def _save_runs(tmp_path, prefix, runs):
    paths = []
    for i, r in enumerate(runs):
        p = tmp_path / f"{prefix}{i}.npy"
        np.save(p, r)
        paths.append(str(p))
    return paths


def _fit_quiet(fn, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*a, **k)


def test_partition_spaces_match_variance_partition(tmp_path, capsys):
    A, B, Y = _planted()
    fa, fb, brain = _save_runs(tmp_path, "A", A), _save_runs(tmp_path, "B", B), _save_runs(tmp_path, "run", Y)
    out = tmp_path / "part.h5"
    rc = main.main(["partition", "--space", "vision=" + ",".join(fa), "--space", "language=" + ",".join(fb),
                    "--brain", *brain, *FIT_ARGS, "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    for line in ("unique:vision", "unique:language", "shared:vision&language", "total (vision+language)"):
        assert line in text
    assert "% of 30 targets" in text and "median =" in text

    got = read_partition(out)
    assert got["spaces"] == ["vision", "language"]
    assert set(got["regions"]) == {"unique:vision", "unique:language", "shared:vision&language"}
    with h5py.File(out, "r") as h:     # one dataset per region of the Venn diagram, at the top level
        assert h["unique:vision"].shape == (N_TARGETS,)
        assert "shared:vision&language" in h
    ref = _fit_quiet(variance_partition, {"vision": A, "language": B}, Y, run_names=["run0", "run1", "run2"],
                     **FIT)
    np.testing.assert_array_equal(got["regions"]["unique:vision"], ref.regions["unique vision"])
    np.testing.assert_array_equal(got["regions"]["unique:language"], ref.regions["unique language"])
    np.testing.assert_array_equal(got["regions"]["shared:vision&language"], ref.regions["shared vision&language"])
    np.testing.assert_array_equal(got["total"], ref.total)
    for key in ("vision", "language", "vision+language"):
        np.testing.assert_array_equal(got["r2"][key], ref.r2[key])

    # planted truth: targets driven by A alone are explained uniquely by A
    total, ua, ub = got["total"], got["regions"]["unique:vision"], got["regions"]["unique:language"]
    shared = got["regions"]["shared:vision&language"]
    assert total[ONLY_A].min() > 0.5
    np.testing.assert_allclose(ua[ONLY_A], total[ONLY_A], atol=0.05)
    assert np.abs(ub[ONLY_A]).max() < 0.03 and np.abs(shared[ONLY_A]).max() < 0.05
    assert ub[BOTH].mean() > 0.1          # where B drives too, B has unique variance
    np.testing.assert_allclose(ua + ub + shared, total, atol=1e-9)   # the regions add up
    assert got["run_names"] == ["run0", "run1", "run2"]
    prov = got["provenance"]
    assert prov["delays_trs"] == [1] and len(prov["data"]["spaces"]["vision"]["sha256"]) == 3
    assert prov["residual"] is None


def test_partition_layers_three_spaces_and_residual(tmp_path, capsys):
    A, B, Y = _planted(1)
    J = [np.concatenate([a, b], axis=1) for a, b in zip(A, B)]     # joint = A and B, noise-free
    feats = []
    for i in range(N_RUNS):
        p = tmp_path / f"ep{i}.h5"
        with h5py.File(p, "w") as h:      # the layout `alignscope extract` writes
            h["features/A"] = A[i]
            h["features/B"] = B[i]
            h["features/joint"] = J[i]
        feats.append(str(p))
    brain = _save_runs(tmp_path, "run", Y)
    out = tmp_path / "part3.h5"
    rc = main.main(["partition", "--features", *feats, "--layer", "A", "--layer", "B", "--layer", "joint",
                    "--residual", "joint=A,B", "--brain", *brain, *FIT_ARGS, "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "residual: joint minus A+B" in text and "shared:A&B&joint" in text
    got = read_partition(out)
    assert len(got["regions"]) == 7 and len(got["r2"]) == 7
    np.testing.assert_allclose(sum(got["regions"].values()), got["total"], atol=1e-9)
    # everything joint explains, A and B explain too: no variance unique to joint
    assert np.abs(got["regions"]["unique:joint"]).max() < 0.03

    res = got["residual"]["joint"]
    assert res["space"] == "joint minus A+B"
    assert got["r2"]["joint"].min() > 0.3 and got["r2"]["joint"].mean() > 0.7   # the joint space predicts
    assert np.abs(res["r2"]).max() < 0.03                   # nothing beyond the unimodal spaces
    ref = _fit_quiet(residual_encoding, J, {"A": A, "B": B}, Y, joint_name="joint",
                     run_names=["run0", "run1", "run2"], **FIT)
    np.testing.assert_allclose(res["r2"], ref.r2, atol=1e-6)
    np.testing.assert_allclose(res["scores"], ref.scores, atol=1e-6)
    assert got["provenance"]["residual"]["unimodal"] == ["A", "B"]


def test_partition_residual_finds_joint_only_signal(tmp_path):
    """Where the joint space carries a signal the unimodal ones lack, the residual predicts it."""
    A, B, _ = _planted(2)
    rng = np.random.default_rng(5)
    extra = [rng.standard_normal((N_TRS, 2)).astype(np.float32) for _ in range(N_RUNS)]
    W = np.zeros((2, N_TARGETS))
    W[:, :10] = 1.0 + np.abs(rng.standard_normal((2, 10)))     # joint-only signal in targets 0-9
    Y = [(pp.delay_runs([e], [1])[0] @ W + 0.5 * rng.standard_normal((N_TRS, N_TARGETS))).astype(np.float32)
         for e in extra]
    J = [np.concatenate([a, e], axis=1) for a, e in zip(A, extra)]
    spaces = {n: _save_runs(tmp_path, n, r) for n, r in (("A", A), ("B", B), ("J", J))}
    out = tmp_path / "p.h5"
    rc = main.main(["partition", *[a for n, f in spaces.items() for a in ("--space", f"{n}=" + ",".join(f))],
                    "--residual", "J=A,B", "--brain", *_save_runs(tmp_path, "run", Y), *FIT_ARGS,
                    "--out", str(out)])
    assert rc == 0
    got = read_partition(out)
    r2 = got["residual"]["J"]["r2"]
    assert r2[:10].min() > 0.4 and np.abs(r2[10:]).max() < 0.05
    assert got["regions"]["unique:J"][:10].min() > 0.4


def _cli(*args):
    return subprocess.run([sys.executable, str(ROOT / "main.py"), "partition", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)


def test_partition_user_errors_without_traceback(tmp_path):
    A, B, Y = _planted()
    fa, fb, brain = _save_runs(tmp_path, "A", A), _save_runs(tmp_path, "B", B), _save_runs(tmp_path, "run", Y)
    out = str(tmp_path / "x.h5")
    cases = [
        (["--space", "vision=" + ",".join(fa), "--brain", *brain, "--out", out],
         "expected 2 or 3 feature spaces, found 1"),
        (["--space", "vision=" + ",".join(fa), "--space", "language=" + ",".join(fb[:2]), "--brain", *brain,
          "--out", out], "expected 3 (one per brain run), found 2"),
        (["--space", "vision=" + ",".join(fa), "--space", f"language={tmp_path / 'nope.npy'},{fb[1]},{fb[2]}",
          "--brain", *brain, "--out", out], "expected an existing file"),
    ]
    for args, message in cases:
        proc = _cli(*args, "--no-progress")
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr and message in proc.stderr, proc.stderr
    assert not Path(out).exists()
    # the same checks in-process: wrong residual spaces, mismatched TRs, malformed --space
    base = ["partition", "--space", "vision=" + ",".join(fa), "--space", "language=" + ",".join(fb),
            "--brain", *brain, "--out", out, "--no-progress"]
    assert main.main(base + ["--residual", "joint=vision"]) == 2
    assert main.main(["partition", "--space", "vision", "--space", "b=" + ",".join(fb), "--brain", *brain,
                      "--out", out]) == 2
    np.save(tmp_path / "short.npy", B[2][:50])
    assert main.main(["partition", "--space", "vision=" + ",".join(fa),
                      "--space", f"language={fb[0]},{fb[1]},{tmp_path / 'short.npy'}", "--brain", *brain,
                      "--out", out, "--no-progress"]) == 2
    assert not Path(out).exists()
