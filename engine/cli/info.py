"""``alignscope info PATH``: what a file or folder holds, and everything wrong with it.

Exit status 0 when the path is usable as is, 1 when something is wrong (each problem is
listed), 2 (from ``main.py``) when the path cannot be inspected at all.
Imports stay inside functions: ``--help`` must answer at once.
"""

from __future__ import annotations

MEDIA_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".wav", ".mp3", ".flac", ".ogg", ".m4a", ".aac")
TEXT_SUFFIXES = (".srt", ".vtt", ".textgrid")
MAX_FOLDER_FILES = 200


def add_arguments(parser) -> None:
    parser.add_argument("path", help="a file (video, audio, subtitles, fMRI run, atlas, mesh, project) or a folder "
                                     "(project, Algonauts 2025, BIDS/fMRIPrep)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--tr", type=float, default=None, metavar="S",
                        help="TR in seconds for tables that do not store one")


def run(args) -> int:
    import json
    from pathlib import Path

    report = inspect_path(Path(args.path), tr_s=args.tr)
    if args.json:
        print(json.dumps(report, indent=2, default=_json_default))
    else:
        print(format_report(report))
    return 0 if not _all_problems(report) else 1


# ---- report helpers ------------------------------------------------------------------
def _json_default(obj):
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def _all_problems(report) -> list:
    out = list(report.get("problems", []))
    for child in report.get("files", []):
        out += [f"{child['path']}: {p}" for p in _all_problems(child)]
    return out


def format_report(report, indent: str = "") -> str:
    lines = [f"{indent}{report['path']}  [{report['kind']}]"]
    for k, v in report.get("facts", {}).items():
        if isinstance(v, (list, tuple)) and len(v) > 12:
            v = f"{list(v[:12])} ... ({len(v)} in all)"
        lines.append(f"{indent}  {k}: {v}")
    for child in report.get("files", []):
        lines.append(format_report(child, indent + "  "))
    if report.get("pairing"):
        from engine.importers import format_pairing_table

        lines.append(f"{indent}  pairing (episode <-> runs per subject):")
        lines += [f"{indent}    {line}" for line in format_pairing_table(report["pairing"]).splitlines()]
    problems = report.get("problems", [])
    if problems:
        lines.append(f"{indent}  PROBLEMS ({len(problems)}):")
        lines += [f"{indent}   - {p}" for p in problems]
    elif not indent:
        all_p = _all_problems(report)
        lines.append(f"{indent}  OK: usable as is" if not all_p else f"{indent}  {len(all_p)} problem(s) in all")
    return "\n".join(lines)


def _report(path, kind, facts=None, problems=None, files=None) -> dict:
    out = {"path": str(path), "kind": kind, "facts": facts or {}, "problems": problems or []}
    if files:
        out["files"] = files
    return out


# ---- dispatch --------------------------------------------------------------------------
def inspect_path(path, tr_s=None) -> dict:
    """A report ``{path, kind, facts, problems[, files]}`` for a file or folder."""
    from engine.errors import AlignScopeError, DataError

    if not path.exists():
        raise DataError(f"info: expected a file or folder, found nothing at {path}")
    if path.is_dir():
        return _inspect_folder(path, tr_s)
    import stat

    mode = path.stat().st_mode
    if not stat.S_ISREG(mode):   # a FIFO would block every reader for ever; a device is no data file
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "a device node")
        return _report(path, "not a regular file", problems=[
            f"expected a regular file, found {kind} (reading it could wait for ever): give the file itself"])
    try:
        return _inspect_file(path, tr_s)
    except AlignScopeError as exc:   # the file is what it claims but broken: a problem, not a crash
        return _report(path, "unreadable", problems=[str(exc)])


def _inspect_file(path, tr_s) -> dict:
    name = path.name.lower()
    if name.endswith(".alignscope.json"):
        return _inspect_project(path)
    if name.endswith(MEDIA_SUFFIXES):
        return _inspect_media(path)
    if name.endswith(TEXT_SUFFIXES):
        return _inspect_text(path)
    if name.endswith(".annot") or name.endswith(".label.gii") or name.endswith(".dlabel.nii"):
        return _inspect_atlas(path)
    if name.endswith(".gii") or name.endswith(".gii.gz"):
        return _inspect_gifti(path, tr_s)
    if name.endswith((".dtseries.nii", ".ptseries.nii")):
        from engine.io.fmri import load_cifti_run
        return _run_report(path, load_cifti_run(path, tr_s=tr_s))
    if name.endswith((".nii", ".nii.gz")):
        return _inspect_nifti(path, tr_s)
    if name.endswith((".h5", ".hdf5")):
        return _inspect_h5(path, tr_s)
    if name.endswith(".tsv"):
        return _inspect_tsv(path, tr_s)
    if name.endswith((".csv", ".txt", ".npy", ".npz")):
        return _inspect_table(path, tr_s)
    if name.endswith((".html", ".htm")):
        return _inspect_html(path)
    if name.endswith(".json"):
        return _inspect_json(path)
    return _report(path, "unknown", problems=[
        f"expected a video, audio, subtitle, word-timing, fMRI, atlas, mesh or project file, found {path.suffix or 'no extension'}"])


# ---- fMRI --------------------------------------------------------------------------------
def _run_report(path, run, kind=None) -> dict:
    import numpy as np

    from engine.io.fmri import constant_targets, describe_nonfinite

    facts = {"n_trs": run.n_trs, "n_targets": run.n_targets, "tr_s": run.tr_s,
             "duration_s": round(run.duration_s, 3), "space": run.space}
    if run.meta.get("tr_known") is False:
        facts["tr_s"] = "not stored in the file (give --tr)"
        del facts["duration_s"]
    for k in ("n_voxels", "dataset", "atlas", "column_names"):
        if k in run.meta:
            facts[k] = run.meta[k]
    if "brain_models" in run.meta:
        facts["brain_models"] = [f"{m['structure'].replace('CIFTI_STRUCTURE_', '')}: {m['stop'] - m['start']}"
                                 for m in run.meta["brain_models"]]
    if "parcel_names" in run.meta:
        facts["n_parcels"] = len(run.meta["parcel_names"])
    problems = []
    nan = describe_nonfinite(run.data)
    if nan:
        problems.append(f"expected finite values, found {nan} (AlignScope can interpolate or zero them: "
                        "preprocessing nan_policy='interpolate' or 'zero')")
    flat = constant_targets(run.data)
    if flat.size:
        finite = np.where(np.isfinite(run.data), run.data, 0)
        zero = bool(np.all(finite[:, flat] == 0))
        what = "all zeros" if zero else "constant"
        if flat.size == run.n_targets:
            problems.append(f"expected time courses that vary, found all {run.n_targets} targets {what} "
                            "(an empty or failed run: exclude it)")
        else:
            problems.append(f"expected time courses that vary, found {flat.size} of {run.n_targets} targets "
                            f"{what} (targets {flat[:5].tolist()}{' ...' if flat.size > 5 else ''})")
    if run.n_trs < 10:
        problems.append(f"expected a run of at least 10 TRs, found {run.n_trs}")
    return _report(path, kind or f"fmri ({run.meta.get('format', '?')})", facts, problems)


def _inspect_nifti(path, tr_s) -> dict:
    import nibabel as nib

    try:
        img = nib.load(str(path))
        shape = img.shape
    except Exception as exc:
        return _report(path, "nifti", problems=[f"expected a NIfTI image, found unreadable content "
                                                f"({exc.__class__.__name__}: {str(exc)[:160]})"])
    if len(shape) == 3:
        import numpy as np

        data = np.asarray(img.dataobj)
        integer = np.allclose(data, np.round(data))
        facts = {"shape": list(shape), "voxel_mm": [round(float(z), 3) for z in img.header.get_zooms()[:3]],
                 "kind": "label volume" if integer else "3-D map",
                 "n_labels": int(len(np.unique(data)) - (1 if (data == 0).any() else 0)) if integer else None}
        return _report(path, "nifti volume", facts)
    from engine.io.fmri import load_nifti_run
    return _run_report(path, load_nifti_run(path, tr_s=tr_s))


def _inspect_gifti(path, tr_s) -> dict:
    import nibabel as nib

    try:
        img = nib.load(str(path)) if not path.name.endswith(".gz") else None
    except Exception as exc:
        return _report(path, "gifti", problems=[f"expected a GIFTI file, found unreadable content "
                                                f"({exc.__class__.__name__}: {str(exc)[:160]})"])
    intents = {d.intent for d in img.darrays} if img is not None else {1008}
    if 1008 in intents:   # NIFTI_INTENT_POINTSET: a mesh
        from engine.io.surfaces import read_gifti_mesh
        hemi = read_gifti_mesh(path)
        return _report(path, "surface mesh", {"n_vertices": hemi.n_vertices, "n_faces": hemi.n_faces,
                                              "extent_mm": [round(float(x), 1) for x in (hemi.coords.max(0) - hemi.coords.min(0))]})
    if img is not None and len(img.darrays) == 1:   # one value per vertex: a map (e.g. a study's lh/rh maps)
        return _map_report(path, img.darrays[0].data, "surface map (gifti)")
    from engine.io.fmri import _gifti_timeseries, BrainRun, load_gifti_run, right_hemisphere_path

    partner = right_hemisphere_path(path)
    if partner is not None and partner.exists():
        from engine.io.fmri import tr_from_sidecar

        tr = tr_s or tr_from_sidecar(path)
        from engine.io.fmri import read_brain_file

        # the commands' reader: the pair's vertex count checked against its declared space
        run = read_brain_file(path, tr_s=tr or 1.0)
        run.meta["tr_known"] = tr is not None
        return _run_report(path, run, "fmri (gifti pair)")
    data = _gifti_timeseries(path)
    rep = _run_report(path, BrainRun(data, tr_s or 1.0, "hemisphere", path.name, meta={"format": "gifti",
                                                                                       "tr_known": tr_s is not None}),
                      "fmri (one gifti hemisphere)")
    if partner is not None:
        rep["problems"].append(f"expected its other hemisphere at {partner.name}, found nothing")
    return rep


def _map_report(path, values, kind) -> dict:
    """One value per target (a map of scores): its size, range and what space that size means."""
    import numpy as np

    from engine.io.surfaces import N_VERTICES_PER_HEMI, space_for_n_vertices

    v = np.asarray(values, dtype=np.float64).ravel()
    finite = v[np.isfinite(v)]
    hemi = next((f"one {k} hemisphere" for k, n in N_VERTICES_PER_HEMI.items() if n == v.size), None)
    facts = {"n_values": int(v.size),
             "space (from the size)": space_for_n_vertices(v.size) or hemi or "parcels or voxels",
             "n_undefined": int(v.size - finite.size)}
    if finite.size:
        facts.update({"min": round(float(finite.min()), 4), "mean": round(float(finite.mean()), 4),
                      "max": round(float(finite.max()), 4)})
    return _report(path, kind, facts)


def _labelled_table(path):
    """A CSV/TSV whose first column is text and the others numbers (a region table), or None."""
    import pandas as pd

    sep = "\t" if path.name.lower().endswith(".tsv") else ","
    try:
        table = pd.read_csv(path, sep=sep)
    except Exception:
        return None
    if table.shape[1] < 2 or table.shape[0] == 0:
        return None
    first = table.columns[0]
    numeric_first = pd.to_numeric(table[first], errors="coerce").notna().mean() > 0.5
    rest = table.drop(columns=[first]).apply(pd.to_numeric, errors="coerce")
    text_cols = [c for c in rest.columns if rest[c].isna().sum() > table[c].isna().sum()]
    if numeric_first or text_cols:
        return None
    return _report(path, "table (labelled rows)", {"n_rows": int(len(table)), "label_column": str(first),
                                                   "columns": _short([str(c) for c in table.columns], 12),
                                                   "first_labels": [str(x) for x in table[first].head(5)]})


def _inspect_table(path, tr_s) -> dict:
    import numpy as np

    from engine.errors import DataError, expected_found
    from engine.io.fmri import load_table_run

    if not path.is_file():   # a FIFO would block np.load for ever
        raise DataError(expected_found(path.name, "a regular file", "a FIFO or other special file"))
    low = path.name.lower()
    if low.endswith(".npy"):
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except Exception:
            arr = None
        if arr is not None and arr.ndim == 1:           # one value per target: a map (e.g. a study's maps/*.npy)
            return _map_report(path, arr, "map (npy)")
    if low.endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as z:
                shapes = {k: list(z[k].shape) for k in z.files}
        except Exception:
            shapes = None
        if shapes is not None and len(shapes) > 1:      # several named arrays (e.g. a study's study.npz)
            return _report(path, "arrays (npz)", {"n_arrays": len(shapes), "arrays": _first(shapes, 20)})
    if low.endswith((".csv", ".tsv")):
        labelled = _labelled_table(path)
        if labelled is not None:
            return labelled
    run = load_table_run(path, tr_s or 1.0, space="parcels")
    run.meta["tr_known"] = tr_s is not None
    return _run_report(path, run, "fmri table")


def _inspect_h5(path, tr_s) -> dict:
    import h5py
    import numpy as np

    from engine.io.fmri import constant_targets, describe_nonfinite

    from engine.errors import DataError
    from engine.io.arrays import describe_arrays, read_array

    try:   # the commands' reader: a file that is not HDF5 (text, .npy) named as such
        describe_arrays(path, "HDF5 file")
    except DataError as exc:
        return _report(path, "hdf5", problems=[str(exc)])
    try:
        f = h5py.File(path, "r")
    except Exception as exc:
        return _report(path, "hdf5", problems=[f"expected an HDF5 file, found unreadable content "
                                               f"({exc.__class__.__name__}: {str(exc)[:160]})"])
    with f:
        own = _inspect_own_h5(path, f)
    if own is not None:
        return own
    f = h5py.File(path, "r")
    problems, shapes = [], {}
    with f:
        names = []
        f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        for n in names:
            ds = f[n]
            shapes[n] = tuple(ds.shape)
            if ds.ndim == 0 and not n.startswith("ses-"):
                continue
            try:   # the commands' checks: lazily allocated, text, absurd sizes
                data, _ = read_array(path, n, what="HDF5 file")
            except DataError as exc:
                problems.append(f"{n}: {exc}")
                continue
            except Exception as exc:
                problems.append(f"{n}: expected readable data, found {exc.__class__.__name__}: {str(exc)[:120]}")
                continue
            if data.ndim != 2 or not np.issubdtype(data.dtype, np.number):
                problems.append(f"{n}: expected a numeric (n_trs, n_targets) array, found {ds.dtype} {ds.shape}")
                continue
            nan = describe_nonfinite(data)
            if nan:
                problems.append(f"{n}: expected finite values, found {nan}")
            flat = constant_targets(data)
            if flat.size:
                problems.append(f"{n}: expected time courses that vary, found {flat.size} of {data.shape[1]} "
                                "targets constant")
    n_targets = sorted({s[1] for s in shapes.values() if len(s) == 2})
    n_trs = [s[0] for s in shapes.values() if len(s) == 2]
    facts = {"n_datasets": len(shapes), "n_targets": n_targets[0] if len(n_targets) == 1 else n_targets,
             "n_trs_per_dataset": f"{min(n_trs)}..{max(n_trs)}" if n_trs else None, "total_trs": int(sum(n_trs)),
             "datasets": list(shapes)}
    if tr_s:
        facts["tr_s"] = tr_s
    if "task-friends" in path.name or "task-movie10" in path.name:
        from engine.io.algonauts import ALGONAUTS_TR_S
        facts.update({"layout": "Algonauts 2025", "tr_s": tr_s or ALGONAUTS_TR_S, "space": "Schaefer 1000 parcels"})
        if len(n_targets) > 1 or (n_targets and n_targets[0] != 1000):
            problems.append(f"expected 1000 parcels in every dataset, found {n_targets}")
    if not shapes:
        problems.append("expected at least one dataset, found none")
    return _report(path, "hdf5 runs", facts, problems)


# ---- files AlignScope writes ----------------------------------------------------------------
OWN_KINDS = {
    "alignscope.encoding_result": "encoding result",
    "alignscope.permutation_result": "permutation test",
    "alignscope.variance_partition": "variance partition",
}


def _attr(f, name, default=None):
    v = f.attrs.get(name, default)
    return v.decode() if isinstance(v, bytes) else v


def _json_attr(f, name, default=None):
    import json

    v = _attr(f, name)
    if v is None:
        return default
    try:
        return json.loads(v)
    except (TypeError, ValueError):
        return default


def _short(values, n=8):
    values = list(values)
    return values if len(values) <= n else values[:n] + [f"... ({len(values)} in all)"]


def _score_facts(scores, label="r") -> dict:
    import numpy as np

    s = np.asarray(scores, dtype=np.float64)
    finite = s[np.isfinite(s)]
    if not finite.size:
        return {f"mean_{label}": None}
    return {f"mean_{label}": round(float(finite.mean()), 4), f"median_{label}": round(float(np.median(finite)), 4),
            f"max_{label}": round(float(finite.max()), 4), "n_undefined": int(s.size - finite.size)}


def _inspect_own_h5(path, f):
    """A report for the HDF5 files AlignScope writes (results, permutation and partition files,
    feature files from ``extract``, feature-cache entries, attention maps), or None."""
    import numpy as np

    kind = _attr(f, "kind")
    version = _attr(f, "schema_version")
    if kind == "alignscope.encoding_result":
        prov = _json_attr(f, "provenance", {}) or {}
        scores = np.asarray(f["scores"]) if "scores" in f else np.zeros(0)
        runs = _json_attr(f, "run_names", [])
        facts = {"space": _attr(f, "space"), "n_targets": int(scores.size), "n_runs": len(runs),
                 "runs": _short(runs), "feature_spaces": _short(_json_attr(f, "feature_names", [])),
                 "delays_trs": _json_attr(f, "delays", []), **_score_facts(scores)}
        if "r2" in f:
            facts["mean_r2"] = _score_facts(f["r2"][()], "r2")["mean_r2"]
        if "alpha_on_edge" in f:
            facts["alphas_on_grid_edge"] = int(np.asarray(f["alpha_on_edge"]).astype(bool).sum())
        for k in ("tr_s", "model", "episode", "cv", "trim", "alignment", "confounds"):
            if k in prov:
                facts[k] = prov[k]
        facts["schema_version"] = version
        problems = []
        if scores.size and not np.isfinite(scores).any():
            problems.append("expected some defined scores, found every target's r undefined (constant data?)")
        return _report(path, "encoding result", facts, problems)
    if kind == "alignscope.permutation_result":
        settings = _json_attr(f, "settings", {}) or {}
        p = np.asarray(f["p_values"]) if "p_values" in f else np.zeros(0)
        null = f["null"].shape if "null" in f else ()
        facts = {"n_targets": int(p.size), "n_permutations": int(null[0]) if len(null) else None,
                 "significant_p<0.05": int(np.sum(np.nan_to_num(p, nan=1.0) < 0.05)),
                 "significant_fdr_q<0.05": int(np.sum(np.nan_to_num(np.asarray(f["q_values"]), nan=1.0) < 0.05))
                 if "q_values" in f else None,
                 **_score_facts(f["observed"][()] if "observed" in f else [], "observed"),
                 "settings": settings, "schema_version": version}
        return _report(path, "permutation test", facts)
    if kind == "alignscope.variance_partition":
        spaces = _json_attr(f, "spaces", [])
        facts = {"feature_spaces": spaces, "n_targets": int(f["total"].shape[0]) if "total" in f else None,
                 "measure": _attr(f, "measure"), "runs": _short(_json_attr(f, "run_names", []))}
        for r in _json_attr(f, "regions", []):
            key = r.replace("/", "%2F")
            if key in f:
                facts[f"mean {r}"] = round(float(np.nanmean(f[key][()])), 4)
        if "residual" in f:
            facts["residual_models"] = list(f["residual"].keys())
        facts["schema_version"] = version
        return _report(path, "variance partition", facts)
    if isinstance(kind, str) and kind.startswith("alignscope."):
        names = []
        f.visititems(lambda n, o: names.append(n) if hasattr(o, "shape") else None)
        return _report(path, kind.split(".", 1)[1].replace("_", " "),
                       {"schema_version": version, "datasets": _short(names)})
    if {"maps", "rollout", "tr_indices"} <= set(f.keys()):
        meta = _json_attr(f, "meta", {}) or {}
        maps = f["maps"].shape
        facts = {"map_kind": kind, "layers": _short(_json_attr(f, "layers", [])), "n_trs_with_maps": int(f["tr_indices"].shape[0]),
                 "maps_shape": list(maps), "model": meta.get("model"), "heads": meta.get("heads")}
        return _report(path, "attention maps", facts)
    if "features" in f and hasattr(f["features"], "keys"):
        layers = {}
        for k in f["features"].keys():
            d = f["features"][k]
            layers[k.replace("%2F", "/")] = list(d.shape)
        rows = sorted({v[0] for v in layers.values() if v})
        facts = {"n_layers": len(layers), "n_trs": rows[0] if len(rows) == 1 else rows,
                 "n_features_per_layer": {k: v[1] if len(v) > 1 else 1 for k, v in _first(layers, 12).items()}}
        tr = _attr(f, "tr_s")
        if tr is not None:
            facts["tr_s"] = float(tr)
        meta = _json_attr(f, "meta", {}) or {}
        for k in ("model", "model_id", "family", "pooling", "ablate", "window_s", "tr_s", "onset_s", "episode"):
            if k in meta and k not in facts:
                facts[k] = meta[k]
        if _attr(f, "model_id"):
            facts["model_id"] = _attr(f, "model_id")
        problems = []
        if len(rows) > 1:
            problems.append(f"expected every layer to have the same number of TR rows, found {rows}")
        what = "feature cache entry" if _attr(f, "key") and not _attr(f, "model_id") else "features"
        return _report(path, what, facts, problems)
    return None


def _first(d, n):
    return dict(list(d.items())[:n])


def _inspect_tsv(path, tr_s) -> dict:
    with open(path, "r", encoding="utf-8", errors="replace") as fh:
        header = fh.readline().strip().split("\t")
    cols = {h.strip().lower() for h in header}
    if {"text_per_tr", "words_per_tr"} & cols or {"word", "onset"} <= cols or "text" in cols:
        return _inspect_text(path)
    if {"trans_x", "rot_x"} & cols or any(c.startswith("a_comp_cor") for c in cols):
        import pandas as pd
        table = pd.read_csv(path, sep="\t")
        nan_cols = [c for c in table.columns if table[c].isna().any()]
        facts = {"kind": "fMRIPrep confounds", "n_trs": len(table), "n_columns": table.shape[1],
                 "columns_with_nan": nan_cols[:10]}
        return _report(path, "confounds", facts)
    if {"onset", "duration"} <= cols:
        import pandas as pd
        table = pd.read_csv(path, sep="\t")
        return _report(path, "events", {"n_events": len(table), "columns": list(table.columns)})
    return _inspect_table(path, tr_s)


def _inspect_html(path) -> dict:
    """A report page (``qc --html``, a study's ``report.html``): its title and how much it holds."""
    import re

    text = path.read_text(encoding="utf-8", errors="replace")
    title = re.search(r"<title>(.*?)</title>|<h1[^>]*>(.*?)</h1>|<h2[^>]*>(.*?)</h2>", text, re.S | re.I)
    facts = {"title": next((g for g in title.groups() if g), "").strip()[:120] if title else None,
             "n_figures": len(re.findall(r"<img\b", text, re.I)), "n_tables": len(re.findall(r"<table\b", text, re.I)),
             "size_kb": round(path.stat().st_size / 1024, 1),
             "made_by": "AlignScope" if "alignscope" in text.lower() else "unknown"}
    return _report(path, "html report", facts)


def _inspect_json(path) -> dict:
    """A JSON file (a study or demo summary, a sidecar): its top-level keys."""
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return _report(path, "json", problems=[f"expected JSON, found a syntax error ({exc})"])
    if isinstance(data, dict) and data.get("application") == "AlignScope" and "schema_version" in data:
        return _inspect_project(path)
    facts = {"type": type(data).__name__}
    if isinstance(data, dict):
        facts["keys"] = _short(list(data), 12)
        if "RepetitionTime" in data:
            facts.update({"kind": "BIDS sidecar", "tr_s": data["RepetitionTime"]})
    elif isinstance(data, list):
        facts["n_items"] = len(data)
    return _report(path, "json", facts)


# ---- stimuli -------------------------------------------------------------------------------
def _inspect_media(path) -> dict:
    try:
        from engine.io.media_info import check_media, describe_media
    except ImportError:
        return _inspect_media_fallback(path)
    facts = describe_media(path)
    problems = list(check_media(path))
    if path.name.endswith(".proxy.mp4"):   # engine.io.proxy: an all-intra copy for scrubbing
        facts = {"made_by": "AlignScope (scrub proxy: every frame a keyframe, for instant seeking)", **facts}
        return _report(path, "scrub proxy (video)", facts, problems)
    return _report(path, "media", facts, problems)


def _inspect_media_fallback(path) -> dict:
    """Used until ``engine.io.media_info`` is available: streams via PyAV, frames via VideoReader."""
    import av

    try:
        with av.open(str(path)) as c:
            streams = [f"{s.type} {s.codec_context.name}" for s in c.streams]
            has_video = any(s.type == "video" for s in c.streams)
            duration_s = float(c.duration) / 1e6 if c.duration else None
    except Exception as exc:
        return _report(path, "media", problems=[f"expected a video or audio file, found unreadable content "
                                                f"({exc.__class__.__name__}: {str(exc)[:160]})"])
    facts = {"streams": streams, "duration_s": duration_s}
    problems = []
    if has_video:
        from engine.io.video import VideoReader

        with VideoReader(path) as r:
            facts.update({"n_frames": r.n_frames, "fps": round(r.fps, 3), "duration_s": r.duration_s,
                          "size": [r.width, r.height]})
    if not streams:
        problems.append("expected a video or audio stream, found none")
    return _report(path, "media", facts, problems)


def _inspect_text(path) -> dict:
    from engine.io.text import read_cues, read_words

    problems = []
    words = read_words(path)
    facts = {"n_words": int(len(words))}
    if len(words):
        facts["first_s"] = round(float(words["onset_s"].min()), 3)
        facts["last_end_s"] = round(float((words["onset_s"] + words["duration_s"]).max()), 3)
    try:
        cues = read_cues(path)
        facts["n_cues"] = int(len(cues))
    except Exception:   # a word list without cue structure is still usable
        pass
    if not len(words):
        problems.append("expected words, found none")
    return _report(path, "text", facts, problems)


# ---- atlases, projects, folders -----------------------------------------------------------
def _inspect_atlas(path) -> dict:
    from engine.io.atlases import load_atlas_file

    atlas = load_atlas_file(path)
    counts = atlas.vertices_per_parcel()
    facts = {"n_parcels": atlas.n_parcels, "n_vertices": atlas.n_vertices, "space": atlas.space,
             "medial_wall_vertices": int(atlas.medial_wall.sum()), "first_names": atlas.names[:5]}
    problems = []
    if (counts == 0).any():
        problems.append(f"expected every parcel to have vertices, found {int((counts == 0).sum())} empty")
    return _report(path, "atlas", facts, problems)


def _inspect_project(path) -> dict:
    from engine.project import Project

    from engine.atomic import describe_project_path, safe_result_path
    from engine.errors import ConfigError

    project = Project.load(path)
    problems = []
    root = project.root if project.root is not None else path.parent
    for name, rel in project.results.items():
        try:   # a project file never points the app's writes (and deletes) outside its folder
            safe_result_path(root, rel)
        except ConfigError as exc:
            problems.append(f"result {name}: outside the project: {exc}")
            continue
        if not project.path(rel).exists():
            problems.append(f"result {name}: expected its file at {rel}, found nothing")
    outside = []
    for r in project.runs:
        where = describe_project_path(root, r.path)
        if where["problem"] and where["kind"] != "missing":
            problems.append(f"run {r.name}: {where['problem']}")
        if not where["inside_project"]:
            outside.append(f"{r.name} -> {where['points_to']}")
        low = str(r.path).lower()
        if where["kind"] == "file" and low.endswith((".nii", ".nii.gz")) and not low.endswith(
                (".dtseries.nii", ".ptseries.nii", ".dlabel.nii")):
            problems += _nifti_run_problem(r.name, project.path(r.path))
    for ep in project.episodes:
        for field in ("video", "audio", "subtitles", "words", "events"):
            rel = getattr(ep, field)
            if rel and not project.path(rel).exists():
                problems.append(f"episode {ep.name}: expected its {field} at {rel}, found nothing")
    names = {e.name for e in project.episodes}
    for r in project.runs:
        if not project.path(r.path).exists():
            problems.append(f"run {r.name}: expected its data at {r.path}, found nothing")
        if r.episode not in names:
            problems.append(f"run {r.name}: expected episode {r.episode!r} in the project, found none by that name")
        if r.tr_s <= 0:
            problems.append(f"run {r.name}: expected a positive TR, found {r.tr_s}")
    problems += _pairing_problems(project)
    facts = {"name": project.name, "n_episodes": len(project.episodes), "n_runs": len(project.runs),
             "subjects": sorted({r.subject for r in project.runs}), "spaces": sorted({r.space for r in project.runs}),
             "tr_s": sorted({r.tr_s for r in project.runs}), "atlases": [a.name for a in project.atlases],
             "results": list(project.results)}
    if outside:
        facts["runs outside the project folder"] = _short(outside, 8)
    if project.extra.get("layout"):
        facts["layout"] = project.extra["layout"]
    held = project.extra.get("held_out_episodes") or []
    if held:
        facts["held_out_episodes"] = [h["episode"] for h in held]
    if project.extra.get("layout") == "algonauts2025":
        cortex = _subject_atlases_on_cortex(project, problems)
        if cortex:
            facts["parcels painted on fsaverage5 (subject atlas)"] = cortex
    rep = _report(path, "project", facts, problems)
    rep["pairing"] = _pairing(project)
    return rep


def _nifti_run_problem(name, full) -> list:
    """A NIfTI run that ``encode`` would refuse (not 4-D), read from its header only."""
    import nibabel as nib

    from engine.io.fmri import _not_a_run_message

    try:
        shape = nib.load(str(full)).shape
    except Exception as exc:
        return [f"run {name}: expected a NIfTI image, found unreadable content ({exc.__class__.__name__})"]
    if len(shape) != 4 or shape[3] < 2:
        return [f"run {name}: {_not_a_run_message(full, shape)}"]
    return []


def _pairing(project) -> list:
    from engine.importers import pairing_table

    return pairing_table(project)


def _media_duration_s(path):
    import av

    try:
        with av.open(str(path)) as c:
            return float(c.duration) / 1e6 if c.duration else None
    except Exception:
        return None


def _pairing_problems(project, max_runs: int = 2000) -> list:
    """Runs whose duration disagrees with their episode's video (beyond 3 TRs or 2 %)."""
    from engine.errors import AlignScopeError
    from engine.io.fmri import pair_run, run_shape

    problems, durations = [], {}
    for ep in project.episodes:
        if ep.video and project.path(ep.video).exists():
            durations[ep.name] = _media_duration_s(project.path(ep.video))
    for ref in project.runs[:max_runs]:
        stim_s = durations.get(ref.episode)
        if not stim_s or not project.path(ref.path).exists() or ref.tr_s <= 0:
            continue
        try:
            n_trs, _ = run_shape(ref, project)
            pair_run(n_trs, stim_s, tr_s=ref.tr_s, onset_s=ref.onset_s, dropped_volumes=ref.dropped_volumes,
                     tolerance_s=max(3 * ref.tr_s, 0.02 * stim_s))
        except AlignScopeError as exc:
            problems.append(f"run {ref.name}: {exc}")
    return problems


def _inspect_algonauts(path, tr_s=None) -> dict:
    from engine.importers import open_algonauts_folder

    project = open_algonauts_folder(path, tr_s=tr_s)
    extra = project.extra
    per_subject = {}
    for r in project.runs:
        per_subject[r.subject] = per_subject.get(r.subject, 0) + 1
    known = [f"{m['subject']} {m['episode']}" for m in extra["missing_runs"] if m["known"]]
    unknown = [f"{m['subject']} {m['episode']}" for m in extra["missing_runs"] if not m["known"]]
    facts = {"layout": "Algonauts 2025", "subjects": extra["subjects"], "runs_per_subject": per_subject,
             "n_episodes": len(project.episodes), "tr_s": extra["tr_s"], "space": "Schaefer 1000 parcels (MNI152NLin2009cAsym)",
             "n_videos": sum(e.video is not None for e in project.episodes),
             "n_transcripts": sum(e.words is not None for e in project.episodes),
             "atlases": [a.path for a in project.atlases], "known_missing_runs (absent from the release)": known}
    problems = list(extra["problems"])
    problems += [f"expected a run for {u} (other subjects have one), found none" for u in unknown]
    if extra["episodes_without_video"]:
        facts["episodes_without_video"] = extra["episodes_without_video"]
    if extra["held_out_episodes"]:
        facts["held_out_episodes (stimuli without fMRI)"] = [h["episode"] for h in extra["held_out_episodes"]]
    cortex = _subject_atlases_on_cortex(project, problems)
    if cortex:
        facts["parcels painted on fsaverage5 (subject atlas)"] = cortex
    rep = _report(path, "folder (Algonauts 2025)", facts, problems)
    rep["pairing"] = _pairing(project)
    return rep


def _subject_atlases_on_cortex(project, problems) -> dict:
    """Per subject: how many of the 1000 parcels reach fsaverage5 through the subject's atlas
    (the projection is cached, so the window paints at once afterwards)."""
    from engine.errors import AlignScopeError
    from engine.importers.algonauts import subject_atlas_path
    from engine.io.algonauts import N_PARCELS
    from engine.io.atlases import surface_atlas_from_volume

    out = {}
    for subject in project.extra.get("subjects", []):
        try:
            proj = surface_atlas_from_volume(subject_atlas_path(project, subject), n_parcels=N_PARCELS)
        except AlignScopeError as exc:
            problems.append(f"atlas of {subject} (parcels cannot be painted on the cortex): {exc}")
            continue
        out[subject] = f"{proj.n_reached} of {proj.n_parcels} parcels ({100 * proj.fraction_reached:.1f}%)"
    return out


def _inspect_bids(path, tr_s=None) -> dict:
    from engine.importers import discover_bids

    project = discover_bids(path, tr_s=tr_s)
    sources = sorted(set(project.extra.get("tr_sources", {}).values()))
    facts = {"layout": "BIDS", "n_runs": len(project.runs), "subjects": sorted({r.subject for r in project.runs}),
             "tasks": sorted({r.name.split("task-")[1].split("_")[0] for r in project.runs if "task-" in r.name}),
             "episodes": [e.name for e in project.episodes], "spaces": sorted({r.space for r in project.runs}),
             "tr_s": sorted({r.tr_s for r in project.runs}), "tr_from": sources,
             "runs_with_confounds": sum(r.confounds is not None for r in project.runs),
             "episodes_with_video": sum(e.video is not None for e in project.episodes)}
    if any(r.confounds for r in project.runs):
        facts["confound_sets"] = "motion6, motion12, motion24, wm_csf, wm_csf4, global (join with +, e.g. motion24+wm_csf)"
    if project.atlases:
        facts["atlas"] = f"{project.atlases[0].name} ({project.atlases[0].space}; bundled default, change in the project)"
    held = project.extra.get("held_out_episodes") or []
    if held:
        facts["held_out_episodes (stimuli without fMRI)"] = [h["episode"] for h in held]
    rep = _report(path, "folder (BIDS)", facts, list(project.extra["problems"]))
    rep["pairing"] = _pairing(project)
    return rep


def _inspect_folder(path, tr_s) -> dict:
    from engine.importers import detect_layout
    from engine.project import PROJECT_SUFFIX

    layout = detect_layout(path)
    if layout == "project":
        rep = _inspect_project(sorted(path.glob(f"*{PROJECT_SUFFIX}"))[0])
        rep["kind"] = "folder (project)"
        return rep
    if layout == "algonauts":
        return _inspect_algonauts(path, tr_s)
    if layout == "bids":
        return _inspect_bids(path, tr_s)
    files = []
    for p in sorted(x for x in path.rglob("*") if x.is_file() and not x.name.startswith("."))[:MAX_FOLDER_FILES]:
        if p.name.upper().startswith(("README", "LICENSE", "LICENCE", "SHA256SUMS", "CHANGES")):
            continue
        rep = inspect_path(p, tr_s)
        if rep["kind"] == "unknown":
            continue
        if p.suffix.lower() in (".txt", ".csv") and (rep["kind"] == "unreadable" or rep["facts"].get("n_trs") == 0):
            continue   # in a folder walk, prose and name lists are not broken runs
        files.append(rep)
    facts = {"n_files_recognised": len(files)}
    problems = [] if files else ["expected files AlignScope can read, found none"]
    return _report(path, "folder", facts, problems, files)
