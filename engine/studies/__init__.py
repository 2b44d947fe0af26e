"""The reference studies as one-click workflows (``python main.py study NAME``).

=========== ==========================================================================
workflow    question
=========== ==========================================================================
encoders    does a multimodally trained encoder predict the brain better than a
            unimodal one, and where? (Δr per target and region, block permutations, FDR)
ablation    where does alignment drop when one input (vision, audio, text) is removed?
joint       does a joint representation explain anything beyond the unimodal ones?
            (variance partitioning and residual encoding)
checkpoints two checkpoints of one family, layer by layer and region by region
layers      the layer x region profile of one model, best layer per region
=========== ==========================================================================

Each workflow is a job (a generator yielding :class:`~engine.jobs.Progress`, cancellable)
returning a :class:`~engine.studies.common.StudyResult`, and writes ``OUT/report.html`` with
its maps (GIFTI) and tables (CSV). See :func:`run_study_job`.
"""

from __future__ import annotations

from .demo_models import register as _register_demo_models

_register_demo_models()

WORKFLOWS = {
    "encoders": ("engine.studies.encoders", "multimodally trained vs unimodal encoders: where the multimodal one wins"),
    "ablation": ("engine.studies.ablation", "a joint model with one input removed: where alignment drops"),
    "joint": ("engine.studies.joint", "variance partitioning and residual encoding of joint vs unimodal features"),
    "checkpoints": ("engine.studies.checkpoints", "two checkpoints of one family: layer x region Δr"),
    "layers": ("engine.studies.layers", "layer x region profile of one model, best layer per region"),
}

__all__ = ["WORKFLOWS", "run_study_job", "run_study"]


def run_study_job(name: str, settings, token=None):
    """Job: run workflow ``name`` with ``settings`` (a StudySettings or its dict); returns a StudyResult."""
    import importlib

    from ..errors import ConfigError
    from .common import StudySettings

    if name not in WORKFLOWS:
        raise ConfigError(f"study: got {name!r}. Supported values are: {', '.join(WORKFLOWS)}")
    if isinstance(settings, dict):
        settings = StudySettings(**settings)
    module = importlib.import_module(WORKFLOWS[name][0])
    return (yield from module.run_job(settings, token=token))


def run_study(name: str, settings, token=None, on_progress=None):
    """Synchronous :func:`run_study_job`."""
    from ..jobs import run_sync

    return run_sync(run_study_job(name, settings, token=token), token=token, on_progress=on_progress)
