"""The result of fitting encoding models, and its HDF5 file.

An :class:`EncodingResult` holds what the views need: a score per target (parcel, vertex,
voxel), the alpha chosen, and the held-out predictions beside the measured (preprocessed)
brain data of every run, for the time-course view. It is saved as one HDF5 file, written
atomically (temporary file + rename), schema-versioned.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from ..atomic import read_h5, write_h5

__all__ = ["EncodingResult", "RESULT_SCHEMA_VERSION", "pearson_r", "r2_score"]

RESULT_SCHEMA_VERSION = 1
_KIND = "alignscope.encoding_result"


def pearson_r(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Pearson r per column of two (n_samples, n_targets) arrays (0 where either is constant)."""
    a = np.asarray(y_true, dtype=np.float64)
    b = np.asarray(y_pred, dtype=np.float64)
    a = a - a.mean(0)
    b = b - b.mean(0)
    num = (a * b).sum(0)
    den = np.sqrt((a * a).sum(0) * (b * b).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
    return r


def r2_score(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Coefficient of determination per column, 1 - SS_res / SS_tot (SS_tot about the mean)."""
    a = np.asarray(y_true, dtype=np.float64)
    b = np.asarray(y_pred, dtype=np.float64)
    ss_res = ((a - b) ** 2).sum(0)
    ss_tot = ((a - a.mean(0)) ** 2).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ss_tot > 0, 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0), 0.0)


@dataclass
class EncodingResult:
    """Cross-validated encoding model scores for one feature space (or a joint model).

    Attributes
    ----------
    scores : (n_targets,) float32
        Held-out Pearson r: computed on each outer fold's held-out runs (concatenated
        within the fold) and averaged over folds. With leave-one-run-out, it is the mean
        over runs of each run's r.
    r2 : (n_targets,) float32
        Held-out R^2, computed and averaged the same way.
    alphas : (n_targets,) float64
        Geometric mean over outer folds of the alpha each fold's inner CV chose.
    predictions : list of (n_trs_run, n_targets) float32
        Held-out predictions per run (each run predicted by the model that did not see it).
    measured : list of (n_trs_run, n_targets) float32
        The preprocessed brain data the predictions are compared with.
    run_names : list of str
    space : str
        Name of the feature space ("joint" when several were concatenated).
    feature_names : list of str
        Names of the feature spaces (or columns) used.
    delays : list of int
        FIR delays in TRs.
    folds : list of list of int
        Held-out run indices of each outer fold.
    scores_per_fold : (n_folds, n_targets) float32
    alphas_per_fold : (n_folds, n_targets) float64
    alpha_on_edge : (n_targets,) bool
        True where some fold's best alpha was at the edge of the grid.
    alpha_grid : (n_alphas,) float64
    space_alphas : (n_spaces, n_targets) float64 or None
        Banded ridge only: each space's penalty (geometric mean over folds), spaces in
        the order of ``feature_names``.
    provenance : dict
        Data paths and hashes, features, delays, alphas, folds, library versions, date.
    """

    scores: np.ndarray
    alphas: np.ndarray
    predictions: List[np.ndarray]
    measured: List[np.ndarray]
    run_names: List[str]
    space: str = "features"
    feature_names: List[str] = field(default_factory=list)
    r2: Optional[np.ndarray] = None
    delays: List[int] = field(default_factory=list)
    folds: List[List[int]] = field(default_factory=list)
    scores_per_fold: Optional[np.ndarray] = None
    alphas_per_fold: Optional[np.ndarray] = None
    alpha_on_edge: Optional[np.ndarray] = None
    alpha_grid: Optional[np.ndarray] = None
    provenance: Dict[str, Any] = field(default_factory=dict)
    space_alphas: Optional[np.ndarray] = None

    @property
    def n_targets(self) -> int:
        return int(np.asarray(self.scores).shape[0])

    def top_targets(self, k: int = 10) -> np.ndarray:
        """Indices of the ``k`` best-predicted targets, best first."""
        s = np.nan_to_num(np.asarray(self.scores, dtype=np.float64), nan=-np.inf)
        return np.argsort(-s, kind="stable")[:k]

    def summary(self) -> str:
        """Mean/median r and the top targets, in one short text."""
        s = np.asarray(self.scores, dtype=np.float64)
        top = self.top_targets(5)
        tops = ", ".join(f"{i}: {s[i]:.3f}" for i in top)
        return (f"{self.space}: {self.n_targets} targets, {len(self.run_names)} runs, "
                f"mean r = {np.nanmean(s):.4f}, median r = {np.nanmedian(s):.4f}, "
                f"top targets (index: r) {tops}")

    # ---- HDF5 ----------------------------------------------------------------------------
    def save(self, path) -> Path:
        """Write the result to ``path`` (.h5) atomically (temporary file + rename)."""
        path = Path(path)
        with write_h5(path, _KIND, RESULT_SCHEMA_VERSION) as h:
            h.attrs["space"] = self.space
            h.attrs["run_names"] = json.dumps(list(map(str, self.run_names)))
            h.attrs["feature_names"] = json.dumps(list(map(str, self.feature_names)))
            h.attrs["delays"] = json.dumps([int(d) for d in self.delays])
            h.attrs["folds"] = json.dumps([[int(i) for i in f] for f in self.folds])
            h.attrs["provenance"] = json.dumps(self.provenance, default=_json_default)
            for name in ("scores", "alphas", "r2", "scores_per_fold", "alphas_per_fold",
                         "alpha_on_edge", "alpha_grid", "space_alphas"):
                value = getattr(self, name)
                if value is not None:
                    h.create_dataset(name, data=np.asarray(value))
            for group_name in ("predictions", "measured"):
                g = h.create_group(group_name)
                for i, a in enumerate(getattr(self, group_name)):
                    g.create_dataset(f"run_{i:04d}", data=np.asarray(a, dtype=np.float32),
                                     compression="gzip", compression_opts=1, shuffle=True)
        return path

    @classmethod
    def load(cls, path) -> "EncodingResult":
        """Read a result written by :meth:`save`."""
        with read_h5(path, _KIND, RESULT_SCHEMA_VERSION, "encoding result") as h:

            def opt(name):
                return np.asarray(h[name]) if name in h else None

            def runs(group_name):
                g = h[group_name]
                return [np.asarray(g[k]) for k in sorted(g.keys())]

            return cls(
                scores=np.asarray(h["scores"]), alphas=np.asarray(h["alphas"]),
                predictions=runs("predictions"), measured=runs("measured"),
                run_names=json.loads(h.attrs["run_names"]), space=str(h.attrs["space"]),
                feature_names=json.loads(h.attrs["feature_names"]), r2=opt("r2"),
                delays=json.loads(h.attrs["delays"]), folds=json.loads(h.attrs["folds"]),
                scores_per_fold=opt("scores_per_fold"), alphas_per_fold=opt("alphas_per_fold"),
                alpha_on_edge=opt("alpha_on_edge"), alpha_grid=opt("alpha_grid"),
                provenance=json.loads(h.attrs["provenance"]), space_alphas=opt("space_alphas"),
            )


def _json_default(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, Path):
        return str(o)
    return str(o)
