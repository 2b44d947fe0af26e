"""engine.atomic: temp naming, stale temps, special files as outputs, full disks, contained result paths."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import threading

import numpy as np
import pytest

from engine import atomic
from engine.atomic import (atomic_path, check_free_space, clean_stale_temps, is_disk_full, safe_result_path,
                           temp_name, write_h5, write_text_atomic)
from engine.errors import ConfigError, DataError


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_temp_name_rule_and_failed_write_leaves_nothing(tmp_path):
    name = temp_name("result.h5")
    pid, rand, rest = name[len(".tmp-"):].split("-", 2)
    assert int(pid) == os.getpid() and len(rand) == 8 and rest == "result.h5"
    (tmp_path / "out.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "out.txt") as tmp:
            assert tmp.parent == tmp_path and tmp.name.startswith(f".tmp-{os.getpid()}-")
            tmp.write_text("half")
            raise RuntimeError("writer failed")
    assert (tmp_path / "out.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_stale_temps_of_dead_processes_are_removed_live_ones_kept(tmp_path):
    dead = _dead_pid()
    stale = tmp_path / f".tmp-{dead}-0123abcd-run.h5"
    stale.write_bytes(b"x" * 10)
    live = tmp_path / f".tmp-{os.getppid()}-0123abcd-other.h5"   # our parent is alive
    live.write_bytes(b"y")
    mine_stale = tmp_path / f".tmp-{os.getpid()}-99999999-recycled.h5"  # our pid, not a write in progress
    mine_stale.write_bytes(b"z")
    legacy = tmp_path / ".tmp-0123456789ab-old.h5"
    legacy.write_bytes(b"w")
    os.utime(legacy, (0, 0))
    removed = {p.name for p in clean_stale_temps(tmp_path)}
    assert removed == {stale.name, mine_stale.name, legacy.name}
    assert live.exists()
    # writing anything into the folder cleans it too
    stale.write_bytes(b"x")
    write_text_atomic(tmp_path / "a.txt", "hello")
    assert not stale.exists() and (tmp_path / "a.txt").read_text() == "hello"


def test_device_node_is_written_into_not_replaced(tmp_path):
    dev = tmp_path / "null"
    try:
        os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))   # a /dev/null of our own
    except PermissionError:
        pytest.skip("mknod of a character device needs root")
    with write_h5(dev, "test", 1) as h:
        h["x"] = np.arange(10)
    write_text_atomic(dev, "discarded")
    st = os.stat(dev)
    assert stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 1 and os.minor(st.st_rdev) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null"]


def test_fifo_receives_the_bytes(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()))
    reader.start()
    write_text_atomic(fifo, "through the pipe")
    reader.join(10)
    assert got == [b"through the pipe"]
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_symlink_target_replaced_link_kept_folder_refused(tmp_path):
    (tmp_path / "data").mkdir()
    target = tmp_path / "data" / "real.txt"
    target.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    write_text_atomic(link, "new")
    assert link.is_symlink() and target.read_text() == "new"
    with pytest.raises(DataError, match="expected a file name, found a folder"):
        write_text_atomic(tmp_path / "data", "x")
    assert not list(tmp_path.rglob(".tmp-*"))


def test_enospc_during_write_removes_temp_and_says_how_much(tmp_path, monkeypatch):
    (tmp_path / "r.h5").write_bytes(b"previous")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(DataError, match=r"expected .* of free disk space, found the disk full") as err:
        with atomic_path(tmp_path / "r.h5") as tmp:
            tmp.write_bytes(b"x" * 1000)
            full()
    assert "partial file was removed" in str(err.value)
    assert (tmp_path / "r.h5").read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.h5"]
    # h5py wraps errno 28 in text
    assert is_disk_full(OSError("Can't write data (file write failed: errno = 28, error message = 'x')"))
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))


def test_free_space_checked_before_writing(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10 ** 9, 10 ** 9 - 5000, 5000))
    with pytest.raises(DataError, match=r"expected about 1\.\d MB of free disk space, found 4\.9 KB free"):
        check_free_space(tmp_path, 1_000_000)
    with pytest.raises(DataError, match="nothing was written"):
        with write_h5(tmp_path / "big.h5", "k", 1, expected_bytes=2_000_000) as h:
            h["x"] = np.zeros(250_000)
    assert list(tmp_path.iterdir()) == []


def test_real_full_filesystem(tmp_path):
    """A 1 MB tmpfs (we run as root in CI); skipped where it cannot be mounted."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        (mnt / "r.h5").write_bytes(b"previous")
        with pytest.raises(DataError, match="disk full") as err:
            with write_h5(mnt / "r.h5", "k", 1) as h:
                h["x"] = np.random.default_rng(0).random((600, 600))   # 2.9 MB
        assert "more than" in str(err.value)
        assert (mnt / "r.h5").read_bytes() == b"previous"
        assert sorted(p.name for p in mnt.iterdir()) == ["r.h5"]
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def test_safe_result_path_stays_inside_the_project(tmp_path):
    root = tmp_path / "proj"
    (root / "results").mkdir(parents=True)
    assert safe_result_path(root, "results/enc.h5") == (root / "results" / "enc.h5").resolve()
    assert safe_result_path(root, "enc.h5", results_dir="results") == (root / "results" / "enc.h5").resolve()
    for bad in ("../escape.h5", "/etc/cron.d/x", "results/../../x.h5"):
        with pytest.raises(ConfigError, match="cannot make AlignScope write outside its project"):
            safe_result_path(root, bad)
    (root / "results" / "out").symlink_to(tmp_path)   # a link leading outside
    with pytest.raises(ConfigError, match="outside"):
        safe_result_path(root, "results/out/x.h5")
    # with a results folder, a bare name lands inside it; climbing out of it is refused
    assert safe_result_path(root, "other/x.h5", results_dir="results") == (root / "results/other/x.h5").resolve()
    with pytest.raises(ConfigError, match="inside the project's results/ folder"):
        safe_result_path(root, "../x.h5", results_dir="results")


def test_sigterm_unwinds_a_write_and_exits_143(tmp_path):
    """main.py turns SIGTERM into a clean exit: the temp file of the write in progress is removed."""
    import signal
    import time
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    script = tmp_path / "slow.py"
    script.write_text(f"""
import sys, time
sys.path.insert(0, {str(repo)!r})
import main
from engine.cli import info

def slow_run(args):
    from engine.atomic import atomic_path
    with atomic_path({str(tmp_path / 'out.bin')!r}) as tmp:
        tmp.write_bytes(b"partial")
        print("writing", flush=True)
        time.sleep(30)
    return 0

info.run = slow_run
sys.exit(main.main(["info", {str(tmp_path)!r}]))
""")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    assert "terminated" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slow.py"]


def test_temp_folder_removed_and_stale_scratch_of_dead_processes_cleaned(tmp_path):
    from engine.atomic import temp_folder

    stale = tmp_path / f".tmp-{_dead_pid()}-0badc0de-gram"
    (stale / "sub").mkdir(parents=True)
    (stale / "sub" / "B.npy").write_bytes(b"x" * 100)
    with temp_folder("gram", parent=tmp_path) as d:
        assert d.is_dir() and d.name.startswith(f".tmp-{os.getpid()}-") and d.name.endswith("-gram")
        assert not stale.exists()
        clean_stale_temps(tmp_path)          # a live scratch folder of this process is kept
        assert d.is_dir()
        (d / "G.npy").write_bytes(b"y")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_outputs_are_messages_not_tracebacks(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(DataError, match="expected a path that can be written, found Not a directory"):
        write_text_atomic(tmp_path / "afile" / "out.txt", "y")
    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,ro", "tmpfs", str(ro)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here")
    try:
        with pytest.raises(DataError, match="read-only file system; choose another output folder"):
            with write_h5(ro / "r.h5", "k", 1) as h:
                h["x"] = np.zeros(3)
    finally:
        subprocess.run(["umount", str(ro)], capture_output=True)
