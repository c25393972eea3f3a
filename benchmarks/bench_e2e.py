#!/usr/bin/env python
"""The seed's whole job, as a new user runs it: ``prunehess extract`` against a PyHessian script, whole processes.

For each workload it writes a zip of 300-100 network checkpoints in the seed's lottery-ticket naming (a seeded
initialisation, then SGD and 20 % magnitude pruning of every weight matrix per iteration), then times, as
subprocesses, by wall clock, in interleaved repeats (the order alternating):

- ``prunehess extract`` with the seed's settings: top-1, trace and SLQ density, ``--params all`` (every coordinate,
  as PyHessian), the Hessian batch and mini-batch sizes below, text files and an ESD PDF per checkpoint (and per
  layer with ``--compute-each-layer``); ``--bottom-n 0 --no-test-accuracy`` so both tools do the same work;
- ``_e2e_pyhessian.py``: the same analyses with PyHessian 0.1's defaults, writing the same files
  (see its docstring for how it loads data and draws the ESD).

Per run it also reports each tool's peak resident memory (``ru_maxrss`` of the child process) and products, and
prunehess's **floor ratio**: the analysis time ``summary.csv`` records (column ``seconds``, each block's time)
over its products times the cheapest product measured for that block on this machine — in this process,
interleaved with the runs: graph reuse over the mini-batches and over one merged chunk, and PyHessian's double
backward, for the whole network and for each layer's block.

    python benchmarks/bench_e2e.py                      # digits (6 checkpoints) and MNIST per layer, 3 repeats
    python benchmarks/bench_e2e.py --workloads digits --repeats 5 --markdown e2e.md --json e2e.json
    python benchmarks/bench_e2e.py --quick              # smoke run: 2 checkpoints, 1 repeat, small batches
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
try:
    import prunehess  # noqa: F401
except ImportError:  # a checkout without `pip install -e .`
    sys.path.insert(1, str(HERE.parent))
warnings.filterwarnings("ignore")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from _bench_floor import cheapest_products  # noqa: E402

WORKLOADS = {  # name: (dataset, per layer, the description)
    "digits": ("digits", False, "64-300-100-10 MLP on digits"),
    "mnist": ("mnist", True, "LeNet-300-100 (784-300-100-10) on real MNIST, --compute-each-layer"),
}


@dataclass
class Run:
    tool: str
    seconds: float
    peak_mib: float
    products: Optional[int] = None
    analysis_seconds: Optional[float] = None
    floor_seconds: Optional[float] = None


@dataclass
class Result:
    name: str
    title: str
    runs: list[Run] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----- the checkpoints ------------------------------------------------------------------------------------------
def make_zip(dataset: str, data_root: str, folder: Path, n_checkpoints: int, seed: int = 0) -> Path:
    """``folder/mnist.zip``: ``initial_state_dict_lt.pth`` and ``<i>_model_lt.pth`` for ``n_checkpoints − 1``
    pruning iterations (SGD, then 20 % of each weight matrix's survivors zeroed by magnitude)."""
    from prunehess.data import load_split
    from prunehess.models import build_model

    train = load_split(dataset, root=data_root, split="train")
    x, y = train.take(torch.arange(len(train)))
    torch.manual_seed(seed)
    model = build_model("fc1", input_shape=tuple(x.shape[1:]), num_classes=10)
    generator = torch.Generator().manual_seed(seed)
    masks: dict[str, torch.Tensor] = {}
    optimiser = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "mnist.zip"
    with zipfile.ZipFile(path, "w") as archive:
        def save(name: str) -> None:
            buffer = io.BytesIO()
            torch.save(model.state_dict(), buffer)
            archive.writestr(name, buffer.getvalue())

        save("initial_state_dict_lt.pth")
        for iteration in range(n_checkpoints - 1):
            for _ in range(60):
                index = torch.randint(0, len(y), (64,), generator=generator)
                optimiser.zero_grad()
                F.cross_entropy(model(x[index]), y[index]).backward()
                optimiser.step()
                with torch.no_grad():
                    for name, p in model.named_parameters():
                        p.mul_(masks[name]) if name in masks else None
            save(f"{iteration}_model_lt.pth")
            with torch.no_grad():
                for name, p in model.named_parameters():
                    if p.dim() == 2:
                        alive = p[p != 0].abs()
                        masks[name] = (p.abs() > alive.kthvalue(int(0.2 * alive.numel())).values).to(p.dtype)
                        p.mul_(masks[name])
    return path


# ----- the two tools as processes -------------------------------------------------------------------------------
def timed_process(cmd: list[str], env: dict, cwd: Path) -> tuple[float, float, str]:
    """``(wall seconds, peak RSS in MiB, stderr)`` of one child process (``os.wait4``'s ``ru_maxrss`` is that
    child's own high-water mark); raises if it fails."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        text = err.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} … failed ({proc.returncode}): {text.strip()[-2000:]}")
    return seconds, usage.ru_maxrss / 1024, text


def prunehess_cmd(args, dataset: str, per_layer: bool, zip_folder: Path, out: Path) -> list[str]:
    exe = shutil.which("prunehess", path=str(Path(sys.executable).parent)) or "prunehess"
    cmd = [exe, "extract", "--resume", str(zip_folder), "--dataset", dataset, "--model", "fc1", "--params", "all",
           "--hessian-batch-size", str(args.hessian_batch_size), "--mini-hessian-batch-size", str(args.mini_batch_size),
           "--seed", "1", "--bottom-n", "0", "--no-test-accuracy", "--no-download", "--data-root", args.data_root,
           "--no-cuda", "--output", str(out)]
    return cmd + (["--compute-each-layer"] if per_layer else []) + args.prunehess_args


def pyhessian_cmd(args, dataset: str, per_layer: bool, zip_folder: Path, out: Path) -> list[str]:
    cmd = [sys.executable, str(HERE / "_e2e_pyhessian.py"), "--resume", str(zip_folder), "--dataset", dataset,
           "--data-root", args.data_root, "--hessian-batch-size", str(args.hessian_batch_size),
           "--mini-hessian-batch-size", str(args.mini_batch_size), "--seed", "1", "--output", str(out)]
    if args.pyhessian_repo:
        cmd += ["--pyhessian-repo", args.pyhessian_repo]
    return cmd + (["--compute-each-layer"] if per_layer else [])


def summary_blocks(out: Path) -> list[tuple[Optional[int], int, float]]:
    """``(layer or None, hvps, seconds)`` of every block in ``summary.csv``."""
    with open(out / "summary.csv", newline="") as f:
        return [(int(r["layer"]) if r["layer"] else None, int(r["hvps"]), float(r["seconds"])) for r in csv.DictReader(f)]


def count_ph_products(err: str) -> Optional[int]:
    """The product count the PyHessian script prints last (``pyhessian: N products, …``)."""
    try:
        return int(err.rsplit("pyhessian:", 1)[1].split()[0])
    except (IndexError, ValueError):
        return None


# ----- one workload ---------------------------------------------------------------------------------------------
def run_tool(args, tool: str, dataset: str, per_layer: bool, folder: Path, env: dict, work: Path) -> tuple[Run, str]:
    """One whole-process run of ``tool`` (``prunehess``, ``prunehess-tune`` or ``pyhessian``) into a fresh
    output folder, from a freshly unpacked zip."""
    out = folder / f"out-{tool}"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(folder / "mnist", ignore_errors=True)  # both tools unpack the zip themselves
    cmd = (pyhessian_cmd if tool == "pyhessian" else prunehess_cmd)(args, dataset, per_layer, folder, out)
    cmd += ["--strategy", "tune"] if tool == "prunehess-tune" else []
    seconds, peak, err = timed_process(cmd, env, work)
    run = Run(tool, seconds, peak)
    if tool == "pyhessian":
        run.products = count_ph_products(err)
    else:
        blocks = summary_blocks(out)
        run.products = sum(h for _, h, _ in blocks)
        run.analysis_seconds = sum(s for _, _, s in blocks)
    return run, err


def bench(args, name: str, work: Path, env: dict) -> Result:
    dataset, per_layer, title = WORKLOADS[name]
    folder = work / name
    zip_path = make_zip(dataset, args.data_root, folder, args.checkpoints)
    result = Result(name, f"{title}: {args.checkpoints} checkpoints, Hessian batch {args.hessian_batch_size} in "
                          f"mini-batches of {args.mini_batch_size}")
    first = zipfile.ZipFile(zip_path).read("initial_state_dict_lt.pth")
    tools = ["prunehess", "pyhessian"] + (["prunehess-tune"] if args.with_tune else [])
    for repeat in range(args.repeats):
        for tool in tools[repeat % len(tools):] + tools[: repeat % len(tools)]:  # the order rotates
            run, err = run_tool(args, tool, dataset, per_layer, folder, env, work)
            if tool == "prunehess":  # the yardstick, measured between the runs
                cheapest = cheapest_products(dataset, args.data_root, first, args.hessian_batch_size,
                                             args.mini_batch_size, per_layer=per_layer, repeats=args.floor_repeats)
                run.floor_seconds = sum(h * cheapest[layer] for layer, h, _ in summary_blocks(folder / f"out-{tool}"))
                result.notes.append(f"repeat {repeat + 1}: cheapest products (ms) "
                                    + ", ".join(f"{'all' if k is None else k}: {1000 * v:.2f}"
                                                for k, v in cheapest.items()))
            result.runs.append(run)
            log(f"{name} repeat {repeat + 1} {tool}: {run.seconds:.1f} s, peak {run.peak_mib:.0f} MiB, "
                f"{run.products} products"
                + (f", floor ratio {run.analysis_seconds / run.floor_seconds:.2f}" if run.floor_seconds else ""))
    return result


# ----- the table ------------------------------------------------------------------------------------------------
def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def render(results: list[Result], machine: list[str]) -> str:
    lines = ["- " + m for m in machine] + [""]
    lines += ["| workload | PyHessian | prunehess | speed-up | per-repeat speed-ups | peak RSS PyH / ph | "
              "products PyH / ph | ph analysis / floor |", "|---|---|---|---|---|---|---|---|"]
    tuned = []
    for r in results:
        ph = [x for x in r.runs if x.tool == "pyhessian"]
        pn = [x for x in r.runs if x.tool == "prunehess"]
        pt = [x for x in r.runs if x.tool == "prunehess-tune"]
        if pt:
            tuned.append(f"- {r.name}, prunehess `--strategy tune` (timing on the first checkpoint): "
                         f"{_median([x.seconds for x in pt]):.2f} s against {_median([x.seconds for x in pn]):.2f} s "
                         f"by rule (runs: {', '.join(f'{x.seconds:.2f}' for x in pt)} / "
                         f"{', '.join(f'{x.seconds:.2f}' for x in pn)} s); peak RSS "
                         f"{_median([x.peak_mib for x in pt]):,.0f} / {_median([x.peak_mib for x in pn]):,.0f} MiB")
        pairs = [a.seconds / b.seconds for a, b in zip(ph, pn)]
        floor = [x.analysis_seconds / x.floor_seconds for x in pn if x.floor_seconds]
        lines.append(
            f"| {r.title} | {_median([x.seconds for x in ph]):.2f} s | {_median([x.seconds for x in pn]):.2f} s | "
            f"{_median([x.seconds for x in ph]) / _median([x.seconds for x in pn]):.2f}× | "
            f"{', '.join(f'{p:.2f}×' for p in pairs)} | {_median([x.peak_mib for x in ph]):,.0f} / "
            f"{_median([x.peak_mib for x in pn]):,.0f} MiB | {ph[0].products if ph else '—'} / "
            f"{pn[0].products if pn else '—'} | {_median(floor):.2f} ({', '.join(f'{f:.2f}' for f in floor)}) |")
    lines += [""] + tuned if tuned else []
    for r in results:
        lines += ["", f"{r.name}:"] + [f"- {n}" for n in r.notes]
    return "\n".join(lines) + "\n"


def machine_notes(args, started: float) -> list[str]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    import pyhessian  # noqa: F401  (installed: `make bench`)

    return [f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, torch "
            f"{torch.__version__}, {torch.get_num_threads()} intra-op thread(s) in this process"
            + (f", tools run with OMP_NUM_THREADS={args.threads}" if args.threads else ", tools at torch's default"),
            f"load average at the end: {', '.join(f'{x:.1f}' for x in load)}" if load else "load average: unknown",
            f"{args.repeats} interleaved repeats (order alternating); times are medians; total "
            f"{time.perf_counter() - started:.0f} s",
            "ESD: " + ("PyHessian's density_plot.get_esd_plot" if args.pyhessian_repo else
                       "the PyHessian script's stand-in for density_plot.get_esd_plot (see _e2e_pyhessian.py)")]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workloads", default="digits,mnist", help="comma-separated: digits, mnist")
    p.add_argument("--data-root", default=str(HERE.parent.parent / "shared" / "data"),
                   help="torchvision's MNIST/raw files (default ../shared/data)")
    p.add_argument("--checkpoints", type=int, default=6)
    p.add_argument("--hessian-batch-size", type=int, default=1000)
    p.add_argument("--mini-batch-size", type=int, default=200)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--floor-repeats", type=int, default=15, help="timings of each candidate product (median)")
    p.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for both tools (default: torch's)")
    p.add_argument("--pyhessian-repo", default=None, help="a clone of PyHessian (its density_plot draws the ESD)")
    p.add_argument("--with-tune", action="store_true",
                   help="also run prunehess with --strategy tune (the choice timed on the first checkpoint)")
    p.add_argument("--prunehess-args", nargs=argparse.REMAINDER, default=[], help="more options for extract")
    p.add_argument("--work", default=None, help="working folder (default: a temporary one, removed)")
    p.add_argument("--markdown", default=None)
    p.add_argument("--json", default=None)
    p.add_argument("--quick", action="store_true", help="2 checkpoints, 1 repeat, Hessian batch 200 in 100s")
    args = p.parse_args(argv)
    if args.quick:
        args.checkpoints, args.repeats, args.hessian_batch_size, args.mini_batch_size = 2, 1, 200, 100
        args.floor_repeats = 3
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONWARNINGS="ignore")
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
        torch.set_num_threads(args.threads)
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_e2e_"))
    results = []
    try:
        for name in args.workloads.split(","):
            results.append(bench(args, name.strip(), work, env))
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    table = render(results, machine_notes(args, started))
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table)
    if args.json:
        Path(args.json).write_text(json.dumps([{"name": r.name, "title": r.title, "notes": r.notes,
                                                "runs": [vars(x) for x in r.runs]} for r in results], indent=1))


if __name__ == "__main__":
    main()
