"""A tiny synthetic project with planted, checkable content (no Qt here).

- a video whose frame ``i`` has a uniform left half of grey level ``LEVEL_STEP * i``
  (so a displayed frame can be identified from its pixels),
- subtitle cues and word timings,
- two fMRI runs (n_trs, n_targets) with known values,
- an encoding result with predictions / measured per run where edges were dropped.

Used by tests/engine/test_session.py and the GUI tests.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, List

import numpy as np
import pandas as pd

from engine.project import Episode, Project, RunRef

FPS = 10
LEVEL_STEP = 4
TR_S = 1.0
N_START = 1  # edges the planted result dropped at each run's start


@dataclass
class Synthetic:
    project_path: Path
    project: Project
    n_frames: int
    runs: Dict[str, np.ndarray]          # name -> (n_trs, n_targets)
    predictions: List[np.ndarray]
    measured: List[np.ndarray]
    scores: np.ndarray
    cues: pd.DataFrame
    words: pd.DataFrame
    labels: np.ndarray
    region_names: List[str]
    result: object = None
    extra: dict = field(default_factory=dict)


def write_video(path: Path, n_frames: int, fps: int = FPS, size=(64, 48)) -> None:
    import av

    w, h = size
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(fps, 1))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": "10", "g": "10"}
        sr = 16000
        audio = out.add_stream("aac", rate=sr)
        audio.layout = "mono"
        for i in range(n_frames):
            rgb = np.zeros((h, w, 3), np.uint8)
            rgb[:, : w // 2] = (LEVEL_STEP * i) % 256   # wraps after 64 frames (6.4 s)
            rgb[:, w // 2:, 2] = 200  # a blue right half: colour for the screenshot checks
            rgb[: h // 4, w // 2:, 0] = 255
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        # a 440 Hz tone whose loudness grows each second (an audio envelope to recover)
        t = np.arange(int(sr * n_frames / fps)) / sr
        wave = (0.05 * (1 + np.floor(t)) * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        block = 1024
        for start in range(0, len(wave), block):
            chunk = wave[start:start + block][None, :]
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            frame.sample_rate = sr
            frame.pts = start
            for packet in audio.encode(frame):
                out.mux(packet)
        for packet in audio.encode():
            out.mux(packet)


def frame_level_to_index(rgb: np.ndarray) -> int:
    """Invert the planted grey level of a frame's left half."""
    h, w = rgb.shape[:2]
    level = float(rgb[h // 4: 3 * h // 4, w // 8: 3 * w // 8].mean())
    return int(round(level / LEVEL_STEP))


def write_project(root: Path, n_targets: int = 20484, n_trs: int = 6, seconds: float = 6.0,
                  seed: int = 0, n_regions: int = 4) -> Synthetic:
    """Write the synthetic project under ``root`` and return its ground truth."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "stimuli").mkdir(exist_ok=True)
    (root / "fmri").mkdir(exist_ok=True)
    n_frames = int(seconds * FPS)
    write_video(root / "stimuli" / "ep.mp4", n_frames)

    cues = pd.DataFrame({"onset_s": [0.5, 2.0, 4.2], "duration_s": [1.0, 1.5, 1.0],
                         "text": ["Hello there.", "How are you?", "Fine, thanks."]})
    words = pd.DataFrame({"onset_s": [0.5, 0.8, 2.0, 2.2, 2.5, 4.2, 4.6],
                          "duration_s": [0.3] * 7,
                          "word": ["Hello", "there", "How", "are", "you", "Fine", "thanks"]})
    (root / "stimuli" / "ep.srt").write_text(
        "1\n00:00:00,500 --> 00:00:01,500\nHello there.\n\n"
        "2\n00:00:02,000 --> 00:00:03,500\nHow are you?\n\n"
        "3\n00:00:04,200 --> 00:00:05,200\nFine, thanks.\n")
    words.to_csv(root / "stimuli" / "ep_words.tsv", sep="\t", index=False)

    runs = {}
    refs = []
    for k in (1, 2):
        name = f"sub-01_run-{k}"
        data = rng.standard_normal((n_trs, n_targets)).astype(np.float32)
        data[:, 0] = np.arange(n_trs) * 10 + k  # a planted vertex
        np.save(root / "fmri" / f"{name}.npy", data)
        runs[name] = data
        space = "fsaverage5" if n_targets == 20484 else "custom"
        refs.append(RunRef(name=name, path=f"fmri/{name}.npy", episode="ep", tr_s=TR_S, space=space))

    measured = [r[N_START:] for r in runs.values()]
    labels = (np.arange(n_targets) * n_regions // n_targets + 1).astype(int)
    # predictions: close to the data in region 2 (high r), noisy elsewhere (low r)
    noise_sd = np.where(labels == 2, 0.1, 3.0).astype(np.float32)
    predictions = [(0.5 * m + noise_sd * rng.standard_normal(m.shape)).astype(np.float32) for m in measured]
    p_all, m_all = np.concatenate(predictions), np.concatenate(measured)
    pc, mc = p_all - p_all.mean(0), m_all - m_all.mean(0)
    scores = ((pc * mc).sum(0) / np.sqrt((pc ** 2).sum(0) * (mc ** 2).sum(0))).astype(np.float32)
    labels[: max(n_targets // 50, 1)] = 0  # a "medial wall" without a region
    region_names = [f"Region {i}" for i in range(1, n_regions + 1)]  # names[k - 1] names label k

    project = Project(name="synthetic", episodes=[Episode(name="ep", video="stimuli/ep.mp4",
                                                           subtitles="stimuli/ep.srt",
                                                           words="stimuli/ep_words.tsv")],
                      runs=refs, atlases=[], extra={"n_start": N_START})
    result = SimpleNamespace(scores=scores, predictions=predictions, measured=measured,
                             run_names=list(runs), provenance={"first_tr": N_START}, space="fsaverage5")
    if importlib.util.find_spec("engine.encoding.results") is not None:
        try:
            from engine.encoding.results import EncodingResult

            real = EncodingResult(scores=scores, alphas=np.ones(n_targets, np.float32), predictions=predictions,
                                  measured=measured, run_names=list(runs), space="fsaverage5",
                                  feature_names=["synthetic"], provenance={"first_tr": N_START})
            (root / "results").mkdir(exist_ok=True)
            real.save(root / "results" / "synthetic.h5")
            project.results["synthetic"] = "results/synthetic.h5"
            result = real
        except TypeError:
            pass  # a constructor that differs: keep the plain container
    path = project.save(root / "synthetic.alignscope.json")
    return Synthetic(path, project, n_frames, runs, predictions, measured, scores, cues, words,
                     labels, region_names, result)


def make_session(syn: Synthetic, load_mesh: bool = True):
    """A ProjectSession over the synthetic project, built from the engine's own loaders
    where they exist (video reader, surface) and from the planted arrays otherwise."""
    from engine.io.video import VideoReader
    from engine.io.atlases import Atlas
    from engine.session import LoadedRun, ProjectSession, load_surface

    p = syn.project
    ep = p.episodes[0]
    runs = [LoadedRun(ref, syn.runs[ref.name]) for ref in p.runs]
    atlas = Atlas("synthetic", "fsaverage5", syn.labels, syn.region_names)
    surface = load_surface("inflated") if load_mesh else None
    return ProjectSession(p, ep, VideoReader(p.path(ep.video)), syn.words, syn.cues, runs, syn.result,
                          surface, atlas, result_name="synthetic")


def write_parcel_project(root: Path, atlas_name: str = "schaefer100", n_trs: int = 6, seed: int = 1):
    """Like :func:`write_project`, but the runs are parcel tables of a bundled atlas (one
    column per parcel, as in the Algonauts release) and the result is per parcel.

    Returns (project_path, atlas, runs dict, measured list, predictions list, scores).
    """
    from engine.encoding.results import EncodingResult
    from engine.io.atlases import load_atlas

    syn = write_project(root, n_targets=8, n_trs=n_trs, seconds=6.0, seed=seed)   # video, text
    atlas = load_atlas(atlas_name, "fsaverage5")
    rng = np.random.default_rng(seed)
    p = syn.project
    runs = {}
    p.runs = []
    for k in (1, 2):
        name = f"sub-01_run-{k}_parcels"
        data = rng.standard_normal((n_trs, atlas.n_parcels)).astype(np.float32)
        np.save(root / "fmri" / f"{name}.npy", data)
        runs[name] = data
        p.runs.append(RunRef(name=name, path=f"fmri/{name}.npy", episode="ep", tr_s=TR_S, space="parcels",
                             atlas=atlas_name))
    measured = [r[N_START:] for r in runs.values()]
    predictions = [(0.5 * m + rng.standard_normal(m.shape)).astype(np.float32) for m in measured]
    scores = rng.uniform(-0.1, 0.6, atlas.n_parcels).astype(np.float32)
    res = EncodingResult(scores=scores, alphas=np.ones(atlas.n_parcels), predictions=predictions,
                         measured=measured, run_names=list(runs), space="parcels",
                         provenance={"drop_edges": [N_START, 0]})
    res.save(root / "results" / "parcels.h5")
    p.results = {"parcels": "results/parcels.h5"}
    path = p.save(root / "synthetic.alignscope.json")
    return path, atlas, runs, measured, predictions, scores
