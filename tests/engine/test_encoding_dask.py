"""Chunked work on Dask (LocalCluster on loopback) gives the in-process numbers; progress and cancel."""

import threading
import time
import warnings

import numpy as np
import pytest

from engine.encoding import distributed as dist
from engine.encoding.distributed import (
    Task,
    fit_encoding_distributed,
    fit_encoding_many,
    merge_results,
    run_tasks,
    run_tasks_sync,
    target_chunks,
)
from engine.encoding.fit import fit_encoding
from engine.encoding.permutation import permutation_test
from engine.errors import ConfigError, JobCancelled, MismatchError
from engine.jobs import CancelToken, run_sync

pytest.importorskip("distributed")
pytestmark = pytest.mark.filterwarnings("ignore::engine.encoding.ridge.AlphaOnEdgeWarning")

FIT = dict(delays=(1, 2, 3), alphas=np.logspace(-1, 4, 6))


def _data(n_targets=48, n_runs=3, n_trs=70, n_features=5, seed=0):
    rng = np.random.default_rng(seed)
    X = [rng.standard_normal((n_trs, n_features)).astype(np.float32) for _ in range(n_runs)]
    W = rng.standard_normal((n_features, n_targets))
    Y = [(np.roll(x, 2, axis=0) @ W + 2 * rng.standard_normal((n_trs, n_targets))).astype(np.float32)
         for x in X]
    return X, Y


def _assert_same(a, b, exact=True):
    check = np.testing.assert_array_equal if exact else (
        lambda x, y: np.testing.assert_allclose(x, y, rtol=0, atol=2e-6))
    for name in ("scores", "r2", "alphas", "scores_per_fold", "alphas_per_fold", "alpha_on_edge"):
        check(np.asarray(getattr(a, name)), np.asarray(getattr(b, name)))
    for pa, pb in zip(a.predictions, b.predictions):
        check(pa, pb)
    for ma, mb in zip(a.measured, b.measured):
        np.testing.assert_array_equal(ma, mb)
    assert a.run_names == b.run_names and a.folds == b.folds


def _square(x, offset=0):
    return x * x + offset


_CALLS = []


def _slow_record(i, delay_s=0.0):
    time.sleep(delay_s)
    _CALLS.append(i)
    return i


def _fail(i):
    if i == 2:
        raise ValueError("chunk 2 is broken")
    return i


@pytest.mark.parametrize("scheduler", [None, "local"])
def test_task_errors_propagate(scheduler):
    with pytest.raises(ValueError, match="chunk 2 is broken"):
        run_tasks_sync([Task(_fail, (i,)) for i in range(4)], scheduler=scheduler)
    assert run_tasks_sync([], scheduler=scheduler) == []


def test_target_chunks():
    assert [(c.start, c.stop) for c in target_chunks(10, 3)] == [(0, 3), (3, 7), (7, 10)]
    assert [(c.start, c.stop) for c in target_chunks(10, chunk_size=4)] == [(0, 3), (3, 7), (7, 10)]
    assert [(c.start, c.stop) for c in target_chunks(50, 4, align=12)] == [(0, 12), (12, 24), (24, 48), (48, 50)]
    assert len(target_chunks(3, 10)) == 3
    with pytest.raises(ConfigError):
        target_chunks(10, chunk_size=0)


def test_run_tasks_in_process_order_progress_and_cancel():
    tasks = [Task(_square, (i,), name=f"t{i}") for i in range(5)]
    reports = []
    out = run_tasks_sync(tasks, shared={"offset": 1}, on_progress=reports.append)
    assert out == [i * i + 1 for i in range(5)]
    assert [r.step for r in reports] == [0, 1, 2, 3, 4, 5] and reports[-1].payload["name"] == "t4"
    _CALLS.clear()
    token = CancelToken()

    def stop_after_two(p):
        if p.step == 2:
            token.cancel()

    with pytest.raises(JobCancelled):
        run_tasks_sync([Task(_slow_record, (i,)) for i in range(6)], token=token, on_progress=stop_after_two)
    assert _CALLS == [0, 1]


def test_local_threads_cluster_same_results_and_cancel_pending():
    tasks = [Task(_square, (i,), name=f"t{i}") for i in range(6)]
    reports = []
    out = run_tasks_sync(tasks, scheduler="local", shared={"offset": 2}, on_progress=reports.append)
    assert out == [i * i + 2 for i in range(6)]
    assert sorted(r.payload["index"] for r in reports[1:]) == list(range(6))
    # cancel while chunks are pending: the job stops, unfinished futures are cancelled
    _CALLS.clear()
    token = CancelToken()
    gen = run_tasks([Task(_slow_record, (i, 0.3)) for i in range(12)], scheduler="local", token=token,
                    threads_per_worker=1)
    timer = threading.Timer(0.45, token.cancel)
    timer.start()
    t0 = time.monotonic()
    with pytest.raises(JobCancelled):
        run_sync(gen, token=token)
    elapsed = time.monotonic() - t0
    time.sleep(0.4)
    # one worker thread: ~2 tasks had started by the cancel; the 10 pending never run
    assert len(_CALLS) <= 4 and elapsed < 2.5


def test_fit_encoding_distributed_on_local_threads_is_bit_for_bit():
    X, Y = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = fit_encoding(X, Y, n_targets_batch=8, **FIT)
        ref_default = fit_encoding(X, Y, **FIT)
    reports = []
    got = fit_encoding_distributed(X, Y, scheduler="local", n_chunks=3, n_targets_batch=8,
                                   on_progress=reports.append, **FIT)
    _assert_same(got, ref, exact=True)
    assert got.provenance["distributed"]["n_chunks"] == 3
    assert got.provenance["input_hashes"]["brain_sha1"] == ref.provenance["input_hashes"]["brain_sha1"]
    assert [r.step for r in reports if r.total == 3][-1] == 3
    # without an explicit batch size: equal to float32 rounding
    got2 = fit_encoding_distributed(X, Y, n_chunks=5, **FIT)  # in process
    _assert_same(got2, ref_default, exact=False)


def test_fit_encoding_distributed_on_worker_processes():
    X, Y = _data(n_targets=30, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = fit_encoding(X, Y, n_targets_batch=10, **FIT)
    got = fit_encoding_distributed(X, Y, scheduler="local", processes=True, n_workers=2,
                                   n_chunks=2, n_targets_batch=10, **FIT)
    _assert_same(got, ref, exact=True)


def test_fit_encoding_many_layers_and_subjects():
    X, Y = _data(n_targets=12)
    X2 = [x[:, ::-1].copy() for x in X]
    out = fit_encoding_many({"layer1": X, "layer2": X2}, Y, scheduler="local", **FIT)
    assert list(out) == ["layer1", "layer2"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _assert_same(out["layer2"], fit_encoding(X2, Y, **FIT))
    _, Y_b = _data(n_targets=12, seed=3)
    per_subject = fit_encoding_many({"sub-01": X, "sub-02": X}, {"sub-01": Y, "sub-02": Y_b}, **FIT)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _assert_same(per_subject["sub-02"], fit_encoding(X, Y_b, **FIT))
    with pytest.raises(MismatchError):
        fit_encoding_many({"sub-01": X}, {"sub-02": Y}, **FIT)


def test_permutations_on_dask_equal_in_process():
    X, Y = _data(n_targets=10)
    here = permutation_test(X, Y, n_perm=6, seed=4, **FIT)
    there = permutation_test(X, Y, n_perm=6, seed=4, scheduler="local", observed=here.observed, **FIT)
    np.testing.assert_array_equal(here.null, there.null)
    np.testing.assert_array_equal(here.p_values, there.p_values)


def test_merge_rejects_mismatched_chunks_and_bad_scheduler(monkeypatch):
    X, Y = _data(n_targets=6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = fit_encoding(X, Y, **FIT)
        b = fit_encoding(X[:2], [y[:, :3] for y in Y[:2]], **FIT)
    with pytest.raises(MismatchError):
        merge_results([a, b])
    with pytest.raises(ConfigError):
        run_tasks_sync([Task(_square, (1,))], scheduler=42)
    monkeypatch.setattr(dist, "CONNECT_TIMEOUT_S", 0.5)
    with pytest.raises(ConfigError, match="127.0.0.1:9"):
        run_tasks_sync([Task(_square, (1,))], scheduler="tcp://127.0.0.1:9")
