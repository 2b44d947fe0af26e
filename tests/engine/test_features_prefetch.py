"""Several episodes in one extraction job: one model, equal to one job per episode, resumable per episode."""

import numpy as np
import pytest

from engine.errors import ConfigError, JobCancelled
from engine.features import registry
from engine.features.base import EpisodeInputs, ModelSpec
from engine.features.extract import extract_features
from engine.features.prefetch import extract_episodes, pinned
from engine.jobs import CancelToken
from tests.engine.test_features_plugins import RampExtractor


@pytest.fixture()
def ramp():
    registry.register_family("ramp", RampExtractor, needs_weights=False)
    registry.register_spec(ModelSpec(name="ramp-queue", model="ramp", family="ramp", modality="multimodal",
                                     window_s=2.0))
    return "ramp-queue"


def test_queue_equals_one_job_per_episode_and_resumes(tmp_path, ramp):
    eps = {f"s01e0{i}": EpisodeInputs(n_trs=4 + i, tr_s=1.5, onset_s=float(i)) for i in range(1, 4)}
    token = CancelToken()
    seen = []

    def stop_after_first(name, spaces):
        seen.append(name)
        token.cancel()

    with pytest.raises(JobCancelled):
        extract_episodes(eps, ramp, token=token, cache_dir=tmp_path, on_episode=stop_after_first)
    assert seen == ["s01e01"]
    RampExtractor.calls = 0
    reports = []
    out = extract_episodes(eps, ramp, cache_dir=tmp_path, on_progress=reports.append)
    assert RampExtractor.calls == 2                      # the first episode came from the cache
    assert list(out) == list(eps)
    assert reports[-1].step == reports[-1].total == sum(e.n_trs for e in eps.values())
    for name, ep in eps.items():
        ref = extract_features(ep, ramp, use_cache=False)
        np.testing.assert_array_equal(out[name]["joint"].data, ref["joint"].data)
        assert out[name]["joint"].data.shape == (ep.n_trs, 2)


def test_errors_and_pinned_on_cpu(ramp):
    with pytest.raises(ConfigError, match="at least one"):
        extract_episodes({}, ramp)
    with pytest.raises(ConfigError, match="EpisodeInputs"):
        extract_episodes(["not an episode"], ramp)
    a = np.zeros(3)
    assert pinned(a, "cpu") is a
