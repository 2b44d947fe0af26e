"""Cortical surfaces: fsaverage5 and fs_LR 32k, both bundled in ``resources/surfaces``.

fsaverage5 is a copy of nilearn's (``resources/surfaces/make_fsaverage5.py``), read without
importing nilearn (which costs ~1.5 s); nilearn is the fallback when the bundle is missing.
Loaded meshes are cached in-process and their arrays are read-only.

A :class:`Surface` holds both hemispheres, left first; vertex ``i`` of the whole brain is
left vertex ``i`` when ``i < left.n_vertices``, else right vertex ``i - left.n_vertices``.
This is the order every brain map in AlignScope uses (GIFTI pairs, fsLR grayordinates
restricted to cortex, the bundled atlases).
"""

from __future__ import annotations

import functools
import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Tuple

import numpy as np

from ..errors import ConfigError, DataError, expected_found

RESOURCES = Path(__file__).resolve().parents[2] / "resources"
SURFACES_DIR = RESOURCES / "surfaces"

FSAVERAGE5_KINDS = ("pial", "inflated", "sphere", "white", "flat")
FSLR32K_KINDS = ("midthickness",)
SPACES = ("fsaverage5", "fsLR32k")
N_VERTICES_PER_HEMI = {"fsaverage5": 10242, "fsLR32k": 32492}


@dataclass(frozen=True)
class Hemisphere:
    """One hemisphere's mesh.

    Unpacks as ``coords, faces = hemi``.
    """

    coords: np.ndarray   # n_vertices, 3 float32 (mm)
    faces: np.ndarray    # n_faces, 3 int64 (vertex indices)

    @property
    def n_vertices(self) -> int:
        return int(self.coords.shape[0])

    @property
    def n_faces(self) -> int:
        return int(self.faces.shape[0])

    def __iter__(self) -> Iterator[np.ndarray]:
        yield self.coords
        yield self.faces


@dataclass(frozen=True)
class Surface:
    """Both hemispheres of a cortical mesh, left first.

    Attributes
    ----------
    left, right : Hemisphere
    space : str
        ``"fsaverage5"`` or ``"fsLR32k"``.
    kind : str
        ``"inflated"``, ``"pial"``, ``"midthickness"``...
    sulc : ndarray or None
        Sulcal depth per vertex (n_vertices,) float32, left then right; None where unavailable.
    curv : ndarray or None
        Mean curvature per vertex (n_vertices,) float32, left then right; None where unavailable.
    """

    left: Hemisphere
    right: Hemisphere
    space: str
    kind: str
    sulc: Optional[np.ndarray] = None   # n_vertices float32
    curv: Optional[np.ndarray] = None   # n_vertices float32

    @property
    def n_vertices(self) -> int:
        return self.left.n_vertices + self.right.n_vertices

    @property
    def n_left(self) -> int:
        return self.left.n_vertices

    def combined(self) -> Tuple[np.ndarray, np.ndarray]:
        """One mesh of both hemispheres: coords (n_vertices, 3), faces (n_faces, 3) (right re-indexed)."""
        coords = np.concatenate([self.left.coords, self.right.coords])
        faces = np.concatenate([self.left.faces, self.right.faces + self.left.n_vertices])
        return coords, faces


def _hemisphere(coords, faces, what: str) -> Hemisphere:
    coords = np.asarray(coords, dtype=np.float32)
    faces = np.asarray(faces, dtype=np.int64)
    if coords.ndim != 2 or coords.shape[1] != 3:
        raise DataError(expected_found(f"{what} vertex coordinates", "shape (n_vertices, 3)", coords.shape))
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise DataError(expected_found(f"{what} faces", "shape (n_faces, 3)", faces.shape))
    if not np.isfinite(coords).all():
        raise DataError(expected_found(f"{what} vertex coordinates", "finite numbers",
                                       f"{int((~np.isfinite(coords)).sum())} NaN/inf values"))
    if faces.size and (faces.min() < 0 or faces.max() >= coords.shape[0]):
        raise DataError(expected_found(f"{what} faces", f"vertex indices in [0, {coords.shape[0] - 1}]",
                                       f"indices in [{faces.min()}, {faces.max()}]"))
    coords.setflags(write=False)
    faces.setflags(write=False)
    return Hemisphere(coords, faces)


FSAVERAGE5_BUNDLE = SURFACES_DIR / "fsaverage5.npz"
_NILEARN_MESH = {"pial": "pial", "inflated": "inflated", "sphere": "sphere", "white": "white_matter",
                 "flat": "flat"}
_NILEARN_DATA = {"sulc": "sulcal", "curv": "curvature"}


def _read_only(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


@functools.lru_cache(maxsize=1)
def _fsaverage5_from_nilearn() -> dict:
    """Every array of the bundle (same keys as ``fsaverage5.npz``), read from nilearn's copy.

    The fallback when the bundle is missing or unreadable: importing ``nilearn.datasets``
    costs about 1.5 s (it pulls in scikit-learn).
    """
    try:
        from nilearn import datasets

        bunch = datasets.load_fsaverage("fsaverage5")
    except Exception as exc:
        raise DataError(expected_found("fsaverage5 meshes", f"the bundled {FSAVERAGE5_BUNDLE.name} or nilearn's copy",
                                       f"neither ({exc.__class__.__name__}: {exc})")) from None
    out = {}
    for h in ("left", "right"):
        out[f"faces_{h}"] = np.asarray(bunch["pial"].parts[h].faces)
        out[f"faces_flat_{h}"] = np.asarray(bunch["flat"].parts[h].faces)
        for kind, key in _NILEARN_MESH.items():
            out[f"coords_{kind}_{h}"] = np.asarray(bunch[key].parts[h].coordinates)
    for name, data_type in _NILEARN_DATA.items():
        try:
            d = datasets.load_fsaverage_data(mesh="fsaverage5", mesh_type="pial", data_type=data_type)
            for h in ("left", "right"):
                out[f"{name}_{h}"] = np.asarray(d.data.parts[h]).ravel()
        except Exception:  # per-vertex data are decoration: the meshes are usable without them
            pass
    return out


@functools.lru_cache(maxsize=None)
def _fsaverage5_array(key: str) -> Optional[np.ndarray]:
    """One array of the fsaverage5 bundle (read-only, cached), or None where it has none.

    Reads ``resources/surfaces/fsaverage5.npz`` (only the member asked for is inflated);
    falls back to nilearn's copy when the bundle is missing or unreadable.
    """
    try:
        with np.load(FSAVERAGE5_BUNDLE, allow_pickle=False) as d:
            a = d[key] if key in d.files else None
    except (OSError, ValueError, EOFError):   # missing, truncated or not an npz
        a = _fsaverage5_from_nilearn().get(key)
        a = None if a is None else np.array(a, copy=True)   # never share nilearn's arrays
    if a is None:
        return None
    if key.startswith("faces"):
        a = a.astype(np.int64, copy=False)   # n_faces, 3: the dtype Hemisphere holds
    return _read_only(a)


def fsaverage5_source() -> str:
    """Where the fsaverage5 meshes come from: ``"bundle"`` (resources/surfaces) or ``"nilearn"``."""
    try:
        with np.load(FSAVERAGE5_BUNDLE, allow_pickle=False) as d:
            ok = all(f"coords_{k}_{h}" in d.files for k in FSAVERAGE5_KINDS for h in ("left", "right"))
        return "bundle" if ok else "nilearn"
    except (OSError, ValueError, EOFError):
        return "nilearn"


def _fsaverage5_hemi_data(name: str) -> Optional[np.ndarray]:
    left, right = _fsaverage5_array(f"{name}_left"), _fsaverage5_array(f"{name}_right")
    if left is None or right is None:
        return None
    return _read_only(np.concatenate([left, right]).astype(np.float32, copy=False))


@functools.lru_cache(maxsize=2)
def fsaverage5_sulc() -> Optional[np.ndarray]:
    """Sulcal depth on fsaverage5, (20484,) float32 read-only, left then right (None if unavailable)."""
    return _fsaverage5_hemi_data("sulc")


@functools.lru_cache(maxsize=2)
def fsaverage5_curv() -> Optional[np.ndarray]:
    """Mean curvature on fsaverage5, (20484,) float32 read-only, left then right (None if unavailable)."""
    return _fsaverage5_hemi_data("curv")


@functools.lru_cache(maxsize=8)
def _fsaverage5(kind: str) -> Surface:
    hemis = []
    for h in ("left", "right"):
        coords = _fsaverage5_array(f"coords_{kind}_{h}")
        faces = _fsaverage5_array(f"faces_flat_{h}" if kind == "flat" else f"faces_{h}")
        if coords is None or faces is None:
            raise DataError(expected_found(f"fsaverage5 {kind} mesh ({h})", f"arrays in {FSAVERAGE5_BUNDLE}",
                                           "none (broken installation: rerun resources/surfaces/make_fsaverage5.py)"))
        hemis.append(_hemisphere(coords, faces, f"fsaverage5 {h}"))
    return Surface(hemis[0], hemis[1], "fsaverage5", kind, fsaverage5_sulc(), fsaverage5_curv())


def load_fsaverage5(kind: str = "inflated") -> Surface:
    """The fsaverage5 mesh (10242 vertices / 20480 triangles per hemisphere).

    Read from the bundle ``resources/surfaces/fsaverage5.npz`` (a copy of nilearn's, see its
    README), without importing nilearn; from nilearn's copy only if the bundle is missing.
    Cached: a second call returns the same :class:`Surface`, whose arrays are read-only.

    Parameters
    ----------
    kind : {"inflated", "pial", "sphere", "white", "flat"}

    Returns
    -------
    Surface
        With ``sulc`` (sulcal depth) and ``curv`` (curvature), each (20484,) float32.
    """
    if kind not in FSAVERAGE5_KINDS:
        raise ConfigError(f"fsaverage5 mesh kind: expected one of {FSAVERAGE5_KINDS}, found {kind!r}")
    return _fsaverage5(kind)


load_fsaverage5.cache_clear = _fsaverage5.cache_clear  # type: ignore[attr-defined]


def read_gifti_mesh(path, what: Optional[str] = None, data: Optional[bytes] = None) -> Hemisphere:
    """Read one hemisphere's GIFTI surface (``.surf.gii``; ``.gii.gz`` accepted)."""
    import nibabel as nib

    path = Path(path)
    what = what or str(path)
    try:
        if data is None:
            data = path.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        img = nib.GiftiImage.from_bytes(data)
    except FileNotFoundError:
        raise DataError(expected_found(what, "an existing GIFTI surface file", "no file")) from None
    except Exception as exc:
        raise DataError(expected_found(what, "a GIFTI surface file", f"unreadable content ({exc.__class__.__name__}: {exc})")) from None
    coords = [d.data for d in img.darrays if d.intent == nib.nifti1.intent_codes["NIFTI_INTENT_POINTSET"]]
    faces = [d.data for d in img.darrays if d.intent == nib.nifti1.intent_codes["NIFTI_INTENT_TRIANGLE"]]
    if len(coords) != 1 or len(faces) != 1:
        raise DataError(expected_found(what, "one POINTSET and one TRIANGLE data array (a surface mesh)",
                                       f"{len(coords)} POINTSET and {len(faces)} TRIANGLE arrays"))
    return _hemisphere(coords[0], faces[0], what)


@functools.lru_cache(maxsize=2)
def load_fslr32k(kind: str = "midthickness") -> Surface:
    """The fs_LR 32k (Conte69) midthickness mesh bundled in ``resources/surfaces`` (32492 vertices/hemi)."""
    if kind not in FSLR32K_KINDS:
        raise ConfigError(f"fsLR32k mesh kind: expected one of {FSLR32K_KINDS}, found {kind!r}")
    hemis = [read_gifti_mesh(SURFACES_DIR / f"conte69_32k_{h}.gii.gz", f"bundled fsLR32k {h} mesh")
             for h in ("lh", "rh")]
    return Surface(hemis[0], hemis[1], "fsLR32k", kind, None)


def load_surface(space: str = "fsaverage5", kind: Optional[str] = None) -> Surface:
    """A template mesh by space name (``"fsaverage5"`` or ``"fsLR32k"``)."""
    if space == "fsaverage5":
        return load_fsaverage5(kind or "inflated")
    if space in ("fsLR32k", "fsLR", "fs_LR_32k", "fsLR_32k"):
        return load_fslr32k(kind or "midthickness")
    raise ConfigError(f"surface space: expected one of {SPACES}, found {space!r}")


def load_surface_pair(left_path, right_path, space: str = "custom", kind: str = "custom") -> Surface:
    """A user's own mesh from two GIFTI files (left, right)."""
    return Surface(read_gifti_mesh(left_path), read_gifti_mesh(right_path), space, kind, None)


def cortex_mask(space: str = "fsaverage5") -> np.ndarray:
    """Boolean (n_vertices,), False on the medial wall (ENIGMA's masks)."""
    if space not in SPACES:
        raise ConfigError(f"surface space: expected one of {SPACES}, found {space!r}")
    with np.load(SURFACES_DIR / "masks.npz") as d:
        return d[space].copy()


def space_for_n_vertices(n_vertices: int) -> Optional[str]:
    """Which template a vertex count belongs to (both hemispheres), or None."""
    for space, n in N_VERTICES_PER_HEMI.items():
        if n_vertices == 2 * n:
            return space
    return None
