"""The import contracts of ``pyproject.toml`` (import-linter) hold, and they really bite.

``make test`` runs ``lint-imports`` before pytest; this test runs it too, then plants a wrong
import in a copy of the tree and checks that the contract it breaks is reported broken, so a
contract that silently stopped checking (as the Qt one did while external packages were not
included) cannot pass unseen.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed in this venv")


def _lint(cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(cwd))
    return subprocess.run([str(LINT), "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=240)


def _copy_tree(tmp_path: Path) -> Path:
    dst = tmp_path / "tree"
    dst.mkdir()
    shutil.copy2(ROOT / "pyproject.toml", dst / "pyproject.toml")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for pkg in ("engine", "gui"):
        shutil.copytree(ROOT / pkg, dst / pkg, ignore=ignore)
    return dst


def _contract_names() -> list:
    import tomllib

    with open(ROOT / "pyproject.toml", "rb") as f:
        cfg = tomllib.load(f)
    return [c["name"] for c in cfg["tool"]["importlinter"]["contracts"]]


def test_contracts_kept_on_the_tree():
    out = _lint(ROOT)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    for name in _contract_names():
        assert f"{name} KEPT" in out.stdout


def test_qt_import_in_engine_breaks_the_contract(tmp_path):
    tree = _copy_tree(tmp_path)
    target = tree / "engine" / "timeline.py"
    target.write_text(target.read_text() + "\nimport PySide6  # planted by the test\n")
    out = _lint(tree)
    assert out.returncode != 0
    assert "engine is pure Python (no Qt, no VTK) BROKEN" in out.stdout
    assert "engine.timeline -> PySide6" in out.stdout


def test_upward_import_breaks_the_layers(tmp_path):
    names = _contract_names()
    layered = [n for n in names if "layers" in n]
    if not layered:
        pytest.skip("no layers contract in pyproject.toml")
    tree = _copy_tree(tmp_path)
    target = tree / "engine" / "io" / "text.py"      # io sits below features
    target.write_text(target.read_text() + "\nfrom ..features import base as _planted  # noqa\n")
    out = _lint(tree)
    assert out.returncode != 0
    assert f"{layered[0]} BROKEN" in out.stdout
    assert "engine.io.text -> engine.features" in out.stdout
