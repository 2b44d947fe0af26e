"""``python main.py selftest``: is this installation able to run AlignScope?

One line per check, ``PASS``/``FAIL``/``SKIP`` with what was found, and exit status 1 when a
check fails (0 otherwise). The checks that can crash a process (Qt's platform plug-in,
OpenGL for the cortex) run in a child process, so a broken driver is a named failure, not a
dead self-test. The last check runs the demo's own pipeline at a reduced size and asks it to
recover its planted visual region.

It lives in ``gui/`` because it checks the whole application (Qt, OpenGL) as well as the
engine; everything it runs of the engine is the engine's public API.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, List, Optional

__all__ = ["add_arguments", "run", "run_checks", "CheckResult"]

# child-process probes: each prints one line of findings and exits 0 when it works
_QT_PROBE = """
import os, sys
if (not os.environ.get("QT_QPA_PLATFORM") and sys.platform.startswith("linux")
        and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))):
    os.environ["QT_QPA_PLATFORM"] = "offscreen"      # no screen: check Qt without one
from PySide6.QtWidgets import QApplication, QLabel
from PySide6 import __version__ as v
app = QApplication([])
w = QLabel("AlignScope"); w.resize(120, 30); w.show(); app.processEvents()
img = w.grab().toImage()
assert img.width() >= 100, "window did not render"
print(f"PySide6 {v}, platform {app.platformName()!r}")
"""

_GL_PROBE = """
import numpy as np
import pyvista as pv
p = pv.Plotter(off_screen=True, window_size=(96, 96))
p.set_background("black")
p.add_mesh(pv.Sphere(radius=0.5), color=(1.0, 0.0, 0.0), lighting=False)
img = np.asarray(p.screenshot(return_img=True))
info = p.render_window.ReportCapabilities().splitlines()
p.close()
red = int(((img[..., 0] > 200) & (img[..., 1] < 60)).sum())
assert red > 500, f"the offscreen render shows no sphere ({red} red pixels)"
renderer = next((l.split(":", 1)[1].strip() for l in info if "OpenGL renderer" in l), "unknown renderer")
print(f"offscreen render ok ({red} sphere pixels), {renderer}")
"""


@dataclass
class CheckResult:
    name: str
    status: str            # "pass" | "fail" | "skip"
    detail: str
    seconds: float


def _child(code: str, timeout_s: float = 90.0) -> str:
    """Run ``code`` in a fresh interpreter; return its last stdout line or raise RuntimeError."""
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"no answer within {timeout_s:.0f} s") from None
    if out.returncode != 0:
        text = re.sub(r"\x1b\[[0-9;]*m", "", out.stderr or out.stdout)      # no terminal colours
        lines = [l.strip() for l in text.strip().splitlines() if l.strip()]
        # Qt and VTK say what went wrong before their last words; prefer that line
        telling = [l for l in lines if any(k in l.lower() for k in ("could not", "cannot", "failed", "error"))]
        last = (telling[:1] or lines[-1:] or [f"exit status {out.returncode}"])[0]
        if out.returncode < 0:
            last = f"killed by signal {-out.returncode} ({last})"
        raise RuntimeError(last)
    lines = out.stdout.strip().splitlines()
    return lines[-1] if lines else "ok"


# ---- the checks ---------------------------------------------------------------------------
def check_python() -> str:
    from importlib import metadata

    parts = [f"Python {sys.version.split()[0]}"]
    missing = []
    for pkg in ("numpy", "scipy", "h5py", "av", "torch", "transformers", "nilearn", "himalaya",
                "PySide6-Essentials", "pyvista", "pyvistaqt", "dask"):
        try:
            parts.append(f"{pkg} {metadata.version(pkg)}")
        except metadata.PackageNotFoundError:
            missing.append(pkg)
    if missing:
        raise RuntimeError(f"expected the packages AlignScope depends on, found {', '.join(missing)} missing "
                           "(run `make setup`)")
    return ", ".join(parts)


def check_qt() -> str:
    return _child(_QT_PROBE)


def check_opengl() -> str:
    return _child(_GL_PROBE)


def check_video() -> str:
    import numpy as np

    import av

    from engine.io.video import VideoReader

    with tempfile.TemporaryDirectory(prefix="alignscope-selftest-") as tmp:
        path = Path(tmp) / "clip.mp4"
        with av.open(str(path), "w") as out:           # 30 frames of a moving bar, H.264
            stream = out.add_stream("libx264", rate=25)
            stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
            for i in range(30):
                img = np.zeros((64, 96, 3), np.uint8)
                img[:, 3 * i:3 * i + 6] = 255
                for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
        with VideoReader(path) as video:
            n = video.n_frames
            mid = video.frame(15)
        if n != 30:
            raise RuntimeError(f"expected 30 decoded frames, found {n}")
        if mid.shape != (64, 96, 3) or not np.isfinite(mid).all():
            raise RuntimeError(f"expected a (64, 96, 3) frame, found {mid.shape}")
        if not mid[:, 45:51].mean() > 150 > mid[:, :30].mean():
            raise RuntimeError("frame 15 does not show the bar where it was drawn (wrong frame decoded)")
    return f"H.264 encode + frame-exact decode ok (PyAV {av.__version__}, FFmpeg {'.'.join(map(str, av.library_versions['libavcodec']))})"


def check_torch() -> str:
    import torch

    a = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    expected = 1134.0      # sum of a @ a.T = |sum of the rows|^2 = |(12, 15, 18, 21)|^2
    if float((a @ a.T).sum()) != expected:
        raise RuntimeError("a 3x4 matrix product gave a wrong result")
    if torch.cuda.is_available():
        b = a.cuda()
        if float((b @ b.T).sum().cpu()) != expected:
            raise RuntimeError("the same product on CUDA gave a wrong result")
        return f"torch {torch.__version__}, CUDA {torch.version.cuda} on {torch.cuda.get_device_name(0)}"
    return f"torch {torch.__version__} (CPU; no CUDA device: extraction runs on the CPU)"


def check_surfaces() -> str:
    from engine.io.atlases import list_atlases, load_atlas
    from engine.io.surfaces import fsaverage5_source, load_fsaverage5

    surf = load_fsaverage5("inflated")
    if surf.n_vertices != 20484:
        raise RuntimeError(f"fsaverage5: expected 20484 vertices, found {surf.n_vertices}")
    names = list_atlases()
    sizes = []
    for name in names:
        atlas = load_atlas(name, "fsaverage5")
        if atlas.labels.shape != (20484,):
            raise RuntimeError(f"atlas {name}: expected 20484 labels, found {atlas.labels.shape}")
        sizes.append(f"{name} ({len(atlas.names)})")
    return f"fsaverage5 from {fsaverage5_source()}; atlases {', '.join(sizes)}"


def _writable(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / f".alignscope-selftest-{os.getpid()}"
    probe.write_bytes(b"ok")
    if probe.read_bytes() != b"ok":
        raise RuntimeError(f"{folder}: wrote 2 bytes and read something else back")
    probe.unlink()


def check_folders() -> str:
    from engine.demo import default_demo_dir
    from engine.features.cache import default_cache_dir
    from engine.io.proxy import default_proxy_dir

    folders = {"data": default_demo_dir().parent, "feature cache": default_cache_dir(),
               "video proxies": default_proxy_dir()}
    for what, folder in folders.items():
        try:
            _writable(folder)
        except OSError as exc:
            raise RuntimeError(f"{what} folder {folder}: expected a writable folder, found {exc.strerror}") from None
    return "; ".join(f"{k} {v}" for k, v in folders.items())


SELFTEST_DEMO_S = 45.0     # a reduced demo: 45 s of episode instead of two minutes


def check_demo_pipeline() -> str:
    from engine.demo import write_demo_project
    from engine.demo_pipeline import run_demo_pipeline
    from engine.jobs import run_sync

    with tempfile.TemporaryDirectory(prefix="alignscope-selftest-") as tmp:
        project_file = write_demo_project(Path(tmp), duration_s=SELFTEST_DEMO_S)
        summary = run_sync(run_demo_pipeline(project_file))
    bad = {region: row["median_r"] for region, row in summary.items()
           if region not in ("noise", "pipeline") and not row["median_r"] > 0.3}
    if bad:
        raise RuntimeError("the reduced demo's planted regions: expected median held-out r > 0.3, found "
                           + ", ".join(f"{k} {v:.3f}" for k, v in bad.items()))
    noise = summary["noise"]["median_r"]
    if not abs(noise) < 0.05:
        raise RuntimeError(f"the reduced demo's noise vertices: expected median r near 0, found {noise:+.3f}")
    regions = ", ".join(f"{k} {row['median_r']:.2f}" for k, row in summary.items() if k not in ("noise", "pipeline"))
    return f"reduced demo ({SELFTEST_DEMO_S:.0f} s episode): planted regions r {regions}; noise median r {noise:+.3f}"


CHECKS: List[tuple] = [
    ("python", "packages", check_python),
    ("qt", "Qt platform (a window can be created)", check_qt),
    ("opengl", "OpenGL for the cortex (offscreen render)", check_opengl),
    ("video", "video decoding", check_video),
    ("torch", "torch and CUDA", check_torch),
    ("surfaces", "bundled surfaces and atlases", check_surfaces),
    ("folders", "write access to the data and cache folders", check_folders),
    ("pipeline", "the demo's pipeline at a reduced size", check_demo_pipeline),
]


def run_checks(only: Optional[List[str]] = None,
               report: Optional[Callable[[CheckResult], None]] = None) -> List[CheckResult]:
    """Run the checks (all, or those named in ``only``); ``report`` receives each as it ends."""
    results = []
    for key, _title, func in CHECKS:
        if only and key not in only:
            continue
        t0 = time.perf_counter()
        try:
            detail = func()
            status = "pass"
        except Exception as exc:       # a check's failure is its finding; keep going
            detail = f"{type(exc).__name__}: {exc}" if not isinstance(exc, RuntimeError) else str(exc)
            status = "fail"
        res = CheckResult(key, status, detail, round(time.perf_counter() - t0, 2))
        results.append(res)
        if report:
            report(res)
    return results


def add_arguments(parser) -> None:
    parser.add_argument("--only", nargs="+", metavar="CHECK", choices=[c[0] for c in CHECKS],
                        help="run only these checks: " + ", ".join(c[0] for c in CHECKS))
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def run(args) -> int:
    def say(r: CheckResult) -> None:
        if not args.json:
            print(f"{r.status.upper():4} {r.name:<9} {r.detail}  ({r.seconds:.1f} s)", flush=True)

    results = run_checks(args.only, report=say)
    failed = [r.name for r in results if r.status == "fail"]
    if args.json:
        print(json.dumps({"ok": not failed, "checks": [asdict(r) for r in results]}, indent=2))
    else:
        print(f"selftest: {len(results) - len(failed)} passed, {len(failed)} failed"
              + (f" ({', '.join(failed)})" if failed else ""))
    return 1 if failed else 0
