"""``main.py compare``: two EncodingResults in, the numbers of compare_models / region_comparison out."""

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import main
from engine.encoding.fit import fit_encoding
from engine.encoding.regions import region_comparison
from engine.encoding.results import EncodingResult
from engine.encoding.stats import compare_models

ROOT = Path(__file__).resolve().parents[2]
N_RUNS, N_TRS, N_TARGETS = 3, 60, 30
A_BETTER = np.arange(10)           # targets where model A holds a feature B lacks


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """A = shared + extra features, B = shared features only; the extra drives targets 0-9."""
    tmp = tmp_path_factory.mktemp("compare")
    rng = np.random.default_rng(1)
    X = [rng.standard_normal((N_TRS, 3)).astype(np.float32) for _ in range(N_RUNS)]
    C = [rng.standard_normal((N_TRS, 2)).astype(np.float32) for _ in range(N_RUNS)]
    WX = 0.5 * rng.standard_normal((3, N_TARGETS))
    WC = np.zeros((2, N_TARGETS))
    WC[:, A_BETTER] = 1.0 + np.abs(rng.standard_normal((2, A_BETTER.size)))
    Y = [(x @ WX + c @ WC + rng.standard_normal((N_TRS, N_TARGETS))).astype(np.float32) for x, c in zip(X, C)]
    kw = dict(delays=(0,), alphas=np.logspace(-1, 4, 6), run_names=["r0", "r1", "r2"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = fit_encoding({"x": X, "c": C}, Y, **kw)
        b = fit_encoding({"x": X}, Y, **kw)
    a.save(tmp / "a.h5")
    b.save(tmp / "b.h5")
    labels = np.repeat([1, 2, 3], 10)                     # region "early" = targets 0-9
    pd.DataFrame({"label": labels, "name": np.repeat(["early", "middle", "late"], 10)}).to_csv(
        tmp / "labels.tsv", sep="\t", index=False)
    return tmp, a, b, labels


def test_compare_targets_and_regions_planted(results, capsys):
    tmp, a, b, labels = results
    out, tout = tmp / "regions.tsv", tmp / "targets.tsv"
    rc = main.main(["compare", str(tmp / "a.h5"), str(tmp / "b.h5"), "--labels", str(tmp / "labels.tsv"),
                    "--n-perm", "300", "--n-boot", "200", "--block", "10", "--out", str(out),
                    "--targets-out", str(tout), "--no-progress", "--top", "3"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "regions where A beats B (1 with q <= 0.05" in text
    assert "regions where B beats A (0 with q <= 0.05" in text
    assert "A better in 10 targets, B better in 0" in text
    first = text.split("regions where A beats B")[1].splitlines()[1]
    assert first.strip().startswith("early") and "delta r = +" in first and first.rstrip().endswith("*")

    # the same numbers as calling the engine directly
    ref = compare_models(EncodingResult.load(tmp / "a.h5"), EncodingResult.load(tmp / "b.h5"), n_perm=300,
                         n_boot=200, block_trs=10, seed=0)
    targets = pd.read_csv(tout, sep="\t")
    np.testing.assert_allclose(targets["difference"], ref.difference, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(targets["q_value"], ref.q_values, rtol=1e-5)
    np.testing.assert_allclose(targets["ci_low"], ref.ci_low, rtol=1e-5, atol=1e-7)
    regions = pd.read_csv(out, sep="\t")
    ref_regions = region_comparison(ref, labels, {1: "early", 2: "middle", 3: "late"})
    assert list(regions["region"]) == ["early", "middle", "late"]
    np.testing.assert_allclose(regions["mean_difference"], ref_regions["mean_difference"], rtol=1e-5)
    np.testing.assert_allclose(regions["q_value"], ref_regions["q_value"], rtol=1e-5)

    # planted truth: A wins exactly on targets 0-9 (and in their region), nowhere else
    d, q = targets["difference"].to_numpy(), targets["q_value"].to_numpy()
    assert (d[A_BETTER] > 0.1).all() and (q[A_BETTER] < 0.05).all()
    assert (q[10:] > 0.05).all()
    assert (targets["ci_low"].to_numpy()[A_BETTER] > 0).all()
    early = regions.set_index("region").loc["early"]
    assert early["mean_difference"] > 0.1 and early["q_value"] < 0.05 and early["ci_low"] > 0
    assert (regions.set_index("region").loc[["middle", "late"], "q_value"] > 0.05).all()


def test_compare_bundled_atlas_on_fsaverage5(tmp_path, capsys):
    """--atlas maps vertices to parcels: A better only in the vertices of one Schaefer-100 parcel."""
    from engine.io.atlases import load_atlas

    atlas = load_atlas("schaefer100")
    n = atlas.labels.size                                  # 20484 fsaverage5 vertices
    rng = np.random.default_rng(3)
    n_trs = 200     # 2 runs x 20 blocks: the swap null (widened sqrt(2) for the LORO folds) reaches z ~ sqrt(40 / 2)
    measured = [rng.standard_normal((n_trs, n)).astype(np.float32) for _ in range(2)]
    target_parcel = 5
    in_parcel = atlas.labels == target_parcel
    noise_b = [rng.standard_normal((n_trs, n)).astype(np.float32) for _ in range(2)]
    noise_a = [np.where(in_parcel, 0.3, 1.0).astype(np.float32) * rng.standard_normal((n_trs, n)).astype(np.float32)
               for _ in range(2)]

    def result(noise, space):
        from engine.encoding.results import pearson_r

        preds = [m + e for m, e in zip(measured, noise)]
        # the saved score, as fit_encoding computes it for folds [[0], [1]]: the mean of each run's r
        scores = np.mean([pearson_r(m, p) for m, p in zip(measured, preds)], axis=0).astype(np.float32)
        return EncodingResult(scores=scores, alphas=np.ones(n), predictions=preds,
                              measured=measured, run_names=["r0", "r1"], space=space, folds=[[0], [1]])

    result(noise_a, "multimodal").save(tmp_path / "a.h5")
    result(noise_b, "unimodal").save(tmp_path / "b.h5")
    out = tmp_path / "t.tsv"
    rc = main.main(["compare", str(tmp_path / "a.h5"), str(tmp_path / "b.h5"), "--atlas", "schaefer100",
                    "--n-perm", "100", "--n-boot", "50", "--out", str(out), "--no-progress", "--top", "2"])
    assert rc == 0
    table = pd.read_csv(out, sep="\t")
    assert len(table) == 100
    best = table.sort_values("mean_difference", ascending=False).iloc[0]
    assert best["region"] == atlas.names[target_parcel - 1]
    assert best["mean_difference"] > 0.2 and best["ci_low"] > 0.15    # 0.96 vs 0.71 planted
    assert best["p_value"] == pytest.approx(1 / 101)       # beyond every one of the 100 block swaps
    assert best["n_targets"] == in_parcel.sum()
    others = table[table["region"] != best["region"]]
    assert others["mean_difference"].abs().max() < 0.05      # elsewhere the models are equally good
    text = capsys.readouterr().out
    first = text.split("regions where A beats B")[1].splitlines()[1]
    assert first.strip().startswith(atlas.names[target_parcel - 1])


def _cli(*args):
    return subprocess.run([sys.executable, str(ROOT / "main.py"), "compare", *args, "--no-progress"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_compare_user_errors_without_traceback(results, tmp_path):
    tmp, a, b, _ = results
    fewer = EncodingResult(scores=a.scores[:20], alphas=a.alphas[:20], predictions=[p[:, :20] for p in a.predictions],
                           measured=[m[:, :20] for m in a.measured], run_names=a.run_names, space="small",
                           folds=a.folds)
    fewer.save(tmp_path / "fewer.h5")
    np.save(tmp_path / "labels_short.npy", np.ones(7, dtype=np.int64))
    cases = [
        ([str(tmp / "a.h5"), str(tmp_path / "fewer.h5")], "expected 30 (as A (x+c)), found 20"),
        ([str(tmp / "a.h5"), str(tmp / "b.h5"), "--atlas", "schaefer400"], "found 30 targets"),
        ([str(tmp / "a.h5"), str(tmp_path / "missing.h5")], "no file at"),
    ]
    for args, message in cases:
        proc = _cli(*args)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr and message in proc.stderr, proc.stderr
    out = tmp_path / "never.tsv"
    assert main.main(["compare", str(tmp / "a.h5"), str(tmp / "b.h5"), "--labels", str(tmp_path / "labels_short.npy"),
                      "--out", str(out), "--no-progress"]) == 2
    other = EncodingResult.load(tmp / "b.h5")
    other.measured = [m + 1.0 for m in other.measured]     # different brain data
    other.save(tmp_path / "other.h5")
    assert main.main(["compare", str(tmp / "a.h5"), str(tmp_path / "other.h5"), "--out", str(out),
                      "--no-progress"]) == 2
    assert not out.exists()


def test_compare_uses_the_scores_encode_saved(tmp_path, capsys):
    """compare's per-target r is exactly the score encode saved, for both results; counts agree with the table."""
    rng = np.random.default_rng(7)
    X = [rng.standard_normal((N_TRS, 3)).astype(np.float32) for _ in range(N_RUNS)]
    C = [rng.standard_normal((N_TRS, 2)).astype(np.float32) for _ in range(N_RUNS)]
    W = rng.standard_normal((3, N_TARGETS))
    Y = [(np.roll(x, 2, axis=0) @ W + rng.standard_normal((N_TRS, N_TARGETS))).astype(np.float32) for x in X]
    for i, (x, c, y) in enumerate(zip(X, C, Y)):
        np.save(tmp_path / f"x{i}.npy", x)
        np.save(tmp_path / f"c{i}.npy", c)
        np.save(tmp_path / f"r{i}.npy", y)
    brain = [str(tmp_path / f"r{i}.npy") for i in range(N_RUNS)]
    for name, prefix in (("a", "x"), ("b", "c")):
        assert main.main(["encode", "--features", *[str(tmp_path / f"{prefix}{i}.npy") for i in range(N_RUNS)],
                          "--brain", *brain, "--tr", "2", "--alphas", "0.1:1e8:10", "--out", str(tmp_path / f"{name}.h5"),
                          "--no-progress"]) == 0
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # no All-NaN or other warnings leak
        rc = main.main(["compare", str(tmp_path / "a.h5"), str(tmp_path / "b.h5"), "--n-perm", "200",
                        "--n-boot", "100", "--targets-out", str(tmp_path / "t.tsv"), "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    t = pd.read_csv(tmp_path / "t.tsv", sep="\t")
    a, b = EncodingResult.load(tmp_path / "a.h5"), EncodingResult.load(tmp_path / "b.h5")
    np.testing.assert_allclose(t["r_a"], a.scores, rtol=0, atol=1e-6)     # the TSV keeps 6 significant digits
    np.testing.assert_allclose(t["r_b"], b.scores, rtol=0, atol=1e-6)
    n_a = int(((t["q_value"] <= 0.05) & (t["difference"] > 0)).sum())
    assert f"A better in {n_a} targets" in text and n_a > 20        # X drives every target, C none
    above = int((a.scores > b.scores).sum())
    assert f"A above B in {above} of {N_TARGETS} targets" in text
    heading = text.split("targets where A beats B (")[1]
    n_sig = int(heading.split(" with")[0])
    listed = text.split("targets where A beats B")[1].split("targets where B beats A")[0].count("*")
    assert n_sig == n_a and listed == n_sig                           # every significant row is listed
