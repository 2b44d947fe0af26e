"""Array backends for the ridge solvers: one small shared function set.

Like himalaya's backends, the solver code calls only the functions below, so the same
code runs on numpy, torch (CPU) and torch on CUDA. Tensors never leave this package:
:meth:`Backend.to_numpy` turns results back into CPU numpy before they are returned.

``get_backend("numpy" | "torch" | "torch_cuda")``; ``torch_cuda`` raises
:class:`~engine.errors.ConfigError` where CUDA is absent.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError

__all__ = ["Backend", "NumpyBackend", "TorchBackend", "get_backend", "BACKENDS"]

BACKENDS = ("numpy", "torch", "torch_cuda")


_CONTROLLER = []


def _controller():
    """One cached threadpoolctl controller (finding the BLAS libraries costs ~2 ms per call)."""
    if not _CONTROLLER:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
            _CONTROLLER.append(None)
        else:
            _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0]


class _one_blas_thread:
    """Limit BLAS/LAPACK to one thread inside the block (no-op without threadpoolctl)."""

    def __enter__(self):
        ctl = _controller()
        self._limits = None if ctl is None else ctl.limit(limits=1, user_api="blas")
        return self

    def __exit__(self, *exc):
        if self._limits is not None:
            self._limits.restore_original_limits()
        return False


class Backend:
    """The functions the solvers need. Arrays are float32 unless a function says otherwise."""

    name = "abstract"

    def asarray(self, a, dtype="float32"):
        raise NotImplementedError

    def to_numpy(self, a) -> np.ndarray:
        raise NotImplementedError

    def eigh(self, a):
        """Eigen-decomposition of a symmetric matrix, ascending eigenvalues: ``(w, v)``."""
        raise NotImplementedError

    def take_rows(self, a, idx):
        raise NotImplementedError

    def argmax0(self, a):
        raise NotImplementedError

    def sum0(self, a):
        """Sum over the first axis."""
        return a.sum(0)

    def sqrt(self, a):
        raise NotImplementedError

    def square_(self, a):
        """Square in place (no temporary the size of ``a``); returns ``a``."""
        raise NotImplementedError

    def log(self, a):
        raise NotImplementedError

    def clip_min(self, a, value):
        raise NotImplementedError

    def concatenate(self, arrays, axis=0):
        raise NotImplementedError

    def zeros(self, shape, dtype="float32"):
        raise NotImplementedError

    def cast(self, a, dtype):
        raise NotImplementedError

    def synchronize(self) -> None:
        """Wait for queued work (GPU); used by the benchmark's timers."""


class NumpyBackend(Backend):
    name = "numpy"

    def asarray(self, a, dtype="float32"):
        return np.ascontiguousarray(np.asarray(a), dtype=dtype)

    def to_numpy(self, a):
        return np.asarray(a)

    def eigh(self, a):
        # scipy's MRRR driver on one BLAS thread: the tridiagonal reduction is memory-bound
        # and its many thread synchronisations make a multi-threaded eigh 2-10x slower on a
        # busy machine (measured for p = 1000 on 2 cores); GEMMs keep all threads.
        import scipy.linalg

        if np.shape(a)[0] < 128:          # small: threads do not matter, skip the limiter
            return scipy.linalg.eigh(a, driver="evr", check_finite=False)
        with _one_blas_thread():
            return scipy.linalg.eigh(a, driver="evr", check_finite=False)

    def take_rows(self, a, idx):
        return a[np.asarray(idx)]

    def argmax0(self, a):
        return np.argmax(a, axis=0)

    def sqrt(self, a):
        return np.sqrt(a)

    def square_(self, a):
        return np.square(a, out=a)

    def log(self, a):
        return np.log(a)

    def clip_min(self, a, value):
        return np.maximum(a, value)

    def concatenate(self, arrays, axis=0):
        return np.concatenate(arrays, axis=axis)

    def zeros(self, shape, dtype="float32"):
        return np.zeros(shape, dtype=dtype)

    def cast(self, a, dtype):
        return a.astype(dtype, copy=False)


class TorchBackend(Backend):
    """torch on CPU (``device="cpu"``) or CUDA (``device="cuda"``); imported lazily."""

    def __init__(self, device: str = "cpu") -> None:
        import torch

        self.torch = torch
        if device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("backend: expected a CUDA device for 'torch_cuda', found none "
                              "(torch.cuda.is_available() is False). Supported values are: "
                              + ", ".join(BACKENDS))
        self.device = torch.device(device)
        self.name = "torch" if device == "cpu" else "torch_cuda"

    def _dtype(self, dtype):
        return {"float32": self.torch.float32, "float64": self.torch.float64,
                "int64": self.torch.int64, "bool": self.torch.bool}[str(dtype)]

    def asarray(self, a, dtype="float32"):
        t = self.torch
        if isinstance(a, t.Tensor):
            return a.to(device=self.device, dtype=self._dtype(dtype)).contiguous()
        return t.as_tensor(np.ascontiguousarray(np.asarray(a)), dtype=self._dtype(dtype),
                           device=self.device)

    def to_numpy(self, a):
        if isinstance(a, self.torch.Tensor):
            return a.detach().cpu().numpy()
        return np.asarray(a)

    def eigh(self, a):
        if self.device.type == "cpu":
            with _one_blas_thread():   # see NumpyBackend.eigh
                return self.torch.linalg.eigh(a)
        return self.torch.linalg.eigh(a)

    def take_rows(self, a, idx):
        idx = self.torch.as_tensor(np.asarray(idx), dtype=self.torch.int64, device=a.device)
        return a.index_select(0, idx)

    def argmax0(self, a):
        return self.torch.argmax(a, dim=0)

    def sum0(self, a):
        return a.sum(0)

    def sqrt(self, a):
        return self.torch.sqrt(a)

    def square_(self, a):
        return a.square_()

    def log(self, a):
        return self.torch.log(a)

    def clip_min(self, a, value):
        return self.torch.clamp(a, min=value)

    def concatenate(self, arrays, axis=0):
        return self.torch.cat(list(arrays), dim=axis)

    def zeros(self, shape, dtype="float32"):
        return self.torch.zeros(shape, dtype=self._dtype(dtype), device=self.device)

    def cast(self, a, dtype):
        return a.to(self._dtype(dtype))

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()


def get_backend(name="numpy") -> Backend:
    """Return the backend called ``name`` (or ``name`` itself when already a Backend)."""
    if isinstance(name, Backend):
        return name
    if name == "numpy":
        return NumpyBackend()
    if name == "torch":
        return TorchBackend("cpu")
    if name in ("torch_cuda", "cuda"):
        return TorchBackend("cuda")
    raise ConfigError(f"backend: got {name!r}. Supported values are: {', '.join(BACKENDS)}")
