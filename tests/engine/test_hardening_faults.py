"""Fault tests: kill -9 and SIGTERM during an extraction and during an HDF5 write, then a rerun
(resume or clean start, bit-identical result, nothing orphaned); a full disk for ``encode --out``
and ``extract --cache-dir``; a Dask scheduler address where nothing (or something else) answers.

The extraction runs ``python main.py extract`` in a subprocess with a deterministic, slow
extractor registered through the public plugin API (``register_family``), so no model weights
are needed and the features are known exactly: ``a[t] = [sin t, cos t/2]``, ``b[t] = [t, t, t]``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
N_TRS = 80

EXTRACTOR = """
import os, sys, time
sys.path.insert(0, {repo!r})
import numpy as np
from engine.features import registry
from engine.features.base import BatchFeatures, ModelSpec
from engine.jobs import Progress

LOG = os.environ["SLOW_LOG"]
DELAY = float(os.environ.get("SLOW_DELAY", "0"))


class Slow:
    modality = "vision"
    inputs = ("vision",)

    def __init__(self, spec):
        self.spec, self.layers, self.batch_size = spec, ["a", "b"], 4
        self.identity = {{"model": "slow", "version": 1}}

    @classmethod
    def from_spec(cls, spec, device="cpu", folder=None):
        return cls(spec)

    def extract(self, episode, tr_indices=None, token=None, ablate="none"):
        idx = np.arange(episode.n_trs) if tr_indices is None else np.asarray(tr_indices)
        for start in range(0, len(idx), 4):
            b = idx[start:start + 4]
            t = b.astype(np.float32)
            feats = {{"a": np.stack([np.sin(t), np.cos(t / 2)], 1).astype(np.float32),
                      "b": np.repeat(t[:, None], 3, 1)}}
            with open(LOG, "a") as fh:
                fh.write(" ".join(str(int(i)) for i in b) + "\\n")
            time.sleep(DELAY)
            yield Progress(start + len(b), len(idx), "slow", payload=BatchFeatures(b, feats))
        return {{}}


registry.register_family("slow", Slow, needs_weights=False)
registry.register_spec(ModelSpec(name="slow", model="slow", family="slow", modality="vision"))
import main
sys.exit(main.main(sys.argv[1:]))
"""


def _expected():
    t = np.arange(N_TRS).astype(np.float32)
    return {"a": np.stack([np.sin(t), np.cos(t / 2)], 1).astype(np.float32), "b": np.repeat(t[:, None], 3, 1)}


def _read_out(path):
    import h5py

    with h5py.File(path, "r") as f:
        return {k: f["features"][k][()] for k in f["features"]}


def _logged(log: Path):
    if not log.exists():
        return []
    return [int(x) for line in log.read_text().split("\n") if line.strip() for x in line.split()]


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    from tests.engine.test_features_support import make_video

    root = tmp_path_factory.mktemp("faults")
    video = make_video(root / "ep.mp4", seconds=2.0, fps=5, size=(16, 16), audio=False)
    script = root / "run_slow.py"
    script.write_text(EXTRACTOR.format(repo=str(REPO)))
    return root, video, script


def _extract_cmd(stage, out, cache):
    root, video, script = stage
    return [sys.executable, str(script), "extract", str(video), "--model", "slow", "--n-trs", str(N_TRS),
            "--tr", "1.0", "--out", str(out), "--cache-dir", str(cache)]


def _orphans(*folders):
    return [p for f in folders if Path(f).exists() for p in Path(f).rglob(".tmp-*")]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
def test_killed_extraction_resumes_bit_identical(stage, tmp_path, sig):
    out, cache, log = tmp_path / "out" / "feats.h5", tmp_path / "cache", tmp_path / "log.txt"
    env = dict(os.environ, SLOW_LOG=str(log), SLOW_DELAY="0.08", ALIGNSCOPE_CACHE=str(cache))
    proc = subprocess.Popen(_extract_cmd(stage, out, cache), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while len(_logged(log)) < 44 and time.time() < deadline and proc.poll() is None:   # > one 32-TR part
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    if sig == signal.SIGTERM:
        assert proc.returncode == 143, err
        assert "terminated" in err and "Traceback" not in err
    else:
        assert proc.returncode == -9
    assert not out.exists()                          # never a partial output
    first = _logged(log)
    assert 44 <= len(first) < N_TRS
    parts = sorted(cache.rglob("part_*.h5"))
    assert parts, "a finished chunk of TRs is kept for the resume"
    if sig == signal.SIGTERM:
        assert not _orphans(cache, out.parent)      # SIGTERM unwinds: no temp file left

    log.unlink()
    env["SLOW_DELAY"] = "0"
    done = subprocess.run(_extract_cmd(stage, out, cache), env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    resumed = _logged(log)
    assert 0 < len(resumed) < N_TRS and 0 not in resumed   # only the missing TRs were computed
    got, want = _read_out(out), _expected()
    assert set(got) == set(want)
    for k in want:
        assert got[k].dtype == want[k].dtype and np.array_equal(got[k], want[k])   # bit-identical
    assert not _orphans(cache, out.parent)           # kill -9's temp files are gone after the rerun
    assert not list(cache.rglob("*.parts")) or not any(p.iterdir() for p in cache.rglob("*.parts"))


H5_WRITER = """
import sys, time
sys.path.insert(0, {repo!r})
import numpy as np
import main
from engine.cli import info


def slow_run(args):
    from engine.atomic import write_h5
    with write_h5({out!r}, "test", 1) as h:
        for i in range(40):
            h["x%02d" % i] = np.arange(1000, dtype=np.float64) * i
            h.flush()
            if i == 3:
                print("writing", flush=True)
            time.sleep(float({delay!r}))
    return 0


info.run = slow_run
sys.exit(main.main(["info", {folder!r}]))
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
def test_killed_hdf5_write_leaves_old_file_and_rerun_cleans(tmp_path, sig):
    import h5py

    folder = tmp_path / "res"
    folder.mkdir()
    out = folder / "r.h5"
    out.write_bytes(b"the previous result")
    script = tmp_path / "w.py"
    script.write_text(H5_WRITER.format(repo=str(REPO), out=str(out), delay=0.2, folder=str(folder)))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert out.read_bytes() == b"the previous result"
    if sig == signal.SIGTERM:
        assert proc.returncode == 143 and "Traceback" not in err
        assert not _orphans(folder)
    else:
        assert len(_orphans(folder)) == 1            # a kill -9 cannot clean up after itself...
    script.write_text(H5_WRITER.format(repo=str(REPO), out=str(out), delay=0, folder=str(folder)))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert not _orphans(folder)                      # ...the next write in that folder does
    with h5py.File(out, "r") as h:
        assert len(h) == 40 and np.array_equal(h["x39"][()], np.arange(1000, dtype=np.float64) * 39)


# ---- full disk -----------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path):
    """A 1 MB tmpfs (root); None where it cannot be mounted (then the tests inject ENOSPC)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                        capture_output=True).returncode == 0
    yield mnt if ok else None
    if ok:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _inject_enospc(monkeypatch, folder):
    """Fallback: every h5py file created under ``folder`` fails as a full disk would."""
    import errno

    import h5py

    real = h5py.File

    def file(name, *a, **k):
        if str(name).startswith(str(folder)) and (a[:1] == ("w",) or k.get("mode") == "w"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(name, *a, **k)

    monkeypatch.setattr(h5py, "File", file)


def _encode_inputs(tmp_path, n_targets=1500):
    rng = np.random.default_rng(0)
    feats, brains = [], []
    for i in range(3):
        x = rng.standard_normal((60, 4)).astype(np.float32)
        y = (x @ rng.standard_normal((4, n_targets)) + rng.standard_normal((60, n_targets))).astype(np.float32)
        np.save(tmp_path / f"f{i}.npy", x)
        np.save(tmp_path / f"b{i}.npy", y)
        feats.append(str(tmp_path / f"f{i}.npy"))
        brains.append(str(tmp_path / f"b{i}.npy"))
    return feats, brains


def test_full_disk_for_encode_out(tmp_path, small_disk, monkeypatch, capsys):
    import main

    feats, brains = _encode_inputs(tmp_path)
    target = small_disk if small_disk is not None else tmp_path / "disk"
    target.mkdir(exist_ok=True)
    if small_disk is None:
        _inject_enospc(monkeypatch, target)
    (target / "enc.h5").write_bytes(b"old")
    code = main.main(["encode", "--features", *feats, "--brain", *brains, "--delays", "1", "2",
                      "--out", str(target / "enc.h5"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "disk" in err and "Traceback" not in err and "free" in err
    assert (target / "enc.h5").read_bytes() == b"old"
    assert not _orphans(target)


def test_full_disk_for_extract_cache_does_not_cost_the_extraction(stage, tmp_path, small_disk):
    if small_disk is None:
        pytest.skip("needs a small tmpfs (run as root)")
    filler = small_disk / "filler"
    with open(filler, "wb") as fh:       # leave ~0 bytes
        try:
            fh.write(b"\0" * (1 << 20))
        except OSError:
            pass
    out, log = tmp_path / "feats.h5", tmp_path / "log.txt"
    env = dict(os.environ, SLOW_LOG=str(log), SLOW_DELAY="0")
    done = subprocess.run(_extract_cmd(stage, out, small_disk / "cache"), env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "could not write" in done.stderr and "Traceback" not in done.stderr
    got, want = _read_out(out), _expected()
    assert all(np.array_equal(got[k], want[k]) for k in want)
    assert not _orphans(small_disk)


# ---- Dask scheduler ----------------------------------------------------------------------------
def test_scheduler_that_never_answers_fails_within_seconds(tmp_path, monkeypatch, capsys):
    import main
    from engine.encoding import distributed

    monkeypatch.setattr(distributed, "CONNECT_TIMEOUT_S", 2.0)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    banner = socket.socket()
    banner.bind(("127.0.0.1", 0))
    banner.listen(8)

    def serve():
        while True:
            try:
                c, _ = banner.accept()
            except OSError:
                return
            c.sendall(b"SSH-2.0-OpenSSH_9.6\r\n" + b"\xff" * 64)   # read as a frame length: exabytes

    threading.Thread(target=serve, daemon=True).start()
    feats, brains = _encode_inputs(tmp_path, n_targets=20)
    try:
        for sock, words in ((silent, "accepted but never answered"), (banner, "not a Dask scheduler")):
            port = sock.getsockname()[1]
            t0 = time.time()
            code = main.main(["encode", "--features", *feats, "--brain", *brains, "--delays", "1",
                              "--scheduler", f"tcp://127.0.0.1:{port}", "--out", str(tmp_path / "e.h5"),
                              "--no-progress"])
            err = capsys.readouterr().err
            assert code == 2 and words in err and "Traceback" not in err, err
            assert time.time() - t0 < 15
        assert not (tmp_path / "e.h5").exists()
    finally:
        silent.close()
        banner.close()
