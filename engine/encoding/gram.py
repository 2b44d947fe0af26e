"""Nested leave-one-run-out ridge whose cost grows with the data, not with the folds.

:func:`fit_encoding_gram_job` fits the same model as :func:`engine.encoding.fit.fit_encoding_job`
on its default path (one ridge per target, alpha chosen by an inner cross-validation grouped
by run inside every outer fold of held-out runs; himalaya's ``RidgeCV`` convention: mean
validation MSE over inner folds, ties to the larger alpha, refit on all training runs) and
returns the same :class:`~engine.encoding.results.EncodingResult`, to float32 precision.

How it works
------------
Runs are read one at a time (arrays, ``np.memmap`` or ``.npy`` paths), preprocessed locally
(drift regression, z-score, FIR delays and edges are per run) and staged (in memory, or as
per-run ``.npy`` files in a scratch folder when large). One pass accumulates the totals

    G = sum_r X_r^T X_r   (n_features^2, float64),    B = sum_r X_r^T Y_r   (n_features x n_targets).

Outer fold with test runs T: ``A = G - sum_{r in T} X_r^T X_r`` (a downdate), one float64
eigendecomposition ``A = V diag(s) V^T``, ``Z = V^T (B - sum_T X_r^T Y_r)``. Every inner fold
(validation runs v, training the other training runs) reuses that decomposition: with
``Q = X_v V`` and ``D = diag(1 / (s + alpha))`` the leave-group-out identity (Woodbury over the
validation rows) gives the validation residuals of the model fit without ``v`` from the
residuals of the model fit with it:

    e_v = (I - Q D Q^T)^{-1} (Y_v - Q D Z)          (an n_v x n_v Cholesky per alpha),

and when a validation set has more rows than features, the equivalent p x p form
``e_v = Y_v - Q (diag(s + alpha) - Q^T Q)^{-1} (Z - Q^T Y_v)``. Both are exact; they replace
one eigendecomposition per inner fold (the cost of :func:`~engine.encoding.ridge.ridge_cv` and
of himalaya's ``RidgeCV``, which takes an SVD per inner fold) by one per outer fold. The test
predictions are ``X_T V (Z / (s + alpha_best))``: no coefficients are formed. Everything in
the inner loop is float64 (``I - Q D Q^T`` is ill-conditioned for small alphas).

Cost per outer fold: one ``p^3`` eigendecomposition, ``2 N p^2`` for the ``Q`` of every inner
fold, ``2 N p t`` per alpha for the residuals, ``N n_v p`` per alpha for the small systems
(whose factors are kept across the target batches of the fold, up to ``FACTOR_CACHE_BYTES``).
Memory: ``p^2`` float64 matrices (G, A overwritten by its eigendecomposition, V), one target
batch (``p x batch`` float64) and one inner fold's rows, whatever the number of runs; a fit
whose folds all have fewer training TRs than features uses the kernel form only and never forms
G or B (``n_train^2 < p^2``). Predictions are written per target batch (to the HDF5 result with
``out_path``). The batch is chosen from ``memory_target_bytes`` when given (the pipeline ties it
to the brain data's size), else from ``memory_limit_bytes`` (default 70 % of what is available).
:func:`estimate_memory` says how much before the fit, and a fit that cannot hold even one
target stops with :class:`NotEnoughMemoryError` (a ConfigError) naming needed and available
memory, before reading any data.

Backends: numpy, torch (CPU) and torch_cuda (target batch from ``torch.cuda.mem_get_info``).
With ``scheduler=`` (see :mod:`engine.encoding.distributed`), chunks of outer folds run as
Dask tasks and the result is identical.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import ConfigError, DataError, MismatchError, expected_found
from ..jobs import CancelToken, Progress, run_sync
from ..timeline import align_lengths

__all__ = ["fit_encoding_gram_job", "fit_encoding_gram", "nested_ridge_gram_job", "estimate_memory",
           "available_memory", "gram_supported", "RunPlan", "GramFold", "read_run", "NotEnoughMemoryError"]

#: Fraction of the available memory a fit plans to use.
MEMORY_FRACTION = 0.7
#: Prepared runs are staged in memory up to this size (bytes), else on disk.
STAGE_IN_MEMORY_BYTES = 5.0e8


# ---------------------------------------------------------------------------- memory
class NotEnoughMemoryError(ConfigError):
    """Even one target batch of a Gram fit does not fit in the memory available (raised before
    any data is read; the message names the memory needed and available)."""


def available_memory(backend: str = "numpy") -> int:
    """Bytes free for a fit: ``torch.cuda.mem_get_info`` on CUDA, MemAvailable on the CPU."""
    if str(backend) in ("torch_cuda", "cuda"):
        import torch

        return int(torch.cuda.mem_get_info()[0])
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    try:  # pragma: no cover
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        return 8 << 30


def _fixed_bytes(p: int) -> int:
    # G, A, V (float64) and the eigensolver's workspace (about one more p^2)
    return 8 * p * p * 4


def estimate_memory(n_runs: int, n_trs_per_run: int, n_features: int, n_targets: int,
                    n_alphas: int = 11, n_targets_batch: Optional[int] = None,
                    n_raw_features: Optional[int] = None, keep_predictions: bool = True,
                    stage_in_memory: Optional[bool] = None) -> int:
    """Peak memory (bytes) of :func:`fit_encoding_gram_job`, to print before a fit.

    Parameters
    ----------
    n_runs, n_trs_per_run : int
        Runs and TRs per run (the longest).
    n_features : int
        Columns of the model (features x delays).
    n_targets : int
        Parcels, vertices or voxels.
    n_alphas : int
        Size of the alpha grid (it does not change the memory: alphas are looped).
    n_targets_batch : int, optional
        Targets solved at once (default: all).
    n_raw_features : int, optional
        Columns read per run before delays (default ``n_features``).
    keep_predictions : bool
        Held-out predictions and measured data kept in memory (False when written to a file).
    stage_in_memory : bool, optional
        Prepared runs kept in memory (default: when under ``STAGE_IN_MEMORY_BYTES``).

    Returns
    -------
    int
        Bytes.
    """
    p, t, n = int(n_features), int(n_targets), int(n_trs_per_run)
    n_total = int(n_runs) * n
    tb = int(min(t, n_targets_batch or t))
    raw = int(n_raw_features or p)
    staged = 4 * n_total * (p + t)
    if stage_in_memory is None:
        stage_in_memory = staged <= STAGE_IN_MEMORY_BYTES
    n_train = (int(n_runs) - 1) * n            # leave-one-run-out
    primal = n_train >= p
    n_kernel = 0 if primal else n_train
    total = _fold_fixed_bytes(p, n, n, n_kernel, primal)
    total += 4 * n * (raw + 2 * p) + 8 * n * p        # one run as read, delayed and in float64
    if primal:
        total += 8 * p * t                            # B = X^T Y (on disk when large)
    total += _per_target_bytes(p, n, n, n_kernel, primal, n) * tb
    if stage_in_memory:
        total += staged
    if keep_predictions:
        total += 2 * 4 * n_total * t
    return int(total)


def _format_bytes(b: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(b) < 1024 or unit == "TB":
            return f"{b:.0f} {unit}" if unit == "B" else f"{b:.1f} {unit}"
        b /= 1024.0
    return f"{b:.1f} TB"  # pragma: no cover


#: Smallest target batch a fit plans for when a soft memory target is lower (batches this small
#: still make efficient GEMMs); the hard limit is never exceeded.
MIN_BATCH = 64


def _fold_fixed_bytes(p: int, n_max: int, n_test: int, n_kernel: int, primal: bool) -> int:
    """Per-fold memory that does not grow with the target batch (float64).

    Primal folds: G, the downdated A, V and the eigensolver's workspace (``_fixed_bytes``), one
    inner fold's ``Q`` and ``Q D`` (``n_max x p``) and its ``n_max^2`` system. Kernel folds: the
    training rows (``n_kernel x p``), the kernel, its eigenvectors and workspace (``3 n_kernel^2``),
    the test rows' kernel (``n_test x (n_kernel + p)``) and the inner fold's ``Q`` and system.
    """
    out = 0
    if primal:
        n_small = min(n_max, p)                   # Woodbury (n_v^2) or p x p system
        out = _fixed_bytes(p) + 8 * (2 * n_max * p + 2 * n_small * n_small)
    if n_kernel:
        k = 8 * (n_kernel * p + 3 * n_kernel * n_kernel + n_test * (n_kernel + p)
                 + 2 * n_max * n_kernel + 2 * n_max * n_max)
        out = max(out, k + (8 * p * p if primal else 0))    # G is held while kernel folds run
    return int(out)


def _per_target_bytes(p: int, n_max: int, n_test: int, n_kernel: int, primal: bool, n_run: int) -> int:
    """Memory per target of the batch: the fold's float64 blocks (``B - X_T^T Y_T``, ``Z``, the
    coefficients, validation targets, two residual blocks, the test predictions and data) or,
    in the reading pass (the larger of the two), one run's brain batch as read and prepared
    (float32 + float64 copies)."""
    per = 0
    if primal:
        per = 8 * (3 * p + 4 * n_max + 2 * n_test)
    if n_kernel:
        per = max(per, 8 * (4 * n_kernel + 4 * n_max + 2 * n_test) + 4 * n_kernel)
    return int(max(per, 28 * n_run))


# ---------------------------------------------------------------------------- array ops
class _Ops:
    """float64 linear algebra on numpy or torch (CPU / CUDA), the few calls the solver needs."""

    def __init__(self, backend: str = "numpy") -> None:
        from .backends import get_backend

        self.bk = get_backend(backend)
        self.name = self.bk.name
        self.torch = getattr(self.bk, "torch", None)

    def dev(self, a):
        """Host array -> device float64."""
        return self.bk.asarray(a, "float64")

    def host(self, a) -> np.ndarray:
        return np.asarray(self.bk.to_numpy(a), dtype=np.float64)

    def eigh(self, a, overwrite: bool = False):
        """Ascending eigenvalues (clipped at 0) and eigenvectors of symmetric ``a`` (its lower
        triangle is read). ``overwrite``: ``a`` may be destroyed (numpy: no copy of it is made,
        one ``p^2`` less at the peak)."""
        if overwrite and self.torch is None and isinstance(a, np.ndarray) and a.dtype == np.float64 \
                and a.flags.c_contiguous and a.shape[0] >= 128:
            import scipy.linalg

            from .backends import _one_blas_thread

            with _one_blas_thread():       # as NumpyBackend.eigh (memory-bound reduction)
                # a.T is Fortran-ordered: LAPACK works in place on it (a symmetric: same matrix)
                s, v = scipy.linalg.eigh(a.T, lower=False, driver="evr", overwrite_a=True, check_finite=False)
            return np.maximum(s, 0.0), v
        s, v = self.bk.eigh(a)
        return self.bk.clip_min(s, 0.0), v

    def eye(self, n):
        if self.torch is not None:
            return self.torch.eye(n, dtype=self.torch.float64, device=self.bk.device)
        return np.eye(n)

    def add_diag(self, k, v):
        """``k + diag(v)`` (``k`` is a fresh array, modified in place)."""
        if self.torch is not None:
            k.diagonal().add_(v)
            return k
        k[np.diag_indices(k.shape[0])] += v
        return k

    def factor(self, k):
        """A factorisation of symmetric positive definite ``k`` for :meth:`apply` (Cholesky; an
        eigendecomposition with clipped eigenvalues when Cholesky fails)."""
        if self.torch is not None:
            torch = self.torch
            low, info = torch.linalg.cholesky_ex(k)
            if int(info) == 0:
                return ("chol", low)
            w, u = torch.linalg.eigh(k)
            return ("eig", (torch.clamp(w, min=float(w.max()) * 1e-15), u))
        import scipy.linalg

        try:
            return ("chol", scipy.linalg.cho_factor(k, lower=True, check_finite=False))
        except np.linalg.LinAlgError:
            w, u = np.linalg.eigh(k)
            return ("eig", (np.maximum(w, w.max() * 1e-15), u))

    def apply(self, fac, rhs):
        """``k^-1 rhs`` from :meth:`factor` of ``k``."""
        kind, f = fac
        if kind == "eig":
            w, u = f
            return u @ ((u.T @ rhs) / w[:, None])
        if self.torch is not None:
            return self.torch.cholesky_solve(rhs, f)
        import scipy.linalg

        return scipy.linalg.cho_solve(f, rhs, check_finite=False)

    def chol_solve(self, k, rhs):
        """Solve ``k x = rhs`` for symmetric positive definite ``k`` (Cholesky; eigen fallback)."""
        if self.torch is not None:
            torch = self.torch
            low, info = torch.linalg.cholesky_ex(k)
            if int(info) == 0:
                return torch.cholesky_solve(rhs, low)
            w, u = torch.linalg.eigh(k)
            w = torch.clamp(w, min=float(w.max()) * 1e-15)
            return u @ ((u.T @ rhs) / w[:, None])
        import scipy.linalg

        try:
            c = scipy.linalg.cho_factor(k, lower=True, check_finite=False)
            return scipy.linalg.cho_solve(c, rhs, check_finite=False)
        except np.linalg.LinAlgError:
            w, u = np.linalg.eigh(k)
            w = np.maximum(w, w.max() * 1e-15)
            return u @ ((u.T @ rhs) / w[:, None])


# ---------------------------------------------------------------------------- runs
def _drop_pages(a) -> None:
    """Let the kernel reclaim a memory map's pages once read (keeps RSS to one run)."""
    mm = getattr(a, "_mmap", None)
    if mm is None:
        base = getattr(a, "base", None)
        mm = getattr(base, "_mmap", None) if base is not None else None
    if mm is not None and hasattr(mm, "madvise"):
        import mmap

        try:
            mm.madvise(mmap.MADV_DONTNEED)
        except (OSError, ValueError):  # pragma: no cover - best effort
            pass


def _read(run, cols: Optional[slice] = None) -> np.ndarray:
    """One run (or its columns ``cols``) as a float32 array in memory: an array, an
    ``np.memmap`` or a ``.npy`` path. A memory map's pages are released after the copy."""
    if isinstance(run, (str, os.PathLike)):
        path = Path(run)
        if not path.is_file():
            raise DataError(expected_found("run file", "an existing .npy file", f"no file at {path}"))
        mm = np.load(path, mmap_mode="r")
        try:
            a = np.array(mm if cols is None else (mm[:, cols] if mm.ndim == 2 else mm[:, None]),
                         dtype=np.float32)
        finally:
            _drop_pages(mm)
            del mm
    else:
        if cols is None or np.ndim(run) < 2:
            a = np.array(run, dtype=np.float32)
        else:
            a = np.array(run[:, cols], dtype=np.float32)
        if isinstance(run, np.memmap):
            _drop_pages(run)
    if a.ndim == 1:
        a = a[:, None]
    return a


read_run = _read


def _shape(run) -> Tuple[int, ...]:
    if isinstance(run, (str, os.PathLike)):
        path = Path(run)
        if not path.is_file():
            raise DataError(expected_found("run file", "an existing .npy file", f"no file at {path}"))
        mm = np.load(path, mmap_mode="r")
        shape = tuple(mm.shape)
        del mm
        return shape
    return tuple(np.shape(run))


@dataclasses.dataclass
class RunPlan:
    """Nested cross-validation over runs.

    Attributes
    ----------
    test_runs : list of list of int
        Held-out runs of each outer fold.
    train_runs : list of list of int
        Training runs of each outer fold.
    inner : list of list of list of int
        Per outer fold, the validation runs of each inner fold (the other training runs train).
    """

    test_runs: List[List[int]]
    train_runs: List[List[int]]
    inner: List[List[List[int]]]


@dataclasses.dataclass
class GramFold:
    """What one outer fold found, for one batch of targets."""

    fold: int
    cols: slice
    best_index: np.ndarray          # (batch,) int
    cv_scores: np.ndarray           # (n_alphas, batch) float64, mean over inner folds
    predictions: List[np.ndarray]   # per test run (n_trs, batch) float32
    measured: List[np.ndarray]      # per test run (n_trs, batch) float32, the data predicted


class _BlockWriter:
    """``w[:, cols] = y`` into a (n_blocks, n_trs, batch) memory map, columns aligned on blocks."""

    def __init__(self, mm, batch: int) -> None:
        self.mm, self.batch = mm, batch

    def __setitem__(self, key, value) -> None:
        cols = key[1]
        self.mm[cols.start // self.batch, :, :cols.stop - cols.start] = value

    def flush(self) -> None:
        self.mm.flush()
        _drop_pages(self.mm)


class _Staged:
    """Prepared runs: in memory, or as per-run .npy files in a scratch folder."""

    def __init__(self, folder: Optional[str]) -> None:
        self.folder = folder
        self.x: List[Any] = []
        self.y: List[Any] = []
        self.rows: List[int] = []

    def add_x(self, x: np.ndarray) -> None:
        self.rows.append(int(x.shape[0]))
        if self.folder is None:
            self.x.append(x)
            return
        path = os.path.join(self.folder, f"x_{len(self.x):05d}.npy")
        np.save(path, x)
        self.x.append(path)

    def open_y(self, n_trs: int, n_targets: int, batch: int):
        """A writer ``w[:, cols] = y`` for the next brain run. On disk the run is stored as
        contiguous blocks of ``batch`` columns, so a target batch is read in one piece."""
        if self.folder is None:
            y = np.empty((n_trs, n_targets), dtype=np.float32)
            self.y.append(y)
            return y
        n_blocks = math.ceil(n_targets / batch)
        path = os.path.join(self.folder, f"y_{len(self.y):05d}.npy")
        self.y.append((path, batch))
        return _BlockWriter(np.lib.format.open_memmap(path, mode="w+", dtype=np.float32,
                                                      shape=(n_blocks, n_trs, batch)), batch)

    def X(self, i: int) -> np.ndarray:
        return _read(self.x[i]) if self.folder is not None else self.x[i]

    def n_rows(self, i: int) -> int:
        return int(self.rows[i])

    def Y(self, i: int, cols: slice) -> np.ndarray:
        if self.folder is None:
            return self.y[i][:, cols]
        path, batch = self.y[i]
        if cols.start % batch == 0 and cols.stop - cols.start <= batch:
            mm = np.load(path, mmap_mode="r")
            try:
                return np.array(mm[cols.start // batch, :, :cols.stop - cols.start])
            finally:
                _drop_pages(mm)
                del mm
        mm = np.load(path, mmap_mode="r")   # columns not aligned on the blocks
        try:
            full = np.concatenate(list(mm), axis=1)
            return np.array(full[:, cols])
        finally:
            _drop_pages(mm)
            del mm

    def spec(self) -> dict:
        """Picklable description (arrays or paths) for Dask tasks."""
        return dict(folder=self.folder, x=list(self.x), y=list(self.y), rows=list(self.rows))

    @classmethod
    def from_spec(cls, spec: dict) -> "_Staged":
        s = cls(spec["folder"])
        s.x, s.y, s.rows = list(spec["x"]), list(spec["y"]), list(spec["rows"])
        return s

    def close(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


# ---------------------------------------------------------------------------- one outer fold
def _solve_outer_fold(f: int, plan: RunPlan, staged: _Staged, G: np.ndarray, B, alphas: np.ndarray,
                      backend: str, n_targets_batch: int, n_targets: int, token: Optional[CancelToken] = None):
    """Generator: one :class:`GramFold` per target batch of outer fold ``f``."""
    test, groups = plan.test_runs[f], plan.inner[f]
    n_train_rows = sum(staged.n_rows(r) for r in plan.train_runs[f])
    if G is None or n_train_rows < G.shape[0]:     # no Gram accumulated: every fold is a kernel fold
        yield from _solve_outer_fold_dual(f, plan, staged, alphas, backend, n_targets_batch, n_targets, token)
        return
    ops = _Ops(backend)
    log_alphas = np.log(alphas)
    A = np.array(G, dtype=np.float64, copy=True)
    x_test = [staged.X(r) for r in test]
    for x in x_test:
        x64 = x.astype(np.float64)
        A -= x64.T @ x64
        del x64
    # eigh reads one triangle (no symmetrised copies) and, on numpy, overwrites A in place
    s, V = ops.eigh(ops.dev(A), overwrite=True)
    del A
    p = G.shape[0]
    cache = _factor_cache(groups, alphas, staged.n_rows, p, n_targets, n_targets_batch)
    for start in range(0, n_targets, n_targets_batch):
        if token is not None:
            token.raise_if_cancelled()
        cols = slice(start, min(start + n_targets_batch, n_targets))
        nb = cols.stop - cols.start
        b_s = np.array(B[:, cols], dtype=np.float64)            # n_features, batch
        for r, x in zip(test, x_test):
            b_s -= x.astype(np.float64).T @ staged.Y(r, cols).astype(np.float64)
        Z = V.T @ ops.dev(b_s)                                   # n_features, batch
        del b_s
        cv = np.zeros((alphas.size, nb), dtype=np.float64)
        for g, factors in zip(groups, cache):
            xg = ops.dev(np.concatenate([staged.X(r) for r in g], 0) if len(g) > 1 else staged.X(g[0]))
            yg = ops.dev(np.concatenate([staged.Y(r, cols) for r in g], 0) if len(g) > 1
                         else staged.Y(g[0], cols))
            n_g = xg.shape[0]
            Q = xg @ V                                           # n_g, n_features
            del xg
            if n_g < p:    # Woodbury over the validation rows: an n_g x n_g system per alpha
                _woodbury_scores(ops, Q, [1.0 / (s + float(a)) for a in alphas], Z, yg, cv, factors)
            else:          # p x p form
                qq = Q.T @ Q
                zc = Z - Q.T @ yg
                for i, a in enumerate(alphas):
                    k = ops.add_diag(-qq, s + float(a))
                    e = yg - Q @ ops.chol_solve(k, zc)
                    cv[i] -= ops.host((e * e).mean(0))
                    del k, e
                del qq, zc
            del Q, yg
        cv /= len(groups)
        best = np.argmax(cv + 1e-10 * log_alphas[:, None], axis=0)
        W = _scale_rows(ops, Z, s, alphas[best])                 # V^T coef, n_features x batch (in Z)
        preds = [(ops.dev(x) @ V @ W) for x in x_test]
        preds = [np.asarray(ops.bk.to_numpy(pr), dtype=np.float32) for pr in preds]
        del Z, W
        yield GramFold(fold=f, cols=cols, best_index=best, cv_scores=cv, predictions=preds,
                       measured=[staged.Y(r, cols) for r in test])


def _scale_rows(ops: _Ops, Z, s, alpha_per_target: np.ndarray, rows: int = 512):
    """``Z / (s[:, None] + alpha[None, :])`` in place (the coefficients in the eigenbasis), by
    blocks of rows so that no second (k, batch) array is made."""
    a = ops.dev(np.asarray(alpha_per_target, dtype=np.float64)[None, :])
    for r0 in range(0, Z.shape[0], rows):
        Z[r0:r0 + rows] /= s[r0:r0 + rows, None] + a
    return Z


def _woodbury_scores(ops: _Ops, Q, weights, Z, yg, cv: np.ndarray, factors: Optional[list] = None) -> None:
    """Subtract each alpha's validation MSE of one inner fold from ``cv`` (n_alphas, batch).

    ``Q`` (n_v, k), ``weights[i]`` (k,) the diagonal ``D`` of alpha i, ``Z`` (k, batch), ``yg``
    (n_v, batch): residuals with the fold ``r = yg - Q D Z``, without it ``(I - Q D Q^T)^-1 r``
    (one Cholesky factorisation and solve per alpha). One alpha at a time: the temporaries are
    one ``Q D``, one ``n_v x n_v`` system and two residual blocks, whatever the alpha grid.
    ``factors``: a list (one slot per alpha) kept across the target batches of an outer fold:
    ``I - Q D Q^T`` does not depend on the targets, so it is formed and factorised once.
    """
    for i, w in enumerate(weights):
        qd = Q * w[None, :]                                      # Q D
        resid = yg - qd @ Z                                      # residuals of the fit with the fold
        fac = factors[i] if factors is not None else None
        if fac is None:
            k = qd @ Q.T                                         # H = Q D Q^T, n_v x n_v
            k *= -1.0
            fac = ops.factor(ops.add_diag(k, 1.0))               # I - H
            del k
            if factors is not None:
                factors[i] = fac
        del qd
        e = ops.apply(fac, resid)                                # residuals without the fold
        del resid, fac
        e *= e
        cv[i] -= ops.host(e.mean(0))
        del e


#: Cholesky factors of the inner folds' ``I - H`` are kept across the target batches of an outer
#: fold up to this many bytes (they do not depend on the targets).
FACTOR_CACHE_BYTES = 64e6


def _factor_cache(groups, alphas, n_rows, p: int, n_targets: int, n_targets_batch: int):
    """Per inner fold, a list of factor slots (one per alpha) when the fold has several target
    batches and the factors fit in ``FACTOR_CACHE_BYTES``; else Nones (factorised per batch)."""
    sizes = [sum(n_rows(r) for r in g) for g in groups]
    need = sum(8 * n * n for n in sizes if n < p) * len(alphas)
    if n_targets_batch >= n_targets or need > FACTOR_CACHE_BYTES:
        return [None] * len(groups)
    return [[None] * len(alphas) for _ in groups]


def _solve_outer_fold_dual(f: int, plan: RunPlan, staged: "_Staged", alphas: np.ndarray, backend: str,
                           n_targets_batch: int, n_targets: int, token: Optional[CancelToken] = None):
    """Kernel form, when the fold's training runs have fewer TRs than features.

    ``K = X_S X_S^T = U diag(s) U^T`` (float64, n_train^2 <= n_features^2); the hat matrix of
    the fit on the training runs is ``U diag(s / (s + alpha)) U^T``, so the same leave-group-out
    identity holds with ``Q = U[rows of v]``, ``D = s / (s + alpha)`` and ``Z = U^T Y_S``.
    """
    ops = _Ops(backend)
    test, train, groups = plan.test_runs[f], plan.train_runs[f], plan.inner[f]
    log_alphas = np.log(alphas)
    sizes = [staged.n_rows(r) for r in train]
    starts = dict(zip(train, np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int).tolist()))
    xtr = ops.dev(np.concatenate([staged.X(r) for r in train], 0))      # n_train, n_features
    s, U = ops.eigh(xtr @ xtr.T, overwrite=True)
    x_test = [ops.dev(staged.X(r)) for r in test]
    ktu = [(x @ xtr.T) @ U for x in x_test]                               # n_test, n_train
    cache = _factor_cache(groups, alphas, staged.n_rows, int(xtr.shape[0]) + 1, n_targets, n_targets_batch)
    del xtr
    for start in range(0, n_targets, n_targets_batch):
        if token is not None:
            token.raise_if_cancelled()
        cols = slice(start, min(start + n_targets_batch, n_targets))
        nb = cols.stop - cols.start
        ytr = ops.dev(np.concatenate([staged.Y(r, cols) for r in train], 0))
        Z = U.T @ ytr                                                     # n_train, batch
        cv = np.zeros((alphas.size, nb), dtype=np.float64)
        for g, factors in zip(groups, cache):
            rows = np.concatenate([np.arange(starts[r], starts[r] + staged.n_rows(r)) for r in g])
            Q = ops.bk.take_rows(U, rows)
            yg = ops.bk.take_rows(ytr, rows)
            _woodbury_scores(ops, Q, [s / (s + float(a)) for a in alphas], Z, yg, cv, factors)
            del Q, yg
        cv /= len(groups)
        best = np.argmax(cv + 1e-10 * log_alphas[:, None], axis=0)
        W = _scale_rows(ops, Z, s, alphas[best])
        preds = [np.asarray(ops.bk.to_numpy(k @ W), dtype=np.float32) for k in ktu]
        del Z, W, ytr
        yield GramFold(fold=f, cols=cols, best_index=best, cv_scores=cv, predictions=preds,
                       measured=[staged.Y(r, cols) for r in test])


def _blas_threads_for(backend: str):
    """One BLAS thread when the CPU is oversubscribed (load average >= cores), else the default.

    The inner folds make many small GEMMs and Cholesky solves; on a busy machine every
    multi-threaded call waits for a descheduled thread (measured here: 4x slower with 2
    threads at load 11 on 2 cores). Results agree to rounding either way.
    """
    from .backends import _one_blas_thread

    class _Nothing:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    if str(backend) in ("torch_cuda", "cuda"):
        return _Nothing()
    try:
        busy = os.getloadavg()[0] >= (os.cpu_count() or 1)
    except OSError:  # pragma: no cover
        busy = False
    return _one_blas_thread() if busy else _Nothing()


def _solve_outer_fold_threads(*args, **kwargs):
    """:func:`_solve_outer_fold` with the BLAS thread count chosen per fold."""
    gen = _solve_outer_fold(*args, **kwargs)
    while True:
        with _blas_threads_for(args[6] if len(args) > 6 else kwargs.get("backend", "numpy")):
            try:
                item = next(gen)
            except StopIteration:
                return
        yield item


def _fold_chunk_task(fold_ids, plan, staged_spec, G, B, alphas, backend, n_targets_batch, n_targets):
    """Dask task: whole outer folds (all target batches), returned as a list of GramFold."""
    staged = _Staged.from_spec(staged_spec)
    out = []
    for f in fold_ids:
        out.extend(_solve_outer_fold_threads(f, plan, staged, G, B, alphas, backend, n_targets_batch, n_targets))
    return out


# ---------------------------------------------------------------------------- the core job
def nested_ridge_gram_job(X_runs, Y_runs, alphas, plan: RunPlan, backend: str = "numpy",
                          n_targets_batch: Optional[int] = None, prepare_x=None, prepare_y=None,
                          memory_limit_bytes: Optional[float] = None, scratch_dir=None,
                          stage_in_memory: Optional[bool] = None, scheduler=None,
                          n_chunks: Optional[int] = None, token: Optional[CancelToken] = None,
                          on_batch=None, on_run=None, keep_predictions: bool = True, verbose: bool = False,
                          memory_target_bytes: Optional[float] = None):
    """Nested run-grouped ridge CV on runs read one at a time; a job (Progress per fold and batch).

    Parameters
    ----------
    X_runs, Y_runs : sequences of runs
        Each run an array, an ``np.memmap`` or a path to a ``.npy`` file; read one at a time.
    alphas : (n_alphas,) array
    plan : RunPlan
        Outer folds (test runs, training runs) and inner folds (validation runs).
    backend : {"numpy", "torch", "torch_cuda"}
    n_targets_batch : int, optional
        Default: as many as the memory allows (all when they fit).
    prepare_x, prepare_y : callable ``(run_index, run) -> array``, optional
        Per-run preprocessing (delays, z-scoring...). ``prepare_x`` receives the run as given
        (read it with :func:`read_run`); ``prepare_y`` receives a read batch of the run's
        columns. Default: no preprocessing. ``prepare_y`` is
        given a batch of the run's columns and must treat columns independently (drift
        regression and z-scoring do).
    memory_limit_bytes : float, optional
        Memory the fit may use (default: 70% of what is available on the device); a fit that
        cannot hold one target within it stops with a ConfigError before reading any data.
    memory_target_bytes : float, optional
        Memory the fit aims at (e.g. tied to the size of the brain data): the target batch is
        chosen from it (at least ``MIN_BATCH`` targets, never above ``memory_limit_bytes``).
    scheduler : None, "local", address or Client
        Run chunks of outer folds on Dask (:func:`engine.encoding.distributed.run_tasks`).
    on_batch : callable ``(GramFold) -> None``, optional
        Receives each fold's batch as soon as it is solved (to write it to a file).
    on_run : callable ``(run_index, cols, y_prepared) -> None``, optional
        Receives each prepared brain run, by batches of columns, as it is read.
    keep_predictions : bool
        Keep held-out predictions and measured data in memory (returned).

    Returns
    -------
    dict
        ``alphas_per_fold (n_folds, n_targets)``, ``alpha_index_per_fold``, ``predictions`` and
        ``measured`` (lists per run, or None), ``n_features``, ``lengths``, ``memory_bytes``
        (the estimate), ``n_targets_batch``.
    """
    from .ridge import check_alphas

    alphas = check_alphas(alphas)
    n_runs = len(Y_runs)
    if len(X_runs) != n_runs:
        raise MismatchError(expected_found("feature runs", f"{n_runs} (as brain runs)", len(X_runs)))
    prepare_x = prepare_x or (lambda i, run: read_run(run))
    prepare_y = prepare_y or (lambda i, a: a)

    # ---- sizes, memory plan, before reading any data -------------------------------------
    y_shapes = [_shape(y) for y in Y_runs]
    n_targets = int(y_shapes[0][1]) if len(y_shapes[0]) > 1 else 1
    n_max_raw = max(s[0] for s in y_shapes)
    x0 = prepare_x(0, X_runs[0])
    p = int(x0.shape[1])
    del x0
    n_max = max(len(g) for fold in plan.inner for g in fold) * n_max_raw
    n_test_max = max(len(t) for t in plan.test_runs) * n_max_raw
    # a fold whose training runs have at least p TRs is solved in primal form (the p x p Gram,
    # downdated), one with fewer in kernel form (n_train^2 < p^2): the Gram totals G and B are
    # accumulated only when some fold needs them (raw lengths bound the prepared ones)
    raw_rows = [int(sh[0]) for sh in y_shapes]
    train_rows = [sum(raw_rows[r] for r in tr) for tr in plan.train_runs]
    primal = any(n >= p for n in train_rows)
    n_kernel = max([n for n in train_rows if n < p], default=0)
    hard = float(memory_limit_bytes) if memory_limit_bytes is not None else \
        MEMORY_FRACTION * available_memory(backend)
    # the batch is chosen from the soft target (e.g. tied to the brain data's size), never above the
    # hard limit, and at least the batch a minimal fit needs
    budget = hard if memory_target_bytes is None else min(hard, float(memory_target_bytes))
    staged_bytes = 4 * n_runs * n_max_raw * (p + n_targets)
    if stage_in_memory is None:
        stage_in_memory = staged_bytes <= min(STAGE_IN_MEMORY_BYTES, 0.3 * budget)
    on_host = str(backend) not in ("torch_cuda", "cuda")
    b_in_memory = primal and 8 * p * n_targets <= 0.25 * budget
    host_fixed = (8 * p * p if primal and not on_host else 0) + \
        (2 * 4 * n_runs * n_max_raw * n_targets if keep_predictions else 0) \
        + (staged_bytes if stage_in_memory else 0) + 4 * n_max_raw * p * 3 + 8 * n_max_raw * p \
        + (8 * p * n_targets if b_in_memory else 0)
    fixed = _fold_fixed_bytes(p, n_max, n_test_max, n_kernel, primal) + (host_fixed if on_host else 0)
    per_target = _per_target_bytes(p, n_max, n_test_max, n_kernel, primal, n_max_raw if on_host else 0)
    def batch_for(fixed_bytes):
        left = max(budget, fixed_bytes + per_target * min(n_targets, MIN_BATCH)) - fixed_bytes
        return int(min(n_targets, left // per_target)) if left > 0 else 0

    # with several batches, the inner folds' factors are kept across them (FACTOR_CACHE_BYTES)
    n_inner = max(len(fold) for fold in plan.inner)
    cache_bytes = 8 * n_max * n_max * alphas.size * n_inner
    cache_bytes = cache_bytes if cache_bytes <= FACTOR_CACHE_BYTES else 0
    if n_targets_batch is None:
        n_targets_batch = batch_for(fixed)
        if cache_bytes and n_targets_batch < n_targets:
            fixed += cache_bytes
            n_targets_batch = batch_for(fixed)
    elif cache_bytes and n_targets_batch < n_targets:
        fixed += cache_bytes
    n_targets_batch = int(n_targets_batch)
    need_one = fixed + per_target
    if n_targets_batch < 1 or need_one > hard:
        raise NotEnoughMemoryError(expected_found(
            f"memory for the Gram ridge fit ({p} features, runs of up to {n_max_raw} TRs, "
            f"inner folds of up to {n_max} TRs, {backend})",
            f"at most {_format_bytes(hard)} (available to this fit)",
            f"{_format_bytes(need_one)} needed for a single target; use fewer features "
            "(PCA, fewer delays) or a machine with more memory"))
    n_targets_batch = max(1, min(n_targets_batch, n_targets))
    estimate = int(fixed + per_target * n_targets_batch)
    est_full = int(fixed + per_target * n_targets)
    n_batches = math.ceil(n_targets / n_targets_batch)
    n_folds = len(plan.test_runs)
    total = n_runs + n_folds * n_batches
    form = "primal and kernel folds" if primal and n_kernel else ("primal (Gram) folds" if primal else
                                                                  "kernel folds (fewer TRs than features)")
    msg = (f"Gram ridge: {n_runs} runs, {p} features, {n_targets} targets in batches of {n_targets_batch}, "
           f"{form}; memory estimate {_format_bytes(estimate)} (all targets at once: {_format_bytes(est_full)}), "
           f"budget {_format_bytes(budget)}, available {_format_bytes(hard)}")
    if verbose:
        import sys

        print(msg, file=sys.stderr, flush=True)
    yield Progress(0, total, msg)

    # ---- one pass: prepare, stage, accumulate G and B ----------------------------------
    import contextlib

    from ..atomic import temp_folder

    # scratch by the one temp rule: removed on exit, and a killed fit's folder by the next run
    scratch = contextlib.ExitStack()
    folder = None if stage_in_memory else str(scratch.enter_context(temp_folder("gram", parent=scratch_dir)))
    staged = _Staged(folder)
    try:
        G = np.zeros((p, p), dtype=np.float64) if primal else None
        if not primal:
            B = None
        elif b_in_memory:
            B = np.zeros((p, n_targets), dtype=np.float64)
        else:
            b_dir = folder if folder is not None else str(scratch.enter_context(temp_folder("gram",
                                                                                            parent=scratch_dir)))
            B = np.lib.format.open_memmap(os.path.join(b_dir, "B.npy"), mode="w+",
                                          dtype=np.float64, shape=(p, n_targets))
        lengths = []
        measured = [] if keep_predictions else None
        for i in range(n_runs):
            if token is not None:
                token.raise_if_cancelled()
            x = np.ascontiguousarray(prepare_x(i, X_runs[i]), dtype=np.float32)
            if x.shape[1] != p:
                raise MismatchError(expected_found(f"feature columns of run {i}", p, x.shape[1]))
            if not np.all(np.isfinite(x)):
                raise DataError(expected_found(f"features of run {i}", "finite values", "NaN or inf"))
            n_i = x.shape[0]
            x64 = x.astype(np.float64) if primal else None
            if primal:
                G += x64.T @ x64
            y_out = staged.open_y(n_i, n_targets, n_targets_batch)
            if keep_predictions:
                measured.append(y_out if folder is None else np.empty((n_i, n_targets), np.float32))
            for start in range(0, n_targets, n_targets_batch):
                # brain runs are read and prepared by columns: preprocessing is per column
                cols = slice(start, min(start + n_targets_batch, n_targets))
                yb = np.ascontiguousarray(prepare_y(i, _read(Y_runs[i], cols)), dtype=np.float32)
                if yb.shape != (n_i, cols.stop - cols.start):
                    raise MismatchError(expected_found(f"TRs x targets of brain run {i} (prepared)",
                                                       (n_i, cols.stop - cols.start), yb.shape))
                if not np.all(np.isfinite(yb)):
                    raise DataError(expected_found(f"brain run {i}", "finite values", "NaN or inf"))
                if primal:
                    B[:, cols] += x64.T @ yb.astype(np.float64)
                y_out[:, cols] = yb
                if keep_predictions and folder is not None:
                    measured[i][:, cols] = yb
                if on_run is not None:
                    on_run(i, cols, yb)
                del yb
            if folder is not None:
                y_out.flush()
            del x64, y_out
            lengths.append(int(n_i))
            staged.add_x(x)
            del x
            yield Progress(i + 1, total, f"read run {i + 1}/{n_runs}")

        alphas_per_fold = np.zeros((n_folds, n_targets), dtype=np.float64)
        index_per_fold = np.zeros((n_folds, n_targets), dtype=np.int64)
        predictions = ([np.full((n, n_targets), np.nan, dtype=np.float32) for n in lengths]
                       if keep_predictions else None)

        def take(res: GramFold):
            alphas_per_fold[res.fold, res.cols] = alphas[res.best_index]
            index_per_fold[res.fold, res.cols] = res.best_index
            if keep_predictions:
                for r, pr in zip(plan.test_runs[res.fold], res.predictions):
                    predictions[r][:, res.cols] = pr
            if on_batch is not None:
                on_batch(res)

        step = n_runs
        if scheduler is None:
            for f in range(n_folds):
                for res in _solve_outer_fold_threads(f, plan, staged, G, B, alphas, backend, n_targets_batch,
                                                     n_targets, token):
                    take(res)
                    step += 1
                    yield Progress(step, total, f"fold {f + 1}/{n_folds}: targets {res.cols.stop}/{n_targets}")
        else:
            from .distributed import Task, run_tasks

            n_chunks = int(n_chunks or min(n_folds, 4))
            chunks = [list(map(int, c)) for c in np.array_split(np.arange(n_folds), n_chunks) if len(c)]
            tasks = [Task(_fold_chunk_task, (c,), name=f"folds {c[0] + 1}-{c[-1] + 1}") for c in chunks]
            shared = dict(plan=plan, staged_spec=staged.spec(), G=G,
                          B=None if B is None else np.asarray(B), alphas=alphas,
                          backend=backend, n_targets_batch=n_targets_batch, n_targets=n_targets)
            gen = run_tasks(tasks, scheduler=scheduler, token=token, shared=shared, message="chunk of folds")
            while True:
                try:
                    rep = next(gen)
                except StopIteration as stop:
                    results = stop.value
                    break
                yield Progress(n_runs + int(rep.fraction * n_folds * n_batches), total, rep.message)
            for chunk in results:
                for res in chunk:
                    take(res)
        return dict(alphas_per_fold=alphas_per_fold, alpha_index_per_fold=index_per_fold,
                    predictions=predictions, measured=measured, n_features=p, lengths=lengths,
                    memory_bytes=estimate, n_targets_batch=n_targets_batch)
    finally:
        del B
        staged.close()
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        scratch.close()


# ---------------------------------------------------------------------------- the encoding fit
def gram_supported(options=None, n_spaces: int = 1, fold_transform=None, **overrides) -> Tuple[bool, str]:
    """Whether :func:`fit_encoding_gram_job` handles these settings, and if not why.

    Supported: ridge with one alpha per target (one feature space, or several with
    ``multi_space="joint"``), no PCA and no fold transform, cross-validation over whole runs
    (leave-one-run-out, grouped K-fold, explicit held-out runs, by stimulus) with inner folds
    of whole runs.
    """
    from .fit import resolve_options

    opts = resolve_options(options, **overrides)
    if opts.pca is not None:
        return False, "PCA is fit per outer fold"
    if fold_transform is not None:
        return False, "a fold transform is fit per outer fold"
    if n_spaces > 1 and opts.multi_space == "banded":
        return False, "banded ridge (a penalty per space)"
    if isinstance(opts.cv, str) and opts.cv == "within-run":
        return False, "within-run blocked cross-validation"
    return True, ""


def _run_plan(cv_plan, lengths: Sequence[int]) -> RunPlan:
    """RunPlan of a CVPlan whose folds are made of whole runs (ConfigError otherwise)."""
    starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    run_of = np.concatenate([np.full(n, i) for i, n in enumerate(lengths)]).astype(np.int64)

    def runs_of(idx) -> List[int]:
        rs = sorted(set(run_of[idx].tolist()))
        if sum(int(starts[r + 1] - starts[r]) for r in rs) != len(idx):
            raise ConfigError("Gram ridge: expected cross-validation folds made of whole runs, found folds "
                              "that split a run (within-run CV); use fit_encoding_job for it")
        return rs

    tests, trains, inner = [], [], []
    for (train, test), folds_in in zip(cv_plan.outer, cv_plan.inner):
        tr_runs = runs_of(train)
        tests.append(runs_of(test))
        trains.append(tr_runs)
        groups = []
        for tr_in, val_in in folds_in:
            v = runs_of(train[val_in])
            t = runs_of(train[tr_in])
            if sorted(v + t) != tr_runs:
                raise ConfigError("Gram ridge: expected inner folds that partition the training runs, "
                                  "found folds leaving runs out (a gap); use fit_encoding_job for it")
            groups.append(v)
        inner.append(groups)
    return RunPlan(test_runs=tests, train_runs=trains, inner=inner)


def fit_encoding_gram_job(X_runs, Y_runs, options=None, tr_s: Optional[float] = None,
                          stimulus_ids: Optional[Sequence] = None, subjects: Optional[Sequence] = None,
                          confounds_runs: Optional[Sequence] = None, token: Optional[CancelToken] = None,
                          run_names: Optional[Sequence[str]] = None, space: Optional[str] = None,
                          feature_names: Optional[Sequence[str]] = None,
                          provenance: Optional[Dict[str, Any]] = None, out_path=None,
                          memory_limit_bytes: Optional[float] = None, scratch_dir=None,
                          stage_in_memory: Optional[bool] = None,
                          scheduler=None, n_chunks: Optional[int] = None, verbose: bool = False,
                          memory_target_bytes: Optional[float] = None, **option_overrides):
    """Job form of :func:`fit_encoding_gram`: the nested ridge of :func:`~engine.encoding.fit.fit_encoding_job`
    with Gram downdates (see the module docstring); returns an :class:`EncodingResult`.

    Parameters
    ----------
    X_runs : list of runs, or dict space name -> list of runs
        Each run an array, an ``np.memmap`` or a path to a ``.npy`` file (read one at a time).
    Y_runs : list of runs (arrays, memmaps or ``.npy`` paths)
    options, tr_s, stimulus_ids, subjects, confounds_runs, run_names, space, feature_names, provenance
        As for :func:`~engine.encoding.fit.fit_encoding_job` (``**option_overrides`` too).
    out_path : path, optional
        Write the result there (HDF5, atomically), predictions per target batch; the returned
        result then holds no predictions or measured data in memory (``EncodingResult.load``
        reads them).
    memory_limit_bytes : float, optional
        Memory the fit may use (default 70% of what is available).
    memory_target_bytes : float, optional
        Memory the fit aims at, from which the target batch is chosen (the pipeline ties it to
        the size of the brain data); see :func:`nested_ridge_gram_job`.
    scheduler, n_chunks
        Chunks of outer folds on Dask (identical results).

    Raises
    ------
    ConfigError
        Settings the Gram path does not cover (:func:`gram_supported`), or not enough memory.
    """
    from . import preprocess as pp
    from .fit import LEGACY_DELAYS, library_versions, make_cv_plan, prepare_features, resolve_options
    from .results import EncodingResult, pearson_r, r2_score
    from .ridge import check_alphas

    opts = resolve_options(options, **option_overrides)
    spaces = X_runs if isinstance(X_runs, dict) else {(feature_names[0] if feature_names and
                                                       len(feature_names) == 1 else "features"): X_runs}
    if not spaces:
        raise DataError(expected_found("feature spaces", "at least one", "an empty dict"))
    ok, why = gram_supported(opts, n_spaces=len(spaces))
    if not ok:
        raise ConfigError(f"Gram ridge: {why} is not supported by the Gram path; use fit_encoding_job")
    Y_list = list(Y_runs) if not isinstance(Y_runs, np.ndarray) or Y_runs.ndim != 2 else [Y_runs]
    n_runs = len(Y_list)
    for k, v in spaces.items():
        if len(v) != n_runs:
            raise MismatchError(expected_found(f"runs of feature space {k!r}", f"{n_runs} (as brain runs)", len(v)))
    if run_names is None:
        run_names = [f"run-{i + 1:02d}" for i in range(n_runs)]
    run_names = [str(r) for r in run_names]
    if tr_s is not None:
        tr_s = float(tr_s)
    delays = list(LEGACY_DELAYS) if (opts.delays is None and tr_s is None) else opts.resolved_delays(tr_s)
    alphas = check_alphas(opts.alphas)
    drop = (int(opts.drop_edges[0]), int(opts.drop_edges[1]))
    if feature_names is None:
        feature_names = list(spaces)
    if space is None:
        space = "+".join(spaces)
    from . import options as _options

    high_pass_s = opts.high_pass_s
    if high_pass_s is not None and tr_s is None:
        if high_pass_s != getattr(_options, "DEFAULT_HIGH_PASS_S", None):
            raise ConfigError("high_pass_s: a high-pass cut-off in seconds needs the TR; expected tr_s, found none")
        high_pass_s = None    # as fit_encoding_job: the default drift model without a TR is the detrend only

    # lengths without reading the data; runs differing by a few TRs are trimmed as fit_encoding does
    y_len = [int(_shape(y)[0]) for y in Y_list]
    n_use = []
    for i in range(n_runs):
        n = y_len[i]
        for k, v in spaces.items():
            a = align_lengths(int(_shape(v[i])[0]), y_len[i], int(opts.trim_tolerance_trs),
                              name=f"{run_names[i]} (feature space {k!r})", warn=False)
            n = min(n, a.n_trs)
        n_use.append(n)
    lengths = [n - drop[0] - drop[1] for n in n_use]
    if min(lengths) < 1:
        raise DataError(expected_found("run length after dropping edges", "at least 1 TR", min(lengths)))
    if stimulus_ids is None:
        groups, groups_how = list(range(n_runs)), "assumed distinct (Gram path: give stimulus_ids for repeats)"
    else:
        from .fit import stimulus_groups

        groups, groups_how = stimulus_groups({"ids": [np.zeros((1, 1))] * n_runs}, stimulus_ids)
    plan = make_cv_plan(opts, lengths, groups, groups_how, subjects, delays)
    if plan.kind == "within-run":
        raise ConfigError("Gram ridge: within-run blocked cross-validation is not supported by the Gram "
                          "path; use fit_encoding_job")
    rplan = _run_plan(plan, lengths)
    conf = None
    if confounds_runs is not None:
        conf = [None if c is None else np.asarray(c, dtype=np.float64) for c in confounds_runs]

    def prepare_y(i, y):
        y = y[:n_use[i]]
        y = pp.drop_edges([y], *drop)[0]
        c = None if conf is None or conf[i] is None else [conf[i][:n_use[i]][drop[0]:n_use[i] - drop[1]]]
        y = pp.clean_runs([y], opts.detrend, high_pass_s, tr_s, c)[0]
        return pp.zscore_runs([y])[0] if opts.zscore else y

    def prepare_x(i, _unused):
        one = {}
        for k, v in spaces.items():
            x = _read(v[i])[:n_use[i]]
            # as fit_encoding_job: features are z-scored only (no drift projection)
            one[k] = [pp.zscore_runs([x])[0] if opts.zscore else x]
        return prepare_features(one, delays, drop)[0][0]

    first_space = next(iter(spaces.values()))
    x_runs_for_core = list(first_space)   # prepare_x reads every space itself
    keep = out_path is None
    n_targets = int(_shape(Y_list[0])[1])
    h5 = None
    writer_ctx = None
    if out_path is not None:
        from ..atomic import write_h5
        from .results import RESULT_SCHEMA_VERSION, _KIND

        writer_ctx = write_h5(out_path, _KIND, RESULT_SCHEMA_VERSION)
        h5 = writer_ctx.__enter__()
        h5.create_group("predictions")
        h5.create_group("measured")

    def dataset(group: str, i: int, batch: int):
        """The run's dataset, created on first use with chunks aligned on the target batches."""
        name = f"run_{i:04d}"
        g = h5[group]
        if name not in g:
            n = lengths[i]
            g.create_dataset(name, shape=(n, n_targets), dtype=np.float32,
                             fillvalue=np.nan if group == "predictions" else 0.0,
                             chunks=(min(n, max(1, (1 << 20) // (4 * batch))), batch),
                             compression="lzf", shuffle=True)   # fast; gzip costs more than the fit
        return g[name]

    n_folds = len(rplan.test_runs)
    scores_per_fold = np.zeros((n_folds, n_targets), dtype=np.float32)
    r2_per_fold = np.zeros((n_folds, n_targets), dtype=np.float32)
    on_edge = np.zeros(n_targets, dtype=bool)
    state: Dict[str, int] = {}

    def on_batch(res: GramFold):
        y_test = np.concatenate(res.measured, 0)
        p_test = np.concatenate(res.predictions, 0)
        scores_per_fold[res.fold, res.cols] = pearson_r(y_test, p_test)
        r2_per_fold[res.fold, res.cols] = r2_score(y_test, p_test)
        cv = res.cv_scores
        try:   # the rule of fit_encoding_job (which edges matter)
            from .fit import _edge

            edge = _edge(alphas[res.best_index], alphas)
        except ImportError:  # pragma: no cover
            edge = (res.best_index == 0) | (res.best_index == alphas.size - 1)
        edge &= np.ptp(cv, axis=0) > 0
        if alphas.size > 1:
            on_edge[res.cols] |= edge
        if h5 is not None:
            for r, pr in zip(rplan.test_runs[res.fold], res.predictions):
                dataset("predictions", r, state["batch"])[:, res.cols] = pr

    def on_run(i, cols, y):
        if h5 is not None:
            state.setdefault("batch", cols.stop - cols.start)
            dataset("measured", i, state["batch"])[:, cols] = y

    try:
        core = nested_ridge_gram_job(x_runs_for_core, Y_list, alphas, rplan, backend=opts.backend,
                                     n_targets_batch=opts.n_targets_batch, prepare_x=prepare_x,
                                     prepare_y=prepare_y, memory_limit_bytes=memory_limit_bytes,
                                     scratch_dir=scratch_dir, stage_in_memory=stage_in_memory,
                                     scheduler=scheduler, n_chunks=n_chunks,
                                     token=token, on_batch=on_batch, on_run=on_run, keep_predictions=keep,
                                     verbose=verbose, memory_target_bytes=memory_target_bytes)
        out = yield from core
    except BaseException:
        if writer_ctx is not None:
            writer_ctx.__exit__(*__import__("sys").exc_info())
        raise

    alphas_per_fold = out["alphas_per_fold"]
    scores = scores_per_fold.mean(0)
    r2 = r2_per_fold.mean(0)
    delays_s = [float(d) * tr_s for d in delays] if tr_s is not None else []
    prov = {
        "method": "nested cross-validated ridge (alpha per target), Gram downdates + leave-run-out Woodbury",
        "fit_options": opts.to_dict(),
        "n_features_model": int(out["n_features"]),
        "delays_trs": delays, "delays_s": delays_s, "tr_s": tr_s,
        "alphas_grid": alphas.tolist(),
        "cv": {"kind": plan.kind, "label": plan.label, "held_out_runs": plan.held_out,
               "stimulus_groups_from": groups_how},
        "outer_folds": plan.held_out, "zscore": bool(opts.zscore), "drop_edges": list(drop), "first_tr": int(drop[0]),
        "backend": str(opts.backend), "solver": "gram",
        "memory_estimate_bytes": int(out["memory_bytes"]), "n_targets_batch": int(out["n_targets_batch"]),
        "score": "Pearson r per held-out fold (runs concatenated within a fold), mean over folds",
        "libraries": library_versions(),
    }
    if provenance:
        prov.update(provenance)
    result = EncodingResult(
        scores=np.asarray(scores, dtype=np.float32), r2=np.asarray(r2, dtype=np.float32),
        alphas=np.exp(np.log(alphas_per_fold).mean(0)),
        predictions=out["predictions"] if keep else [], measured=out["measured"] if keep else [],
        run_names=run_names, space=space, feature_names=list(feature_names), delays=delays,
        folds=plan.score_groups, scores_per_fold=scores_per_fold, alphas_per_fold=alphas_per_fold,
        alpha_on_edge=on_edge, alpha_grid=alphas, provenance=prov, tr_s=tr_s, delays_s=delays_s,
        cv_label=plan.label, warnings=list(plan.warnings), options=opts.to_dict())
    if h5 is not None:
        try:
            for i in range(n_runs):       # runs no fold held out: NaN predictions, as in memory
                dataset("predictions", i, state.get("batch", n_targets))
            result.write_attrs(h5)
        except BaseException:
            writer_ctx.__exit__(*__import__("sys").exc_info())
            raise
        writer_ctx.__exit__(None, None, None)
        result.provenance["result_path"] = str(out_path)
    return result


def fit_encoding_gram(X_runs, Y_runs, options=None, on_progress=None, token: Optional[CancelToken] = None,
                      **kwargs):
    """Nested cross-validated ridge with Gram downdates; see :func:`fit_encoding_gram_job`.

    Returns
    -------
    EncodingResult
    """
    return run_sync(fit_encoding_gram_job(X_runs, Y_runs, options, token=token, **kwargs), token=token,
                    on_progress=on_progress)
