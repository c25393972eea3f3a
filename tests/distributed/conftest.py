"""Fixtures for the torchrun / data-parallel tests: a small zip, extract runs as subprocesses, and a write spy.

Every run here is ``prunehess extract`` on CPU with small numbers (digits, a Hessian batch of 100 in mini-batches
of 25, no test accuracy, 50 SLQ steps, ``--strategy graph`` so that the Hessian-vector product strategy is fixed) on a zip of
five checkpoints cut from ``sample_checkpoints/digits.zip``. Distributed runs are launched exactly as a user
would: ``python -m torch.distributed.run --nproc-per-node 2 -m prunehess extract ...`` with a free port, Gloo
on the CPU, each rank's stdout/stderr in its own log file (``--redirects 3``).

The *write spy* is a ``sitecustomize`` module (written into a temporary folder put first on ``PYTHONPATH``) that
logs, per process, every file a process creates or replaces under the given folders (``os.open`` for writing,
``open`` in a writing mode, ``os.replace``), labelled with the process's ``RANK``. With ``PRUNEHESS_SPY_SLOW``
set it also sleeps that many seconds after each checkpoint record is written, so that a test can kill a run
between two checkpoints without racing it.
"""
from __future__ import annotations

import csv
import io
import os
import signal
import socket
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import pytest

# the test modules import the helpers below as ``dist_support`` (``import conftest`` would find tests/conftest.py)
sys.modules.setdefault("dist_support", sys.modules[__name__])

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "sample_checkpoints" / "digits.zip"
PYTHON = sys.executable

# five checkpoints (initial, iteration 1 epoch 10 and best, iteration 2 epoch 10, iteration 4 best): an odd
# count, so two ranks get unequal shares (3 and 2)
SUBSET = ["initial_state_dict_lt.pth", "0_model_lt_epoch10.pth", "0_model_lt.pth", "1_model_lt_epoch10.pth",
          "3_model_lt.pth", "train_config.yaml"]
TAGS = ["000_00", "001_10", "001_best", "002_10", "004_best"]  # in the pipeline's (numeric) order

COMMON = ["--dataset", "digits", "--hessian-batch-size", "100", "--mini-hessian-batch-size", "25",
          "--no-test-accuracy", "--strategy", "graph", "--slq-steps", "50"]

RUN_TIMEOUT = 240  # seconds; a hung collective fails the test instead of hanging the suite


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT",
                                                           "MASTER_ADDR", "TORCHELASTIC_RUN_ID")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1", CUDA_VISIBLE_DEVICES="")
    return env


def extract_command(nproc: int, resume: Path, output: Path, extra: Sequence[str] = (),
                    log_dir: Optional[Path] = None) -> list[str]:
    """``prunehess extract`` in one process (``nproc == 1``) or under torchrun with ``nproc`` Gloo processes."""
    args = ["extract", "--resume", str(resume), "--zipname", "small.zip", "--output", str(output), *COMMON, *extra]
    if nproc == 1:
        return [PYTHON, "-m", "prunehess", *args]
    launcher = [PYTHON, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
                "--master-addr", "127.0.0.1", "--master-port", str(free_port())]
    if log_dir is not None:
        launcher += ["--log-dir", str(log_dir), "--redirects", "3"]
    return [*launcher, "-m", "prunehess", *args]


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    log_dir: Optional[Path] = None

    def rank_log(self, rank: int, stream: str = "both") -> str:
        """What rank ``rank`` wrote to ``stream`` (``stdout``, ``stderr`` or ``both``: the log lines go to stdout,
        errors to stderr; runs launched with a log dir)."""
        assert self.log_dir is not None
        if stream == "both":
            return self.rank_log(rank, "stdout") + self.rank_log(rank, "stderr")
        found = sorted(self.log_dir.rglob(f"attempt_0/{rank}/{stream}.log"))
        assert len(found) == 1, f"expected one {stream}.log for rank {rank} under {self.log_dir}, found {found}"
        return found[0].read_text()


def run(cmd: list[str], cwd: Path, env: Optional[dict] = None, log_dir: Optional[Path] = None,
        check: bool = True) -> Run:
    """Run ``cmd`` in ``cwd`` (the test's folder: ``--resume run --output out`` are relative, so that config.yaml,
    which records them, is the same for every run compared)."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env or base_env(), capture_output=True, text=True, timeout=RUN_TIMEOUT,
                          cwd=cwd)
    result = Run(proc.returncode, proc.stdout, proc.stderr, time.perf_counter() - start, log_dir)
    if check and proc.returncode != 0:
        ranks = ""
        if log_dir is not None:
            ranks = "\n".join(f"--- {p}:\n{p.read_text()[-3000:]}" for p in sorted(log_dir.rglob("*.log")))
        raise AssertionError(f"{' '.join(cmd)}\nexit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\n"
                             f"stderr:\n{proc.stderr[-5000:]}\n{ranks}")
    return result


def _descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (from /proc): torchrun's workers run in sessions of their own."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def kill_run(proc: subprocess.Popen) -> None:
    """SIGKILL the run we started and every process below it at once (as a node failure or the scheduler's kill
    would): killing torchrun alone leaves its workers running, as they live in sessions of their own."""
    pids = [proc.pid, *_descendants(proc.pid)]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() and "Z" not in _state(pid) for pid in pids[1:]):
        assert time.monotonic() < deadline, "killed workers still running after 30 s"
        time.sleep(0.05)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"


def make_resume(folder: Path, zip_bytes: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "small.zip").write_bytes(zip_bytes)
    return folder


# ----- comparing output trees -------------------------------------------------------------------------------------
def tree_files(root: Path) -> dict[str, Path]:
    """Result files by relative path (the hidden state folder left out)."""
    return {str(p.relative_to(root)): p for p in sorted(root.rglob("*"))
            if p.is_file() and ".prunehess" not in p.relative_to(root).parts}


def summary_rows(root: Path, ignore: Sequence[str] = ("seconds",)) -> list[dict[str, str]]:
    with open(root / "summary.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k not in ignore} for row in csv.DictReader(f)]


def assert_same_tree(actual: Path, expected: Path) -> None:
    """Same files; every .txt and config.yaml byte-identical; summary.csv the same rows but for ``seconds``."""
    __tracebackhide__ = True
    got, want = tree_files(actual), tree_files(expected)
    assert sorted(got) == sorted(want), (f"different files: only in {actual}: {sorted(set(got) - set(want))}; "
                                         f"only in {expected}: {sorted(set(want) - set(got))}")
    differ = [name for name in want if name.endswith(".txt") and got[name].read_bytes() != want[name].read_bytes()]
    assert not differ, f"{len(differ)} .txt files differ between {actual} and {expected}: {differ[:10]}"
    assert summary_rows(actual) == summary_rows(expected)
    assert (actual / "config.yaml").read_text() == (expected / "config.yaml").read_text()


def records(output: Path) -> list[str]:
    return sorted(p.stem for p in (output / ".prunehess" / "records").glob("*.json"))


# ----- the write spy ------------------------------------------------------------------------------------------
SPY_SOURCE = '''
import os, sys, time
_DIR = os.environ.get("PRUNEHESS_SPY_DIR")
if _DIR:
    import builtins, io
    _ROOTS = tuple(os.path.realpath(r) + os.sep for r in os.environ["PRUNEHESS_SPY_ROOTS"].split(os.pathsep))
    _SLOW = float(os.environ.get("PRUNEHESS_SPY_SLOW") or 0)
    _orig_open, _orig_os_open, _orig_replace = builtins.open, os.open, os.replace
    _WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def _log(op, path):
        try:
            path = os.path.realpath(os.fsdecode(path))
        except TypeError:  # a file descriptor
            return
        if not path.startswith(_ROOTS):
            return
        label = os.environ.get("RANK") or ("agent" if "torch.distributed.run" in " ".join(sys.argv) or
                                           sys.argv[0].endswith("run.py") else "single")
        fd = _orig_os_open(os.path.join(_DIR, "writes.%d.log" % os.getpid()),
                           os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, ("%s\\t%s\\t%s\\n" % (label, op, path)).encode())
        finally:
            os.close(fd)

    def open(file, mode="r", *args, **kwargs):
        if isinstance(mode, str) and any(c in mode for c in "wax+"):
            _log("open", file)
        return _orig_open(file, mode, *args, **kwargs)

    def os_open(path, flags, *args, **kwargs):
        if flags & _WRITE_FLAGS:
            _log("os.open", path)
        return _orig_os_open(path, flags, *args, **kwargs)

    def replace(src, dst, *args, **kwargs):
        _orig_replace(src, dst, *args, **kwargs)
        _log("replace", dst)
        if _SLOW and os.fsdecode(dst).endswith(".json") and "records" in os.fsdecode(dst):
            time.sleep(_SLOW)

    builtins.open = io.open = open
    os.open, os.replace = os_open, replace
'''


@dataclass
class Spy:
    folder: Path  # where the logs go
    pythonpath: Path  # holds sitecustomize.py

    def env(self, *roots: Path, slow: float = 0.0) -> dict[str, str]:
        """The environment of a spied run: writes under ``roots`` (the zip's and the output folder) are logged."""
        env = base_env()
        env["PYTHONPATH"] = os.pathsep.join([str(self.pythonpath), *filter(None, [env.get("PYTHONPATH")])])
        env.update(PRUNEHESS_SPY_DIR=str(self.folder), PRUNEHESS_SPY_ROOTS=os.pathsep.join(map(str, roots)))
        if slow:
            env["PRUNEHESS_SPY_SLOW"] = str(slow)
        return env

    def writes(self) -> dict[str, set[str]]:
        """Label (rank, 'agent' or 'single') → paths written, from every process's log."""
        out: dict[str, set[str]] = {}
        for log in self.folder.glob("writes.*.log"):
            for line in log.read_text().splitlines():
                label, _, path = line.split("\t")
                out.setdefault(label, set()).add(path)
        return out


@pytest.fixture
def spy(tmp_path: Path) -> Spy:
    pythonpath = tmp_path / "spy_site"
    pythonpath.mkdir()
    (pythonpath / "sitecustomize.py").write_text(SPY_SOURCE)
    logs = tmp_path / "spy_logs"
    logs.mkdir()
    return Spy(logs, pythonpath)


# ----- shared inputs and the single-process reference ----------------------------------------------------------
@pytest.fixture(scope="session")
def small_zip() -> bytes:
    """Five checkpoints and the run's train_config.yaml, cut from the bundled sample."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(SAMPLE) as src, zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as dst:
        for name in SUBSET:
            dst.writestr(name, src.read(name))
    return buffer.getvalue()


@pytest.fixture(scope="session")
def reference(tmp_path_factory, small_zip) -> Path:
    """The uninterrupted single-process output tree of the small zip (``python -m prunehess extract``)."""
    base = tmp_path_factory.mktemp("reference")
    make_resume(base / "run", small_zip)
    run(extract_command(1, Path("run"), Path("out")), cwd=base)
    assert records(base / "out") == TAGS
    return base / "out"
