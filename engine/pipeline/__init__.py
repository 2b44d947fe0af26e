"""The one way from a project (or files) to a result: data loaded once, features (cached), fit, save.

The window's Run menu, every CLI sub-command, the demo and Python call this package:

- :class:`AnalysisSpec`, :func:`run_analysis_job` -> :class:`AnalysisOutcome` (:mod:`.analysis`);
- :func:`list_models`, :func:`model_layers` (:mod:`.features`): what the analysis dialog offers;
- :func:`save_result`, :func:`rename_result`, :func:`delete_result` (:mod:`.results`): results in
  a project file, read-modify-written atomically;
- :func:`fit_job`, :func:`fit_per_layer_job`, :func:`partition_job` (:mod:`.fit`): fits from
  :class:`~engine.encoding.options.FitOptions` on :class:`BrainData` (:mod:`.data`).

Importing it is cheap (numpy only); torch and friends load when a model runs.
"""

from ..encoding.options import FitOptions
from .analysis import AnalysisOutcome, AnalysisSpec, run_analysis_job
from .data import BrainData, ProjectData, load_brain_files, read_brain_file, read_feature_file
from .features import ModelInfo, episode_features_job, list_models, model_layers
from .fit import describe_fit, fit_job, fit_per_layer_job, partition_job
from .results import delete_result, list_results, rename_result, result_slug, save_result

__all__ = ["FitOptions", "AnalysisSpec", "AnalysisOutcome", "run_analysis_job", "BrainData", "ProjectData",
           "load_brain_files", "read_brain_file", "read_feature_file", "ModelInfo", "list_models", "model_layers",
           "episode_features_job", "fit_job", "fit_per_layer_job", "partition_job", "describe_fit", "save_result",
           "rename_result", "delete_result", "list_results", "result_slug"]
