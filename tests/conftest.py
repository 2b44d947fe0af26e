"""Fixtures shared by the engine and GUI tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Nothing in the suite may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Nor write into the user's caches (features, proxies, projected atlases): one scratch root.
if not os.environ.get("ALIGNSCOPE_CACHE_DIR"):
    import atexit
    import shutil
    import tempfile

    os.environ["ALIGNSCOPE_CACHE_DIR"] = tempfile.mkdtemp(prefix="alignscope-test-cache-")
    atexit.register(shutil.rmtree, os.environ["ALIGNSCOPE_CACHE_DIR"], True)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the checkout (real recordings); skip where absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder absent: {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def demo_project(tmp_path_factory) -> Path:
    """The demo project, written and fitted once per test session.

    ALIGNSCOPE_DEMO_DIR points at it so that ``main.py gui --demo`` in a subprocess opens
    this copy instead of writing into the user's data folder.
    """
    import subprocess
    import sys

    out = tmp_path_factory.getbasetemp() / "demo-project"
    # through the real command a user runs: python main.py demo --out DIR
    proc = subprocess.run([sys.executable, str(REPO / "main.py"), "demo", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"main.py demo failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    os.environ["ALIGNSCOPE_DEMO_DIR"] = str(out)
    return out / "demo.alignscope.json"


@pytest.fixture(scope="session")
def demo_feature_cache(tmp_path_factory) -> Path:
    """The feature cache of the session's demo tests (``$ALIGNSCOPE_CACHE`` for them): the study tests
    (engine and GUI) and the user's guide extract each model of the demo once between them.

    The same folder as ``tests/engine/test_studies_demo.study_demo`` names.
    """
    path = tmp_path_factory.getbasetemp() / "studies-feature-cache"
    path.mkdir(exist_ok=True)
    return path
