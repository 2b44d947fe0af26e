"""Planted-truth fMRI made UNLIKE the engine's model: canonical HRF, AR(1) noise, drift, raw units.

The engine fits FIR delays on TR-sampled features; this generator instead convolves drivers
sampled at 0.1 s with SPM's canonical double-gamma HRF (peak ~5 s, undershoot ~15 s), samples
them at the middle of each TR, adds AR(1) noise (phi ~0.5), optionally a slow drift and a
raw-scanner-units offset, and shows DIFFERENT stimuli in each run (distinct random drivers).

Feature spaces (per run, TR-sampled, what a feature extractor would give):

- ``visual`` (3 columns): smooth random processes (e.g. luminance, motion, contrast);
- ``audio`` (1 column): an amplitude envelope with silences;
- ``mel`` (32 columns): mel-like bands = the envelope times positive weights plus their own
  noise (correlated distractors: they carry the envelope, noisily);
- ``words`` (1 column): word rate (Poisson counts while speech is on).

Regions (targets driven by one space's drivers): ``visual``, ``audio``, ``words``; the rest
are noise targets. ``true_regressors[region]`` holds the HRF-convolved drivers per run (what an
oracle would regress on).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List

import numpy as np
from scipy.stats import gamma as _gamma

DT = 0.1   # s, the fine grid of the drivers


def spm_hrf(dt: float = DT, length_s: float = 32.0) -> np.ndarray:
    """SPM canonical HRF sampled every ``dt`` s: gamma(6) - gamma(16) / 6, unit sum."""
    t = np.arange(0, length_s, dt)
    h = _gamma.pdf(t, 6) - _gamma.pdf(t, 16) / 6.0
    return h / h.sum()


def _smooth(rng, n, tau_s, dt=DT):
    """Unit-variance AR(1) process with time constant ``tau_s`` on the fine grid."""
    phi = np.exp(-dt / tau_s)
    e = rng.standard_normal(n) * np.sqrt(1 - phi ** 2)
    x = np.empty(n)
    x[0] = rng.standard_normal()
    for i in range(1, n):
        x[i] = phi * x[i - 1] + e[i]
    return x


def _ar1(rng, n, k, phi):
    e = rng.standard_normal((n, k)) * np.sqrt(1 - phi ** 2)
    x = np.empty((n, k))
    x[0] = rng.standard_normal(k)
    for i in range(1, n):
        x[i] = phi * x[i - 1] + e[i]
    return x


@dataclass
class Planted:
    """What :func:`make_planted` returns.

    Attributes
    ----------
    X : dict space -> list of (n_trs, n_cols) float32, one array per run
    Y : list of (n_trs, n_targets) float32
    regions : dict region -> target indices (region name = the space that drives it)
    noise : (n_noise,) target indices driven by nothing
    true_regressors : dict region -> list of (n_trs, k) float64 HRF-convolved drivers per run
    tr_s : float
    """

    X: Dict[str, List[np.ndarray]]
    Y: List[np.ndarray]
    regions: Dict[str, np.ndarray]
    noise: np.ndarray
    true_regressors: Dict[str, List[np.ndarray]] = field(default_factory=dict)
    tr_s: float = 1.5


def make_planted(n_runs: int = 2, n_trs: int = 300, tr_s: float = 1.5, n_per_region: int = 6,
                 n_noise: int = 60, phi: float = 0.5, snr: float = 0.6, drift: bool = True,
                 raw_units: bool = True, same_stimulus: bool = False, seed: int = 0) -> Planted:
    """Planted-truth runs (see the module docstring).

    Parameters
    ----------
    n_runs, n_trs, tr_s : runs, TRs per run, repetition time
    n_per_region : targets per driven region (visual, audio, words)
    n_noise : noise targets
    phi : AR(1) coefficient of the noise (per TR)
    snr : standard deviation of the signal over that of the noise, per driven target
    drift : add a slow drift (linear + a 200 s cosine) to every target
    raw_units : put targets in scanner units (baseline ~800-1200, 1% signal scale)
    same_stimulus : every run shows run 0's stimulus (repeats), with new noise
    seed : random seed
    """
    rng = np.random.default_rng(seed)
    hrf = spm_hrf()
    n_fine = int(round(n_trs * tr_s / DT))
    sample = (np.arange(n_trs) * tr_s + tr_s / 2) / DT
    sample = np.minimum(sample.astype(int), n_fine - 1)
    region_names = ["visual", "audio", "words"]
    regions = {name: np.arange(i * n_per_region, (i + 1) * n_per_region) for i, name in enumerate(region_names)}
    n_driven = len(region_names) * n_per_region
    n_targets = n_driven + n_noise
    noise_idx = np.arange(n_driven, n_targets)
    weights = {"visual": rng.standard_normal((3, n_per_region)),
               "audio": np.abs(rng.standard_normal((1, n_per_region))) + 0.5,
               "words": np.abs(rng.standard_normal((1, n_per_region))) + 0.5}
    mel_w = np.abs(rng.standard_normal(32)) + 0.2
    baseline = rng.uniform(800, 1200, n_targets)

    X = {"visual": [], "audio": [], "mel": [], "words": []}
    true = {name: [] for name in region_names}
    Y = []
    stim_rng_state = None
    for r in range(n_runs):
        if same_stimulus:
            if stim_rng_state is None:
                stim_rng_state = np.random.default_rng(seed + 1000)
                stim = _stimulus(stim_rng_state, n_fine)
        else:
            stim = _stimulus(rng, n_fine)
        drivers = stim
        # features, TR-sampled (the mean over each TR on the fine grid)
        per_tr = lambda v: v[: n_trs * int(round(tr_s / DT))].reshape(n_trs, -1, *v.shape[1:]).mean(1)  # noqa: E731
        vis = per_tr(drivers["visual"])
        env = per_tr(drivers["audio"][:, None])
        words = per_tr(drivers["words"][:, None])
        mel = env * mel_w[None, :] + 0.5 * rng.standard_normal((n_trs, 32)) * env.std()
        X["visual"].append(vis.astype(np.float32))
        X["audio"].append(env.astype(np.float32))
        X["mel"].append(mel.astype(np.float32))
        X["words"].append(words.astype(np.float32))
        signal = np.zeros((n_trs, n_targets))
        for name in region_names:
            d = drivers[name] if drivers[name].ndim == 2 else drivers[name][:, None]
            conv = np.stack([np.convolve(d[:, j], hrf)[:n_fine] for j in range(d.shape[1])], 1)[sample]
            conv = (conv - conv.mean(0)) / conv.std(0)
            true[name].append(conv)
            s = conv @ weights[name]
            signal[:, regions[name]] = s / s.std(0) * snr
        noise = _ar1(rng, n_trs, n_targets, phi)
        y = signal + noise
        if drift:
            t = np.arange(n_trs) * tr_s
            slope = rng.standard_normal(n_targets) * 1.5 / (n_trs * tr_s)
            slow = np.cos(2 * np.pi * t[:, None] / 200.0 + rng.uniform(0, 2 * np.pi, n_targets)[None, :])
            y = y + slope[None, :] * t[:, None] + 0.8 * slow
        if raw_units:
            y = baseline[None, :] * (1 + 0.01 * y)
        Y.append(y.astype(np.float32))
    return Planted(X=X, Y=Y, regions=regions, noise=noise_idx, true_regressors=true, tr_s=tr_s)


def _stimulus(rng, n_fine):
    """Drivers on the fine grid: visual (3 smooth processes), audio envelope, word rate."""
    visual = np.stack([_smooth(rng, n_fine, tau) for tau in (2.0, 4.0, 8.0)], 1)
    speech_on = _smooth(rng, n_fine, 6.0) > -0.3
    envelope = np.abs(_smooth(rng, n_fine, 0.5)) * speech_on
    # word onsets at ~2.5 words/s while speech is on (independent of the envelope's fine shape)
    onsets = (rng.random(n_fine) < 2.5 * DT) & _gate(rng, n_fine)
    words = np.convolve(onsets.astype(float), np.ones(int(1.0 / DT)), mode="same")   # words per s
    return {"visual": visual, "audio": envelope, "words": words}


def _gate(rng, n_fine):
    """Stretches of narration with pauses (independent of the audio gate)."""
    return _smooth(rng, n_fine, 8.0) > -0.2
