"""Cortical atlases: the bundled ones (Schaefer 100/200/400, Glasser 360, Desikan-Killiany)
and a user's own (FreeSurfer ``.annot``, GIFTI ``.label.gii``, CIFTI ``.dlabel.nii``, or a
volumetric label image projected to the surface).

Labels are one integer per vertex over both hemispheres (left first); 0 is the medial wall
or "no parcel"; parcel ``k`` (1-based) is named ``names[k - 1]``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..errors import ConfigError, DataError, MismatchError, expected_found
from .surfaces import N_VERTICES_PER_HEMI, RESOURCES, load_fsaverage5, space_for_n_vertices

ATLAS_DIR = RESOURCES / "atlases"

# canonical name -> accepted spellings (case-insensitive, '-', '_' and ' ' ignored)
BUNDLED = {
    "schaefer100": ("schaefer100", "schaefer2018100", "schaefer100parcels7networks"),
    "schaefer200": ("schaefer200", "schaefer2018200", "schaefer200parcels7networks"),
    "schaefer400": ("schaefer400", "schaefer2018400", "schaefer400parcels7networks"),
    "glasser360": ("glasser360", "glasser", "hcpmmp1", "hcpmmp", "mmp"),
    "aparc": ("aparc", "desikan", "desikankilliany", "dk", "dk68"),
}
ATLAS_SPACES = ("fsaverage5", "fsLR32k")


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name).lower()


@dataclass
class Atlas:
    """A cortical parcellation on one surface space.

    Attributes
    ----------
    name : str
    space : str
    labels : ndarray (n_vertices,) int64
        0 = medial wall / unlabelled, parcels 1..n_parcels. Read-only for the bundled atlases
        (one cached array shared by every :func:`load_atlas` call); copy it to edit.
    names : list of str
        ``names[k - 1]`` names parcel ``k``.
    """

    name: str
    space: str
    labels: np.ndarray                       # n_vertices int64
    names: List[str] = field(default_factory=list)

    def __post_init__(self):
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if self.labels.ndim != 1:
            raise DataError(expected_found(f"atlas {self.name} labels", "one label per vertex (1-D)",
                                           f"shape {self.labels.shape}"))
        if self.labels.size and self.labels.min() < 0:
            raise DataError(expected_found(f"atlas {self.name} labels", "labels >= 0", f"min {self.labels.min()}"))
        top = int(self.labels.max()) if self.labels.size else 0
        if not self.names:
            self.names = [f"parcel_{k}" for k in range(1, top + 1)]
        if top > len(self.names):
            raise DataError(expected_found(f"atlas {self.name}", f"a name for each of {top} labels",
                                           f"{len(self.names)} names"))

    # ---- shape --------------------------------------------------------------------
    @property
    def n_vertices(self) -> int:
        return int(self.labels.size)

    @property
    def n_parcels(self) -> int:
        return len(self.names)

    @property
    def medial_wall(self) -> np.ndarray:
        """Boolean (n_vertices,), True where no parcel."""
        return self.labels == 0

    def vertices_per_parcel(self) -> np.ndarray:
        """Vertex count of each parcel, (n_parcels,) int64 (label 0 not counted)."""
        return np.bincount(self.labels, minlength=self.n_parcels + 1)[1:self.n_parcels + 1]

    # ---- lookup -------------------------------------------------------------------
    def parcel_at_vertex(self, vertex: int) -> int:
        """The parcel label (1-based; 0 = medial wall) at a vertex of the whole brain."""
        v = int(vertex)
        if not 0 <= v < self.n_vertices:
            raise DataError(expected_found("vertex index", f"0..{self.n_vertices - 1}", v))
        return int(self.labels[v])

    def name_at_vertex(self, vertex: int) -> str:
        """The parcel name at a vertex (``"medial wall"`` for label 0)."""
        k = self.parcel_at_vertex(vertex)
        return self.names[k - 1] if k > 0 else "medial wall"

    def parcel_index(self, name: str) -> int:
        """1-based label of a parcel name."""
        try:
            return self.names.index(name) + 1
        except ValueError:
            raise DataError(expected_found(f"parcel of atlas {self.name}", "one of its names "
                                           f"(e.g. {self.names[:3]})", repr(name))) from None

    # ---- mapping ------------------------------------------------------------------
    def parcel_to_vertex(self, values, fill: float = np.nan) -> np.ndarray:
        """Paint parcel values on vertices.

        Parameters
        ----------
        values : array (n_parcels,) or (n_rows, n_parcels)
        fill : float
            Value on the medial wall.

        Returns
        -------
        ndarray (n_vertices,) or (n_rows, n_vertices) float32
        """
        values = np.asarray(values, dtype=np.float32)
        if values.shape[-1] != self.n_parcels or values.ndim > 2:
            raise MismatchError(expected_found(f"values for atlas {self.name}",
                                               f"last axis of {self.n_parcels} parcels",
                                               f"shape {values.shape}"))
        pad = np.full(values.shape[:-1] + (1,), fill, dtype=np.float32)
        table = np.concatenate([pad, values], axis=-1)   # [..., n_parcels + 1]; column 0 = wall
        return table[..., self.labels]

    def vertex_to_parcel(self, values) -> np.ndarray:
        """Mean of vertex values within each parcel, ignoring NaN.

        Parameters
        ----------
        values : array (n_vertices,) or (n_rows, n_vertices)

        Returns
        -------
        ndarray (n_parcels,) or (n_rows, n_parcels) float32; NaN where a parcel has no finite value.
        """
        values = np.asarray(values, dtype=np.float64)
        if values.shape[-1] != self.n_vertices or values.ndim > 2:
            raise MismatchError(expected_found(f"vertex values for atlas {self.name} ({self.space})",
                                               f"last axis of {self.n_vertices} vertices",
                                               f"shape {values.shape}"))
        from scipy import sparse

        v2 = np.atleast_2d(values)                   # n_rows, n_vertices
        finite = np.isfinite(v2)
        inside = self.labels > 0
        cols = np.flatnonzero(inside)
        onehot = sparse.csr_matrix((np.ones(cols.size), (cols, self.labels[inside] - 1)),
                                   shape=(self.n_vertices, self.n_parcels))
        sums = np.asarray(onehot.T @ np.where(finite, v2, 0.0).T).T      # n_rows, n_parcels
        counts = np.asarray(onehot.T @ finite.astype(np.float64).T).T
        with np.errstate(invalid="ignore", divide="ignore"):
            means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        means = np.asarray(means, dtype=np.float32)
        return means[0] if values.ndim == 1 else means


# ---- bundled atlases ---------------------------------------------------------------
def list_atlases() -> List[str]:
    """Names of the bundled atlases."""
    return list(BUNDLED)


def _canonical(name: str) -> Optional[str]:
    n = _norm(name)
    for canon, aliases in BUNDLED.items():
        if n in aliases:
            return canon
    return None


def load_atlas(name: str, space: str = "fsaverage5") -> Atlas:
    """A bundled atlas by name, or a user's atlas file by path.

    Parameters
    ----------
    name : str or path
        ``"schaefer100"``, ``"schaefer200"``, ``"schaefer400"``, ``"glasser360"``, ``"aparc"``
        (aliases such as ``"Schaefer-400"``, ``"glasser"``, ``"desikan"`` accepted), or the path of
        a ``.annot`` / ``.label.gii`` / ``.dlabel.nii`` / label ``.nii[.gz]`` file (for a pair of
        hemisphere files give the left one; the right is found by ``lh``->``rh``, ``L``->``R``).
    space : {"fsaverage5", "fsLR32k"}
    """
    if space in ("fsLR", "fs_LR_32k", "fsLR_32k", "conte69"):
        space = "fsLR32k"
    name = str(name)
    if name.startswith("builtin:"):
        name = name[len("builtin:"):]
    canon = _canonical(name)
    if canon is None:
        p = Path(name)
        if p.exists() or p.suffix in (".annot", ".gii", ".nii", ".gz"):
            return load_atlas_file(p, space=space)
        raise ConfigError(f"atlas: expected one of {list_atlases()} or an atlas file, found {name!r}")
    if space not in ATLAS_SPACES:
        raise ConfigError(f"atlas space: expected one of {ATLAS_SPACES}, found {space!r}")
    labels, names = _bundled(canon, space)
    return Atlas(canon, space, labels, list(names))


@functools.lru_cache(maxsize=None)
def _bundled(canon: str, space: str):
    """A bundled atlas's labels ((n_vertices,) int64, read-only, shared by every call) and names.

    Cached: the npz is read once per process; each :func:`load_atlas` call wraps the same
    read-only label array in a fresh :class:`Atlas` (its own ``names`` list).
    """
    path = ATLAS_DIR / f"{canon}.npz"
    try:
        with np.load(path, allow_pickle=False) as d:
            labels = d[f"labels_{space}"].astype(np.int64)   # n_vertices
            names = tuple(str(x) for x in d["names"])
    except FileNotFoundError:
        raise DataError(expected_found("bundled atlas", str(path), "no file (broken installation)")) from None
    except (OSError, ValueError, EOFError, KeyError) as exc:
        raise DataError(expected_found("bundled atlas", f"{path} with labels_{space} and names",
                                       f"unreadable content ({exc.__class__.__name__}: {exc}; broken installation)")) from None
    labels.setflags(write=False)
    return labels, names


# ---- user atlases ------------------------------------------------------------------
def _other_hemisphere(path: Path) -> Optional[Path]:
    name = path.name
    swaps = [("lh.", "rh."), ("_lh", "_rh"), (".lh", ".rh"), ("hemi-L", "hemi-R"), (".L.", ".R."),
             ("_L_", "_R_"), ("left", "right")]
    for a, b in swaps:
        if a in name:
            cand = path.with_name(name.replace(a, b, 1))
            if cand.exists():
                return cand
    return None


def _relabel(per_hemi_labels: Sequence[np.ndarray], per_hemi_names: Sequence[Dict[int, str]],
             zero_names=("unknown", "???", "medial_wall", "medialwall", "background", "corpuscallosum")):
    """Merge hemispheres into consecutive labels 1..K (left first), 0 = unlabelled."""
    out, names = [], []
    for lab, nm in zip(per_hemi_labels, per_hemi_names):
        lab = np.asarray(lab).astype(np.int64).ravel()
        new = np.zeros_like(lab)
        for key in sorted(set(np.unique(lab).tolist())):
            label_name = nm.get(key, f"label_{key}")
            if key <= 0 or _norm(label_name) in zero_names:
                continue
            names.append(label_name)
            new[lab == key] = len(names)
        out.append(new)
    return np.concatenate(out), names


def load_annot(left_path, right_path=None, name: Optional[str] = None) -> Atlas:
    """FreeSurfer ``lh.*.annot`` + ``rh.*.annot``."""
    import nibabel as nib

    left_path = Path(left_path)
    right_path = Path(right_path) if right_path else _other_hemisphere(left_path)
    labels, names = [], []
    for p in [left_path] + ([right_path] if right_path else []):
        try:
            lab, _ctab, nm = nib.freesurfer.read_annot(str(p))
        except FileNotFoundError:
            raise DataError(expected_found("annot file", "an existing file", f"nothing at {p}")) from None
        except Exception as exc:
            raise DataError(expected_found(f"annot file {p}", "a FreeSurfer .annot",
                                           f"unreadable content ({exc.__class__.__name__}: {exc})")) from None
        nm = [x.decode() if isinstance(x, bytes) else str(x) for x in nm]
        prefix = "" if right_path is None else ("L_" if p == left_path else "R_")
        labels.append(lab)
        names.append({i: prefix + n for i, n in enumerate(nm)})
    lab, nm = _relabel(labels, names)
    return Atlas(name or left_path.name, space_for_n_vertices(lab.size) or "custom", lab, nm)


def load_label_gifti(left_path, right_path=None, name: Optional[str] = None) -> Atlas:
    """GIFTI label files (``*.label.gii``), one per hemisphere."""
    import nibabel as nib

    left_path = Path(left_path)
    right_path = Path(right_path) if right_path else _other_hemisphere(left_path)
    labels, names = [], []
    for p in [left_path] + ([right_path] if right_path else []):
        try:
            img = nib.load(str(p))
        except FileNotFoundError:
            raise DataError(expected_found("GIFTI label file", "an existing file", f"nothing at {p}")) from None
        except Exception as exc:
            raise DataError(expected_found(f"GIFTI label file {p}", "a .label.gii",
                                           f"unreadable content ({exc.__class__.__name__}: {exc})")) from None
        if not getattr(img, "darrays", None):
            raise DataError(expected_found(f"GIFTI label file {p}", "one data array of labels", "none"))
        lab = np.asarray(img.darrays[0].data)
        if not np.issubdtype(lab.dtype, np.integer):
            raise DataError(expected_found(f"GIFTI label file {p}", "integer labels", f"{lab.dtype} values"))
        prefix = "" if right_path is None else ("L_" if p == left_path else "R_")
        table = {int(k): prefix + str(v) for k, v in img.labeltable.get_labels_as_dict().items()}
        labels.append(lab)
        names.append(table)
    lab, nm = _relabel(labels, names)
    return Atlas(name or left_path.name, space_for_n_vertices(lab.size) or "custom", lab, nm)


def load_dlabel(path, name: Optional[str] = None) -> Atlas:
    """A CIFTI-2 ``.dlabel.nii``: cortex of both hemispheres expanded to full fsLR meshes."""
    import nibabel as nib

    path = Path(path)
    try:
        img = nib.load(str(path))
        label_axis = img.header.get_axis(0)
        bm = img.header.get_axis(1)
    except FileNotFoundError:
        raise DataError(expected_found("CIFTI dlabel", "an existing file", f"nothing at {path}")) from None
    except Exception as exc:
        raise DataError(expected_found(f"CIFTI dlabel {path}", "a CIFTI-2 .dlabel.nii",
                                       f"unreadable content ({exc.__class__.__name__}: {exc})")) from None
    if not isinstance(label_axis, nib.cifti2.LabelAxis) or not isinstance(bm, nib.cifti2.BrainModelAxis):
        raise DataError(expected_found(f"CIFTI dlabel {path}", "a label axis and a brain-model axis",
                                       f"{type(label_axis).__name__} and {type(bm).__name__}"))
    data = np.asarray(img.get_fdata(dtype=np.float32))[0].astype(np.int64)
    table = {int(k): v[0] for k, v in label_axis.label[0].items()}
    labels, names = [], []
    for struct, prefix in (("CIFTI_STRUCTURE_CORTEX_LEFT", "L_"), ("CIFTI_STRUCTURE_CORTEX_RIGHT", "R_")):
        hemi = None
        for s_name, slc, model in bm.iter_structures():
            if s_name == struct:
                hemi = np.zeros(model.nvertices[struct], dtype=np.int64)
                hemi[model.vertex] = data[slc]
        if hemi is None:
            raise DataError(expected_found(f"CIFTI dlabel {path}", f"a {struct} brain model", "none"))
        labels.append(hemi)
        names.append(table)
    lab, nm = _relabel(labels, names)
    return Atlas(name or path.name, space_for_n_vertices(lab.size) or "custom", lab, nm)


def project_volume_labels(img, space: str = "fsaverage5", name: Optional[str] = None,
                          names: Optional[Dict[int, str]] = None) -> Atlas:
    """Project a volumetric label image (NIfTI, MNI space) to a template surface.

    Each vertex takes the most frequent label sampled between the white and pial surfaces
    (nilearn ``vol_to_surf(..., interpolation="nearest_most_frequent")``).
    """
    from nilearn import surface

    if space != "fsaverage5":
        raise ConfigError(f"volume-to-surface projection: expected space 'fsaverage5', found {space!r}")
    img, data = _label_volume(img)
    pial, white = load_fsaverage5("pial"), load_fsaverage5("white")   # bundled: no nilearn.datasets
    labels = []
    for hemi in ("left", "right"):
        lab = surface.vol_to_surf(img, _mesh(surface, pial, hemi), inner_mesh=_mesh(surface, white, hemi),
                                  interpolation="nearest_most_frequent")
        labels.append(np.nan_to_num(lab).round().astype(np.int64))
    # volume label k is parcel k, whichever hemisphere samples it; a label no vertex samples
    # stays a parcel without vertices, so parcel tables keyed by the volume's labels still fit
    lab = np.concatenate(labels)
    n_parcels = int(max(np.max(data), lab.max(initial=0)))
    table = names or {}
    return Atlas(name or "volume labels", space, lab, [table.get(k, f"label_{k}") for k in range(1, n_parcels + 1)])


@dataclass
class SurfaceProjection:
    """A volumetric parcellation painted on a template surface.

    Attributes
    ----------
    atlas : Atlas
        Vertex -> parcel labels; parcel ``k`` is volume label ``k`` (column ``k - 1`` of a
        parcel table), whether or not a vertex reached it.
    fraction_reached : float
        Fraction of the parcels that at least one vertex samples (0..1).
    n_reached, n_parcels : int
    cache_path : Path or None
        The cache entry it was read from or written to.
    """

    atlas: Atlas
    fraction_reached: float
    n_reached: int
    n_parcels: int
    cache_path: Optional[Path] = None


PROJECTION_CACHE_VERSION = 1
N_DEPTHS = 7


def sample_labels_on_surface(img, space: str = "fsaverage5", n_depths: int = N_DEPTHS) -> np.ndarray:
    """Labels of a volumetric parcellation (MNI) at each vertex of the bundled fsaverage5 meshes.

    Each vertex looks at ``n_depths`` points evenly spaced from its white-matter to its pial
    position (both ends included), takes the nearest voxel's label at each, and keeps the most
    frequent non-zero label (ties: the smaller label); a vertex is 0 only when every sample is
    background or outside the volume. Vectorised: no per-vertex Python loop, no nilearn import.

    Returns
    -------
    ndarray (n_vertices,) int64, left hemisphere then right.
    """
    if space != "fsaverage5":
        raise ConfigError(f"volume-to-surface projection: expected space 'fsaverage5', found {space!r}")
    img, data = _label_volume(img)
    data = np.round(data).astype(np.int64)
    pial, white = load_fsaverage5("pial"), load_fsaverage5("white")
    inv = np.linalg.inv(img.affine)
    out = []
    for hemi in ("left", "right"):
        outer, inner = np.asarray(getattr(pial, hemi).coords, float), np.asarray(getattr(white, hemi).coords, float)
        depths = np.linspace(0.0, 1.0, int(n_depths))
        pts = inner[None] + depths[:, None, None] * (outer - inner)[None]          # n_depths, n, 3
        ijk = np.rint(pts @ inv[:3, :3].T + inv[:3, 3]).astype(np.int64)
        ok = np.all((ijk >= 0) & (ijk < np.array(data.shape)), axis=-1)             # n_depths, n
        lab = np.zeros(ok.shape, np.int64)
        lab[ok] = data[ijk[ok][:, 0], ijk[ok][:, 1], ijk[ok][:, 2]]
        out.append(_mode_nonzero(lab.T))
    return np.concatenate(out)


def _mode_nonzero(samples: np.ndarray) -> np.ndarray:
    """Row-wise most frequent non-zero value of (n, k) ints (ties: smallest; 0 when none)."""
    s = np.sort(samples, axis=1)
    n, k = s.shape
    best = np.zeros(n, np.int64)
    best_count = np.zeros(n, np.int64)
    run = np.ones(n, np.int64)
    for j in range(k):
        if j > 0:
            same = s[:, j] == s[:, j - 1]
            run = np.where(same, run + 1, 1)
        better = (s[:, j] > 0) & (run > best_count)
        best = np.where(better, s[:, j], best)
        best_count = np.where(better, run, best_count)
    return best


def default_atlas_cache_dir() -> Path:
    """The projected-atlas cache: ``$ALIGNSCOPE_ATLAS_CACHE``, else ``atlases`` in the cache root
    (:func:`engine.paths.cache_dir`)."""
    from ..paths import cache_dir

    return cache_dir("atlases")


_PROJECTIONS: Dict[str, tuple] = {}


def surface_atlas_from_volume(path, n_parcels: Optional[int] = None, space: str = "fsaverage5",
                              name: Optional[str] = None, cache_dir=None) -> SurfaceProjection:
    """A label NIfTI in MNI space (e.g. a subject's Schaefer-1000 atlas of the Algonauts 2025
    release) projected to fsaverage5, cached by content.

    Each vertex takes the most frequent non-zero label sampled between the bundled white and
    pial meshes (:func:`sample_labels_on_surface`). The labelling is stored in the cache under the
    SHA-256 of the file's bytes (and the space, parcel count and cache version), written
    atomically; the next call with the same file, wherever it lies, reads it back.

    Parameters
    ----------
    path : path of the label NIfTI
    n_parcels : int, optional
        Parcels the runs have (columns); labels above the volume's top label still count.
    cache_dir : path, optional
        Default :func:`default_atlas_cache_dir`. An unwritable cache only costs the reuse.

    Returns
    -------
    SurfaceProjection
    """
    import hashlib

    from ..atomic import atomic_path

    path = Path(path)
    if not path.is_file():
        raise DataError(expected_found("label volume", "an existing NIfTI file", f"nothing at {path}"))
    if space != "fsaverage5":
        raise ConfigError(f"volume-to-surface projection: expected space 'fsaverage5', found {space!r}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    key = f"{digest[:32]}_{space}_{n_parcels or 0}_v{PROJECTION_CACHE_VERSION}"
    folder = Path(cache_dir) if cache_dir is not None else default_atlas_cache_dir()
    entry = folder / key[:2] / f"{key}.npz"
    labels = None
    memo = f"{entry}"          # per cache folder: a fresh folder gets its own entry
    if memo in _PROJECTIONS:
        labels = _PROJECTIONS[memo]
    elif entry.is_file():
        try:
            with np.load(entry, allow_pickle=False) as d:
                labels = d["labels"].astype(np.int64)
        except (OSError, ValueError, KeyError, EOFError):
            labels = None   # a damaged entry: recompute and replace it
    if labels is None:
        labels = sample_labels_on_surface(path, space=space)
        try:
            with atomic_path(entry) as tmp:
                np.savez_compressed(tmp, labels=labels.astype(np.int32))
        except OSError:
            pass
    labels = np.asarray(labels, dtype=np.int64)
    _PROJECTIONS[memo] = labels
    top = int(labels.max(initial=0))
    if not n_parcels:
        import nibabel as nib

        n_parcels = max(top, int(np.max(np.asarray(nib.load(str(path)).dataobj))))
    if top > n_parcels:
        raise MismatchError(expected_found(f"label volume {path.name}", f"labels 1..{n_parcels}",
                                           f"label {top}"))
    atlas = Atlas(name or path.name, space, labels.copy(), [f"label_{k}" for k in range(1, n_parcels + 1)])
    reached = int((atlas.vertices_per_parcel() > 0).sum())
    return SurfaceProjection(atlas, reached / n_parcels if n_parcels else 0.0, reached, int(n_parcels),
                             entry if entry.is_file() else None)


def volume_to_surface(img, space: str = "fsaverage5") -> np.ndarray:
    """Sample a volumetric map (3-D or 4-D NIfTI, MNI space) on fsaverage5 (linear interpolation).

    Returns
    -------
    ndarray (n_vertices,) or (n_volumes, n_vertices) float32, left then right.
    """
    from nilearn import surface

    if space != "fsaverage5":
        raise ConfigError(f"volume-to-surface projection: expected space 'fsaverage5', found {space!r}")
    img = _load_nifti(img, "volume")
    pial, white = load_fsaverage5("pial"), load_fsaverage5("white")
    parts = [surface.vol_to_surf(img, _mesh(surface, pial, h), inner_mesh=_mesh(surface, white, h))
             for h in ("left", "right")]
    out = np.concatenate(parts, axis=0).astype(np.float32)   # n_vertices[, n_volumes]
    return out.T if out.ndim == 2 else out


def _mesh(nilearn_surface, surf, hemi: str):
    """One hemisphere of a bundled :class:`Surface` as nilearn's ``InMemoryMesh``."""
    coords, faces = getattr(surf, hemi)
    return nilearn_surface.InMemoryMesh(coords, faces)


def _label_volume(img):
    """``(image, 3-D label array)`` of a label NIfTI, refused clearly when it is no label volume."""
    img = _load_nifti(img, "label image")
    data = np.asarray(img.dataobj)
    if data.ndim != 3:
        raise DataError(expected_found("label image", "a 3-D volume", f"{data.ndim}-D data of shape {data.shape}"))
    if not np.allclose(data, np.round(data)):
        raise DataError(expected_found("label image", "integer labels", "non-integer values (a statistical map?)"))
    if not (data > 0).any():
        raise DataError(expected_found("label image", "some labels > 0", "only background (0) everywhere"))
    return img, data


def _load_nifti(img, what: str):
    import nibabel as nib

    if isinstance(img, (str, Path)):
        p = Path(img)
        try:
            return nib.load(str(p))
        except FileNotFoundError:
            raise DataError(expected_found(what, "an existing NIfTI file", f"nothing at {p}")) from None
        except Exception as exc:
            raise DataError(expected_found(f"{what} {p}", "a NIfTI image",
                                           f"unreadable content ({exc.__class__.__name__}: {exc})")) from None
    return img


def load_atlas_file(path, space: Optional[str] = None, name: Optional[str] = None) -> Atlas:
    """A user's atlas file, dispatching on its extension."""
    p = Path(path)
    low = p.name.lower()
    if not p.exists():
        raise DataError(expected_found("atlas file", "an existing file", f"nothing at {p}"))
    if low.endswith(".annot"):
        atlas = load_annot(p, name=name)
    elif low.endswith(".label.gii") or low.endswith(".gii"):
        atlas = load_label_gifti(p, name=name)
    elif low.endswith(".dlabel.nii"):
        atlas = load_dlabel(p, name=name)
    elif low.endswith(".nii") or low.endswith(".nii.gz"):   # a label volume: projected once, cached
        atlas = surface_atlas_from_volume(p, space=space or "fsaverage5", name=name or p.name).atlas
    else:
        raise ConfigError(f"atlas file {p.name}: expected .annot, .label.gii, .dlabel.nii or .nii[.gz], "
                          f"found {p.suffix or 'no extension'}")
    if space is not None and atlas.space not in ("custom", space):
        raise MismatchError(expected_found(f"atlas {p.name}", f"{space} ({2 * N_VERTICES_PER_HEMI.get(space, 0)} vertices)",
                                           f"{atlas.space} ({atlas.n_vertices} vertices)"))
    return atlas
