"""Writing a study: maps (NPY always; GIFTI on the surface, NIfTI for volume runs), tables (CSV), figures and one
self-contained ``report.html`` (every figure embedded as a base64 PNG).

Surface figures are drawn with matplotlib only (Agg, no VTK, no display): the fsaverage mesh
of :mod:`engine.io.surfaces`, orthographic lateral and medial views of each hemisphere,
triangles painted back to front with Lambert shading over a sulcal-depth background.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..atomic import atomic_path, write_text_atomic

__all__ = ["write_study", "render_surface_png", "bar_png", "heatmap_png", "profile_png", "export_gifti",
           "export_nifti"]

MAX_SURFACE_FIGURES = 3   # maps drawn in the report (the first ones of a study); every map is exported
VIEWS = (("left", "lateral"), ("left", "medial"), ("right", "lateral"), ("right", "medial"))


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _png(fig, tight: bool = True) -> bytes:
    plt = _plt()
    buf = io.BytesIO()
    # a tight bounding box draws the figure twice: surface views (tens of thousands of triangles) skip it
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight" if tight else None, facecolor="white")
    plt.close(fig)
    return buf.getvalue()


# ------------------------------------------------------------------------------ surface maps
def _surface(space: str):
    from ..io.surfaces import fsaverage5_sulc, load_surface

    surf = load_surface(space, "inflated" if space == "fsaverage5" else None)
    sulc = fsaverage5_sulc() if space == "fsaverage5" else None
    return surf, sulc


def _draw_hemi(ax, coords, faces, colors, hemi: str, side: str) -> None:
    from matplotlib.collections import PolyCollection

    outward = -1.0 if hemi == "left" else 1.0
    if side == "medial":
        outward = -outward
    # view along x: screen coordinates (y or -y, z); depth along the view direction
    sx = -coords[:, 1] * outward      # anterior to the right on a left-lateral view... mirrored for the other side
    sy = coords[:, 2]
    depth = coords[:, 0] * outward
    tri = faces
    v0, v1, v2 = coords[tri[:, 0]], coords[tri[:, 1]], coords[tri[:, 2]]
    normal = np.cross(v1 - v0, v2 - v0)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-12
    facing = normal[:, 0] * outward
    keep = facing > -0.05
    order = np.argsort(depth[tri].mean(1)[keep])
    tri_k = tri[keep][order]
    shade = 0.55 + 0.45 * np.clip(facing[keep][order], 0, 1)
    face_rgb = colors[tri_k].mean(1) * shade[:, None]
    polys = np.stack([np.c_[sx[tri_k[:, j]], sy[tri_k[:, j]]] for j in range(3)], axis=1)
    ax.add_collection(PolyCollection(polys, facecolors=np.clip(face_rgb, 0, 1), edgecolors="none",
                                     antialiaseds=False), autolim=False)   # limits set below
    ax.set_xlim(sx.min() - 2, sx.max() + 2)
    ax.set_ylim(sy.min() - 2, sy.max() + 2)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(f"{hemi} {side}", fontsize=8)


def map_colors(values: np.ndarray, vmin: float, vmax: float, cmap: str, threshold: Optional[float],
               sulc: Optional[np.ndarray]) -> np.ndarray:
    """(n, 3) RGB in [0, 1]: the colour map where |value| >= threshold, grey cortex elsewhere."""
    plt = _plt()
    v = np.asarray(values, dtype=np.float64)
    n = v.size
    grey = np.where(np.asarray(sulc) > 0, 0.55, 0.8) if sulc is not None and len(sulc) == n else np.full(n, 0.72)
    rgb = np.repeat(grey[:, None], 3, axis=1)
    show = np.isfinite(v)
    if threshold is not None:
        show &= np.abs(v) >= threshold
    if show.any():
        norm = (v[show] - vmin) / max(vmax - vmin, 1e-12)
        rgb[show] = plt.get_cmap(cmap)(np.clip(norm, 0, 1))[:, :3]
    return rgb


def render_surface_png(values_vertices: np.ndarray, space: str, title: str, signed: bool = True,
                       categorical: bool = False, labels: Optional[Sequence[str]] = None,
                       threshold: Optional[float] = None) -> bytes:
    """Four views (left/right x lateral/medial) of a per-vertex map with its colour bar, as PNG."""
    plt = _plt()
    surf, sulc = _surface(space)
    v = np.asarray(values_vertices, dtype=np.float64)
    finite = v[np.isfinite(v)]
    if categorical:
        n_cat = max(len(labels or []), int(np.nanmax(finite)) + 1 if finite.size else 1)
        vmin, vmax, cmap = -0.5, n_cat - 0.5, "viridis"
        thr = None
    else:
        m = float(np.percentile(np.abs(finite), 99)) if finite.size else 1.0
        m = m if m > 0 else 1.0
        if signed:
            vmin, vmax, cmap = -m, m, "RdBu_r"
        else:
            vmin, vmax, cmap = 0.0, m, "hot"
        thr = threshold if threshold is not None else 0.1 * m
    colors = map_colors(v, vmin, vmax, cmap, thr, sulc)
    fig, axes = plt.subplots(1, 4, figsize=(11, 2.6))
    fig.subplots_adjust(left=0.01, right=0.93, bottom=0.02, top=0.84, wspace=0.02)
    n_left = surf.left.n_vertices
    for ax, (hemi, side) in zip(axes, VIEWS):
        h = surf.left if hemi == "left" else surf.right
        c = colors[:n_left] if hemi == "left" else colors[n_left:]
        _draw_hemi(ax, np.asarray(h.coords, float), np.asarray(h.faces), c, hemi, side)
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(vmin, vmax))
    cb = fig.colorbar(sm, ax=axes, fraction=0.02, pad=0.01)
    if categorical and labels:
        cb.set_ticks(range(len(labels)))
        cb.set_ticklabels(list(labels), fontsize=6)
    fig.suptitle(title, fontsize=10)
    return _png(fig, tight=False)


# ------------------------------------------------------------------------------ charts
def bar_png(table, value: str, title: str, low: str = "ci_low", high: str = "ci_high", q: Optional[str] = None,
            n_max: int = 20, alpha: float = 0.05, ylabel: str = "") -> bytes:
    """Horizontal bars of ``table[value]`` per region with interval whiskers (top ``n_max`` by |value|)."""
    plt = _plt()
    t = table.copy()
    t = t[np.isfinite(t[value].astype(float))]
    t = t.iloc[np.argsort(-np.abs(t[value].to_numpy(float)), kind="stable")[:n_max]][::-1]
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(t) + 1.2))
    vals = t[value].to_numpy(float)
    err = None
    if low in t and high in t:
        lo, hi = t[low].to_numpy(float), t[high].to_numpy(float)
        err = np.vstack([np.clip(vals - lo, 0, None), np.clip(hi - vals, 0, None)])
        err = np.nan_to_num(err)
    colors = ["#c0392b" if v > 0 else "#2e6da4" for v in vals]
    if q is not None and q in t:
        colors = [c if qq <= alpha else "#bbbbbb" for c, qq in zip(colors, t[q].to_numpy(float))]
    ax.barh(range(len(t)), vals, xerr=err, color=colors, ecolor="#333333", capsize=2)
    ax.set_yticks(range(len(t)))
    ax.set_yticklabels([str(r) for r in t["region"]], fontsize=7)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel(ylabel or value)
    ax.set_title(title, fontsize=10)
    return _png(fig)


def heatmap_png(layer_region, title: str, n_max: int = 25, signed: bool = True, label: str = "") -> bytes:
    """Layer x region heat map (regions with the largest |value| first)."""
    plt = _plt()
    lr = layer_region.copy()
    score = np.nanmax(np.abs(lr.to_numpy(float)), axis=0)
    keep = np.argsort(-np.nan_to_num(score, nan=-1))[:n_max]
    lr = lr.iloc[:, keep]
    a = lr.to_numpy(float)
    m = float(np.nanmax(np.abs(a))) if np.isfinite(a).any() else 1.0
    fig, ax = plt.subplots(figsize=(0.32 * lr.shape[1] + 2.5, 0.35 * lr.shape[0] + 1.8))
    im = ax.imshow(a, aspect="auto", cmap="RdBu_r" if signed else "viridis",
                   vmin=-m if signed else np.nanmin(a), vmax=m if signed else np.nanmax(a))
    ax.set_yticks(range(lr.shape[0]))
    ax.set_yticklabels([str(x) for x in lr.index], fontsize=7)
    ax.set_xticks(range(lr.shape[1]))
    ax.set_xticklabels([str(x) for x in lr.columns], rotation=90, fontsize=6)
    fig.colorbar(im, ax=ax, label=label)
    ax.set_title(title, fontsize=10)
    return _png(fig)


def profile_png(layer_region, regions: Sequence[str], title: str, ylabel: str, low=None, high=None) -> bytes:
    """Line plot of value per layer for a few regions (with intervals when given)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    x = np.arange(layer_region.shape[0])
    for r in regions:
        if r not in layer_region.columns:
            continue
        y = layer_region[r].to_numpy(float)
        ax.plot(x, y, marker="o", label=str(r))
        if low is not None and high is not None and r in low.columns:
            ax.fill_between(x, low[r].to_numpy(float), high[r].to_numpy(float), alpha=0.15)
    ax.set_xticks(x)
    ax.set_xticklabels([str(i) for i in layer_region.index], rotation=45, fontsize=7)
    ax.axhline(0, color="black", lw=0.6)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=10)
    return _png(fig)


# ------------------------------------------------------------------------------ files
def export_gifti(values_vertices: np.ndarray, n_left: int, path_stem: Path) -> List[Path]:
    """``<stem>.lh.func.gii`` and ``<stem>.rh.func.gii`` (float32), written atomically."""
    import nibabel as nib

    v = np.asarray(values_vertices, dtype=np.float32)
    out = []
    for hemi, part in (("lh", v[:n_left]), ("rh", v[n_left:])):
        img = nib.gifti.GiftiImage(darrays=[nib.gifti.GiftiDataArray(
            part, intent="NIFTI_INTENT_ESTIMATE", datatype="NIFTI_TYPE_FLOAT32")])
        path = Path(f"{path_stem}.{hemi}.func.gii")
        with atomic_path(path) as tmp:
            nib.save(img, str(tmp))
        out.append(path)
    return out


def export_nifti(values_voxels: np.ndarray, grid, path_stem: Path) -> Path:
    """``<stem>.nii.gz``: per-voxel values put back on the run's grid (``grid``: a
    :class:`~engine.studies.common.VolumeGrid`; its affine, NaN outside the mask), float32, atomic."""
    import nibabel as nib

    vol = grid.to_volume(values_voxels)
    img = nib.Nifti1Image(vol, np.asarray(grid.affine, dtype=np.float64))
    img.header.set_data_dtype(np.float32)
    img.header.set_xyzt_units("mm")
    path = Path(f"{path_stem}.nii.gz")
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return path


def _write_csv(table, path: Path, index: bool = False) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=index, float_format="%.6g")


def _b64(png: bytes) -> str:
    return base64.b64encode(png).decode("ascii")


def _table_html(table, max_rows: int = 30, index: bool = False) -> str:
    t = table.head(max_rows)
    return t.to_html(index=index, float_format=lambda x: f"{x:.4g}", border=0, classes="tbl", na_rep="–")


def write_study(result, data, figures_extra: Optional[List[Dict[str, Any]]] = None) -> Path:
    """Write maps, tables, ``study.json``, ``study.npz`` and ``report.html`` of ``result``.

    ``result.map_meta[name]`` may say ``signed`` (bool), ``categorical`` (bool), ``labels``
    (category names), ``unit`` and ``threshold``. Returns the report's path.
    """
    out = Path(result.out_dir)
    (out / "maps").mkdir(parents=True, exist_ok=True)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    figures: List[Dict[str, Any]] = []

    # maps: per-target values; on the surface when the data map onto one
    n_left = None
    if data.surface_space is not None:
        from ..io.surfaces import N_VERTICES_PER_HEMI

        n_left = N_VERTICES_PER_HEMI[data.surface_space]
    drawn = 0
    for name, values in result.maps.items():
        meta = result.map_meta.setdefault(name, {})
        files = []
        npy = out / "maps" / f"{name}.npy"
        with atomic_path(npy) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, np.asarray(values, dtype=np.float32))
        files.append(f"maps/{name}.npy")
        vert = data.to_vertices(values)
        if vert is not None:
            result.vertex_maps[name] = vert
            for p in export_gifti(vert, n_left, out / "maps" / name):
                files.append(f"maps/{p.name}")
            if meta.get("figure", drawn < MAX_SURFACE_FIGURES):   # the main maps are drawn; all are exported
                png = render_surface_png(vert, data.surface_space, meta.get("label", name),
                                         signed=meta.get("signed", True), categorical=meta.get("categorical", False),
                                         labels=meta.get("labels"), threshold=meta.get("threshold"))
                figures.append({"title": meta.get("label", name), "png": png, "kind": "map"})
                drawn += 1
        elif getattr(data, "volume", None) is not None:   # NIfTI runs: maps back in the run's volume
            files.append(f"maps/{export_nifti(values, data.volume, out / 'maps' / name).name}")
        meta["files"] = files

    # tables
    if result.region_table is not None:
        result.tables.setdefault("regions", result.region_table)
    if result.layer_region is not None:
        result.tables.setdefault("layer_region", result.layer_region.reset_index())
    for name, table in result.tables.items():
        _write_csv(table, out / "tables" / f"{name}.csv")

    # charts
    if result.region_table is not None and len(result.region_table):
        rt = result.region_table
        q = "q_value" if "q_value" in rt else None
        figures.append({"title": f"Regions: {result.value_column} with {int(result.settings.get('ci', 0.95) * 100)}% "
                                 f"intervals", "kind": "bars",
                        "png": bar_png(rt, result.value_column, result.title, q=q,
                                       alpha=result.settings.get("alpha", 0.05),
                                       ylabel=result.map_meta.get("_bars", {}).get("label", result.value_column))})
    for extra in figures_extra or []:
        figures.append(extra)

    # study.json / study.npz (reopened by StudyResult.load and the window)
    arrays = {f"map_{k}": np.asarray(v, np.float32) for k, v in result.maps.items()}
    arrays.update({f"vtx_{k}": np.asarray(v, np.float32) for k, v in result.vertex_maps.items()})
    with atomic_path(out / "study.npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    result.report = out / "report.html"
    write_text_atomic(out / "study.json", json.dumps(result.summary(), indent=2, default=str) + "\n")

    # report.html
    e = html.escape
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{e(result.title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1150px;margin:20px auto;color:#222}"
             "img{max-width:100%;border:1px solid #ddd;margin:6px 0}.tbl{border-collapse:collapse;font-size:12px}"
             ".tbl td,.tbl th{padding:2px 6px;border-bottom:1px solid #eee;text-align:right}"
             "pre{background:#f6f6f6;padding:8px;font-size:11px;overflow:auto}</style></head><body>",
             f"<h1>{e(result.title)}</h1>",
             f"<p>Workflow <b>{e(result.workflow)}</b> on project <code>{e(str(data.project_file))}</code>, "
             f"{len(data.brain)} run(s) in space <b>{e(data.space)}</b>, {data.n_targets} targets, TR "
             f"{data.tr_s:g} s{' (runs of each episode averaged)' if data.pooled else ''}.</p>",
             "<h2>Findings</h2><ul>" + "".join(f"<li>{e(f)}</li>" for f in result.findings) + "</ul>"]
    for fig in figures:
        parts.append(f"<h3>{e(fig['title'])}</h3><img alt='{e(fig['title'])}' "
                     f"src='data:image/png;base64,{_b64(fig['png'])}'/>")
    if getattr(result, "truth_check", None):
        parts.append("<h2>Planted truth (demo only, read after the analysis)</h2><pre>"
                     + e(json.dumps(result.truth_check, indent=2, default=str)) + "</pre>")
    if getattr(result, "qc_html", ""):
        parts.append(result.qc_html)       # engine.qc.report.to_html: a <section> of its own
    parts.append("<h2>Tables</h2>")
    for name, table in result.tables.items():
        parts.append(f"<h3>{e(name)} (<a href='tables/{e(name)}.csv'>CSV</a>)</h3>")
        parts.append(_table_html(table))
    parts.append("<h2>Maps</h2><ul>")
    for name, meta in result.map_meta.items():
        if name.startswith("_"):
            continue
        links = ", ".join(f"<a href='{e(f)}'>{e(Path(f).name)}</a>" for f in meta.get("files", []))
        parts.append(f"<li>{e(meta.get('label', name))}: {links}</li>")
    parts.append("</ul>")
    parts.append("<h2>Settings</h2><pre>" + e(json.dumps(result.settings, indent=2, default=str)) + "</pre>")
    parts.append("<h2>Time</h2><pre>" + e(json.dumps(result.timings_s, indent=2)) + "</pre>")
    parts.append("<h2>Library versions</h2><pre>" + e(json.dumps(result.versions, indent=2)) + "</pre>")
    parts.append("</body></html>")
    write_text_atomic(result.report, "\n".join(parts))
    return result.report
