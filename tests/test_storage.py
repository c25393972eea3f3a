"""storage: atomic writes (all or nothing, ordinary permissions), the folder lock across processes, sweeping."""
from __future__ import annotations

import doctest
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import prunehess.storage as storage
from prunehess.errors import OutputError
from prunehess.storage import (
    FolderLock,
    atomic_write_bytes,
    atomic_write_text,
    atomic_write_with,
    exclusive,
    sweep_temporaries,
)

fcntl = pytest.importorskip("fcntl")


# ------------------------------------------------------------------------------------------ atomic writes
def test_writes_replace_and_leave_no_temporary(tmp_path):
    path = tmp_path / "a" / "b" / "f.txt"  # parents are created
    atomic_write_text(path, "one\n")
    atomic_write_text(path, "two\n")
    atomic_write_bytes(tmp_path / "a" / "g.bin", b"\x00\x01")
    assert path.read_text() == "two\n"
    assert (tmp_path / "a" / "g.bin").read_bytes() == b"\x00\x01"
    assert os.listdir(path.parent) == ["f.txt"]


def test_write_with_streams_through_a_handle(tmp_path):
    path = tmp_path / "f.bin"
    atomic_write_with(path, lambda fh: (fh.write(b"ab"), fh.write(b"cd")))
    assert path.read_bytes() == b"abcd"


def test_exception_mid_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    path = tmp_path / "f.txt"
    atomic_write_text(path, "old\n")
    seen = []

    def half_then_fail(handle):
        handle.write(b"ne")
        handle.flush()
        seen.extend(p.name for p in tmp_path.iterdir() if p.name != "f.txt")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="killed mid-write"):
        atomic_write_with(path, half_then_fail)
    assert len(seen) == 1 and seen[0].startswith(".f.txt.") and seen[0].endswith(".tmp")  # the temporary's name
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["f.txt"]


def test_failed_replace_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "f.txt"
    atomic_write_text(path, "old\n")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):  # an OSError stays one
        atomic_write_bytes(path, b"new\n")
    monkeypatch.undo()
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["f.txt"]


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_permissions_follow_the_umask(tmp_path, mask):
    previous = os.umask(mask)
    try:
        atomic_write_text(tmp_path / "f.txt", "x")
    finally:
        os.umask(previous)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o666 & ~mask


def test_no_module_touches_the_umask():
    import prunehess.layout

    sources = [Path(storage.__file__), *Path(prunehess.layout.__file__).parent.glob("*.py")]
    assert [p.name for p in sources if "umask(" in p.read_text()] == []


# ------------------------------------------------------------------------------------------------- locks
_HOLDER = textwrap.dedent("""
    import sys, time
    from prunehess.storage import FolderLock
    lock = FolderLock(sys.argv[1], busy=lambda pid: pid).acquire()
    print("held", flush=True)
    time.sleep(60)
""")


def _hold_in_another_process(path: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_lock_refuses_a_second_holder_in_another_process_and_frees_on_exit(tmp_path):
    path = tmp_path / "lock"
    proc = _hold_in_another_process(path)
    try:
        with pytest.raises(OutputError, match=rf"^busy: pid {proc.pid}$"):
            FolderLock(path, busy=lambda pid: f"busy: pid {pid}").acquire()
    finally:
        proc.kill()  # SIGKILL: the OS drops the lock
        proc.wait()
    with FolderLock(path, busy=str) as lock:
        assert lock.held
        assert path.read_text() == str(os.getpid())
    assert not lock.held


def test_lock_acquire_release_and_refusal_in_one_process(tmp_path):
    path = tmp_path / "lock"
    first = FolderLock(path, busy=lambda pid: f"held by {pid}")
    first.acquire()
    with pytest.raises(OutputError, match=f"held by {os.getpid()}"):  # locks are per open file
        FolderLock(path, busy=lambda pid: f"held by {pid}").acquire()
    with pytest.raises(RuntimeError, match="already held"):
        first.acquire()
    first.release()
    first.release()  # twice: nothing
    FolderLock(path, busy=str).release()  # never acquired: nothing
    with FolderLock(path, busy=str):
        pass


def test_lock_holder_without_a_pid_is_another_process(tmp_path):
    path = tmp_path / "lock"
    path.write_text("")
    with open(path, "r+") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(OutputError, match=r"^\(pid another process\)$"):
            FolderLock(path, busy=lambda pid: f"(pid {pid})").acquire()


def test_lock_in_a_missing_folder_names_the_file(tmp_path):
    path = tmp_path / "missing" / "lock"
    with pytest.raises(OutputError, match=rf"^{path}: cannot create the lock"):
        FolderLock(path, busy=str).acquire()


def test_exclusive_serialises_a_critical_section(tmp_path):
    (tmp_path / "state").mkdir()
    inside, overlaps = [], []

    def section(i):
        with exclusive(tmp_path / "state"):  # a folder: no file is created for the lock
            if inside:
                overlaps.append(i)
            inside.append(i)
            time.sleep(0.02)
            inside.remove(i)

    threads = [threading.Thread(target=section, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == []
    assert os.listdir(tmp_path / "state") == []


def test_exclusive_needs_an_existing_path(tmp_path):
    with pytest.raises(FileNotFoundError):
        with exclusive(tmp_path / "missing"):
            pass


# ------------------------------------------------------------------------------------------------ sweep
def test_sweep_deletes_only_temporaries_of_the_folders_given(tmp_path):
    (tmp_path / "a" / "deep").mkdir(parents=True)
    stale = [tmp_path / ".f.txt.1a2b.tmp", tmp_path / "a" / ".g.pdf.ff00.tmp"]
    kept = [tmp_path / "f.txt", tmp_path / "a" / "x.tmp", tmp_path / "a" / "deep" / ".h.tmp"]
    for path in stale + kept:
        path.write_text("x")
    (tmp_path / ".dir.tmp").mkdir()  # a folder: never deleted
    assert sweep_temporaries([tmp_path, tmp_path / "a", tmp_path / "missing"]) == sorted(stale)
    assert not any(p.exists() for p in stale) and all(p.exists() for p in kept)
    assert (tmp_path / ".dir.tmp").is_dir()


def test_docstring_examples():
    result = doctest.testmod(storage, verbose=False)
    assert result.failed == 0 and result.attempted > 0
