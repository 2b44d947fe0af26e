"""``stats RESULT.h5``: permutations refitting the whole CV, p and q per target and region written
into the result; planted targets significant, noise targets not; impossible tests said so."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

import main
from engine.encoding import preprocess as pp
from engine.encoding.options import FitOptions
from engine.encoding.permutation import permutation_test
from engine.encoding.results import EncodingResult

ROOT = Path(__file__).resolve().parents[2]
N_RUNS, N_TRS, N_TARGETS = 3, 60, 8
DRIVEN = np.arange(4)                 # targets 0-3 follow the features, 4-7 are noise


def _encode(tmp_path, capsys):
    rng = np.random.default_rng(4)
    X = [rng.standard_normal((N_TRS, 3)).astype(np.float32) for _ in range(N_RUNS)]
    W = np.zeros((3, N_TARGETS))
    W[:, DRIVEN] = 1.0
    Y = [(pp.delay_runs([x], [1])[0] @ W + rng.standard_normal((N_TRS, N_TARGETS))).astype(np.float32) for x in X]
    feats, brain = [], []
    for i, (x, y) in enumerate(zip(X, Y)):
        np.save(tmp_path / f"f{i}.npy", x)
        np.save(tmp_path / f"r{i}.npy", y)
        feats.append(str(tmp_path / f"f{i}.npy"))
        brain.append(str(tmp_path / f"r{i}.npy"))
    out = tmp_path / "enc.h5"
    assert main.main(["encode", "--features", *feats, "--brain", *brain, "--tr", "2", "--delays", "1", "2",
                      "--alphas", "0.1:1e3:5", "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    return out, X, Y


def test_stats_writes_p_and_q_and_finds_the_planted_targets(tmp_path, capsys):
    out, X, Y = _encode(tmp_path, capsys)
    before = EncodingResult.load(out)
    pd.DataFrame({"label": [1, 1, 1, 1, 2, 2, 2, 2], "name": ["driven"] * 4 + ["noise"] * 4}).to_csv(
        tmp_path / "labels.tsv", sep="\t", index=False)
    rc = main.main(["stats", str(out), "--n-perm", "39", "--block", "10", "--labels", str(tmp_path / "labels.tsv"),
                    "--out", str(tmp_path / "regions.tsv"), "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    after = EncodingResult.load(out)
    np.testing.assert_array_equal(after.scores, before.scores)             # the score is kept, p and q added
    assert (after.q_values[DRIVEN] <= 0.05).all() and (after.p_values[DRIVEN] == 1 / 40).all()
    assert (after.q_values[4:] > 0.05).all()
    assert f"targets with q <= 0.05: 4 of {N_TARGETS}" in text
    # the same null as the engine's permutation test with the result's own settings and CV
    ref = permutation_test({"features": X}, Y, n_perm=39, block_trs=10, seed=0, observed=before,
                           options=FitOptions.from_dict(before.provenance["fit_options"]).replace(cv="loro"),
                           tr_s=2.0, subjects=["sub-01"] * N_RUNS)
    np.testing.assert_allclose(after.p_values, ref.p_values)
    regions = pd.read_csv(tmp_path / "regions.tsv", sep="\t").set_index("region")
    assert regions.loc["driven", "q_region"] <= 0.05 < regions.loc["noise", "q_region"]
    assert abs(regions.loc["driven", "mean_score"] - np.mean(before.scores[DRIVEN])) < 1e-5


def test_stats_says_when_significance_is_out_of_reach(tmp_path, capsys):
    out, _, _ = _encode(tmp_path, capsys)
    rc = main.main(["stats", str(out), "--n-perm", "9", "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "cannot be reached by construction" in text and "--n-perm >= 20" in text
    assert EncodingResult.load(out).provenance["significance"]["reachable"] is False
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "stats", str(tmp_path / "missing.h5")],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2 and "no file at" in proc.stderr and "Traceback" not in proc.stderr
