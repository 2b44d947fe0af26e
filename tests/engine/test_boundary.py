"""The engine never imports a GUI toolkit; the CLI starts fast and light."""

import json
import pkgutil
import subprocess
import sys
import time
from pathlib import Path

import engine

REPO = Path(__file__).resolve().parents[2]
FORBIDDEN = ("PySide6", "shiboken6", "pyvistaqt", "pyvista", "vtk", "vtkmodules", "PyQt5", "PyQt6", "qtpy")


def _engine_modules():
    return sorted(m.name for m in pkgutil.walk_packages(engine.__path__, "engine."))


def test_engine_modules_exist():
    mods = _engine_modules()
    assert "engine.jobs" in mods and "engine.timeline" in mods and "engine.demo" in mods


def test_every_engine_module_imports_no_gui_toolkit():
    code = f"""
import importlib, json, sys
forbidden = {FORBIDDEN!r}
bad = {{}}
for name in {_engine_modules()!r}:
    before = set(sys.modules)
    importlib.import_module(name)
    new = [m for m in set(sys.modules) - before if m.split('.')[0] in forbidden]
    if new:
        bad[name] = sorted(new)[:3]
print(json.dumps(bad))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    offenders = json.loads(out.stdout.strip().splitlines()[-1])
    assert offenders == {}, f"engine modules import a GUI toolkit: {offenders}"


def test_engine_source_has_no_gui_import_statement():
    pattern = ("import PySide6", "from PySide6", "import pyvista", "from pyvista", "import vtk",
               "from vtk", "import shiboken6", "from shiboken6", "from gui", "import gui")
    hits = []
    for path in (REPO / "engine").rglob("*.py"):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip().startswith(pattern):
                hits.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert hits == []


def test_help_is_fast_and_imports_nothing_heavy():
    code = ("import sys, time; t=time.perf_counter(); sys.argv=['main.py','--help'];\n"
            "import main\n"
            "try:\n    main.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy=[m for m in ('torch','transformers','PySide6','pyvista','vtk','nilearn','sklearn') if m in sys.modules]\n"
            "print('HEAVY', heavy, time.perf_counter()-t)")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    wall = time.perf_counter() - t0
    assert out.returncode == 0, out.stderr
    assert "demo" in out.stdout and "encode" in out.stdout
    line = [l for l in out.stdout.splitlines() if l.startswith("HEAVY")][0]
    assert line.split("]")[0] == "HEAVY [", f"--help imported heavy modules: {line}"
    # the whole interpreter start + parse, measured from outside; generous for a loaded 2-core machine
    assert wall < 3.0, f"python main.py --help took {wall:.2f} s"


def test_user_error_gives_message_not_traceback(tmp_path):
    bad = tmp_path / "broken.alignscope.json"
    bad.write_text("{ not json")
    code = ("import sys, main\n"
            "from engine.project import Project\n"
            f"sys.exit(main.main(['info', {str(bad)!r}]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
