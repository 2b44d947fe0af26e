"""Project-level analyses as jobs: what the GUI's Run menu starts, headless.

Each function here takes a project file, does the whole analysis (load, features, fit,
save, register the result in the project) and yields :class:`~engine.jobs.Progress`, so
the GUI runs it on a worker thread and a script runs it with :func:`engine.jobs.run_sync`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .errors import ConfigError, DataError
from .jobs import Progress, nested
from .importers import detect_layout, open_project
from .project import PROJECT_SUFFIX, Project

LOWLEVEL_SPACES = ("luminance", "contrast", "motion", "audio_envelope", "word_rate")


def result_slug(name: str) -> str:
    """A file name for a result name: "lowlevel (GUI)" -> "lowlevel_gui"."""
    slug = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").lower()
    return slug or "result"


def _project_file(path) -> Path:
    """The project file of ``path``; a data folder (Algonauts, BIDS) becomes a project first,
    since results need a home: ``<folder>/<folder name>.alignscope.json``."""
    path = Path(path)
    if detect_layout(path) == "project":
        return path if path.is_file() else sorted(path.glob(f"*{PROJECT_SUFFIX}"))[0]
    return open_project(path).save(path)


def fit_lowlevel_job(project_path, episode: Optional[str] = None, space: Optional[str] = None,
                     features: Sequence[str] = LOWLEVEL_SPACES, delays=(1, 2, 3, 4),
                     alphas=None, result_name: str = "lowlevel",
                     token=None):
    """Job: low-level features of an episode -> nested leave-one-run-out ridge -> saved result.

    Parameters
    ----------
    project_path : path
        Project file (or its folder).
    episode : str, optional
        Episode name (default: the first).
    space : str, optional
        Which of the episode's runs to fit: those in this space (default: the space of the
        episode's first run). Runs of one space share their targets.
    features : sequence of str
        Low-level feature groups (keys of :func:`engine.features.lowlevel.lowlevel_features`).
    alphas : array, optional
        Ridge grid (default: :data:`engine.encoding.fit.DEFAULT_ALPHAS`).
    result_name : str
        Name under which the result is registered in the project; the file is
        ``results/<slug>.h5`` ("lowlevel (GUI)" -> ``results/lowlevel_gui.h5``).

    Returns
    -------
    (EncodingResult, str)
        The result and its name in the project.
    """
    from .encoding.fit import DEFAULT_ALPHAS, fit_encoding_job
    from .features.lowlevel import lowlevel_features_job
    from .io.fmri import load_run
    from .io.text import read_words

    project_file = _project_file(project_path)
    project = Project.load(project_file)
    ep = project.episode(episode) if episode else (project.episodes[0] if project.episodes else None)
    if ep is None or not ep.video:
        raise DataError(f"project {project.name}: expected an episode with a video, found none")
    refs = project.runs_for(ep.name)
    space = space or (refs[0].space if refs else None)
    refs = [r for r in refs if r.space == space]
    if len(refs) < 2:
        raise DataError(f"leave-one-run-out for episode {ep.name!r} in space {space!r}: expected at least "
                        f"2 runs, found {len(refs)}")
    unknown = sorted(set(features) - set(LOWLEVEL_SPACES) - {"mel"})
    if unknown:
        raise ConfigError(f"features: expected some of {list(LOWLEVEL_SPACES) + ['mel']}, found {unknown}")
    total = len(refs) + 4
    runs = []
    for k, ref in enumerate(refs):
        yield Progress(k, total, f"loading {ref.name}")
        runs.append(load_run(ref, project))
    lengths = {r.data.shape[0] for r in runs}
    if len(lengths) != 1:
        raise DataError(f"runs of {ep.name!r}: expected one length (each is a viewing of the same episode), "
                        f"found {sorted(lengths)} TRs")
    n_trs, tr_s, onset_s = runs[0].data.shape[0], refs[0].tr_s, refs[0].onset_s
    words = read_words(project.path(ep.words or ep.subtitles)) if (ep.words or ep.subtitles) else None
    step = len(refs)
    feats = yield from nested(lowlevel_features_job(project.path(ep.video), words, n_trs, tr_s, onset_s,
                                                    token=token), step, total, "low-level features")
    X = np.column_stack([feats[k] for k in features]).astype(np.float32)   # n_trs, n_features
    names = [f"{k}:{i}" for k in features for i in range(feats[k].shape[1])]
    step += 1
    alphas = DEFAULT_ALPHAS if alphas is None else alphas
    result = yield from nested(fit_encoding_job([X] * len(runs), [r.data for r in runs], delays=delays,
                                                alphas=alphas, run_names=[r.name for r in refs], space=space,
                                                feature_names=names, token=token),
                               step, total, "fitting")
    result.provenance.update({"project": str(project_file), "episode": ep.name, "features": list(features)})
    step += 1
    yield Progress(step, total, "saving the result")
    rel = f"results/{result_slug(result_name)}.h5"
    result.save(project.path(rel))
    project = Project.load(project_file)     # re-read: the project may have changed meanwhile
    project.results[result_name] = rel
    project.save(project_file)
    yield Progress(total, total, f"saved {rel}")
    return result, result_name
