"""The cortex's display controls: colour map, range, threshold (value or FDR q), opacity,
surface, preset view, atlas borders.

:class:`DisplaySettings` is the user's choice (None = the map's own default); :func:`styled`
lays it over a map's own :class:`~engine.session.colour.MapStyle`. :class:`CortexControls` is
the form that edits a :class:`~gui.cortex_view.CortexView` through its public methods
(``apply_settings``, ``set_view``, ``reset_view``); :class:`CortexControlsButton` opens it as
a popup under the pane's title row, so the pane keeps its room (napari's layer controls,
FreeView's colour-map panel).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QFrame, QHBoxLayout, QLabel,
                               QPushButton, QSlider, QSpinBox, QToolButton, QVBoxLayout, QWidget)

from engine.session.colour import CMAPS, DIVERGING_CMAPS, SEQUENTIAL_CMAPS, MapStyle

# direction from the hemisphere's centre to the camera (right hemisphere; lateral/medial flip
# for the left one) and the camera's up vector
VIEW_DIRECTIONS = {
    "lateral": ((1.0, 0.0, 0.0), (0.0, 0.0, 1.0)),
    "medial": ((-1.0, 0.0, 0.0), (0.0, 0.0, 1.0)),
    "dorsal": ((0.0, 0.0, 1.0), (0.0, 1.0, 0.0)),
    "ventral": ((0.0, 0.0, -1.0), (0.0, 1.0, 0.0)),
    "anterior": ((0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
    "posterior": ((0.0, -1.0, 0.0), (0.0, 0.0, 1.0)),
}
_OPPOSITE = {"lateral": "medial", "medial": "lateral", "dorsal": "ventral", "ventral": "dorsal",
             "anterior": "posterior", "posterior": "anterior"}
CMAP_TITLES = {"cold_hot": "cold-hot (nilearn)", "RdBu_r": "RdBu (diverging, CVD-safe)",
               "PuOr_r": "PuOr (diverging, CVD-safe)", "viridis": "viridis (sequential, CVD-safe)",
               "cividis": "cividis (sequential, CVD-safe)", "inferno": "inferno (sequential, CVD-safe)"}
SURFACE_TITLES = {"inflated": "inflated", "pial": "pial", "white": "white matter", "sphere": "sphere (very inflated)",
                  "flat": "flat"}


def opposite_view(name: str) -> str:
    """The preset seen from the other side (lateral <-> medial, dorsal <-> ventral...)."""
    return _OPPOSITE[name]


@dataclass(frozen=True)
class DisplaySettings:
    """What the user chose for the cortex; None keeps the map's own value.

    cmap : one of :data:`engine.session.colour.CMAPS`
    vmin, vmax : colour range
    threshold : |value| below it shows the grey cortex
    q_level : show only vertices with FDR q <= q_level (when the result carries q-values)
    opacity : 0..1, the map over the cortex
    surface : mesh kind ("inflated", "pial", "white", "sphere", "flat")
    view : preset of the top row (the bottom row shows the opposite side)
    borders : draw the atlas's region borders
    labels : write region names on the cortex (the ``label_count`` largest regions facing
        each viewport, and the selected region)
    """

    cmap: Optional[str] = None
    vmin: Optional[float] = None
    vmax: Optional[float] = None
    threshold: Optional[float] = None
    q_level: Optional[float] = None
    opacity: float = 1.0
    surface: str = "inflated"
    view: str = "lateral"
    borders: bool = False
    labels: bool = False
    label_count: int = 8

    def replace(self, **changes) -> "DisplaySettings":
        return replace(self, **changes)


def styled(base: Optional[MapStyle], settings: DisplaySettings) -> MapStyle:
    """``base`` with the user's colour map, range, threshold and opacity laid over it."""
    base = base or MapStyle(vmax=1.0, threshold=0.0, signed=False)
    vmax = float(settings.vmax) if settings.vmax is not None else base.vmax
    vmin = settings.vmin if settings.vmin is not None else base.vmin
    threshold = float(settings.threshold) if settings.threshold is not None else base.threshold
    cmap = settings.cmap or base.cmap
    signed = base.signed or (vmin is not None and vmin < 0) or cmap in DIVERGING_CMAPS and base.signed
    return MapStyle(vmax=max(vmax, 1e-12), threshold=max(threshold, 0.0), signed=bool(signed), cmap=cmap,
                    vmin=vmin, opacity=float(min(max(settings.opacity, 0.0), 1.0)))


class CortexControls(QFrame):
    """The form; every change goes to ``view.apply_settings`` at once (one render)."""

    def __init__(self, view, parent=None) -> None:
        super().__init__(parent)
        self.view = view
        self.setObjectName("cortexControls")
        self.setFrameShape(QFrame.StyledPanel)
        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.setSpacing(4)

        self.cmap_box = QComboBox()
        self.cmap_box.addItem("map's default", None)
        for name in CMAPS:
            self.cmap_box.addItem(CMAP_TITLES.get(name, name), name)
        self.cmap_box.setToolTip("Diverging maps for signed values (white at 0), sequential for positive ones;\n"
                                 "all but cold-hot are colour-blind safe")
        form.addRow("Colour map", self.cmap_box)

        self.auto_range = QCheckBox("auto")
        self.auto_range.setChecked(True)
        self.vmin_spin = self._spin(-1e6, 1e6)
        self.vmax_spin = self._spin(-1e6, 1e6)
        row = QHBoxLayout()
        row.addWidget(self.auto_range)
        row.addWidget(self.vmin_spin)
        row.addWidget(QLabel("to"))
        row.addWidget(self.vmax_spin)
        form.addRow("Range", row)

        self.threshold_mode = QComboBox()
        self.threshold_mode.addItem("map's default", "auto")
        self.threshold_mode.addItem("|value| ≥", "value")
        self.threshold_mode.addItem("FDR q ≤", "q")
        self.threshold_spin = self._spin(0.0, 1e6)
        row = QHBoxLayout()
        row.addWidget(self.threshold_mode)
        row.addWidget(self.threshold_spin)
        form.addRow("Threshold", row)

        self.opacity_slider = QSlider(Qt.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(100)
        form.addRow("Opacity", self.opacity_slider)

        self.surface_box = QComboBox()
        form.addRow("Surface", self.surface_box)

        self.view_box = QComboBox()
        for name in VIEW_DIRECTIONS:
            self.view_box.addItem(f"{name} / {opposite_view(name)}", name)
        self.reset_button = QPushButton("Reset view")
        row = QHBoxLayout()
        row.addWidget(self.view_box, 1)
        row.addWidget(self.reset_button)
        form.addRow("View", row)

        self.borders_check = QCheckBox("atlas region borders")
        form.addRow("", self.borders_check)
        self.labels_check = QCheckBox("region names, largest")
        self.labels_check.setToolTip("Names of the atlas's largest regions facing each view (and of the "
                                     "selected region) on the cortex; a name that would overlap another is left out")
        self.label_count_spin = QSpinBox()
        self.label_count_spin.setRange(1, 60)
        self.label_count_spin.setToolTip("How many regions are named in each view (the largest facing it)")
        row = QHBoxLayout()
        row.addWidget(self.labels_check)
        row.addWidget(self.label_count_spin)
        row.addStretch(1)
        form.addRow("", row)
        self.figure_button = QPushButton("Save figure…")
        self.figure_button.setToolTip("A high-resolution PNG of this view and its opposite, both hemispheres, "
                                      "with the colour bar (1200x900 px per view)")
        self.figure_button.clicked.connect(self._save_figure)
        form.addRow("Export", self.figure_button)
        self.note = QLabel("")
        self.note.setObjectName("paneHint")
        self.note.setWordWrap(True)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 8, 8, 8)
        lay.addLayout(form)
        lay.addWidget(self.note)

        self.sync_from_view()
        self.cmap_box.currentIndexChanged.connect(self._changed)
        self.auto_range.toggled.connect(self._changed)
        self.vmin_spin.valueChanged.connect(self._changed)
        self.vmax_spin.valueChanged.connect(self._changed)
        self.threshold_mode.currentIndexChanged.connect(self._threshold_mode_changed)
        self.threshold_spin.valueChanged.connect(self._changed)
        self.opacity_slider.valueChanged.connect(self._changed)
        self.surface_box.currentIndexChanged.connect(self._surface_changed)
        self.view_box.currentIndexChanged.connect(self._view_changed)
        self.reset_button.clicked.connect(self._reset)
        self.borders_check.toggled.connect(self._changed)
        self.labels_check.toggled.connect(self._changed)
        self.label_count_spin.valueChanged.connect(self._changed)

    @staticmethod
    def _spin(lo: float, hi: float) -> QDoubleSpinBox:
        s = QDoubleSpinBox()
        s.setRange(lo, hi)
        s.setDecimals(3)
        s.setSingleStep(0.01)
        s.setKeyboardTracking(False)
        return s

    def sync_from_view(self) -> None:
        """Show the view's settings (and the map's own range when automatic)."""
        v, st = self.view, self.view.settings
        widgets = (self.cmap_box, self.auto_range, self.vmin_spin, self.vmax_spin, self.threshold_mode,
                   self.threshold_spin, self.opacity_slider, self.surface_box, self.view_box, self.borders_check,
                   self.labels_check, self.label_count_spin)
        for w in widgets:
            w.blockSignals(True)
        self.cmap_box.setCurrentIndex(max(self.cmap_box.findData(st.cmap), 0))
        style = v.current_style
        self.auto_range.setChecked(st.vmax is None)
        self.vmin_spin.setValue(st.vmin if st.vmin is not None else (style.low if style else 0.0))
        self.vmax_spin.setValue(st.vmax if st.vmax is not None else (style.vmax if style else 1.0))
        self.vmin_spin.setEnabled(st.vmax is not None)
        self.vmax_spin.setEnabled(st.vmax is not None)
        mode = "q" if st.q_level is not None else ("value" if st.threshold is not None else "auto")
        self.threshold_mode.setCurrentIndex(self.threshold_mode.findData(mode))
        has_q = v.q_values() is not None
        self.threshold_mode.model().item(2).setEnabled(has_q)
        self.threshold_spin.setValue(st.q_level if mode == "q" else
                                     (st.threshold if st.threshold is not None else (style.threshold if style else 0)))
        self.threshold_spin.setEnabled(mode != "auto")
        self.opacity_slider.setValue(int(round(st.opacity * 100)))
        self.surface_box.clear()
        for k in v.available_surfaces():
            self.surface_box.addItem(SURFACE_TITLES.get(k, k), k)
        self.surface_box.setCurrentIndex(max(self.surface_box.findData(st.surface), 0))
        self.view_box.setCurrentIndex(self.view_box.findData(st.view))
        self.borders_check.setChecked(st.borders)
        self.borders_check.setEnabled(v.atlas_border.size > 0)
        self.labels_check.setChecked(st.labels)
        self.labels_check.setEnabled(v.atlas_border.size > 0)
        self.label_count_spin.setValue(st.label_count)
        self.label_count_spin.setEnabled(v.atlas_border.size > 0)
        for w in widgets:
            w.blockSignals(False)
        self.note.setText("" if has_q else "FDR q: the open result carries no q-values "
                          "(add them with: python main.py stats RESULT.h5, the result's file).")

    def _threshold_mode_changed(self) -> None:
        mode = self.threshold_mode.currentData()
        self.threshold_spin.blockSignals(True)
        if mode == "q":
            self.threshold_spin.setValue(0.05)
        elif mode == "value" and self.view.current_style is not None:
            self.threshold_spin.setValue(self.view.current_style.threshold)
        self.threshold_spin.blockSignals(False)
        self.threshold_spin.setEnabled(mode != "auto")
        self._changed()

    def _changed(self, *_args) -> None:
        manual = not self.auto_range.isChecked()
        self.vmin_spin.setEnabled(manual)
        self.vmax_spin.setEnabled(manual)
        mode = self.threshold_mode.currentData()
        self.view.apply_settings(
            cmap=self.cmap_box.currentData(),
            vmin=self.vmin_spin.value() if manual else None,
            vmax=self.vmax_spin.value() if manual else None,
            threshold=self.threshold_spin.value() if mode == "value" else None,
            q_level=self.threshold_spin.value() if mode == "q" else None,
            opacity=self.opacity_slider.value() / 100.0,
            borders=self.borders_check.isChecked(),
            labels=self.labels_check.isChecked(),
            label_count=self.label_count_spin.value())

    def _surface_changed(self) -> None:
        kind = self.surface_box.currentData()
        if kind:
            self.view.apply_settings(surface=kind)

    def _view_changed(self) -> None:
        name = self.view_box.currentData()
        if name:
            self.view.set_view(name)

    def _save_figure(self) -> None:
        from PySide6.QtWidgets import QFileDialog, QMessageBox

        from engine.errors import AlignScopeError

        from .figure_export import export_views

        v = self.view
        if v.session is None or v.current_values is None or v.current_style is None:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Save cortex figure", "cortex.png", "PNG image (*.png)")
        if not path:
            return
        name = v.settings.view
        try:
            export_views(v.session.surface, v.current_values, v.current_style, path,
                         views=(name, opposite_view(name)), title=v.map_title)
        except (AlignScopeError, OSError) as exc:
            QMessageBox.warning(self, "Save cortex figure", str(exc))

    def _reset(self) -> None:
        self.view.reset_view()
        self.view_box.blockSignals(True)
        self.view_box.setCurrentIndex(self.view_box.findData("lateral"))
        self.view_box.blockSignals(False)


class CortexControlsButton(QToolButton):
    """"Display ▾" beside the layer box: opens the controls as a popup (the pane keeps its size)."""

    def __init__(self, view) -> None:
        super().__init__()
        self.view = view
        self.setText("Display ▾")
        self.setToolTip("Colour map, range, threshold, opacity, surface, view, atlas borders and names")
        self.controls: Optional[CortexControls] = None
        self.clicked.connect(self.show_controls)

    def show_controls(self) -> CortexControls:
        if self.controls is None:
            self.controls = CortexControls(self.view)
            self.controls.setParent(self.window(), Qt.Popup)
        self.controls.sync_from_view()
        self.controls.adjustSize()
        pos = self.mapToGlobal(self.rect().bottomLeft())
        screen = self.screen().availableGeometry() if self.screen() is not None else None
        if screen is not None:   # keep the whole form on screen (the button sits near the right edge)
            pos.setX(max(screen.left(), min(pos.x(), screen.right() - self.controls.width())))
            pos.setY(max(screen.top(), min(pos.y(), screen.bottom() - self.controls.height())))
        self.controls.move(pos)
        self.controls.show()
        return self.controls


__all__ = ["VIEW_DIRECTIONS", "DisplaySettings", "styled", "opposite_view", "CortexControls", "CortexControlsButton",
           "SEQUENTIAL_CMAPS"]


# ---- region picker: search box and grouping by hemisphere and network ---------------------------
def group_regions(names) -> "dict":
    """``{hemisphere: {network: [names]}}`` from atlas names (Schaefer ``7Networks_LH_Vis_1``,
    Destrieux/DK ``lh.superiorfrontal``/``ctx-lh-...``, HCP ``L_V1_ROI``); names without a
    recognisable part go under "both" / "other"."""
    import re

    out: dict = {}
    for name in names:
        n = str(name)
        hemi = "both"
        m = re.search(r"(?:^|[_\-.])(LH|RH|lh|rh|L|R)(?:[_\-.]|$)", n)
        if m:
            hemi = "left" if m.group(1).lower() in ("lh", "l") else "right"
        network = "other"
        m = re.match(r"^\d+Networks_(?:LH|RH)_([A-Za-z]+)", n)
        if m:
            network = m.group(1)
        out.setdefault(hemi, {}).setdefault(network, []).append(n)
    return out


class RegionPicker(QFrame):
    """A search box over the atlas's regions, grouped by hemisphere and network; a double click
    (or Enter) picks one (``picked`` signal)."""

    from PySide6.QtCore import Signal as _Signal

    picked = _Signal(str)

    def __init__(self, names, parent=None) -> None:
        from PySide6.QtWidgets import QLineEdit, QTreeWidget

        super().__init__(parent)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search regions (e.g. Vis, LH, temporal)")
        self.search.setClearButtonEnabled(True)
        self.tree = QTreeWidget()
        self.tree.setHeaderHidden(True)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.addWidget(self.search)
        lay.addWidget(self.tree)
        self.names = [str(n) for n in names]
        self.search.textChanged.connect(self._fill)
        self.search.returnPressed.connect(self._pick_first)
        self.tree.itemActivated.connect(lambda item, _c: self._pick(item))
        self.resize(360, 420)
        self._fill("")

    def _fill(self, text: str) -> None:
        from PySide6.QtWidgets import QTreeWidgetItem

        words = [w.lower() for w in str(text).split()]
        shown = [n for n in self.names if all(w in n.lower() for w in words)]
        self.tree.clear()
        for hemi, networks in sorted(group_regions(shown).items()):
            h = QTreeWidgetItem([f"{hemi} hemisphere" if hemi != "both" else "both / unknown"])
            self.tree.addTopLevelItem(h)
            for network, regions in sorted(networks.items()):
                parent = h
                if len(networks) > 1 or network != "other":
                    parent = QTreeWidgetItem([f"{network} ({len(regions)})"])
                    h.addChild(parent)
                for r in regions:
                    leaf = QTreeWidgetItem([r])
                    leaf.setData(0, Qt.UserRole, r)
                    parent.addChild(leaf)
        if words:
            self.tree.expandAll()
        self.shown = shown

    def _pick(self, item) -> None:
        name = item.data(0, Qt.UserRole)
        if name:
            self.picked.emit(str(name))

    def _pick_first(self) -> None:
        if getattr(self, "shown", None):
            self.picked.emit(self.shown[0])
