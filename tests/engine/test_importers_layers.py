"""The project file model and the folder readers do not import each other; engine.importers sits above both."""

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _engine_imports(path: Path) -> set:
    """Absolute names of the engine modules a file imports (anywhere in it, lazily too)."""
    module = ".".join(path.relative_to(REPO).with_suffix("").parts)
    package = module.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("engine")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name.startswith("engine"):
                out.add(name)
                out |= {f"{name}.{a.name}" for a in node.names}
    return out


def test_readers_do_not_import_the_project_model_and_back():
    for reader in ("engine/io/algonauts.py", "engine/io/bids.py", "engine/io/atlases.py"):
        found = _engine_imports(REPO / reader)
        assert not {n for n in found if n.startswith(("engine.project", "engine.importers"))}, (reader, found)
    found = _engine_imports(REPO / "engine/project.py")
    assert not {n for n in found if n.startswith(("engine.io.algonauts", "engine.io.bids", "engine.importers"))}, found


def test_importing_one_side_does_not_load_the_other():
    code = ("import sys, engine.io.algonauts, engine.io.bids; "
            "assert 'engine.project' not in sys.modules and 'engine.importers' not in sys.modules, sorted(sys.modules); "
            "import engine.project; "
            "assert 'engine.importers' not in sys.modules")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
