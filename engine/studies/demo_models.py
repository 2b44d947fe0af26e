"""``demo-av``: a small audio-visual-text "model" whose layers are the demo's feature spaces.

It reads the episode like any multimodal extractor (frames, sound, words) and returns four
layers computed from them, the feature spaces the demo's planted regions follow:

========== ======================================================================
layer      columns
========== ======================================================================
visual     luminance, contrast and frame difference per TR (what a vision tower sees)
audio      the sound envelope per TR
language   the word rate per TR
joint      each z-scored visual column times the z-scored word rate: what only a model
           that reads pictures *and* words together carries (the "multimodal" region)
visual_words  visual and joint side by side: a vision encoder trained with words (CLIP-like)
all        every column above (the joint model of the ablation study)
========== ======================================================================

Input ablations work as for the real models: ``vision`` reads mid-grey frames (the visual and
joint layers lose their signal), ``text`` reads no words (language and joint), ``audio``
silence. It needs no weights, so the studies can be run and tested offline on the demo; it is
registered as family ``demo_av`` and spec ``demo-av`` when :mod:`engine.studies` is imported.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ..errors import ConfigError
from ..features.base import BatchFeatures, EpisodeInputs, ModelSpec, check_ablation
from ..jobs import CancelToken, Progress

__all__ = ["DemoAVExtractor", "DemoContextExtractor", "register"]

LAYERS = ["visual", "audio", "language", "joint", "visual_words", "all"]


def _z(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    sd = x.std(0)
    return np.where(sd > 1e-12, (x - x.mean(0)) / np.where(sd > 1e-12, sd, 1.0), 0.0)


class _NamedLayers:
    """Extractors without weights whose layers are named choices (``LAYER_CHOICES``); built by
    the registry like any family, so they go through the same cache and pipeline."""

    LAYER_CHOICES: Sequence[str] = ()
    MODEL = ""

    def __init__(self, spec: ModelSpec, folder=None, device: str = "cpu", batch_size=None, attention=False,
                 identity=None):
        self.spec = spec
        wanted = [str(x) for x in spec.layers if isinstance(x, str)]
        self.layers = wanted or list(self.LAYER_CHOICES)
        bad = [x for x in self.layers if x not in self.LAYER_CHOICES]
        if bad:
            raise ConfigError(f"{self.MODEL} layer: got {bad}. Supported values are: "
                              f"{', '.join(self.LAYER_CHOICES)}")
        self.identity = dict(identity or {"model": self.MODEL})
        self.identity["version"] = 1


class DemoAVExtractor(_NamedLayers):
    """See the module docstring. Built by the registry (family ``demo_av``, no weights)."""

    modality = "multimodal"
    inputs = ("vision", "audio", "text")

    LAYER_CHOICES = LAYERS
    MODEL = "demo-av"

    def extract(self, episode: EpisodeInputs, tr_indices: Optional[Sequence[int]] = None,
                token: Optional[CancelToken] = None, ablate: str = "none"):
        from ..features.hf import episode_tr_indices
        from ..features.lowlevel import lowlevel_features_job

        ablate = check_ablation(ablate, self.inputs)
        idx = episode_tr_indices(episode, tr_indices)
        if episode.video_path is None:
            raise ConfigError("demo-av: expected an episode video, found none")
        n = episode.n_trs
        words = None if ablate == "text" else episode.words
        gen = lowlevel_features_job(episode.video_path, words, n, episode.tr_s, onset_s=episode.onset_s,
                                    audio_path=episode.audio_path, token=token, optical_flow=False)
        while True:
            try:
                p = next(gen)
            except StopIteration as stop:
                low = stop.value
                break
            yield Progress(p.step, p.total, f"demo-av: {p.message}")
        visual = np.column_stack([low["luminance"], low["contrast"], np.asarray(low["motion"])[:, :1]])
        audio = np.asarray(low["audio_envelope"], dtype=np.float64)[:, :1]
        rate = np.asarray(low["word_rate"], dtype=np.float64).reshape(n, -1)[:, :1]
        if ablate == "vision":
            visual = np.zeros_like(visual)   # mid-grey frames: constant luminance, no contrast or motion
        if ablate == "audio":
            audio = np.zeros_like(audio)
        joint = _z(visual) * _z(rate)
        full = {"visual": visual, "audio": audio, "language": rate, "joint": joint,
                "visual_words": np.column_stack([visual, joint]),
                "all": np.column_stack([visual, audio, rate, joint])}
        out = {k: np.asarray(full[k], np.float32)[idx] for k in self.layers}
        yield Progress(1, 1, "demo-av features", payload=BatchFeatures(idx, out))
        return out


CONTEXT_TAUS_S = {"ctx01s": 1.0, "ctx03s": 3.0, "ctx09s": 9.0, "ctx27s": 27.0}


class DemoContextExtractor(_NamedLayers):
    """``demo-context``: the word rate integrated over longer and longer windows, one "layer" each.

    Layer ``ctxNNs`` is the per-TR word count passed through a causal exponential window of
    NN seconds (:func:`engine.demo.integrate_rate`), a stand-in for the growing temporal
    receptive windows of deeper language-model layers. The demo's ``integration`` region
    follows the 9 s window, so a layer profile of this model has a known peak.
    """

    modality = "language"
    inputs = ("text",)

    LAYER_CHOICES = CONTEXT_TAUS_S
    MODEL = "demo-context"

    def extract(self, episode: EpisodeInputs, tr_indices: Optional[Sequence[int]] = None,
                token: Optional[CancelToken] = None, ablate: str = "none"):
        from ..demo import integrate_rate
        from ..features.hf import episode_tr_indices
        from ..features.lowlevel import word_rate

        ablate = check_ablation(ablate, self.inputs)
        idx = episode_tr_indices(episode, tr_indices)
        n = episode.n_trs
        if ablate == "text" or episode.words is None:
            rate = np.zeros(n)
        else:
            rate = np.asarray(word_rate(episode.words, n, episode.tr_s, episode.onset_s), float).reshape(n, -1)[:, 0]
        out = {k: integrate_rate(rate, episode.tr_s, CONTEXT_TAUS_S[k]).astype(np.float32)[:, None][idx]
               for k in self.layers}
        yield Progress(1, 1, "demo-context features", payload=BatchFeatures(idx, out))
        return out


class WordRateExtractor:
    """``word-rate``: words per TR (the baseline every language model must beat); needs only word timings."""

    modality = "language"
    inputs = ("text",)

    def __init__(self, spec: ModelSpec, folder=None, device: str = "cpu", batch_size=None, attention=False,
                 identity=None):
        self.spec = spec
        self.layers = ["word_rate"]
        self.identity = dict(identity or {"model": "word-rate"})
        self.identity["version"] = 1

    def extract(self, episode: EpisodeInputs, tr_indices: Optional[Sequence[int]] = None,
                token: Optional[CancelToken] = None, ablate: str = "none"):
        from ..features.hf import episode_tr_indices
        from ..features.lowlevel import word_rate

        ablate = check_ablation(ablate, self.inputs)
        idx = episode_tr_indices(episode, tr_indices)
        n = episode.n_trs
        if ablate == "text" or episode.words is None:
            rate = np.zeros((n, 1))
        else:
            rate = np.asarray(word_rate(episode.words, n, episode.tr_s, episode.onset_s), float).reshape(n, -1)[:, :1]
        out = {"word_rate": rate.astype(np.float32)[idx]}
        yield Progress(1, 1, "word rate", payload=BatchFeatures(idx, out))
        return out


def register() -> None:
    """Make ``demo-av`` known to the feature registry (idempotent)."""
    from ..features.registry import FAMILIES, SPECS, register_family, register_spec

    if "demo_av" not in FAMILIES:
        register_family("demo_av", "engine.studies.demo_models:DemoAVExtractor", needs_weights=False)
        # the registry's modality table does not know plugin families; the spec names it
    if "demo_context" not in FAMILIES:
        register_family("demo_context", "engine.studies.demo_models:DemoContextExtractor", needs_weights=False)
    if "demo-context" not in SPECS:
        register_spec(ModelSpec(name="demo-context", model="demo-context", family="demo_context",
                                modality="language", layers=tuple(CONTEXT_TAUS_S)))
    if "word_rate" not in FAMILIES:
        register_family("word_rate", "engine.studies.demo_models:WordRateExtractor", needs_weights=False)
    if "word-rate" not in SPECS:
        register_spec(ModelSpec(name="word-rate", model="word-rate", family="word_rate", modality="language",
                                layers=("word_rate",)))
    if "demo-av" not in SPECS:
        register_spec(ModelSpec(name="demo-av", model="demo-av", family="demo_av", modality="multimodal",
                                layers=tuple(LAYERS)))
