"""engine.analysis.fit_lowlevel_job: the window's former "Fit encoding model", now a wrapper over
engine.pipeline.run_analysis_job, headless, on a small demo with planted truth."""

import numpy as np
import pytest

from engine.analysis import fit_lowlevel_job
from engine.demo import write_demo_project
from engine.encoding.fit import fit_encoding
from engine.encoding.results import EncodingResult
from engine.errors import ConfigError, DataError, JobCancelled
from engine.jobs import CancelToken, run_sync
from engine.project import Project


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory):
    return write_demo_project(tmp_path_factory.mktemp("analysis") / "demo", seed=1, duration_s=60.0, n_runs=2)


def test_fit_registers_a_result_that_finds_the_planted_regions(small_demo, tmp_path, monkeypatch):
    monkeypatch.setenv("ALIGNSCOPE_CACHE", str(tmp_path / "cache"))
    steps = []
    result, name = run_sync(fit_lowlevel_job(small_demo, result_name="ll"), on_progress=lambda p: steps.append(p.step))
    assert steps == sorted(steps)                       # one monotonic progress bar
    project = Project.load(small_demo)
    assert project.results[name] == "results/ll.h5"
    saved = EncodingResult.load(project.path("results/ll.h5"))
    np.testing.assert_array_equal(saved.scores, result.scores)
    assert saved.space == "fsaverage5" and len(saved.predictions) == 2
    truth = np.load(project.path(project.extra["truth"]))
    planted = np.zeros(20484, bool)
    for k in ("visual", "auditory", "language"):
        planted |= truth[f"map_{k}"] >= 0.5
    noise = sum(truth[k] for k in truth.files if k.startswith("map_")) == 0
    assert np.median(saved.scores[planted]) > 0.5
    assert abs(np.median(saved.scores[noise])) < 0.05
    # the wrapper keeps the job's former model (one ridge over the concatenated low-level spaces,
    # delays 1-4 TRs), other settings FitOptions' defaults: the same numbers as fitting them directly
    from engine.features.lowlevel import lowlevel_features
    from engine.io.fmri import load_run
    from engine.io.text import read_words

    ep = project.episodes[0]
    refs = [r for r in project.runs_for(ep.name) if r.space == "fsaverage5"]
    runs = [load_run(r, project).data for r in refs]
    feats = lowlevel_features(project.path(ep.video), read_words(project.path(ep.words)), runs[0].shape[0],
                              refs[0].tr_s)
    spaces = {k: [feats[k]] * 2 for k in ("luminance", "contrast", "motion", "audio_envelope", "word_rate")}
    with pytest.warns(UserWarning):     # two viewings of one episode: repeatability, said so
        ref = fit_encoding(spaces, runs, delays=(1, 2, 3, 4), multi_space="joint", tr_s=refs[0].tr_s,
                           stimulus_ids=[ep.name] * 2, run_names=[r.name for r in refs])
    np.testing.assert_allclose(saved.scores, ref.scores, atol=1e-5)


def test_parcel_space_and_bad_inputs(small_demo, tmp_path, monkeypatch):
    monkeypatch.setenv("ALIGNSCOPE_CACHE", str(tmp_path / "cache"))
    project = Project.load(small_demo)
    if not any(r.space == "parcels" for r in project.runs):
        pytest.skip("bundled atlas absent: no parcel runs in the demo")
    result, _ = run_sync(fit_lowlevel_job(small_demo, space="parcels", result_name="ll_parcels",
                                          features=("motion", "word_rate")))
    assert result.space == "parcels" and result.scores.shape == (400,)
    with pytest.raises(ConfigError, match="expected some of"):
        run_sync(fit_lowlevel_job(small_demo, features=("colour",)))
    with pytest.raises(DataError, match="runs in space 'volume'"):
        run_sync(fit_lowlevel_job(small_demo, space="volume"))


def test_cancel_leaves_the_project_unchanged(small_demo, tmp_path, monkeypatch):
    monkeypatch.setenv("ALIGNSCOPE_CACHE", str(tmp_path / "cache"))
    before = (small_demo).read_bytes()
    token = CancelToken()
    with pytest.raises(JobCancelled):
        run_sync(fit_lowlevel_job(small_demo, result_name="cancelled"), token=token,
                 on_progress=lambda p: token.cancel() if "features" in p.message else None)
    assert small_demo.read_bytes() == before
    assert not (small_demo.parent / "results" / "cancelled.h5").exists()
