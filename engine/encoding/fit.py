"""Fitting cross-validated encoding models: features of a model -> brain data, per target.

Every setting comes from one :class:`~engine.encoding.options.FitOptions` (the old keyword
arguments map onto its fields, :func:`resolve_options`). Its defaults are meant to be right on
real data: FIR delays covering 2-10 s at the data's TR, brain runs linearly detrended,
high-passed at 128 s (cosine drift terms; confounds too when given) and z-scored, several
feature spaces fit by banded ridge, and the cross-validation chosen from the data.

Cross-validation is *nested* (:func:`make_cv_plan`):

- the **outer** loop holds out test data: ``cv="auto"`` picks leave-one-run-out when the
  runs show distinct stimuli, folds grouped by stimulus when runs repeat stimuli (detected
  from ``stimulus_ids`` or from nearly equal features; a warning says so, and with one
  stimulus only, that leave-one-run-out measures repeatability; runs of different
  ``subjects`` are labelled cross-subject generalisation), and **within-run blocked CV**
  for a single run: the delays are built on the whole run first, the run is cut into
  ``n_blocks`` contiguous test blocks and ``gap_trs`` TRs on each side of a test block are
  left out of training; ``cv=k`` and explicit held-out run lists work as before;
- inside the training data, an **inner** cross-validation (leave-one-group-out over runs or
  stimuli, else blocked with the same gap) chooses one alpha per target with
  :func:`engine.encoding.ridge.ridge_cv` (himalaya's convention: mean validation MSE over
  inner folds, refit on all training data at the best alpha), or per space and target with
  :mod:`engine.encoding.banded`;
- the refit model predicts the held-out data, scored with Pearson r (and R^2) per outer
  fold; :attr:`EncodingResult.scores` is the mean over outer folds.

So every score is on data that neither fitted the weights nor chose the alpha. (The
himalaya tutorials instead choose alphas by CV on the training runs and score one fixed
test run: that is ``cv=[[test_run]]`` here.) The result records how it was made:
``cv_label``, ``delays``/``delays_s``/``tr_s``, ``warnings``, ``options`` and
``provenance["preprocessing"|"cv"|"features"|"multi_space"]``.

Preprocessing per run (see :mod:`engine.encoding.preprocess`): features are z-scored,
optionally PCA-reduced per feature space (fit on the outer fold's training runs only),
delayed within each run, and run edges dropped; brain data have the same edges dropped,
drift/confounds regressed out, then are z-scored.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import hashlib
import math
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import ConfigError, DataError, MismatchError, expected_found
from ..jobs import CancelToken, Progress, run_sync
from ..timeline import align_lengths
from . import preprocess as pp
from .options import DEFAULT_ALPHAS as _DEFAULT_ALPHAS, DEFAULT_HIGH_PASS_S, FitOptions
from .results import EncodingResult, pearson_r, r2_score, reliable_threshold
from .ridge import AlphaOnEdgeWarning, check_alphas, default_targets_batch, ridge_cv_job

__all__ = ["fit_encoding", "fit_encoding_job", "outer_folds", "inner_folds", "prepare_features",
           "prepare_brain", "library_versions", "DEFAULT_ALPHAS", "resolve_options", "make_cv_plan",
           "CVPlan", "stimulus_groups", "FitWarning", "FitOptions"]

DEFAULT_ALPHAS = np.asarray(_DEFAULT_ALPHAS)


# ---- folds ---------------------------------------------------------------------------------
def outer_folds(n_runs: int, cv: Union[str, int, Sequence[Sequence[int]]] = "loro") -> List[List[int]]:
    """Held-out run indices of each outer fold.

    Parameters
    ----------
    n_runs : int
    cv : "loro", int or list of lists of int
        "loro": leave one run out; int k: k contiguous groups of runs; a list: the held-out
        runs of each fold, given explicitly.
    """
    if n_runs < 2:
        raise DataError(expected_found("runs for cross-validation", "at least 2 runs", n_runs))
    if isinstance(cv, str):
        if cv.lower() in ("loro", "leave-one-run-out"):
            return [[i] for i in range(n_runs)]
        raise ConfigError(f"cv: got {cv!r}. Supported values are: 'loro', an int (grouped K-fold "
                          "over runs), or a list of held-out run index lists")
    if isinstance(cv, (int, np.integer)):
        k = int(cv)
        if not 2 <= k <= n_runs:
            raise ConfigError(expected_found("cv folds", f"an int in [2, {n_runs}] (number of runs)", k))
        return [list(map(int, g)) for g in np.array_split(np.arange(n_runs), k)]
    folds = [[int(i) for i in np.atleast_1d(f)] for f in cv]
    for f in folds:
        if not f or min(f) < 0 or max(f) >= n_runs or len(set(f)) == n_runs:
            raise ConfigError(expected_found("cv held-out runs", f"non-empty lists of run indices in "
                                             f"[0, {n_runs}) leaving at least one training run", f))
    held_out = [i for f in folds for i in f]
    if len(held_out) != len(set(held_out)):
        raise ConfigError(expected_found("cv held-out runs", "each run held out at most once", folds))
    return folds


def inner_folds(run_lengths: Sequence[int], inner_cv: Union[str, int] = "loro",
                n_blocks_single_run: int = 5) -> List[Tuple[np.ndarray, np.ndarray]]:
    """(train, validation) sample indices over concatenated training runs, grouped by run.

    With one run only, it is cut into ``n_blocks_single_run`` contiguous blocks.
    """
    lengths = [int(n) for n in run_lengths]
    starts = np.concatenate([[0], np.cumsum(lengths)])
    n = int(starts[-1])
    if len(lengths) == 1:
        k = int(inner_cv) if isinstance(inner_cv, (int, np.integer)) else n_blocks_single_run
        k = max(2, min(k, n // 2))
        groups = np.array_split(np.arange(n), k)
    else:
        if isinstance(inner_cv, str) and inner_cv.lower() in ("loro", "leave-one-run-out"):
            run_groups = [[i] for i in range(len(lengths))]
        elif isinstance(inner_cv, (int, np.integer)):
            k = max(2, min(int(inner_cv), len(lengths)))
            run_groups = [list(g) for g in np.array_split(np.arange(len(lengths)), k)]
        else:
            raise ConfigError(f"inner_cv: got {inner_cv!r}. Supported values are: 'loro' or an int")
        groups = [np.concatenate([np.arange(starts[i], starts[i + 1]) for i in g]) for g in run_groups]
    all_idx = np.arange(n)
    out = []
    for val in groups:
        mask = np.ones(n, dtype=bool)
        mask[val] = False
        out.append((all_idx[mask], np.asarray(val)))
    return out


# ---- preprocessing ---------------------------------------------------------------------------
def _as_spaces(X_runs, feature_names=None) -> Dict[str, List[np.ndarray]]:
    if isinstance(X_runs, dict):
        if not X_runs:
            raise DataError(expected_found("feature spaces", "at least one", "an empty dict"))
        return {str(k): pp.check_runs(v, f"feature runs of {k!r}") for k, v in X_runs.items()}
    name = feature_names[0] if feature_names and len(feature_names) == 1 else "features"
    return {name: pp.check_runs(X_runs, "feature runs")}


def prepare_brain(Y_runs, zscore: bool = True, drop_edges: Tuple[int, int] = (0, 0)) -> List[np.ndarray]:
    """Brain runs as the models see them: edges dropped, then z-scored per run."""
    runs = pp.drop_edges(pp.check_runs(Y_runs, "brain runs"), *drop_edges)
    return pp.zscore_runs(runs) if zscore else runs


def prepare_features(spaces: Dict[str, List[np.ndarray]], delays, drop_edges=(0, 0),
                     pca=None, train_runs: Optional[Sequence[int]] = None,
                     zscored: bool = True) -> Tuple[List[np.ndarray], Dict[str, slice]]:
    """Delayed (and optionally PCA-reduced) features of every run, spaces side by side.

    Parameters
    ----------
    spaces : dict name -> list of (n_trs_run, n_features) arrays
        Already z-scored per run when ``zscored``.
    pca : int, float, dict name -> int/float, or None
        Components per space, fit on ``train_runs`` only.

    Returns
    -------
    runs : list of (n_trs_run_kept, n_columns) float32
    columns : dict name -> slice of that space's columns
    """
    blocks: List[List[np.ndarray]] = []
    columns: Dict[str, slice] = {}
    start = 0
    for name, runs in spaces.items():
        k = pca.get(name) if isinstance(pca, dict) else pca
        if k is not None:
            idx = list(range(len(runs))) if train_runs is None else list(train_runs)
            model = pp.RunPCA(k).fit([runs[i] for i in idx])
            runs = model.transform(runs)
        delayed = pp.drop_edges(pp.delay_runs(runs, delays), *drop_edges)
        width = delayed[0].shape[1]
        columns[name] = slice(start, start + width)
        start += width
        blocks.append(delayed)
    n_runs = len(blocks[0])
    return [np.concatenate([b[i] for b in blocks], axis=1) if len(blocks) > 1 else blocks[0][i]
            for i in range(n_runs)], columns


@functools.lru_cache(maxsize=1)
def _library_versions() -> Tuple[Tuple[str, str], ...]:
    return tuple(_library_versions_uncached().items())


def library_versions() -> Dict[str, str]:
    """Versions of the libraries the fit depends on (without importing them; read once)."""
    return dict(_library_versions())


def _library_versions_uncached() -> Dict[str, str]:
    from importlib import metadata

    out = {}
    for name in ("numpy", "scipy", "scikit-learn", "himalaya", "torch", "h5py"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    try:
        from .. import __version__

        out["alignscope"] = __version__
    except ImportError:  # pragma: no cover
        pass
    return out


def _hash_runs(runs: Sequence[np.ndarray]) -> str:
    h = hashlib.sha1()
    for r in runs:
        h.update(str(r.shape).encode())
        h.update(np.ascontiguousarray(r).tobytes())
    return h.hexdigest()


# ---- options --------------------------------------------------------------------------------
#: Delays used when neither explicit delays nor a TR are given (old default; a warning says so).
LEGACY_DELAYS = [1, 2, 3, 4]
#: Fields of FitOptions where an explicit ``None`` is a setting (not "use the default").
_NONE_IS_A_SETTING = {"delays", "inner_cv", "gap_trs", "detrend", "high_pass_s", "confounds", "pca",
                      "n_targets_batch"}


def resolve_options(options=None, **overrides) -> FitOptions:
    """The :class:`FitOptions` of a fit: ``options`` (FitOptions, dict or None) with keyword overrides.

    The old keyword arguments of :func:`fit_encoding` (``delays``, ``alphas``, ``cv``, ``zscore``,
    ``pca``, ``backend``... and ``banded`` -> ``multi_space``) are FitOptions fields and are
    applied on top. An override ``None`` means "not given" when ``options`` is given; without
    ``options``, None is a setting for fields that allow it (``detrend=None``: no
    detrending). A list passed as ``options`` is the old positional ``delays``.
    """
    if options is None:
        opts = FitOptions()
    elif isinstance(options, FitOptions):
        opts = options
    elif isinstance(options, dict):
        opts = FitOptions.from_dict(options)
    elif isinstance(options, (list, tuple, np.ndarray)):
        opts = FitOptions()
        overrides.setdefault("delays", [int(d) for d in np.atleast_1d(options)])
    else:
        raise ConfigError(expected_found("fit options", "a FitOptions, a dict or None", type(options).__name__))
    banded = overrides.pop("banded", None)
    if banded is not None:
        overrides["multi_space"] = "banded" if banded else "joint"
    names = {f.name for f in dataclasses.fields(FitOptions)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ConfigError(f"fit options: unknown setting(s) {unknown}. Supported: {sorted(names)}")
    changes = {}
    given = options is not None and not isinstance(options, (list, tuple, np.ndarray))
    for k, v in overrides.items():
        # None means "not given"; without an options object, None is a setting where the
        # field allows it (detrend=None: no detrending)
        if v is None and (given or k not in _NONE_IS_A_SETTING):
            continue
        if k == "alphas":
            v = [float(a) for a in np.atleast_1d(np.asarray(v, dtype=np.float64))]
        elif k == "delays" and v is not None:
            v = [int(d) for d in np.atleast_1d(v)]
        elif k == "drop_edges":
            v = (int(v[0]), int(v[1]))
        elif k == "cv" and isinstance(v, (list, tuple)):
            v = [[int(i) for i in np.atleast_1d(f)] for f in v]
        elif k == "backend" and not isinstance(v, str):
            v = str(getattr(v, "name", v))
        changes[k] = v
    return opts.replace(**changes) if changes else opts


# ---- which runs show the same stimulus --------------------------------------------------------
def stimulus_groups(spaces: Dict[str, List[np.ndarray]], stimulus_ids: Optional[Sequence] = None,
                    threshold: float = 0.99) -> Tuple[List[int], str]:
    """Group index per run (runs of one group show the same stimulus) and how it was decided.

    With ``stimulus_ids``, equal ids are one stimulus. Otherwise runs whose features (all
    spaces side by side, over their common length) correlate above ``threshold`` are taken
    as the same stimulus.
    """
    n_runs = len(next(iter(spaces.values())))
    if stimulus_ids is not None:
        ids = [str(s) for s in stimulus_ids]
        if len(ids) != n_runs:
            raise MismatchError(expected_found("stimulus ids (one per run)", n_runs, len(ids)))
        order = list(dict.fromkeys(ids))
        return [order.index(i) for i in ids], "stimulus ids"
    flat = []
    for i in range(n_runs):
        # at most ~512 evenly spaced columns per space: enough to tell a repeat, cheap at brain scale
        cols = [np.asarray(v[i])[:, ::max(1, int(np.shape(v[i])[1]) // 512)] for v in spaces.values()]
        flat.append(np.concatenate(cols, axis=1).astype(np.float64))
    parent = list(range(n_runs))

    def find(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for i in range(n_runs):
        for j in range(i + 1, n_runs):
            n = min(flat[i].shape[0], flat[j].shape[0])
            if n < 3 or min(flat[i].shape[0], flat[j].shape[0]) < 0.9 * max(flat[i].shape[0], flat[j].shape[0]):
                continue
            a = flat[i][:n] - flat[i][:n].mean(0)
            b = flat[j][:n] - flat[j][:n].mean(0)
            den = np.sqrt((a * a).sum() * (b * b).sum())
            if den > 0 and (a * b).sum() / den > threshold:
                parent[find(j)] = find(i)
            elif den == 0 and np.array_equal(flat[i][:n], flat[j][:n]):
                parent[find(j)] = find(i)
    roots = [find(i) for i in range(n_runs)]
    order = list(dict.fromkeys(roots))
    return [order.index(r) for r in roots], f"features of equal-length runs correlating above {threshold}"


# ---- cross-validation plan --------------------------------------------------------------------
@dataclasses.dataclass
class CVPlan:
    """The cross-validation a fit uses, on the samples of all runs concatenated.

    Attributes
    ----------
    kind : "loro", "kfold", "explicit", "stimulus" or "within-run"
    label : str  what was used and why (stored as ``EncodingResult.cv_label``)
    outer : list of (train, test) sample indices
    train_runs : list of list of int  runs with training samples, per outer fold
    inner : list of lists of (train, validation) indices *into that fold's train array*
    score_groups : list of list of int  runs pooled into one score (``EncodingResult.folds``)
    held_out : list of list of int  runs with test samples, per outer fold
    gap_trs : int  TRs left out between training and test samples of the same run
    warnings : list of str
    """

    kind: str
    label: str
    outer: List[Tuple[np.ndarray, np.ndarray]]
    train_runs: List[List[int]]
    inner: List[List[Tuple[np.ndarray, np.ndarray]]]
    score_groups: List[List[int]]
    held_out: List[List[int]]
    gap_trs: int = 0
    warnings: List[str] = dataclasses.field(default_factory=list)
    n_blocks: int = 0


def _blocked_folds(run_of: np.ndarray, pos: np.ndarray, n_blocks: int, gap: int):
    """(train, val) index pairs: block k of every run's samples (in order) validates,
    samples of the same run within ``gap`` TRs of the block are left out of training."""
    out = []
    blocks_of = np.zeros(run_of.size, dtype=np.int64)
    for r in np.unique(run_of):
        idx = np.flatnonzero(run_of == r)
        k = max(2, min(int(n_blocks), idx.size // 2 if idx.size >= 4 else 2))
        for b, part in enumerate(np.array_split(idx, k)):
            blocks_of[part] = b
    for b in range(int(blocks_of.max()) + 1):
        val = np.flatnonzero(blocks_of == b)
        if val.size == 0:
            continue
        keep = np.ones(run_of.size, dtype=bool)
        keep[val] = False
        for r in np.unique(run_of[val]):
            pv = pos[val][run_of[val] == r]
            same = run_of == r
            near = same & (pos >= pv.min() - gap) & (pos <= pv.max() + gap)
            keep &= ~near
        train = np.flatnonzero(keep)
        if train.size:
            out.append((train, val))
    return out


def _group_folds(group_of: np.ndarray):
    """Leave-one-group-out (train, val) index pairs."""
    out = []
    for g in np.unique(group_of):
        val = np.flatnonzero(group_of == g)
        train = np.flatnonzero(group_of != g)
        out.append((train, val))
    return out


def make_cv_plan(options: FitOptions, lengths: Sequence[int], groups: Optional[List[int]] = None,
                 groups_how: str = "", subjects: Optional[Sequence] = None,
                 delays: Sequence[int] = (1,), tr_s: Optional[float] = None) -> CVPlan:
    """Resolve ``options.cv`` (and ``inner_cv``) for runs of ``lengths`` TRs (after edges).

    ``cv="auto"``: one run -> within-run blocked CV; runs with distinct stimuli ->
    leave-one-run-out; runs repeating stimuli -> folds grouped by stimulus when there are at
    least two stimuli; all runs showing one stimulus -> within-run blocked CV (the same
    segment held out of every run), or leave-one-run-out with a warning that it measures
    repeatability when the runs are too short for the blocks and gaps (with several
    ``subjects``: leave-one-run-out, cross-subject generalisation). ``"within-run"``: blocks of
    every run, with ``gap_trs`` left out of training on both sides of each test block (default:
    the longest delay, and with a TR at least ``options.delays_s[1]`` seconds, so that
    already HRF-convolved features fit with delays [0] keep a gap); delays are built on the
    whole run before splitting.
    """
    lengths = [int(n) for n in lengths]
    n_runs = len(lengths)
    starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    run_of = np.concatenate([np.full(n, i) for i, n in enumerate(lengths)]).astype(np.int64)
    pos = np.concatenate([np.arange(n) for n in lengths]).astype(np.int64)
    groups = list(range(n_runs)) if groups is None else [int(g) for g in groups]
    n_groups = len(set(groups))
    if options.gap_trs is not None:
        gap = int(options.gap_trs)
    else:
        # the longest delay, and at least the span of the delay window in seconds (10 s): with
        # features that are already HRF-convolved (delays [0]) the response still lasts that long
        gap = int(max(abs(int(d)) for d in delays))
        if tr_s is not None:
            gap = max(gap, int(math.ceil(float(options.delays_s[1]) / float(tr_s) - 1e-9)))
    n_blocks = int(options.n_blocks)
    subj = [str(s) for s in subjects] if subjects is not None else None
    if subj is not None and len(subj) != n_runs:
        raise MismatchError(expected_found("subjects (one per run)", n_runs, len(subj)))
    warn: List[str] = []
    cv = options.cv
    repeats = n_groups < n_runs
    cross_subject = bool(subj is not None and repeats and any(
        len({subj[i] for i in range(n_runs) if groups[i] == g}) > 1 for g in set(groups)))
    reason = ""
    if isinstance(cv, str) and cv == "auto":
        if n_runs == 1:
            kind, reason = "within-run", "auto: one run -> within-run blocked CV"
        elif not repeats:
            kind, reason = "loro", f"auto: {n_runs} runs with distinct stimuli -> leave-one-run-out"
        elif cross_subject:
            kind = "loro"
            reason = ("auto: runs of different subjects with the same stimulus -> leave-one-run-out "
                      "= cross-subject generalisation (same stimulus), not prediction of new stimuli")
        elif n_groups >= 2:
            kind = "stimulus"
            reason = (f"auto: {n_runs} runs show {n_groups} stimuli ({groups_how}) -> folds grouped by "
                      "stimulus (leave-one-stimulus-out)")
            warn.append(f"runs {_repeat_text(groups)} show the same stimulus: folds are grouped by stimulus "
                        "so that a test stimulus is never seen in training")
        elif min(lengths) - min(lengths) // n_blocks - 2 * gap >= n_blocks * (2 * gap + 2):
            # (room in each run, once a test block and its gaps are out, for blocked inner folds)
            # leave-one-run-out would test each run on a stimulus the training runs showed: a model
            # that tells the TRs apart reproduces the other viewings' response (repeatability), and
            # with 3+ viewings the inner folds reward that too (the smallest alpha wins)
            kind = "within-run"
            reason = (f"auto: all {n_runs} runs show one stimulus ({groups_how}) -> within-run blocked CV "
                      "(each test segment left out of every run, so its stimulus is never seen in training)")
        else:
            kind = "loro"
            reason = (f"auto: all {n_runs} runs show one stimulus ({groups_how}), too short for "
                      f"{n_blocks} blocks and gaps of {gap} TRs -> leave-one-run-out")
            warn.append(f"runs {_repeat_text(groups)} show the same stimulus: leave-one-run-out measures "
                        "repeatability, not generalisation to new stimuli (cv='within-run' tests new "
                        "time segments of the stimulus)")
    elif isinstance(cv, str) and cv == "stimulus":
        if n_groups >= 2:
            kind, reason = "stimulus", f"stimulus: {n_groups} stimuli ({groups_how}) -> leave-one-stimulus-out"
        else:
            kind = "within-run"
            reason = "stimulus: only one stimulus -> within-run blocked CV instead"
            warn.append("cv='stimulus' but all runs show one stimulus: fell back to within-run blocked CV")
    elif isinstance(cv, str) and cv in ("loro", "leave-one-run-out"):
        if n_runs < 2:
            raise DataError(expected_found("runs for leave-one-run-out", "at least 2 runs (cv='within-run' "
                                           "or 'auto' splits one run into blocks)", n_runs))
        kind, reason = "loro", "leave-one-run-out"
        if repeats and not cross_subject:
            warn.append(f"runs {_repeat_text(groups)} show the same stimulus: leave-one-run-out measures "
                        "repeatability, not generalisation to new stimuli (use cv='stimulus')")
    elif isinstance(cv, str) and cv == "within-run":
        kind, reason = "within-run", "within-run blocked CV"
    elif isinstance(cv, (int, np.integer)):
        kind, reason = "kfold", f"{int(cv)} contiguous groups of runs"
    else:
        kind, reason = "explicit", "explicit held-out runs"
    if cross_subject and kind == "loro" and "cross-subject" not in reason:
        reason += " (runs of different subjects, same stimulus: cross-subject generalisation)"

    outer, train_runs, held_out, inner = [], [], [], []

    def inner_for(train_idx: np.ndarray, train_groups: np.ndarray) -> List[Tuple[np.ndarray, np.ndarray]]:
        ic = options.inner_cv
        uniq = np.unique(train_groups)
        if isinstance(ic, (int, np.integer)) and uniq.size >= 2:
            k = max(2, min(int(ic), uniq.size))
            parts = np.array_split(uniq, k)
            lab = np.zeros(train_groups.size, dtype=np.int64)
            for j, part in enumerate(parts):
                lab[np.isin(train_groups, part)] = j
            return _group_folds(lab)
        if uniq.size >= 2 and (ic is None or (isinstance(ic, str) and ic in ("loro", "leave-one-run-out"))):
            return _group_folds(train_groups)
        k = int(ic) if isinstance(ic, (int, np.integer)) else n_blocks
        return _blocked_folds(run_of[train_idx], pos[train_idx], k, gap)

    if kind == "within-run":
        blocks_of = np.zeros(run_of.size, dtype=np.int64)
        for r in range(n_runs):
            idx = np.arange(starts[r], starts[r + 1])
            if idx.size < 2 * n_blocks:
                raise DataError(expected_found(f"TRs in run {r} for {n_blocks}-block within-run CV",
                                               f"at least {2 * n_blocks}", idx.size))
            for b, part in enumerate(np.array_split(idx, n_blocks)):
                blocks_of[part] = b
        for b in range(n_blocks):
            test = np.flatnonzero(blocks_of == b)
            keep = np.ones(run_of.size, dtype=bool)
            keep[test] = False
            for r in range(n_runs):
                pt = pos[test][run_of[test] == r]
                keep &= ~((run_of == r) & (pos >= pt.min() - gap) & (pos <= pt.max() + gap))
            train = np.flatnonzero(keep)
            outer.append((train, test))
            train_runs.append(sorted(set(run_of[train].tolist())))
            held_out.append(sorted(set(run_of[test].tolist())))
            # inner: blocked within the training part (stimulus groups never apply within a run)
            ic = options.inner_cv
            k = int(ic) if isinstance(ic, (int, np.integer)) else n_blocks
            inner.append(_blocked_folds(run_of[train], pos[train], k, gap))
        score_groups = [[r] for r in range(n_runs)]
        label = f"{reason} ({n_blocks} blocks per run, gap {gap} TRs)"
    else:
        if kind == "stimulus":
            run_folds = [[i for i in range(n_runs) if groups[i] == g] for g in sorted(set(groups))]
        else:
            run_folds = outer_folds(n_runs, "loro" if kind == "loro" else cv)
        for test_runs in run_folds:
            tr_runs = [i for i in range(n_runs) if i not in test_runs]
            test = np.concatenate([np.arange(starts[i], starts[i + 1]) for i in test_runs])
            train = np.concatenate([np.arange(starts[i], starts[i + 1]) for i in tr_runs])
            outer.append((train, test))
            train_runs.append(tr_runs)
            held_out.append(list(test_runs))
            if kind == "stimulus":
                tg = np.asarray(groups)[run_of[train]]
            elif isinstance(options.inner_cv, (int, np.integer)) or kind != "kfold":
                tg = run_of[train]
            else:
                tg = run_of[train]
            if kind == "kfold" and options.inner_cv is None:
                # old default: grouped K-fold inside as well
                uniq = np.unique(tg)
                k = max(2, min(int(cv), uniq.size)) if uniq.size >= 2 else 2
                if uniq.size >= 2:
                    lab = np.zeros(tg.size, dtype=np.int64)
                    for j, part in enumerate(np.array_split(uniq, k)):
                        lab[np.isin(tg, part)] = j
                    inner.append(_group_folds(lab))
                    continue
            inner.append(inner_for(train, tg))
        score_groups = [list(f) for f in held_out]
        label = reason
        if any(len(np.unique(run_of[tr])) == 1 for tr, _ in outer) and kind in ("loro", "kfold", "explicit",
                                                                                "stimulus"):
            label += f"; inner CV blocked within the training run (gap {gap} TRs)"
    return CVPlan(kind=kind, label=label, outer=outer, train_runs=train_runs, inner=inner,
                  score_groups=score_groups, held_out=held_out, gap_trs=gap, warnings=warn,
                  n_blocks=n_blocks if kind == "within-run" else 0)


def _repeat_text(groups: Sequence[int]) -> str:
    parts = []
    for g in sorted(set(groups)):
        members = [i for i, x in enumerate(groups) if x == g]
        if len(members) > 1:
            parts.append("/".join(str(i) for i in members))
    return ", ".join(parts)


# ---- fitting ---------------------------------------------------------------------------------
def _trim_runs(spaces, Y_list, tol, run_names, warn):
    """Trim feature and brain runs differing by at most ``tol`` TRs to the shorter; refuse beyond
    (the one alignment rule, :func:`engine.timeline.align_lengths`, whose error says what to do)."""
    n_runs = len(Y_list)
    for name, runs in spaces.items():
        if len(runs) != n_runs:
            raise MismatchError(expected_found(f"runs of feature space {name!r}", f"{n_runs} (as brain runs)",
                                               len(runs)))
    for i in range(n_runs):
        name_i = run_names[i] if run_names is not None and i < len(run_names) else f"run {i}"
        n_y = Y_list[i].shape[0]
        n_min = n_y
        for name, runs in spaces.items():
            a = align_lengths(runs[i].shape[0], n_y, tol, name=f"{name_i} (feature space {name!r})", warn=False)
            n_min = min(n_min, a.n_trs)
        if any(runs[i].shape[0] != n_min for runs in spaces.values()) or n_y != n_min:
            lens = {name: runs[i].shape[0] for name, runs in spaces.items()}
            warn.append(f"{name_i}: brain {n_y} TRs, features {lens}: trimmed to {n_min} TRs "
                        f"(within the tolerance of {tol} TRs)")
            Y_list[i] = Y_list[i][:n_min]
            for runs in spaces.values():
                runs[i] = runs[i][:n_min]


def fit_encoding_job(X_runs, Y_runs, options: Optional[FitOptions] = None, tr_s: Optional[float] = None,
                     stimulus_ids: Optional[Sequence] = None, subjects: Optional[Sequence] = None,
                     confounds_runs: Optional[Sequence[np.ndarray]] = None,
                     token: Optional[CancelToken] = None, run_names: Optional[Sequence[str]] = None,
                     space: Optional[str] = None, feature_names: Optional[Sequence[str]] = None,
                     provenance: Optional[Dict[str, Any]] = None, fold_transform=None,
                     banded_gammas=None, **option_overrides):
    """Job form of :func:`fit_encoding`: yields a :class:`~engine.jobs.Progress` per outer fold
    and batch of targets (cancel points); returns the :class:`EncodingResult`.

    ``options`` (:class:`~engine.encoding.options.FitOptions`) is the one source of settings;
    the old keywords (``delays=``, ``alphas=``, ``cv=``, ``banded=``...) override its fields
    (:func:`resolve_options`).
    """
    opts = resolve_options(options, **option_overrides)
    warn: List[str] = []
    spaces = _as_spaces(X_runs, feature_names)
    spaces = {k: list(v) for k, v in spaces.items()}
    Y_list = pp.check_runs(Y_runs, "brain runs")
    n_runs = len(Y_list)
    _trim_runs(spaces, Y_list, int(opts.trim_tolerance_trs), run_names, warn)
    if run_names is None:
        run_names = [f"run-{i + 1:02d}" for i in range(n_runs)]
    run_names = [str(r) for r in run_names]
    if len(run_names) != n_runs:
        raise MismatchError(expected_found("run names", n_runs, len(run_names)))
    if tr_s is not None:
        tr_s = float(tr_s)
        if not (tr_s > 0 and math.isfinite(tr_s)):
            raise ConfigError(expected_found("TR", "a positive number of seconds", tr_s))
    if opts.delays is None and tr_s is None:
        delays = list(LEGACY_DELAYS)
        warn.append(f"no TR given: delays default to {delays[0]}-{delays[-1]} TRs and no high-pass filter; give "
                    f"the TR so that the delays cover {opts.delays_s[0]:g}-{opts.delays_s[1]:g} s")
    else:
        delays = opts.resolved_delays(tr_s)
    alphas = check_alphas(opts.alphas)
    drop_edges = (int(opts.drop_edges[0]), int(opts.drop_edges[1]))
    pca = opts.pca
    backend = opts.backend
    n_targets_batch = opts.n_targets_batch
    if feature_names is None:
        feature_names = list(spaces)
    if space is None:
        space = "+".join(spaces)
    if confounds_runs is not None:
        if len(confounds_runs) != n_runs:
            raise MismatchError(expected_found("confound tables (one per run)", n_runs, len(confounds_runs)))
        confounds_runs = [None if c is None else np.asarray(c, dtype=np.float64)[:Y_list[i].shape[0]]
                          for i, c in enumerate(confounds_runs)]

    # ---- preprocessing per run: drift and confounds out, then z-score ------------------------
    raw = pp.raw_units_runs(Y_list)
    if raw and opts.detrend is None and (opts.high_pass_s is None or tr_s is None):
        warn.append(f"{len(raw)} of {n_runs} brain runs look like raw scanner units (mean far above the "
                    "spread) and are not detrended: slow drifts will dominate; use detrend=1 (the default)")
    high_pass_s = opts.high_pass_s
    if high_pass_s is not None and tr_s is None:
        if high_pass_s != DEFAULT_HIGH_PASS_S:
            raise ConfigError("high_pass_s: a high-pass cut-off in seconds needs the TR; expected tr_s, found none")
        high_pass_s = None    # the default drift model without a TR: linear detrend only (recorded)
    groups, groups_how = stimulus_groups(spaces, stimulus_ids)
    Y_edges = pp.drop_edges(Y_list, *drop_edges)
    conf_edges = None
    if confounds_runs is not None:
        conf_edges = [None if c is None else c[drop_edges[0]:c.shape[0] - drop_edges[1]] for c in confounds_runs]
    Y_clean = pp.clean_runs(Y_edges, opts.detrend, high_pass_s, tr_s, conf_edges)
    Yp = pp.zscore_runs(Y_clean) if opts.zscore else Y_clean
    # features: z-scored only. Projecting the same drift terms out of features AND brain data
    # makes a run's training and test samples share that projection: on pure noise with
    # within-run CV it raised the median held-out r from ~0.01 to ~0.05 (stimulus features
    # carry no scanner drift, so nothing is lost).
    if opts.zscore:
        spaces = {k: pp.zscore_runs(v) for k, v in spaces.items()}
    n_targets = Yp[0].shape[1]
    lengths = [y.shape[0] for y in Yp]
    plan = make_cv_plan(opts, lengths, groups, groups_how, subjects, delays, tr_s)
    warn.extend(plan.warnings)
    if plan.kind == "within-run" and (pca is not None or fold_transform is not None):
        warn.append("within-run CV: PCA / feature transforms are fit on the whole run's features "
                    "(unsupervised, no brain data), not per block")
    n_spaces = len(spaces)
    banded = opts.multi_space == "banded" and n_spaces > 1
    if banded:
        from .banded import banded_ridge_cv_job

    fixed_X = None
    if (pca is None and fold_transform is None) or plan.kind == "within-run":
        if fold_transform is not None:
            fspaces = fold_transform(spaces, list(range(n_runs)))
        else:
            fspaces = spaces
        fixed_X, fixed_columns = prepare_features(fspaces, delays, drop_edges, pca=pca,
                                                  train_runs=list(range(n_runs)))
    Y_all = np.concatenate(Yp, axis=0)
    run_starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)

    # progress: one step per outer fold and target batch
    n_features_est = (fixed_X[0].shape[1] if fixed_X is not None else
                      sum((pca.get(k, v[0].shape[1]) if isinstance(pca, dict) else
                           (pca if isinstance(pca, int) else v[0].shape[1])) for k, v in spaces.items())
                      * len(delays))
    if n_targets_batch is None:
        n_targets_batch = default_targets_batch(sum(lengths), n_features_est, alphas.size,
                                                max(lengths), n_targets)
    n_batches = max(1, math.ceil(n_targets / n_targets_batch))
    n_folds = len(plan.outer)
    steps_per_fold = n_batches
    total = n_folds * steps_per_fold

    pred_all = np.full((run_starts[-1], n_targets), np.nan, dtype=np.float32)
    scores_per_fold = np.zeros((n_folds, n_targets), dtype=np.float32)
    r2_per_fold = np.zeros((n_folds, n_targets), dtype=np.float32)
    alphas_per_fold = np.zeros((n_folds, n_targets), dtype=np.float64)
    on_edge = np.zeros(n_targets, dtype=bool)
    log_space_alphas = np.zeros((n_spaces, n_targets)) if banded else None
    n_features_used = None
    banded_info: Dict[str, Any] = {}
    yield Progress(0, total, "preparing runs")
    for f, (train, test) in enumerate(plan.outer):
        if fixed_X is not None:
            X_all_runs, columns = fixed_X, fixed_columns
        else:
            tr_runs = plan.train_runs[f]
            fold_spaces = spaces if fold_transform is None else fold_transform(spaces, tr_runs)
            X_all_runs, columns = prepare_features(fold_spaces, delays, drop_edges, pca=pca, train_runs=tr_runs)
        X_all = np.concatenate(X_all_runs, axis=0) if len(X_all_runs) > 1 else X_all_runs[0]
        n_features_used = X_all.shape[1]
        X_train = X_all[train]
        Y_train = Y_all[train]
        X_test = X_all[test]
        folds_in = plan.inner[f]
        message = f"fold {f + 1}/{n_folds}: "
        if banded:
            gen = banded_ridge_cv_job({k: X_train[:, sl] for k, sl in columns.items()}, Y_train, alphas,
                                      folds_in, gammas=banded_gammas, n_iter=int(opts.banded_n_iter),
                                      backend=backend, n_targets_batch=n_targets_batch, X_predict=[X_test],
                                      return_coef=False, token=token)
            while True:
                try:
                    report = next(gen)
                except StopIteration as stop:
                    res = stop.value
                    break
                frac = report.step / max(report.total, 1)
                yield Progress(f * steps_per_fold + min(steps_per_fold, int(frac * steps_per_fold)), total,
                               message + report.message)
            edge = _edge(res.best_alphas, alphas)
            log_space_alphas += np.log(res.space_alphas)
            banded_info = dict(n_candidates=int(len(res.candidates)) if res.candidates is not None else None)
        else:
            res = yield from ridge_cv_job(
                X_train, Y_train, alphas, folds_in, backend=backend, n_targets_batch=n_targets_batch,
                X_predict=[X_test], return_coef=False, solver=opts.solver, warn=False,
                token=token, progress_offset=f * steps_per_fold, progress_total=total, message=message)
            edge = _edge(res.best_alphas, alphas) & res.on_edge
        p_test = res.predictions[0]
        pred_all[test] = p_test
        y_test = Y_all[test]
        scores_per_fold[f] = pearson_r(y_test, p_test)
        r2_per_fold[f] = r2_score(y_test, p_test)
        alphas_per_fold[f] = res.best_alphas
        on_edge |= edge

    predictions = [pred_all[run_starts[i]:run_starts[i + 1]] for i in range(n_runs)]
    # r per outer fold on its test samples, mean over folds (with within-run CV: per test block;
    # an r over the whole run would compare blocks predicted by different models, whose offsets
    # anti-correlate with the block means of data z-scored over the whole run: a negative bias)
    scores = scores_per_fold.mean(0)
    r2 = r2_per_fold.mean(0)
    score_rule = ("Pearson r per held-out block, mean over blocks" if plan.kind == "within-run" else
                  "Pearson r per held-out fold (runs concatenated within a fold), mean over folds")
    # alpha on the grid's edge: a warning about targets with a reliable score only, once
    n_heldout = max(1, int(np.mean([t.size for _, t in plan.outer])) if plan.kind != "within-run"
                    else int(np.mean(lengths)))
    thr = reliable_threshold(n_heldout)
    edge_reliable = on_edge & (np.nan_to_num(scores, nan=-np.inf) > thr)
    for w in warn:
        warnings.warn(w, FitWarning, stacklevel=2)
    if edge_reliable.any():
        text = (f"{int(edge_reliable.sum())} of {int((scores > thr).sum())} reliably predicted targets "
                f"(held-out r > {thr:.3f}) chose an alpha at the edge of the grid [{alphas.min():.3g}, "
                f"{alphas.max():.3g}] in some fold; consider widening it")
        warn.append(text)
        warnings.warn(text, AlphaOnEdgeWarning, stacklevel=2)

    spaces_info = {k: {"n_features": int(v[0].shape[1]), "n_runs": len(v), "columns_in_model":
                       [int(fixed_columns[k].start), int(fixed_columns[k].stop)] if fixed_X is not None
                       and k in fixed_columns else None} for k, v in spaces.items()}
    if banded:
        mean_space_alphas = np.exp(log_space_alphas / n_folds)
        how = ("banded ridge: one penalty per space and target (candidates: all spaces equally weighted "
               "and each space alone" + (f", {int(opts.banded_n_iter)} random" if opts.banded_n_iter else "")
               + "; chosen per target on inner folds)")
        for i, k in enumerate(spaces):
            spaces_info[k]["median_alpha"] = float(np.median(mean_space_alphas[i]))
    else:
        mean_space_alphas = None
        how = ("one ridge over the concatenated spaces (one alpha per target)" if n_spaces > 1
               else "ridge (one alpha per target)")
    delays_s = [float(d) * tr_s for d in delays] if tr_s is not None else []
    preprocessing = {
        "brain": {"drop_edges": list(drop_edges), "detrend_order": opts.detrend, "high_pass_s": high_pass_s,
                  "confounds": (opts.confounds or "given") if confounds_runs is not None else None,
                  "zscore": bool(opts.zscore), "order": "drop edges -> regress drift/confounds -> z-score"},
        "high_pass_note": (None if high_pass_s == opts.high_pass_s else
                           "no TR given: the default 128 s high-pass was skipped (linear detrend only)"),
        "features": {"detrend_order": None, "high_pass_s": None, "zscore": bool(opts.zscore),
                     "pca": pca, "order": "z-score -> (PCA) -> delays within run -> drop edges "
                                          "(no drift regression: stimulus features have no scanner drift)"},
        "raw_units_runs": raw,
    }
    prov = {
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "method": ("nested cross-validated banded ridge (alpha per space and target)" if banded
                   else "nested cross-validated ridge (alpha per target)"),
        "fit_options": opts.to_dict(),
        "features": spaces_info,
        "multi_space": how,
        "n_features_model": int(n_features_used),
        "delays_trs": delays,
        "delays_s": delays_s,
        "tr_s": tr_s,
        "alphas_grid": alphas.tolist(),
        "cv": {"kind": plan.kind, "label": plan.label, "gap_trs": plan.gap_trs,
               "n_blocks": plan.n_blocks, "stimulus_groups": groups, "stimulus_groups_from": groups_how,
               "subjects": list(map(str, subjects)) if subjects is not None else None,
               "held_out_runs": plan.held_out,
               "test_samples": [[int(t.min()), int(t.max()) + 1] for _, t in plan.outer]},
        "inner_cv": opts.inner_cv,
        "outer_folds": plan.held_out,
        "zscore": bool(opts.zscore),
        "drop_edges": list(drop_edges),
        "first_tr": int(drop_edges[0]),    # row 0 of every run's prediction is this TR of the run
        "pca": pca,
        "preprocessing": preprocessing,
        "backend": str(getattr(backend, "name", backend)),
        "score": score_rule,
        "reliable_threshold_r": thr,
        "warnings": list(warn),
        "input_hashes": {"brain_sha1": _hash_runs(Y_list),
                         **{f"features_{k}_sha1": _hash_runs(v) for k, v in spaces.items()}},
        "libraries": library_versions(),
    }
    if banded_info:
        prov["banded"] = banded_info
    if provenance:
        prov.update(provenance)
    return EncodingResult(
        scores=np.asarray(scores, dtype=np.float32),
        r2=np.asarray(r2, dtype=np.float32),
        alphas=np.exp(np.log(alphas_per_fold).mean(0)),
        predictions=predictions, measured=Yp, run_names=run_names, space=space,
        feature_names=list(feature_names), delays=delays, folds=plan.score_groups,
        scores_per_fold=scores_per_fold, alphas_per_fold=alphas_per_fold, alpha_on_edge=on_edge,
        alpha_grid=alphas, provenance=prov, space_alphas=mean_space_alphas,
        tr_s=tr_s, delays_s=delays_s, cv_label=plan.label, warnings=list(warn), options=opts.to_dict(),
    )


def _edge(best: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """Targets whose alpha is on an edge of the grid that matters: the top (more penalty might
    help), or the bottom only when it is not already negligible (alpha >= 1 on z-scored data:
    below that the fit is practically least squares, and a smaller alpha changes nothing)."""
    if alphas.size < 2:
        return np.zeros(best.shape, dtype=bool)
    top = best >= alphas.max()
    bottom = (best <= alphas.min()) & (alphas.min() >= 1.0)
    return top | bottom


class FitWarning(UserWarning):
    """Something about the data or settings that makes a score mean less than it seems."""


def fit_encoding(X_runs, Y_runs, options: Optional[FitOptions] = None, tr_s: Optional[float] = None,
                 stimulus_ids: Optional[Sequence] = None, subjects: Optional[Sequence] = None,
                 confounds_runs: Optional[Sequence[np.ndarray]] = None, token: Optional[CancelToken] = None,
                 run_names: Optional[Sequence[str]] = None, space: Optional[str] = None,
                 feature_names: Optional[Sequence[str]] = None, provenance: Optional[Dict[str, Any]] = None,
                 fold_transform=None, banded_gammas=None, on_progress=None,
                 **option_overrides) -> EncodingResult:
    """Fit cross-validated encoding models (one ridge per target) and score them on held-out data.

    Parameters
    ----------
    X_runs : list of (n_trs_run, n_features) arrays, or dict space name -> such a list
        Model features per run, aligned to TRs. Several spaces are delayed separately and
        fit jointly: banded ridge by default (``options.multi_space``).
    Y_runs : list of (n_trs_run, n_targets) arrays
        Brain data per run (parcels, vertices or voxels), raw units or not.
    options : FitOptions, optional
        Every setting (:class:`engine.encoding.options.FitOptions`); defaults are right on
        real data: delays covering 2-10 s, linear detrend + z-score per run, banded ridge
        for several spaces, ``cv="auto"``.
    tr_s : float, optional
        Repetition time in seconds: needed to turn ``options.delays_s`` into TRs and for
        the high-pass filter. Without it (and without explicit ``delays``) the old delays
        1-4 TRs are used, with a warning.
    stimulus_ids : sequence, optional
        One id per run; runs with equal ids show the same stimulus (otherwise detected from
        the features).
    subjects : sequence, optional
        One subject per run (labels cross-subject generalisation).
    confounds_runs : list of (n_trs_run, k) arrays, optional
        Regressed out of each brain run with the drift terms; non-finite entries (``n/a``)
        become the column mean.
    token : CancelToken, optional
        Checked between target batches.
    run_names, space, feature_names : optional labels stored in the result.
    provenance : dict, optional
        Extra provenance (data paths, hashes) merged into the result's.
    fold_transform : callable, optional
        ``fold_transform(spaces, train_run_indices) -> spaces`` applied to the z-scored
        feature runs of each outer fold before PCA and delays, fit on the training runs
        only (e.g. :func:`engine.encoding.partition.residualize` removes unimodal features).
    banded_gammas : (n_candidates, n_spaces) array, optional
        Banded ridge candidates to search instead of the default set.
    on_progress : callable, optional
        Receives each :class:`~engine.jobs.Progress`.
    **option_overrides
        Any FitOptions field (the old keywords: ``delays``, ``alphas``, ``cv``, ``backend``,
        ``n_targets_batch``, ``zscore``, ``drop_edges``, ``pca``, ``inner_cv``, ``solver``,
        ``banded_n_iter``, ``detrend``...), and ``banded=True/False`` for ``multi_space``.

    Returns
    -------
    EncodingResult
        ``scores``: held-out Pearson r (mean over outer folds; with within-run CV, r over each
        run's held-out blocks, mean over runs). ``cv_label``, ``delays_s``, ``warnings`` and
        ``provenance`` say how it was made.
    """
    return run_sync(fit_encoding_job(X_runs, Y_runs, options, tr_s=tr_s, stimulus_ids=stimulus_ids,
                                     subjects=subjects, confounds_runs=confounds_runs, token=token,
                                     run_names=run_names, space=space, feature_names=feature_names,
                                     provenance=provenance, fold_transform=fold_transform,
                                     banded_gammas=banded_gammas, **option_overrides),
                    token=token, on_progress=on_progress)
