import threading

import pytest

from engine.errors import JobCancelled
from engine.jobs import CancelToken, Progress, run_sync


def writing_job(path, n_steps, token=None):
    """Accumulates in memory; writes its output once, at the end."""
    values = []
    for i in range(n_steps):
        values.append(i * i)
        yield Progress(i + 1, n_steps, f"step {i + 1}")
    path.write_text(",".join(map(str, values)))
    return sum(values)


def test_result_and_progress_order(tmp_path):
    seen = []
    result = run_sync(writing_job(tmp_path / "out.txt", 5), on_progress=lambda p: seen.append(p.step))
    assert result == sum(i * i for i in range(5))
    assert seen == [1, 2, 3, 4, 5]
    assert (tmp_path / "out.txt").read_text() == "0,1,4,9,16"


def test_cancel_stops_within_one_step_and_leaves_no_output(tmp_path):
    token = CancelToken()
    steps = []

    def on_progress(p):
        steps.append(p.step)
        if p.step == 3:
            token.cancel()

    with pytest.raises(JobCancelled):
        run_sync(writing_job(tmp_path / "out.txt", 100), token=token, on_progress=on_progress)
    assert steps == [1, 2, 3]
    assert not (tmp_path / "out.txt").exists()


def test_cancel_runs_the_jobs_cleanup():
    cleaned = threading.Event()

    def job(token=None):
        try:
            for i in range(10):
                yield Progress(i, 10)
        finally:
            cleaned.set()

    token = CancelToken()
    with pytest.raises(JobCancelled):
        run_sync(job(), token=token, on_progress=lambda p: token.cancel() if p.step == 2 else None)
    assert cleaned.is_set()


def test_exception_inside_job_reaches_the_caller():
    def job():
        yield Progress(1, 3)
        raise ValueError("bad frame 17")

    with pytest.raises(ValueError, match="bad frame 17"):
        run_sync(job())


def test_progress_fraction():
    assert Progress(3, 4).fraction == 0.75
    assert Progress(3, 0).fraction == 0.0


def test_nested_job_keeps_the_outer_progress_monotonic():
    from engine.jobs import nested

    def inner():
        for i in range(3):
            yield Progress(i + 1, 3, "chunk")
        return "inner-result"

    def outer():
        yield Progress(1, 4, "start")
        got = yield from nested(inner(), 2, 4, "features")
        yield Progress(4, 4, "done")
        return got

    seen = []
    assert run_sync(outer(), on_progress=lambda p: seen.append((p.step, p.message))) == "inner-result"
    assert [s for s, _ in seen] == [1, 2, 2, 2, 4]
    assert seen[2][1] == "features: chunk (2/3)"
