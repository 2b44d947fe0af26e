"""Cortical surfaces: fsaverage5 (from nilearn's bundled copy) and fs_LR 32k (bundled here).

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
    """

    left: Hemisphere
    right: Hemisphere
    space: str
    kind: str
    sulc: Optional[np.ndarray] = None   # n_vertices float32

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


@functools.lru_cache(maxsize=8)
def load_fsaverage5(kind: str = "inflated") -> Surface:
    """The fsaverage5 mesh (10242 vertices / 20480 triangles per hemisphere) from nilearn.

    Parameters
    ----------
    kind : {"inflated", "pial", "sphere", "white", "flat"}

    Returns
    -------
    Surface
        With ``sulc`` (sulcal depth, (20484,) float32) when nilearn has it offline.
    """
    if kind not in FSAVERAGE5_KINDS:
        raise ConfigError(f"fsaverage5 mesh kind: expected one of {FSAVERAGE5_KINDS}, found {kind!r}")
    from nilearn import datasets

    bunch = datasets.load_fsaverage("fsaverage5")
    mesh = bunch["white_matter" if kind == "white" else kind]
    left = _hemisphere(mesh.parts["left"].coordinates, mesh.parts["left"].faces, "fsaverage5 left")
    right = _hemisphere(mesh.parts["right"].coordinates, mesh.parts["right"].faces, "fsaverage5 right")
    sulc = None
    try:
        mesh_type = {"white": "white_matter"}.get(kind, kind)
        if mesh_type == "flat":
            mesh_type = "inflated"
        data = datasets.load_fsaverage_data(mesh="fsaverage5", mesh_type=mesh_type, data_type="sulcal")
        sulc = np.concatenate([np.asarray(data.data.parts["left"], dtype=np.float32).ravel(),
                               np.asarray(data.data.parts["right"], dtype=np.float32).ravel()])
        sulc.setflags(write=False)
    except Exception:  # sulcal depth is decoration: the mesh is usable without it
        sulc = None
    return Surface(left, right, "fsaverage5", kind, sulc)


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
