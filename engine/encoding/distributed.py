"""Scale-out: encoding work split into independent tasks, run here or on a Dask cluster.

Work splits into chunks that need nothing from each other -- targets (parcels, vertices),
subjects, layers, models, permutations -- and :func:`run_tasks` runs them:

- ``scheduler=None`` (default): one after another in this process;
- ``scheduler="local"``: on a :class:`dask.distributed.LocalCluster` started for the job
  and closed after it, bound to the loopback interface (127.0.0.1) only, no dashboard;
  threads in this process by default (``processes=False``), or worker processes;
- ``scheduler="tcp://host:8786"`` (any address a ``dask.distributed.Client`` accepts): a
  cluster the user started (``dask scheduler`` + ``dask worker``, dask-jobqueue on SLURM...);
  the workers need AlignScope installed. The cluster is left running afterwards;
- a ``dask.distributed.Client`` the caller already holds.

:func:`run_tasks` is a job (see :mod:`engine.jobs`): it yields a :class:`~engine.jobs.Progress`
per finished chunk, and cancelling it cancels the chunks not yet finished. Results come back
in task order whatever order the chunks finish in, so a distributed run gives the same
numbers as the in-process one (bit-for-bit where BLAS uses the same thread count: Dask
tasks run with one BLAS thread each, as parallelism comes from the tasks) (:func:`fit_encoding_distributed` reassembles an
:class:`~engine.encoding.results.EncodingResult` identical to
:func:`engine.encoding.fit.fit_encoding` on all targets at once).

Only numpy arrays and picklable callables cross to the workers; data shared by every task
(e.g. the features when chunking by targets) is sent once (``shared=``), not per task.

CLI hook (for ``engine/cli/encode.py``)::

    parser.add_argument("--scheduler", default=None,
        help="run chunks of targets on Dask: 'local' (a LocalCluster on this machine) or a "
             "scheduler address such as tcp://host:8786; default: in this process")
    parser.add_argument("--chunks", type=int, default=None, help="chunks of targets (default: 1 per worker)")
    ...
    result = fit_encoding_distributed(X_runs, Y_runs, scheduler=args.scheduler,
                                      n_chunks=args.chunks, **fit_kwargs)
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np

from ..errors import ConfigError, MismatchError, expected_found
from ..jobs import CancelToken, Progress, run_sync

__all__ = ["Task", "run_tasks", "run_tasks_sync", "open_client", "target_chunks",
           "fit_encoding_distributed", "fit_encoding_distributed_job", "fit_encoding_many",
           "fit_encoding_many_job", "merge_results"]

_POLL_S = 0.1  # how often a waiting job looks at its cancel token
CONNECT_TIMEOUT_S = 10.0  # how long to wait for a user's scheduler to answer


@dataclass
class Task:
    """One independent chunk of work: ``fn(*args, **kwargs, **shared)``.

    ``fn`` must be importable by name on the workers (a module-level function) when a
    cluster with worker processes runs it.
    """

    fn: Callable
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    name: str = ""


def _run_task(fn, args, kwargs, shared):
    return fn(*args, **kwargs, **shared)


def _run_task_one_blas_thread(fn, args, kwargs, shared):
    """On a Dask worker: parallelism comes from the tasks, so BLAS gets one thread each
    (several multi-threaded BLAS calls at once oversubscribe the cores and run slower)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn depends on threadpoolctl
        return fn(*args, **kwargs, **shared)
    with threadpool_limits(limits=1, user_api="blas"):
        return fn(*args, **kwargs, **shared)


def open_client(scheduler, n_workers: Optional[int] = None, processes: bool = False,
                threads_per_worker: Optional[int] = None):
    """A ``(client, owned)`` pair for ``scheduler`` ("local", an address, or a Client).

    ``owned`` is True when the client (and its LocalCluster) were started here and must be
    closed by the caller.
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:  # pragma: no cover - dask[distributed] is a dependency
        raise ConfigError("scheduler: running on Dask needs the 'distributed' package, which is "
                          "not installed") from exc
    if isinstance(scheduler, Client):
        return scheduler, False
    if not isinstance(scheduler, str) or not scheduler:
        raise ConfigError(expected_found("scheduler", "None, 'local', a scheduler address "
                                         "(e.g. tcp://host:8786) or a dask Client", repr(scheduler)))
    if scheduler.lower() == "local":
        if n_workers is None:
            n_workers = 1 if not processes else 2
        if threads_per_worker is None:
            threads_per_worker = 2 if not processes else 1
        # threads in this process talk over the in-process transport (no socket at all);
        # worker processes over TCP bound to the loopback interface only
        net = {"host": "127.0.0.1"} if processes else {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # port-in-use and similar chatter
            cluster = LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker,
                                   processes=processes, dashboard_address=None, silence_logs=40, **net)
        client = Client(cluster)
        return client, True
    address = scheduler if "://" in scheduler else f"tcp://{scheduler}"
    try:
        client = Client(address, timeout=f"{CONNECT_TIMEOUT_S}s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise ConfigError(expected_found("Dask scheduler", f"one answering at {address}",
                                         f"no answer ({exc})")) from exc
    return client, True


def _close(client, owned: bool) -> None:
    if not owned:
        return
    cluster = getattr(client, "cluster", None)
    try:
        client.close()
    finally:
        if cluster is not None:
            cluster.close()


def run_tasks(tasks: Sequence[Task], scheduler=None, token: Optional[CancelToken] = None,
              shared: Optional[Dict[str, Any]] = None, n_workers: Optional[int] = None,
              processes: bool = False, threads_per_worker: Optional[int] = None,
              message: str = "chunk"):
    """Run independent tasks here or on Dask; a job yielding Progress per finished task.

    Parameters
    ----------
    tasks : sequence of Task
    scheduler : None, "local", address str, or dask Client
        See the module docstring.
    token : CancelToken, optional
        Checked between tasks (in process) or every 0.1 s while waiting (Dask); when set,
        unfinished tasks are cancelled and :class:`~engine.errors.JobCancelled` is raised.
    shared : dict, optional
        Keyword arguments given to every task, sent to the cluster once.
    n_workers, processes, threads_per_worker
        For ``scheduler="local"`` only. Default: 1 worker with 2 threads in this process;
        with ``processes=True``, 2 single-threaded worker processes.
    message : str
        Word used in progress messages ("chunk", "permutation", "layer"...).

    Yields
    ------
    Progress(step=tasks done, total=len(tasks), message, payload={"index", "name"})

    Returns
    -------
    list
        Each task's return value, in task order.
    """
    tasks = list(tasks)
    shared = dict(shared or {})
    token = token or CancelToken()
    n = len(tasks)
    results: List[Any] = [None] * n
    yield Progress(0, n, f"{n} {message}s to run" + ("" if scheduler is None else f" on {_describe(scheduler)}"))
    if scheduler is None or (isinstance(scheduler, str) and scheduler.lower() in ("none", "inprocess", "")):
        for i, t in enumerate(tasks):
            token.raise_if_cancelled()
            results[i] = _run_task(t.fn, t.args, t.kwargs, shared)
            yield Progress(i + 1, n, f"{message} {i + 1}/{n} done {t.name}".rstrip(),
                           payload={"index": i, "name": t.name})
        return results

    if n == 0:
        return results

    from distributed import wait

    client, owned = open_client(scheduler, n_workers=n_workers, processes=processes,
                                threads_per_worker=threads_per_worker)
    futures = []
    try:
        shared_f = {k: client.scatter(v, broadcast=True) for k, v in shared.items()}
        # pure=False: two tasks with equal arguments are still two tasks
        futures = [client.submit(_run_task_one_blas_thread, t.fn, t.args, t.kwargs, shared_f, pure=False)
                   for t in tasks]
        index = {f.key: i for i, f in enumerate(futures)}
        pending = set(futures)
        done_count = 0
        while pending:
            token.raise_if_cancelled()
            try:
                finished, pending = wait(list(pending), timeout=_POLL_S, return_when="FIRST_COMPLETED")
            except TimeoutError:
                continue
            pending = set(pending)
            for f in sorted(finished, key=lambda f: index[f.key]):
                i = index[f.key]
                results[i] = f.result()  # re-raises the task's exception here
                done_count += 1
                yield Progress(done_count, n, f"{message} {done_count}/{n} done {tasks[i].name}".rstrip(),
                               payload={"index": i, "name": tasks[i].name})
        return results
    finally:
        unfinished = [f for f in futures if not f.done()]
        if unfinished:
            client.cancel(unfinished)
        _close(client, owned)


def _describe(scheduler) -> str:
    if isinstance(scheduler, str):
        return "a local Dask cluster" if scheduler.lower() == "local" else scheduler
    return "a Dask cluster"


def run_tasks_sync(tasks, scheduler=None, token=None, on_progress=None, **kwargs) -> list:
    """:func:`run_tasks` run to completion in this thread."""
    return run_sync(run_tasks(tasks, scheduler=scheduler, token=token, **kwargs), token=token,
                    on_progress=on_progress)


# --------------------------------------------------------------------------- encoding by chunks

def target_chunks(n_targets: int, n_chunks: Optional[int] = None,
                  chunk_size: Optional[int] = None, align: Optional[int] = None) -> List[slice]:
    """Contiguous slices of targets: ``n_chunks`` equal parts or parts of ``chunk_size``.

    With ``align``, every boundary falls on a multiple of ``align`` (the ridge's
    ``n_targets_batch``), so each chunk is solved in exactly the batches a single fit
    would use, and the merged result is bit-for-bit the single fit's.
    """
    if align is not None and int(align) >= 1:
        a = int(align)
        n_units = math.ceil(n_targets / a)
        unit_chunks = target_chunks(n_units, n_chunks, None if chunk_size is None
                                    else max(1, int(chunk_size) // a))
        return [slice(c.start * a, min(c.stop * a, n_targets)) for c in unit_chunks]
    if n_targets < 1:
        raise ConfigError(expected_found("targets to chunk", ">= 1", n_targets))
    if chunk_size is not None:
        if int(chunk_size) < 1:
            raise ConfigError(expected_found("chunk_size", ">= 1", chunk_size))
        n_chunks = math.ceil(n_targets / int(chunk_size))
    n_chunks = int(n_chunks or 1)
    if n_chunks < 1:
        raise ConfigError(expected_found("n_chunks", ">= 1", n_chunks))
    n_chunks = min(n_chunks, n_targets)
    edges = np.linspace(0, n_targets, n_chunks + 1).round().astype(int)
    return [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def _fit_chunk(Y_runs, X_runs=None, fit_kwargs=None):
    """Worker side: fit_encoding on one chunk of targets (X shared, Y sliced)."""
    from .fit import fit_encoding

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # alpha-on-edge is re-counted after merging
        return fit_encoding(X_runs, Y_runs, **(fit_kwargs or {}))


def _fit_problem(X_runs, Y_runs, fit_kwargs=None):
    from .fit import fit_encoding

    return fit_encoding(X_runs, Y_runs, **(fit_kwargs or {}))


def merge_results(parts: Sequence[Any], provenance: Optional[dict] = None):
    """One :class:`EncodingResult` from results on consecutive chunks of the same targets.

    Every per-target array is concatenated along the target axis; settings (runs, folds,
    delays, alpha grid) must agree between parts.
    """
    from .results import EncodingResult

    parts = list(parts)
    if not parts:
        raise ConfigError("merge_results: expected at least one partial result, found none")
    first = parts[0]
    for p in parts[1:]:
        if list(p.run_names) != list(first.run_names) or [list(f) for f in p.folds] != \
                [list(f) for f in first.folds]:
            raise MismatchError(expected_found("runs and folds of every chunk",
                                               (first.run_names, first.folds), (p.run_names, p.folds)))

    def cat(name, axis=0):
        vals = [getattr(p, name) for p in parts]
        if any(v is None for v in vals):
            return None
        return np.concatenate([np.asarray(v) for v in vals], axis=axis)

    n_runs = len(first.predictions)
    prov = dict(first.provenance)
    if provenance:
        prov.update(provenance)
    return EncodingResult(
        scores=cat("scores"), alphas=cat("alphas"),
        predictions=[np.concatenate([p.predictions[i] for p in parts], axis=1) for i in range(n_runs)],
        measured=[np.concatenate([p.measured[i] for p in parts], axis=1) for i in range(n_runs)],
        run_names=list(first.run_names), space=first.space, feature_names=list(first.feature_names),
        r2=cat("r2"), delays=list(first.delays), folds=[list(f) for f in first.folds],
        scores_per_fold=cat("scores_per_fold", axis=1), alphas_per_fold=cat("alphas_per_fold", axis=1),
        alpha_on_edge=cat("alpha_on_edge"), alpha_grid=first.alpha_grid, provenance=prov,
    )


def _brain_hash(Y_runs) -> Optional[str]:
    try:
        from .fit import _hash_runs
    except ImportError:  # pragma: no cover
        return None
    return _hash_runs([np.asarray(y, dtype=np.float32) for y in Y_runs])


def fit_encoding_distributed_job(X_runs, Y_runs, scheduler=None, n_chunks: Optional[int] = None,
                                 chunk_size: Optional[int] = None, token: Optional[CancelToken] = None,
                                 n_workers: Optional[int] = None, processes: bool = False,
                                 **fit_kwargs):
    """Job form of :func:`fit_encoding_distributed` (Progress per finished chunk of targets)."""
    from ..encoding import preprocess as pp

    Y_list = pp.check_runs(Y_runs, "brain runs")
    n_targets = Y_list[0].shape[1]
    if n_chunks is None and chunk_size is None:
        n_chunks = 1 if scheduler is None else max(1, n_workers or 2)
    chunks = target_chunks(n_targets, n_chunks, chunk_size, align=fit_kwargs.get("n_targets_batch"))
    fit_kwargs.pop("on_progress", None)
    fit_kwargs.pop("token", None)
    tasks = [Task(_fit_chunk, (), {"Y_runs": [np.ascontiguousarray(y[:, c]) for y in Y_list]},
                  name=f"targets {c.start}-{c.stop - 1}") for c in chunks]
    parts = yield from run_tasks(tasks, scheduler=scheduler, token=token,
                                 shared={"X_runs": X_runs, "fit_kwargs": fit_kwargs},
                                 n_workers=n_workers, processes=processes, message="chunk")
    prov = {"distributed": {"scheduler": None if scheduler is None else _describe(scheduler),
                            "n_chunks": len(chunks), "chunk_bounds": [[c.start, c.stop] for c in chunks]}}
    merged = merge_results(parts, provenance=prov)
    h = _brain_hash(Y_list)
    if h is not None and "input_hashes" in merged.provenance:
        merged.provenance["input_hashes"] = dict(merged.provenance["input_hashes"], brain_sha1=h)
    if merged.alpha_on_edge is not None and merged.alpha_on_edge.any():
        from .ridge import AlphaOnEdgeWarning

        grid = np.asarray(merged.alpha_grid)
        warnings.warn(f"{int(merged.alpha_on_edge.sum())} of {merged.n_targets} targets chose an alpha at "
                      f"the edge of the grid [{grid.min():.3g}, {grid.max():.3g}] in some fold; consider "
                      "widening it", AlphaOnEdgeWarning, stacklevel=2)
    return merged


def fit_encoding_distributed(X_runs, Y_runs, scheduler=None, n_chunks: Optional[int] = None,
                             chunk_size: Optional[int] = None, token: Optional[CancelToken] = None,
                             on_progress=None, n_workers: Optional[int] = None, processes: bool = False,
                             **fit_kwargs):
    """:func:`engine.encoding.fit.fit_encoding` with the targets split into chunks run on Dask.

    Each chunk of targets is a full, independent fit (same features, folds, alpha grid;
    alpha chosen per target as always), so the merged result equals the single fit on all
    targets: bit-for-bit when ``n_targets_batch`` is given (chunk boundaries are then
    aligned to its batches) and BLAS runs with the same number of threads (Dask workers
    use one BLAS thread per task); otherwise to float32 rounding of the linear algebra
    (measured: scores within 1.2e-7, predictions within 2.4e-6 on z-scored data, same
    alphas).

    Parameters
    ----------
    X_runs, Y_runs
        As for ``fit_encoding``.
    scheduler : None, "local", address, or dask Client
        Where chunks run (see the module docstring); None runs them here.
    n_chunks, chunk_size : int, optional
        How to cut the targets (default: one chunk per worker; 1 chunk in process).
    token : CancelToken, optional
    on_progress : callable, optional
        Receives a Progress per finished chunk.
    n_workers, processes
        For ``scheduler="local"``.
    **fit_kwargs
        Everything else ``fit_encoding`` takes (delays, alphas, cv, backend, pca, ...).

    Returns
    -------
    EncodingResult
    """
    return run_sync(fit_encoding_distributed_job(X_runs, Y_runs, scheduler=scheduler, n_chunks=n_chunks,
                                                 chunk_size=chunk_size, token=token, n_workers=n_workers,
                                                 processes=processes, **fit_kwargs),
                    token=token, on_progress=on_progress)


def fit_encoding_many_job(X_by_name: Mapping[str, Any], Y_runs, scheduler=None,
                          token: Optional[CancelToken] = None, n_workers: Optional[int] = None,
                          processes: bool = False, **fit_kwargs):
    """Job form of :func:`fit_encoding_many` (Progress per finished fit)."""
    names = list(X_by_name)
    fit_kwargs.pop("on_progress", None)
    fit_kwargs.pop("token", None)
    if isinstance(Y_runs, Mapping):
        missing = [k for k in names if k not in Y_runs]
        if missing:
            raise MismatchError(expected_found("brain runs for every name", names, list(Y_runs)))
        tasks = [Task(_fit_problem, (X_by_name[k], Y_runs[k]), name=str(k)) for k in names]
        shared = {"fit_kwargs": fit_kwargs}
    else:
        tasks = [Task(_fit_problem, (X_by_name[k],), name=str(k)) for k in names]
        shared = {"Y_runs": Y_runs, "fit_kwargs": fit_kwargs}
    results = yield from run_tasks(tasks, scheduler=scheduler, token=token, shared=shared,
                                   n_workers=n_workers, processes=processes, message="fit")
    return dict(zip(names, results))


def fit_encoding_many(X_by_name: Mapping[str, Any], Y_runs, scheduler=None, token=None, on_progress=None,
                      n_workers: Optional[int] = None, processes: bool = False,
                      **fit_kwargs) -> Dict[str, Any]:
    """Several independent encoding fits (layers, models, subjects) as parallel tasks.

    Parameters
    ----------
    X_by_name : mapping name -> X_runs
        e.g. one entry per layer or per model.
    Y_runs : list of runs (shared by every fit: layers, models) or mapping name -> runs
        (one per fit: subjects).
    scheduler, token, on_progress, n_workers, processes
        As for :func:`fit_encoding_distributed`.
    **fit_kwargs
        Passed to every ``fit_encoding``.

    Returns
    -------
    dict name -> EncodingResult, in the order of ``X_by_name``.
    """
    return run_sync(fit_encoding_many_job(X_by_name, Y_runs, scheduler=scheduler, token=token,
                                          n_workers=n_workers, processes=processes, **fit_kwargs),
                    token=token, on_progress=on_progress)
