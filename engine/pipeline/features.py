"""Features of an episode for any model, all through one cache.

:func:`episode_features_job` gives ``{layer: (n_trs, n_features) float32}`` for a registry
name, a local model folder, a Hub id found in the offline cache, or ``"lowlevel"`` -- every
one through :func:`engine.features.extract.extract_features_job`, so every one is cached
(:mod:`engine.features.cache`) and resumable the same way. Stimuli without a video (an audio
file and/or word timings) get the low-level audio and word-rate layers from
:class:`AudioWordsExtractor`, cached the same way.

:func:`list_models` and :func:`model_layers` tell the window's analysis dialog what it can
offer, without loading any weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..errors import ConfigError, ModelNotFoundError, expected_found
from ..jobs import Progress

__all__ = ["ModelInfo", "list_models", "model_layers", "model_info", "episode_features_job",
           "AudioWordsExtractor", "LOWLEVEL_LAYERS", "events_regressors", "stimulus_files", "stimulus_episode",
           "project_episode"]

LOWLEVEL_LAYERS = ("luminance", "contrast", "motion", "audio_envelope", "mel", "word_rate")
_AUDIO_WORD_LAYERS = ("audio_envelope", "mel", "word_rate")


@dataclass
class ModelInfo:
    """A model the analysis can use.

    Attributes
    ----------
    name : str
        What to pass as ``AnalysisSpec.model`` (registry name, folder path or Hub id).
    model : str
        Hub id or folder behind it.
    family, modality : str
    source : str
        ``"registry"``, ``"hf-cache"`` or ``"folder"``.
    available : bool
        Weights found offline (always True for ``lowlevel``).
    detail : str
        Where the weights are, or why they are not usable.
    """

    name: str
    model: str
    family: str
    modality: str
    source: str
    available: bool
    detail: str = ""


def _cached_snapshots() -> Dict[str, Path]:
    """``{hub id: snapshot folder}`` of every model in the offline Hugging Face cache."""
    from ..features.registry import hf_hub_cache

    out: Dict[str, Path] = {}
    root = hf_hub_cache()
    if not root.is_dir():
        return out
    for repo in sorted(root.glob("models--*")):
        snaps = sorted((repo / "snapshots").glob("*/config.json"), key=lambda p: p.stat().st_mtime)
        if snaps:
            out[repo.name[len("models--"):].replace("--", "/")] = snaps[-1].parent
    return out


def model_info(model: str) -> ModelInfo:
    """What ``model`` (registry name, folder or Hub id) is, checked offline without loading weights.

    Raises :class:`~engine.errors.ModelNotFoundError` / :class:`~engine.errors.ConfigError` with
    what was expected for a folder that is not a model folder.
    """
    from ..features.registry import family_from_config, list_specs, resolve_weights

    specs = list_specs()
    if model in specs:
        spec = specs[model]
        if spec.family == "lowlevel":
            return ModelInfo(spec.name, spec.model, spec.family, spec.modality, "registry", True, "built in")
        try:
            folder = resolve_weights(spec)
            return ModelInfo(spec.name, spec.model, spec.family, spec.modality, "registry", True, str(folder))
        except ModelNotFoundError as exc:
            return ModelInfo(spec.name, spec.model, spec.family, spec.modality, "registry", False, str(exc))
    from ..features.base import ModelSpec

    folder = resolve_weights(ModelSpec(model=str(model), family="auto", name=Path(str(model)).name))
    family, modality = family_from_config(folder)
    source = "folder" if Path(str(model)).expanduser().is_dir() else "hf-cache"
    return ModelInfo(str(model), str(model), family, modality, source, True, str(folder))


def list_models(folders: Sequence = ()) -> List[ModelInfo]:
    """Models for the analysis dialog: the registry (available or not), every model in the offline
    Hugging Face cache, and the given local ``folders`` (validated; a bad folder raises with the reason)."""
    from ..features.registry import family_from_config, list_specs

    out = [model_info(name) for name in list_specs()]
    known = {m.model for m in out}
    for hub_id, folder in _cached_snapshots().items():
        if hub_id in known:
            continue
        try:
            family, modality = family_from_config(folder)
        except ConfigError as exc:
            out.append(ModelInfo(hub_id, hub_id, "?", "?", "hf-cache", False, str(exc)))
            continue
        out.append(ModelInfo(hub_id, hub_id, family, modality, "hf-cache", True, str(folder)))
    out.extend(model_info(str(Path(f).expanduser().resolve())) for f in folders)
    return out


def _n_blocks_from_config(cfg: dict) -> Optional[int]:
    """Transformer blocks from a config.json dict (a vision tower's for CLIP-like configs)."""
    keys = ("num_hidden_layers", "n_layer", "num_layers", "encoder_layers", "n_layers")
    for c in (cfg, cfg.get("vision_config"), cfg.get("text_config"), cfg.get("audio_config")):
        if isinstance(c, dict):
            for key in keys:
                if isinstance(c.get(key), int):
                    return int(c[key])
    return None


def model_layers(model: str) -> List[str]:
    """Layer names a model offers (``layer00`` = embeddings ... ``layerNN`` = last block), read
    from its ``config.json`` without loading weights; the named layers for ``lowlevel``.

    Raises :class:`~engine.errors.ModelNotFoundError` when the weights are not found offline.
    """
    from ..features.base import ModelSpec, layer_name
    from ..features.hf import read_json
    from ..features.registry import list_specs, resolve_weights

    specs = list_specs()
    if model in specs:
        if specs[model].family == "lowlevel":
            return list(LOWLEVEL_LAYERS)
        folder = resolve_weights(specs[model])
    else:
        folder = resolve_weights(ModelSpec(model=str(model), family="auto", name=Path(str(model)).name))
    n = _n_blocks_from_config(read_json(Path(folder) / "config.json"))
    if n is None:
        raise ConfigError(expected_found(f"layer count of {model}", "num_hidden_layers in config.json", "none"))
    return [layer_name(i) for i in range(n + 1)]


# ---------------------------------------------------------------------------- extraction
class AudioWordsExtractor:
    """Low-level features of a stimulus without a video: audio envelope and mel bands (from the
    audio file) and word rate (from the word timings). Used by :func:`episode_features_job` for
    ``lowlevel`` when the episode has no video; cached like every extractor."""

    modality = "multimodal"
    inputs = ("audio", "text")

    def __init__(self, spec, episode) -> None:
        wanted = [str(x) for x in spec.layers if isinstance(x, str)]
        available = ([l for l in ("audio_envelope", "mel") if episode.audio_path is not None]
                     + (["word_rate"] if episode.words is not None else []))
        if not available:
            raise ConfigError("low-level features: expected a video, an audio file or word timings, found none")
        bad = [x for x in wanted if x not in available]
        if bad:
            raise ConfigError(expected_found("low-level layers of a stimulus without a video",
                                             f"some of {available}", bad))
        self.layers = wanted or available
        self.spec = spec.replace(layers=tuple(self.layers))
        self.identity = {"model": "lowlevel", "family": "lowlevel", "variant": "audio+words (no video)"}

    def extract(self, episode, tr_indices=None, token=None, ablate: str = "none"):
        from ..features.hf import episode_tr_indices
        from ..features.lowlevel import AUDIO_SR, audio_features, word_rate

        idx = episode_tr_indices(episode, tr_indices)
        out = {}
        if any(l in self.layers for l in ("audio_envelope", "mel")):
            from ..io.video import read_audio

            yield Progress(0, 2, "low-level audio features")
            samples, sr = read_audio(episode.audio_path, sr=AUDIO_SR)
            out.update(audio_features(samples, sr, episode.n_trs, episode.tr_s, episode.onset_s))
        if token is not None:
            token.raise_if_cancelled()
        if "word_rate" in self.layers:
            words = None if ablate == "text" else episode.words
            out["word_rate"] = word_rate(words, episode.n_trs, episode.tr_s, episode.onset_s)
        feats = {k: np.asarray(out[k], np.float32).reshape(episode.n_trs, -1)[idx] for k in self.layers}
        from ..features.base import BatchFeatures

        yield Progress(2, 2, "low-level features", payload=BatchFeatures(idx, feats))
        return feats


def episode_features_job(episode, model: str = "lowlevel", layers: Optional[Sequence] = None,
                         pooling: Optional[str] = None, window_s: Optional[float] = None,
                         context_words: Optional[int] = None, frames_per_window: Optional[int] = None,
                         device: str = "auto", dtype: Optional[str] = None, ablate: str = "none",
                         batch_size: Optional[int] = None, cache_dir=None, use_cache: bool = True,
                         family: Optional[str] = None, trust_remote_code: bool = False, token=None):
    """Job: ``{layer: FeatureSpace}`` of one episode (:class:`~engine.features.base.EpisodeInputs`), cached.

    ``layers``: indices or relative depths for transformers, names for ``lowlevel``.
    """
    from ..features.extract import extract_features_job
    from ..features.registry import get_spec

    overrides = dict(layers=tuple(layers) if layers else None, pooling=pooling, window_s=window_s,
                     context_words=context_words, frames_per_window=frames_per_window, dtype=dtype,
                     family=family, trust_remote_code=True if trust_remote_code else None)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if model == "lowlevel" and episode.video_path is None:
        spec = get_spec("lowlevel", **overrides)
        target = AudioWordsExtractor(spec, episode)
        return (yield from extract_features_job(episode, target, token=token, ablate=ablate, cache_dir=cache_dir,
                                                use_cache=use_cache))
    return (yield from extract_features_job(episode, model, token=token, ablate=ablate, cache_dir=cache_dir,
                                            use_cache=use_cache, device=device, batch_size=batch_size,
                                            **overrides))


def events_regressors(path, n_trs: int, tr_s: float, onset_s: float = 0.0):
    """``((n_trs, n_types) float32, [trial types])``: boxcar regressors of an events file.

    A BIDS-like table (``onset``, ``duration``[, ``trial_type``]; :func:`engine.io.events.read_events`)
    or a headerless FSL three-column file (onset, duration, amplitude: one type named after the file).
    """
    import pandas as pd

    from ..errors import DataError
    from ..io.events import events_to_regressors, read_events

    path = Path(path)
    first = path.read_text(encoding="utf-8-sig", errors="replace").strip().splitlines()[:1]
    try:
        [float(c) for c in first[0].split()] if first else None
        headerless = bool(first)
    except ValueError:
        headerless = False
    if headerless:
        try:
            table = np.loadtxt(path, ndmin=2)
        except ValueError as exc:
            raise DataError(expected_found(f"events file {path.name}", "three numbers a line (onset, duration, "
                                           "amplitude)", str(exc))) from None
        if table.shape[1] != 3:
            raise DataError(expected_found(f"events file {path.name}", "three columns", f"{table.shape[1]}"))
        name = path.name.split(".")[0]
        events = pd.DataFrame({"onset_s": table[:, 0], "duration_s": table[:, 1], "trial_type": name})
    else:
        events = read_events(path)
    regressors = events_to_regressors(events, n_trs, tr_s, start_s=onset_s)
    return regressors.to_numpy(np.float32), [str(c) for c in regressors.columns]


# ---------------------------------------------------------------------------- stimuli without a project
def stimulus_files(paths: Sequence = (), **named) -> Dict[str, Path]:
    """``{"video" | "audio" | "words" | "events": path}`` from files recognised by name and content
    (:func:`engine.pipeline.data.classify_stimulus`) and files given by kind (``words=``, ``audio=``,
    ``events=``); two files of one kind are refused."""
    from .data import classify_stimulus

    files: Dict[str, Path] = {}
    for p in paths:
        kind = classify_stimulus(p)
        if kind in files:
            raise ConfigError(expected_found(f"{kind} file", "one", f"{files[kind]} and {p}"))
        files[kind] = Path(p)
    for kind, value in named.items():
        if value:
            if kind in files:
                raise ConfigError(expected_found(f"{kind} file", "one", f"{files[kind]} and --{kind} {value}"))
            files[kind] = Path(value)
    return files


def stimulus_episode(files: Dict[str, Path], tr_s: float, n_trs: Optional[int] = None, onset_s: float = 0.0):
    """:class:`~engine.features.base.EpisodeInputs` of stimulus files (no video needed) on a TR grid.

    ``n_trs`` defaults to the whole TRs the video, else the audio, else the word timings last;
    an events file alone needs ``n_trs``.
    """
    from ..features.base import EpisodeInputs

    words = None
    if "words" in files:
        from ..io.text import read_words

        words = read_words(files["words"])
    if n_trs is None:
        if "video" in files:
            from ..io.video import VideoReader

            with VideoReader(files["video"]) as reader:
                duration_s = reader.duration_s
        elif "audio" in files:
            from ..io.video import read_audio

            samples, sr = read_audio(files["audio"])
            duration_s = len(samples) / sr
        elif words is not None and len(words):
            duration_s = float((words.onset_s + words.duration_s).max())
        else:
            raise ConfigError("stimulus length: expected --n-trs N with an events file alone (it does not say "
                              "how long the stimulus lasts), found none")
        n_trs = int((duration_s - onset_s) // tr_s)
        if n_trs < 1:
            raise ConfigError(expected_found(f"TRs of {tr_s} s in the stimulus ({duration_s:.2f} s from "
                                             f"{onset_s} s)", "at least one", 0))
    return EpisodeInputs(n_trs=int(n_trs), tr_s=float(tr_s), video_path=files.get("video"),
                         audio_path=files.get("audio"), words=words, onset_s=float(onset_s))


def project_episode(project_path, episode: str, tr_s: Optional[float] = None, n_trs: Optional[int] = None,
                    onset_s: Optional[float] = None):
    """``(EpisodeInputs, events path or None, where the TR came from)`` of a project's episode: the TR
    of its paired runs (:func:`engine.importers.episode_tr`; ``tr_s`` must agree), their onset."""
    from ..features.extract import episode_inputs
    from ..importers import episode_tr, load_project

    project = load_project(project_path)
    tr = episode_tr(project, episode, tr_s=tr_s)
    runs = project.runs_for(episode)
    onset = onset_s if onset_s is not None else (runs[0].onset_s if runs else 0.0)
    inputs = episode_inputs(project, episode, n_trs=n_trs, tr_s=tr, onset_s=onset)
    ep = project.episode(episode)
    events = project.path(ep.events) if ep.events else None
    return inputs, events, ("the project's runs" if runs else "--tr")
