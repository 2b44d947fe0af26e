"""Study maps of volume (NIfTI) runs go back to the run's grid as NIfTI: the voxels of the mask in
the order the loader read them, the run's affine, NaN outside the mask."""

from __future__ import annotations

import numpy as np
import pytest

nib = pytest.importorskip("nibabel")


def _write_run(tmp_path, with_mask: bool):
    rng = np.random.default_rng(3)
    shape = (7, 6, 5)
    affine = np.array([[2.5, 0, 0, -10], [0, 2.5, 0, -20], [0, 0, 3.0, 5], [0, 0, 0, 1]], float)
    data = np.zeros(shape + (12,), np.float32)
    brain = np.zeros(shape, bool)
    brain[1:6, 1:5, 1:4] = True
    brain[3, 2, 2] = False                                  # a hole: the order must still match
    data[brain] = 100 + rng.standard_normal((int(brain.sum()), 12)).astype(np.float32)
    run_path = tmp_path / "sub-01_task-x_bold.nii.gz"
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm", "sec")
    img.header["pixdim"][4] = 1.5
    nib.save(img, str(run_path))
    mask_path = None
    if with_mask:
        mask_path = tmp_path / "mask.nii.gz"
        nib.save(nib.Nifti1Image(brain.astype(np.uint8), affine), str(mask_path))
    return run_path, mask_path, affine, data


@pytest.mark.parametrize("with_mask", [True, False], ids=["mask-file", "nilearn-mask"])
def test_volume_map_round_trip(tmp_path, with_mask):
    from engine.io.fmri import load_nifti_run
    from engine.studies.common import volume_grid
    from engine.studies.report import export_nifti

    run_path, mask_path, affine, data = _write_run(tmp_path, with_mask)
    run = load_nifti_run(run_path, mask=mask_path, tr_s=1.5)
    grid = volume_grid(run)
    assert grid is not None and grid.n_voxels == run.n_targets
    # a per-voxel map whose values name the voxel: the first time point of the run itself
    values = run.data[0]                                    # n_voxels
    path = export_nifti(values, grid, tmp_path / "maps" / "delta_r")
    assert path.name == "delta_r.nii.gz"
    img = nib.load(str(path))
    vol = np.asarray(img.dataobj)
    assert vol.shape == data.shape[:3] and vol.dtype == np.float32
    np.testing.assert_allclose(img.affine, affine)
    inside = np.isfinite(vol)
    np.testing.assert_array_equal(inside, grid.mask)
    np.testing.assert_allclose(vol[inside], values, rtol=1e-6)
    # every voxel holds its own value of the run's first volume (nothing permuted)
    np.testing.assert_allclose(vol[inside], data[..., 0][grid.mask], rtol=1e-6)
    assert not list((tmp_path / "maps").glob(".tmp*"))


def test_volume_map_of_the_wrong_length_is_refused(tmp_path):
    from engine.errors import DataError
    from engine.io.fmri import load_nifti_run
    from engine.studies.common import volume_grid
    from engine.studies.report import export_nifti

    run_path, mask_path, _affine, _data = _write_run(tmp_path, True)
    grid = volume_grid(load_nifti_run(run_path, mask=mask_path, tr_s=1.5))
    with pytest.raises(DataError, match="voxels in the mask"):
        export_nifti(np.zeros(grid.n_voxels + 1), grid, tmp_path / "bad")
    assert not (tmp_path / "bad.nii.gz").exists()


def test_study_writes_nifti_maps_for_volume_runs(tmp_path):
    """write_study on a volume StudyData: NPY and NIfTI files per map, listed in study.json."""
    import json

    import pandas as pd

    from engine.io.fmri import load_nifti_run
    from engine.studies.common import StudyData, StudyResult, volume_grid
    from engine.studies.report import write_study

    run_path, mask_path, affine, _data = _write_run(tmp_path, True)
    run = load_nifti_run(run_path, mask=mask_path, tr_s=1.5)
    n = run.n_targets
    data = StudyData(project=None, project_file=tmp_path / "p.alignscope.json", runs=[run], brain=[run.data],
                     episodes=["ep"], run_names=["r1"], tr_s=1.5, space="volume",
                     labels=np.ones(n, np.int64), region_names=["all"], volume=volume_grid(run))
    rng = np.random.default_rng(0)
    delta = rng.standard_normal(n)
    result = StudyResult(workflow="encoders", title="t", out_dir=tmp_path / "out",
                         maps={"delta_r": delta}, map_meta={"delta_r": {"label": "Δr"}},
                         tables={"targets": pd.DataFrame({"target": np.arange(n), "difference": delta})})
    write_study(result, data)
    files = json.loads((tmp_path / "out" / "study.json").read_text())["maps"]["delta_r"]["files"]
    assert files == ["maps/delta_r.npy", "maps/delta_r.nii.gz"]
    vol = nib.load(str(tmp_path / "out" / "maps" / "delta_r.nii.gz"))
    np.testing.assert_allclose(np.asarray(vol.dataobj)[data.volume.mask], delta.astype(np.float32))
    np.testing.assert_allclose(vol.affine, affine)
    assert "delta_r.nii.gz" in (tmp_path / "out" / "report.html").read_text()
