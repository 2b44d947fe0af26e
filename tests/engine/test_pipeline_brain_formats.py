"""Every fMRI format that ``info`` calls usable is read by ``encode --brain`` and ``partition``:
NIfTI with a mask, a GIFTI hemisphere pair, CIFTI dtseries, parcel tables (TSV, NPY, H5).

The same planted responses (space A drives every target two TRs later) are written in each format;
each command must find them, with the TR taken from the file where the format stores one."""

import json

import h5py
import numpy as np
import pytest

import main
from engine.cli.info import _all_problems, inspect_path
from engine.encoding import preprocess as pp
from engine.encoding.results import EncodingResult
from engine.pipeline.results import read_partition

N_RUNS, N_TRS, TR_S = 3, 60, 2.0


def _planted(n_targets, seed=0):
    rng = np.random.default_rng(seed)
    A = [rng.standard_normal((N_TRS, 3)).astype(np.float32) for _ in range(N_RUNS)]
    B = [rng.standard_normal((N_TRS, 2)).astype(np.float32) for _ in range(N_RUNS)]
    W = rng.choice([-1.0, 1.0], (3, n_targets)) * (0.7 + np.abs(rng.standard_normal((3, n_targets))))
    Y = [(100.0 + pp.delay_runs([a], [2])[0] @ W + 0.5 * rng.standard_normal((N_TRS, n_targets)))
         .astype(np.float32) for a in A]                       # n_trs, n_targets (scanner-like offset)
    return A, B, Y


def _nifti(tmp, Y):
    import nibabel as nib

    shape = (3, 3, 2)
    mask = np.ones(shape, np.uint8)
    nib.save(nib.Nifti1Image(mask, np.eye(4)), tmp / "mask.nii.gz")
    files = []
    for i, y in enumerate(Y):
        img = nib.Nifti1Image(y.T.reshape(*shape, N_TRS), np.eye(4))
        img.header.set_zooms((2.0, 2.0, 2.0, TR_S))
        img.header.set_xyzt_units("mm", "sec")
        nib.save(img, tmp / f"sub-01_run-{i + 1}_bold.nii.gz")
        files.append(tmp / f"sub-01_run-{i + 1}_bold.nii.gz")
    return files, ["--brain-mask", str(tmp / "mask.nii.gz")], 18


def _gifti(tmp, Y):
    import nibabel as nib

    files = []
    for i, y in enumerate(Y):
        for hemi, cols in (("L", slice(0, 10)), ("R", slice(10, 20))):
            img = nib.gifti.GiftiImage(darrays=[nib.gifti.GiftiDataArray(row[cols].astype(np.float32),
                                                                         intent="NIFTI_INTENT_TIME_SERIES")
                                                for row in y])
            nib.save(img, tmp / f"sub-01_run-{i + 1}_hemi-{hemi}_bold.func.gii")
        (tmp / f"sub-01_run-{i + 1}_hemi-L_bold.json").write_text(json.dumps({"RepetitionTime": TR_S}))
        files.append(tmp / f"sub-01_run-{i + 1}_hemi-L_bold.func.gii")
    return files, [], 20


def _cifti(tmp, Y):
    import nibabel as nib

    files = []
    bm = nib.cifti2.BrainModelAxis.from_mask(np.ones(12, bool), name="CortexLeft")
    for i, y in enumerate(Y):
        series = nib.cifti2.SeriesAxis(start=0.0, step=TR_S, size=N_TRS, unit="SECOND")
        nib.save(nib.cifti2.Cifti2Image(y, header=(series, bm)), tmp / f"run-{i + 1}.dtseries.nii")
        files.append(tmp / f"run-{i + 1}.dtseries.nii")
    return files, [], 12


def _tsv(tmp, Y):
    files = []
    for i, y in enumerate(Y):
        header = "\t".join(f"parcel_{k}" for k in range(y.shape[1]))
        np.savetxt(tmp / f"run-{i + 1}.tsv", y, delimiter="\t", header=header, comments="", fmt="%.6f")
        files.append(tmp / f"run-{i + 1}.tsv")
    return files, ["--tr", str(TR_S)], 8


def _npy(tmp, Y):
    files = []
    for i, y in enumerate(Y):
        np.save(tmp / f"run-{i + 1}.npy", y)
        files.append(tmp / f"run-{i + 1}.npy")
    return files, ["--tr", str(TR_S)], 8


def _h5(tmp, Y):
    files = []
    for i, y in enumerate(Y):
        with h5py.File(tmp / f"run-{i + 1}.h5", "w") as h:
            h["bold"] = y
        files.append(tmp / f"run-{i + 1}.h5")
    return files, ["--tr", str(TR_S)], 8


FORMATS = {"nifti+mask": _nifti, "gifti pair": _gifti, "cifti dtseries": _cifti, "parcel tsv": _tsv,
           "npy": _npy, "h5": _h5}
N_TARGETS = {"nifti+mask": 18, "gifti pair": 20, "cifti dtseries": 12, "parcel tsv": 8, "npy": 8, "h5": 8}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_info_usable_means_encode_and_partition_read_it(fmt, tmp_path, capsys):
    A, B, Y = _planted(N_TARGETS[fmt])
    brain, extra, n_targets = FORMATS[fmt](tmp_path, Y)
    for f in brain:
        report = inspect_path(f)
        assert _all_problems(report) == [], (fmt, report)          # info: usable as is
    feats_a, feats_b = [], []
    for i, (a, b) in enumerate(zip(A, B)):
        np.save(tmp_path / f"A{i}.npy", a)
        np.save(tmp_path / f"B{i}.npy", b)
        feats_a.append(str(tmp_path / f"A{i}.npy"))
        feats_b.append(str(tmp_path / f"B{i}.npy"))
    brain = [str(f) for f in brain]
    out = tmp_path / "enc.h5"
    rc = main.main(["encode", "--features", *feats_a, "--brain", *brain, *extra, "--alphas", "0.1:1e4:6",
                    "--out", str(out), "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "delays 1-5 TRs (2.00-10.00 s at TR 2 s)" in captured.out        # the TR came through
    res = EncodingResult.load(out)
    assert res.scores.shape == (n_targets,) and res.tr_s == TR_S
    assert res.scores.min() > 0.5, res.scores

    part = tmp_path / "part.h5"
    rc = main.main(["partition", "--space", "a=" + ",".join(feats_a), "--space", "b=" + ",".join(feats_b),
                    "--brain", *brain, *extra, "--alphas", "0.1:1e4:6", "--joint", "--out", str(part),
                    "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    p = read_partition(part)
    assert p["regions"]["unique:a"].shape == (n_targets,)
    assert np.median(p["regions"]["unique:a"]) > 0.3 > np.median(np.abs(p["regions"]["unique:b"]))


def test_tables_without_a_tr_are_refused_naming_the_flag(tmp_path, capsys):
    A, _, Y = _planted(8)
    brain, _, _ = _npy(tmp_path, Y)
    for i, a in enumerate(A):
        np.save(tmp_path / f"A{i}.npy", a)
    rc = main.main(["encode", "--features", *[str(tmp_path / f"A{i}.npy") for i in range(N_RUNS)],
                    "--brain", *map(str, brain), "--out", str(tmp_path / "o.h5"), "--no-progress"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "--tr" in err and "Traceback" not in err
    assert not (tmp_path / "o.h5").exists()
