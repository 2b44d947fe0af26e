"""Cortex controls (colour map, range, threshold by value or FDR q, opacity, surface, preset
views, atlas borders, camera state) and two maps side by side with a difference map.

One cortex view is built per module (meshes take seconds on a loaded machine); each test sets
what it needs and checks the colours written into the meshes or the pixels rendered.
"""

import gc

import numpy as np
import pytest

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def cortex(synthetic, qapp):
    from engine.state import AppState
    from gui.cortex_view import CortexView, live_plotter_count
    from tests.gui.synthetic import make_session

    session = make_session(synthetic)
    state = AppState(session.timeline())
    view = CortexView(state, session, interactive=False)
    view.resize(640, 560)
    view.show()
    qapp.processEvents()
    view._apply_resize()
    yield view
    view.close()
    view.deleteLater()
    session.close()
    qapp.processEvents()
    gc.collect()
    assert live_plotter_count() == 0


def _rgb_on_mesh(view) -> np.ndarray:
    """What VTK will draw: the RGB arrays of both hemispheres' meshes, (n_vertices, 3)."""
    parts = dict((h, np.asarray(ds.point_data["rgb"])) for h, ds in view._datasets)
    return np.concatenate([parts["left"], parts["right"]])


def _reset(view):
    from gui.cortex_controls import DisplaySettings

    view.settings = DisplaySettings()
    view.set_view("lateral", render=False)


def test_threshold_by_value_hides_vertices_under_it(cortex):
    from gui.colormaps import MapStyle

    _reset(cortex)
    n = cortex.session.surface.n_vertices
    values = np.linspace(-1.0, 1.0, n).astype(np.float32)
    cortex.set_map(values, MapStyle(vmax=1.0, threshold=0.1, signed=True), "planted ramp")
    background = (np.clip(cortex._background, 0, 1) * 255 + 0.5).astype(np.uint8)
    before = _rgb_on_mesh(cortex)
    assert not np.array_equal(before[np.abs(values) >= 0.3], background[np.abs(values) >= 0.3])
    cortex.apply_settings(threshold=0.6)
    rgb = _rgb_on_mesh(cortex)
    under = np.abs(values) < 0.6
    np.testing.assert_array_equal(rgb[under], background[under])           # grey cortex under the threshold
    over = np.abs(values) >= 0.6
    assert (np.abs(rgb[over].astype(int) - background[over]).sum(1) > 30).mean() > 0.95
    assert cortex.current_style.threshold == 0.6


def test_diverging_colour_map_range_and_opacity(cortex):
    from engine.session.colour import _RDBU_R
    from gui.colormaps import MapStyle

    _reset(cortex)
    values = np.zeros(cortex.session.surface.n_vertices, np.float32)
    values[:10], values[10:20] = 2.0, -2.0
    cortex.set_map(values, MapStyle(vmax=1.0, threshold=0.05, signed=True), "signed")
    cortex.apply_settings(cmap="RdBu_r", vmin=-2.0, vmax=2.0)
    rgb = _rgb_on_mesh(cortex)
    np.testing.assert_array_equal(rgb[0], (_RDBU_R[-1] * 255 + 0.5).astype(np.uint8))   # +vmax: darkest red
    np.testing.assert_array_equal(rgb[10], (_RDBU_R[0] * 255 + 0.5).astype(np.uint8))   # -vmax: darkest blue
    cortex.apply_settings(opacity=0.5)
    half = _rgb_on_mesh(cortex)[0].astype(float)
    expected = 0.5 * cortex._background[0] * 255 + 0.5 * _RDBU_R[-1] * 255
    np.testing.assert_allclose(half, expected, atol=1.0)
    assert cortex.colorbar.style_.cmap == "RdBu_r" and cortex.colorbar.style_.vmax == 2.0   # the bar follows


def test_fdr_q_threshold_keeps_only_significant_vertices(cortex):
    _reset(cortex)
    session = cortex.session
    result = session.result
    n = session.surface.n_vertices
    q = np.ones(n)
    q[: n // 2] = 0.01
    had = getattr(result, "q_values", None)
    result.q_values = q
    try:
        cortex.state.layer = "score"
        cortex.refresh(force=True)
        cortex.apply_settings(threshold=0.0)           # every finite score coloured...
        shown = _rgb_on_mesh(cortex)
        cortex.apply_settings(q_level=0.05)            # ...then only q <= 0.05
        rgb = _rgb_on_mesh(cortex)
        background = (np.clip(cortex._background, 0, 1) * 255 + 0.5).astype(np.uint8)
        np.testing.assert_array_equal(rgb[n // 2:], background[n // 2:])
        np.testing.assert_array_equal(rgb[: n // 2], shown[: n // 2])
        assert "FDR" in cortex.colorbar.title
        assert "q = 0.01" in cortex.describe_vertex(0)
    finally:
        result.q_values = had
        cortex.apply_settings(q_level=None, threshold=None)


def _planted_ventral_occipital(surface) -> np.ndarray:
    """1 on the lowest, most posterior vertices of each hemisphere (ventral occipital cortex)."""
    values = np.zeros(surface.n_vertices, np.float32)
    for h, off in ((surface.left, 0), (surface.right, surface.n_left)):
        c = np.asarray(h.coords)
        y_cut = np.percentile(c[:, 1], 30)
        z_cut = np.percentile(c[:, 2], 25)
        values[off + np.flatnonzero((c[:, 1] < y_cut) & (c[:, 2] < z_cut))] = 1.0
    return values


def _red_fraction(img: np.ndarray) -> float:
    r, g, b = (img[..., i].astype(int) for i in range(3))
    return float(((r > g + 60) & (r > b + 40)).mean())


def test_ventral_view_shows_the_planted_occipital_map_from_below(cortex):
    from gui.colormaps import MapStyle

    _reset(cortex)
    values = _planted_ventral_occipital(cortex.session.surface)
    cortex.set_map(values, MapStyle(vmax=1.0, threshold=0.5, signed=False, cmap="RdBu_r"), "planted")
    cortex.set_view("ventral")
    img = cortex.image()
    h, w = img.shape[:2]
    top = img[: h // 2]                         # top row: ventral view of each hemisphere
    bottom = img[h // 2:]                       # bottom row: dorsal view
    assert _red_fraction(top) > 0.01
    assert _red_fraction(bottom) < 0.2 * _red_fraction(top)
    # anterior is up in the ventral view: the occipital map sits in the lower part of each viewport
    r, g, b = (top[..., i].astype(int) for i in range(3))
    rows = np.flatnonzero(((r > g + 60) & (r > b + 40)).any(1))
    assert rows.mean() > 0.5 * top.shape[0]
    assert [s for _h, s, _r in cortex._renderers] == ["ventral", "ventral", "dorsal", "dorsal"]
    cortex.reset_view()
    assert [s for _h, s, _r in cortex._renderers] == ["lateral", "lateral", "medial", "medial"]
    from engine.errors import ConfigError

    with pytest.raises(ConfigError, match="expected one of"):
        cortex.set_view("sideways")


def test_surface_switch_writes_points_in_place_and_camera_state_round_trips(cortex):
    from engine.io.surfaces import load_fsaverage5

    _reset(cortex)
    plotter = cortex.plotter
    assert cortex.available_surfaces()[:2] == ["inflated", "pial"]
    cortex.apply_settings(surface="pial")
    pial = load_fsaverage5("pial")
    left = next(ds for h, ds in cortex._datasets if h == "left")
    np.testing.assert_allclose(np.asarray(left.points), pial.left.coords, atol=1e-4)
    cortex.apply_settings(surface="flat")
    flat = load_fsaverage5("flat")
    assert left.n_cells == flat.left.faces.shape[0]
    cortex.apply_settings(surface="inflated")
    np.testing.assert_allclose(np.asarray(left.points), load_fsaverage5("inflated").left.coords, atol=1e-4)
    assert cortex.plotter is plotter                  # the same meshes, new points
    saved = cortex.camera_state()
    cortex._renderers[0][2].camera.Azimuth(40)
    moved = list(cortex._renderers[0][2].camera.position)
    cortex.set_camera_state(saved)
    np.testing.assert_allclose(cortex._renderers[0][2].camera.position, saved["cameras"][0]["position"])
    assert not np.allclose(moved, saved["cameras"][0]["position"])


def test_atlas_borders_and_hover_text(cortex):
    from gui.colormaps import MapStyle
    from gui.cortex_view import ATLAS_BORDER_RGB

    _reset(cortex)
    labels = np.asarray(cortex.session.atlas.labels)
    assert cortex.atlas_border.size > 0
    b = cortex.atlas_border
    _coords, faces = cortex.session.surface.combined()
    # every border vertex has a face whose labels differ
    fl = labels[faces]
    mixed = faces[(fl != fl[:, :1]).any(1)]
    assert np.isin(b, mixed.ravel()).all()
    values = np.full(labels.size, 0.8, np.float32)
    cortex.set_map(values, MapStyle(vmax=1.0, threshold=0.1, signed=False), "flat value")
    cortex.apply_settings(borders=True)
    rgb = _rgb_on_mesh(cortex)
    assert (rgb[b] == ATLAS_BORDER_RGB).all()
    inside = np.setdiff1d(np.arange(labels.size), b)
    assert not (rgb[inside] == ATLAS_BORDER_RGB).all(1).any()
    v = int(np.flatnonzero(labels > 0)[0])
    text = cortex.describe_vertex(v)
    assert cortex.session.region_of_vertex(v) in text and "value = 0.800" in text
    cortex.apply_settings(borders=False)


def test_layer_box_names_a_map_from_another_pane_and_goes_back(cortex):
    from gui.colormaps import MapStyle

    _reset(cortex)
    cortex.state.layer = "score"
    cortex.refresh(force=True)
    assert cortex.layer_box.currentData() == "score"
    cortex.set_map(np.ones(cortex.session.surface.n_vertices, np.float32),
                   MapStyle(vmax=2.0, threshold=0.0, signed=False), "tSNR (temporal SNR)")
    assert cortex.layer_box.currentText() == "tSNR" and cortex.external_map
    cortex.layer_box.setCurrentIndex(cortex.layer_box.findData("score"))
    assert not cortex.external_map and cortex.layer_box.findData("__external__") < 0
    np.testing.assert_array_equal(cortex.current_values, cortex.session.score_map())


def test_controls_form_drives_the_view(cortex, qtbot):
    from gui.cortex_controls import CortexControls

    _reset(cortex)
    cortex.state.layer = "score"
    cortex.refresh(force=True)
    form = CortexControls(cortex)
    qtbot.addWidget(form)
    form.cmap_box.setCurrentIndex(form.cmap_box.findData("viridis"))
    assert cortex.current_style.cmap == "viridis"
    form.threshold_mode.setCurrentIndex(form.threshold_mode.findData("value"))
    form.threshold_spin.setValue(0.25)
    assert cortex.current_style.threshold == pytest.approx(0.25)
    form.opacity_slider.setValue(40)
    assert cortex.current_style.opacity == pytest.approx(0.4)
    form.view_box.setCurrentIndex(form.view_box.findData("posterior"))
    assert cortex.settings.view == "posterior"
    form.reset_button.click()
    assert cortex.settings.view == "lateral"
    form.close()


def test_two_maps_side_by_side_linked_cameras_and_difference(cortex, qtbot):
    from engine.session.colour import difference_map

    surface = cortex.session.surface
    a = cortex.session.score_map()
    b = np.roll(a, 500) * 0.5
    pair = cortex.show_pair(a, b, titles=("model A", "model B"))
    qtbot.addWidget(pair)
    np.testing.assert_array_equal(pair.maps[2], a - b)
    np.testing.assert_array_equal(difference_map(a, b), a - b)
    assert pair.styles[0] is pair.styles[1]            # one colour scale for A and B
    assert pair.styles[2].cmap == "RdBu_r"
    # a vertex where only A is strong: coloured in A, grey in B
    from gui.colormaps import map_rgb

    np.testing.assert_array_equal(pair.colors_of(0), map_rgb(a, pair.styles[0], pair._background))
    np.testing.assert_array_equal(pair.colors_of(2), map_rgb(a - b, pair.styles[2], pair._background))
    cams = pair.cameras()
    assert cams[0] is cams[1] is cams[2] and cams[3] is cams[4] is cams[5] and cams[0] is not cams[3]
    before = np.array(cams[1].GetPosition())
    cams[0].Azimuth(30)
    assert not np.allclose(before, cams[1].GetPosition())   # turning A turns B
    img = pair.image()
    assert img.shape[1] >= 600 and len(np.unique(img.reshape(-1, 3), axis=0)) > 50
    from engine.errors import ConfigError

    with pytest.raises(ConfigError, match="expected two maps"):
        pair.show_pair(a, b[:10])
    cortex.close_view_pair = None
    pair.close()


def _display_xy(view, viewport: int, vertex: int):
    """Image pixel (column, row) where ``vertex`` is drawn in viewport ``viewport``."""
    hemi, _side, ren = view._renderers[viewport]
    ds = next(d for h, d in view._datasets if h == hemi)
    p = ds.points[vertex - (0 if hemi == "left" else view._n_left)]
    ren.SetWorldPoint(float(p[0]), float(p[1]), float(p[2]), 1.0)
    ren.WorldToDisplay()
    x, y, _ = ren.GetDisplayPoint()
    return int(round(x)), int(round(view.plotter.window_size[1] - 1 - y))


def test_atlas_region_labels_name_the_largest_regions_facing_each_view(cortex, qtbot):
    from gui.colormaps import MapStyle
    from gui.cortex_controls import CortexControls
    from gui.cortex_view import short_region_name

    assert short_region_name("7Networks_LH_Vis_1") == "Vis 1"
    assert short_region_name("17Networks_RH_DefaultA_pCunPCC_2") == "DefaultA pCunPCC 2"
    _reset(cortex)
    labels = np.asarray(cortex.session.atlas.labels)
    cortex.set_map(np.full(labels.size, 0.8, np.float32), MapStyle(vmax=1.0, threshold=0.1, signed=False), "flat")
    plain = cortex.image()
    form = CortexControls(cortex)
    qtbot.addWidget(form)
    form.label_count_spin.setValue(1)            # only the largest region facing each view
    form.labels_check.setChecked(True)
    assert cortex.settings.labels and cortex.settings.label_count == 1
    shot = cortex.image()
    coords = np.concatenate([np.asarray(next(d for h, d in cortex._datasets if h == hemi).points)
                             for hemi in ("left", "right")])
    normals = np.concatenate([np.asarray(next(d for h, d in cortex._datasets if h == hemi).point_data["Normals"])
                              for hemi in ("left", "right")])
    n_left = cortex.session.surface.n_left
    named_views = 0
    for i, (hemi, side, ren) in enumerate(cortex._renderers):
        shown = cortex.region_labels_shown[i]
        toward = -np.asarray(ren.GetActiveCamera().GetDirectionOfProjection())
        # independently: each region's vertex nearest its centre, the regions of this hemisphere
        # whose centre faces this camera, largest first
        facing = []
        for k in np.unique(labels[labels > 0]):
            members = np.flatnonzero(labels == k)
            anchor = members[np.argmin(((coords[members] - coords[members].mean(0)) ** 2).sum(1))]
            name = cortex.session.atlas.names[k - 1]
            if (anchor < n_left) == (hemi == "left") and normals[anchor] @ toward > 0.35 and \
                    cortex._label_fits(ren, coords[anchor], short_region_name(name)):
                facing.append((members.size, int(anchor), name))
        facing.sort(key=lambda t: -t[0])
        want = [(short_region_name(name), anchor) for _size, anchor, name in facing[:1]]
        assert shown == want, (hemi, side)
        if shown:
            named_views += 1
            # the name is drawn where the region is: pixels change around its centre
            x, y = _display_xy(cortex, i, shown[0][1])
            x0, y0, x1, y1 = ren.GetViewport()          # the name's box lies inside its viewport
            w, h = cortex.plotter.window_size
            half = 0.5 * 0.62 * 13 * len(shown[0][0])
            assert x0 * w <= x - half and x + half <= x1 * w and (1 - y1) * h <= y - 8 and y + 8 <= (1 - y0) * h
            box = (slice(max(y - 8, 0), y + 9), slice(max(x - 25, 0), x + 26))
            changed = (np.abs(shot[box].astype(int) - plain[box]).sum(-1) > 40).sum()
            assert changed > 20, (side, changed)
    assert named_views >= 2
    # the selected region is named too, even when it is not the largest
    left_regions = [k for k in np.unique(labels[labels > 0]) if (np.flatnonzero(labels == k) < n_left).all()]
    other = next(cortex.session.atlas.names[k - 1] for k in left_regions
                 if short_region_name(cortex.session.atlas.names[k - 1])
                 not in [t for t, _v in cortex.region_labels_shown[0]])
    cortex.state.select_region(other)
    assert short_region_name(other) in [t for t, _v in cortex.region_labels_shown[0]]
    cortex.state.target = None
    assert short_region_name(other) not in [t for t, _v in cortex.region_labels_shown[0]]
    # turning the camera places the labels again for what now faces it
    before = list(cortex.region_labels_shown[0])
    cortex.set_view("medial")
    assert cortex.region_labels_shown[0] != before
    form.labels_check.setChecked(False)
    assert all(not s for s in cortex.region_labels_shown)
    cortex.set_view("lateral")
    np.testing.assert_array_equal(cortex.image(), plain)   # labels off: the image is as before
    form.close()


def test_closed_surfaces_cull_back_faces_and_the_baked_headlight_matches_vtks(cortex):
    """The cheap path keeps the picture: back faces culled (closed surfaces) and the headlight
    computed per vertex into the colours give what VTK's own lighting and both faces give."""
    from gui.colormaps import MapStyle

    _reset(cortex)
    n = cortex.session.surface.n_vertices
    cortex.set_map(np.linspace(0, 1, n).astype(np.float32), MapStyle(vmax=1.0, threshold=0.1, signed=False), "ramp")
    props = [a.GetProperty() for a in cortex._mesh_actors]
    assert len(props) == 4 and all(p.GetBackfaceCulling() for p in props)
    assert not any(p.GetLighting() for p in props)
    culled = cortex.image()
    for p in props:
        p.BackfaceCullingOff()
    both_sides = cortex.image()
    for p in props:
        p.BackfaceCullingOn()
    # the same picture (a silhouette pixel or two may differ): the faces point outwards; faces
    # pointing inwards would have culled the whole visible side
    differ = (np.abs(culled.astype(int) - both_sides).sum(-1) > 0).sum()
    assert differ <= 1e-4 * culled.shape[0] * culled.shape[1], differ
    # the lit colours are the map's colours x (ambient + diffuse x cos): on a vertex facing the camera,
    # rgb x (0.12 + 0.72); and the image equals VTK lighting the unshaded colours with a headlight
    rec = cortex._shading[0]
    ds = next(d for h, d in cortex._datasets if h == rec["hemi"])
    rgb, lit = np.asarray(ds.point_data["rgb"], float), np.asarray(rec["ds"].point_data["lit"], float)
    toward = -np.asarray(cortex._renderers[0][2].GetActiveCamera().GetDirectionOfProjection())
    cos = np.asarray(ds.point_data["Normals"]) @ toward
    front = cos > 0.999
    assert front.any() and np.abs(lit[front] - rgb[front] * 0.84).max() <= 1.0
    baked = culled
    saved = cortex._shade_viewport
    try:
        cortex._shade_viewport = lambda *a, **k: None
        for rec in cortex._shading:
            src = next(d for h, d in cortex._datasets if h == rec["hemi"])
            rec["ds"].point_data["lit"][:] = src.point_data["rgb"]
            rec["ds"].point_data["lit"] = rec["ds"].point_data["lit"]
        for p in props:
            p.LightingOn()
            p.SetAmbient(cortex.AMBIENT)
            p.SetDiffuse(cortex.DIFFUSE)
        vtk_lit = cortex.image()
    finally:
        del cortex._shade_viewport
        assert cortex._shade_viewport == saved
        for p in props:
            p.LightingOff()
            p.SetAmbient(0.0)
            p.SetDiffuse(1.0)
        for i in range(len(cortex._shading)):
            cortex._shade_viewport(i, force=True)
    d = np.abs(baked.astype(int) - vtk_lit).mean(-1)
    assert d.mean() < 1.0 and np.percentile(d, 99) < 8, (d.mean(), np.percentile(d, 99))
    np.testing.assert_array_equal(cortex.image(), baked)     # and back as it was
