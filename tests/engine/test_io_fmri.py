"""fMRI runs: every loader on generated files (planted values), preprocessing against nilearn,
errors for corrupt / truncated / mis-shaped / NaN inputs, pairing, and the real Alice tables."""

import json
import warnings
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest

from engine.errors import ConfigError, DataError, MismatchError
from engine.io import fmri
from engine.project import Project, RunRef

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
ALICE = DATA / "alice_brennan2016" / "alice_data_shared"
RNG = np.random.default_rng(42)


def _nifti_run(tmp_path, n_trs=20, tr=1.49, shape=(6, 6, 6), name="sub-01_task-x_bold.nii.gz"):
    data = (RNG.normal(size=shape + (n_trs,)) + 100).astype(np.float32)
    img = nib.Nifti1Image(data, np.diag([3, 3, 3, 1]).astype(float))
    img.header.set_zooms((3, 3, 3, tr))
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, tmp_path / name)
    return tmp_path / name, data


# ---- NIfTI ---------------------------------------------------------------------------------
def test_nifti_with_mask_gives_the_masked_voxels(tmp_path):
    path, data = _nifti_run(tmp_path)
    mask = np.zeros((6, 6, 6), np.uint8)
    mask[1:4, 2:5, 0:3] = 1
    nib.save(nib.Nifti1Image(mask, np.diag([3, 3, 3, 1]).astype(float)), tmp_path / "mask.nii.gz")
    run = fmri.load_nifti_run(path, mask=tmp_path / "mask.nii.gz")
    assert run.data.shape == (20, 27) and run.space == "volume"
    assert run.tr_s == pytest.approx(1.49)
    assert np.allclose(run.data, data[mask.astype(bool)].T)   # same voxel order as numpy's C order
    assert run.meta["n_voxels"] == 27 and run.meta["tr_source"] == "header"
    # sidecar wins over the header, an argument over both
    (tmp_path / "sub-01_task-x_bold.json").write_text(json.dumps({"RepetitionTime": 2.0}))
    assert fmri.load_nifti_run(path, mask=tmp_path / "mask.nii.gz").tr_s == 2.0
    assert fmri.load_nifti_run(path, mask=tmp_path / "mask.nii.gz", tr_s=0.8).tr_s == 0.8


def test_nifti_errors(tmp_path):
    path, _ = _nifti_run(tmp_path)
    raw = path.read_bytes()
    (tmp_path / "trunc.nii.gz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="expected a 4-D NIfTI image, found unreadable"):
        fmri.load_nifti_run(tmp_path / "trunc.nii.gz")
    (tmp_path / "junk.nii").write_bytes(b"not a nifti at all" * 30)
    with pytest.raises(DataError, match="unreadable"):
        fmri.load_nifti_run(tmp_path / "junk.nii")
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)), tmp_path / "vol.nii.gz")
    with pytest.raises(DataError, match=r"expected a 4-D NIfTI run .* found a 3-D image of shape \(4, 4, 4\): one volume"):
        fmri.load_nifti_run(tmp_path / "vol.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((5, 5, 5), np.uint8), np.eye(4)), tmp_path / "m.nii.gz")
    with pytest.raises(MismatchError, match=r"shape \(6, 6, 6\).*found shape \(5, 5, 5\)"):
        fmri.load_nifti_run(path, mask=tmp_path / "m.nii.gz")
    with pytest.raises(DataError, match="nothing at"):
        fmri.load_nifti_run(tmp_path / "none.nii.gz")


def test_nifti_nan_reported_with_count_and_place(tmp_path):
    data = (RNG.normal(size=(4, 4, 4, 12)) + 10).astype(np.float32)
    data[1, 1, 1, 3] = np.nan
    data[2, 2, 2, 7] = np.nan
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "n.nii.gz")
    mask = np.ones((4, 4, 4), np.uint8)
    nib.save(nib.Nifti1Image(mask, np.eye(4)), tmp_path / "mask.nii.gz")
    run = fmri.load_nifti_run(tmp_path / "n.nii.gz", mask=tmp_path / "mask.nii.gz", tr_s=2.0)
    assert np.isnan(run.data).sum() == 2
    with pytest.raises(DataError, match=r"2 NaN/inf values of 768 in TRs \[3, 7\]"):
        fmri.apply_preprocessing(run, {})


# ---- GIFTI --------------------------------------------------------------------------------
def _gifti(path, data):
    img = nib.GiftiImage(darrays=[nib.gifti.GiftiDataArray(row.astype(np.float32)) for row in data])
    nib.save(img, path)


def test_gifti_pair_left_first(tmp_path):
    lh = RNG.normal(size=(8, 10242)).astype(np.float32)
    rh = RNG.normal(size=(8, 10242)).astype(np.float32)
    base = "sub-01_task-s01e01a_space-fsaverage5_hemi-{}_bold.func.gii"
    _gifti(tmp_path / base.format("L"), lh)
    _gifti(tmp_path / base.format("R"), rh)
    run = fmri.load_gifti_run(tmp_path / base.format("L"), tr_s=1.49)
    assert run.space == "fsaverage5" and run.data.shape == (8, 20484)
    assert np.array_equal(run.data[:, :10242], lh) and np.array_equal(run.data[:, 10242:], rh)
    # hemispheres that disagree
    _gifti(tmp_path / base.format("R"), rh[:6])
    with pytest.raises(MismatchError, match="8 and 6"):
        fmri.load_gifti_run(tmp_path / base.format("L"), tr_s=1.49)
    (tmp_path / base.format("R")).unlink()
    with pytest.raises(DataError, match="hemi-R"):
        fmri.load_gifti_run(tmp_path / base.format("L"), tr_s=1.49)
    (tmp_path / "x_hemi-L_bold.func.gii").write_bytes(b"<?xml version='1.0'?><GIFTI>")
    (tmp_path / "x_hemi-R_bold.func.gii").write_bytes(b"<?xml version='1.0'?><GIFTI>")
    with pytest.raises(DataError, match="expected a GIFTI functional file"):
        fmri.load_gifti_run(tmp_path / "x_hemi-L_bold.func.gii", tr_s=1.0)


# ---- CIFTI --------------------------------------------------------------------------------
def _dtseries(path, n_trs=5, tr=1.49):
    from engine.io.surfaces import cortex_mask

    mask = cortex_mask("fsLR32k")
    thalamus = np.zeros((20, 20, 20), bool)
    thalamus[10, 10, 10] = thalamus[10, 11, 10] = thalamus[11, 10, 10] = True
    bm = (nib.cifti2.BrainModelAxis.from_mask(mask[:32492], name="CortexLeft")
          + nib.cifti2.BrainModelAxis.from_mask(mask[32492:], name="CortexRight")
          + nib.cifti2.BrainModelAxis.from_mask(thalamus, name="thalamus_left", affine=np.eye(4)))
    series = nib.cifti2.SeriesAxis(start=0, step=tr, size=n_trs)
    data = RNG.normal(size=(n_trs, len(bm))).astype(np.float32)
    nib.save(nib.Cifti2Image(data, header=(series, bm)), path)
    return data, mask


def test_cifti_dtseries_keeps_brain_models(tmp_path):
    data, mask = _dtseries(tmp_path / "r.dtseries.nii")
    run = fmri.load_cifti_run(tmp_path / "r.dtseries.nii")
    n_ctx = int(mask.sum())
    assert run.data.shape == (5, n_ctx + 3) and run.tr_s == pytest.approx(1.49)
    assert np.allclose(run.data, data)
    models = {m["structure"]: m for m in run.meta["brain_models"]}
    assert models["CIFTI_STRUCTURE_CORTEX_LEFT"]["n_vertices"] == 32492
    assert models["CIFTI_STRUCTURE_THALAMUS_LEFT"]["stop"] - models["CIFTI_STRUCTURE_THALAMUS_LEFT"]["start"] == 3
    full = fmri.cifti_cortex_to_mesh(run)
    assert full.shape == (5, 64984) and np.isnan(full[:, ~mask]).all()
    assert np.allclose(full[:, mask], data[:, :n_ctx])


def test_cifti_ptseries_and_errors(tmp_path):
    parcels = nib.cifti2.ParcelsAxis.from_brain_models(
        [(f"p{k}", nib.cifti2.BrainModelAxis.from_surface(np.arange(k * 10, k * 10 + 10), 32492, "CortexLeft"))
         for k in range(4)])
    series = nib.cifti2.SeriesAxis(0, 2.0, 7)
    data = RNG.normal(size=(7, 4)).astype(np.float32)
    nib.save(nib.Cifti2Image(data, header=(series, parcels)), tmp_path / "p.ptseries.nii")
    run = fmri.load_cifti_run(tmp_path / "p.ptseries.nii")
    assert run.space == "parcels" and run.meta["parcel_names"] == ["p0", "p1", "p2", "p3"] and run.tr_s == 2.0
    assert np.allclose(run.data, data)
    raw = (tmp_path / "p.ptseries.nii").read_bytes()
    (tmp_path / "t.ptseries.nii").write_bytes(raw[: len(raw) - 40])
    with pytest.raises(DataError, match="expected a CIFTI-2"):
        fmri.load_cifti_run(tmp_path / "t.ptseries.nii")


# ---- tables -------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["tsv", "csv", "txt", "npy", "npz", "h5"])
def test_tables_all_formats(tmp_path, fmt):
    data = RNG.normal(size=(30, 7)).astype(np.float32)
    p = tmp_path / f"run.{fmt}"
    if fmt == "tsv":
        np.savetxt(p, data, delimiter="\t", header="\t".join(f"roi{k}" for k in range(7)), comments="", fmt="%.7g")
    elif fmt == "csv":
        np.savetxt(p, data, delimiter=",", fmt="%.7g")
    elif fmt == "txt":
        np.savetxt(p, data, fmt="%.7g")
    elif fmt == "npy":
        np.save(p, data)
    elif fmt == "npz":
        np.savez(p, bold=data, other=data[:3])
    else:
        with h5py.File(p, "w") as f:
            f["ses-001_task-a"] = data
            f["ses-002_task-b"] = data[:10]
    ds = {"npz": "bold", "h5": "ses-001_task-a"}.get(fmt)
    run = fmri.load_table_run(p, tr_s=2.0, dataset=ds)
    assert run.data.shape == (30, 7) and np.allclose(run.data, data, atol=1e-5)
    if fmt == "tsv":
        assert run.meta["column_names"][0] == "roi0"
    if fmt in ("npz", "h5"):
        with pytest.raises(DataError, match="ses-002_task-b|other"):
            fmri.load_table_run(p, tr_s=2.0)           # several arrays and no name given


def test_table_errors(tmp_path):
    np.save(tmp_path / "cube.npy", np.zeros((3, 4, 5), np.float32))
    with pytest.raises(DataError, match=r"2-D array \(n_trs, n_targets\).*\(3, 4, 5\)"):
        fmri.load_table_run(tmp_path / "cube.npy", 1.0)
    np.save(tmp_path / "wide.npy", np.zeros((20484, 10), np.float32))
    with pytest.raises(MismatchError, match="20484 columns .* swapped"):
        fmri.load_table_run(tmp_path / "wide.npy", 1.0, space="fsaverage5")
    np.save(tmp_path / "p.npy", np.zeros((10, 99), np.float32))
    with pytest.raises(MismatchError, match="100 columns \\(parcels of schaefer100\\), found 99"):
        fmri.load_table_run(tmp_path / "p.npy", 1.0, atlas="schaefer100")
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DataError, match="expected a NumPy .npy array, found a damaged header"):
        fmri.load_table_run(tmp_path / "bad.npy", 1.0)
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f["x"] = np.zeros((50, 10))
    raw = (tmp_path / "f.h5").read_bytes()
    (tmp_path / "trunc.h5").write_bytes(raw[:1000])
    with pytest.raises(DataError, match="expected an HDF5 file h5py can open, found a damaged file"):
        fmri.load_table_run(tmp_path / "trunc.h5", 1.0)
    (tmp_path / "words.tsv").write_text("a\tb\n1\tx\n2\ty\n")
    with pytest.raises(DataError, match=r"numbers in every column, found text in column\(s\) \['b'\]"):
        fmri.load_table_run(tmp_path / "words.tsv", 1.0)
    with pytest.raises(ConfigError, match=r"\.func\.gii"):
        fmri.file_kind("run.mat")


# ---- NaN policies --------------------------------------------------------------------------
def test_nan_policies(tmp_path):
    data = np.tile(np.arange(10, dtype=np.float32)[:, None], (1, 4))
    data[4, 1] = np.nan
    data[0, 2] = np.nan
    data[:, 3] = np.nan
    with pytest.raises(DataError) as err:
        fmri.repair_nonfinite(data, "error", "run r")
    msg = str(err.value)
    assert "12 NaN/inf values of 40" in msg and "targets [1, 2, 3]" in msg
    assert "1 targets are NaN throughout" in msg and "nan_policy='interpolate'" in msg
    fixed, rec = fmri.repair_nonfinite(data, "interpolate")
    assert fixed[4, 1] == pytest.approx(4.0) and fixed[0, 2] == pytest.approx(1.0)  # edge: nearest value
    assert (fixed[:, 3] == 0).all() and rec["n_values"] == 12 and rec["policy"] == "interpolate"
    zero, _ = fmri.repair_nonfinite(data, "zero")
    assert zero[4, 1] == 0 and zero[5, 1] == 5
    with pytest.raises(ConfigError, match="interpolate"):
        fmri.repair_nonfinite(data, "drop")


# ---- preprocessing ------------------------------------------------------------------------
def test_preprocessing_agrees_with_nilearn():
    from nilearn import signal

    X = RNG.normal(size=(150, 20)).cumsum(axis=0) + 50
    C = RNG.normal(size=(150, 4))
    ours, steps = fmri.preprocess(X, 1.49, detrend=1, high_pass_hz=0.01, confounds=C)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = signal.clean(X, confounds=C, detrend=True, standardize=None, filter="cosine", high_pass=0.01,
                           t_r=1.49, standardize_confounds=False)
    assert np.allclose(ours - X.mean(0), ref, atol=1e-4)      # nilearn also removes the mean
    assert [s["step"] for s in steps] == ["confound_regression", "detrend", "high_pass"]
    ours, steps = fmri.preprocess(X, 1.49, high_pass_hz=0.02, high_pass_method="butterworth", standardize=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = signal.clean(X, detrend=False, standardize=None, filter="butterworth", high_pass=0.02, t_r=1.49)
    ref = (ref - ref.mean(0)) / ref.std(0)
    assert np.allclose(ours, ref, atol=1e-4)
    assert np.allclose(ours.mean(0), 0, atol=1e-5) and np.allclose(ours.std(0), 1, atol=1e-4)


def test_cubic_detrend_and_confound_regression_recover_planted_signal():
    t = np.linspace(-1, 1, 200)
    signal_ = np.sin(2 * np.pi * 7 * t)                      # what must survive
    drift = 3 * t ** 3 - 2 * t ** 2 + t                      # cubic
    motion = RNG.normal(size=(200, 2))
    y = (signal_ + drift + motion @ np.array([2.0, -1.5]) + 10)[:, None]
    clean, steps = fmri.preprocess(y, 2.0, detrend=3, confounds=motion, standardize=False)
    resid = clean[:, 0] - clean[:, 0].mean()
    assert np.corrcoef(resid, signal_)[0, 1] > 0.97
    assert abs(np.corrcoef(resid, motion[:, 0])[0, 1]) < 0.05
    assert clean[:, 0].mean() == pytest.approx(y.mean(), abs=1e-3)     # the mean is kept
    with pytest.raises(MismatchError, match="200 rows .* found 199"):
        fmri.preprocess(y, 2.0, confounds=motion[:199])
    with pytest.raises(ConfigError, match=r"high_pass_hz: expected a value in \(0, 0.25\)"):
        fmri.preprocess(y, 2.0, high_pass_hz=0.3)


def test_fmriprep_confounds_selection(tmp_path):
    cols = ["global_signal", "csf", "white_matter", "trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z",
            "trans_x_derivative1"] + [f"a_comp_cor_{k:02d}" for k in range(8)]
    table = RNG.normal(size=(25, len(cols)))
    table[0, cols.index("trans_x_derivative1")] = np.nan
    import pandas as pd

    pd.DataFrame(table, columns=cols).to_csv(tmp_path / "c.tsv", sep="\t", index=False, na_rep="n/a")
    values, names = fmri.read_confounds(tmp_path / "c.tsv", ["motion", "compcor", "trans_x_derivative1"])
    assert names[:6] == ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]
    assert names[6:11] == [f"a_comp_cor_{k:02d}" for k in range(5)] and values.shape == (25, 12)
    assert values[0, -1] == values[1, -1]                   # leading n/a filled
    _, names = fmri.read_confounds(tmp_path / "c.tsv", "a_comp_cor_0[67]")
    assert names == ["a_comp_cor_06", "a_comp_cor_07"]
    with pytest.raises(DataError, match=r"column\(s\) \['framewise_displacement'\]"):
        fmri.read_confounds(tmp_path / "c.tsv", ["framewise_displacement"])


# ---- load_run through a project ----------------------------------------------------------
def test_load_run_dispatch_and_recorded_preprocessing(tmp_path):
    data = (RNG.normal(size=(40, 100)) + 5).astype(np.float32)
    np.save(tmp_path / "r.npy", data)
    import pandas as pd

    conf = RNG.normal(size=(40, 6))
    pd.DataFrame(conf, columns=["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]).to_csv(
        tmp_path / "c.tsv", sep="\t", index=False)
    project = Project(name="p", runs=[RunRef("r1", "r.npy", "ep", space="parcels", tr_s=2.0, atlas="schaefer100",
                                             confounds="c.tsv")],
                      preprocessing={"detrend": 3, "high_pass_hz": 0.01, "standardize": True, "confounds": ["motion"]})
    project.save(tmp_path / "p.alignscope.json")
    project = Project.load(tmp_path / "p.alignscope.json")
    run = fmri.load_run(project.runs[0], project)
    assert run.data.shape == (40, 100) and run.tr_s == 2.0 and run.episode == "ep"
    steps = [s["step"] for s in run.meta["preprocessing"]]
    assert steps == ["confound_regression", "detrend", "high_pass", "standardize"]
    assert run.meta["preprocessing"][0]["columns"][0] == "trans_x"
    assert np.allclose(run.data.std(0), 1, atol=1e-4)
    assert np.abs(np.corrcoef(np.c_[run.data[:, :5], conf], rowvar=False)[:5, 5:]).max() < 1e-4
    raw = fmri.load_run(project.runs[0], project, preprocessing={})
    assert np.array_equal(raw.data, data) and raw.meta["preprocessing"] == []
    with pytest.raises(ConfigError, match="expected keys among"):
        fmri.load_run(project.runs[0], project, preprocessing={"smooth_mm": 6})


# ---- pairing ---------------------------------------------------------------------------------
def test_pair_run_durations():
    run = fmri.BrainRun(np.zeros((480, 3)), 1.49, "parcels", "sub-01_s01e01a")
    p = fmri.pair_run(run, episode_duration_s=716.0)
    assert p.run_duration_s == pytest.approx(715.2) and p.n_trs_expected == 481
    with pytest.raises(MismatchError) as err:
        fmri.pair_run(run, episode_duration_s=600.0, onset_s=2.0, dropped_volumes=3, tolerance_s=3.0)
    msg = str(err.value)
    assert "715.20 s" in msg and "598.00 s" in msg and "longer" in msg and "3 volumes dropped" in msg
    # Alice: 362 TRs of 2 s after 10 dropped volumes, story from 20 s to ~744 s
    assert fmri.pair_run(362, 744.0, tr_s=2.0, onset_s=20.0, dropped_volumes=10).difference_s == pytest.approx(0.0)


# ---- real data -----------------------------------------------------------------------------
@pytest.mark.skipif(not ALICE.is_dir(), reason="../shared/data/alice_brennan2016 absent")
def test_alice_roi_tables():
    files = sorted((ALICE / "6mm").glob("s*-timecourses.txt"))
    assert len(files) >= 20
    for f in files:
        run = fmri.load_table_run(f, 2.0)
        assert run.data.shape == (362, 6), f.name
        flat = fmri.constant_targets(run.data)
        if f.name.startswith("s33"):
            assert flat.size == 6 and (run.data == 0).all()
        else:
            assert flat.size == 0, f.name
    # motion parameters: 372 rows x 6, the first 10 align with the dropped volumes
    rp = sorted(ALICE.glob("s18-rp_*.txt"))[0]
    motion = fmri.load_table_run(rp, 2.0)
    assert motion.data.shape == (372, 6)


@pytest.mark.parametrize("fmt", ["gifti", "cifti", "h5", "tsv"])
def test_nan_in_every_format_is_reported_through_load_run(tmp_path, fmt):
    data = RNG.normal(size=(12, 10242 * 2 if fmt == "gifti" else 40)).astype(np.float32)
    data[5, 3] = np.nan
    data[6, 3] = np.nan
    if fmt == "gifti":
        _gifti(tmp_path / "r_hemi-L_bold.func.gii", data[:, :10242])
        _gifti(tmp_path / "r_hemi-R_bold.func.gii", data[:, 10242:])
        path = "r_hemi-L_bold.func.gii"
    elif fmt == "cifti":
        parcels = nib.cifti2.ParcelsAxis.from_brain_models(
            [(f"p{k}", nib.cifti2.BrainModelAxis.from_surface(np.array([k]), 32492, "CortexLeft")) for k in range(40)])
        nib.save(nib.Cifti2Image(data, header=(nib.cifti2.SeriesAxis(0, 1.0, 12), parcels)), tmp_path / "r.ptseries.nii")
        path = "r.ptseries.nii"
    elif fmt == "h5":
        with h5py.File(tmp_path / "r.h5", "w") as f:
            f["ses-001_task-a"] = data
        path = "r.h5"
    else:
        np.savetxt(tmp_path / "r.tsv", data, delimiter="\t", fmt="%.6g")
        path = "r.tsv"
    project = Project(name="n", root=tmp_path)
    ref = RunRef("r", path, "ep", space="fsaverage5" if fmt == "gifti" else "parcels", tr_s=1.0)
    with pytest.raises(DataError, match=r"2 NaN/inf values of \d+ in TRs \[5, 6\] and targets \[3\]"):
        fmri.load_run(ref, project)
    project.preprocessing = {"nan_policy": "interpolate"}
    run = fmri.load_run(ref, project)
    assert np.isfinite(run.data).all() and run.meta["preprocessing"][0]["n_values"] == 2
    assert run.data[5, 3] == pytest.approx(data[4, 3] + (data[7, 3] - data[4, 3]) / 3, abs=1e-4)
