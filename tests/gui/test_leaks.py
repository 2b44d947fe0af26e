"""Opening and closing projects and cortex views 20 times leaves no VTK object and no steady
memory growth (MNE's ``brain_gc`` habit)."""

import gc
import weakref

import numpy as np


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    import os

    return pages * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def _vtk_objects() -> int:
    """VTK/PyVista objects Python still tracks (plotters, meshes, actors, renderers...)."""
    gc.collect()
    n = 0
    for o in gc.get_objects():
        if isinstance(o, type):
            continue
        mod = getattr(type(o), "__module__", None)
        if isinstance(mod, str) and mod.startswith(("vtkmodules", "pyvista", "pyvistaqt")):
            n += 1
    return n


def test_twenty_projects_and_cortex_views_leave_no_vtk_objects_and_no_memory_growth(qtbot, synthetic):
    from engine.state import AppState
    from gui.cortex_view import CortexView, live_plotter_count
    from tests.gui.synthetic import make_session

    rss, windows = [], []
    baseline_vtk = None
    for i in range(21):     # round 0 warms up (first imports create VTK's method descriptors once)
        session = make_session(synthetic)
        state = AppState(session.timeline())
        view = CortexView(state, session, interactive=False)
        view.resize(320, 240)
        view.show()
        view.set_map(np.full(session.surface.n_vertices, 0.5, np.float32), view.current_style, "leak check")
        if i % 10 == 1:
            view.apply_settings(borders=True, surface="pial")
            view.show_pair(session.score_map(), session.score_map() * 0.5, scores=True)
        windows.append(weakref.ref(view.plotter.ren_win))
        assert live_plotter_count() == (2 if i % 10 == 1 else 1)
        view.close()
        view.deleteLater()
        session.close()
        del view, session, state
        qtbot.wait(1)
        gc.collect()
        assert live_plotter_count() == 0
        if i == 0:
            baseline_vtk = _vtk_objects()
        else:
            rss.append(_rss_mb())
    assert all(w() is None for w in windows)          # every render window was freed
    assert _vtk_objects() <= baseline_vtk             # no VTK/PyVista object survives
    # after warm-up, no steady growth: the last 10 rounds add under 40 MB (~ one view's meshes
    # and images would be ~10 MB each round if leaked)
    growth = rss[-1] - rss[9]
    slope = np.polyfit(np.arange(10), rss[10:], 1)[0]
    assert growth < 40 and slope < 2.0, (rss, growth, slope)
