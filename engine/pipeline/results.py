"""Results in a project file: save, register, rename, delete; feature files on disk.

Every change to a project file here is a read-modify-write of THAT file: the project is
re-read from disk, the one entry changed, and the file written atomically
(:meth:`engine.project.Project.save`). A job started on project A therefore updates A's
file even if the window has opened project B meanwhile, and never touches an open
session: the caller hands the returned result object to whoever shows it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, Optional, Tuple

from ..errors import ConfigError, DataError, expected_found
from ..project import Project

__all__ = ["write_partition", "read_partition", "region_key", "PARTITION_KIND", "result_slug", "result_relpath",
           "save_result", "register_result", "rename_result",
           "delete_result", "list_results", "save_feature_spaces"]


def result_slug(name: str) -> str:
    """A file name for a result name: ``"lowlevel (GUI)"`` -> ``"lowlevel_gui"``."""
    slug = re.sub(r"[^A-Za-z0-9]+", "_", str(name)).strip("_").lower()
    return slug or "result"


def result_relpath(name: str) -> str:
    """Where a result named ``name`` is stored, relative to the project folder."""
    return f"results/{result_slug(name)}.h5"


def _check_name(name) -> str:
    name = str(name or "").strip()
    if not name:
        raise ConfigError(expected_found("result name", "a non-empty name", repr(name)))
    return name


def save_result(project_file, result, name: str) -> Tuple[str, Path]:
    """Write ``result`` to ``<project>/results/<slug>.h5`` atomically and register it.

    An existing result of the same name is replaced (the window asks before). Returns
    ``(relative path, absolute path)``.
    """
    name = _check_name(name)
    project_file = Path(project_file)
    root = project_file.parent.resolve()
    rel = result_relpath(name)
    (root / "results").mkdir(parents=True, exist_ok=True)
    path = _results_file(project_file, rel)   # never through a symlink leading outside results/
    result.save(path)
    register_result(project_file, name, rel)
    return rel, path


def register_result(project_file, name: str, relpath: str) -> Project:
    """Re-read ``project_file``, set ``results[name] = relpath``, write it atomically."""
    project = Project.load(project_file)
    project.results[_check_name(name)] = str(relpath)
    project.save(project_file)
    return project


def list_results(project_file) -> Dict[str, Path]:
    """``{result name: absolute path}`` of a project file, as on disk now."""
    project = Project.load(project_file)
    return {k: project.path(v) for k, v in project.results.items()}


def rename_result(project_file, old: str, new: str, rename_file: bool = True) -> str:
    """Rename a registered result; its file follows the new name when it lives in ``results/``.

    Raises :class:`~engine.errors.ConfigError` when ``old`` is unknown or ``new`` is taken.
    Returns the new relative path.
    """
    new = _check_name(new)
    project = Project.load(project_file)
    if old not in project.results:
        raise ConfigError(expected_found(f"result {old!r}", f"one of {sorted(project.results)}", "no such result"))
    if new in project.results and new != old:
        raise ConfigError(expected_found(f"new result name {new!r}", "a name not yet used", "a result of that name"))
    rel = project.results[old]
    if rename_file and rel == result_relpath(old) and result_relpath(new) != rel:
        src, dst = _results_file(project_file, rel), _results_file(project_file, result_relpath(new))
        if dst.exists():
            raise ConfigError(expected_found(f"file for result {new!r}", f"no file at {dst}", "a file there"))
        if src.exists():
            src.replace(dst)
        rel = result_relpath(new)
    del project.results[old]
    project.results[new] = rel
    project.save(project_file)
    return rel


def delete_result(project_file, name: str, delete_file: bool = True) -> Optional[Path]:
    """Unregister a result (and delete its file when ``delete_file`` and no other name uses it).

    Returns the deleted file's path, or None.
    """
    project = Project.load(project_file)
    if name not in project.results:
        raise ConfigError(expected_found(f"result {name!r}", f"one of {sorted(project.results)}", "no such result"))
    rel = project.results.pop(name)
    project.save(project_file)
    if not delete_file or rel in project.results.values():
        return None
    try:   # a project file never makes the app delete outside its results folder
        path = _results_file(project_file, rel)
    except ConfigError:
        return None   # unregistered; a file outside results/ is the user's, never deleted
    if path.is_file():
        path.unlink()
        return path
    return None


def _results_file(project_file, rel) -> Path:
    """The absolute path of ``rel`` when it lies inside the project's ``results/`` folder
    (symlinks resolved), else :class:`~engine.errors.ConfigError`."""
    from ..atomic import safe_result_path

    root = Path(project_file).resolve().parent
    full = safe_result_path(root, rel, results_dir="results")
    if not (Path(rel).parts[:1] == ("results",)):
        raise ConfigError(expected_found(f"result path {rel}", "a path inside the project's results/ folder",
                                         f"{rel}"))
    return full


def save_feature_spaces(spaces, path, extra_layers: Optional[Dict] = None) -> Path:
    """Write ``{layer: FeatureSpace}`` (and ``{name: (n_trs, k) array}`` extra layers, e.g. event
    regressors) to one HDF5 file atomically: ``/features/<layer>`` float32, ``tr_s``,
    ``model_id`` and the spec as JSON in ``meta``. Read back with
    :func:`engine.pipeline.data.read_feature_file`."""
    import json

    import h5py
    import numpy as np

    from ..atomic import atomic_path

    if not spaces and not extra_layers:
        raise DataError(expected_found("features to write", "at least one layer", "none"))
    path = Path(path)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            meta, tr_s, model_id = {}, 0.0, ""
            for layer, fs in (spaces or {}).items():
                d = f.create_dataset(f"features/{layer.replace('/', '%2F')}", data=fs.data)
                d.attrs["name"] = fs.name
                meta, tr_s, model_id = fs.meta, fs.tr_s, fs.model_id
            for layer, (arr, columns, layer_tr_s) in (extra_layers or {}).items():
                d = f.create_dataset(f"features/{layer.replace('/', '%2F')}", data=np.asarray(arr, np.float32))
                d.attrs["columns"] = json.dumps(list(columns))
                tr_s = tr_s or layer_tr_s
            f.attrs["tr_s"] = float(tr_s)
            f.attrs["model_id"] = model_id
            f.attrs["meta"] = json.dumps(meta or {}, default=str)
    return path


# ---------------------------------------------------------------------------- partition files
PARTITION_KIND = "alignscope.variance_partition"
PARTITION_SCHEMA_VERSION = 1


def region_key(region_name: str) -> str:
    """``"unique vision"`` -> ``"unique:vision"``, ``"shared a&b"`` -> ``"shared:a&b"`` (dataset names)."""
    kind, _, members = region_name.partition(" ")
    return f"{kind}:{members}"


def write_partition(path, part, residual=None, provenance=None) -> Path:
    """Write a PartitionResult (and a residual EncodingResult) to one HDF5 file, atomically."""
    import json

    import numpy as np

    from ..atomic import write_h5

    def _json_default(o):
        return o.tolist() if hasattr(o, "tolist") else str(o)

    def ds(name):
        return name.replace("/", "%2F")

    path = Path(path)
    joint_key = "+".join(part.space_names)
    first = part.models.get(joint_key)
    with write_h5(path, PARTITION_KIND, PARTITION_SCHEMA_VERSION) as h:
        h.attrs["spaces"] = json.dumps(part.space_names)
        h.attrs["regions"] = json.dumps([region_key(r) for r in part.regions])
        h.attrs["subsets"] = json.dumps(list(part.r2))
        h.attrs["run_names"] = json.dumps(list(first.run_names) if first is not None else [])
        h.attrs["measure"] = "held-out R^2 (mean over outer folds); regions by inclusion-exclusion"
        h.attrs["provenance"] = json.dumps(provenance or {}, default=_json_default)
        for name, values in part.regions.items():
            h[ds(region_key(name))] = np.asarray(values, dtype=np.float64)
        h["total"] = np.asarray(part.total, dtype=np.float64)
        for key, values in part.r2.items():
            h[f"r2/{ds(key)}"] = np.asarray(values, dtype=np.float64)
            if key in part.models:
                h[f"scores/{ds(key)}"] = np.asarray(part.models[key].scores, dtype=np.float64)
                h[f"alphas/{ds(key)}"] = np.asarray(part.models[key].alphas, dtype=np.float64)
        if residual is not None:
            g = h.create_group(f"residual/{ds(residual.space.split(' minus ')[0])}")
            g.attrs["space"] = residual.space
            g["r2"] = np.asarray(residual.r2, dtype=np.float64)
            g["scores"] = np.asarray(residual.scores, dtype=np.float64)
            g["alphas"] = np.asarray(residual.alphas, dtype=np.float64)
    return path


def read_partition(path) -> dict:
    """Read a file written by ``alignscope partition``.

    Returns
    -------
    dict with ``spaces`` (list), ``regions`` {"unique:A": (n_targets,) ...}, ``total``,
    ``r2`` and ``scores`` {subset: (n_targets,)}, ``residual`` {joint: {"space", "r2", "scores",
    "alphas"}}, ``run_names``, ``provenance``.
    """
    import json

    import numpy as np

    from ..atomic import read_h5

    with read_h5(path, PARTITION_KIND, PARTITION_SCHEMA_VERSION, "variance partition file") as h:

        def group(name):
            return {k.replace("%2F", "/"): np.asarray(h[name][k]) for k in h[name]} if name in h else {}

        residual = {}
        if "residual" in h:
            for k in h["residual"]:
                g = h["residual"][k]
                residual[k.replace("%2F", "/")] = {"space": str(g.attrs["space"]),
                                                   **{n: np.asarray(g[n]) for n in ("r2", "scores", "alphas")}}
        return {
            "spaces": json.loads(h.attrs["spaces"]),
            "regions": {r: np.asarray(h[r.replace("/", "%2F")]) for r in json.loads(h.attrs["regions"])},
            "total": np.asarray(h["total"]),
            "r2": group("r2"), "scores": group("scores"), "alphas": group("alphas"),
            "residual": residual,
            "run_names": json.loads(h.attrs["run_names"]),
            "provenance": json.loads(h.attrs["provenance"]),
        }


