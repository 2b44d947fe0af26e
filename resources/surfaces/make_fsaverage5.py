#!/usr/bin/env python3
"""Rebuild ``fsaverage5.npz`` (the bundled fsaverage5 meshes) from nilearn's bundled copy.

Usage: ``python resources/surfaces/make_fsaverage5.py``  (needs nilearn >= 0.11, offline)

Reads ``nilearn.datasets.load_fsaverage("fsaverage5")`` and
``nilearn.datasets.load_fsaverage_data(mesh="fsaverage5", data_type=...)`` (the GIFTI files
under ``nilearn/datasets/data/fsaverage5/``, shipped inside the nilearn wheel, nothing is
downloaded) and writes, per hemisphere ``h`` in ``left``/``right``:

- ``coords_<kind>_<h>`` (10242, 3) float32 mm, kind in pial, inflated, sphere, white, flat
  (``white`` is nilearn's ``white_matter``);
- ``faces_<h>`` (20480, 3) int32, shared by pial, inflated, sphere and white (checked);
- ``faces_flat_<h>`` (n, 3) int32, the flat patch's own triangles (the cut removes some);
- ``sulc_<h>``, ``curv_<h>`` (10242,) float32 (sulcal depth, curvature);

plus ``source`` and ``nilearn_version`` (str). The file is written compressed
(an ``.npz`` as ``np.savez_compressed`` writes it, but with fixed member time stamps so that
the same nilearn gives the same bytes) and atomically (temp + ``os.replace``). Licence: see
README.md.
"""

from __future__ import annotations

import io
import os
import sys
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "fsaverage5.npz"

KINDS = {"pial": "pial", "inflated": "inflated", "sphere": "sphere", "white": "white_matter", "flat": "flat"}
DATA = {"sulc": "sulcal", "curv": "curvature"}
HEMIS = ("left", "right")
N_VERTICES, N_FACES = 10242, 20480


def collect() -> dict:
    """All arrays of the bundle, read from nilearn's copy (nothing written)."""
    import nilearn
    from nilearn import datasets

    bunch = datasets.load_fsaverage("fsaverage5")
    arrays = {}
    for h in HEMIS:
        shared = np.asarray(bunch["pial"].parts[h].faces)
        assert shared.shape == (N_FACES, 3), shared.shape
        arrays[f"faces_{h}"] = shared.astype(np.int32)
        for kind, key in KINDS.items():
            part = bunch[key].parts[h]
            coords = np.asarray(part.coordinates)
            assert coords.shape == (N_VERTICES, 3) and np.isfinite(coords).all(), (kind, h, coords.shape)
            assert np.array_equal(coords.astype(np.float32), coords), f"{kind} {h}: not float32-exact"
            arrays[f"coords_{kind}_{h}"] = coords.astype(np.float32)
            faces = np.asarray(part.faces)
            if kind == "flat":
                arrays[f"faces_flat_{h}"] = faces.astype(np.int32)
            else:
                assert np.array_equal(faces, shared), f"{kind} {h}: faces differ from pial's"
        for name, data_type in DATA.items():
            # the per-vertex data do not depend on the mesh type; ask for the pial one
            d = datasets.load_fsaverage_data(mesh="fsaverage5", mesh_type="pial", data_type=data_type)
            v = np.asarray(d.data.parts[h]).ravel()
            assert v.shape == (N_VERTICES,), (name, h, v.shape)
            arrays[f"{name}_{h}"] = v.astype(np.float32)
    arrays["source"] = np.array(
        f"nilearn {nilearn.__version__}: nilearn/datasets/data/fsaverage5/*.gii.gz via "
        "nilearn.datasets.load_fsaverage('fsaverage5') and load_fsaverage_data; FreeSurfer fsaverage5")
    arrays["nilearn_version"] = np.array(nilearn.__version__)
    return arrays


def write_npz(path: Path, arrays: dict) -> None:
    """``np.savez_compressed`` with fixed member dates (byte-reproducible), written atomically."""
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, buf.getvalue(), compresslevel=9)
    os.replace(tmp, path)


def main(out: Path = OUT) -> Path:
    arrays = collect()
    write_npz(out, arrays)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB, {len(arrays)} arrays)")
    return out


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
