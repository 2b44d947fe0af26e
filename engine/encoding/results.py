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

__all__ = ["EncodingResult", "RESULT_SCHEMA_VERSION", "pearson_r", "r2_score", "reliable_threshold"]

RESULT_SCHEMA_VERSION = 1
_KIND = "alignscope.encoding_result"


def pearson_r(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Pearson r per column of two (n_samples, n_targets) arrays: THE score of this project.

    Every score (``fit_encoding``, comparisons, bootstraps, views) is this r, computed in
    float64 after centring each column. **Constant-column rule:** where either column has
    zero variance (exactly, after centring in float64), r is **0**, never NaN: a model
    predicting a constant predicts nothing, and a constant target (a medial-wall vertex)
    has nothing to predict. A nearly constant prediction (a large alpha shrinking the
    weights) keeps its true r, since r is scale-invariant. The argument order does not
    matter (r is symmetric); shapes must match.

    Returns
    -------
    (n_targets,) float64
    """
    a = np.asarray(y_true, dtype=np.float64)
    b = np.asarray(y_pred, dtype=np.float64)
    if a.shape != b.shape:
        from ..errors import MismatchError, expected_found

        raise MismatchError(expected_found("prediction and measured shapes", a.shape, b.shape))
    if a.ndim == 1:
        a, b = a[:, None], b[:, None]
    a = a - a.mean(0)
    b = b - b.mean(0)
    num = (a * b).sum(0)
    den = np.sqrt((a * a).sum(0) * (b * b).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
    return r


def reliable_threshold(n_heldout_trs: int) -> float:
    """Held-out r above which a target counts as reliably predicted (without a permutation null).

    ``1.645 * sqrt(2 / n)``: the one-sided 95% point of r under no relation for ``n / 2``
    independent samples (the BOLD signal's autocorrelation roughly halves the effective
    number of TRs), floored at 0.05. With a permutation test, q <= 0.05 is used instead
    (:meth:`EncodingResult.reliable`).
    """
    n = max(int(n_heldout_trs), 4)
    return float(max(0.05, 1.645 * np.sqrt(2.0 / n)))


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
        Data paths and hashes, features, delays, alphas, folds, library versions, date,
        ``fit_options`` (:meth:`FitOptions.to_dict`), ``cv`` (what was used and why),
        ``preprocessing`` and ``spaces`` (how each space was fit).
    tr_s : float or None
        Repetition time the delays were resolved with.
    delays_s : list of float
        The FIR delays in seconds (``delays * tr_s``).
    cv_label : str
        The cross-validation actually used and why, e.g. "auto: one run -> within-run
        blocked CV (5 blocks, gap 7 TRs)".
    warnings : list of str
        Every warning of the fit (raw units, repeated stimuli, alphas on the grid's edge...).
    options : dict
        :meth:`engine.encoding.options.FitOptions.to_dict` of the fit.
    p_values, q_values : (n_targets,) float64 or None
        Permutation p-values and their BH-FDR q-values, once :func:`engine.encoding.significance.significance_job`
        wrote them.
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
    tr_s: Optional[float] = None
    delays_s: List[float] = field(default_factory=list)
    cv_label: str = ""
    warnings: List[str] = field(default_factory=list)
    options: Dict[str, Any] = field(default_factory=dict)
    p_values: Optional[np.ndarray] = None
    q_values: Optional[np.ndarray] = None

    @property
    def n_targets(self) -> int:
        return int(np.asarray(self.scores).shape[0])

    def top_targets(self, k: int = 10) -> np.ndarray:
        """Indices of the ``k`` best-predicted targets, best first."""
        s = np.nan_to_num(np.asarray(self.scores, dtype=np.float64), nan=-np.inf)
        return np.argsort(-s, kind="stable")[:k]

    def n_heldout_trs(self) -> int:
        """Held-out TRs per outer fold on average (the length one score is computed on)."""
        n = sum(int(np.sum(np.isfinite(np.asarray(p)[:, 0]))) if np.asarray(p).size else 0
                for p in self.predictions)
        n_folds = max(1, len(self.folds) or 1)
        return max(1, n // n_folds)

    def reliable(self, alpha: float = 0.05) -> np.ndarray:
        """Targets with a reliable score: q <= ``alpha`` when significance was computed,
        else held-out r above :func:`reliable_threshold` (documented there)."""
        s = np.asarray(self.scores, dtype=np.float64)
        if self.q_values is not None:
            return np.nan_to_num(np.asarray(self.q_values, dtype=np.float64), nan=1.0) <= alpha
        return np.nan_to_num(s, nan=-np.inf) > reliable_threshold(self.n_heldout_trs())

    def summary_stats(self, alpha: float = 0.05) -> Dict[str, Any]:
        """Mean and median r over all targets beside the median over reliable ones.

        Returns
        -------
        dict with ``n_targets, mean_r, median_r, n_reliable, median_r_reliable,
        mean_r_reliable, reliable_rule`` (NaN medians where no target is reliable).
        """
        s = np.asarray(self.scores, dtype=np.float64)
        rel = self.reliable(alpha)
        finite = np.isfinite(s)
        sr = s[rel & finite]
        rule = (f"q <= {alpha} (permutation test)" if self.q_values is not None else
                f"held-out r > {reliable_threshold(self.n_heldout_trs()):.3f}")
        return dict(n_targets=int(s.size),
                    mean_r=float(s[finite].mean()) if finite.any() else float("nan"),
                    median_r=float(np.median(s[finite])) if finite.any() else float("nan"),
                    n_reliable=int(sr.size),
                    median_r_reliable=float(np.median(sr)) if sr.size else float("nan"),
                    mean_r_reliable=float(sr.mean()) if sr.size else float("nan"),
                    reliable_rule=rule)

    def summary(self) -> str:
        """Mean over all targets, median over reliable ones, and the top targets, in one short text."""
        s = np.asarray(self.scores, dtype=np.float64)
        st = self.summary_stats()
        top = self.top_targets(5)
        tops = ", ".join(f"{i}: {s[i]:.3f}" for i in top)
        return (f"{self.space}: {self.n_targets} targets, {len(self.run_names)} runs, "
                f"mean r = {st['mean_r']:.4f} (all), median r = {st['median_r_reliable']:.4f} over "
                f"{st['n_reliable']} reliable targets ({st['reliable_rule']}), "
                f"top targets (index: r) {tops}")

    # ---- HDF5 ----------------------------------------------------------------------------
    def write_attrs(self, h) -> None:
        """Everything of the result file but the per-run predictions and measured data (which the
        Gram path writes batch by batch): attributes and the per-target arrays."""
        h.attrs["space"] = self.space
        h.attrs["run_names"] = json.dumps(list(map(str, self.run_names)))
        h.attrs["feature_names"] = json.dumps(list(map(str, self.feature_names)))
        h.attrs["delays"] = json.dumps([int(d) for d in self.delays])
        h.attrs["folds"] = json.dumps([[int(i) for i in f] for f in self.folds])
        h.attrs["provenance"] = json.dumps(self.provenance, default=_json_default)
        if self.tr_s is not None:
            h.attrs["tr_s"] = float(self.tr_s)
        h.attrs["delays_s"] = json.dumps([float(d) for d in self.delays_s])
        h.attrs["cv_label"] = str(self.cv_label)
        h.attrs["warnings"] = json.dumps([str(w) for w in self.warnings])
        h.attrs["options"] = json.dumps(self.options, default=_json_default)
        for name in ("scores", "alphas", "r2", "scores_per_fold", "alphas_per_fold",
                     "alpha_on_edge", "alpha_grid", "space_alphas", "p_values", "q_values"):
            value = getattr(self, name)
            if value is not None:
                h.create_dataset(name, data=np.asarray(value))

    def save(self, path) -> Path:
        """Write the result to ``path`` (.h5) atomically (temporary file + rename)."""
        path = Path(path)
        with write_h5(path, _KIND, RESULT_SCHEMA_VERSION) as h:
            self.write_attrs(h)
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
                tr_s=float(h.attrs["tr_s"]) if "tr_s" in h.attrs else None,
                delays_s=json.loads(h.attrs["delays_s"]) if "delays_s" in h.attrs else [],
                cv_label=str(h.attrs["cv_label"]) if "cv_label" in h.attrs else "",
                warnings=json.loads(h.attrs["warnings"]) if "warnings" in h.attrs else [],
                options=json.loads(h.attrs["options"]) if "options" in h.attrs else {},
                p_values=opt("p_values"), q_values=opt("q_values"),
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
