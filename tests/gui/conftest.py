"""GUI test fixtures: offscreen Qt, a synthetic project, a main window that is closed after use."""

import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"   # before any Qt import
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import atexit  # noqa: E402
import gc  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

# Scrub proxies (and any other cache) go to a temporary folder, never the user's cache; set at
# import so that subprocesses (main.py gui ...) inherit it.
_CACHE_DIR = tempfile.mkdtemp(prefix="alignscope-test-cache-")
os.environ["ALIGNSCOPE_CACHE_DIR"] = _CACHE_DIR
atexit.register(shutil.rmtree, _CACHE_DIR, True)
# What the application remembers (recent projects, session, preferences: gui/state_store.py) goes to
# a temporary folder too, so that tests (and main.py gui subprocesses) never touch the user's config.
_CONFIG_DIR = tempfile.mkdtemp(prefix="alignscope-test-config-")
os.environ["ALIGNSCOPE_CONFIG_DIR"] = _CONFIG_DIR
atexit.register(shutil.rmtree, _CONFIG_DIR, True)
# QSettings("AlignScope", ...) (dialog settings) reads $XDG_CONFIG_HOME on Linux: a temporary one too.
os.environ["XDG_CONFIG_HOME"] = os.path.join(_CONFIG_DIR, "xdg")

import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _pyvista_offscreen():
    import pyvista as pv

    from gui.app import protect_none_refcount

    protect_none_refcount()   # PySide6 6.12.0 + Python 3.11: see its docstring
    pv.OFF_SCREEN = True
    yield


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory):
    """A 6 s video (10 fps), 2 runs of 6 TRs (TR 1 s) on fsaverage5, a result with 1 dropped TR."""
    from tests.gui.synthetic import write_project

    return write_project(tmp_path_factory.mktemp("synthetic"), n_targets=20484, n_trs=6, seconds=6.0)


@pytest.fixture
def session(synthetic):
    from tests.gui.synthetic import make_session

    s = make_session(synthetic)
    yield s
    s.close()


@pytest.fixture
def window(qtbot, session):
    """A main window showing the synthetic session, 3D pane rendered off-screen."""
    from gui.cortex_view import live_plotter_count
    from gui.main_window import MainWindow

    w = MainWindow(interactive_3d=False)
    qtbot.addWidget(w)
    w.resize(1300, 850)
    w.show()
    qtbot.waitExposed(w)
    w.set_session(session)
    qtbot.wait(10)
    yield w
    w.close()
    gc.collect()
    assert live_plotter_count() == 0, "a VTK plotter survived its window"
