"""Every setting of an encoding fit in one place, with defaults that are right on real data.

:class:`FitOptions` is the one contract between the window's analysis dialog, every CLI
sub-command (``encode``, ``partition``, ``stats``, the studies) and Python: they all build a
``FitOptions`` and hand it to :func:`engine.encoding.fit.fit_encoding_job` (through
:mod:`engine.pipeline`). Its ``to_dict()`` is stored in each result's provenance, so a result
says exactly how it was made.

The defaults follow the field's canonical pipeline, corrected where a newcomer's defaults gave
weak or wrong answers:

- delays are given in **seconds** (about 2-10 s after the stimulus, covering the canonical HRF's
  peak and undershoot whatever the TR) and turned into TR indices for the data's TR;
- each run is **linearly detrended, high-passed at 128 s** (cosine drift terms, as SPM and
  nilearn) and z-scored (raw scanner units drift);
- several feature spaces fit jointly use **banded ridge** (a penalty per space), so one rich
  space cannot dilute a small one;
- the cross-validation is chosen from the data (``cv="auto"``): leave-one-run-out over runs with
  distinct stimuli, grouped by stimulus when runs repeat one, blocked within a run (with a gap of
  the longest delay) when there is one run.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import ConfigError, expected_found

__all__ = ["FitOptions", "DEFAULT_DELAYS_S", "DEFAULT_ALPHAS", "DEFAULT_HIGH_PASS_S", "delays_from_seconds"]

#: Delay window in seconds covered by the default FIR delays (HRF peak ~5 s, undershoot to ~10 s).
DEFAULT_DELAYS_S: Tuple[float, float] = (2.0, 10.0)
#: High-pass cut-off period (s) of the default drift model (SPM's and nilearn's 128 s): linear
#: detrending leaves the slow drifts of real scanners, which inner CV within a run then fits.
DEFAULT_HIGH_PASS_S: float = 128.0
#: Default ridge grid (log-spaced); one alpha (or one per space) is chosen per target by inner CV.
DEFAULT_ALPHAS: Tuple[float, ...] = tuple(float(a) for a in np.logspace(-2, 8, 11))

CV_CHOICES = ("auto", "loro", "within-run", "stimulus")
MULTI_SPACE_CHOICES = ("banded", "joint")


def delays_from_seconds(tr_s: float, window_s: Sequence[float] = DEFAULT_DELAYS_S) -> List[int]:
    """FIR delays (TR indices, >= 1) that cover ``window_s`` = (first, last) seconds at ``tr_s``.

    Every delay from ``round(first / tr)`` (at least 1) to ``ceil(last / tr)`` is used, so the
    window is covered whatever the TR: TR 1.49 s -> 1..7 (1.5-10.4 s); TR 2 s -> 1..5.
    """
    tr_s = float(tr_s)
    if not (tr_s > 0 and math.isfinite(tr_s)):
        raise ConfigError(expected_found("TR", "a positive number of seconds", tr_s))
    lo, hi = (float(v) for v in window_s)
    if not 0 <= lo <= hi:
        raise ConfigError(expected_found("delay window in seconds", "0 <= first <= last", (lo, hi)))
    first = max(1, int(round(lo / tr_s)))
    last = max(first, int(math.ceil(hi / tr_s - 1e-9)))
    return list(range(first, last + 1))


@dataclass
class FitOptions:
    """Settings of one cross-validated encoding fit. Field names are the CLI flags' names.

    Attributes
    ----------
    delays_s : (first, last) seconds, default (2, 10)
        FIR delay window in seconds, converted with the data's TR (:meth:`resolved_delays`).
    delays : list of int, optional
        Explicit FIR delays in TRs; overrides ``delays_s`` (an expert option).
    alphas : list of float
        Ridge grid; one alpha per target (banded: per space and target) chosen by inner CV.
    cv : "auto", "loro", "within-run", "stimulus", int, or list of held-out run index lists
        Outer cross-validation. "auto" picks from the data (see the module docstring).
    inner_cv : "loro" or int, optional
        Inner CV choosing alphas (default: leave-one-group-out within the training set).
    n_blocks : int
        Blocks per run for within-run CV (a single run, or ``cv="within-run"``).
    gap_trs : int, optional
        TRs left out between train and test blocks in within-run CV (default: the longest delay).
    detrend : int or None
        Polynomial order removed from each run before z-scoring (default 1: linear); None: none.
    high_pass_s : float or None
        High-pass cut-off period in seconds (cosine drift basis, as nilearn's ``cosine``
        filter), default 128 s, applied to brain data and features; needs the TR (without
        one, the default is skipped and the result says so). None: no high-pass.
    confounds : str, optional
        Named confound set regressed out of each brain run (e.g. "motion6", "motion24",
        "motion24+wm_csf"); needs confound tables beside the runs.
    zscore : bool
        Z-score features and brain data per run.
    drop_edges : (int, int)
        TRs dropped at the start and end of every run.
    pca : int, float, dict or None
        PCA per feature space fit on training runs (components or variance fraction; a dict
        gives it per space).
    multi_space : "banded" or "joint"
        Several feature spaces: banded ridge (a penalty per space; default) or one ridge
        over the concatenated spaces.
    banded_n_iter : int
        Random (Dirichlet) candidates searched by banded ridge besides the structured ones
        (the centre and each space alone; :func:`engine.encoding.banded.default_candidates`).
        Default 0: more candidates let noisy inner scores pick worse ones.
    backend : "numpy", "torch" or "torch_cuda"
    n_targets_batch : int, optional
        Targets solved at once (bounds memory).
    solver : "auto", "primal" or "dual"
    trim_tolerance_trs : int
        Feature and brain runs whose lengths differ by at most this many TRs are trimmed to
        the shorter (with a warning, recorded); beyond it they are refused.
    """

    delays_s: Tuple[float, float] = DEFAULT_DELAYS_S
    delays: Optional[List[int]] = None
    alphas: List[float] = field(default_factory=lambda: list(DEFAULT_ALPHAS))
    cv: Union[str, int, List[List[int]]] = "auto"
    inner_cv: Union[str, int, None] = None
    n_blocks: int = 5
    gap_trs: Optional[int] = None
    detrend: Optional[int] = 1
    high_pass_s: Optional[float] = DEFAULT_HIGH_PASS_S
    confounds: Optional[str] = None
    zscore: bool = True
    drop_edges: Tuple[int, int] = (0, 0)
    pca: Union[int, float, Dict[str, Union[int, float]], None] = None
    multi_space: str = "banded"
    banded_n_iter: int = 0
    backend: str = "numpy"
    n_targets_batch: Optional[int] = None
    solver: str = "auto"
    trim_tolerance_trs: int = 2

    def __post_init__(self) -> None:
        self.validate()

    # ---- checks ------------------------------------------------------------------------
    def validate(self) -> "FitOptions":
        """Raise :class:`~engine.errors.ConfigError` naming the first invalid setting."""
        if self.delays is not None:
            d = [int(x) for x in np.atleast_1d(self.delays)]
            if not d:
                raise ConfigError(expected_found("delays", "at least one delay in TRs", "none"))
            self.delays = d
        if len(tuple(self.delays_s)) != 2:
            raise ConfigError(expected_found("delays_s", "(first, last) seconds", self.delays_s))
        self.delays_s = (float(self.delays_s[0]), float(self.delays_s[1]))
        if not 0 <= self.delays_s[0] <= self.delays_s[1]:
            raise ConfigError(expected_found("delays_s", "0 <= first <= last seconds", self.delays_s))
        a = np.asarray(self.alphas, dtype=np.float64).ravel()
        if a.size == 0 or not np.all(np.isfinite(a)) or np.any(a <= 0):
            raise ConfigError(expected_found("alphas", "positive finite numbers", list(a)))
        self.alphas = [float(v) for v in a]
        if isinstance(self.cv, str) and self.cv not in CV_CHOICES:
            raise ConfigError(f"cv: got {self.cv!r}. Supported values are: {', '.join(CV_CHOICES)}, "
                              "an int (grouped K-fold over runs) or lists of held-out run indices")
        if isinstance(self.cv, (int, np.integer)) and int(self.cv) < 2:
            raise ConfigError(expected_found("cv folds", "an int >= 2", self.cv))
        if int(self.n_blocks) < 2:
            raise ConfigError(expected_found("n_blocks", "an int >= 2", self.n_blocks))
        if self.gap_trs is not None and int(self.gap_trs) < 0:
            raise ConfigError(expected_found("gap_trs", "an int >= 0", self.gap_trs))
        if self.detrend is not None and int(self.detrend) < 0:
            raise ConfigError(expected_found("detrend", "a polynomial order >= 0, or None", self.detrend))
        if self.high_pass_s is not None and not float(self.high_pass_s) > 0:
            raise ConfigError(expected_found("high_pass_s", "a positive cut-off period in seconds",
                                             self.high_pass_s))
        self.drop_edges = (int(self.drop_edges[0]), int(self.drop_edges[1]))
        if min(self.drop_edges) < 0:
            raise ConfigError(expected_found("drop_edges", "two ints >= 0", self.drop_edges))
        if self.multi_space not in MULTI_SPACE_CHOICES:
            raise ConfigError(f"multi_space: got {self.multi_space!r}. Supported values are: "
                              f"{', '.join(MULTI_SPACE_CHOICES)}")
        if self.backend not in ("numpy", "torch", "torch_cuda"):
            raise ConfigError(f"backend: got {self.backend!r}. Supported values are: numpy, torch, torch_cuda")
        if self.n_targets_batch is not None and int(self.n_targets_batch) < 1:
            raise ConfigError(expected_found("n_targets_batch", "an int >= 1", self.n_targets_batch))
        if self.solver not in ("auto", "primal", "dual"):
            raise ConfigError(f"solver: got {self.solver!r}. Supported values are: auto, primal, dual")
        if int(self.trim_tolerance_trs) < 0:
            raise ConfigError(expected_found("trim_tolerance_trs", "an int >= 0", self.trim_tolerance_trs))
        if self.pca is not None:
            for key, value in (self.pca.items() if isinstance(self.pca, dict) else [("", self.pca)]):
                p = float(value)
                if not (p > 0 and (p < 1 or p == int(p))):
                    raise ConfigError(expected_found(f"pca{' of ' + repr(key) if key else ''}",
                                                     "components (an int >= 1) or a variance fraction in (0, 1)",
                                                     value))
        return self

    # ---- derived -----------------------------------------------------------------------
    def resolved_delays(self, tr_s: Optional[float]) -> List[int]:
        """FIR delays in TRs: ``delays`` when given, else ``delays_s`` converted at ``tr_s``."""
        if self.delays is not None:
            return list(self.delays)
        if tr_s is None:
            raise ConfigError("delays: the delay window is given in seconds, so the TR is needed; "
                              "expected a TR (from the runs, the project or --tr), found none")
        return delays_from_seconds(tr_s, self.delays_s)

    def replace(self, **changes) -> "FitOptions":
        """A copy with ``changes`` applied (validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> Dict[str, Any]:
        """Plain JSON-able dict (stored in results' provenance and the GUI's settings)."""
        d = dataclasses.asdict(self)
        d["delays_s"] = list(self.delays_s)
        d["drop_edges"] = list(self.drop_edges)
        return d

    @classmethod
    def from_dict(cls, d: Optional[Dict[str, Any]]) -> "FitOptions":
        """Inverse of :meth:`to_dict`; unknown keys are refused with their names."""
        d = dict(d or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"fit options: unknown setting(s) {unknown}. Supported: {sorted(names)}")
        if "delays_s" in d and d["delays_s"] is not None:
            d["delays_s"] = tuple(d["delays_s"])
        if "drop_edges" in d and d["drop_edges"] is not None:
            d["drop_edges"] = tuple(d["drop_edges"])
        return cls(**d)
