#!/usr/bin/env python3
"""Rebuild the bundled atlases (``*.npz``) from ENIGMA's parcellation CSVs.

Usage: ``python resources/atlases/make_bundle.py ../shared/data/surfaces_enigma``

Each ``<atlas>.npz`` holds ``labels_fsaverage5`` (20484,) and ``labels_fsLR32k`` (64984,)
int16 (left hemisphere first, 0 = medial wall), ``names`` (n_parcels,) and ``source``.
See LICENSES.md for where each atlas comes from and what was changed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

# FreeSurfer aparc colour-table order (label k -> name). Checked on the fsaverage5 mesh:
# label 11 lies at y = -88 mm (lateraloccipital), 35 at the insula, 32 at the frontal pole.
APARC_CTAB = [
    "bankssts", "caudalanteriorcingulate", "caudalmiddlefrontal", "corpuscallosum", "cuneus",
    "entorhinal", "fusiform", "inferiorparietal", "inferiortemporal", "isthmuscingulate",
    "lateraloccipital", "lateralorbitofrontal", "lingual", "medialorbitofrontal", "middletemporal",
    "parahippocampal", "paracentral", "parsopercularis", "parsorbitalis", "parstriangularis",
    "pericalcarine", "postcentral", "posteriorcingulate", "precentral", "precuneus",
    "rostralanteriorcingulate", "rostralmiddlefrontal", "superiorfrontal", "superiorparietal",
    "superiortemporal", "supramarginal", "frontalpole", "temporalpole", "transversetemporal", "insula",
]

SPACES = {"fsaverage5": "fsa5", "fsLR32k": "conte69"}
N_VERTICES = {"fsaverage5": 20484, "fsLR32k": 64984}


def _labels(src: Path, stem: str, space: str) -> np.ndarray:
    lab = np.loadtxt(src / f"{stem}_{SPACES[space]}.csv", dtype=np.int64)
    assert lab.shape == (N_VERTICES[space],), (stem, space, lab.shape)
    return lab


def _aparc(src: Path):
    """68 Desikan-Killiany parcels in ENIGMA's order (alphabetical, left then right)."""
    regions = sorted(n for n in APARC_CTAB if n != "corpuscallosum")
    names = [f"L_{r}" for r in regions] + [f"R_{r}" for r in regions]
    out = {}
    for space in SPACES:
        lab = _labels(src, "aparc", space)
        new = np.zeros_like(lab)
        for hemi_offset, hemi_shift in ((0, 0), (35, 34)):
            for k, region in enumerate(APARC_CTAB, start=1):
                if region == "corpuscallosum":
                    continue  # medial wall in ENIGMA's masks
                new[lab == k + hemi_offset] = regions.index(region) + 1 + hemi_shift
        out[space] = new
    return out, names


def _glasser(src: Path):
    names = np.loadtxt(src / "funcLabels_ctx_glasser_360.csv", dtype=str, delimiter=",").tolist()
    out = {}
    for space in SPACES:
        lab = _labels(src, "glasser_360", space)
        half = lab.size // 2
        # ENIGMA quirk: a few right-hemisphere vertices on the medial wall's edge carry
        # left label 180; they are not part of any right parcel, so they become medial wall.
        right = lab[half:]
        right[right == 180] = 0
        out[space] = lab
    return out, names


def _schaefer(src: Path, n: int):
    names = np.loadtxt(src / f"funcLabels_ctx_schaefer_{n}.csv", dtype=str, delimiter=",").tolist()
    return {space: _labels(src, f"schaefer_{n}", space) for space in SPACES}, names


def main(src: Path) -> None:
    atlases = {"aparc": _aparc(src), "glasser360": _glasser(src)}
    for n in (100, 200, 400):
        atlases[f"schaefer{n}"] = _schaefer(src, n)
    for name, (labels, names) in atlases.items():
        for space, lab in labels.items():
            assert lab.max() == len(names), (name, space, lab.max(), len(names))
        np.savez_compressed(
            HERE / f"{name}.npz",
            labels_fsaverage5=labels["fsaverage5"].astype(np.int16),
            labels_fsLR32k=labels["fsLR32k"].astype(np.int16),
            names=np.array(names, dtype=str),
            source=np.array("MICA-MNI/ENIGMA@d66a7ef320a913f9441bf1089b44f1dad11e5724 enigmatoolbox/datasets"),
        )
        print(name, {s: int((l > 0).sum()) for s, l in labels.items()}, len(names))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
