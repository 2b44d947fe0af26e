"""The window's former "Fit encoding model" job, now a thin wrapper over :mod:`engine.pipeline`.

New code calls :func:`engine.pipeline.run_analysis_job` with an
:class:`~engine.pipeline.AnalysisSpec`; :func:`fit_lowlevel_job` stays importable for the window
until it switches.
"""

from __future__ import annotations

from typing import Optional, Sequence

from .errors import ConfigError
from .pipeline.results import result_slug  # noqa: F401  (kept importable)

LOWLEVEL_SPACES = ("luminance", "contrast", "motion", "audio_envelope", "word_rate")


def fit_lowlevel_job(project_path, episode: Optional[str] = None, space: Optional[str] = None,
                     features: Sequence[str] = LOWLEVEL_SPACES, delays=(1, 2, 3, 4), alphas=None,
                     result_name: str = "lowlevel", token=None):
    """Job: low-level features of one episode's runs -> cross-validated fit -> registered result.

    :func:`engine.pipeline.run_analysis_job` with ``AnalysisSpec(model="lowlevel",
    layers=features, episodes=[episode], space=space)``, one ridge over all spaces and FIR
    ``delays`` in TRs as this job always did, the other settings FitOptions' defaults.

    Returns
    -------
    (EncodingResult, str)
        The result and its name in the project.
    """
    from .encoding.options import FitOptions
    from .pipeline import AnalysisSpec, run_analysis_job
    from .pipeline.data import project_file_for
    from .pipeline.features import LOWLEVEL_LAYERS
    from .project import Project

    unknown = sorted(set(features) - set(LOWLEVEL_LAYERS))
    if unknown:
        raise ConfigError(f"features: expected some of {list(LOWLEVEL_LAYERS)}, found {unknown}")
    if episode is None:
        project = Project.load(project_file_for(project_path))
        with_runs = [e.name for e in project.episodes if project.runs_for(e.name)]
        episode = with_runs[0] if with_runs else None
    changes = dict(delays=[int(d) for d in delays], multi_space="joint")
    if alphas is not None:
        changes["alphas"] = [float(a) for a in alphas]
    spec = AnalysisSpec(name=result_name, model="lowlevel", layers=list(features),
                        episodes=[episode] if episode else None, space=space, fit=FitOptions(**changes))
    outcome = yield from run_analysis_job(project_path, spec, token=token)
    return outcome.result, outcome.result_name
