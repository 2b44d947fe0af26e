"""Attention maps for the GUI overlay, and attention rollout (Abnar & Zuidema, 2020).

What is kept, per TR (subsampled to stay under a size budget):

- image models (ViT, CLIP vision): for the frame closest to the TR's end, the attention
  of the CLS token to every patch, per layer and head, as a ``(grid_h, grid_w)`` map,
  plus the rollout of the CLS row over all layers;
- language models: the attention of the window's last token to every token of the
  context, per layer and head (padded to the longest context), plus its rollout;
- video models (VideoMAE, V-JEPA 2; no CLS token): the attention each patch receives
  (mean over queries) per layer, head and time slot, ``(n_kept, n_layers, n_heads,
  n_time_slots, grid_h, grid_w)``, heads averaged when fewer than 64 TRs would fit.

Size: maps are float16; ``n_kept * n_layers * n_heads * n_keys * 2`` bytes plus the
rollout. When every TR does not fit in ``max_mb`` (default 32 MB per episode), TRs are
subsampled evenly; when even one TR does not fit, heads are averaged
(``meta["heads"] == "mean"``). A 12-layer, 12-head ViT-B/16 on 224 px (14 x 14 patches)
takes 56 kB per TR, so about 590 TRs fit in 32 MB (a 15-minute run at TR 1.49 s).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..errors import ConfigError
from ..jobs import CancelToken, Progress
from .base import AttentionMaps, EpisodeInputs, check_ablation, layer_name
from .hf import chunks, episode_tr_indices

__all__ = ["attention_rollout", "cls_patch_maps", "attention_job", "kept_tr_indices", "save_attention",
           "load_attention"]


def attention_rollout(attentions: Sequence[np.ndarray], residual: float = 0.5,
                      head_fusion: str = "mean") -> np.ndarray:
    """Attention rollout: how much each output token draws on each input token.

    Parameters
    ----------
    attentions : sequence of ndarray
        One per layer (first to last), each ``(..., n_heads, n_tokens, n_tokens)``, rows
        (queries) summing to 1.
    residual : float
        Weight of the identity (the residual connection): ``A' = residual*I + (1-residual)*A``,
        0.5 as in Abnar & Zuidema.
    head_fusion : str
        ``mean``, ``max`` or ``min`` over heads.

    Returns
    -------
    ndarray, (..., n_tokens, n_tokens)
        ``A'_L @ ... @ A'_1`` with rows renormalised after each step.
    """
    if not len(attentions):
        raise ConfigError("attention rollout: expected at least one layer, found none")
    fuse = {"mean": np.mean, "max": np.max, "min": np.min}.get(head_fusion)
    if fuse is None:
        raise ConfigError(f"head fusion: got {head_fusion!r}. Supported values are: mean, max, min")
    rollout = None
    for a in attentions:
        a = fuse(np.asarray(a, dtype=np.float64), axis=-3)  # ..., n_tokens, n_tokens
        eye = np.eye(a.shape[-1])
        a = residual * eye + (1.0 - residual) * a
        a = a / a.sum(-1, keepdims=True)
        rollout = a if rollout is None else a @ rollout
    return rollout


def cls_patch_maps(attention: np.ndarray, grid_hw, cls_index: int = 0) -> np.ndarray:
    """CLS -> patch attention ``(..., n_heads, 1 + gh*gw, 1 + gh*gw)`` as ``(..., n_heads, gh, gw)``."""
    gh, gw = grid_hw
    row = attention[..., cls_index, :]
    patches = np.delete(row, cls_index, axis=-1)
    if patches.shape[-1] != gh * gw:
        raise ConfigError(f"attention: expected {gh * gw} patch tokens, found {patches.shape[-1]}")
    return patches.reshape(patches.shape[:-1] + (gh, gw))


def kept_tr_indices(tr_indices: np.ndarray, bytes_per_tr: int, max_mb: float) -> np.ndarray:
    """TRs evenly subsampled so that ``len * bytes_per_tr <= max_mb`` MiB."""
    budget = int(max_mb * 2 ** 20)
    n_fit = budget // max(1, int(bytes_per_tr))
    if n_fit >= len(tr_indices):
        return np.asarray(tr_indices)
    if n_fit < 1:
        return np.zeros(0, int)
    pick = np.unique(np.round(np.linspace(0, len(tr_indices) - 1, n_fit)).astype(int))
    return np.asarray(tr_indices)[pick]


def attention_job(extractor, episode: EpisodeInputs, token: Optional[CancelToken] = None,
                  tr_indices: Optional[Sequence[int]] = None, max_mb: float = 32.0, ablate: str = "none",
                  batch_size: int = 8):
    """Job: attention maps of ``extractor`` (built with ``attention=True``) for the overlay.

    Returns
    -------
    AttentionMaps
    """
    token = token or CancelToken()
    ablate = check_ablation(ablate, getattr(extractor, "inputs", ()))
    idx = episode_tr_indices(episode, tr_indices)
    if getattr(extractor.spec, "family", "") in ("videomae", "vjepa2"):
        return (yield from _video_job(extractor, episode, idx, token, max_mb, ablate, batch_size))
    if hasattr(extractor, "attention_forward") and hasattr(extractor, "grid_hw"):
        return (yield from _vision_job(extractor, episode, idx, token, max_mb, ablate, batch_size))
    if getattr(extractor, "modality", "") == "language" and hasattr(extractor, "tokenizer"):
        return (yield from _language_job(extractor, episode, idx, token, max_mb, ablate, batch_size))
    raise ConfigError(f"attention of {extractor.spec.name!r}: expected an image or language transformer, "
                      f"found family {extractor.spec.family!r} (attention maps are not available for it)")


def _budget(n_layers: int, n_heads: int, n_keys: int, idx: np.ndarray, max_mb: float, min_trs: int = 1):
    """TRs to keep and whether heads are kept (``all``) or averaged (``mean``).

    Heads are averaged when fewer than ``min(min_trs, len(idx))`` TRs would fit otherwise.
    """
    per_tr = (n_layers * n_heads + 1) * n_keys * 2
    heads = "all"
    if per_tr * min(max(1, min_trs), len(idx)) > max_mb * 2 ** 20:
        heads, per_tr = "mean", (n_layers + 1) * n_keys * 2
    kept = kept_tr_indices(idx, per_tr, max_mb)
    if kept.size == 0:
        raise ConfigError(f"attention size budget: expected room for one TR ({per_tr / 2 ** 20:.2f} MB), "
                          f"found max_mb={max_mb}")
    return kept, heads


def _vision_job(ex, episode, idx, token, max_mb, ablate, batch_size):
    gh, gw = ex.grid_hw
    n_layers = int(ex.n_blocks)
    n_heads = int(ex.config.num_attention_heads)
    kept, heads = _budget(n_layers, n_heads, gh * gw, idx, max_mb)
    sources = ex.open_sources(episode, ablate)
    maps, rolls, times = [], [], []
    try:
        batches = chunks(kept, batch_size)
        for k, b in enumerate(batches):
            token.raise_if_cancelled()
            t_s = ex.frame_times(episode, b)[:, -1]  # the frame closest to each TR's end
            pixels = ex.preprocess(sources["frames"].frames(t_s))  # n, 3, h, w
            attn = ex.attention_forward(pixels)  # n_layers x (n, n_heads, T, T)
            m = np.stack([cls_patch_maps(a, (gh, gw)) for a in attn], axis=1)  # n, L, H, gh, gw
            if heads == "mean":
                m = m.mean(2, keepdims=True)
            maps.append(m.astype(np.float16))
            rolls.append(cls_patch_maps(attention_rollout(attn)[:, None], (gh, gw))[:, 0].astype(np.float16))
            times.append(t_s)
            yield Progress(k + 1, len(batches), f"{ex.spec.name}: attention, TRs {int(b[0])}-{int(b[-1])}")
    finally:
        ex.close_sources(sources)
    return AttentionMaps(tr_indices=kept, layers=[layer_name(i) for i in range(1, n_layers + 1)],
                         maps=np.concatenate(maps), rollout=np.concatenate(rolls), kind="patches",
                         meta={"grid": [gh, gw], "frame_times_s": np.concatenate(times).tolist(), "heads": heads,
                               "query": "cls", "max_mb": max_mb, "model": str(ex.spec.model)})


def _video_job(ex, episode, idx, token, max_mb, ablate, batch_size):
    """Video transformers have no CLS token: keep the attention each patch *receives*
    (mean over queries), per layer, head and time slot (tubelet), and the same for the rollout."""
    import torch

    c = ex.config
    patch = int(getattr(c, "patch_size", 16))
    h, w = ex.preprocess.out_hw
    gh, gw = h // patch, w // patch
    n_t = max(1, ex.n_frames // int(getattr(c, "tubelet_size", 1)))
    n_layers, n_heads = int(ex.n_blocks), int(c.num_attention_heads)
    kept, heads = _budget(n_layers, n_heads, n_t * gh * gw, idx, max_mb, min_trs=64)
    sources = ex.open_sources(episode, ablate)
    maps, rolls = [], []
    try:
        batches = chunks(kept, batch_size)
        for k, b in enumerate(batches):
            token.raise_if_cancelled()
            x = ex.pixels_to_device(ex.prepare(sources, episode, b, ablate))
            with torch.inference_mode():
                if ex.spec.family == "vjepa2":
                    out = ex.model(pixel_values_videos=x, skip_predictor=True, output_attentions=True)
                else:
                    out = ex.model(pixel_values=x, output_attentions=True)
            if not out.attentions or out.attentions[0] is None:
                raise ConfigError(f"attention of {ex.spec.name!r}: expected attention maps, found none "
                                  f"(build the extractor with attention=True)")
            attn = [a.float().cpu().numpy() for a in out.attentions]  # L x (n, H, N, N)
            received = np.stack([a.mean(-2) for a in attn], 1)  # n, L, H, N
            if heads == "mean":
                received = received.mean(2, keepdims=True)
            n = len(b)
            maps.append(received.reshape(n, n_layers, -1, n_t, gh, gw).astype(np.float16))
            rolls.append(attention_rollout(attn).mean(-2).reshape(n, n_t, gh, gw).astype(np.float16))
            yield Progress(k + 1, len(batches), f"{ex.spec.name}: attention, TRs {int(b[0])}-{int(b[-1])}")
    finally:
        ex.close_sources(sources)
    return AttentionMaps(tr_indices=kept, layers=[layer_name(i) for i in range(1, n_layers + 1)],
                         maps=np.concatenate(maps), rollout=np.concatenate(rolls), kind="video_patches",
                         meta={"grid": [gh, gw], "time_slots": n_t, "heads": heads, "query": "mean over queries",
                               "max_mb": max_mb, "model": str(ex.spec.model)})


def _language_job(ex, episode, idx, token, max_mb, ablate, batch_size):
    import torch

    n_layers = int(ex.n_blocks)
    cfg = getattr(ex.config, "text_config", None) or ex.config
    n_heads = int(cfg.num_attention_heads)
    sources = ex.open_sources(episode, ablate)
    prepared = ex.prepare(sources, episode, idx, ablate)
    n_keys = max(1, int(prepared["attention_mask"].sum(1).max()))
    kept, heads = _budget(n_layers, n_heads, n_keys, idx, max_mb)
    pos = np.searchsorted(idx, kept)
    maps, rolls, tokens = [], [], []
    batches = chunks(np.arange(len(kept)), batch_size)
    for k, rows in enumerate(batches):
        token.raise_if_cancelled()
        sel = pos[rows]
        ids = prepared["input_ids"][sel]
        att = prepared["attention_mask"][sel]
        win = prepared["window_mask"][sel]
        with torch.inference_mode():
            out = ex.model(input_ids=ex.to_device(ids, False), attention_mask=ex.to_device(att, False),
                           output_attentions=True)
        if not out.attentions or out.attentions[0] is None:
            raise ConfigError(f"attention of {ex.spec.name!r}: expected attention maps, found none "
                              f"(build the extractor with attention=True)")
        attn = [a.float().cpu().numpy() for a in out.attentions]  # L x (n, H, T, T)
        roll = attention_rollout(attn)  # n, T, T
        n, t = ids.shape
        m = np.zeros((n, n_layers, 1 if heads == "mean" else n_heads, n_keys), np.float16)
        r = np.zeros((n, n_keys), np.float16)
        for i in range(n):
            # Query: the last token of the window's words (else the last real token).
            q_candidates = np.flatnonzero(win[i] > 0)
            q = int(q_candidates[-1]) if q_candidates.size else int(att[i].sum()) - 1
            q = max(q, 0)
            row = np.stack([a[i, :, q, :n_keys] for a in attn])  # L, H, n_keys
            m[i] = (row.mean(1, keepdims=True) if heads == "mean" else row).astype(np.float16)
            r[i] = roll[i, q, :n_keys].astype(np.float16)
            tokens.append(ex.tokenizer.convert_ids_to_tokens(ids[i, :int(att[i].sum())].tolist()))
        maps.append(m)
        rolls.append(r)
        yield Progress(k + 1, len(batches), f"{ex.spec.name}: attention")
    return AttentionMaps(tr_indices=kept, layers=[layer_name(i) for i in range(1, n_layers + 1)],
                         maps=np.concatenate(maps), rollout=np.concatenate(rolls), kind="tokens",
                         meta={"tokens": tokens, "heads": heads, "query": "last window token", "max_mb": max_mb,
                               "model": str(ex.spec.model)})


def save_attention(maps: AttentionMaps, path) -> Path:
    """Write attention maps to HDF5 atomically (float16, gzip): ``/maps``, ``/rollout``,
    ``/tr_indices``; layers, kind and meta as JSON attributes."""
    import json

    import h5py

    from ..atomic import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("maps", data=maps.maps.astype(np.float16), compression="gzip", shuffle=True)
            f.create_dataset("rollout", data=maps.rollout.astype(np.float16), compression="gzip", shuffle=True)
            f.create_dataset("tr_indices", data=np.asarray(maps.tr_indices, np.int64))
            f.attrs["layers"] = json.dumps(list(maps.layers))
            f.attrs["kind"] = maps.kind
            f.attrs["meta"] = json.dumps(maps.meta, default=str)
    return path


def load_attention(path) -> AttentionMaps:
    """Read what :func:`save_attention` wrote."""
    import json

    import h5py

    with h5py.File(path, "r") as f:
        return AttentionMaps(tr_indices=f["tr_indices"][...], layers=json.loads(f.attrs["layers"]),
                             maps=f["maps"][...], rollout=f["rollout"][...], kind=str(f.attrs["kind"]),
                             meta=json.loads(f.attrs["meta"]))

