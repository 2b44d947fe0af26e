"""The one safe array reader, read_brain_file for every fMRI format, the fit-input checks and
project path descriptions (engine.io.arrays, engine.io.fmri, engine.atomic)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.atomic import describe_project_path
from engine.errors import ConfigError, DataError, MismatchError
from engine.io import arrays as A
from engine.io.fmri import declared_space, read_brain_file


def test_read_array_refuses_hostile_files_before_allocating(tmp_path, monkeypatch):
    import h5py
    from numpy.lib import format as npformat

    rng = np.random.default_rng(0)
    good = rng.standard_normal((20, 7)).astype(np.float32)
    np.save(tmp_path / "good.npy", good)
    arr, name = A.read_array(tmp_path / "good.npy")
    assert name == "" and np.array_equal(arr, good)
    assert isinstance(A.read_array(tmp_path / "good.npy", mmap=True)[0], np.memmap)

    np.save(tmp_path / "obj.npy", np.array([1, "x", None], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="Python objects.*never unpickles"):
        A.read_array(tmp_path / "obj.npy")
    with open(tmp_path / "absurd.npy", "wb") as fh:   # 4 EB declared, 10 bytes stored
        npformat.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": (2 ** 30, 2 ** 30)})
        fh.write(b"0123456789")
    with pytest.raises(DataError, match=r"4\.0 EB of data .* found only 10 bytes"):
        A.read_array(tmp_path / "absurd.npy")
    # within the file, but beyond the memory budget
    monkeypatch.setenv(A.BUDGET_ENV, "100")
    with pytest.raises(DataError, match=r"fits in memory \(at most 100 bytes"):
        A.read_array(tmp_path / "good.npy")
    monkeypatch.delenv(A.BUDGET_ENV)

    with h5py.File(tmp_path / "runs.h5", "w") as h:
        h["ses-001/run-1"] = good
        h["ses-001/run-2"] = good * 2
        h.create_dataset("lazy", shape=(10 ** 6, 10 ** 6), dtype="f4", chunks=(100, 100))
        h["labels"] = np.array([b"a", b"b"])
    with pytest.raises(DataError, match=r"4 arrays: \['labels', 'lazy', 'ses-001/run-1', 'ses-001/run-2'\]"):
        A.read_array(tmp_path / "runs.h5")
    assert np.array_equal(A.read_array(tmp_path / "runs.h5", "ses-001/run-2")[0], good * 2)
    with pytest.raises(DataError, match=r"declares shape \(1000000, 1000000\) \(3\.6 TB\) but has no data written"):
        A.read_array(tmp_path / "runs.h5", "lazy")
    with pytest.raises(DataError, match="text or raw bytes"):
        A.read_array(tmp_path / "runs.h5", "labels")
    with pytest.raises(DataError, match=r"array 'nope' in runs.h5: expected one of the file's arrays"):
        A.read_array(tmp_path / "runs.h5", "nope")
    (tmp_path / "csv.h5").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match=r"expected an HDF5 file .*found a text file"):
        A.read_array(tmp_path / "csv.h5")
    np.savez(tmp_path / "z.npz", a=good, b=good[:0])
    with pytest.raises(DataError, match=r"\[b\]: expected a non-empty array"):
        A.read_array(tmp_path / "z.npz", "b")
    (tmp_path / "z.h5").write_bytes((tmp_path / "z.npz").read_bytes())
    with pytest.raises(DataError, match=r"zip archive \(.npz\) \(rename it to .npz\)"):
        A.read_array(tmp_path / "z.h5")


def test_virtual_hdf5_datasets_are_read_not_mistaken_for_lazy_ones(tmp_path):
    import h5py

    with h5py.File(tmp_path / "src.h5", "w") as f:
        f["a"] = np.arange(20.0).reshape(4, 5)
    layout = h5py.VirtualLayout(shape=(4, 5), dtype="f8")
    layout[:] = h5py.VirtualSource(str(tmp_path / "src.h5"), "a", shape=(4, 5))
    with h5py.File(tmp_path / "vds.h5", "w") as f:
        f.create_virtual_dataset("v", layout)
    assert np.array_equal(A.read_array(tmp_path / "vds.h5")[0], np.arange(20.0).reshape(4, 5))


def test_read_arrays_of_a_feature_file(tmp_path):
    import h5py

    with h5py.File(tmp_path / "feats.h5", "w") as h:
        h["features/layer%2F1"] = np.ones((5, 3), np.float32)
        h["features/motion"] = np.zeros((5, 2), np.float32)
        h["meta_scalar"] = 3
    got = A.read_arrays(tmp_path / "feats.h5")
    assert sorted(got) == ["layer/1", "motion"] and got["layer/1"].shape == (5, 3)
    assert list(A.read_arrays(tmp_path / "feats.h5", names=["motion"])) == ["motion"]
    with pytest.raises(DataError, match=r"arrays \['nope'\] in feats.h5"):
        A.read_arrays(tmp_path / "feats.h5", names=["nope"])


def test_read_brain_file_formats_and_refusals(tmp_path):
    import nibabel as nib

    rng = np.random.default_rng(1)
    np.save(tmp_path / "run.npy", rng.standard_normal((12, 5)).astype(np.float32))
    run = read_brain_file(tmp_path / "run.npy")
    assert run.data.shape == (12, 5) and run.meta["tr_known"] is False and run.meta["constant_targets"] == 0
    assert read_brain_file(tmp_path / "run.npy", tr_s=2.0).meta["tr_known"] is True
    with pytest.raises(ConfigError, match="TR: expected a positive number"):
        read_brain_file(tmp_path / "run.npy", tr_s=0)
    np.save(tmp_path / "row.npy", np.ones((1, 50), np.float32))
    with pytest.raises(DataError, match="at least 2 TRs, found 1 TR"):
        read_brain_file(tmp_path / "row.npy")

    img = rng.standard_normal((4, 4, 4, 10)).astype(np.float32) + 10
    nib.save(nib.Nifti1Image(img, np.eye(4)), tmp_path / "bold.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.uint8), np.eye(4)), tmp_path / "mask.nii.gz")
    run = read_brain_file(tmp_path / "bold.nii.gz", mask=tmp_path / "mask.nii.gz", tr_s=1.5)
    assert run.data.shape == (10, 64) and run.space == "volume"
    np.testing.assert_allclose(run.data, img.reshape(64, 10).T, rtol=1e-6)
    with pytest.raises(DataError, match=r"4-D NIfTI run .* found a 3-D image .* not a run"):
        read_brain_file(tmp_path / "mask.nii.gz")
    with pytest.raises(DataError, match=r"mask bold.nii.gz: expected a 3-D image"):
        read_brain_file(tmp_path / "bold.nii.gz", mask=tmp_path / "bold.nii.gz")
    raw = (tmp_path / "bold.nii.gz").read_bytes()
    nib.save(nib.Nifti1Image(img, np.eye(4)), tmp_path / "plain.nii")
    raw = (tmp_path / "plain.nii").read_bytes()
    (tmp_path / "cut.nii").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="cut short or its header is corrupt"):
        read_brain_file(tmp_path / "cut.nii")

    # GIFTI pairs: found from either hemisphere; the declared space is checked
    def gifti(path, n_vertices, n_trs=6, seed=0):
        r = np.random.default_rng(seed)
        darrays = [nib.gifti.GiftiDataArray(r.standard_normal(n_vertices).astype(np.float32)) for _ in range(n_trs)]
        nib.save(nib.gifti.GiftiImage(darrays=darrays), path)

    for hemi, seed in (("L", 1), ("R", 2)):
        gifti(tmp_path / f"sub-01_hemi-{hemi}_space-fsaverage5_bold.func.gii", 100, seed=seed)
        gifti(tmp_path / f"sub-01_hemi-{hemi}_bold.func.gii", 100, seed=seed)
    with pytest.raises(MismatchError, match=r"expected 20484 vertices \(fsaverage5\), found 200"):
        read_brain_file(tmp_path / "sub-01_hemi-R_space-fsaverage5_bold.func.gii")
    left = read_brain_file(tmp_path / "sub-01_hemi-L_bold.func.gii", tr_s=1.0)
    right = read_brain_file(tmp_path / "sub-01_hemi-R_bold.func.gii", tr_s=1.0)
    assert left.data.shape == (6, 200) and np.array_equal(left.data, right.data)   # left first either way
    (tmp_path / "sub-01_hemi-R_bold.func.gii").unlink()
    with pytest.raises(DataError, match="other hemisphere at sub-01_hemi-R_bold.func.gii, found nothing"):
        read_brain_file(tmp_path / "sub-01_hemi-L_bold.func.gii")
    assert declared_space("sub-01_space-fsLR_den-32k_bold.dtseries.nii") == "fsLR32k"
    assert declared_space("x_space-MNI152NLin2009cAsym_bold.nii.gz") is None


def test_check_fit_inputs(tmp_path):
    rng = np.random.default_rng(2)
    X = [rng.standard_normal((30, 6)).astype(np.float32) for _ in range(3)]
    Y = [rng.standard_normal((30, 8)).astype(np.float32) for _ in range(3)]
    assert A.check_fit_inputs(X, Y, delays=[1, 2], pca=None) == []
    with pytest.raises(ConfigError, match=r"--pca for features: expected at most 6 components"):
        A.check_fit_inputs(X, Y, delays=[1], pca=7)
    assert A.check_fit_inputs(X, Y, delays=[1], pca=0.9) == []
    with pytest.raises(ConfigError, match="variance fraction"):
        A.check_fit_inputs(X, Y, delays=[1], pca=1.5)
    with pytest.raises(ConfigError, match=r"shortest run \(run 1: 30 TRs\), found a delay of 30 TRs"):
        A.check_fit_inputs(X, Y, delays=[1, 30])
    assert "acausal" in A.check_fit_inputs(X, Y, delays=[-1, 1])[0]
    with pytest.raises(ConfigError, match=r"--block: expected a block of at most the shortest run"):
        A.check_fit_inputs(X, Y, delays=[1], block_trs=31)
    flat = [np.ones_like(x) for x in X]
    with pytest.raises(DataError, match="nothing to fit"):
        A.check_fit_inputs({"silent": flat}, Y, delays=[1])
    warn = A.check_fit_inputs({"a": X, "b": [np.column_stack([x, np.zeros(30)]) for x in X]}, Y, delays=[1])
    assert warn == ["features b: 1 of 7 columns are constant in every run (they carry nothing)"]
    Yc = [y.copy() for y in Y]
    for y in Yc:
        y[:, [2, 5]] = 4.0
    assert A.check_fit_inputs(X, Yc, delays=[1])[0].startswith("2 of 8 brain targets are constant")
    with pytest.raises(DataError, match="all 8 targets constant"):
        A.check_fit_inputs(X, [np.zeros_like(y) for y in Y], delays=[1])
    A.check_block(10, [30, 12])
    with pytest.raises(ConfigError, match=r"run 2: 12 TRs"):
        A.check_block(13, [30, 12])


def test_describe_project_path(tmp_path):
    import os
    import stat

    root = tmp_path / "proj"
    (root / "data").mkdir(parents=True)
    (root / "data" / "run.npy").write_bytes(b"x")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "movie.mp4").write_bytes(b"x")
    (root / "link").symlink_to(outside)
    d = describe_project_path(root, "data/run.npy")
    assert d["inside_project"] and d["kind"] == "file" and d["problem"] is None
    d = describe_project_path(root, "link/movie.mp4")
    assert not d["inside_project"] and d["via_symlink"] and d["points_to"] == str(outside / "movie.mp4")
    d = describe_project_path(root, "../elsewhere/missing.mp4")
    assert not d["inside_project"] and "found nothing" in d["problem"]
    os.mkfifo(root / "pipe")
    d = describe_project_path(root, "pipe")
    assert d["kind"] == "fifo" and "expected a regular file, found a fifo" in d["problem"]
    assert stat.S_ISFIFO(os.stat(root / "pipe").st_mode)
