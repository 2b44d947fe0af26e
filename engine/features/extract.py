"""Extract per-TR features of an episode with any registered model, cached and resumable.

:func:`extract_features_job` is a job (a generator yielding :class:`~engine.jobs.Progress`)
that returns ``{layer: FeatureSpace}``. It

1. builds the cache key from the stimulus files' hashes, the model identity, the
   settings, the ablation and the code version (:mod:`engine.features.cache`);
2. returns a finished cache entry at once if there is one;
3. otherwise reads the parts an earlier (cancelled or killed) run left, asks the
   extractor for the missing TRs only, and writes each chunk of ``chunk_trs`` TRs as soon
   as it is complete, so a cancel loses at most one chunk;
4. writes the finished entry atomically.

Resumed runs give bit-identical features when the batch size is the same (chunks are
multiples of the batch, so batches hold the same TRs); a different batch size (e.g.
after an out-of-memory halving on a GPU) can change the last bits of float results.

:func:`extract_attention_job` returns the compact attention maps for the GUI overlay
(:mod:`engine.features.attention`).
"""

from __future__ import annotations

import re

from typing import Any, Dict, Generator, Optional, Sequence, Union

import numpy as np

from .. import __version__ as ENGINE_VERSION
from ..errors import ConfigError
from ..jobs import CancelToken, Progress, run_sync
from .base import ABLATIONS, BatchFeatures, EpisodeInputs, FeatureSpace, ModelSpec

__all__ = ["EXTRACTION_VERSION", "extract_features_job", "extract_features", "extract_attention_job",
           "stimulus_hashes", "feature_cache_key", "episode_inputs"]

# Bump when a change in the extraction code changes the numbers it produces.
EXTRACTION_VERSION = "1"


def stimulus_hashes(episode: EpisodeInputs, modality_inputs: Sequence[str] = ("vision", "audio", "text")
                    ) -> Dict[str, Optional[str]]:
    """SHA-256 of the files (and words) the extractor reads."""
    from .cache import file_sha256, words_sha256

    out: Dict[str, Optional[str]] = {}
    if "vision" in modality_inputs and episode.video_path is not None:
        out["video"] = file_sha256(episode.video_path)
    if "audio" in modality_inputs and episode.audio_source is not None:
        out["audio"] = file_sha256(episode.audio_source)
    if "text" in modality_inputs:
        out["words"] = words_sha256(episode.words)
    return out


def feature_cache_key(episode: EpisodeInputs, spec: ModelSpec, identity: Dict[str, Any], ablate: str,
                      modality_inputs: Sequence[str]) -> tuple:
    """``(key, provenance dict)`` for a request."""
    from .cache import cache_key

    settings = spec.to_dict()
    settings.pop("name", None)
    settings.pop("model", None)
    parts = {
        "stimulus": stimulus_hashes(episode, modality_inputs),
        "model": identity,
        "settings": settings,
        "ablate": ablate,
        "grid": {"n_trs": episode.n_trs, "tr_s": episode.tr_s, "onset_s": episode.onset_s},
        "version": {"engine": ENGINE_VERSION, "extraction": EXTRACTION_VERSION},
    }
    return cache_key(parts), parts


def episode_inputs(project, episode: str, n_trs: Optional[int] = None, tr_s: Optional[float] = None,
                   onset_s: Optional[float] = None) -> EpisodeInputs:
    """The :class:`EpisodeInputs` of a project episode.

    Paths come from the project; words from ``Episode.words`` (else ``Episode.subtitles``),
    read with :func:`engine.io.text.read_words`. The TR grid defaults to the first run
    paired with the episode (its ``tr_s`` and ``onset_s``); ``n_trs`` defaults to as many
    whole TRs as the video holds after the onset.
    """
    ep = project.episode(episode)
    runs = project.runs_for(episode)
    tr_s = float(tr_s if tr_s is not None else (runs[0].tr_s if runs else 1.49))
    onset_s = float(onset_s if onset_s is not None else (runs[0].onset_s if runs else 0.0))
    video = project.path(ep.video)
    audio = project.path(ep.audio)
    words = None
    text_file = ep.words or ep.subtitles
    if text_file:
        from ..io.text import read_words

        words = read_words(project.path(text_file))
    if n_trs is None:
        media = video or audio
        if media is None:
            raise ConfigError(f"episode {episode!r}: expected a video or audio file to count TRs, found none "
                              f"(give n_trs)")
        if video is not None:
            from ..io.video import VideoReader

            with VideoReader(video) as reader:
                duration_s = reader.duration_s
        else:
            from ..io.video import read_audio

            samples, sr = read_audio(audio)
            duration_s = len(samples) / sr
        n_trs = int((duration_s - onset_s) // tr_s)
    return EpisodeInputs(n_trs=int(n_trs), tr_s=tr_s, video_path=video, audio_path=audio, words=words,
                         onset_s=onset_s)


_INPUTS_OF_FAMILY = {"vision": ("vision",), "language": ("text",), "audio": ("audio",),
                     "multimodal": ("vision", "audio", "text")}


def extract_features_job(episode: EpisodeInputs, model: Union[str, ModelSpec, Any] = "minilm",
                         token: Optional[CancelToken] = None, ablate: str = "none",
                         cache_dir=None, use_cache: bool = True, device: str = "auto",
                         batch_size: Optional[int] = None, chunk_trs: int = 32,
                         **overrides) -> Generator[Progress, None, Dict[str, FeatureSpace]]:
    """Features of every TR of ``episode``, one :class:`FeatureSpace` per layer.

    Parameters
    ----------
    episode : EpisodeInputs
    model : str, ModelSpec or extractor
        Registry name, local folder, Hub id (found offline), a spec, or an already built
        extractor (anything with the :class:`~engine.features.base.Extractor` attributes).
    token : CancelToken, optional
    ablate : str
        ``none``, ``vision``, ``audio`` or ``text``: run with that input removed.
    cache_dir : path, optional
        Cache root (default :func:`engine.features.cache.default_cache_dir`).
    use_cache : bool
        False to neither read nor write the cache.
    device : str
        ``auto`` (CUDA when available), ``cpu``, ``cuda``...
    batch_size : int, optional
        TRs per batch (default: from free GPU memory; 8 on CPU).
    chunk_trs : int
        TRs per cached chunk (rounded up to a multiple of the batch size).
    **overrides
        ModelSpec fields to change (``layers``, ``window_s``, ``pooling``...).

    Returns
    -------
    dict
        ``{layer: FeatureSpace}`` with ``data`` of shape ``(n_trs, n_features)`` float32.
    """
    from .registry import _NO_WEIGHTS, build_extractor, family_inputs, get_spec, model_identity, resolve_weights

    token = token or CancelToken()
    ablate = ablate or "none"
    if ablate not in ABLATIONS:
        raise ConfigError(f"ablation: got {ablate!r}. Supported values are: {', '.join(ABLATIONS)}")
    extractor = None
    if isinstance(model, (str, ModelSpec)):
        spec = get_spec(model, **overrides)
        folder = None if spec.family in _NO_WEIGHTS else resolve_weights(spec)
        identity = model_identity(spec, folder)
    else:
        if overrides:
            raise ConfigError(f"extract: expected spec settings ({', '.join(sorted(overrides))}) with a model "
                              f"name or spec, found an already built extractor")
        extractor = model
        spec = extractor.spec
        identity = dict(extractor.identity)
    # What the model reads decides which stimulus hashes enter the cache key.
    inputs = (getattr(extractor, "inputs", None) or family_inputs(spec.family)
              or _INPUTS_OF_FAMILY[spec.modality])
    key, provenance = feature_cache_key(episode, spec, identity, ablate, inputs)
    meta = {"spec": spec.to_dict(), "ablate": ablate, "cache_key": key, "provenance": provenance}

    cache = None
    if use_cache:
        from .cache import FeatureCache

        cache = FeatureCache(cache_dir)
        hit = cache.load(key)
        if hit is not None:
            yield Progress(1, 1, f"{spec.name}: from cache")
            return _spaces(hit[0], spec, episode, meta)

    n = episode.n_trs
    done = np.zeros(n, bool)
    rows: Dict[str, np.ndarray] = {}
    if cache is not None:
        done, rows = cache.load_parts(key, n)
    missing = np.flatnonzero(~done)
    if missing.size:
        yield Progress(int(done.sum()), n, f"{spec.name}: loading the model")
        if extractor is None:
            extractor = build_extractor(spec, device=device, batch_size=batch_size)
        bs = int(getattr(extractor, "batch_size", 0) or 0)
        chunk = int(chunk_trs) if bs <= 0 else bs * max(1, int(np.ceil(chunk_trs / bs)))
        chunk_of = missing // chunk
        pending = {int(c): set(missing[chunk_of == c].tolist()) for c in np.unique(chunk_of)}
        filled = np.zeros(n, bool)

        def absorb(batch: BatchFeatures):
            idx = np.asarray(batch.tr_indices, dtype=int)
            for name, arr in batch.features.items():
                arr = np.asarray(arr, np.float32).reshape(len(idx), -1)
                if name not in rows:
                    rows[name] = np.zeros((n, arr.shape[1]), np.float32)
                rows[name][idx] = arr
            filled[idx] = True
            for c in sorted(set((idx // chunk).tolist())):
                trs = pending.get(c)
                if trs is None or not all(filled[t] for t in trs):
                    continue
                part_idx = np.array(sorted(trs))
                if cache is not None:
                    cache.write_part(key, part_idx, {k: v[part_idx] for k, v in rows.items()})
                del pending[c]

        gen = extractor.extract(episode, tr_indices=missing, token=token, ablate=ablate)
        try:
            while True:
                token.raise_if_cancelled()
                try:
                    report = next(gen)
                except StopIteration as stop:
                    result = stop.value or {}
                    break
                if isinstance(report.payload, BatchFeatures):
                    absorb(report.payload)
                yield Progress(int(done.sum() + filled.sum()), n, report.message, payload=report.payload)
        finally:
            gen.close()  # stops the extractor's prefetch thread and closes its files
        not_streamed = missing[~filled[missing]]
        if not_streamed.size:  # an extractor that only returns its result
            pos = np.searchsorted(missing, not_streamed)
            absorb(BatchFeatures(not_streamed, {k: np.asarray(v)[pos] for k, v in result.items()}))
        if (~(done | filled)).any():
            raise ConfigError(f"extractor {spec.name!r}: expected features for {n} TRs, "
                              f"found {int((done | filled).sum())}")
    if cache is not None:
        cache.save(key, rows, meta)
    yield Progress(n, n, f"{spec.name}: done")
    return _spaces(rows, spec, episode, meta)


def _natural_key(name: str):
    """``layer2`` before ``layer10``: digits compare as numbers."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", str(name)) if t]


def _spaces(features: Dict[str, np.ndarray], spec: ModelSpec, episode: EpisodeInputs,
            meta: Dict[str, Any]) -> Dict[str, FeatureSpace]:
    """The layers in one order whatever path produced them (fresh, resumed from parts, or a
    cache hit, whose HDF5 lists them alphabetically): a joint or banded model of the same
    layers must see its columns in the same order, or its answer changes in the last digits."""
    suffix = "" if meta["ablate"] == "none" else f" (no {meta['ablate']})"
    return {name: FeatureSpace(name=f"{spec.name}/{name}{suffix}", data=features[name], layer=name,
                               model_id=str(spec.model), tr_s=episode.tr_s, meta=dict(meta))
            for name in sorted(features, key=_natural_key)}


def extract_features(episode: EpisodeInputs, model: Union[str, ModelSpec, Any] = "minilm",
                     **kwargs) -> Dict[str, FeatureSpace]:
    """Run :func:`extract_features_job` in this thread and return its result."""
    token = kwargs.pop("token", None)
    return run_sync(extract_features_job(episode, model, token=token, **kwargs), token=token)


def extract_attention_job(episode: EpisodeInputs, model: Union[str, ModelSpec, Any],
                          token: Optional[CancelToken] = None, tr_indices: Optional[Sequence[int]] = None,
                          max_mb: float = 32.0, device: str = "auto", ablate: str = "none", **overrides):
    """Attention maps for the overlay (see :func:`engine.features.attention.attention_job`)."""
    from .attention import attention_job
    from .registry import build_extractor

    extractor = model
    if isinstance(model, (str, ModelSpec)):
        extractor = build_extractor(model, device=device, attention=True, **overrides)
    return (yield from attention_job(extractor, episode, token=token, tr_indices=tr_indices,
                                     max_mb=max_mb, ablate=ablate))
