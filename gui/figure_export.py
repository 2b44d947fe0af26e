"""Figures for papers and talks: a high-resolution image of chosen cortex views, and a movie
of measured or predicted activity with the stimulus frame beside it.

Both render with an off-screen PyVista plotter of their own (any size, whatever the window
shows) and the same colours as the cortex pane (:func:`gui.colormaps.map_rgb`). Files are
written atomically (a temporary file, then ``os.replace``). The movie is H.264 in MP4
through PyAV.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, Optional, Sequence, Tuple

import numpy as np

from engine.errors import ConfigError, DataError

from .colormaps import MapStyle, cortex_background, map_rgb
from .cortex_controls import VIEW_DIRECTIONS

BACKGROUND = "#ffffff"


class _ViewsRenderer:
    """An off-screen plotter with one viewport per (hemisphere, view), colours written in place."""

    def __init__(self, surface, views: Sequence[str], hemis: Sequence[str], panel_size: Tuple[int, int],
                 background: str = BACKGROUND) -> None:
        import pyvista as pv

        from .cortex_view import CortexView

        bad = [v for v in views if v not in VIEW_DIRECTIONS]
        if bad or not views:
            raise ConfigError(f"figure views: expected some of {list(VIEW_DIRECTIONS)}, found {list(views)}")
        bad = [h for h in hemis if h not in ("left", "right")]
        if bad or not hemis:
            raise ConfigError(f"figure hemispheres: expected 'left' and/or 'right', found {list(hemis)}")
        self.surface = surface
        self.n_left = surface.n_left
        self.background = cortex_background(surface.n_vertices, surface.sulc)
        w, h = int(panel_size[0]), int(panel_size[1])
        self.plotter = pv.Plotter(off_screen=True, shape=(len(hemis), len(views)), border=False,
                                  window_size=[w * len(views), h * len(hemis)])
        self.plotter.set_background(background)
        self.datasets = []
        for row, hemi in enumerate(hemis):
            hh = surface.left if hemi == "left" else surface.right
            faces = np.hstack([np.full((hh.faces.shape[0], 1), 3), hh.faces]).astype(np.int64).ravel()
            mesh = pv.PolyData(np.asarray(hh.coords, dtype=np.float32), faces)
            mesh.point_data["rgb"] = np.zeros((hh.n_vertices, 3), np.uint8)
            mesh.compute_normals(inplace=True, cell_normals=False, split_vertices=False)
            self.datasets.append((hemi, mesh))
            for col, view in enumerate(views):
                self.plotter.subplot(row, col)
                actor = self.plotter.add_mesh(mesh, scalars="rgb", rgb=True, show_scalar_bar=False,
                                              reset_camera=False)
                actor.prop.interpolation = "gouraud"
                CortexView._place_camera(self.plotter.renderer, mesh, hemi, view)

    def paint(self, values: np.ndarray, style: MapStyle) -> np.ndarray:
        """Colour the meshes with ``values`` and return the image (H, W, 3) uint8."""
        values = np.asarray(values, dtype=np.float32).ravel()
        if values.size != self.surface.n_vertices:
            raise DataError(f"figure: expected a map of {self.surface.n_vertices} vertices, found {values.size}")
        rgb = map_rgb(values, style, self.background)
        for hemi, mesh in self.datasets:
            mesh.point_data["rgb"][:] = rgb[: self.n_left] if hemi == "left" else rgb[self.n_left:]
            mesh.point_data["rgb"] = mesh.point_data["rgb"]
        self.plotter.render()
        return np.ascontiguousarray(self.plotter.screenshot(return_img=True)[..., :3])

    def close(self) -> None:
        self.plotter.close()
        self.datasets = []


def colorbar_image(style: MapStyle, title: str, width: int, height: int = 60) -> np.ndarray:
    """The cortex pane's colour bar painted at ``width`` x ``height``, (H, W, 3) uint8."""
    from PySide6.QtGui import QImage

    from .cortex_view import ColorBar

    bar = ColorBar()
    bar.resize(int(width), int(height))
    bar.set_style(style, title)
    img = bar.grab().toImage().convertToFormat(QImage.Format_RGB888)
    out = np.frombuffer(img.constBits(), np.uint8).reshape(img.height(), img.bytesPerLine())[:, : img.width() * 3]
    bar.deleteLater()
    return out.reshape(img.height(), img.width(), 3).copy()


def _atomic_write(path: Path, write: Callable[[str], None]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=path.suffix, dir=str(path.parent))
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def export_views(surface, values: np.ndarray, style: MapStyle, path, views: Sequence[str] = ("lateral", "medial"),
                 hemis: Sequence[str] = ("left", "right"), panel_size: Tuple[int, int] = (1200, 900),
                 title: str = "", colorbar: bool = True) -> Path:
    """Write a PNG of the map on the chosen views, one row per hemisphere, one column per view.

    Parameters
    ----------
    surface : engine.io.surfaces.Surface
    values : (n_vertices,) float
    style : MapStyle
        Colours as on screen (e.g. ``cortex_view.current_style``).
    views : names of :data:`gui.cortex_controls.VIEW_DIRECTIONS`
    panel_size : (width, height) in pixels of each view (the figure is as large as the panels)
    colorbar : add the colour bar (with ``title``) under the views
    """
    from PIL import Image

    r = _ViewsRenderer(surface, views, hemis, panel_size)
    try:
        img = r.paint(values, style)
    finally:
        r.close()
    if colorbar:
        bar = colorbar_image(style, title, img.shape[1], height=max(60, img.shape[0] // 12))
        img = np.concatenate([img, bar], axis=0)
    return _atomic_write(Path(path), lambda tmp: Image.fromarray(img).save(tmp, format="PNG"))


def export_movie(session, run: str, layer: str, start_s: float, stop_s: float, path, fps: float = 10.0,
                 style: Optional[MapStyle] = None, panel_size: Tuple[int, int] = (480, 360),
                 progress: Optional[Callable[[int, int], None]] = None,
                 views: Sequence[str] = ("lateral",)) -> Tuple[Path, int]:
    """Write an MP4 of ``layer`` ("measured" or "predicted") of ``run`` from ``start_s`` to
    ``stop_s`` (episode seconds): the left (top) and right (bottom) cortex seen from ``views``
    (one column each), the stimulus frame beside it, ``fps`` frames per second of episode time
    (the cortex changes once per TR).

    Returns (path, number of frames written).
    """
    import av

    if layer not in ("measured", "predicted"):
        raise ConfigError(f"movie layer: expected 'measured' or 'predicted', found {layer!r}")
    if session.surface is None:
        raise DataError("movie: expected a project with a surface, found none")
    tl = session.timeline(run)
    stop_s = min(float(stop_s), float(tl.duration_s))
    if not stop_s > start_s >= 0:
        raise ConfigError(f"movie time range: expected 0 <= start < stop <= {tl.duration_s:.2f} s, "
                          f"found {start_s}..{stop_s}")
    if style is None:
        rows = session.maps.map_rows(run, layer) if hasattr(session, "maps") else None
        if rows is None:
            raise DataError(f"movie: expected {layer} rows for run {run}, found none (no prediction for this run)")
        style = MapStyle.for_values(np.asarray(rows[:: max(len(rows) // 20, 1)]).ravel(), threshold_fraction=0.3)
    times = np.arange(float(start_s), stop_s, 1.0 / float(fps))
    renderer = _ViewsRenderer(session.surface, list(views), ["left", "right"], panel_size, background="#1e2227")
    n_written = 0

    def write(tmp: str) -> None:
        nonlocal n_written
        container = av.open(tmp, mode="w", format="mp4")
        stream = None
        shown_tr, brain = None, None
        try:
            for i, t in enumerate(times):
                k = tl.tr_index(t)
                if k != shown_tr:
                    brain = renderer.paint(session.map_at(run, layer, k), style)   # 2 panels stacked
                    shown_tr = k
                frame = session.frame_at(t)
                h = brain.shape[0]
                if frame is None:
                    side = np.zeros((h, h * 4 // 3, 3), np.uint8)
                else:
                    from PIL import Image

                    fw = max(2, int(round(frame.shape[1] * h / frame.shape[0])))
                    side = np.asarray(Image.fromarray(np.ascontiguousarray(frame[..., :3])).resize((fw, h)))
                img = np.concatenate([side, brain], axis=1)
                img = img[: img.shape[0] // 2 * 2, : img.shape[1] // 2 * 2]   # H.264 wants even sizes
                if stream is None:
                    from fractions import Fraction

                    stream = container.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4",
                                                  rate=Fraction(fps).limit_denominator(1000))
                    stream.width, stream.height = img.shape[1], img.shape[0]
                    stream.pix_fmt = "yuv420p"
                for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
                    container.mux(packet)
                n_written += 1
                if progress is not None:
                    progress(i + 1, len(times))
            if stream is not None:
                for packet in stream.encode():
                    container.mux(packet)
        finally:
            container.close()

    try:
        out = _atomic_write(Path(path), write)
    finally:
        renderer.close()
    return out, n_written
