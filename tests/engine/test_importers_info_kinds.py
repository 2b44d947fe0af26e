"""``info`` on every kind of file AlignScope writes: exit 0, the kind named, described in its own terms."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.cli.info import _all_problems, inspect_path
from tests.engine.folder_layouts import write_video

REPO = Path(__file__).resolve().parents[2]


def _tiny_fit(rng, n_runs=3, n_trs=40, n_targets=12):
    X = [rng.normal(size=(n_trs, 2)).astype(np.float32) for _ in range(n_runs)]
    # target 0 follows the features one TR later (delay 1); the others are noise
    Y = [np.c_[np.r_[np.zeros((1, 1)), x[:-1] @ np.array([[1.0], [0.5]])],
               rng.normal(size=(n_trs, n_targets - 1))].astype(np.float32) for x in X]
    return X, Y


@pytest.fixture(scope="module")
def own_files(tmp_path_factory):
    """One file of each kind, written by the engine's own writers."""
    from engine.encoding.fit import fit_encoding
    from engine.encoding.partition import variance_partition
    from engine.encoding.permutation import PermutationResult
    from engine.features.attention import save_attention
    from engine.features.base import AttentionMaps, FeatureSpace
    from engine.features.cache import FeatureCache
    from engine.io.proxy import make_scrub_proxy_job
    from engine.jobs import run_sync
    from engine.pipeline.results import save_feature_spaces, write_partition
    from engine.project import Episode, Project, RunRef

    tmp = tmp_path_factory.mktemp("own")
    rng = np.random.default_rng(0)
    X, Y = _tiny_fit(rng)
    files = {}
    res = fit_encoding(X, Y, delays=[1, 2], alphas=[1.0, 10.0], cv="loro", tr_s=2.0, detrend=None,
                       run_names=["r1", "r2", "r3"], space="parcels", feature_names=["lum"])
    files["encoding result"] = res.save(tmp / "result.h5")
    n = res.scores.size
    null = rng.normal(size=(20, n)).astype(np.float32) * 0.1
    perm = PermutationResult(observed=res.scores.astype(np.float32), null=null,
                             p_values=np.full(n, 0.04), q_values=np.full(n, 0.2), p_fwer=np.full(n, 0.5),
                             settings={"n_perm": 20, "method": "block"})
    files["permutation test"] = perm.save(tmp / "perm.h5")
    part = variance_partition({"A": [x[:, :1] for x in X], "B": [x[:, 1:] for x in X]}, Y, delays=[1],
                              alphas=[1.0], cv="loro", detrend=None)
    files["variance partition"] = write_partition(tmp / "partition.h5", part)
    spaces = {name: FeatureSpace(name=f"lowlevel/{name}", data=rng.normal(size=(40, k)).astype(np.float32),
                                 layer=name, model_id="lowlevel", tr_s=1.49, meta={"model": "lowlevel"})
              for name, k in (("luminance", 1), ("mel", 32))}
    files["features"] = save_feature_spaces(spaces, tmp / "features.h5")
    files["feature cache entry"] = FeatureCache(tmp / "cache").save("ab" * 20, {"layer_1": np.ones((40, 3))},
                                                                    {"model": "x"})
    maps = AttentionMaps(tr_indices=np.arange(3), layers=["layer_1", "layer_2"],
                         maps=np.ones((3, 2, 1, 4), np.float16), rollout=np.ones((3, 4), np.float16),
                         kind="tokens", meta={"model": "minilm", "heads": "mean"})
    files["attention maps"] = save_attention(maps, tmp / "attention.h5")
    project = Project(name="p", episodes=[Episode("ep", video="ep.mkv")],
                      runs=[RunRef("r1", "r1.npy", "ep", space="parcels", tr_s=1.49)], results={"lum": "result.h5"})
    np.save(tmp / "r1.npy", rng.normal(size=(20, 5)).astype(np.float32))
    video = write_video(tmp / "ep.mkv", rng.integers(0, 255, 20), 1.49)   # as long as run r1
    files["project"] = project.save(tmp / "p.alignscope.json")
    files["scrub proxy (video)"] = run_sync(make_scrub_proxy_job(video, cache_dir=tmp / "proxies"))
    return files


KINDS = ["encoding result", "permutation test", "variance partition", "features", "feature cache entry",
         "attention maps", "project", "scrub proxy (video)"]


@pytest.mark.parametrize("kind", KINDS)
def test_info_names_each_kind_and_finds_no_false_problem(own_files, kind):
    rep = inspect_path(Path(own_files[kind]))
    assert rep["kind"] == kind
    assert _all_problems(rep) == []
    facts = rep["facts"]
    if kind == "encoding result":
        assert facts["n_targets"] == 12 and facts["n_runs"] == 3 and facts["feature_spaces"] == ["lum"]
        assert facts["max_r"] > 0.9 and facts["tr_s"] == 2.0                  # target 0 is planted
    elif kind == "features":
        assert facts["n_features_per_layer"] == {"luminance": 1, "mel": 32} and facts["n_trs"] == 40
        assert "n_targets" not in facts and facts["tr_s"] == pytest.approx(1.49)
    elif kind == "permutation test":
        assert facts["n_permutations"] == 20 and facts["significant_p<0.05"] == 12
    elif kind == "variance partition":
        assert facts["feature_spaces"] == ["A", "B"] and facts["n_targets"] == 12
    elif kind == "attention maps":
        assert facts["layers"] == ["layer_1", "layer_2"] and facts["n_trs_with_maps"] == 3
    elif kind == "project":
        assert facts["results"] == ["lum"] and rep["pairing"][0]["subjects"]["sub-01"]["status"] == "paired"
    elif kind == "scrub proxy (video)":
        assert "scrub proxy" in facts["made_by"]


def test_info_command_exits_0_on_a_result_and_says_so(own_files):
    proc = subprocess.run([sys.executable, str(REPO / "main.py"), "info", str(own_files["encoding result"]),
                           "--json"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rep = json.loads(proc.stdout)
    assert rep["kind"] == "encoding result" and rep["problems"] == []


def test_info_on_reports_and_json(tmp_path):
    page = tmp_path / "report.html"
    page.write_text('<html><head><title>Study: friends</title></head><body><section class="alignscope-qc">'
                    '<img src="data:image/png;base64,AA"><img src="x"><table></table></section></body></html>')
    rep = inspect_path(page)
    assert rep["kind"] == "html report" and rep["facts"]["title"] == "Study: friends"
    assert rep["facts"]["n_figures"] == 2 and rep["facts"]["made_by"] == "AlignScope" and not rep["problems"]
    side = tmp_path / "task-movie_bold.json"
    side.write_text(json.dumps({"RepetitionTime": 0.8, "TaskName": "movie"}))
    rep = inspect_path(side)
    assert rep["kind"] == "json" and rep["facts"]["tr_s"] == 0.8 and not rep["problems"]
    (tmp_path / "broken.json").write_text("{oops")
    assert "syntax error" in inspect_path(tmp_path / "broken.json")["problems"][0]


def test_info_on_maps_and_tables_a_study_writes(tmp_path):
    """Maps (``maps/<name>.npy``, ``<name>.lh/.rh.func.gii``), ``study.npz`` and region CSVs, in the
    formats engine.studies writes them: described, exit 0."""
    import nibabel as nib
    import pandas as pd

    rng = np.random.default_rng(1)
    scores = rng.normal(size=20484).astype(np.float32)
    scores[:5] = np.nan
    np.save(tmp_path / "r.npy", scores)
    rep = inspect_path(tmp_path / "r.npy")
    assert rep["kind"] == "map (npy)" and rep["facts"]["space (from the size)"] == "fsaverage5"
    assert rep["facts"]["n_undefined"] == 5 and rep["facts"]["max"] == round(float(np.nanmax(scores)), 4)
    img = nib.gifti.GiftiImage(darrays=[nib.gifti.GiftiDataArray(
        scores[:10242], intent="NIFTI_INTENT_ESTIMATE", datatype="NIFTI_TYPE_FLOAT32")])
    nib.save(img, tmp_path / "r.lh.func.gii")
    rep = inspect_path(tmp_path / "r.lh.func.gii")
    assert rep["kind"] == "surface map (gifti)" and rep["facts"]["space (from the size)"] == "one fsaverage5 hemisphere"
    np.savez(tmp_path / "study.npz", r=scores, alphas=np.ones((3, 4)))
    rep = inspect_path(tmp_path / "study.npz")
    assert rep["kind"] == "arrays (npz)" and rep["facts"]["arrays"] == {"r": [20484], "alphas": [3, 4]}
    pd.DataFrame({"region": ["V1", "MT", "AG"], "mean_r": [0.1, 0.2, 0.05], "n": [10, 4, 7]}).to_csv(
        tmp_path / "regions.csv", index=False)
    rep = inspect_path(tmp_path / "regions.csv")
    assert rep["kind"] == "table (labelled rows)" and rep["facts"]["first_labels"] == ["V1", "MT", "AG"]
    for f in ("r.npy", "r.lh.func.gii", "study.npz", "regions.csv"):
        assert _all_problems(inspect_path(tmp_path / f)) == []
    # a run table with text where numbers belong is still a problem
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n3,x\n" + "\n".join("1,2" for _ in range(12)) + "\n")
    assert "text in column(s) ['b']" in " ".join(inspect_path(tmp_path / "bad.csv")["problems"])
