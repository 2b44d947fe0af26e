"""Surfaces and atlases: bundled files checked against ENIGMA's originals and nilearn."""

import hashlib
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from engine.errors import ConfigError, DataError, MismatchError
from engine.io import atlases as atl
from engine.io import surfaces as surf
from engine.io.surfaces import cortex_mask, load_fsaverage5, load_fslr32k, load_surface, read_gifti_mesh

REPO = Path(__file__).resolve().parents[2]

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
ENIGMA = DATA / "surfaces_enigma"
needs_enigma = pytest.mark.skipif(not ENIGMA.is_dir(), reason="../shared/data/surfaces_enigma absent")


# ---- meshes ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["inflated", "pial", "sphere", "white"])
def test_fsaverage5_meshes(kind):
    s = load_fsaverage5(kind)
    assert s.n_vertices == 20484 and s.n_left == 10242
    for hemi in (s.left, s.right):
        assert hemi.coords.shape == (10242, 3) and hemi.coords.dtype == np.float32
        assert hemi.faces.shape == (20480, 3) and hemi.faces.dtype == np.int64
        assert hemi.faces.max() == 10241
    coords, faces = s.combined()
    assert faces.max() == 20483 and coords.shape == (20484, 3)
    assert s.sulc is not None and s.sulc.shape == (20484,)
    # sulcal depth: gyri and sulci both present
    assert (s.sulc > 0).mean() > 0.2 and (s.sulc < 0).mean() > 0.2
    # curvature follows sulcal depth (both positive in sulci in FreeSurfer's convention)
    assert s.curv is not None and s.curv.shape == (20484,) and np.corrcoef(s.sulc, s.curv)[0, 1] > 0.5
    for hemi in (s.left, s.right):  # closed triangulated spheres: V - E + F = 2
        assert hemi.n_vertices - 3 * hemi.n_faces // 2 + hemi.n_faces == 2
    if kind == "sphere":
        r = np.linalg.norm(s.left.coords, axis=1)
        assert np.allclose(r, 100, atol=1.0)  # FreeSurfer sphere radius 100 mm
    if kind == "pial":  # left hemisphere lies at negative x
        assert np.median(s.left.coords[:, 0]) < 0 < np.median(s.right.coords[:, 0])


def _nilearn_fsaverage5():
    """nilearn's own copy, read through its public API (the reference the bundle must equal)."""
    from nilearn import datasets

    bunch = datasets.load_fsaverage("fsaverage5")
    data = {name: datasets.load_fsaverage_data(mesh="fsaverage5", mesh_type="pial", data_type=dt)
            for name, dt in (("sulc", "sulcal"), ("curv", "curvature"))}
    return bunch, data


def test_bundled_fsaverage5_equals_nilearn():
    """Every mesh, triangle and per-vertex value of the bundle is nilearn's, to float32 precision."""
    bunch, data = _nilearn_fsaverage5()
    assert surf.fsaverage5_source() == "bundle"
    for kind, key in (("pial", "pial"), ("inflated", "inflated"), ("sphere", "sphere"),
                      ("white", "white_matter"), ("flat", "flat")):
        ours = load_fsaverage5(kind)
        for part in ("left", "right"):
            ref = bunch[key].parts[part]
            hemi = getattr(ours, part)
            np.testing.assert_array_equal(hemi.coords, np.asarray(ref.coordinates, dtype=np.float32), err_msg=kind)
            np.testing.assert_array_equal(hemi.faces, np.asarray(ref.faces), err_msg=kind)
        for name in ("sulc", "curv"):
            want = np.concatenate([np.asarray(data[name].data.parts[p], dtype=np.float32).ravel()
                                   for p in ("left", "right")])
            np.testing.assert_array_equal(getattr(ours, name), want, err_msg=name)
    flat = load_fsaverage5("flat")   # the flat patch is cut: fewer triangles than the closed mesh
    assert flat.left.n_faces == np.asarray(bunch["flat"].parts["left"].faces).shape[0] < 20480


def test_loading_imports_no_nilearn_or_sklearn():
    """Opening a project's meshes and atlases stays import-light (no nilearn, sklearn, scipy, nibabel)."""
    code = (
        "import sys\n"
        "from engine.io.surfaces import load_fsaverage5, cortex_mask, fsaverage5_source\n"
        "from engine.io.atlases import load_atlas, list_atlases\n"
        "for k in ('inflated', 'pial', 'sphere', 'white', 'flat'):\n"
        "    assert load_fsaverage5(k).n_vertices == 20484\n"
        "for name in list_atlases():\n"
        "    load_atlas(name, 'fsaverage5'); load_atlas(name, 'fsLR32k')\n"
        "cortex_mask('fsaverage5')\n"
        "print(fsaverage5_source(), sorted(m for m in ('nilearn', 'sklearn', 'scipy', 'nibabel', 'pandas')"
        " if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["bundle", "[]"], out.stdout


def test_loaded_surfaces_and_atlases_are_cached_and_read_only():
    s = load_fsaverage5("inflated")
    assert load_fsaverage5("inflated") is s and load_surface("fsaverage5") is s
    arrays = [s.left.coords, s.left.faces, s.right.coords, s.right.faces, s.sulc, s.curv]
    assert not any(a.flags.writeable for a in arrays)
    with pytest.raises(ValueError, match="read-only"):
        s.left.coords[0, 0] = 0.0
    with pytest.raises(ValueError, match="read-only"):
        s.sulc[:] = 0.0
    # every kind shares one sulcal-depth array and the closed meshes share one triangle array
    assert load_fsaverage5("pial").sulc is s.sulc and load_fsaverage5("pial").left.faces is s.left.faces
    a, b = atl.load_atlas("schaefer400"), atl.load_atlas("Schaefer_400", "fsaverage5")
    assert a.labels is b.labels and not a.labels.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        a.labels[0] = 3
    a.names[0] = "renamed"             # an Atlas's names are its own: the cache is not touched
    assert b.names[0] != "renamed" and atl.load_atlas("schaefer400").names[0] != "renamed"


@pytest.fixture
def fresh_fsaverage5_caches():
    caches = [surf._fsaverage5, surf._fsaverage5_array, surf.fsaverage5_sulc, surf.fsaverage5_curv]
    for c in caches:
        c.cache_clear()
    yield
    for c in caches:
        c.cache_clear()


@pytest.mark.parametrize("bundle", ["missing", "garbage"])
def test_fsaverage5_falls_back_to_nilearn_without_the_bundle(tmp_path, monkeypatch, fresh_fsaverage5_caches, bundle):
    good = {k: load_fsaverage5(k) for k in ("inflated", "flat")}
    for c in (surf._fsaverage5, surf._fsaverage5_array, surf.fsaverage5_sulc, surf.fsaverage5_curv):
        c.cache_clear()
    path = tmp_path / "fsaverage5.npz"
    if bundle == "garbage":
        path.write_bytes(b"version https://git-lfs.github.com/spec/v1\n")   # an LFS pointer, say
    monkeypatch.setattr(surf, "FSAVERAGE5_BUNDLE", path)
    assert surf.fsaverage5_source() == "nilearn"
    for kind, want in good.items():
        got = load_fsaverage5(kind)
        assert got is not want
        for part in ("left", "right"):
            np.testing.assert_array_equal(getattr(got, part).coords, getattr(want, part).coords)
            np.testing.assert_array_equal(getattr(got, part).faces, getattr(want, part).faces)
            assert not getattr(got, part).coords.flags.writeable
        np.testing.assert_array_equal(got.sulc, want.sulc)
        np.testing.assert_array_equal(got.curv, want.curv)


def test_make_fsaverage5_rebuilds_the_same_bytes(tmp_path):
    """The bundle is what its script writes from this nilearn (byte for byte: fixed zip dates)."""
    import importlib.util

    import nilearn

    bundled = surf.SURFACES_DIR / "fsaverage5.npz"
    with np.load(bundled) as d:
        built_with = str(d["nilearn_version"])
    if built_with != nilearn.__version__:
        pytest.skip(f"bundle built with nilearn {built_with}, this is {nilearn.__version__}")
    spec = importlib.util.spec_from_file_location("make_fsaverage5", surf.SURFACES_DIR / "make_fsaverage5.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = mod.main(tmp_path / "fsaverage5.npz")
    assert hashlib.sha256(out.read_bytes()).hexdigest() == hashlib.sha256(bundled.read_bytes()).hexdigest()
    assert bundled.stat().st_size < 3e6


def test_unknown_kind_lists_choices():
    with pytest.raises(ConfigError, match="inflated"):
        load_fsaverage5("wobbly")
    with pytest.raises(ConfigError, match="fsaverage5"):
        load_surface("fsaverage7")


def test_fslr32k_bundled_mesh():
    s = load_fslr32k()
    assert s.n_vertices == 64984
    assert s.left.coords.shape == (32492, 3) and s.left.faces.shape == (64980, 3)
    # a closed triangulated sphere-like surface: V - E + F = 2 (E = 3F/2)
    for h in (s.left, s.right):
        assert h.n_vertices - 3 * h.n_faces // 2 + h.n_faces == 2
    assert np.median(s.left.coords[:, 0]) < 0 < np.median(s.right.coords[:, 0])
    assert cortex_mask("fsLR32k").sum() == 64984 - 6426


@needs_enigma
def test_enigma_fsaverage5_matches_nilearn_topology():
    """ENIGMA's fsa5 mesh and nilearn's fsaverage5 share vertex count and triangles."""
    for h, part in (("lh", "left"), ("rh", "right")):
        mesh = read_gifti_mesh(ENIGMA / f"fsa5_{h}.gii")
        assert mesh.n_vertices == 10242 and mesh.n_faces == 20480
        ours = getattr(load_fsaverage5("pial"), part)
        assert np.array_equal(np.sort(np.sort(mesh.faces, 1), 0), np.sort(np.sort(ours.faces, 1), 0))
        sphere = read_gifti_mesh(ENIGMA / f"fsa5_sphere_{h}.gii")
        assert sphere.n_vertices == 10242


def test_gifti_mesh_errors(tmp_path):
    bad = tmp_path / "bad.gii"
    bad.write_bytes(b"<GIFTI garbage")
    with pytest.raises(DataError, match="expected a GIFTI surface file"):
        read_gifti_mesh(bad)
    # a functional GIFTI is not a mesh
    img = nib.GiftiImage(darrays=[nib.gifti.GiftiDataArray(np.zeros(10, np.float32))])
    nib.save(img, tmp_path / "f.func.gii")
    with pytest.raises(DataError, match="POINTSET"):
        read_gifti_mesh(tmp_path / "f.func.gii")
    # faces pointing past the vertices
    arrays = [nib.gifti.GiftiDataArray(np.zeros((3, 3), np.float32), intent="NIFTI_INTENT_POINTSET"),
              nib.gifti.GiftiDataArray(np.array([[0, 1, 5]], np.int32), intent="NIFTI_INTENT_TRIANGLE")]
    nib.save(nib.GiftiImage(darrays=arrays), tmp_path / "m.surf.gii")
    with pytest.raises(DataError, match=r"indices in \[0, 5\]"):
        read_gifti_mesh(tmp_path / "m.surf.gii")


# ---- bundled atlases ---------------------------------------------------------------------
EXPECTED = {"schaefer100": 100, "schaefer200": 200, "schaefer400": 400, "glasser360": 360, "aparc": 68}


@pytest.mark.parametrize("name", list(EXPECTED))
@pytest.mark.parametrize("space", ["fsaverage5", "fsLR32k"])
def test_bundled_atlas_shapes_and_hemispheres(name, space):
    a = atl.load_atlas(name, space)
    n = {"fsaverage5": 20484, "fsLR32k": 64984}[space]
    assert a.n_vertices == n and a.n_parcels == EXPECTED[name]
    counts = a.vertices_per_parcel()
    assert (counts > 0).all(), "every parcel has vertices"
    half = n // 2
    left, right = a.labels[:half], a.labels[half:]
    k = EXPECTED[name] // 2
    assert left.max() <= k and (right[right > 0] > k).all(), "left parcels on the left only"
    assert all(nm.replace("7Networks_", "").startswith(("L", "lh")) for nm in a.names[:k])
    assert 0.05 < a.medial_wall.mean() < 0.15


@needs_enigma
@pytest.mark.parametrize("name,stem", [("schaefer100", "schaefer_100"), ("schaefer400", "schaefer_400"),
                                       ("glasser360", "glasser_360")])
def test_bundled_labels_equal_enigma_csv(name, stem):
    for space, tag in (("fsaverage5", "fsa5"), ("fsLR32k", "conte69")):
        src = np.loadtxt(ENIGMA / f"{stem}_{tag}.csv", dtype=np.int64)
        ours = atl.load_atlas(name, space).labels
        if name == "glasser360":  # the quirk: right vertices with left label 180 became 0
            half = src.size // 2
            quirk = np.flatnonzero(src[half:] == 180) + half
            assert quirk.size == {"fsaverage5": 17, "fsLR32k": 63}[space]
            assert (ours[quirk] == 0).all()
            src[quirk] = 0
        assert np.array_equal(ours, src)
    names = np.loadtxt(ENIGMA / f"funcLabels_ctx_{stem}.csv", dtype=str, delimiter=",").tolist()
    assert atl.load_atlas(name).names == names


@needs_enigma
def test_aparc_names_sit_where_the_anatomy_is():
    a = atl.load_atlas("aparc", "fsaverage5")
    coords, _ = load_fsaverage5("pial").combined()

    def centroid(region):
        return coords[a.labels == a.parcel_index(region)].mean(0)

    assert centroid("L_lateraloccipital")[1] < -70          # occipital pole
    assert centroid("L_frontalpole")[1] > 50
    ins = centroid("L_insula")
    assert -45 < ins[0] < -25 and abs(ins[1]) < 20
    assert centroid("R_insula")[0] > 25
    assert centroid("L_superiortemporal")[2] < centroid("L_superiorparietal")[2] - 30
    # the medial wall (incl. ENIGMA's corpus-callosum label) equals ENIGMA's cortex mask
    assert np.array_equal(a.medial_wall, ~cortex_mask("fsaverage5"))
    assert a.medial_wall.sum() == 2058
    assert a.names[:3] == ["L_bankssts", "L_caudalanteriorcingulate", "L_caudalmiddlefrontal"]


def test_parcel_vertex_round_trip_and_nan_safe_means():
    a = atl.load_atlas("schaefer200", "fsaverage5")
    rng = np.random.default_rng(0)
    p = rng.normal(size=(3, 200)).astype(np.float32)
    v = a.parcel_to_vertex(p)
    assert v.shape == (3, 20484) and np.isnan(v[:, a.medial_wall]).all()
    assert np.allclose(a.vertex_to_parcel(v), p)
    # NaN-safe mean against a brute-force loop
    x = rng.normal(size=20484)
    x[rng.random(20484) < 0.3] = np.nan
    parcel5 = np.flatnonzero(a.labels == 5)
    x[parcel5] = np.nan                                    # a parcel with no finite value
    got = a.vertex_to_parcel(x)
    want = np.array([np.nanmean(x[a.labels == k]) if np.isfinite(x[a.labels == k]).any() else np.nan
                     for k in range(1, 201)])
    assert np.allclose(got, want, equal_nan=True) and np.isnan(got[4])
    assert a.parcel_at_vertex(parcel5[0]) == 5
    assert a.name_at_vertex(parcel5[0]) == a.names[4]
    with pytest.raises(MismatchError, match="200 parcels"):
        a.parcel_to_vertex(np.zeros(100))
    with pytest.raises(MismatchError, match="20484 vertices"):
        a.vertex_to_parcel(np.zeros(64984))
    with pytest.raises(DataError, match="0..20483"):
        a.parcel_at_vertex(20484)


def test_unknown_atlas_lists_bundled_names():
    with pytest.raises(ConfigError, match="schaefer400"):
        atl.load_atlas("yeo17")
    assert atl.load_atlas("Schaefer-400").n_parcels == 400
    assert atl.load_atlas("builtin:schaefer_400").name == "schaefer400"


# ---- user atlases ----------------------------------------------------------------------
def test_annot_pair_round_trip(tmp_path):
    ref = atl.load_atlas("schaefer100", "fsaverage5")
    rng = np.random.default_rng(1)
    for h, sl, names in (("lh", slice(0, 10242), ref.names[:50]), ("rh", slice(10242, None), ref.names[50:])):
        lab = ref.labels[sl].copy()
        if h == "rh":
            lab[lab > 0] -= 50
        ctab = np.column_stack([rng.integers(0, 255, (51, 3)), np.zeros(51), np.arange(51)]).astype(np.int32)
        nib.freesurfer.write_annot(str(tmp_path / f"{h}.test.annot"), lab.astype(np.int32), ctab,
                                   ["unknown"] + [n.replace("7Networks_", "") for n in names], fill_ctab=True)
    a = atl.load_atlas(tmp_path / "lh.test.annot", "fsaverage5")
    assert a.space == "fsaverage5" and a.n_parcels == 100
    assert np.array_equal(a.labels, ref.labels)
    assert a.names[0] == "L_LH_Vis_1" and a.names[50] == "R_RH_Vis_1"


def test_label_gifti_and_dlabel(tmp_path):
    ref = atl.load_atlas("schaefer100", "fsLR32k")
    half = 32492
    for h, sl in (("L", slice(0, half)), ("R", slice(half, None))):
        lab = ref.labels[sl].astype(np.int32)
        img = nib.GiftiImage(darrays=[nib.gifti.GiftiDataArray(lab, intent="NIFTI_INTENT_LABEL")])
        for k in np.unique(lab):
            gl = nib.gifti.GiftiLabel(key=int(k))
            gl.label = "???" if k == 0 else ref.names[k - 1]
            img.labeltable.labels.append(gl)
        nib.save(img, tmp_path / f"atlas.hemi-{h}.label.gii")
    a = atl.load_atlas(tmp_path / "atlas.hemi-L.label.gii", "fsLR32k")
    assert np.array_equal(a.labels, ref.labels) and a.names[0] == "L_" + ref.names[0]

    # CIFTI dlabel with cortex only where ENIGMA's mask says cortex
    mask = cortex_mask("fsLR32k")
    bm = (nib.cifti2.BrainModelAxis.from_mask(mask[:half], name="CortexLeft")
          + nib.cifti2.BrainModelAxis.from_mask(mask[half:], name="CortexRight"))
    table = {0: ("???", (0, 0, 0, 0))}
    table.update({k: (n, (0.5, 0.5, 0.5, 1)) for k, n in enumerate(ref.names, 1)})
    lab_axis = nib.cifti2.LabelAxis(["parcels"], [table])
    data = ref.labels[mask][None, :].astype(np.float32)
    nib.save(nib.cifti2.Cifti2Image(data, header=(lab_axis, bm)), tmp_path / "a.dlabel.nii")
    d = atl.load_atlas(tmp_path / "a.dlabel.nii", "fsLR32k")
    assert d.n_vertices == 64984 and d.n_parcels == 100
    assert np.array_equal(d.labels, ref.labels * mask)


def test_volume_labels_projected_to_fsaverage5(tmp_path):
    # 4 mm MNI grid: label 1 left of the midline, 2 right of it
    shape = (46, 56, 46)
    affine = np.array([[4, 0, 0, -90], [0, 4, 0, -126], [0, 0, 4, -72], [0, 0, 0, 1]], float)
    ijk = np.indices(shape).reshape(3, -1).T
    x = (np.c_[ijk, np.ones(len(ijk))] @ affine.T)[:, 0].reshape(shape)
    lab = np.where(x < 0, 1, 2).astype(np.int16)
    nib.save(nib.Nifti1Image(lab, affine), tmp_path / "halves.nii.gz")
    a = atl.load_atlas(tmp_path / "halves.nii.gz", "fsaverage5")
    assert a.n_vertices == 20484 and a.n_parcels == 2
    assert (a.labels[:10242] == 1).mean() > 0.95 and (a.labels[10242:] == 2).mean() > 0.95
    # a map that equals x: sampled values follow the vertices' x coordinate
    nib.save(nib.Nifti1Image(x.astype(np.float32), affine), tmp_path / "x.nii.gz")
    v = atl.volume_to_surface(tmp_path / "x.nii.gz")
    coords, _ = load_fsaverage5("pial").combined()
    assert v.shape == (20484,) and np.corrcoef(v, coords[:, 0])[0, 1] > 0.99


def test_user_atlas_errors(tmp_path):
    bad = tmp_path / "lh.bad.annot"
    bad.write_bytes(b"\x00\x01garbage")
    with pytest.raises(DataError, match="FreeSurfer .annot"):
        atl.load_atlas(bad)
    with pytest.raises(DataError, match="nothing at"):
        atl.load_atlas(tmp_path / "lh.none.annot")
    stat = tmp_path / "stat.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).normal(size=(5, 5, 5)).astype(np.float32), np.eye(4)), stat)
    with pytest.raises(DataError, match="integer labels"):
        atl.load_atlas(stat)
