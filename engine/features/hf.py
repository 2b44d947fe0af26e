"""Shared machinery of the Hugging Face extractors.

Loading (offline only, safetensors first, remote code off), device and dtype choice,
pooling, batching that halves its batch on out-of-memory errors, a background prefetch
queue that decodes and preprocesses the next batches while the model runs, and the
stimulus readers that cut an episode into per-TR windows (frames, audio, words).

:class:`HFExtractor` is the batch loop the vision, language, audio and multimodal
extractors (and TVLT) share: subclasses implement ``load``, ``open_sources``, ``prepare``
(CPU work, on the prefetch thread) and ``forward`` (model + pooling, on the caller's thread).

torch and transformers are imported inside functions only.
"""

from __future__ import annotations

import json
import os
import queue
import threading
from pathlib import Path
from typing import Any, Callable, Dict, Generator, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import ConfigError, DataError
from ..jobs import CancelToken
from ..jobs import Progress
from .base import BatchFeatures, EpisodeInputs, ModelSpec, check_ablation, layer_name, resolve_layers

__all__ = [
    "set_offline", "pick_device", "pick_dtype", "load_model", "pool_tokens", "is_oom",
    "BatchRunner", "prefetch", "FrameSource", "AudioSource", "ImagePreprocessor",
    "window_frame_times", "words_in_window", "context_words", "HFExtractor",
]


# --------------------------------------------------------------------------- loading
def set_offline() -> None:
    """Forbid every download: models come from a local folder or the HF cache only."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def quiet_transformers() -> None:
    """No progress bars or load reports on the terminal (the job reports progress)."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def pick_device(device: str = "auto") -> str:
    """``"cuda"`` when available (for ``auto``), else ``"cpu"``; a named device is checked."""
    import torch

    device = device or "auto"
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device: expected a CUDA GPU for {device!r}, found none (use --device cpu)")
    if device.split(":")[0] not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device: got {device!r}. Supported values are: auto, cpu, cuda, cuda:N, mps")
    return device


def pick_dtype(dtype: str, device: str):
    """torch dtype: ``auto`` is float16 on CUDA (bfloat16 where supported), float32 elsewhere."""
    import torch

    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]


def _has_safetensors(folder: Path) -> bool:
    return any(folder.glob("*.safetensors")) or any(folder.glob("*.safetensors.index.json"))


def load_model(cls, folder: Path, spec: ModelSpec, device: str, dtype, attn: str = "sdpa", **kwargs):
    """Load ``cls`` from a resolved local ``folder``: offline, safetensors preferred.

    ``attn="eager"`` is needed for attention maps (transformers 5 returns none otherwise).
    Weights in ``.bin`` files are loaded by transformers with ``weights_only=True``.
    """
    set_offline()
    quiet_transformers()
    folder = Path(folder)
    kw = dict(local_files_only=True, trust_remote_code=bool(spec.trust_remote_code), dtype=dtype)
    if _has_safetensors(folder):
        kw["use_safetensors"] = True
    kw.update(kwargs)
    try:
        try:
            model = cls.from_pretrained(str(folder), attn_implementation=attn, **kw)
        except (ValueError, TypeError) as exc:
            if "attn_implementation" not in str(exc) and "sdpa" not in str(exc).lower():
                raise
            model = cls.from_pretrained(str(folder), attn_implementation="eager", **kw)
    except ValueError as exc:
        if "trust_remote_code" in str(exc) and not spec.trust_remote_code:
            raise ConfigError(f"model {spec.name!r} ships its own code ({folder}): expected trust_remote_code "
                              f"enabled (--trust-remote-code) to run it, found it off; enable it only for a "
                              f"source you trust") from exc
        raise
    model.eval()
    model.requires_grad_(False)
    return model.to(device)


def read_json(path: Path) -> Dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: expected JSON, found unreadable text ({exc})") from exc


# --------------------------------------------------------------------------- pooling
def pool_tokens(hidden, mask, pooling: str, cls_index: int = 0):
    """Pool token states ``(B, T, D)`` to ``(B, D)`` over the tokens where ``mask`` is 1.

    ``mean``: average of the masked tokens; ``cls``: token ``cls_index``; ``last``: the last
    masked token. A row whose mask is all zero gives zeros.
    """
    import torch

    hidden = hidden.float()
    if mask is None:
        mask = torch.ones(hidden.shape[:2], device=hidden.device)
    mask = mask.to(hidden.device, hidden.dtype)
    any_token = mask.sum(1) > 0  # B
    if pooling == "mean":
        out = (hidden * mask[..., None]).sum(1) / mask.sum(1).clamp(min=1)[:, None]
    elif pooling == "cls":
        out = hidden[:, cls_index]
    elif pooling == "last":
        positions = torch.arange(hidden.shape[1], device=hidden.device)[None].expand_as(mask)
        last = torch.where(mask > 0, positions, torch.full_like(positions, -1)).max(1).values.clamp(min=0)
        out = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    else:
        raise ConfigError(f"pooling: got {pooling!r}. Supported values are: mean, cls, last")
    return out * any_token[:, None].to(out.dtype)


# --------------------------------------------------------------------------- batching
def is_oom(exc: BaseException) -> bool:
    """Whether ``exc`` is an accelerator out-of-memory error."""
    try:
        import torch

        if isinstance(exc, torch.cuda.OutOfMemoryError):
            return True
    except Exception:  # pragma: no cover - torch always importable here
        pass
    return isinstance(exc, (RuntimeError, MemoryError)) and "out of memory" in str(exc).lower()


class BatchRunner:
    """Run a forward function over a batch, halving the batch and retrying on OOM.

    Parameters
    ----------
    batch_size : int
        Largest batch tried first; lowered for good after an out-of-memory error.
    device : str
        For freeing the CUDA cache between retries.
    """

    def __init__(self, batch_size: int, device: str = "cpu"):
        self.batch_size = max(1, int(batch_size))
        self.device = device
        self.n_halvings = 0

    def __call__(self, forward: Callable[[Any], Dict[str, np.ndarray]], batch: Any,
                 n_items: int, slicer: Callable[[Any, int, int], Any]) -> Dict[str, np.ndarray]:
        """``forward(sub_batch) -> {name: (n, ...)}`` over ``batch`` in pieces of ``batch_size``."""
        parts: List[Dict[str, np.ndarray]] = []
        start = 0
        while start < n_items:
            stop = min(n_items, start + self.batch_size)
            try:
                parts.append(forward(slicer(batch, start, stop)))
            except BaseException as exc:  # noqa: B902 - OOM may be RuntimeError or MemoryError
                if not is_oom(exc):
                    raise
                if self.batch_size == 1:
                    raise DataError("model: expected one item to fit in memory, found an "
                                    "out-of-memory error even with batch size 1 "
                                    "(use a smaller model, --device cpu or float16)") from exc
                self.batch_size = max(1, self.batch_size // 2)
                self.n_halvings += 1
                self._free()
                continue
            start = stop
        return {k: np.concatenate([p[k] for p in parts], axis=0) for k in parts[0]}

    def _free(self) -> None:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()


def auto_batch_size(device: str, bytes_per_item: float, default_cpu: int = 8,
                    cap: int = 256, fraction: float = 0.5) -> int:
    """A batch size that fits in ``fraction`` of the free accelerator memory."""
    if not device.startswith("cuda"):
        return default_cpu
    import torch

    free, _total = torch.cuda.mem_get_info(torch.device(device))
    return int(max(1, min(cap, fraction * free // max(1.0, bytes_per_item))))


def prefetch(items: Iterable[Any], depth: int = 2, token: Optional[CancelToken] = None) -> Iterator[Any]:
    """Iterate ``items`` produced on a background thread, ``depth`` items ahead.

    Decoding and preprocessing (in ``items``) then overlap the model's forward pass (in
    the caller). An exception in the producer is re-raised here; closing the returned
    generator (or a cancel) stops the producer.
    """
    q: "queue.Queue" = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def produce():
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set() or (token is not None and token.cancelled):
                    return
            q.put(("end", None))
        except BaseException as exc:  # handed to the consumer
            q.put(("error", exc))

    thread = threading.Thread(target=produce, name="alignscope-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            try:
                kind, value = q.get(timeout=0.1)
            except queue.Empty:
                if token is not None and token.cancelled:
                    token.raise_if_cancelled()
                if not thread.is_alive() and q.empty():
                    return
                continue
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                pass
            thread.join(timeout=0.05)


# --------------------------------------------------------------------------- stimulus windows
def window_frame_times(windows_s: np.ndarray, n_frames: int) -> np.ndarray:
    """``(n, n_frames)`` times evenly spread in each window (centres of equal sub-intervals)."""
    start, end = windows_s[:, 0:1], windows_s[:, 1:2]
    frac = (np.arange(n_frames) + 0.5) / n_frames  # n_frames
    return start + (end - start) * frac[None, :]


class FrameSource:
    """Frames of an episode at given times, decoded in increasing order.

    ``threads``: decoder threads (None = FFmpeg's choice). When the model runs on the CPU,
    one decoder thread keeps decoding from fighting the model's threads for the cores.
    Times before 0 or past the end are clamped to the first/last frame. ``blank=True``
    (vision ablation) gives mid-grey frames of the video's size without decoding.
    """

    def __init__(self, video_path: Optional[Path], blank: bool = False, size_hw: Tuple[int, int] = (224, 224),
                 threads: Optional[int] = None):
        self.blank = blank
        self.reader = None
        self.size_hw = size_hw
        if video_path is None:
            if not blank:
                raise DataError("episode: expected a video file for a vision model, found none")
            return
        from ..io.video import VideoReader

        self.reader = VideoReader(video_path, threads=threads)
        self.size_hw = (self.reader.height, self.reader.width)
        self._last: Dict[int, np.ndarray] = {}

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()

    def frames(self, times_s: np.ndarray) -> np.ndarray:
        """RGB frames at ``times_s`` (any shape S): array of shape S + (H, W, 3) uint8."""
        times_s = np.asarray(times_s, dtype=float)
        h, w = self.size_hw
        if self.blank:
            return np.full(times_s.shape + (h, w, 3), 128, np.uint8)
        flat = times_s.ravel()
        idx = np.array([self.reader.frame_index(max(t, 0.0)) for t in flat], dtype=int)
        out = np.empty((len(flat), h, w, 3), np.uint8)
        # Decode each distinct frame once, in increasing order (sequential decoding).
        cache: Dict[int, np.ndarray] = {}
        for i in np.unique(idx):
            cache[int(i)] = self._last.get(int(i))
            if cache[int(i)] is None:
                cache[int(i)] = self.reader.frame(int(i))
        for j, i in enumerate(idx):
            out[j] = cache[int(i)]
        # Overlapping windows reuse the last frames of the previous batch.
        keep = sorted(cache)[-64:]
        self._last = {i: cache[i] for i in keep}
        return out.reshape(times_s.shape + (h, w, 3))


class AudioSource:
    """The episode's audio (mono, ``sr`` Hz) cut into windows; silence for the ablation."""

    def __init__(self, path: Optional[Path], sr: int = 16000, silent: bool = False):
        self.sr = int(sr)
        self.silent = silent
        self.samples = np.zeros(0, np.float32)
        if path is None:
            if not silent:
                raise DataError("episode: expected an audio or video file for an audio model, found none")
            return
        if not silent:
            from ..io.video import read_audio

            self.samples, self.sr = read_audio(path, sr=self.sr)

    def window(self, start_s: float, end_s: float) -> np.ndarray:
        """Samples of ``[start_s, end_s)``, zero-padded outside the recording, float32."""
        a = int(round(start_s * self.sr))
        b = int(round(end_s * self.sr))
        out = np.zeros(max(0, b - a), np.float32)
        lo, hi = max(a, 0), min(b, len(self.samples))
        if hi > lo and not self.silent:
            out[lo - a:hi - a] = self.samples[lo:hi]
        return out


def _words_arrays(words) -> Tuple[np.ndarray, List[str]]:
    if words is None:
        return np.zeros(0), []
    onsets = np.asarray(words["onset_s"], dtype=float)
    tokens = [str(w) for w in words["word"]]
    order = np.argsort(onsets, kind="stable")
    return onsets[order], [tokens[i] for i in order]


def words_in_window(words, start_s: float, end_s: float) -> List[str]:
    """Words whose onset lies in ``[start_s, end_s)``, in order."""
    onsets, tokens = _words_arrays(words)
    return [t for o, t in zip(onsets, tokens) if start_s <= o < end_s]


def context_words(onsets_s: np.ndarray, tokens: List[str], start_s: float, end_s: float,
                  max_words: int) -> Tuple[List[str], int]:
    """The words up to ``end_s`` (last ``max_words`` of them) and how many trailing ones fall in the window.

    Returns
    -------
    context : list of str
        Words with onset < ``end_s``, the last ``max_words``.
    n_in_window : int
        How many of the last words of ``context`` have onset >= ``start_s``.
    """
    stop = int(np.searchsorted(onsets_s, end_s, side="left"))
    first = max(0, stop - int(max_words))
    context = tokens[first:stop]
    in_window = int(np.sum(onsets_s[first:stop] >= start_s))
    return context, in_window


# --------------------------------------------------------------------------- images
class ImagePreprocessor:
    """Resize, centre-crop and normalise RGB frames the way a HF image processor does.

    Done with OpenCV on uint8 arrays (fast, no PIL, no torchvision). The settings come
    from the checkpoint's ``preprocessor_config.json`` (or ``video_preprocessor_config.json``)
    and fall back to the model config's ``image_size``.
    """

    def __init__(self, out_hw: Tuple[int, int], mean, std, shortest_edge: Optional[int] = None,
                 rescale: float = 1 / 255.0):
        self.out_hw = (int(out_hw[0]), int(out_hw[1]))
        self.mean = np.asarray(mean, np.float32).reshape(1, 1, 3)
        self.std = np.asarray(std, np.float32).reshape(1, 1, 3)
        self.shortest_edge = shortest_edge
        self.rescale = float(rescale)

    @classmethod
    def from_folder(cls, folder: Path, config=None) -> "ImagePreprocessor":
        folder = Path(folder)
        pp = read_json(folder / "preprocessor_config.json") or read_json(folder / "video_preprocessor_config.json")
        image_size = None
        if config is not None:
            image_size = getattr(config, "image_size", None) or getattr(config, "crop_size", None)
        if isinstance(image_size, (list, tuple)):
            image_size = image_size[0]
        mean = pp.get("image_mean", [0.5, 0.5, 0.5])
        std = pp.get("image_std", [0.5, 0.5, 0.5])
        size, crop = pp.get("size"), pp.get("crop_size")
        if not pp.get("do_center_crop", crop is not None):
            crop = None
        shortest = None
        if isinstance(size, dict) and "shortest_edge" in size:
            shortest = int(size["shortest_edge"])
        elif isinstance(size, int):
            shortest = int(size)
        if isinstance(crop, dict):
            out = (crop["height"], crop["width"])
        elif isinstance(crop, int):
            out = (crop, crop)
        elif isinstance(size, dict) and "height" in size:
            out = (size["height"], size["width"])
        elif shortest is not None:
            out = (shortest, shortest)
        elif image_size is not None:
            out = (image_size, image_size)
        else:
            raise DataError(f"{folder}: expected an image size in preprocessor_config.json or "
                            f"config.json, found none")
        if crop is None:
            shortest = None  # resize straight to the output size, as the processors do
        return cls(out, mean, std, shortest_edge=shortest, rescale=pp.get("rescale_factor", 1 / 255.0))

    def resize_crop(self, frames: np.ndarray, threads: int = 1) -> np.ndarray:
        """``(..., H, W, 3) uint8`` -> ``(..., h, w, 3) uint8``: resized and centre-cropped.

        ``threads > 1`` resizes frames in parallel (OpenCV releases the GIL): the CPU side
        of a fast GPU model.
        """
        import cv2

        lead = frames.shape[:-3]
        flat = frames.reshape((-1,) + frames.shape[-3:])
        oh, ow = self.out_hw
        out = np.empty((len(flat), oh, ow, 3), np.uint8)

        def one(i):
            img = flat[i]
            h, w = img.shape[:2]
            if self.shortest_edge is not None:
                s = self.shortest_edge / min(h, w)
                nh, nw = max(oh, int(round(h * s))), max(ow, int(round(w * s)))
            else:
                nh, nw = oh, ow
            if (nh, nw) != (h, w):
                interp = cv2.INTER_AREA if nh < h else cv2.INTER_CUBIC
                img = cv2.resize(np.ascontiguousarray(img), (nw, nh), interpolation=interp)
            top, left = (nh - oh) // 2, (nw - ow) // 2
            out[i] = img[top:top + oh, left:left + ow]

        if threads > 1 and len(flat) > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=int(threads)) as pool:
                list(pool.map(one, range(len(flat))))
        else:
            for i in range(len(flat)):
                one(i)
        return out.reshape(lead + (oh, ow, 3))

    def normalize(self, images: np.ndarray) -> np.ndarray:
        """``(..., h, w, 3) uint8`` -> ``(..., 3, h, w) float32`` (rescale, mean, std)."""
        x = (images.astype(np.float32) * self.rescale - self.mean) / self.std
        return np.ascontiguousarray(np.moveaxis(x, -1, -3))

    def normalize_torch(self, images, dtype):
        """Same as :meth:`normalize` on a torch uint8 tensor (on the GPU: 4x less to transfer)."""
        import torch

        mean = torch.as_tensor(self.mean.reshape(3), device=images.device)
        std = torch.as_tensor(self.std.reshape(3), device=images.device)
        x = (images.float() * self.rescale - mean) / std
        return x.movedim(-1, -3).contiguous().to(dtype)

    def __call__(self, frames: np.ndarray, threads: int = 1) -> np.ndarray:
        """``(..., H, W, 3) uint8`` -> ``(..., 3, h, w) float32`` normalised."""
        return self.normalize(self.resize_crop(frames, threads))


def chunks(indices: Sequence[int], size: int) -> List[np.ndarray]:
    """Consecutive pieces of ``indices`` of length ``size`` (the last may be shorter)."""
    indices = np.asarray(indices, dtype=int)
    return [indices[i:i + size] for i in range(0, len(indices), max(1, int(size)))]


def episode_tr_indices(episode: EpisodeInputs, tr_indices: Optional[Sequence[int]]) -> np.ndarray:
    if tr_indices is None:
        return np.arange(episode.n_trs)
    idx = np.asarray(tr_indices, dtype=int)
    if idx.size and (idx.min() < 0 or idx.max() >= episode.n_trs):
        raise ConfigError(f"TR indices: expected 0..{episode.n_trs - 1}, found {idx.min()}..{idx.max()}")
    return idx


# --------------------------------------------------------------------------- the batch loop
class HFExtractor:
    """Base of the vision, language, audio and multimodal extractors.

    Parameters
    ----------
    spec : ModelSpec
    folder : Path
        The resolved local folder of the weights (see :mod:`engine.features.registry`).
    device : str
        ``auto``, ``cpu``, ``cuda``...
    batch_size : int, optional
        TRs per batch; default chosen from free GPU memory (8 on CPU).
    attention : bool
        Load with eager attention so attention maps can be read (slower).
    """

    inputs: tuple = ()  # which stimulus streams the model reads: "vision", "audio", "text"
    modality = "vision"

    def __init__(self, spec: ModelSpec, folder: Path, device: str = "auto",
                 batch_size: Optional[int] = None, attention: bool = False, identity: Optional[dict] = None):
        self.spec = spec
        self.folder = Path(folder)
        self.device = pick_device(device)
        self.dtype = pick_dtype(spec.dtype, self.device)
        self.attention = attention
        self.identity = dict(identity or {"model": spec.model})
        self.prefetch_depth = 2
        # On the CPU, decoding shares the cores with the model: one decoder thread is enough
        # (decoding is ~2% of the work) and avoids oversubscribing the model's threads.
        self.decode_threads = None if self.device.startswith("cuda") else 1
        self.layers: List[str] = []
        self.load()
        if batch_size is None:
            batch_size = auto_batch_size(self.device, self.bytes_per_item())
        self.batch_size = int(batch_size)
        self.runner = BatchRunner(self.batch_size, self.device)

    # -- to implement -----------------------------------------------------------------
    def load(self) -> None:
        """Load model and preprocessing; set ``self.layers`` (e.g. through :meth:`use_layers`)."""
        raise NotImplementedError

    def use_layers(self, n_blocks: int, pooling_without_cls: bool = False) -> None:
        """Resolve the spec's layers (indices or relative depths) against ``n_blocks``.

        Sets ``n_blocks``, ``layer_indices`` and ``layers``; ``pooling_without_cls`` refuses
        ``pooling="cls"`` for models that have no CLS token (audio).
        """
        if pooling_without_cls and self.spec.pooling == "cls":
            raise ConfigError(f"pooling of {self.spec.name!r}: {self.modality} models have no CLS token; "
                              f"expected mean or last, found cls")
        self.n_blocks = int(n_blocks)
        self.layer_indices = resolve_layers(self.spec.layers, self.n_blocks)
        self.layers = [layer_name(i) for i in self.layer_indices]

    def bytes_per_item(self) -> float:
        """Rough accelerator memory one TR of a batch needs (for the auto batch size)."""
        return 64e6

    def open_sources(self, episode: EpisodeInputs, ablate: str) -> Dict[str, Any]:
        return {}

    def close_sources(self, sources: Dict[str, Any]) -> None:
        for s in sources.values():
            close = getattr(s, "close", None)
            if close is not None:
                close()

    def prepare(self, sources: Dict[str, Any], episode: EpisodeInputs, tr_indices: np.ndarray,
                ablate: str) -> Any:
        """CPU work for one batch (runs on the prefetch thread); returns model inputs."""
        raise NotImplementedError

    def forward(self, inputs: Any) -> Dict[str, np.ndarray]:
        """Model forward + pooling for one (sub-)batch; ``{layer: (n, n_features) float32}``."""
        raise NotImplementedError

    @staticmethod
    def slice_inputs(inputs: Any, start: int, stop: int) -> Any:
        if isinstance(inputs, dict):
            return {k: HFExtractor.slice_inputs(v, start, stop) for k, v in inputs.items()}
        if isinstance(inputs, (list, tuple)):
            return inputs[start:stop]
        return inputs[start:stop]

    # -- the job ----------------------------------------------------------------------
    def extract(self, episode: EpisodeInputs, tr_indices: Optional[Sequence[int]] = None,
                token: Optional[CancelToken] = None, ablate: str = "none",
                ) -> Generator[Progress, None, Dict[str, np.ndarray]]:
        """Features of ``tr_indices`` (see :class:`engine.features.base.Extractor`)."""
        token = token or CancelToken()
        ablate = check_ablation(ablate, self.inputs)
        idx = episode_tr_indices(episode, tr_indices)
        batches = chunks(idx, self.batch_size)
        sources = self.open_sources(episode, ablate)
        parts: List[Dict[str, np.ndarray]] = []
        try:
            def produce():
                for b in batches:
                    yield b, self.prepare(sources, episode, b, ablate)

            for k, (b, inputs) in enumerate(prefetch(produce(), self.prefetch_depth, token)):
                token.raise_if_cancelled()
                n = len(b)
                feats = self.runner(self.forward, inputs, n, self.slice_inputs)
                parts.append(feats)
                yield Progress(k + 1, len(batches), f"{self.spec.name}: TRs {int(b[0])}-{int(b[-1])}",
                               payload=BatchFeatures(b, feats))
        finally:
            self.close_sources(sources)
        if not parts:
            return {name: np.zeros((0, 0), np.float32) for name in self.layers}
        return {k: np.concatenate([p[k] for p in parts], axis=0) for k in parts[0]}

    @property
    def pixels_on_device(self) -> bool:
        """Normalise frames on the accelerator (prepare then ships uint8 frames)."""
        return self.device.startswith("cuda")

    @property
    def preprocess_threads(self) -> int:
        """Threads that resize frames on the prefetch thread (more when a GPU waits for them)."""
        return min(8, os.cpu_count() or 1) if self.device.startswith("cuda") else 1

    def prepare_pixels(self, frames: np.ndarray) -> np.ndarray:
        """Resized frames: uint8 ``(..., h, w, 3)`` for the GPU, else normalised float32 ``(..., 3, h, w)``."""
        images = self.preprocess.resize_crop(frames, self.preprocess_threads)
        return images if self.pixels_on_device else self.preprocess.normalize(images)

    def pixels_to_device(self, pixels: np.ndarray):
        """Model-ready pixels on the device from what :meth:`prepare_pixels` made."""
        if pixels.dtype == np.uint8:
            return self.preprocess.normalize_torch(self.to_device(pixels, float_dtype=False), self.dtype)
        return self.to_device(pixels)

    def to_device(self, array: np.ndarray, float_dtype: bool = True):
        import torch

        t = torch.from_numpy(np.ascontiguousarray(array))
        if self.device.startswith("cuda"):
            t = t.pin_memory().to(self.device, non_blocking=True)
        else:
            t = t.to(self.device)
        return t.to(self.dtype) if float_dtype else t
