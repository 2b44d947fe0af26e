"""File > Open on data folders as they are: the Algonauts 2025 release and a BIDS/fMRIPrep folder.

The window opens each folder without a project file (and writes none), pairs runs with episodes,
paints the release's parcel runs on fsaverage5 through the subject's own atlas volume, and gives
fsaverage5 runs of an fMRIPrep folder the bundled default atlas (regions to pick)."""

from __future__ import annotations

import gc

import numpy as np
import pytest


@pytest.fixture
def caches(tmp_path, monkeypatch):
    monkeypatch.setenv("ALIGNSCOPE_ATLAS_CACHE", str(tmp_path / "atlas_cache"))
    monkeypatch.setenv("ALIGNSCOPE_CACHE", str(tmp_path / "feature_cache"))


def _window(qtbot):
    from gui.main_window import MainWindow

    w = MainWindow(interactive_3d=False)
    qtbot.addWidget(w)
    w.resize(1300, 850)
    return w


def _close(w):
    from gui.cortex_view import live_plotter_count

    w.close()
    gc.collect()
    assert live_plotter_count() == 0


def test_open_the_algonauts_release_folder(qtbot, tmp_path, caches):
    from tests.engine.folder_layouts import make_release

    root = tmp_path / "algonauts_2025"
    truth = make_release(root)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    w = _window(qtbot)
    assert w.open_project(root)
    s = w.session
    assert s.episode.name == "friends_s01e01a"
    runs = [w.run_box.itemText(i) for i in range(w.run_box.count())]
    assert any("sub-01" in r for r in runs) and any("sub-05" in r for r in runs)
    # the parcel run is painted on the cortex through the subject's atlas: parcel values at vertices
    values = w.cortex_view.current_values
    assert values is not None and values.shape == (20484,)
    painted = np.isfinite(values) & (values != 0)
    assert painted.mean() > 0.3, painted.mean()
    # each vertex shows its parcel's value: vertices of one parcel share it
    atlas = s.run_atlas(s.run_names[0])
    labels = np.asarray(atlas.labels)
    some = [k for k in np.unique(labels) if k > 0][:5]
    for k in some:
        v = values[labels == k]
        assert np.allclose(v, v[0]), k
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before       # opening writes nothing
    assert truth["n_planted"] == 40
    _close(w)


def test_open_an_fmriprep_folder(qtbot, tmp_path, caches):
    from tests.engine.folder_layouts import make_fmriprep

    root = tmp_path / "bids"
    make_fmriprep(root)
    w = _window(qtbot)
    assert w.open_project(root)
    runs = [w.run_box.itemText(i) for i in range(w.run_box.count())]
    assert len(runs) >= 1 and all("sub-01" in r for r in runs)
    regions = [w.region_box.itemText(i) for i in range(w.region_box.count())]
    assert len(regions) > 300, "fsaverage5 runs get the bundled Schaefer-400 atlas by default"
    assert w.session.timeline().tr_s == pytest.approx(2.0)                  # the sidecar at the root
    _close(w)
