"""The 3D cortex pane: fsaverage inflated hemispheres coloured by a brain map.

As in MNE's ``Brain`` (``mne/viz/_3d_overlay.py``): each hemisphere's mesh is added once;
a new map only writes colours into the existing ``point_data`` array and renders once.
Four viewports show the left/right hemisphere from the lateral and medial side.

Two hosts for the same PyVista plotter:

- ``QtInteractor`` (pyvistaqt) when an X server is there (platform ``xcb``): mouse
  rotation and zoom come from VTK;
- an off-screen ``pv.Plotter`` rendered into an image in a ``QLabel`` when Qt runs on
  the ``offscreen`` platform (tests, headless machines): drag rotates, wheel zooms.

A click (press and release without moving) picks a vertex in both hosts and selects it
in the :class:`~engine.state.AppState`. VTK is touched only on the GUI thread.

Speed on software OpenGL (llvmpipe under Xvfb or a remote desktop), where a TR step is
mostly rasterisation: one render per update (on the QtInteractor a paint request, whose
``paintGL`` renders once), a headlight instead of pyvista's five-light kit, computed per vertex
into each viewport's colours (``_shade_viewport``, redone when its camera turns) so that the
shader does no lighting, back faces of closed surfaces culled, and the colour bar repainted
only when its scale changes. ``bench/cortex.py`` times it.

Atlas region names (cortex controls, "region names"): per viewport, the largest regions
whose centre faces its camera and fits inside it, plus the selected region; VTK's label
placer leaves out a name that would overlap a larger region's.
"""

from __future__ import annotations

import os
import weakref
from typing import List, Optional, Tuple

import numpy as np
from PySide6.QtCore import QEvent, QObject, QPoint, QRectF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont, QGuiApplication, QImage, QPainter, QPixmap
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget)

from engine.state import LAYERS, AppState, Event

from .colormaps import MapStyle, cortex_background, map_rgb, value_colors
from .cortex_controls import VIEW_DIRECTIONS, DisplaySettings, opposite_view, styled
from .widgets import ElidedLabel

LAYER_TITLES = {"score": "Encoding score (Pearson r, held-out)",
                "measured": "Measured response at current TR",
                "predicted": "Predicted response at current TR"}
VIEWS = (("left", "lateral", (0, 0)), ("right", "lateral", (0, 1)),
         ("left", "medial", (1, 0)), ("right", "medial", (1, 1)))
BACKGROUND = "#1e2227"
OUTLINE_RGB = (57, 255, 20)   # selected vertex / region border
ATLAS_BORDER_RGB = (40, 40, 40)   # borders between the atlas's regions

# Every plotter this module made, to check that none survives its view (MNE's brain_gc).
_LIVE_PLOTTERS: "weakref.WeakSet" = weakref.WeakSet()


def live_plotter_count() -> int:
    """Plotters made by cortex views and not yet closed."""
    return sum(1 for p in list(_LIVE_PLOTTERS) if getattr(p, "_alignscope_open", False))


def _set_corner_text(actor, corner: int, text: str) -> None:
    """Change the text of what ``plotter.add_text`` gave (a corner annotation or a text actor)."""
    if hasattr(actor, "SetText"):
        actor.SetText(corner, text)
    elif hasattr(actor, "SetInput"):
        actor.SetInput(text)


def light_for_speed(renderer) -> None:
    """One headlight instead of pyvista's five-light kit.

    Software OpenGL (llvmpipe, Xvfb, remote desktops) shades every fragment once per light:
    the kit's four extra lights cost about as much as the rest of a frame. A light at the
    camera shows the inflated cortex's shape as well (shading follows the view as it turns).
    """
    import vtk

    renderer.RemoveAllLights()
    renderer.AutomaticLightCreationOff()
    light = vtk.vtkLight()
    light.SetLightTypeToHeadlight()
    renderer.AddLight(light)


def style_mesh_actor(actor, closed: bool) -> None:
    """Gouraud shading, a little ambient light (no pitch-black rims under a single light) and,
    for a closed surface, back faces culled: they are hidden behind the front ones anyway,
    and skipping them halves what a software rasteriser shades. An open mesh (a flat map)
    keeps both sides."""
    prop = actor.GetProperty()
    prop.SetInterpolationToGouraud()
    prop.SetAmbient(0.12)   # with diffuse 0.72: as bright on average as under the light kit
    prop.SetDiffuse(0.72)
    prop.SetBackfaceCulling(bool(closed))


def short_region_name(name: str) -> str:
    """A region's name as a label on the cortex: no atlas prefix, no hemisphere (each viewport
    shows one), spaces for underscores: ``7Networks_LH_Vis_1`` -> ``Vis 1``."""
    parts = [p for p in str(name).replace("-", "_").split("_") if p]
    if parts and parts[0].lower().endswith("networks"):
        parts = parts[1:]
    parts = [p for p in parts if p.upper() not in ("LH", "RH", "L", "R", "LEFT", "RIGHT")]
    return " ".join(parts) or str(name)


def _request_paint(plotter) -> None:
    """One render of a QtInteractor, done by its next paint (see :meth:`CortexView.render`)."""
    if not getattr(plotter, "_rendered", False) or not plotter.isVisible():
        plotter.render()          # first render (pyvista's bookkeeping) or a hidden widget
    else:
        plotter.update()


def can_host_interactor() -> bool:
    """True when Qt draws to a real window system that VTK's OpenGL window can share (X11)."""
    platform = QGuiApplication.platformName()
    return platform == "xcb" and bool(os.environ.get("DISPLAY"))


class ColorBar(QWidget):
    """A horizontal colour bar painted with the same colours as the cortex."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.style_: Optional[MapStyle] = None
        self.title = ""
        self.setMinimumHeight(46)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)

    def set_style(self, style: Optional[MapStyle], title: str) -> None:
        """Show ``style``'s colours (None: the title only, e.g. nothing to colour)."""
        if style == self.style_ and title == self.title:
            return                # playing: the same scale every TR, nothing to repaint
        self.style_, self.title = style, title
        self.update()

    def paintEvent(self, _event) -> None:  # noqa: N802 - Qt name
        p = QPainter(self)
        p.setRenderHint(QPainter.Antialiasing, False)
        w = self.width()
        p.fillRect(self.rect(), QColor(BACKGROUND))
        if self.style_ is None:
            p.setPen(QColor("#aab2bc"))
            p.drawText(self.rect(), Qt.AlignCenter, self.title)
            p.end()
            return
        s = self.style_
        margin = 40
        bar = QRectF(margin, 20, max(w - 2 * margin, 10), 10)
        lo = s.low if s.low < s.vmax else s.vmax - 1.0
        n = max(int(bar.width()), 2)
        values = np.linspace(lo, s.vmax, n)
        colors = value_colors(values, s)
        bg = (np.abs(values) if s.signed else values) < s.threshold
        colors[bg] = 0.72
        img = (np.clip(colors, 0, 1) * 255).astype(np.uint8)[None].repeat(int(bar.height()), axis=0)
        img = np.ascontiguousarray(img)
        qimg = QImage(img.data, img.shape[1], img.shape[0], img.shape[1] * 3, QImage.Format_RGB888).copy()
        p.drawImage(bar, qimg)
        p.setPen(QColor("#8a929c"))
        p.drawRect(bar)
        f = QFont(self.font())
        f.setPointSizeF(max(f.pointSizeF() - 1, 7))
        p.setFont(f)
        p.setPen(QColor("#d7dbe0"))
        p.drawText(QRectF(0, 0, w, 18), Qt.AlignHCenter | Qt.AlignVCenter, self.title)
        ticks = ([lo, -s.threshold, s.threshold, s.vmax] if s.signed and s.threshold > 0
                 else [lo, s.threshold, s.vmax] if s.threshold > lo else [lo, s.vmax])
        last_right = -1e9
        for v in ticks:
            x = bar.left() + (v - lo) / (s.vmax - lo) * bar.width()
            p.drawLine(int(x), int(bar.bottom()), int(x), int(bar.bottom()) + 3)
            text = f"{v:.2g}"
            r = QRectF(x - 30, bar.bottom() + 3, 60, 14)
            if r.left() > last_right:
                p.drawText(r, Qt.AlignHCenter | Qt.AlignTop, text)
                last_right = r.right()
        p.end()


class _ImageHost(QLabel):
    """Shows the off-screen plotter's image; forwards mouse input to the cortex view."""

    def __init__(self, view: "CortexView") -> None:
        super().__init__()
        self._view = view
        self.setAlignment(Qt.AlignCenter)
        self.setMinimumSize(200, 150)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.setStyleSheet(f"background: {BACKGROUND};")
        self.setMouseTracking(True)

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(640, 480)

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - a QLabel's would be its pixmap's size: the pane could not shrink
        return QSize(200, 150)

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._view._schedule_resize()

    def mousePressEvent(self, e) -> None:  # noqa: N802
        self._view._press(e.position().toPoint(), e.button())

    def mouseMoveEvent(self, e) -> None:  # noqa: N802
        if e.buttons():
            self._view._drag(e.position().toPoint())
        else:
            self._view._hover(e.position().toPoint())

    def mouseReleaseEvent(self, e) -> None:  # noqa: N802
        self._view._release(e.position().toPoint(), e.button())

    def wheelEvent(self, e) -> None:  # noqa: N802
        self._view._zoom_at(e.position().toPoint(), 1.1 if e.angleDelta().y() > 0 else 1 / 1.1)


class _ClickFilter(QObject):
    """Tells a click from a drag on the QtInteractor without disturbing VTK's own handling."""

    def __init__(self, view: "CortexView") -> None:
        super().__init__()
        self._view = view
        self._pressed: Optional[QPoint] = None

    def eventFilter(self, obj, e) -> bool:  # noqa: N802
        if e.type() == QEvent.MouseButtonPress and e.button() == Qt.LeftButton:
            self._pressed = e.position().toPoint()
        elif e.type() == QEvent.MouseButtonRelease and e.button() == Qt.LeftButton and self._pressed is not None:
            pos = e.position().toPoint()
            if (pos - self._pressed).manhattanLength() <= 3:
                QTimer.singleShot(0, lambda p=pos: self._view.pick_at(p.x(), p.y(), select=True))
            self._pressed = None
        elif e.type() == QEvent.MouseMove and not e.buttons():
            self._view._hover(e.position().toPoint())
        return False


class _OffscreenResize:
    """An off-screen plotter drawn into ``self.host`` follows the host's size (debounced by
    ``self._resize_timer``); shared by the single and the paired cortex views."""

    def _schedule_resize(self) -> None:
        if not self.interactive and self.plotter is not None:
            self._resize_timer.start()

    def _apply_resize(self) -> None:
        if self.plotter is None or self.interactive:
            return
        w, h = max(self.host.width(), 64), max(self.host.height(), 48)
        if tuple(self.plotter.window_size) != (w, h):
            self.plotter.window_size = [w, h]
            self.render()


class CortexView(_OffscreenResize, QWidget):
    """fsaverage inflated cortex with the current map; a click selects a vertex.

    Parameters
    ----------
    state : AppState
    session : ProjectSession or None
    interactive : bool or None
        Host the plotter in a pyvistaqt ``QtInteractor`` (True), render off-screen into
        an image (False), or decide from the Qt platform (None).
    """

    vertex_picked = Signal(int)
    rendered = Signal()
    hovered = Signal(str)   # what is under the mouse ("" when nothing)

    def __init__(self, state: AppState, session=None, interactive: Optional[bool] = None, parent=None) -> None:
        super().__init__(parent)
        self.state = state
        self.session = None
        self.interactive = can_host_interactor() if interactive is None else bool(interactive)
        self.fallback_reason: Optional[str] = None   # why the interactor could not be used
        self.plotter = None
        self._datasets: List[Tuple[str, object]] = []   # (hemi, the mapper's dataset)
        self._markers: List[Tuple[str, object]] = []    # (hemi, actor)
        self._mesh_actors: List[object] = []             # the cortex actor of each viewport
        self._shading: List[dict] = []   # per viewport: its dataset, camera direction and per-vertex shade
        self._renderers: List[Tuple[str, str, object]] = []  # (hemi, side, renderer)
        self._background = None
        self._shown_key = None       # (layer, run, tr) of the map on screen
        self.current_values: Optional[np.ndarray] = None  # n_vertices, the map on screen
        self.outline_vertices: np.ndarray = np.zeros(0, dtype=np.int64)  # region border drawn on top
        self.current_style: Optional[MapStyle] = None
        self.render_count = 0
        self._style_cache = {}       # (run, layer) -> MapStyle: one colour scale per run while playing
        self.settings = DisplaySettings()   # the user's colour map, range, threshold, surface, view...
        self.base_style: Optional[MapStyle] = None   # the map's own style before the user's settings
        self.map_title = ""
        self.external_map = False    # a map given by another pane (QC, studies), not the layer's
        self.hidden_by_q: Optional[np.ndarray] = None   # n_vertices bool: q above the chosen FDR level
        self.atlas_border: np.ndarray = np.zeros(0, dtype=np.int64)
        self._labels: List[object] = []  # the corner text of each viewport
        # atlas region labels: per region (label id, hemisphere, anchor vertex, size, text) and,
        # per viewport, the label points (vtkPolyData), their 2D actor and the camera they were placed for
        self._region_info: Optional[dict] = None
        self._region_label_layers: List[dict] = []
        self.region_labels_shown: List[List[Tuple[str, int]]] = []   # per viewport: (text, global vertex)
        self._mesh_kind = "inflated"
        self._press_pos: Optional[QPoint] = None
        self._dragging = False
        self._resize_timer = QTimer(self, singleShot=True, interval=60, timeout=self._apply_resize)
        self._hover_pos: Optional[QPoint] = None
        self._hover_timer = QTimer(self, singleShot=True, interval=80, timeout=self._hover_pick)

        self.layer_box = QComboBox()
        for name in LAYERS:
            self.layer_box.addItem(LAYER_TITLES[name].split(" (")[0], name)
        self.layer_box.setToolTip("Which map the cortex shows")
        self.layer_box.currentIndexChanged.connect(self._layer_chosen)
        self.info_label = ElidedLabel("Click the cortex to choose a vertex")   # long text: "…", never wider
        self.info_label.setObjectName("paneHint")
        self.info_label.setMinimumWidth(60)
        self.colorbar = ColorBar()

        top = QHBoxLayout()
        title = QLabel("Cortex")
        title.setObjectName("paneTitle")
        top.addWidget(title)
        top.addSpacing(8)
        top.addWidget(self.layer_box)
        from .cortex_controls import CortexControlsButton

        self.controls_button = CortexControlsButton(self)
        top.addWidget(self.controls_button)
        # the label takes the free space itself (a stretch beside an Ignored-policy label pushed it
        # past the pane's right edge, where its text was cut)
        self.info_label.setAlignment(Qt.AlignRight | Qt.AlignVCenter)
        top.addWidget(self.info_label, 1)
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(6, 6, 6, 6)
        self._layout.setSpacing(4)
        self._layout.addLayout(top)
        self.host: QWidget = QLabel("Open a project to see its brain maps on the cortex")
        self.host.setAlignment(Qt.AlignCenter)
        self.host.setMinimumSize(200, 150)
        self._layout.addWidget(self.host, 1)
        self._layout.addWidget(self.colorbar)

        state.events.time.connect(self._on_time)
        state.events.target.connect(self._on_target)
        state.events.layer.connect(self._on_layer)
        state.events.run.connect(self._on_run)
        if session is not None:
            self.set_session(session)

    # ---- building ---------------------------------------------------------------------
    def _make_plotter(self, size: Tuple[int, int]):
        import pyvista as pv

        if self.interactive:
            try:
                from pyvistaqt import QtInteractor

                plotter = QtInteractor(self, shape=(2, 2), border=False, auto_update=False)
            except Exception as exc:  # noqa: BLE001 - no usable OpenGL on this display: draw off-screen
                self.interactive = False
                self.fallback_reason = f"{type(exc).__name__}: {exc}"
                return self._make_plotter(size)
            self._click_filter = _ClickFilter(self)
            plotter.installEventFilter(self._click_filter)
            host = plotter
        else:
            plotter = pv.Plotter(off_screen=True, shape=(2, 2), border=False, window_size=list(size))
            host = _ImageHost(self)
        plotter.disable_anti_aliasing(all_renderers=True)
        plotter.set_background(BACKGROUND)
        plotter._alignscope_open = True
        _LIVE_PLOTTERS.add(plotter)
        return plotter, host

    def set_session(self, session) -> None:
        """Show ``session``'s surface. Meshes are built once: a session on the same surface
        (another result of the project) only gets new colours."""
        same_mesh = (self.plotter is not None and session is not None and self.session is not None
                     and session.surface is not None and session.surface is self.session.surface)
        if not same_mesh:
            self._close_plotter()
        self.session = session
        self._shown_key = None
        self._style_cache = {}
        self.outline_vertices = np.zeros(0, dtype=np.int64)
        if same_mesh:
            for _, m in self._markers:
                m.SetVisibility(False)
            self.refresh(force=True)
            return
        if session is None or session.surface is None:
            return
        import pyvista as pv

        surface = session.surface
        self._mesh_kind = getattr(surface, "kind", "inflated")
        self._compute_atlas_border()
        size = (max(self.host.width(), 320), max(self.host.height(), 240))
        self.plotter, host = self._make_plotter(size)
        self._layout.replaceWidget(self.host, host)
        self.host.deleteLater()
        self.host = host
        self._background = cortex_background(surface.n_vertices, surface.sulc)
        self._n_left = surface.n_left
        meshes = {}
        for hemi, h in (("left", surface.left), ("right", surface.right)):
            faces = np.hstack([np.full((h.faces.shape[0], 1), 3), h.faces]).astype(np.int64).ravel()
            mesh = pv.PolyData(np.asarray(h.coords, dtype=np.float32), faces)
            mesh.point_data["rgb"] = np.zeros((h.n_vertices, 3), np.uint8)
            mesh.compute_normals(inplace=True, cell_normals=False, split_vertices=False)
            meshes[hemi] = mesh
        radius = 2.5
        for hemi in ("left", "right"):
            self._datasets.append((hemi, meshes[hemi]))   # the map's colours ("rgb"), points, normals
        for hemi, side, (row, col) in VIEWS:
            self.plotter.subplot(row, col)
            # each viewport draws its own copy (same points and triangles) coloured "lit": the map's
            # colours shaded for its camera (see _shade_viewport)
            shown = pv.PolyData()
            shown.SetPoints(meshes[hemi].GetPoints())
            shown.SetPolys(meshes[hemi].GetPolys())
            shown.point_data["lit"] = np.zeros((meshes[hemi].n_points, 3), np.uint8)
            actor = self.plotter.add_mesh(shown, scalars="lit", rgb=True, smooth_shading=False,
                                          show_scalar_bar=False, lighting=False, reset_camera=False)
            style_mesh_actor(actor, closed=self._mesh_kind != "flat")
            actor.GetProperty().LightingOff()          # the shading is in the colours
            actor.GetProperty().SetAmbient(0.0)
            actor.GetProperty().SetDiffuse(1.0)
            self._mesh_actors.append(actor)
            light_for_speed(self.plotter.renderer)
            self._shading.append({"hemi": hemi, "ds": actor.mapper.dataset, "key": None, "shade": None})
            marker = self.plotter.add_mesh(pv.Sphere(radius=radius, theta_resolution=12, phi_resolution=12),
                                           color="#39ff14", reset_camera=False, lighting=False)
            marker.SetVisibility(False)
            marker.SetPickable(False)
            self._markers.append((hemi, marker))
            label = self.plotter.add_text(f"{hemi.capitalize()} {side}", position="upper_left", font_size=7,
                                          color="#c9ced6")
            self._labels.append(label)
            renderer = self.plotter.renderer
            self._renderers.append((hemi, side, renderer))
            self._place_camera(renderer, meshes[hemi], hemi, side)
            self._add_region_label_layer(renderer)
            index = len(self._renderers) - 1
            self._shading[index]["observer"] = renderer.AddObserver(
                "StartEvent", lambda *_a, i=index: self._shade_viewport(i))
        if self.settings.surface != self._mesh_kind:
            self.set_surface(self.settings.surface, render=False)
        if self.settings.view != "lateral":
            self.set_view(self.settings.view, render=False)
        self._on_run(None)

    @staticmethod
    def _place_camera(renderer, mesh, hemi: str, side: str, flat: bool = False) -> None:
        c = np.asarray(mesh.center)
        direction, up = VIEW_DIRECTIONS[side]
        direction = np.array(direction, dtype=float)
        if side in ("lateral", "medial") and hemi == "left":
            direction = -direction      # the lateral side of the left hemisphere faces -x
        if flat:                        # a flat map is seen from above, whatever the preset
            direction, up = np.array([0.0, 0.0, 1.0]), (0.0, 1.0, 0.0)
        renderer.camera.focal_point = tuple(c)
        renderer.camera.position = tuple(c + direction * 400.0)
        renderer.camera.up = tuple(float(u) for u in up)
        renderer.camera.parallel_projection = True
        renderer.reset_camera()
        # the bounding sphere fits the long (anterior-posterior) axis: seen from above or below
        # that axis spans the panel's height, so zoom in less
        renderer.camera.zoom(1.2 if flat else 1.05 if side in ("dorsal", "ventral") else 1.55)

    def show_pair(self, map_a: np.ndarray, map_b: np.ndarray, titles=("A", "B"), style: Optional[MapStyle] = None,
                  difference: bool = True, cmap: Optional[str] = None, scores: bool = False) -> "CortexPairView":
        """Open (or reuse) a window with two maps side by side, linked cameras and A − B.

        The maps are per vertex of this view's surface (e.g. two results' scores from
        ``session.to_vertices``). ``scores``: the maps are held-out r, painted as the cortex
        paints scores (positive r only, threshold at least 0.1). Returns the :class:`CortexPairView`.
        """
        if style is None and scores:
            both = np.concatenate([np.asarray(map_a, np.float32).ravel(), np.asarray(map_b, np.float32).ravel()])
            s = MapStyle.for_values(np.clip(both, 0, None), threshold_fraction=0.4)
            style = MapStyle(vmax=s.vmax, threshold=max(s.threshold, min(0.1, 0.9 * s.vmax)), signed=False,
                             cmap=cmap or "cold_hot")
        if self.session is None or self.session.surface is None:
            from engine.errors import DataError

            raise DataError("side by side: expected an open project with a surface, found none")
        pair = getattr(self, "pair_view", None)
        if pair is None or pair.plotter is None or pair.surface is not self.session.surface:
            if pair is not None:
                pair.close_view()
                pair.close()
            pair = CortexPairView(self.session.surface, interactive=self.interactive)
            pair.setWindowTitle("Side by side")
            self.pair_view = pair
        pair.show_pair(map_a, map_b, titles=titles, style=style, difference=difference, cmap=cmap)
        pair.show()
        return pair

    # ---- display settings (colour map, range, threshold, surface, view) --------------------------
    def set_view(self, name: str, render: bool = True) -> None:
        """Preset view: the top row shows both hemispheres from ``name`` ("lateral", "medial",
        "ventral", "dorsal", "anterior", "posterior"), the bottom row from the opposite side."""
        if name not in VIEW_DIRECTIONS:
            from engine.errors import ConfigError

            raise ConfigError(f"view: expected one of {list(VIEW_DIRECTIONS)}, found {name!r}")
        self.settings = self.settings.replace(view=name)
        if self.plotter is None:
            return
        for i, (hemi, _side, ren) in enumerate(self._renderers):
            side = name if i < 2 else opposite_view(name)
            self._renderers[i] = (hemi, side, ren)
            ds = next(d for hh, d in self._datasets if hh == hemi)
            self._place_camera(ren, ds, hemi, side, flat=self._mesh_kind == "flat")
            text = f"{hemi.capitalize()} {side}" if self._mesh_kind != "flat" else f"{hemi.capitalize()} (flat)"
            if i < len(self._labels):
                _set_corner_text(self._labels[i], 2, text)
        self._update_region_labels()
        if render:
            self.render()

    def reset_view(self) -> None:
        """Back to lateral (top) and medial (bottom) views, zoom and rotation undone."""
        self.set_view("lateral")

    def available_surfaces(self) -> List[str]:
        """Mesh kinds this session's surface comes in (fsaverage5: inflated, pial, white, sphere, flat)."""
        surface = getattr(self.session, "surface", None)
        if surface is None:
            return []
        if getattr(surface, "space", None) == "fsaverage5":
            from engine.io.surfaces import FSAVERAGE5_KINDS

            return ["inflated"] + [k for k in FSAVERAGE5_KINDS if k != "inflated"]
        return [getattr(surface, "kind", "inflated")]

    def set_surface(self, kind: str, render: bool = True) -> None:
        """Show the maps on another mesh of the same vertices (points written in place)."""
        from engine.errors import ConfigError

        kinds = self.available_surfaces()
        if kind not in kinds:
            raise ConfigError(f"surface: expected one of {kinds}, found {kind!r}")
        self.settings = self.settings.replace(surface=kind)
        if self.plotter is None or kind == self._mesh_kind:
            return
        from engine.io.surfaces import load_fsaverage5

        surface = load_fsaverage5(kind)
        for hemi, ds in self._datasets:
            h = surface.left if hemi == "left" else surface.right
            if ds.n_points != h.n_vertices:
                raise ConfigError(f"surface {kind}: expected {ds.n_points} vertices, found {h.n_vertices}")
            ds.points = np.asarray(h.coords, dtype=np.float32)
            faces = np.hstack([np.full((h.faces.shape[0], 1), 3), h.faces]).astype(np.int64).ravel()
            if ds.n_cells != h.faces.shape[0] or not np.array_equal(ds.faces, faces):
                ds.faces = faces
            ds.compute_normals(inplace=True, cell_normals=False, split_vertices=False)
        self._mesh_kind = kind
        self._region_anchors_kind = None   # labels move to the new mesh
        for i, rec in enumerate(self._shading):   # each viewport's copy takes the new points and triangles
            ds = next(d for h, d in self._datasets if h == rec["hemi"])
            rec["ds"].SetPoints(ds.GetPoints())
            rec["ds"].SetPolys(ds.GetPolys())
            rec["ds"].Modified()
            self._shade_viewport(i, force=True)
        for actor in self._mesh_actors:   # a flat map is an open sheet: keep both sides
            actor.GetProperty().SetBackfaceCulling(kind != "flat")
        self.set_view(self.settings.view, render=False)
        if self.state.target is not None:   # the marker follows the vertex onto the new mesh
            self._on_target(Event("target", self.state.target))
        if render:
            self.render()

    def apply_settings(self, **changes) -> None:
        """Change the user's display settings (see :class:`~gui.cortex_controls.DisplaySettings`)
        and repaint the map on screen with them."""
        surface = changes.pop("surface", None)
        view = changes.pop("view", None)
        self.settings = self.settings.replace(**changes)
        if surface is not None:
            self.set_surface(surface, render=False)
        if view is not None:
            self.set_view(view, render=False)
        self._compute_q_mask()
        self._update_region_labels()
        if self.current_values is not None and self.base_style is not None:
            self._paint()
        else:
            self.render()

    # ---- atlas region labels ------------------------------------------------------------------
    def _add_region_label_layer(self, renderer) -> None:
        """One label layer in ``renderer``: names placed by VTK's label placer (larger regions
        first, a label that would overlap another is left out), dark outline for contrast."""
        import vtk

        poly = vtk.vtkPolyData()
        poly.SetPoints(vtk.vtkPoints())
        hier = vtk.vtkPointSetToLabelHierarchy()
        hier.SetInputData(poly)
        hier.SetLabelArrayName("name")
        hier.SetPriorityArrayName("priority")
        tp = hier.GetTextProperty()
        tp.SetFontSize(self.LABEL_FONT_PX)
        tp.SetColor(1.0, 1.0, 1.0)
        tp.SetBold(True)
        tp.SetShadow(True)
        tp.SetJustificationToCentered()
        tp.SetVerticalJustificationToCentered()
        tp.SetBackgroundColor(0.08, 0.09, 0.11)   # the text's own box: centred with the text
        tp.SetBackgroundOpacity(0.6)
        mapper = vtk.vtkLabelPlacementMapper()
        mapper.SetInputConnection(hier.GetOutputPort())
        mapper.SetShapeToNone()
        mapper.SetMaximumLabelFraction(0.3)
        mapper.UseDepthBufferOff()
        mapper.PlaceAllLabelsOff()          # a label that would overlap a larger region's is left out
        actor = vtk.vtkActor2D()
        actor.SetMapper(mapper)
        actor.SetVisibility(False)
        actor.SetPickable(False)
        renderer.AddViewProp(actor)
        layer = {"poly": poly, "actor": actor, "mapper": mapper, "hier": hier, "camera_mtime": -1}
        index = len(self._region_label_layers)
        self._region_label_layers.append(layer)
        # the user turns a viewport: its labels follow (front-facing regions only)
        layer["observer"] = renderer.AddObserver("StartEvent", lambda *_a, i=index: self._labels_before_render(i))

    def _labels_before_render(self, index: int) -> None:
        if not self.settings.labels or index >= len(self._region_label_layers) or index >= len(self._renderers):
            return
        ren = self._renderers[index][2]
        key = (ren.GetActiveCamera().GetMTime(), tuple(ren.GetSize()))
        if key != self._region_label_layers[index]["camera_mtime"]:
            self._place_region_labels(index)

    def _region_anchors(self) -> Optional[np.ndarray]:
        """Per region, the vertex (global index) of the region nearest its centre on the mesh shown."""
        info = self._region_info
        if info is None or not self._datasets:
            return None
        if getattr(self, "_region_anchors_kind", None) == self._mesh_kind and "anchor" in info:
            return info["anchor"]
        coords = np.concatenate([np.asarray(next(d for h, d in self._datasets if h == hemi).points)
                                 for hemi in ("left", "right")])
        labels = info["labels"]
        order = np.argsort(labels, kind="stable")
        bounds = np.searchsorted(labels[order], np.concatenate([info["ids"], [np.iinfo(labels.dtype).max]]))
        anchor = np.zeros(len(info["ids"]), dtype=np.int64)
        for j in range(len(info["ids"])):
            members = order[bounds[j]:bounds[j + 1]]
            pts = coords[members]
            anchor[j] = members[int(np.argmin(((pts - pts.mean(0)) ** 2).sum(1)))]
        info["anchor"] = anchor
        self._region_anchors_kind = self._mesh_kind
        return anchor

    def _selected_region_id(self) -> Optional[int]:
        target = self.state.target
        info = self._region_info
        if target is None or target.kind != "region" or info is None:
            return None
        try:
            return int(info["ids"][info["full"].index(target.region)])
        except ValueError:
            return None

    def _place_region_labels(self, index: int) -> None:
        """Labels of viewport ``index``: the ``label_count`` largest regions of its hemisphere that
        face its camera, and the selected region."""
        import vtk
        from vtk.util.numpy_support import numpy_to_vtk

        layer = self._region_label_layers[index]
        hemi, _side, ren = self._renderers[index]
        layer["camera_mtime"] = (ren.GetActiveCamera().GetMTime(), tuple(ren.GetSize()))
        anchors = self._region_anchors()
        shown: List[Tuple[str, int]] = []
        pts = np.zeros((0, 3), np.float32)
        texts: List[str] = []
        prio: List[int] = []
        if anchors is not None and self.settings.labels:
            info = self._region_info
            ds = next(d for h, d in self._datasets if h == hemi)
            offset = 0 if hemi == "left" else self._n_left
            local = anchors - offset
            in_hemi = (local >= 0) & (local < ds.n_points)
            normals = ds.point_data["Normals"] if "Normals" in ds.point_data else None
            toward_camera = -np.asarray(ren.GetActiveCamera().GetDirectionOfProjection(), dtype=float)
            facing = np.zeros(len(anchors), dtype=bool)
            if normals is not None:
                n = np.asarray(normals)[np.clip(local, 0, ds.n_points - 1)]
                facing = in_hemi & (n @ toward_camera > 0.35)
            chosen = np.flatnonzero(facing)
            if normals is not None:    # a name that would stick out of its viewport is left out
                fits = [self._label_fits(ren, ds.points[local[j]], info["text"][j]) for j in chosen]
                chosen = chosen[np.asarray(fits, dtype=bool)]
            chosen = chosen[np.argsort(-info["size"][chosen], kind="stable")][: max(int(self.settings.label_count), 0)]
            selected = self._selected_region_id()
            if selected is not None:
                j = int(np.flatnonzero(info["ids"] == selected)[0])
                if in_hemi[j] and j not in chosen:
                    chosen = np.append(chosen, j)
            if chosen.size:
                p = np.asarray(ds.points)[local[chosen]]
                if normals is not None:
                    p = p + 2.0 * np.asarray(normals)[local[chosen]]   # just above the surface
                pts = np.asarray(p, np.float32)
                texts = [info["text"][j] for j in chosen]
                prio = [int(info["size"][j]) + (10 ** 7 if selected is not None and info["ids"][j] == selected else 0)
                        for j in chosen]
                shown = [(info["text"][j], int(anchors[j])) for j in chosen]
        poly = layer["poly"]
        vpts = vtk.vtkPoints()
        vpts.SetData(numpy_to_vtk(pts.reshape(-1, 3), deep=True))
        poly.SetPoints(vpts)
        names = vtk.vtkStringArray()
        names.SetName("name")
        for t in texts:
            names.InsertNextValue(t)
        pd = poly.GetPointData()
        pd.RemoveArray("name")
        pd.RemoveArray("priority")
        pd.AddArray(names)
        pr = numpy_to_vtk(np.asarray(prio, dtype=np.int32), deep=True)
        pr.SetName("priority")
        pd.AddArray(pr)
        verts = vtk.vtkCellArray()
        for i in range(len(texts)):
            verts.InsertNextCell(1)
            verts.InsertCellPoint(i)
        poly.SetVerts(verts)
        poly.Modified()
        layer["actor"].SetVisibility(bool(texts))
        while len(self.region_labels_shown) < len(self._region_label_layers):
            self.region_labels_shown.append([])
        self.region_labels_shown[index] = shown

    # a headlight on the material: colour x (AMBIENT + DIFFUSE x cos(normal, view)), as VTK's
    # Gouraud lighting computes it, done per vertex in numpy instead of per pixel in the shader
    # (software OpenGL spends a good part of a frame on lighting every fragment)
    AMBIENT, DIFFUSE = 0.12, 0.72

    def _shade_viewport(self, index: int, recolour: bool = False, force: bool = False) -> None:
        """Write viewport ``index``'s "lit" colours: the map's colours shaded for its camera.
        Runs before each render of the viewport (StartEvent): the shade is recomputed only when
        its camera turned, the colours only then or when asked (``recolour``, a new map)."""
        if index >= len(self._shading) or index >= len(self._renderers):
            return
        rec = self._shading[index]
        hemi, _side, ren = self._renderers[index]
        ds = next(d for h, d in self._datasets if h == hemi)
        toward_camera = -np.asarray(ren.GetActiveCamera().GetDirectionOfProjection(), dtype=np.float32)
        key = tuple(np.round(toward_camera, 6))
        if force or rec["shade"] is None or key != rec["key"]:
            normals = np.asarray(ds.point_data["Normals"], dtype=np.float32)
            rec["shade"] = self.AMBIENT + self.DIFFUSE * np.clip(normals @ toward_camera, 0.0, None)
            rec["key"] = key
            recolour = True
        if recolour:
            lit = rec["ds"].point_data["lit"]
            lit[:] = np.asarray(ds.point_data["rgb"], dtype=np.float32) * rec["shade"][:, None] + 0.5
            rec["ds"].point_data["lit"] = lit     # mark modified for VTK

    LABEL_FONT_PX = 13

    def _label_fits(self, ren, point, text: str) -> bool:
        """Whether ``text`` centred on ``point`` lies inside ``ren``'s viewport (a bold glyph is
        at most about 0.62 of the font size wide)."""
        ren.SetWorldPoint(float(point[0]), float(point[1]), float(point[2]), 1.0)
        ren.WorldToDisplay()
        x, y, _z = ren.GetDisplayPoint()
        x0, y0 = ren.GetOrigin()
        w, h = ren.GetSize()
        half_w = 0.5 * (0.62 * self.LABEL_FONT_PX * len(text) + 8)
        half_h = 0.5 * (self.LABEL_FONT_PX + 8)
        return bool(x0 + half_w <= x <= x0 + w - half_w and y0 + half_h <= y <= y0 + h - half_h - 16)

    def _update_region_labels(self) -> None:
        """Show or hide the labels of every viewport after a settings, view or selection change."""
        on = bool(self.settings.labels) and self._region_info is not None
        for i, layer in enumerate(self._region_label_layers):
            if on:
                self._place_region_labels(i)
            else:
                layer["actor"].SetVisibility(False)
                if i < len(self.region_labels_shown):
                    self.region_labels_shown[i] = []

    def camera_state(self) -> dict:
        """Surface, preset view and each viewport's camera, to restore later (per project)."""
        cams = []
        for _hemi, _side, ren in self._renderers:
            c = ren.camera
            cams.append({"position": list(map(float, c.position)), "focal_point": list(map(float, c.focal_point)),
                         "up": list(map(float, c.up)), "parallel_scale": float(c.parallel_scale)})
        return {"surface": self.settings.surface, "view": self.settings.view, "cameras": cams,
                "borders": bool(self.settings.borders), "labels": bool(self.settings.labels),
                "label_count": int(self.settings.label_count)}

    def set_camera_state(self, state: dict) -> None:
        """Restore what :meth:`camera_state` gave (ignored where it does not fit this view)."""
        if not state:
            return
        if state.get("surface") in self.available_surfaces():
            self.set_surface(state["surface"], render=False)
        if state.get("view") in VIEW_DIRECTIONS:
            self.set_view(state["view"], render=False)
        shown = {k: state[k] for k in ("borders", "labels") if isinstance(state.get(k), bool)}
        if isinstance(state.get("label_count"), int) and 1 <= state["label_count"] <= 60:
            shown["label_count"] = state["label_count"]
        if shown:
            self.settings = self.settings.replace(**shown)
            self._update_region_labels()
            if self.current_values is not None and self.base_style is not None:
                self._paint()     # borders drawn into the colours
        cams = state.get("cameras") or []
        if len(cams) == len(self._renderers):
            for cam, (_h, _s, ren) in zip(cams, self._renderers):
                c = ren.camera
                c.position, c.focal_point, c.up = cam["position"], cam["focal_point"], cam["up"]
                c.parallel_scale = cam["parallel_scale"]
        self.render()

    def _compute_atlas_border(self) -> None:
        """Vertices on the border between two atlas regions (faces whose labels differ)."""
        self.atlas_border = np.zeros(0, dtype=np.int64)
        self._region_info = None
        session = self.session
        atlas = getattr(session, "atlas", None) if session is not None else None
        if atlas is None or session.surface is None:
            return
        labels = np.asarray(atlas.labels)
        if labels.size != session.surface.n_vertices:
            return
        _coords, faces = session.surface.combined()
        fl = labels[faces]                                           # n_faces, 3
        # one side of each edge only (the vertex with the lower label): a 1-vertex-wide line
        border = np.zeros(labels.size, dtype=bool)
        for i, j in ((0, 1), (1, 2), (2, 0)):
            differ = fl[:, i] != fl[:, j]
            lower = np.where(fl[:, i] < fl[:, j], faces[:, i], faces[:, j])
            border[lower[differ]] = True
        self.atlas_border = np.flatnonzero(border)
        ids, counts = np.unique(labels[labels > 0], return_counts=True)
        names = list(atlas.names)
        keep = ids <= len(names)
        ids, counts = ids[keep], counts[keep]
        self._region_info = {
            "ids": ids, "size": counts,
            "full": [str(names[k - 1]) for k in ids],
            "text": [short_region_name(names[k - 1]) for k in ids],
            "labels": labels,
        }
        self._region_anchors_kind = None

    def _compute_q_mask(self) -> None:
        """Vertices whose FDR q is above the chosen level (only for the encoding score)."""
        self.hidden_by_q = None
        level = self.settings.q_level
        if level is None or self.external_map or self.session is None or self.state.layer != "score":
            return
        q = self.q_values()
        if q is not None:
            self.hidden_by_q = ~(np.nan_to_num(q, nan=1.0) <= level)

    def q_values(self) -> Optional[np.ndarray]:
        """The open result's FDR q per vertex (None when the result carries none)."""
        result = getattr(self.session, "result", None) if self.session is not None else None
        q = getattr(result, "q_values", None)
        if q is None:
            return None
        q = np.asarray(q, dtype=np.float32).ravel()
        maps = getattr(self.session, "maps", None)
        return maps.to_vertices(q) if maps is not None else q

    # ---- maps -------------------------------------------------------------------------
    def _current_key(self):
        layer = self.state.layer
        if layer == "score":
            return ("score", self.state.result, None)
        return (layer, self.state.run, self.state.tr_index)

    def refresh(self, force: bool = False) -> None:
        """Show the map for the current layer/run/TR; nothing happens if it is already shown."""
        if self.session is None or self.plotter is None:
            return
        key = self._current_key()
        if key == self._shown_key and not force:
            return
        run = self.state.run or (self.session.run_names[0] if self.session.run_names else None)
        if key[0] == "score" or run is None:
            values = self.session.score_map()
        else:
            values = self.session.map_at(run, key[0], self.state.tr_index)
        if key[0] == "score":
            # positive r only (a negative held-out r is a failed prediction, not a finding)
            style = MapStyle.for_values(np.clip(values, 0, None), threshold_fraction=0.4)
            style = MapStyle(vmax=style.vmax, threshold=max(style.threshold, min(0.1, 0.9 * style.vmax)),
                             signed=False)
        else:
            # one colour scale per run so that frames are comparable while playing
            style = self._run_style(run, key[0])
        title = LAYER_TITLES[key[0]]
        if key[0] == "measured" and run is not None and not self.session.has_prediction(run):
            title += " (z-scored within the run)"
        if key[0] == "score" and self.session.result is None:
            title = "No encoding result yet: Run > Fit encoding model"
        self._show_layer_item()
        self._set_map(values, style, title, external=False)
        self._shown_key = key

    def _run_style(self, run: str, layer: str) -> MapStyle:
        cache = self._style_cache
        if (run, layer) not in cache:
            rows = self.session.map_rows(run, layer)
            if rows is None:
                rows = self.session.map_rows(run, "measured")
            cache[(run, layer)] = MapStyle.for_values(np.asarray(rows[::max(len(rows) // 20, 1)]).ravel(),
                                                      threshold_fraction=0.3)
        return cache[(run, layer)]

    def set_map(self, values: np.ndarray, style: MapStyle, title: str = "") -> None:
        """Show a map given by another pane (tSNR, a study's map...): per-vertex colours written
        into the meshes' point data, one render. The layer box names it until a layer is chosen;
        the user's colour map, range, threshold and opacity apply on top of ``style``."""
        self._set_map(values, style, title, external=True)
        self._shown_key = None     # the next time/layer change shows the layer again

    def _set_map(self, values: np.ndarray, style: MapStyle, title: str, external: bool) -> None:
        self.current_values = np.asarray(values, dtype=np.float32)
        self.base_style = style
        self.map_title = title
        self.external_map = external
        if external:
            self._show_external_item(title)
        self._compute_q_mask()
        self._paint()

    def _paint(self) -> None:
        """Colours of ``current_values`` with the user's settings written in place, one render."""
        values = self.current_values
        style = styled(self.base_style, self.settings)
        hidden = self.hidden_by_q
        rgb = map_rgb(values, style, self._background, hidden=hidden)
        if self.settings.borders and self.atlas_border.size:
            rgb[self.atlas_border] = ATLAS_BORDER_RGB
        if self.outline_vertices.size:
            rgb[self.outline_vertices] = OUTLINE_RGB
        for hemi, ds in self._datasets:
            part = rgb[: self._n_left] if hemi == "left" else rgb[self._n_left:]
            ds.point_data["rgb"][:] = part
        for i in range(len(self._shading)):
            self._shade_viewport(i, recolour=True)
        self.current_style = style
        self.current_rgb = rgb
        title = self.map_title
        if hidden is not None:
            title += f" · q ≤ {self.settings.q_level:g} (FDR)"
        self.colorbar.set_style(style if np.isfinite(values).any() else None, title)
        self.render()

    def _show_external_item(self, title: str) -> None:
        """The layer box names a map that is not one of the layers (e.g. "tSNR")."""
        short = (title.split(" (")[0] or "Other map")[:40]
        box = self.layer_box
        box.blockSignals(True)
        i = box.findData("__external__")
        if i < 0:
            box.addItem(short, "__external__")
            i = box.count() - 1
        else:
            box.setItemText(i, short)
        box.setCurrentIndex(i)
        box.blockSignals(False)

    def _show_layer_item(self) -> None:
        box = self.layer_box
        box.blockSignals(True)
        i = box.findData("__external__")
        if i >= 0:
            box.removeItem(i)
        box.setCurrentIndex(box.findData(self.state.layer))
        box.blockSignals(False)

    def render(self) -> None:
        """Show the scene as it is now: one VTK render.

        On the QtInteractor this asks Qt to repaint the widget: its ``paintGL`` renders the
        scene and copies it to the window. (``plotter.render()`` rendered once itself and
        ``paintGL`` a second time on the next paint; several requests before the next paint
        also become one render.)"""
        if self.plotter is None:
            return
        if self.interactive:
            _request_paint(self.plotter)
        else:
            self._show_offscreen_image()
        self.render_count += 1
        self.rendered.emit()

    def _show_offscreen_image(self) -> None:
        self.plotter.render()  # screenshot() renders only the first time
        img = self.plotter.screenshot(return_img=True)
        img = np.ascontiguousarray(img[..., :3])
        h, w = img.shape[:2]
        qimg = QImage(img.data, w, h, 3 * w, QImage.Format_RGB888).copy()
        self.last_image = img
        self.host.setPixmap(QPixmap.fromImage(qimg))

    def image(self) -> np.ndarray:
        """What the plotter shows now, (H, W, 3) uint8 (renders off-screen or reads the window)."""
        if self.plotter is None:
            return np.zeros((1, 1, 3), np.uint8)
        self.plotter.render()
        return np.ascontiguousarray(self.plotter.screenshot(return_img=True)[..., :3])

    # ---- picking ----------------------------------------------------------------------
    def _renderer_at(self, x: float, y: float):
        w, h = self.plotter.window_size
        fx, fy = x / max(w, 1), 1.0 - y / max(h, 1)
        for hemi, side, ren in self._renderers:
            x0, y0, x1, y1 = ren.GetViewport()
            if x0 <= fx < x1 and y0 <= fy < y1:
                return hemi, side, ren
        return None

    def _to_render_pixels(self, x: float, y: float) -> Tuple[float, float]:
        """Widget coordinates -> render-window pixels (offscreen image is centred in its label)."""
        if self.interactive:
            ratio = self.host.devicePixelRatioF()
            return x * ratio, y * ratio
        w, h = self.plotter.window_size
        ox = (self.host.width() - w) / 2.0
        oy = (self.host.height() - h) / 2.0
        return x - ox, y - oy

    def pick_at(self, x: float, y: float, select: bool = True) -> Optional[int]:
        """Vertex under widget position (x, y) of the 3D host, or None; selects it when asked."""
        if self.plotter is None:
            return None
        import vtk

        rx, ry = self._to_render_pixels(x, y)
        found = self._renderer_at(rx, ry)
        if found is None:
            return None
        hemi, _side, ren = found
        _w, h = self.plotter.window_size
        picker = vtk.vtkCellPicker()
        picker.SetTolerance(0.0005)
        if not picker.Pick(rx, h - 1 - ry, 0, ren):
            return None
        ds = picker.GetDataSet()
        if ds is None or picker.GetCellId() < 0:
            return None
        owner = hemi  # each viewport shows one hemisphere; markers are not pickable
        pos = np.array(picker.GetPickPosition())
        cell = ds.GetCell(picker.GetCellId())
        ids = [cell.GetPointId(i) for i in range(cell.GetNumberOfPoints())]
        pts = np.array([ds.GetPoint(i) for i in ids])
        local = ids[int(np.argmin(((pts - pos) ** 2).sum(1)))]
        vertex = int(local + (self._n_left if owner == "right" else 0))
        if select:
            self.state.select_vertex(vertex)
            self.vertex_picked.emit(vertex)
        return vertex

    def project_vertex(self, vertex: int, side: str = "lateral") -> Optional[Tuple[float, float]]:
        """Widget position where ``vertex`` appears in the given view (for tests and hints)."""
        hemi = "left" if vertex < self._n_left else "right"
        for h, s, ren in self._renderers:
            if h == hemi and s == side:
                ds = next(d for hh, d in self._datasets if hh == hemi)
                p = ds.points[vertex - (0 if hemi == "left" else self._n_left)]
                ren.SetWorldPoint(float(p[0]), float(p[1]), float(p[2]), 1.0)
                ren.WorldToDisplay()
                dx, dy, _ = ren.GetDisplayPoint()
                _w, hgt = self.plotter.window_size
                rx, ry = dx, hgt - 1 - dy
                if self.interactive:
                    ratio = self.host.devicePixelRatioF()
                    return rx / ratio, ry / ratio
                ox = (self.host.width() - self.plotter.window_size[0]) / 2.0
                oy = (self.host.height() - self.plotter.window_size[1]) / 2.0
                return rx + ox, ry + oy
        return None

    def describe_vertex(self, vertex: int) -> str:
        """``vertex 123 · left · region · r = 0.21`` for the status bar and the info label."""
        hemi = "left" if vertex < self._n_left else "right"
        region = self.session.region_of_vertex(vertex) if self.session is not None else None
        text = f"vertex {vertex} · {hemi} hemisphere" + (f" · {region}" if region else "")
        if self.current_values is not None and np.isfinite(self.current_values[vertex]):
            name = ("value" if self.external_map else
                    {"score": "r", "measured": "measured", "predicted": "predicted"}[self.state.layer])
            text += f" · {name} = {float(self.current_values[vertex]):.3f}"
            if not self.external_map and self.state.layer == "score" and self.settings.q_level is not None:
                q = self.q_values()
                if q is not None and np.isfinite(q[vertex]):
                    text += f" · q = {float(q[vertex]):.3g}"
        return text

    def _hover(self, pos: QPoint) -> None:
        self._hover_pos = pos
        self._hover_timer.start()   # pick once the mouse rests: picking every move event is wasteful

    def _hover_pick(self) -> None:
        if self._hover_pos is None or self.plotter is None:
            return
        v = self.pick_at(self._hover_pos.x(), self._hover_pos.y(), select=False)
        self.hovered.emit("" if v is None else self.describe_vertex(v))

    # ---- off-screen mouse handling ----------------------------------------------------------
    def _press(self, pos: QPoint, button) -> None:
        self._press_pos = pos
        self._last_pos = pos
        self._dragging = False

    def _drag(self, pos: QPoint) -> None:
        if self._press_pos is None or self.plotter is None:
            return
        if (pos - self._press_pos).manhattanLength() > 3:
            self._dragging = True
        if self._dragging:
            found = self._renderer_at(*self._to_render_pixels(self._press_pos.x(), self._press_pos.y()))
            if found is not None:
                d = pos - self._last_pos
                cam = found[2].camera
                cam.Azimuth(-0.5 * d.x())
                cam.Elevation(0.5 * d.y())
                cam.OrthogonalizeViewUp()
                self.render()
        self._last_pos = pos

    def _release(self, pos: QPoint, button) -> None:
        if self._press_pos is not None and not self._dragging and button == Qt.LeftButton:
            self.pick_at(pos.x(), pos.y(), select=True)
        self._press_pos = None
        self._dragging = False

    def _zoom_at(self, pos: QPoint, factor: float) -> None:
        if self.plotter is None:
            return
        found = self._renderer_at(*self._to_render_pixels(pos.x(), pos.y()))
        if found is not None:
            found[2].camera.zoom(factor)
            self.render()

    # ---- state events -----------------------------------------------------------------
    def _on_time(self, _e: Event) -> None:
        if self.state.layer != "score":
            self.refresh()   # renders only when the TR changed

    def _on_layer(self, e: Event) -> None:
        i = self.layer_box.findData(e.value)
        if i != self.layer_box.currentIndex():
            self.layer_box.blockSignals(True)
            self.layer_box.setCurrentIndex(i)
            self.layer_box.blockSignals(False)
        self.refresh()

    def _on_run(self, _e) -> None:
        self.refresh()

    def _layer_chosen(self, index: int) -> None:
        layer = self.layer_box.itemData(index)
        if layer == "__external__":
            return
        if layer == self.state.layer:   # back from another pane's map to the layer it replaced
            self.refresh(force=True)
        else:
            self.state.layer = layer

    def _on_target(self, e: Event) -> None:
        target = e.value
        if self.plotter is None:
            return
        if target is None or self.session is None:
            for _, m in self._markers:
                m.SetVisibility(False)
            self._set_outline(None)       # a region's outline goes with its selection
            if self.settings.labels:
                self._update_region_labels()
            self.render()
            return
        if target.kind == "vertex":
            v = target.vertex
            hemi = "left" if v < self._n_left else "right"
            ds = next(d for hh, d in self._datasets if hh == hemi)
            p = ds.points[v - (0 if hemi == "left" else self._n_left)]
            for h, m in self._markers:
                m.SetVisibility(h == hemi)
                m.SetPosition(*[float(x) for x in p])
            region = self.session.region_of_vertex(v)
            hemi_txt = "left" if hemi == "left" else "right"
            score = self.session.target_score(target)
            self.info_label.setText(f"vertex {v} · {hemi_txt} hemisphere"
                                    + (f" · {region}" if region else "")
                                    + ("" if np.isnan(score) else f" · r = {score:.3f}"))
        else:
            for _, m in self._markers:
                m.SetVisibility(False)
            self.info_label.setText(f"{target.label} · mean vertex r = {self.session.target_score(target):.3f}")
        self._set_outline(target)
        if self.settings.labels:
            self._update_region_labels()
        self.render()

    def _set_outline(self, target) -> None:
        """Border vertices of a selected region (vertices of faces that cross its edge)."""
        outline = np.zeros(0, dtype=np.int64)
        if target is not None and target.kind == "region" and self.session is not None:
            inside = np.zeros(self.session.surface.n_vertices, dtype=bool)
            inside[self.session.target_vertices(target)] = True
            _coords, faces = self.session.surface.combined()
            member = inside[faces]                                  # n_faces, 3
            crossing = member.any(1) & ~member.all(1)
            border = np.zeros_like(inside)
            border[faces[crossing].ravel()] = True     # both sides of the edge: a 2-vertex-wide line
            outline = np.flatnonzero(border)
        changed = outline.size != self.outline_vertices.size or not np.array_equal(outline, self.outline_vertices)
        self.outline_vertices = outline
        if changed and self.current_values is not None and self.base_style is not None:
            self._paint()

    # ---- lifetime ---------------------------------------------------------------------
    def _close_plotter(self) -> None:
        if self.plotter is not None:
            p = self.plotter
            self.plotter = None
            self._datasets.clear()
            self._markers.clear()
            self._mesh_actors.clear()
            for (_h, _s, ren), layer in zip(self._renderers, self._region_label_layers):
                ren.RemoveObserver(layer["observer"])     # its callback holds this view
            for (_h, _s, ren), shading in zip(self._renderers, self._shading):
                if "observer" in shading:
                    ren.RemoveObserver(shading["observer"])
            self._shading.clear()
            self._renderers.clear()
            self._labels.clear()
            self._region_label_layers.clear()
            self.region_labels_shown = []
            try:
                p.close()
            finally:
                p._alignscope_open = False
            if self.interactive:
                p.removeEventFilter(self._click_filter)

    def close_view(self) -> None:
        """Close the plotter (its VTK window) and stop listening to the state."""
        for name, cb in (("time", self._on_time), ("target", self._on_target),
                         ("layer", self._on_layer), ("run", self._on_run)):
            getattr(self.state.events, name).disconnect(cb)
        self._resize_timer.stop()
        self._hover_timer.stop()
        pair = getattr(self, "pair_view", None)
        if pair is not None:
            pair.close_view()
            pair.close()
            pair.deleteLater()
            self.pair_view = None
        self._close_plotter()

    def closeEvent(self, event) -> None:  # noqa: N802
        self.close_view()
        super().closeEvent(event)


class CortexPairView(_OffscreenResize, QWidget):
    """Two maps side by side and their difference (A − B), cameras linked per hemisphere.

    Rows are the left and right hemisphere, columns map A, map B and the difference. The
    viewports of one row share one VTK camera, so turning or zooming one turns the others
    (MNE's ``link_brains``). A and B are painted with one colour scale so that colours compare;
    the difference has its own diverging scale (RdBu, white at 0).

    Parameters
    ----------
    surface : engine.io.surfaces.Surface
    sulc_background : bool
        Grey sulci/gyri shading under the maps.
    interactive : bool or None
        As in :class:`CortexView`.
    """

    rendered = Signal()

    def __init__(self, surface, interactive: Optional[bool] = None, parent=None) -> None:
        super().__init__(parent)
        import pyvista as pv

        self.surface = surface
        self.interactive = can_host_interactor() if interactive is None else bool(interactive)
        self._n_left = surface.n_left
        self._background = cortex_background(surface.n_vertices, surface.sulc)
        self.maps: List[Optional[np.ndarray]] = [None, None, None]   # A, B, A - B (n_vertices each)
        self.styles: List[Optional[MapStyle]] = [None, None, None]
        self.titles = ["A", "B", "A − B"]
        self.render_count = 0
        self._press_pos: Optional[QPoint] = None
        self._dragging = False
        self._resize_timer = QTimer(self, singleShot=True, interval=60, timeout=self._apply_resize)
        self.colorbar_ab = ColorBar()
        self.colorbar_diff = ColorBar()
        host_size = (900, 420)
        if self.interactive:
            try:
                from pyvistaqt import QtInteractor

                self.plotter = QtInteractor(self, shape=(2, 3), border=False, auto_update=False)
                host = self.plotter
            except Exception:  # noqa: BLE001 - no usable OpenGL here: draw off-screen
                self.interactive = False
        if not self.interactive:
            self.plotter = pv.Plotter(off_screen=True, shape=(2, 3), border=False, window_size=list(host_size))
            host = _ImageHost(self)
        self.host = host
        self.plotter.disable_anti_aliasing(all_renderers=True)
        self.plotter.set_background(BACKGROUND)
        self.plotter._alignscope_open = True
        _LIVE_PLOTTERS.add(self.plotter)
        self._datasets: List[List[Tuple[str, object]]] = [[], [], []]   # per column: (hemi, dataset)
        self._renderers: List[Tuple[str, str, object]] = []
        self._titles_text = []
        for row, (hemi, h) in enumerate((("left", surface.left), ("right", surface.right))):
            faces = np.hstack([np.full((h.faces.shape[0], 1), 3), h.faces]).astype(np.int64).ravel()
            camera = None
            for col in range(3):
                mesh = pv.PolyData(np.asarray(h.coords, dtype=np.float32), faces)
                mesh.point_data["rgb"] = np.zeros((h.n_vertices, 3), np.uint8)
                mesh.compute_normals(inplace=True, cell_normals=False, split_vertices=False)
                self.plotter.subplot(row, col)
                actor = self.plotter.add_mesh(mesh, scalars="rgb", rgb=True, show_scalar_bar=False,
                                              reset_camera=False)
                style_mesh_actor(actor, closed=getattr(surface, "kind", "inflated") != "flat")
                light_for_speed(self.plotter.renderer)
                self._datasets[col].append((hemi, actor.mapper.dataset))
                ren = self.plotter.renderer
                if row == 0:
                    self._titles_text.append(self.plotter.add_text(self.titles[col], position="upper_edge",
                                                                   font_size=8, color="#e1e5ea"))
                if camera is None:
                    CortexView._place_camera(ren, mesh, hemi, "lateral")
                    camera = ren.GetActiveCamera()
                else:
                    ren.SetActiveCamera(camera)     # linked: one camera for the row
                self._renderers.append((hemi, "lateral", ren))

        bars = QHBoxLayout()
        bars.addWidget(self.colorbar_ab, 2)
        bars.addWidget(self.colorbar_diff, 1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(host, 1)
        lay.addLayout(bars)
        self.resize(host_size[0] + 8, host_size[1] + 70)

    def show_pair(self, map_a: np.ndarray, map_b: np.ndarray, titles=("A", "B"), style: Optional[MapStyle] = None,
                  difference: bool = True, diff_style: Optional[MapStyle] = None, cmap: Optional[str] = None) -> None:
        """Paint ``map_a`` and ``map_b`` (n_vertices each) with one colour scale (``style`` or
        one fitted to both) and, when ``difference``, their difference A − B."""
        from engine.session.colour import difference_map, shared_style

        a = np.asarray(map_a, dtype=np.float32).ravel()
        b = np.asarray(map_b, dtype=np.float32).ravel()
        n = self.surface.n_vertices
        if a.size != n or b.size != n:
            from engine.errors import ConfigError

            raise ConfigError(f"side by side: expected two maps of {n} vertices, found {a.size} and {b.size}")
        style = style or shared_style([a, b], cmap=cmap or "cold_hot")
        if cmap is not None and style.cmap != cmap:
            style = MapStyle(style.vmax, style.threshold, style.signed, cmap, style.vmin, style.opacity)
        d = difference_map(a, b)
        if diff_style is None:
            s = MapStyle.for_values(d, threshold_fraction=0.2)
            diff_style = MapStyle(vmax=s.vmax, threshold=s.threshold, signed=True, cmap="RdBu_r")
        self.maps = [a, b, d if difference else None]
        self.styles = [style, style, diff_style]
        self.titles = [str(titles[0]), str(titles[1]), f"{titles[0]} − {titles[1]}"]
        for col in range(3):
            values = self.maps[col]
            rgb = (map_rgb(values, self.styles[col], self._background) if values is not None
                   else (self._background * 255).astype(np.uint8))
            for hemi, ds in self._datasets[col]:
                ds.point_data["rgb"][:] = rgb[: self._n_left] if hemi == "left" else rgb[self._n_left:]
                ds.point_data["rgb"] = ds.point_data["rgb"]
            _set_corner_text(self._titles_text[col], 7, self.titles[col] if values is not None else "")
        self.colorbar_ab.set_style(style, f"{self.titles[0]} and {self.titles[1]} (one scale)")
        self.colorbar_diff.set_style(diff_style if difference else None,
                                     self.titles[2] if difference else "no difference map")
        self.render()

    def colors_of(self, column: int) -> np.ndarray:
        """The RGB written for column 0 (A), 1 (B) or 2 (difference), (n_vertices, 3) uint8."""
        return np.concatenate([np.asarray(ds.point_data["rgb"]) for _h, ds in self._datasets[column]])

    def cameras(self) -> List[object]:
        """The VTK camera of each viewport, row by row (linked ones are the same object)."""
        return [ren.GetActiveCamera() for _h, _s, ren in self._renderers]

    def render(self) -> None:
        if self.plotter is None:
            return
        if self.interactive:
            _request_paint(self.plotter)
        else:
            self.plotter.render()
            img = np.ascontiguousarray(self.plotter.screenshot(return_img=True)[..., :3])
            self.last_image = img
            h, w = img.shape[:2]
            self.host.setPixmap(QPixmap.fromImage(QImage(img.data, w, h, 3 * w, QImage.Format_RGB888).copy()))
        self.render_count += 1
        self.rendered.emit()

    def image(self) -> np.ndarray:
        self.plotter.render()
        return np.ascontiguousarray(self.plotter.screenshot(return_img=True)[..., :3])

    # off-screen mouse: drag turns the row's (linked) camera, wheel zooms it
    def _row_renderer(self, pos: QPoint):
        w, h = self.plotter.window_size
        ox, oy = (self.host.width() - w) / 2.0, (self.host.height() - h) / 2.0
        fx, fy = (pos.x() - ox) / max(w, 1), 1.0 - (pos.y() - oy) / max(h, 1)
        for _hemi, _side, ren in self._renderers:
            x0, y0, x1, y1 = ren.GetViewport()
            if x0 <= fx < x1 and y0 <= fy < y1:
                return ren
        return None

    def _press(self, pos: QPoint, _button) -> None:
        self._press_pos = self._last_pos = pos
        self._dragging = False

    def _drag(self, pos: QPoint) -> None:
        if self._press_pos is None:
            return
        self._dragging = self._dragging or (pos - self._press_pos).manhattanLength() > 3
        ren = self._row_renderer(self._press_pos)
        if self._dragging and ren is not None:
            d = pos - self._last_pos
            cam = ren.GetActiveCamera()
            cam.Azimuth(-0.5 * d.x())
            cam.Elevation(0.5 * d.y())
            cam.OrthogonalizeViewUp()
            self.render()
        self._last_pos = pos

    def _release(self, _pos: QPoint, _button) -> None:
        self._press_pos = None

    def _hover(self, _pos: QPoint) -> None:
        pass

    def _zoom_at(self, pos: QPoint, factor: float) -> None:
        ren = self._row_renderer(pos)
        if ren is not None:
            ren.GetActiveCamera().Zoom(factor)
            self.render()

    def close_view(self) -> None:
        """Close the plotter (its VTK window)."""
        self._resize_timer.stop()
        if self.plotter is not None:
            p, self.plotter = self.plotter, None
            self._datasets = [[], [], []]
            self._renderers.clear()
            self._titles_text.clear()
            try:
                p.close()
            finally:
                p._alignscope_open = False

    def closeEvent(self, event) -> None:  # noqa: N802
        self.close_view()
        super().closeEvent(event)
