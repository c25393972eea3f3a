"""Timing and peak memory.

Time: wall clock around a call, with ``torch.cuda.synchronize`` on CUDA; the median of ``repeats`` calls.

Peak memory of a piece of work:
- CUDA: ``torch.cuda.max_memory_allocated`` above what was allocated when the work started (in-process;
  the caching allocator's reserve is not counted).
- CPU: the resident-set high-water mark of a *fresh* process that loads the saved workload, resets its
  high-water mark (``/proc/self/clear_refs`` ← 5) and runs only that work: ``VmHWM − VmRSS`` before the work
  (``/proc/self/status``). Allocator caches, the interpreter and torch's own libraries are thus excluded, and
  each tool is measured without the other's leftovers.
"""
from __future__ import annotations

import gc
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Optional

import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device, *, repeats: int = 1, warmup: int = 0) -> tuple[float, Any]:
    """``(median seconds over repeats, last result)``."""
    out = None
    for _ in range(warmup):
        out = fn()
    sync(device)
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        out = fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def timed_with(fn: Callable[[], Any], other: Callable[[], Any], device: torch.device, *, repeats: int = 1,
               warmup: int = 0) -> tuple[float, float]:
    """``(median seconds of fn, median seconds of other)``, the two called alternately: a ratio of the two is
    then taken under the same machine conditions (on a shared machine, speed drifts over minutes)."""
    for _ in range(warmup):
        fn()
        other()
    sync(device)
    a, b = [], []
    for _ in range(max(1, repeats)):
        for f, times in ((fn, a), (other, b)):
            start = time.perf_counter()
            f()
            sync(device)
            times.append(time.perf_counter() - start)
    return statistics.median(a), statistics.median(b)


def _status_kb(field: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_rss_peak() -> bool:
    """Reset the process's VmHWM to its current RSS (Linux ≥ 4.0); False where not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class PeakMemory:
    """``with PeakMemory(device) as m: work()`` then ``m.mb`` (peak above the start, in MiB; None if unknown)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.mb: Optional[float] = None

    def __enter__(self) -> "PeakMemory":
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            self._reset = reset_rss_peak()
            self._base = _status_kb("VmRSS")
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.mb = (torch.cuda.max_memory_allocated(self.device) - self._base) / 2**20
        else:
            peak = _status_kb("VmHWM")
            if peak is not None and self._base is not None:
                self.mb = max(0, peak - self._base) / 1024


def run_worker(script: str, state_path: str, job: str, extra: dict, threads: Optional[int], timeout: float = 3600) -> dict:
    """Run ``job`` in a fresh ``python script --_worker`` process; returns its JSON answer (or ``{"error": ...}``)."""
    cmd = [sys.executable, script, "--_worker", job, "--_state", state_path, "--_extra", json.dumps(extra)]
    if threads:
        cmd += ["--threads", str(threads)]
    env = dict(os.environ)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
