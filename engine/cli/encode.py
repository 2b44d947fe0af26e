"""``alignscope encode``: fit cross-validated encoding models and save an EncodingResult (.h5).

Examples::

    # one feature file and one brain file per run, in the same order
    python main.py encode --features ep1.h5 ep2.h5 ep3.h5 --brain run1.npy run2.npy run3.npy --out enc.h5
    # an Algonauts-style HDF5 holding every run as a dataset
    python main.py encode --features s01e01a.h5 s01e01b.h5 --brain sub-01_bold.h5 \\
        --brain-datasets ses-001_task-s01e01a ses-001_task-s01e01b --drop-edges 5 5 --pca 250 --out enc.h5
    # runs of a project file, features from a folder of <episode>.h5 files (alignscope extract)
    python main.py encode --project study.alignscope.json --features feats/ --layer layer_6 --out enc.h5

Feature files: ``.npy`` (n_trs, n_features); ``.npz`` or ``.h5`` whose arrays (or an
``/features`` group, as ``alignscope extract`` writes) are feature spaces (layers):
choose with ``--layer`` (repeatable); several layers make one joint model (``--joint``,
the default when several are chosen) or one model per layer (``--per-layer``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--features", nargs="+", metavar="FILE", required=False,
                        help="feature files, one per run (.npy/.npz/.h5), or one folder of <episode>.h5/.npy")
    parser.add_argument("--brain", nargs="+", metavar="FILE",
                        help="brain files, one per run (.npy/.npz/.h5/.tsv), or one .h5 with --brain-datasets")
    parser.add_argument("--brain-datasets", nargs="+", metavar="NAME",
                        help="datasets of the brain .h5/.npz, one per run (Algonauts: ses-001_task-s01e02a ...)")
    parser.add_argument("--project", metavar="FILE", help="project file: its runs are the brain runs")
    parser.add_argument("--layer", action="append", default=None, metavar="NAME",
                        help="feature space (layer) inside .npz/.h5 feature files; repeatable")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--joint", action="store_true", help="several layers: one joint model (default)")
    group.add_argument("--per-layer", action="store_true",
                       help="several layers: one model per layer, saved as OUT-<layer>.h5")
    parser.add_argument("--banded", action="store_true",
                        help="joint model of several layers: banded ridge, one penalty per layer and target")
    parser.add_argument("--banded-iter", type=int, default=20, metavar="N",
                        help="simplex candidates searched by --banded (default 20)")
    add_fit_arguments(parser)
    parser.add_argument("--scheduler", default=None, metavar="ADDR",
                        help="run chunks of targets on Dask: 'local' (a LocalCluster on this machine) "
                             "or a scheduler address such as tcp://host:8786 (default: in-process)")
    parser.add_argument("--chunks", type=int, default=None, metavar="N",
                        help="with --scheduler: split the targets into N chunks (default: one per worker)")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="with --scheduler local: number of Dask workers")
    parser.add_argument("--out", metavar="H5", help="output EncodingResult file (.h5)")
    parser.add_argument("--top", type=int, default=10, help="top targets printed (default 10)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_fit_arguments(parser) -> None:
    """The cross-validated ridge options shared by ``encode`` and ``partition``."""
    parser.add_argument("--delays", type=int, nargs="+", default=[1, 2, 3, 4], metavar="TRS",
                        help="FIR delays in TRs (default 1 2 3 4)")
    parser.add_argument("--alphas", default="0.01:1e8:11", metavar="LO:HI:N or A,B,...",
                        help="ridge grid: N values log-spaced from LO to HI, or a comma list "
                             "(default 0.01:1e8:11)")
    parser.add_argument("--cv", default="loro", help="outer CV: loro (leave one run out) or K (grouped K-fold)")
    parser.add_argument("--inner-cv", default=None, help="inner CV for alpha: loro or K (default as --cv)")
    parser.add_argument("--backend", default="numpy", choices=("numpy", "torch", "torch_cuda"))
    parser.add_argument("--n-targets-batch", type=int, default=None, metavar="N",
                        help="targets solved at once (memory bound)")
    parser.add_argument("--pca", default=None, metavar="K",
                        help="PCA per feature space fit on training runs: components (int) or variance (0-1)")
    parser.add_argument("--drop-edges", type=int, nargs=2, default=[0, 0], metavar=("START", "END"),
                        help="TRs dropped at the start and end of every run")
    parser.add_argument("--no-zscore", action="store_true", help="do not z-score runs")


def fit_kwargs_from_args(args, run_names) -> dict:
    """Keyword arguments of :func:`engine.encoding.fit.fit_encoding` from :func:`add_fit_arguments`'s options."""
    pca = None
    if args.pca is not None:
        pca = float(args.pca) if "." in str(args.pca) else int(args.pca)
    return dict(delays=args.delays, alphas=parse_alphas(args.alphas), cv=_parse_cv(args.cv),
                inner_cv=_parse_cv(args.inner_cv), backend=args.backend,
                n_targets_batch=args.n_targets_batch, zscore=not args.no_zscore,
                drop_edges=tuple(args.drop_edges), pca=pca, run_names=run_names)


def parse_alphas(text: str):
    """``"LO:HI:N"`` (N values log-spaced from LO to HI) or ``"a,b,c"`` -> array of alphas."""
    import numpy as np

    from ..errors import ConfigError

    try:
        if ":" in text:
            lo, hi, n = text.split(":")
            lo, hi = float(lo), float(hi)
            if lo <= 0 or hi <= 0:
                raise ValueError
            return np.logspace(np.log10(lo), np.log10(hi), int(n))
        return np.array([float(v) for v in text.split(",") if v.strip()])
    except ValueError:
        raise ConfigError(f"--alphas: expected LO:HI:N (positive alphas, log-spaced) or a comma list of numbers, found {text!r}") from None


def _parse_cv(text):
    if text is None:
        return None
    return int(text) if str(text).isdigit() else str(text)


def read_feature_file(path: Path, layers=None):
    """``{layer: (n_trs, n_features) float32}`` from a .npy/.npz/.h5 feature file."""
    import numpy as np

    from ..errors import DataError, expected_found

    path = Path(path)
    if not path.exists():
        raise DataError(expected_found("feature file", "an existing file", f"no file at {path}"))
    suffix = path.suffix.lower()
    if suffix == ".npy":
        arrays = {"features": np.load(path)}
    elif suffix == ".npz":
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
    elif suffix in (".h5", ".hdf5"):
        import h5py

        with h5py.File(path, "r") as h:
            group = h["features"] if "features" in h and isinstance(h["features"], h5py.Group) else h
            arrays = {k.replace("%2F", "/"): np.asarray(group[k]) for k in group
                      if isinstance(group[k], h5py.Dataset)}
    else:
        raise DataError(expected_found(f"feature file {path.name}", "a .npy, .npz or .h5 file", suffix or "no suffix"))
    arrays = {k: (v[:, None] if v.ndim == 1 else v) for k, v in arrays.items()}
    arrays = {k: v for k, v in arrays.items() if v.ndim == 2}
    if not arrays:
        raise DataError(expected_found(f"feature file {path}", "2-D (n_trs, n_features) arrays", "none"))
    if layers:
        missing = [l for l in layers if l not in arrays]
        if missing:
            raise DataError(expected_found(f"layers in {path.name}", f"{missing}", f"layers {sorted(arrays)}"))
        arrays = {l: arrays[l] for l in layers}
    return {k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()}


def read_brain_file(path: Path, dataset=None):
    """(n_trs, n_targets) float32 from .npy/.npz/.h5 (``dataset`` when several) or a text table."""
    import numpy as np

    from ..errors import DataError, expected_found

    path = Path(path)
    if not path.exists():
        raise DataError(expected_found("brain file", "an existing file", f"no file at {path}"))
    suffix = path.suffix.lower()
    if suffix == ".npy":
        a = np.load(path)
    elif suffix in (".npz", ".h5", ".hdf5"):
        if suffix == ".npz":
            z = np.load(path)
            names = list(z.files)
            get = lambda k: z[k]  # noqa: E731
        else:
            import h5py

            h = h5py.File(path, "r")
            names = [k for k in h if isinstance(h[k], h5py.Dataset)]
            get = lambda k: np.asarray(h[k])  # noqa: E731
        if dataset is None:
            if len(names) != 1:
                raise DataError(expected_found(f"brain file {path.name}", "one array (or --brain-datasets)",
                                               f"{len(names)} arrays: {names[:5]}"))
            dataset = names[0]
        if dataset not in names:
            raise DataError(expected_found(f"dataset in {path.name}", repr(dataset), f"{names[:8]}"))
        a = get(dataset)
        if suffix != ".npz":
            h.close()
    else:
        from ..io.fmri import load_table_run

        a = load_table_run(path, tr_s=1.0).data
    a = np.asarray(a, dtype=np.float32)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise DataError(expected_found(f"brain data in {path.name}", "(n_trs, n_targets)", a.shape))
    return a


def file_sha256(path, chunk_bytes: int = 1 << 22) -> str:
    """SHA-256 of a file's bytes (provenance)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_bytes), b""):
            h.update(block)
    return h.hexdigest()


def load_brain_runs(args, command: str = "encode"):
    """Brain runs from ``--project`` or ``--brain`` (+ ``--brain-datasets``).

    Returns
    -------
    Y : list of (n_trs_run, n_targets) float32
    names : list of str, one per run
    episodes : list of str, the episode of each run (names of feature files in a folder)
    prov : dict, ``{"data": {...}}`` provenance of the brain files
    """
    from ..errors import ConfigError, DataError, expected_found

    prov = {"data": {}}
    if getattr(args, "project", None):
        from ..io.fmri import load_run
        from ..project import Project

        project = Project.load(args.project)
        if not project.runs:
            raise DataError(expected_found(f"project {args.project}", "at least 2 runs", "none"))
        Y = [load_run(r, project).data for r in project.runs]
        names = [r.name for r in project.runs]
        episodes = [r.episode for r in project.runs]
        prov["data"]["project"] = str(Path(args.project).resolve())
        prov["data"]["brain"] = [str(project.path(r.path)) for r in project.runs]
    else:
        if not args.brain:
            raise ConfigError(f"{command}: expected --brain FILE... or --project FILE, found neither")
        if args.brain_datasets:
            if len(args.brain) != 1:
                raise ConfigError(expected_found("--brain with --brain-datasets", "one file", len(args.brain)))
            Y = [read_brain_file(Path(args.brain[0]), d) for d in args.brain_datasets]
            names = list(args.brain_datasets)
        else:
            Y = [read_brain_file(Path(p)) for p in args.brain]
            names = [Path(p).stem for p in args.brain]
        episodes = names
        prov["data"]["brain"] = [str(Path(p).resolve()) for p in args.brain]
        prov["data"]["brain_sha256"] = [file_sha256(p) for p in args.brain]
        if args.brain_datasets:
            prov["data"]["brain_datasets"] = list(args.brain_datasets)
    return Y, names, episodes, prov


def resolve_feature_files(features, episodes, what: str = "feature files"):
    """One feature file per run: the files as given, or ``<episode>.h5/.npz/.npy`` of one folder."""
    from ..errors import DataError, MismatchError, expected_found

    if len(features) == 1 and Path(features[0]).is_dir():
        folder = Path(features[0])
        files = []
        for ep in episodes:
            found = [folder / f"{ep}{s}" for s in (".h5", ".npz", ".npy") if (folder / f"{ep}{s}").exists()]
            if not found:
                raise DataError(expected_found(f"feature file for {ep!r} in {folder}", f"{ep}.h5/.npz/.npy",
                                               "none"))
            files.append(found[0])
    else:
        files = [Path(p) for p in features]
    if len(files) != len(episodes):
        raise MismatchError(expected_found(what, f"{len(episodes)} (one per brain run)", len(files)))
    return files


def _load_inputs(args):
    """(feature runs: list of {layer: array}, brain runs, run names, provenance)."""
    from ..errors import ConfigError, MismatchError, expected_found

    Y, names, episodes, prov = load_brain_runs(args, "encode")
    if not args.features:
        raise ConfigError("encode: expected --features FILE... (one per run) or a folder, found none")
    files = resolve_feature_files(args.features, episodes)
    feats = [read_feature_file(f, args.layer) for f in files]
    layers = list(feats[0])
    for f, d in zip(files, feats):
        if list(d) != layers:
            raise MismatchError(expected_found(f"layers of {f.name}", layers, list(d)))
    prov["data"]["features"] = [str(f.resolve()) for f in files]
    prov["data"]["features_sha256"] = [file_sha256(f) for f in files]
    return feats, Y, names, prov


def run(args) -> int:
    import warnings

    import numpy as np

    from ..encoding.distributed import fit_encoding_distributed_job
    from ..encoding.fit import fit_encoding_job
    from ..errors import ConfigError
    from ..jobs import run_sync

    if not args.out:
        raise ConfigError("encode: expected --out RESULT.h5, found none")
    feats, Y, names, prov = _load_inputs(args)
    layers = list(feats[0])
    common = dict(fit_kwargs_from_args(args, names), banded=args.banded, banded_n_iter=args.banded_iter)
    if args.per_layer:
        jobs = [(layer, {layer: [f[layer] for f in feats]},
                 Path(args.out).with_name(f"{Path(args.out).stem}-{layer.replace('/', '_')}.h5"))
                for layer in layers]
    else:
        jobs = [("+".join(layers), {l: [f[l] for f in feats] for l in layers}, Path(args.out))]
    for name, spaces, out in jobs:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if args.scheduler:
                job = fit_encoding_distributed_job(spaces, Y, scheduler=args.scheduler, n_chunks=args.chunks,
                                                   n_workers=args.workers, provenance=dict(prov), **common)
            else:
                job = fit_encoding_job(spaces, Y, provenance=dict(prov), **common)
            result = run_sync(job, progress_bar=not args.no_progress, name=f"encode {name}")
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr)
        result.save(out)
        s = np.asarray(result.scores, dtype=np.float64)
        print(f"{name}: {result.n_targets} targets, {len(names)} runs, {len(result.folds)} folds; "
              f"mean r = {np.nanmean(s):.4f}, median r = {np.nanmedian(s):.4f}, "
              f"max r = {np.nanmax(s):.4f}")
        top = result.top_targets(args.top)
        print("top targets (index: r, alpha): " + ", ".join(
            f"{i}: {s[i]:.3f}, {result.alphas[i]:.3g}" for i in top))
        print(f"saved {out}")
    return 0
