"""Stimulus-brain synchrony: is each run lined up with its stimulus?

Low-level features of the stimulus (audio envelope, luminance, word rate; one row per TR)
are convolved with the canonical (SPM) haemodynamic response and cross-correlated with the
run's responses at lags of -:data:`SYNC_MAX_LAG_TRS` .. +:data:`SYNC_MAX_LAG_TRS` TRs. At each
lag the statistic is the mean |r| of the targets that follow the feature best at that lag
(the top :data:`SYNC_TOP_FRACTION` of targets: the auditory, visual or language regions for
these features, found the same way at every lag so that no lag is favoured), or of named
regions when given. After HRF convolution a run in sync peaks at lag 0; a run whose best lag
is more than :data:`SYNC_OK_LAG_TRS` TR away is flagged with the estimated offset in seconds.

Lag convention: a positive lag ``L`` means the brain follows the HRF-predicted response ``L``
TRs *late* (``corr(x[t], y[t + L])`` is largest): the run starts before the stimulus (extra
volumes at its start). A negative lag means the brain responds early: volumes are missing at
the start of the run, or the stimulus starts late. ``onset_s`` (episode time of the first
kept volume) of about ``-lag * tr_s`` lines them up.

Significance: the same statistic, maximised over lags, for the feature circularly shifted
by random amounts (at least the lag range plus 2 TRs); the best lag is trusted when the
observed peak beats the 95th percentile of that null.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from . import checks as C
from .brain import detrend
from .checks import Check

#: Features used for the sync check and how to reduce their columns to one time course.
SYNC_FEATURES = {"audio_envelope": 0, "luminance": 0, "word_rate": 0}
MAX_TARGETS = 5000


def _gamma_pdf(t: np.ndarray, shape: float) -> np.ndarray:
    """Gamma density with unit scale (no scipy.stats: importing it is slow)."""
    from math import lgamma

    t = np.asarray(t, dtype=np.float64)
    out = np.zeros_like(t)
    pos = t > 0
    out[pos] = np.exp((shape - 1.0) * np.log(t[pos]) - t[pos] - lgamma(shape))
    return out


def spm_hrf(tr_s: float, length_s: float = 32.0) -> np.ndarray:
    """SPM canonical HRF sampled every ``tr_s`` (peak 6 s, undershoot 16 s, ratio 1/6), sum 1."""
    t = np.arange(0.0, length_s, tr_s)
    h = _gamma_pdf(t, 6.0) - _gamma_pdf(t, 16.0) / 6.0
    return h / h.sum()


def stimulus_traces(video=None, audio=None, words=None, token=None) -> Dict[str, np.ndarray]:
    """The stimulus on its own clock, once per episode: mean grey level per frame, sound level
    (RMS in 100 ms windows) and word onsets.

    Parameters
    ----------
    video, audio : path, optional
        The video (its audio track is used unless ``audio`` is given).
    words : DataFrame[onset_s, ...], optional

    Returns
    -------
    dict
        ``frame_t``, ``luminance`` (0..1); ``audio_t``, ``rms``; ``word_onsets_s`` (each may be absent).
    """
    from ..io.video import VideoReader, read_audio

    out: Dict[str, np.ndarray] = {}
    if video is not None:
        t_list, lum = [], []
        with VideoReader(video) as reader:
            for _i, t_s, rgb in reader.iter_frames(size_hw=(36, 48)):
                if token is not None and _i % 200 == 0:
                    token.raise_if_cancelled()
                t_list.append(t_s)
                lum.append(float((rgb.reshape(-1, 3).astype(np.float32) @ np.float32([0.299, 0.587, 0.114])).mean())
                           / 255.0)
            has_audio = reader.has_audio
        out["frame_t"], out["luminance"] = np.asarray(t_list), np.asarray(lum)
    else:
        has_audio = False
    source = audio if audio is not None else (video if has_audio else None)
    if source is not None:
        samples, sr = read_audio(source, sr=16000)
        win = int(0.1 * sr)
        n = samples.size // win
        if n:
            out["rms"] = np.sqrt((samples[:n * win].astype(np.float64).reshape(n, win) ** 2).mean(axis=1))
            out["audio_t"] = (np.arange(n) + 0.5) * 0.1
    if words is not None and len(words):
        out["word_onsets_s"] = np.asarray(words["onset_s"], dtype=np.float64)
    return out


def stimulus_features(traces: Mapping[str, np.ndarray], n_trs: int, tr_s: float,
                      onset_s: float = 0.0) -> Dict[str, np.ndarray]:
    """Per-TR ``audio_envelope`` (mean RMS), ``luminance`` and ``word_rate`` (onsets per TR) from
    :func:`stimulus_traces`, each (n_trs,) float64."""
    from ..timeline import bin_to_trs

    out: Dict[str, np.ndarray] = {}
    if "rms" in traces:
        out["audio_envelope"] = bin_to_trs(traces["audio_t"], traces["rms"], n_trs, tr_s, onset_s)
    if "luminance" in traces:
        out["luminance"] = bin_to_trs(traces["frame_t"], traces["luminance"], n_trs, tr_s, onset_s)
    if "word_onsets_s" in traces:
        on = traces["word_onsets_s"]
        out["word_rate"] = bin_to_trs(on, np.ones(on.size), n_trs, tr_s, onset_s, reduce="sum")
    return out


def convolve_hrf(x: np.ndarray, tr_s: float) -> np.ndarray:
    """Columns of ``x`` (n_trs, k) convolved with :func:`spm_hrf`, cut to n_trs."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    h = spm_hrf(tr_s)
    return np.stack([np.convolve(x[:, j] - x[:, j].mean(), h)[:x.shape[0]] for j in range(x.shape[1])], axis=1)


def _zscore_cols(a: np.ndarray) -> np.ndarray:
    """Columns centred and scaled to unit norm (z-scores / sqrt(n_trs)): a dot product is Pearson r."""
    from ..encoding.preprocess import zscore_columns

    return zscore_columns(a, axis=0) / np.sqrt(max(np.shape(a)[0], 1))


def _lagged_targets(Y: np.ndarray, lags: Sequence[int]) -> List[np.ndarray]:
    """Per lag, the targets' overlapping segment centred and scaled to unit norm (float32)."""
    n = Y.shape[0]
    out = []
    for L in lags:
        ya = Y[L:] if L >= 0 else Y[:n + L]
        out.append(_zscore_cols(np.asarray(ya, dtype=np.float64)).astype(np.float32))
    return out


def lag_statistic(xs: np.ndarray, Y, lags: Sequence[int], top_k: int) -> np.ndarray:
    """Mean |r| of the ``top_k`` best targets for each predictor and lag.

    Parameters
    ----------
    xs : ndarray (n_draws, n_trs)
        Predicted responses (e.g. the observed one, then null draws).
    Y : ndarray (n_trs, n_targets), or the list :func:`_lagged_targets` made of it
    lags : sequence of int
    top_k : int

    Returns
    -------
    stat : ndarray (n_draws, n_lags)
    """
    ys = _lagged_targets(Y, lags) if isinstance(Y, np.ndarray) else Y
    n = ys[lags.index(0)].shape[0] if 0 in lags else xs.shape[1]
    out = np.empty((xs.shape[0], len(lags)))
    for j, L in enumerate(lags):
        xa = xs[:, :n - L] if L >= 0 else xs[:, -L:]
        xz = _zscore_cols(np.asarray(xa, dtype=np.float64).T).T.astype(np.float32)
        r = np.abs(xz @ ys[j])                                 # n_draws, n_targets
        k = min(top_k, r.shape[1])
        out[:, j] = np.partition(r, r.shape[1] - k, axis=1)[:, -k:].mean(axis=1)
    return out


def region_means(Y: np.ndarray, labels) -> np.ndarray:
    """Mean time course per region: ``labels`` (n_targets,) ints (0 = none) or a mapping
    name -> target indices. Returns (n_trs, n_regions)."""
    if isinstance(labels, Mapping):
        return np.stack([Y[:, np.asarray(idx, int)].mean(axis=1) for idx in labels.values()], axis=1)
    labels = np.asarray(labels)
    ids = np.unique(labels[labels > 0])
    if ids.size == 0:
        return Y
    from scipy import sparse

    keep = np.flatnonzero(labels > 0)
    col = np.searchsorted(ids, labels[keep])
    m = sparse.csr_matrix((np.ones(keep.size), (keep, col)), shape=(labels.size, ids.size))
    counts = np.asarray(m.sum(axis=0)).ravel()
    return np.asarray(m.T.dot(Y.T)).T / counts


def _refine(curve: np.ndarray, i: int) -> float:
    """Sub-lag position of a peak by a parabola through it and its neighbours."""
    if 0 < i < len(curve) - 1:
        a, b, c = curve[i - 1], curve[i], curve[i + 1]
        den = a - 2 * b + c
        if den < 0:
            return float(np.clip(0.5 * (a - c) / den, -0.5, 0.5))
    return 0.0


def estimate_lag(features: Mapping[str, np.ndarray], data: np.ndarray, tr_s: float,
                 max_lag_trs: int = C.SYNC_MAX_LAG_TRS, top_fraction: float = C.SYNC_TOP_FRACTION,
                 regions: Optional[Mapping[str, Sequence[int]]] = None, n_null: int = C.SYNC_N_NULL,
                 seed: int = 0) -> Dict[str, Any]:
    """Best stimulus-brain lag of one run from several features.

    Parameters
    ----------
    features : mapping name -> (n_trs,) or (n_trs, k)
        Per-TR stimulus features (before HRF convolution); constant ones are skipped.
    data : ndarray (n_trs, n_targets)
    tr_s : float
    max_lag_trs : int
        Lags searched each way (reduced to a quarter of the run when it is short).
    top_fraction : float
        Fraction of targets averaged at each lag (at least one).
    regions : (n_targets,) int labels (0 = none) or mapping name -> target indices, optional
        Use these regions' mean time courses as the targets instead (e.g. atlas parcels for
        vertex runs: faster and less noisy).
    n_null : int
    seed : int

    Returns
    -------
    dict
        ``lags`` (n_lags,) TRs; ``curve`` (n_lags,) combined standardised statistic; per
        feature ``features[name] = {curve, best_lag, peak, null95, p}``; ``best_lag`` (TRs,
        sub-TR refined), ``offset_s`` (= best_lag x tr_s), ``significant`` (bool), ``used``.
    """
    Y = detrend(np.asarray(data, dtype=np.float64), 1)
    n = Y.shape[0]
    if regions is not None:
        Y = region_means(Y, regions)
    live = Y.std(axis=0) > 0
    Y = Y[:, live]
    if Y.shape[1] > MAX_TARGETS:       # voxels or dense vertices without an atlas: an even subset
        Y = Y[:, np.linspace(0, Y.shape[1] - 1, MAX_TARGETS).round().astype(int)]
    max_lag = int(min(max_lag_trs, max(1, (n - 2) // 4)))
    lags = list(range(-max_lag, max_lag + 1))
    top_k = max(1, int(round(top_fraction * Y.shape[1])))
    rng = np.random.default_rng(seed)
    lo, hi = max_lag + 2, n - max_lag - 2
    shifts = rng.integers(lo, hi, size=n_null) if hi > lo else np.zeros(0, int)
    result: Dict[str, Any] = {"lags": np.asarray(lags), "features": {}, "used": [], "top_k": top_k,
                              "n_targets": int(Y.shape[1])}
    combined = np.zeros(len(lags))
    names, rows = [], []
    for name, values in features.items():
        v = np.asarray(values, dtype=np.float64)
        v = v[:, min(SYNC_FEATURES.get(name, 0), v.shape[1] - 1)] if v.ndim == 2 else v
        if v.shape[0] != n or not np.isfinite(v).all() or v.std() == 0 or Y.shape[1] == 0:
            continue
        x = convolve_hrf(v, tr_s)[:, 0]
        names.append(name)
        rows.append(np.stack([x] + [np.roll(x, int(s)) for s in shifts]))
    if names:
        per = 1 + len(shifts)
        stats = lag_statistic(np.concatenate(rows), _lagged_targets(Y, lags), lags, top_k)
        for f, name in enumerate(names):
            stat = stats[f * per:(f + 1) * per]
            obs = stat[0]
            null = stat[1:].max(axis=1) if len(shifts) else np.zeros(1)
            null95 = float(np.percentile(null, 95))
            peak = float(obs.max())
            p = float((1 + np.sum(null >= peak)) / (1 + null.size))
            mu, sd = (stat[1:].mean(), stat[1:].std() or 1.0) if len(shifts) else (0.0, 1.0)
            i = int(np.argmax(obs))
            result["features"][name] = {"curve": obs, "best_lag": lags[i], "peak": peak, "null95": null95, "p": p,
                                        "at_zero": float(obs[lags.index(0)])}
            if peak > null95:
                combined += (obs - mu) / sd
                result["used"].append(name)
    result["significant"] = bool(result["used"])
    if not result["significant"]:
        # nothing beats its null: report the strongest feature's curve, no lag is trusted
        for name, f in result["features"].items():
            combined = combined + (f["curve"] - f["curve"].mean())
    i = int(np.argmax(combined)) if combined.any() else lags.index(0)
    best = lags[i] + _refine(combined, i)
    result.update(curve=combined, best_lag=float(best), best_lag_trs=int(lags[i]), offset_s=float(best * tr_s))
    return result


def check_sync(name: str, data: np.ndarray, tr_s: float, features: Mapping[str, np.ndarray],
               expected_lag_trs: float = 0.0, regions: Optional[Mapping[str, Sequence[int]]] = None,
               subject_label: Optional[str] = None) -> Check:
    """The sync check of one run (see the module docstring)."""
    n_trs = int(np.asarray(data).shape[0])
    if n_trs < C.SYNC_MIN_TRS:
        return Check("sync", "warn", f"{name}: expected at least {C.SYNC_MIN_TRS} TRs to measure the stimulus-brain "
                     f"lag, found {n_trs}: the sync is not checked", subject=subject_label or name, category="sync",
                     details={"n_trs": n_trs})
    est = estimate_lag(features, data, tr_s, regions=regions)
    best_trs = est["best_lag_trs"]
    per = {k: {kk: vv for kk, vv in v.items() if kk != "curve"} for k, v in est["features"].items()}
    det = {"best_lag_trs": est["best_lag"], "offset_s": est["offset_s"], "expected_lag_trs": expected_lag_trs,
           "tr_s": tr_s, "significant": est["significant"], "features_used": est["used"], "per_feature": per,
           "lags": est["lags"], "top_k_targets": est["top_k"]}
    payload = {"lags": est["lags"], "curve": est["curve"],
               "feature_curves": {k: v["curve"] for k, v in est["features"].items()}}
    subject = subject_label or name
    if not est["features"]:
        return Check("sync", "warn", f"{name}: expected stimulus features that vary (audio envelope, luminance, word "
                     "rate), found none: the sync cannot be checked", subject=subject, category="sync", details=det)
    if not est["significant"]:
        strongest = max(est["features"].items(), key=lambda kv: kv[1]["peak"] / max(kv[1]["null95"], 1e-12))
        return Check("sync", "warn", f"{name}: expected responses that follow the stimulus features, found none "
                     f"above chance (best: {strongest[0]} mean |r| {strongest[1]['peak']:.2f} vs 95 % null "
                     f"{strongest[1]['null95']:.2f}): the sync cannot be confirmed (wrong episode, or very noisy)",
                     subject=subject, category="sync", details=det, view="sync", data=payload)
    off = est["best_lag"] - expected_lag_trs
    off = 0.0 if abs(off) < 0.05 else off        # no "-0.0"
    feats = ", ".join(f"{k} {v['best_lag']:+d}" for k, v in est["features"].items() if k in est["used"])
    if abs(best_trs - expected_lag_trs) > C.SYNC_OK_LAG_TRS:
        sec = off * tr_s
        if off < 0:
            why = (f"the brain responds {abs(sec):.1f} s earlier than the stimulus predicts: volumes are missing at "
                   f"the start of the run or the stimulus starts late; an onset_s of about {-sec:+.2f} s lines them up")
        else:
            why = (f"the brain responds {sec:.1f} s later than a haemodynamic delay predicts: the run started before "
                   f"the stimulus (about {int(round(off))} extra volume(s) at its start); an onset_s of about "
                   f"{-sec:+.2f} s (or dropping those volumes) lines them up")
        return Check("sync", "fail", f"{name}: expected the best stimulus-brain lag within ±{C.SYNC_OK_LAG_TRS} TR of "
                     f"the HRF delay, found {off:+.1f} TRs ({sec:+.2f} s; per feature: {feats}): {why}",
                     subject=subject, category="sync", details=det, view="sync", data=payload)
    return Check("sync", "pass", f"{name}: in sync with the stimulus (best lag {off:+.1f} TR = {off * tr_s:+.2f} s "
                 f"after the HRF; {feats})", subject=subject, category="sync", details=det, view="sync", data=payload)
