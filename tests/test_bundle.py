"""The one-folder bundle (installer/build.sh, PyInstaller) builds and passes ``selftest`` from the bundle.

Skipped unless ``ALIGNSCOPE_BUNDLE_TEST=1`` (``make bundle-test`` sets it): a build takes about half
an hour on a loaded machine and writes ~2 GB into ``dist/``. ``ALIGNSCOPE_BUNDLE_PREBUILT=1`` checks a
``dist/AlignScope`` built earlier instead of building it again.

The bundle runs offscreen here: ``selftest`` checks the packages (their metadata must be in the
bundle), a Qt window and an OpenGL render (child processes: inside the bundle ``sys.executable`` is
the AlignScope program, which runs ``-c CODE`` through installer/rthook_python_c.py), frame-exact
video decoding, torch, the bundled fsaverage5 surface and atlases, and writable folders.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "dist" / "AlignScope"
EXE = BUNDLE / ("AlignScope.exe" if sys.platform == "win32" else "AlignScope")
CHECKS = ["python", "qt", "opengl", "video", "torch", "surfaces", "folders"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("ALIGNSCOPE_BUNDLE_TEST") != "1",
                       reason="builds a 2 GB bundle for ~30 min: run `make bundle-test` (ALIGNSCOPE_BUNDLE_TEST=1)"),
]


def folder_size_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


@pytest.fixture(scope="module")
def bundle() -> Path:
    if os.environ.get("ALIGNSCOPE_BUNDLE_PREBUILT") != "1":
        env = dict(os.environ, ALIGNSCOPE_NO_TARBALL="1")
        proc = subprocess.run(["bash", str(REPO / "installer" / "build.sh")], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=4 * 3600)
        assert proc.returncode == 0, f"installer/build.sh failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    assert EXE.is_file(), f"no bundle executable at {EXE}"
    size = folder_size_bytes(BUNDLE)
    print(f"\nbundle: {BUNDLE} {size / 2 ** 30:.2f} GiB ({size / 1e9:.2f} GB)")
    return BUNDLE


def run_bundle(*args, env_extra=None, timeout=900):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(QT_QPA_PLATFORM="offscreen", HF_HUB_OFFLINE="1")
    env.update(env_extra or {})
    return subprocess.run([str(EXE), *args], capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=str(BUNDLE.parent))


def test_bundle_answers_help_with_every_command(bundle):
    out = run_bundle("--help", timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    for command in ("gui", "demo", "info", "extract", "encode", "partition", "compare", "study", "stats", "qc",
                    "project", "selftest"):
        assert command in out.stdout, f"{command} missing from the bundle's --help"
    assert "exit status:" in out.stdout


def test_selftest_passes_from_the_bundle(bundle, tmp_path):
    out = run_bundle("selftest", "--only", *CHECKS,
                     env_extra={"ALIGNSCOPE_CACHE": str(tmp_path / "cache"),
                                "ALIGNSCOPE_CACHE_DIR": str(tmp_path / "cache-dir"),
                                "ALIGNSCOPE_DEMO_DIR": str(tmp_path / "data" / "demo")})
    print(out.stdout)
    assert out.returncode == 0, out.stdout + out.stderr[-4000:]
    lines = out.stdout.strip().splitlines()
    assert lines[-1] == f"selftest: {len(CHECKS)} passed, 0 failed"
    for name in CHECKS:
        assert any(l.startswith(f"PASS {name}") for l in lines), (name, out.stdout)
    assert "sphere pixels" in out.stdout and "glasser360 (360)" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr


def test_bundle_reads_a_file_and_says_json(bundle, tmp_path):
    """A headless command from the bundle: ``info --json`` on a table run (the safe readers, pandas)."""
    import numpy as np

    table = tmp_path / "run.tsv"
    np.savetxt(table, np.random.default_rng(0).standard_normal((20, 3)), delimiter="\t",
               header="\t".join(["a", "b", "c"]), comments="")
    out = run_bundle("info", str(table), "--json", timeout=300)
    assert out.returncode in (0, 1), out.stderr[-3000:]
    report = json.loads(out.stdout)
    assert report["path"].endswith("run.tsv")
