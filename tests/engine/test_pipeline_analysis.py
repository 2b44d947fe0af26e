"""engine.pipeline: one analysis from a project to a registered result -- CLI and Python give the
same file, a job writes the project it was started on, results can be renamed and deleted."""

import json
import shutil

import h5py
import numpy as np
import pytest

import main
from engine.demo import write_demo_project
from engine.encoding.options import FitOptions
from engine.encoding.results import EncodingResult
from engine.errors import ConfigError, JobCancelled
from engine.jobs import CancelToken, run_sync
from engine.pipeline import (AnalysisSpec, delete_result, list_models, model_layers, rename_result,
                             run_analysis_job)
from engine.project import Project


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A small demo project (60 s, 2 runs of one episode, fsaverage5 + parcels) and its own feature cache."""
    root = tmp_path_factory.mktemp("pipeline")
    return write_demo_project(root / "demo", seed=2, duration_s=60.0, n_runs=2), root / "cache"


def _arrays_and_attrs(path):
    """Every dataset and attribute of an HDF5 file; the provenance without its creation time."""
    out = {}
    with h5py.File(path, "r") as h:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                out[name] = obj[()]
        h.visititems(visit)
        for k, v in h.attrs.items():
            if k == "provenance":
                prov = json.loads(v)
                prov.pop("created_utc")
                out["@provenance"] = prov
            else:
                out[f"@{k}"] = v
    return out


def test_cli_and_python_give_bit_identical_results(demo, monkeypatch, capsys):
    """The demo's MiniLM features at two depths, on the parcel runs: encode --project from the command
    line and run_analysis_job from Python write the same result file (apart from its creation time)."""
    project_file, cache = demo
    monkeypatch.setenv("ALIGNSCOPE_CACHE", str(cache))
    rc = main.main(["encode", "--project", str(project_file), "--model", "minilm", "--layers", "0.5,1.0",
                    "--space", "parcels", "--name", "minilm parcels", "--alphas", "1:1e6:7", "--joint",
                    "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "delays 1-7 TRs (1.49-10.43 s at TR 1.49 s)" in text      # the default 2-10 s window, resolved
    assert "CV: " in text and "registered 'minilm parcels'" in text
    path = Project.load(project_file).path(Project.load(project_file).results["minilm parcels"])
    cli = _arrays_and_attrs(path)
    shutil.copy(path, path.with_name("cli.h5"))

    spec = AnalysisSpec(name="minilm parcels", model="minilm", layers=[0.5, 1.0], space="parcels",
                        fit=FitOptions(alphas=list(np.logspace(0, 6, 7)), multi_space="joint"))
    outcome = run_sync(run_analysis_job(project_file, spec))
    assert outcome.result_path == path and outcome.project_file == project_file
    py = _arrays_and_attrs(path)
    assert sorted(cli) == sorted(py)
    for key in cli:
        if isinstance(cli[key], np.ndarray):
            np.testing.assert_array_equal(cli[key], py[key], err_msg=key)
        else:
            assert cli[key] == py[key], key
    # what the result says about itself
    res = outcome.result
    assert res.space == "parcels" and res.scores.shape == (400,)
    assert list(res.delays) == [1, 2, 3, 4, 5, 6, 7] and res.tr_s == pytest.approx(1.49)
    assert res.provenance["analysis"]["model"] == "minilm" and res.provenance["fit_options"]["cv"] == "auto"
    assert sorted(res.provenance["features"]) == ["layer03", "layer06"]     # 0.5 and 1.0 of 6 blocks
    # the language region of the demo (left temporal parcels) is predicted by a language model
    assert np.nanmax(res.scores) > 0.5


def test_a_job_writes_the_project_it_was_started_on(demo, tmp_path, monkeypatch):
    project_file, cache = demo
    monkeypatch.setenv("ALIGNSCOPE_CACHE", str(cache))
    other = write_demo_project(tmp_path / "other", seed=5, duration_s=20.0)
    other_before = other.read_bytes()
    steps = []
    spec = AnalysisSpec(name="lowlevel", model="lowlevel", layers=["motion", "word_rate"], space="fsaverage5",
                        fit=FitOptions(multi_space="joint"))
    outcome = run_sync(run_analysis_job(project_file, spec), on_progress=lambda p: steps.append((p.step, p.total)))
    assert other.read_bytes() == other_before                    # the other project is untouched
    project = Project.load(project_file)
    assert project.results["lowlevel"] == "results/lowlevel.h5"
    saved = EncodingResult.load(outcome.result_path)
    np.testing.assert_array_equal(saved.scores, outcome.result.scores)
    assert [s for s, _ in steps] == sorted(s for s, _ in steps) and steps[-1][0] == steps[-1][1]
    truth = np.load(project.path(project.extra["truth"]))
    assert saved.space_alphas is None and "one ridge" in saved.provenance["multi_space"]
    language = truth["map_language"] >= 0.5
    visual = truth["map_visual"] >= 0.5
    assert np.median(saved.scores[language]) > 0.4 and np.median(saved.scores[visual]) > 0.4
    noise = sum(truth[k] for k in truth.files if k.startswith("map_")) == 0
    assert abs(np.median(saved.scores[noise])) < 0.05


def test_cancel_writes_nothing(demo, monkeypatch):
    project_file, cache = demo
    monkeypatch.setenv("ALIGNSCOPE_CACHE", str(cache))
    before = project_file.read_bytes()
    token = CancelToken()
    spec = AnalysisSpec(name="cancelled", model="lowlevel", layers=["motion", "word_rate"], space="parcels")
    with pytest.raises(JobCancelled):
        run_sync(run_analysis_job(project_file, spec), token=token,
                 on_progress=lambda p: token.cancel() if p.message.startswith("fitting") else None)
    assert project_file.read_bytes() == before
    assert not (project_file.parent / "results" / "cancelled.h5").exists()


def test_rename_and_delete_results(demo, tmp_path):
    project_file, _ = demo
    copy = tmp_path / "p"
    shutil.copytree(project_file.parent, copy, ignore=shutil.ignore_patterns("results"))
    pf = copy / project_file.name
    project = Project.load(pf)
    project.results = {}
    project.save(pf)
    res = EncodingResult(scores=np.arange(3, dtype=np.float32), alphas=np.ones(3), predictions=[], measured=[],
                         run_names=[])
    from engine.pipeline import save_result

    save_result(pf, res, "first try")
    assert (copy / "results" / "first_try.h5").exists()
    rel = rename_result(pf, "first try", "Final")
    assert rel == "results/final.h5" and Project.load(pf).results == {"Final": "results/final.h5"}
    assert (copy / "results" / "final.h5").exists() and not (copy / "results" / "first_try.h5").exists()
    np.testing.assert_array_equal(EncodingResult.load(copy / "results" / "final.h5").scores, [0, 1, 2])
    save_result(pf, res, "other")
    with pytest.raises(ConfigError, match="a name not yet used"):
        rename_result(pf, "other", "Final")
    with pytest.raises(ConfigError, match="no such result"):
        delete_result(pf, "nope")
    assert delete_result(pf, "Final") == copy / "results" / "final.h5"
    assert "Final" not in Project.load(pf).results and not (copy / "results" / "final.h5").exists()
    delete_result(pf, "other", delete_file=False)
    assert (copy / "results" / "other.h5").exists() and Project.load(pf).results == {}


def test_spec_round_trip_and_models():
    spec = AnalysisSpec(name="x", model="minilm", layers=[0.5, -1], episodes=["e1"],
                        fit=FitOptions(delays_s=(1.0, 8.0), multi_space="joint"))
    d = json.loads(json.dumps(spec.to_dict()))
    again = AnalysisSpec.from_dict(d)
    assert again == spec and again.fit.delays_s == (1.0, 8.0)
    with pytest.raises(ConfigError, match="unknown setting"):
        AnalysisSpec.from_dict({**d, "colour": 1})
    with pytest.raises(ConfigError, match="ablate"):
        AnalysisSpec(ablate="smell")
    names = {m.name: m for m in list_models()}
    assert names["lowlevel"].available and names["minilm"].available        # shipped with the installation
    assert not names["llama-3.2-3b"].available or names["llama-3.2-3b"].source == "registry"
    assert model_layers("minilm") == [f"layer{i:02d}" for i in range(7)]    # 6 blocks + embeddings
    assert model_layers("lowlevel")[0] == "luminance"


def test_local_model_folders_and_hf_cache(tmp_path, monkeypatch):
    """A model saved with save_pretrained is offered with its layers (read from config.json); a folder
    without config.json is refused with the reason; the offline HF cache is listed."""
    from engine.errors import ModelNotFoundError
    from tests.engine import test_features_support as S

    bert = S.tiny_bert(tmp_path / "bert")
    assert model_layers(str(bert)) == ["layer00", "layer01", "layer02"]     # 2 blocks + embeddings
    hub = tmp_path / "hf" / "hub" / "models--acme--tiny-bert" / "snapshots" / "abc123"
    shutil.copytree(bert, hub)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    models = {m.name: m for m in list_models(folders=[bert])}
    assert models["acme/tiny-bert"].source == "hf-cache" and models["acme/tiny-bert"].family == "bert"
    assert models[str(bert.resolve())].source == "folder" and models[str(bert.resolve())].available
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="config.json"):
        list_models(folders=[tmp_path / "empty"])


def test_per_layer_results(demo, monkeypatch):
    project_file, cache = demo
    monkeypatch.setenv("ALIGNSCOPE_CACHE", str(cache))
    spec = AnalysisSpec(name="ll", model="lowlevel", layers=["motion", "word_rate"], space="parcels",
                        per_layer=True, fit=FitOptions(alphas=[1.0, 100.0, 1e4]))
    outcome = run_sync(run_analysis_job(project_file, spec))
    assert sorted(outcome.results) == ["ll-motion", "ll-word_rate"]
    project = Project.load(project_file)
    for name, (res, path) in outcome.results.items():
        assert project.path(project.results[name]) == path and res.space == "parcels"
        assert res.feature_names == [name.split("-", 1)[1]]
        np.testing.assert_array_equal(EncodingResult.load(path).scores, res.scores)
    # stats rebuilds a project result's inputs (runs reloaded, features from the cache) and refits them
    path = outcome.results["ll-word_rate"][1]
    assert main.main(["stats", str(path), "--n-perm", "19", "--no-progress"]) == 0
    res = EncodingResult.load(path)
    np.testing.assert_array_equal(res.scores, outcome.results["ll-word_rate"][0].scores)
    assert res.p_values.shape == (400,) and res.p_values.min() == pytest.approx(1 / 20)
    assert res.provenance["significance"]["n_perm"] == 19
