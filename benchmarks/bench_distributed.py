#!/usr/bin/env python
"""Checkpoint sharding under torchrun: 2 processes against 1 on the same zip, wall clock.

Runs ``prunehess extract`` on a zip (default: the bundled ``sample_checkpoints/digits.zip``, 17 checkpoints of
fc1 on digits, per-layer analysis, Hessian batch 1000 in mini-batches of 250: about a minute in one process)
once in one process and once as ``python -m torch.distributed.run --nproc-per-node N -m prunehess extract``
(Gloo on the CPU), alternating, ``--repeats`` times each, every run into a fresh folder, and prints the
wall-clock times and the speedups: per repeat (runs next to each other), best against best, median against
median. Every process gets ``--threads`` intra-op threads (default 1: N single-threaded ranks against one
single-threaded process, the fair test of the sharding itself); ``--also-threads 2`` adds one-process runs with
2 threads, what one process gets from the same cores without torchrun. The HVP strategy is fixed
(``--strategy graph``) so that both sides do the same work, and the sharded output is checked against the
one-process output (every .txt byte-identical).

The machine may be shared: the script reports the CPUs this process may use and, for every run, how busy the
machine was *besides* the benchmark (CPU-seconds of all processes from /proc/stat minus the benchmark's own
children, divided by the run's wall time: "other load", in cores). Numbers measured with other load are
lower bounds of the speedup.

    python benchmarks/bench_distributed.py                       # 2 vs 1 on digits.zip (about 2 minutes)
    python benchmarks/bench_distributed.py --repeats 3 --also-threads 2
    python benchmarks/bench_distributed.py --zip runs/mnist.zip --extra "--strategy graph --dataset mnist --data-root data"
    python benchmarks/bench_distributed.py --data-parallel        # also time --data-parallel (2 ranks)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_ZIP = REPO / "sample_checkpoints" / "digits.zip"
DEFAULT_EXTRA = "--strategy graph --compute-each-layer --hessian-batch-size 1000 --mini-hessian-batch-size 250"


@dataclass
class Measurement:
    label: str
    processes: int
    threads: int
    seconds: float
    cpu_seconds: float  # CPU time of the run's processes (all ranks and the torchrun agent)
    other_load: Optional[float]  # cores busy with other work during the run (None where /proc/stat is missing)
    loadavg_before: Optional[float]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _busy_seconds() -> Optional[float]:
    """CPU-seconds spent by the whole machine so far (user + nice + system + irq + softirq + steal)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _children_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _loadavg() -> Optional[float]:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _command(processes: int, folder: Path, zip_name: str, extra: list[str], data_parallel: bool) -> list[str]:
    args = ["extract", "--resume", str(folder / "run"), "--zipname", zip_name, "--output", str(folder / "out"),
            *extra, *(["--data-parallel"] if data_parallel else [])]
    if processes == 1:
        return [sys.executable, "-m", "prunehess", *args]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes),
            "--master-addr", "127.0.0.1", "--master-port", str(_free_port()), "-m", "prunehess", *args]


def _run(label: str, processes: int, threads: int, zip_path: Path, extra: list[str], keep: Path,
         data_parallel: bool = False) -> tuple[Measurement, Path]:
    """One run in a fresh folder under ``keep``; returns the measurement and the output folder."""
    folder = Path(tempfile.mkdtemp(prefix="bench_", dir=keep))
    (folder / "run").mkdir()
    shutil.copy(zip_path, folder / "run" / zip_path.name)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), CUDA_VISIBLE_DEVICES="")
    cmd = _command(processes, folder, zip_path.name, extra, data_parallel)
    load = _loadavg()
    busy0, children0, start = _busy_seconds(), _children_seconds(), time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
    seconds = time.perf_counter() - start
    busy1, children1 = _busy_seconds(), _children_seconds()
    if proc.returncode != 0:
        raise SystemExit(f"{shlex.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    other = None
    if busy0 is not None and busy1 is not None:
        other = max(0.0, (busy1 - busy0) - (children1 - children0)) / seconds  # the machine's busy cores, less ours
    return Measurement(label, processes, threads, seconds, children1 - children0, other, load), folder / "out"


def _txt_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.txt"))
            if ".prunehess" not in p.parts}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zip", type=Path, default=DEFAULT_ZIP, help="zip of checkpoints (default: %(default)s)")
    parser.add_argument("--extra", default=DEFAULT_EXTRA, help="extract options for every run (default: %(default)r)")
    parser.add_argument("--nproc", type=int, default=2, help="processes of the sharded run (default: 2)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each configuration, alternating (default: 2)")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads per process (default: 1)")
    parser.add_argument("--also-threads", type=int, default=None,
                        help="also time one process with this many threads (e.g. 2: the cores used another way)")
    parser.add_argument("--data-parallel", action="store_true", help="also time --data-parallel with --nproc ranks")
    parser.add_argument("--keep", type=Path, default=None, help="keep the run folders here (default: a temp dir)")
    parser.add_argument("--json", type=Path, default=None, help="also write the measurements here")
    args = parser.parse_args(argv)

    extra = shlex.split(args.extra)
    keep = args.keep or Path(tempfile.mkdtemp(prefix="bench_distributed_"))
    keep.mkdir(parents=True, exist_ok=True)
    import torch

    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 0
    print(f"machine: {platform.node()} {platform.machine()}, {cpus} usable CPU(s), {os.cpu_count()} online; "
          f"torch {torch.__version__}; Python {platform.python_version()}")
    print(f"zip: {args.zip} | options: {args.extra} | {args.threads} thread(s) per process | "
          f"load average before: {_loadavg()}")

    plan = [("1 process", 1, args.threads, False), (f"{args.nproc} ranks (sharded)", args.nproc, args.threads, False)]
    if args.also_threads:
        plan.append((f"1 process, {args.also_threads} threads", 1, args.also_threads, False))
    if args.data_parallel:
        plan.append((f"{args.nproc} ranks (--data-parallel)", args.nproc, args.threads, True))
    results: dict[str, list[Measurement]] = {label: [] for label, *_ in plan}
    folders: dict[str, Path] = {}
    for repeat in range(args.repeats):
        for label, processes, threads, dp in plan:
            m, out = _run(label, processes, threads, args.zip, extra, keep, dp)
            results[label].append(m)
            folders.setdefault(label, out)
            other = "?" if m.other_load is None else f"{m.other_load:.2f}"
            print(f"  {label:32s} {m.seconds:7.1f} s wall  {m.cpu_seconds:7.1f} s CPU   other load {other} cores"
                  f"   (load avg before {m.loadavg_before})", flush=True)
        single, sharded = results["1 process"][repeat], results[plan[1][0]][repeat]
        print(f"  repeat {repeat + 1}: sharded speedup {single.seconds / sharded.seconds:.2f}x (runs next to each other)",
              flush=True)

    reference = _txt_files(folders["1 process"])
    sharded = _txt_files(folders[plan[1][0]])
    identical = reference == sharded
    base_best = min(m.seconds for m in results["1 process"])
    base_median = statistics.median(m.seconds for m in results["1 process"])
    print()
    print(f"{'configuration':32s} {'best s':>8s} {'median s':>9s} {'speedup best':>13s} {'speedup median':>15s} "
          f"{'CPU s (median)':>15s} {'other load (cores)':>19s}")
    for label, ms in results.items():
        best = min(m.seconds for m in ms)
        median = statistics.median(m.seconds for m in ms)
        loads = [m.other_load for m in ms if m.other_load is not None]
        load = f"{min(loads):.2f}-{max(loads):.2f}" if loads else "?"
        cpu = statistics.median(m.cpu_seconds for m in ms)
        print(f"{label:32s} {best:8.1f} {median:9.1f} {base_best / best:12.2f}x {base_median / median:14.2f}x "
              f"{cpu:15.1f} {load:>19s}")
    print(f"\nsharded .txt results byte-identical to the one-process run: {identical} ({len(reference)} files)")
    if args.json:
        args.json.write_text(json.dumps({"cpus": cpus, "zip": str(args.zip), "options": args.extra,
                                         "identical": identical,
                                         "runs": [asdict(m) for ms in results.values() for m in ms]}, indent=1))
    if args.keep is None:
        shutil.rmtree(keep, ignore_errors=True)
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
