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

Security: **a Dask scheduler is trusted code.** Dask unpickles what the scheduler and workers
send back, and unpickling can run anything, so connect only to a cluster you (or your
institution) run. Before :class:`distributed.Client` is created, :func:`probe_scheduler` opens a
plain TCP connection with a time-out (``CONNECT_TIMEOUT_S``) and reads the first bytes of the
Dask handshake (a scheduler speaks first): a listener that never answers, or a service
that is not Dask (an SSH or HTTP server, whose bytes Dask would read as a multi-exabyte frame
length), is refused with a clear message instead of hanging or allocating. TLS clusters
(``tls://host:port``) take a :class:`distributed.security.Security` (or the CA, certificate and
key files, see :func:`make_security`), passed through to the Client.

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
import socket
import struct
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np

from ..errors import ConfigError, MismatchError, expected_found
from ..jobs import CancelToken, Progress, run_sync

__all__ = ["Task", "run_tasks", "run_tasks_sync", "open_client", "probe_scheduler", "make_security", "target_chunks",
           "fit_encoding_distributed", "fit_encoding_distributed_job", "fit_encoding_many",
           "fit_encoding_many_job", "merge_results"]

_POLL_S = 0.1  # how often a waiting job looks at its cancel token
CONNECT_TIMEOUT_S = 10.0  # how long to wait for a user's scheduler to answer (connect + handshake)
_MAX_HANDSHAKE_BYTES = 1 << 20   # a Dask handshake is a few hundred bytes
_MAX_HANDSHAKE_FRAMES = 64
DASK_SCHEMES = ("tcp", "tls", "inproc", "ucx", "ws", "wss")


def _split_address(address: str):
    scheme, _, rest = address.partition("://")
    rest = rest.split("/", 1)[0]
    if rest.startswith("["):                      # [ipv6]:port
        host, _, port = rest[1:].partition("]")
        port = port.lstrip(":")
    else:
        host, _, port = rest.rpartition(":") if rest.count(":") == 1 else (rest, "", "")
    if not host:
        host, port = rest, ""
    try:
        port_n = int(port) if port else 8786
    except ValueError:
        raise ConfigError(expected_found("scheduler address", "scheme://host:port (e.g. tcp://10.0.0.5:8786)",
                                         repr(address))) from None
    return scheme.lower(), host, port_n


def _recv_exact(sock, n: int, deadline: float) -> bytes:
    buf = b""
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout()
        sock.settimeout(left)
        chunk = sock.recv(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


def probe_scheduler(address: str, timeout_s: float = None) -> None:
    """Check that a Dask scheduler answers at ``address`` before a Client connects to it.

    Opens a TCP connection (time-out ``timeout_s``); for ``tcp://`` also reads the start of the
    Dask handshake the scheduler sends first (frame count and lengths) and checks it is
    plausible. ``tls://`` addresses are only connected to (the TLS handshake itself is
    bounded by the Client's connect time-out).

    Raises
    ------
    ConfigError
        Nothing listening, no answer within the time-out, or an answer that is not Dask.
    """
    timeout_s = CONNECT_TIMEOUT_S if timeout_s is None else float(timeout_s)
    scheme, host, port = _split_address(address)
    if scheme not in DASK_SCHEMES:
        raise ConfigError(expected_found("scheduler address", f"one of {', '.join(s + '://' for s in DASK_SCHEMES)}"
                                         " followed by host:port", repr(address)))
    if scheme not in ("tcp", "tls"):
        return
    deadline = time.monotonic() + timeout_s
    try:
        sock = socket.create_connection((host, port), timeout=timeout_s)
    except socket.timeout:
        raise ConfigError(expected_found("Dask scheduler", f"one answering at {address}",
                                         f"no connection within {timeout_s:g} s (a firewall, or the wrong host?)")) \
            from None
    except OSError as exc:
        raise ConfigError(expected_found("Dask scheduler", f"one listening at {address}",
                                         f"{exc.strerror or exc} (is `dask scheduler` running there, on that "
                                         "port?)")) from None
    try:
        if scheme == "tls":
            return
        try:
            head = _recv_exact(sock, 16, deadline)
        except socket.timeout:
            raise ConfigError(expected_found(
                "Dask scheduler", f"a Dask handshake from {address} within {timeout_s:g} s",
                "a connection that was accepted but never answered: this is not a Dask scheduler (or it is "
                "overloaded, or it expects TLS: use tls://... with the cluster's certificates)")) from None
        except OSError as exc:
            raise ConfigError(expected_found("Dask scheduler", f"a Dask handshake from {address}",
                                             f"a connection error ({exc.strerror or exc})")) from None
        if len(head) < 16:
            raise ConfigError(expected_found("Dask scheduler", f"a Dask handshake from {address}",
                                             f"the connection closed after {len(head)} bytes: not a Dask scheduler"))
        total, n_frames = struct.unpack("<QQ", head)
        if not (0 < n_frames <= _MAX_HANDSHAKE_FRAMES and 8 * (n_frames + 1) <= total <= _MAX_HANDSHAKE_BYTES):
            shown = head.decode("ascii", "replace").replace("\r", " ").replace("\n", " ").strip()
            raise ConfigError(expected_found(
                "Dask scheduler", f"a Dask handshake from {address}",
                f"another kind of service (it sent {shown[:40]!r}): not a Dask scheduler; check the address "
                "and port (a Dask scheduler listens on 8786 by default)"))
    finally:
        try:
            sock.close()
        except OSError:  # pragma: no cover
            pass


def make_security(ca_file=None, cert_file=None, key_file=None, require_encryption: bool = True):
    """A :class:`distributed.security.Security` for a TLS cluster from its PEM files.

    Parameters
    ----------
    ca_file : path
        Certificate authority that signed the scheduler's certificate.
    cert_file, key_file : path
        This client's certificate and private key (``key_file`` may be omitted when the
        certificate file holds the key).
    """
    from pathlib import Path

    from distributed.security import Security

    for what, p in (("CA file", ca_file), ("certificate", cert_file), ("key", key_file)):
        if p is not None and not Path(p).is_file():
            raise ConfigError(expected_found(f"TLS {what}", "an existing PEM file", f"nothing at {p}"))
    if ca_file is None or cert_file is None:
        raise ConfigError(expected_found("TLS settings", "a CA file and a client certificate (and key)",
                                         f"CA {ca_file!r}, certificate {cert_file!r}"))
    return Security(tls_ca_file=str(ca_file), tls_client_cert=str(cert_file),
                    tls_client_key=str(key_file) if key_file else None, require_encryption=require_encryption)


def _security_for(address: str, security):
    if security is None or not isinstance(security, dict):
        return security
    return make_security(security.get("ca_file"), security.get("cert_file"), security.get("key_file"),
                         bool(security.get("require_encryption", True)))


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
                threads_per_worker: Optional[int] = None, security=None,
                timeout_s: Optional[float] = None):
    """A ``(client, owned)`` pair for ``scheduler`` ("local", an address, or a Client).

    ``owned`` is True when the client (and its LocalCluster) were started here and must be
    closed by the caller. For an address, :func:`probe_scheduler` runs first (time-outs on
    connect and handshake, "not a Dask scheduler"); ``security`` (a ``Security`` or a dict
    ``{"ca_file", "cert_file", "key_file"}``) is passed to the Client for ``tls://``.
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
    timeout_s = CONNECT_TIMEOUT_S if timeout_s is None else float(timeout_s)
    security = _security_for(address, security)
    if address.lower().startswith("tls://") and security is None:
        from distributed.security import Security

        security = Security()   # from the dask configuration (distributed.comm.tls.*)
        if not security.tls_ca_file:
            raise ConfigError(expected_found(f"TLS settings for {address}", "the cluster's CA file and a client "
                                             "certificate (make_security, or distributed.comm.tls.* in the dask "
                                             "configuration)", "none"))
    probe_scheduler(address, timeout_s)
    import dask

    kwargs = {"security": security} if security is not None else {}
    try:
        with dask.config.set({"distributed.comm.timeouts.connect": f"{timeout_s}s"}):
            client = Client(address, timeout=f"{timeout_s}s", **kwargs)
    except Exception as exc:  # noqa: BLE001 - OSError, TimeoutError, TLS and protocol errors alike
        raise ConfigError(expected_found("Dask scheduler", f"one answering at {address}",
                                         f"no usable answer within {timeout_s:g} s ({exc.__class__.__name__}: "
                                         f"{str(exc)[:200]})")) from None
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
              message: str = "chunk", security=None):
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
    security : distributed.security.Security or dict, optional
        TLS settings for a ``tls://`` scheduler (see :func:`open_client`).

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
                                threads_per_worker=threads_per_worker, security=security)
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
        space_alphas=cat("space_alphas", axis=1),
        tr_s=getattr(first, "tr_s", None), delays_s=list(getattr(first, "delays_s", []) or []),
        cv_label=getattr(first, "cv_label", ""), options=dict(getattr(first, "options", {}) or {}),
        warnings=list(dict.fromkeys(w for p in parts for w in (getattr(p, "warnings", None) or []))),
        p_values=cat("p_values"), q_values=cat("q_values"),
    )


def _brain_hash(Y_runs) -> Optional[str]:
    try:
        from .fit import _hash_runs
    except ImportError:  # pragma: no cover
        return None
    return _hash_runs([np.asarray(y, dtype=np.float32) for y in Y_runs])


def fit_encoding_distributed_job(X_runs, Y_runs, scheduler=None, n_chunks: Optional[int] = None,
                                 chunk_size: Optional[int] = None, token: Optional[CancelToken] = None,
                                 n_workers: Optional[int] = None, processes: bool = False, security=None,
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
                                 n_workers=n_workers, processes=processes, message="chunk", security=security)
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
                             security=None, **fit_kwargs):
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
                                                 processes=processes, security=security, **fit_kwargs),
                    token=token, on_progress=on_progress)


def fit_encoding_many_job(X_by_name: Mapping[str, Any], Y_runs, scheduler=None,
                          token: Optional[CancelToken] = None, n_workers: Optional[int] = None,
                          processes: bool = False, security=None, **fit_kwargs):
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
                                   n_workers=n_workers, processes=processes, message="fit", security=security)
    return dict(zip(names, results))


def fit_encoding_many(X_by_name: Mapping[str, Any], Y_runs, scheduler=None, token=None, on_progress=None,
                      n_workers: Optional[int] = None, processes: bool = False, security=None,
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
                                          n_workers=n_workers, processes=processes, security=security,
                                          **fit_kwargs),
                    token=token, on_progress=on_progress)
