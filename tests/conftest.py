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
    from engine.demo import ensure_demo_project

    out = tmp_path_factory.getbasetemp() / "demo-project"
    project_file = ensure_demo_project(out)
    os.environ["ALIGNSCOPE_DEMO_DIR"] = str(out)
    return project_file
