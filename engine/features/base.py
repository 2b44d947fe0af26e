"""The contract every feature extractor follows.

An *extractor* turns one :class:`EpisodeInputs` (the video, audio and word timings of an
episode, plus the TR grid of the fMRI run paired with it) into one array per layer,
``(n_trs, n_features)`` float32, row ``k`` summarising the stimulus window that ends at
the end of TR ``k`` (the convention of :mod:`engine.timeline`).

Extractors are *jobs* (see :mod:`engine.jobs`): ``extract`` is a generator that yields
:class:`~engine.jobs.Progress`, checks the cancel token between batches, and *returns*
``dict[layer_name -> (n_rows, n_features) float32]``. It is asked for a subset of TRs
(``tr_indices``) so the caller (:mod:`engine.features.extract`) can cache finished
chunks and resume a cancelled run where it stopped; an extractor must give the same
row for a TR whatever chunk that TR is asked in (no state carried between calls).

Writing an extractor (a plugin, TVLT, MERLOT Reserve...)
--------------------------------------------------------
A class with the attributes and methods of :class:`Extractor`, built from a
:class:`ModelSpec` by ``from_spec(spec, device)`` (a classmethod or a plain function).
Register it under a *family* name with :func:`engine.features.registry.register_family`
or through the ``alignscope.extractors`` entry-point group (see
:mod:`engine.features.plugins`). Nothing here imports torch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Generator, Optional, Protocol, Sequence, Tuple, Union, runtime_checkable

import numpy as np

from ..errors import ConfigError
from ..jobs import CancelToken, Progress

__all__ = [
    "MODALITIES", "POOLINGS", "ABLATIONS", "FeatureSpace", "ModelSpec", "EpisodeInputs",
    "Extractor", "AttentionMaps", "ExtractResult", "BatchFeatures", "tr_windows", "resolve_layers",
    "layer_name", "check_ablation",
]

MODALITIES = ("vision", "language", "audio", "multimodal")
POOLINGS = ("mean", "cls", "last")
# What a modality ablation replaces an input with: blank (mid-grey) frames, silent audio,
# no words (an empty string where a model needs text).
ABLATIONS = ("none", "vision", "audio", "text")
DTYPES = ("auto", "float32", "float16", "bfloat16")

ExtractResult = Dict[str, np.ndarray]  # layer name -> (n_rows, n_features) float32


@dataclass
class FeatureSpace:
    """One feature space: a (TRs x features) matrix for an episode.

    Parameters
    ----------
    name : str
        What the user sees, e.g. ``"clip-vit-b32/vision.layer06"``.
    data : ndarray, (n_trs, n_features) float32
    layer : str
        Layer name inside the model (``"layer06"``, ``"vision.layer12"``, ``"luminance"``).
    model_id : str
        Model id, folder or registry name the features came from.
    tr_s : float
        Repetition time of the TR grid the rows are on.
    meta : dict
        Provenance: spec, window, pooling, ablation, cache key, stimulus hashes.
    """

    name: str
    data: np.ndarray
    layer: str
    model_id: str
    tr_s: float
    meta: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.data = np.asarray(self.data, dtype=np.float32)
        if self.data.ndim != 2:
            raise ConfigError(f"feature space {self.name!r}: expected a 2-D (n_trs, n_features) array, "
                              f"found shape {self.data.shape}")

    @property
    def n_trs(self) -> int:
        return int(self.data.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.data.shape[1])


@dataclass
class BatchFeatures:
    """A finished batch, sent as ``Progress.payload`` while an extractor runs.

    Extractors that yield these let the caller cache each finished chunk at once (a
    cancelled run then resumes where it stopped); an extractor that only returns its
    result at the end works too, but a cancel loses its unfinished work.

    Parameters
    ----------
    tr_indices : ndarray, (n_batch,) int
        The TRs of this batch.
    features : dict
        ``{layer: (n_batch, n_features) float32}``.
    """

    tr_indices: np.ndarray
    features: Dict[str, np.ndarray]


LayerSpec = Union[int, float, str]


@dataclass(frozen=True)
class ModelSpec:
    """How to build and run one model.

    Parameters
    ----------
    name : str
        Registry name (``"minilm"``, ``"clip-vit-b32"``); defaults to ``model``.
    model : str
        Hugging Face model id (``"openai/clip-vit-base-patch32"``) or a local folder.
    family : str
        Which extractor builds it: ``"clip"``, ``"vit"``, ``"videomae"``, ``"vjepa2"``,
        ``"bert"``, ``"causal_lm"``, ``"wav2vec2"``, ``"whisper"``, ``"w2v_bert"``, ``"clip_joint"``,
        ``"tvlt"``, ``"lowlevel"``, ``"auto"`` (guess from the config), or a plugin family.
    modality : str
        ``vision``, ``language``, ``audio`` or ``multimodal``.
    layers : tuple
        Hidden-state indices (int; 0 = embeddings, -1 = last) or relative depths in
        (0, 1] (float; 0.5 = the middle block), or layer names (str) for extractors with
        named outputs. Empty = every layer.
    pooling : str
        How tokens/patches of a window become one vector: ``mean``, ``cls`` or ``last``.
    window_s : float
        Length of the stimulus window ending at each TR's end (seconds).
    frames_per_window : int
        Frames sampled evenly within the window (vision/video models).
    context_words : int
        Language models: keep the last ``context_words`` words up to the TR's end.
    dtype : str
        ``auto`` (float16 on CUDA, float32 on CPU), ``float32``, ``float16``, ``bfloat16``.
    trust_remote_code : bool
        Run code shipped with the checkpoint. Off unless you trust its source.
    revision : str, optional
        Hub revision (branch, tag or commit) to resolve in the offline cache.
    options : tuple of (key, value)
        Family-specific settings (kept hashable, part of the cache key): ``context_s``
        (Whisper audio context), ``max_tokens`` (language models), ``split_modalities`` (TVLT).
    """

    model: str
    family: str = "auto"
    modality: str = "vision"
    layers: Tuple[LayerSpec, ...] = (1.0,)
    pooling: str = "mean"
    window_s: float = 1.49
    frames_per_window: int = 4
    context_words: int = 64
    dtype: str = "auto"
    trust_remote_code: bool = False
    revision: Optional[str] = None
    name: str = ""
    options: Tuple[Tuple[str, Any], ...] = ()

    def __post_init__(self):
        if not self.name:
            object.__setattr__(self, "name", str(self.model))
        if self.modality not in MODALITIES:
            raise ConfigError(f"modality of {self.name!r}: got {self.modality!r}. "
                              f"Supported values are: {', '.join(MODALITIES)}")
        if self.pooling not in POOLINGS:
            raise ConfigError(f"pooling of {self.name!r}: got {self.pooling!r}. "
                              f"Supported values are: {', '.join(POOLINGS)}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype of {self.name!r}: got {self.dtype!r}. "
                              f"Supported values are: {', '.join(DTYPES)}")
        if not (self.window_s > 0):
            raise ConfigError(f"stimulus window of {self.name!r}: expected > 0 s, found {self.window_s}")
        if self.frames_per_window < 1:
            raise ConfigError(f"frames per window of {self.name!r}: expected >= 1, found {self.frames_per_window}")
        if self.context_words < 1:
            raise ConfigError(f"context length of {self.name!r}: expected >= 1 word, found {self.context_words}")
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "options", tuple(sorted(dict(self.options).items())))

    def option(self, key: str, default: Any = None) -> Any:
        return dict(self.options).get(key, default)

    def replace(self, **changes) -> "ModelSpec":
        d = asdict(self)
        d.update(changes)
        return ModelSpec(**d)

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["layers"] = list(self.layers)
        d["options"] = dict(self.options)
        return d


@dataclass
class EpisodeInputs:
    """The stimulus of one episode and the TR grid its features must land on.

    Parameters
    ----------
    n_trs : int
        Number of TRs (rows of every feature array).
    tr_s : float
        Repetition time in seconds.
    video_path, audio_path : Path, optional
        The movie file; audio is read from ``audio_path`` or else from the video.
    words : DataFrame, optional
        Columns ``onset_s, duration_s, word`` (:func:`engine.io.text.read_words`).
    onset_s : float
        Episode time at which TR 0 starts.
    """

    n_trs: int
    tr_s: float
    video_path: Optional[Path] = None
    audio_path: Optional[Path] = None
    words: Any = None
    onset_s: float = 0.0

    def __post_init__(self):
        if self.video_path is not None:
            self.video_path = Path(self.video_path)
        if self.audio_path is not None:
            self.audio_path = Path(self.audio_path)
        if self.n_trs < 1:
            raise ConfigError(f"TR count: expected >= 1, found {self.n_trs}")
        if not (self.tr_s > 0):
            raise ConfigError(f"TR: expected a positive number of seconds, found {self.tr_s}")

    @property
    def audio_source(self) -> Optional[Path]:
        return self.audio_path or self.video_path

    def windows_s(self, window_s: float, tr_indices: Optional[Sequence[int]] = None) -> np.ndarray:
        """``(n, 2)`` start/end seconds of the window ending at each TR's end."""
        return tr_windows(self.n_trs, self.tr_s, window_s, self.onset_s, tr_indices)


def tr_windows(n_trs: int, tr_s: float, window_s: float, onset_s: float = 0.0,
               tr_indices: Optional[Sequence[int]] = None) -> np.ndarray:
    """Start and end (seconds) of the stimulus window ending at the end of each TR.

    Returns
    -------
    ndarray, (n, 2) float64
        ``[start_s, end_s]``; ``end_s = onset_s + (k + 1) * tr_s``, ``start_s = end_s - window_s``
        (may be negative for the first TRs; readers clip at 0).
    """
    k = np.arange(n_trs) if tr_indices is None else np.asarray(tr_indices, dtype=int)
    end_s = onset_s + (k + 1) * float(tr_s)
    return np.stack([end_s - float(window_s), end_s], axis=1)


def resolve_layers(layers: Sequence[LayerSpec], n_layers: int) -> list:
    """Hidden-state indices for a layer request.

    ``n_layers`` is the number of transformer blocks; hidden state 0 is the embedding
    output and ``n_layers`` the last block. Ints are indices (negative from the end);
    floats in (0, 1] are relative depths (``round(d * n_layers)``, at least 1). An
    empty request means every hidden state ``0..n_layers``.
    """
    if not layers:
        return list(range(n_layers + 1))
    out = []
    for layer in layers:
        if isinstance(layer, bool) or isinstance(layer, str):
            raise ConfigError(f"layer: expected an index or a relative depth, found {layer!r}")
        if isinstance(layer, (int, np.integer)):
            i = int(layer) if layer >= 0 else n_layers + 1 + int(layer)
        else:
            d = float(layer)
            if not (0.0 < d <= 1.0):
                raise ConfigError(f"relative layer depth: expected a number in (0, 1], found {d}")
            i = max(1, int(math.floor(d * n_layers + 0.5)))
        if not 0 <= i <= n_layers:
            raise ConfigError(f"layer index: expected 0..{n_layers} (or -1..-{n_layers + 1}), found {layer}")
        if i not in out:
            out.append(i)
    return out


def layer_name(index: int, prefix: str = "") -> str:
    """``layer06`` (hidden state 6), with an optional tower prefix (``vision.layer06``)."""
    name = f"layer{index:02d}"
    return f"{prefix}.{name}" if prefix else name


@dataclass
class AttentionMaps:
    """Attention kept for the GUI overlay, compact and bounded in size.

    Parameters
    ----------
    tr_indices : ndarray, (n_kept,) int
        TRs the maps belong to (subsampled to stay under the size budget).
    layers : list of str
        Layer names, one per axis-1 entry of ``maps``.
    maps : ndarray, (n_kept, n_layers, n_heads, n_queries?, n_keys) float16
        Vision: CLS -> patch attention, ``(n_kept, n_layers, n_heads, grid_h, grid_w)``.
        Language: last-token -> token attention, ``(n_kept, n_layers, n_heads, n_tokens)``.
    rollout : ndarray, (n_kept, ...) float16
        Attention rollout (Abnar & Zuidema 2020) of the CLS/last query over all layers.
    kind : str
        ``"patches"`` or ``"tokens"``.
    meta : dict
        ``grid`` (h, w), ``frame_times_s`` for each kept TR, token strings, ...
    """

    tr_indices: np.ndarray
    layers: list
    maps: np.ndarray
    rollout: np.ndarray
    kind: str = "patches"
    meta: Dict[str, Any] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return int(self.maps.nbytes + self.rollout.nbytes)


@runtime_checkable
class Extractor(Protocol):
    """What :mod:`engine.features.extract` needs from an extractor.

    Attributes
    ----------
    spec : ModelSpec
    modality : str
        One of :data:`MODALITIES`.
    layers : list of str
        Names of the arrays ``extract`` returns (known after construction).
    identity : dict
        What identifies the weights for the cache key (e.g. ``{"model": id,
        "weights_sha256": ...}``); JSON-serialisable.
    """

    spec: ModelSpec
    modality: str
    layers: list
    identity: dict

    def extract(self, episode: EpisodeInputs, tr_indices: Optional[Sequence[int]] = None,
                token: Optional[CancelToken] = None, ablate: str = "none",
                ) -> Generator[Progress, None, ExtractResult]:
        """Features of the TRs ``tr_indices`` (all when None), one array per layer.

        Yields Progress (one per batch, ideally with a :class:`BatchFeatures` payload; call
        ``token.raise_if_cancelled()`` between batches), returns ``{layer: (len(tr_indices), n_features) float32}``.
        ``ablate`` removes one input: ``"vision"`` (blank frames), ``"audio"`` (silence),
        ``"text"`` (no words); ``"none"`` keeps all.
        """
        ...


class SupportsAttention(Protocol):
    """Optional: extractors that can return attention maps for the overlay."""

    def extract_attention(self, episode: EpisodeInputs, tr_indices: Sequence[int],
                          token: Optional[CancelToken] = None, ablate: str = "none",
                          max_mb: float = 64.0) -> Generator[Progress, None, AttentionMaps]:
        ...


def check_ablation(ablate: str, modality_inputs: Sequence[str]) -> str:
    """Validate ``ablate`` for an extractor that reads ``modality_inputs``."""
    ablate = ablate or "none"
    if ablate not in ABLATIONS:
        raise ConfigError(f"ablation: got {ablate!r}. Supported values are: {', '.join(ABLATIONS)}")
    if ablate != "none" and ablate not in modality_inputs:
        raise ConfigError(f"ablation: this model reads {', '.join(modality_inputs)}; "
                          f"expected one of those, found {ablate!r}")
    return ablate
