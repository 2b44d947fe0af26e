"""Extraction at scale: several episodes queued in one job, one model load, resumable per episode.

:func:`extract_episodes_job` runs :func:`engine.features.extract.extract_features_job` over a
queue of episodes with the model built once. Every episode is cached as soon as it is done
(and in chunks while it runs), so a cancelled or killed job, run again, takes the finished
episodes from the cache and resumes the interrupted one where it stopped.

The pieces that make one episode fast on a GPU live in :mod:`engine.features.hf`:
decoding on a background thread that stays ``depth`` batches ahead (:func:`~engine.features.hf.prefetch`),
float16/bfloat16 weights on CUDA (:func:`~engine.features.hf.pick_dtype`), the batch size from the
free GPU memory (:func:`~engine.features.hf.auto_batch_size`) and halving on out-of-memory
(:class:`~engine.features.hf.BatchRunner`). :func:`pinned` pins a decoded batch in page-locked
memory so that its copy to the GPU overlaps the model (``non_blocking=True``).
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence, Union

from ..errors import ConfigError, expected_found
from ..jobs import CancelToken, Progress, run_sync
from .base import EpisodeInputs, FeatureSpace, ModelSpec

__all__ = ["extract_episodes_job", "extract_episodes", "pinned"]


def pinned(batch: Any, device: str = "cpu") -> Any:
    """``batch`` (a torch tensor, or a dict/list of them) in page-locked memory when ``device`` is CUDA.

    A pinned host tensor copies to the GPU asynchronously (``.to(device, non_blocking=True)``),
    so the copy of batch k+1 overlaps the forward pass of batch k. On the CPU it is returned as is.
    """
    if not str(device).startswith("cuda"):
        return batch
    import torch

    if isinstance(batch, torch.Tensor):
        return batch if batch.is_cuda or batch.is_pinned() else batch.pin_memory()
    if isinstance(batch, dict):
        return {k: pinned(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(pinned(v, device) for v in batch)
    return batch


def extract_episodes_job(episodes: Union[Mapping[str, EpisodeInputs], Sequence[EpisodeInputs]],
                         model: Union[str, ModelSpec, Any] = "minilm", token: Optional[CancelToken] = None,
                         cache_dir=None, use_cache: bool = True, device: str = "auto",
                         batch_size: Optional[int] = None, chunk_trs: int = 32, ablate: str = "none",
                         on_episode=None, **overrides):
    """Features of several episodes in one job, the model loaded once; resumable per episode.

    Parameters
    ----------
    episodes : mapping name -> EpisodeInputs, or a sequence (named "episode-01", ...)
    model : str, ModelSpec or extractor
        As for :func:`~engine.features.extract.extract_features_job`; a name or spec is built
        once (:func:`~engine.features.registry.build_extractor`) for the whole queue.
    token : CancelToken, optional
        Checked between batches; a cancel keeps every finished episode and chunk in the cache.
    cache_dir, use_cache, device, batch_size, chunk_trs, ablate, **overrides
        As for :func:`~engine.features.extract.extract_features_job`.
    on_episode : callable ``(name, {layer: FeatureSpace}) -> None``, optional
        Called as each episode is finished (e.g. to write it beside the project).

    Yields
    ------
    Progress
        ``step`` counts TRs over all episodes; ``payload = {"episode": name}``.

    Returns
    -------
    dict name -> {layer: FeatureSpace}
    """
    from .extract import extract_features_job

    if isinstance(episodes, Mapping):
        items = [(str(k), v) for k, v in episodes.items()]
    else:
        items = [(f"episode-{i + 1:02d}", e) for i, e in enumerate(episodes)]
    if not items:
        raise ConfigError(expected_found("episodes to extract", "at least one", "none"))
    for name, ep in items:
        if not isinstance(ep, EpisodeInputs):
            raise ConfigError(expected_found(f"episode {name!r}", "an EpisodeInputs", type(ep).__name__))
    total = sum(int(ep.n_trs) for _, ep in items)
    extractor = None if isinstance(model, (str, ModelSpec)) else model
    holder: Dict[str, Any] = {}

    def get_model():
        if extractor is not None:
            return extractor
        if "extractor" not in holder:
            from .registry import build_extractor

            holder["extractor"] = build_extractor(model, device=device, batch_size=batch_size, **overrides)
        return holder["extractor"]

    out: Dict[str, Dict[str, FeatureSpace]] = {}
    done_trs = 0
    yield Progress(0, total, f"{len(items)} episodes queued")
    for k, (name, ep) in enumerate(items):
        if token is not None:
            token.raise_if_cancelled()
        label = f"episode {k + 1}/{len(items)} ({name}): "
        gen = extract_features_job(ep, get_model(), token=token, ablate=ablate, cache_dir=cache_dir,
                                   use_cache=use_cache, device=device, batch_size=batch_size,
                                   chunk_trs=chunk_trs)
        while True:
            try:
                rep = next(gen)
            except StopIteration as stop:
                spaces = stop.value
                break
            frac = rep.step / rep.total if rep.total else 0.0
            yield Progress(done_trs + int(frac * ep.n_trs), total, label + rep.message, payload={"episode": name})
        out[name] = spaces
        done_trs += int(ep.n_trs)
        if on_episode is not None:
            on_episode(name, spaces)
        yield Progress(done_trs, total, label + "done", payload={"episode": name})
    return out


def extract_episodes(episodes, model="minilm", token: Optional[CancelToken] = None, on_progress=None,
                     **kwargs) -> Dict[str, Dict[str, FeatureSpace]]:
    """:func:`extract_episodes_job` run to completion in this thread."""
    return run_sync(extract_episodes_job(episodes, model, token=token, **kwargs), token=token,
                    on_progress=on_progress)
