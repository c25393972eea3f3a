#!/usr/bin/env python
"""prunehess against the current peers at equal accuracy: hessian-eigenthings 1.0.0a5 and curvlinops 3.0.1.

Tasks, each at an accuracy every tool must reach (its settings chosen per task from a ladder, cheapest first, by
checking against an exact reference; see ``_peers_tools.py`` for how each tool is called):

- **top-1** and **top-5** eigenvalues to 1e-3 relative error (top-5: the worst of the five);
- the **trace** to 5 % RMS relative error over ``--seeds`` seeds (each tool's best estimator: the method and the
  number of products with the least time that reach it);
- a **100-step density** (one SLQ run; every tool does 100 Lanczos steps);
- the **full analysis**: top-1, trace and density at those accuracies (prunehess: ``curvature_summary``, whose
  SLQ run gives λ1 and deflates the trace's probes; the peers: their three calls one after the other).

Workloads: LeNet-300-100 on 1000 real MNIST images in mini-batches of 200 (150 SGD steps from a seeded
initialisation, as in ``bench_engine.py``), whose reference is Lanczos in float64 (residual bound ≤ 1e-10·|λ|) and
the exact trace from the exact Hessian diagonal (``_bench_exact.py``); and a small tanh MLP (10-24-24-5,
989 parameters, 400 Gaussian samples in mini-batches of 100) whose exact Hessian is formed densely in float64.
Each task is then timed ``--repeats`` times per tool, the tools taking turns (the order rotating); the table shows
medians and prunehess's speed-up over each peer.

    python benchmarks/bench_peers.py                          # both workloads
    python benchmarks/bench_peers.py --workloads mlp --repeats 5 --markdown peers.md --json peers.json
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
try:
    import prunehess  # noqa: F401
except ImportError:
    sys.path.insert(1, str(HERE.parent))
warnings.filterwarnings("ignore")

import copy  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from _peers_tools import Prunehess, Tool, available, choose, relative_errors  # noqa: E402

TOP_TOL, TRACE_RMS, STEPS = 1e-3, 0.05, 100
M_LADDER = (6, 12, 18, 24, 30, 42, 60, 84, 120, 162, 240, 360, 480)  # divisible by 6: Hutch++, XTrace split them


@dataclass
class Reference:
    top: list[float]  # the five largest eigenvalues
    trace: float
    boundaries: tuple[float, float]
    note: str


@dataclass
class Cell:
    seconds: float
    products: Optional[float]
    setting: str
    error: Optional[float] = None


@dataclass
class Table:
    title: str
    rows: dict[str, dict[str, Cell]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----- workloads and references ---------------------------------------------------------------------------------
def lenet(data_root: str) -> tuple[nn.Module, list, Reference, str]:
    from _bench_exact import exact_trace
    from _bench_setup import make_workloads
    from prunehess.estimators import lanczos_top_eigen
    from prunehess.operators import HessianOperator

    work = make_workloads("lenet", device=torch.device("cpu"), data_root=data_root, quick=False)[0]
    model64 = copy.deepcopy(work.model).double()
    op64 = HessianOperator(model64, [(x.double(), y) for x, y in work.batches], masks=None)
    top = lanczos_top_eigen(op64, k=5, tol=1e-10, max_iter=400)
    low = lanczos_top_eigen(op64, k=1, which="SA", tol=1e-8, max_iter=400)
    trace, _ = exact_trace(work.model, work.batches)
    ref = Reference([float(x) for x in top.eigenvalues], trace, (float(low.eigenvalues[0]), float(top.eigenvalues[0])),
                    f"float64 Lanczos ({top.n_hvp} products, converged {bool(top.converged)}); exact trace "
                    f"{trace:.6g} from the exact Hessian diagonal")
    return work.model, work.batches, ref, f"LeNet-300-100, 266,610 parameters, {work.data_note}"


def small_mlp() -> tuple[nn.Module, list, Reference, str]:
    from prunehess.reference import dense_hessian

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 24), nn.Tanh(), nn.Linear(24, 24), nn.Tanh(), nn.Linear(24, 5)).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 10, generator=g)
    y = (x[:, :5].argmax(1) + (torch.rand(400, generator=g) < 0.2).long()) % 5
    batches = [(x[i : i + 100], y[i : i + 100]) for i in range(0, 400, 100)]
    model64 = copy.deepcopy(model).double()
    H = dense_hessian(model64, [(a.double(), b) for a, b in batches], masks=None)
    values = torch.linalg.eigvalsh(H)
    ref = Reference(values.flip(0)[:5].tolist(), float(H.trace()), (float(values[0]), float(values[-1])),
                    f"dense float64 Hessian ({H.shape[0]}×{H.shape[0]}), exact eigenvalues and trace")
    n = sum(p.numel() for p in model.parameters())
    return model, batches, ref, f"tanh MLP 10-24-24-5, {n:,} parameters, 400 Gaussian samples in mini-batches of 100"


# ----- choosing each tool's settings ----------------------------------------------------------------------------
def top_setting(tool: Tool, k: int, ref: Reference) -> tuple[Any, float]:
    errors = {}

    def meets(setting) -> bool:
        errors[setting] = relative_errors(tool.top(k, setting), ref.top[:k])
        return errors[setting] <= TOP_TOL

    setting = choose(tool.top_ladder, meets)
    return setting, errors.get(setting, math.inf)


def rungs_rms(estimate, ref: Reference, seeds: int) -> tuple[Optional[int], float, dict[int, float]]:
    """The first ``m`` of the ladder whose estimates ``estimate(m, seed)`` over ``seeds`` seeds have an RMS
    relative error ≤ 5 %, rung by rung (for estimators whose ``m`` products are not a prefix of more)."""
    rms: dict[int, float] = {}

    def meets(m: int) -> bool:
        values = [estimate(m, seed) for seed in range(seeds)]
        rms[m] = math.sqrt(statistics.fmean(((v - ref.trace) / ref.trace) ** 2 for v in values))
        return rms[m] <= TRACE_RMS

    m = choose(M_LADDER, meets)
    return m, rms.get(m, math.nan), rms


def hutchinson_rms(tool: Prunehess, ref: Reference, seeds: int, *, deflated: bool,
                   most: int = max(M_LADDER)) -> tuple[Optional[int], float]:
    """Hutchinson's running means (plain, or deflated by an SLQ run's Krylov space: each seed its own run and
    probes) over ``seeds`` seeds: the first ``m`` of the ladder up to ``most`` with RMS ≤ 5 % (60 probes per
    seed first, then more only where those do not reach it)."""
    for cap in sorted({min(60, most), most}):
        m, rms = _running_rms(tool, ref, seeds, deflated, cap)
        if m is not None:
            return m, rms
    return None, rms


def _running_rms(tool: Prunehess, ref: Reference, seeds: int, deflated: bool, cap: int) -> tuple[Optional[int], float]:
    from prunehess.estimators import hutchinson_trace, slq_density

    errors = []
    for seed in range(seeds):
        if deflated:
            run = slq_density(tool.op, n_runs=1, n_steps=STEPS, seed=seed, deflation=True)
            found = hutchinson_trace(tool.op, n_probes=cap, seed=seed + 1, deflate=run.deflation)
            exact = run.deflation.trace
        else:
            found, exact = hutchinson_trace(tool.op, n_probes=cap, seed=seed), 0.0
        means = exact + torch.cumsum(found.samples, 0) / torch.arange(1, len(found.samples) + 1)
        errors.append(((means - ref.trace) / ref.trace).double() ** 2)
    rms = torch.stack(errors).mean(0).sqrt()
    m = choose([m for m in M_LADDER if m <= cap], lambda m: float(rms[m - 1]) <= TRACE_RMS)
    return m, (float(rms[m - 1]) if m else float(rms[-1]))


def trace_probes(tools: list[Tool], ref: Reference, seeds: int) -> tuple[dict[str, int], list[str]]:
    """The products each trace estimator needs for 5 % RMS error: an estimator's, whichever tool implements it
    (Hutchinson with Rademacher probes, and Hutch++, are the same estimator in all three), measured once with
    many seeds: Hutchinson from running means over ``4·seeds`` seeds (prunehess's; its probes one at a time or
    batched are the same probes), Hutch++ (prunehess's) and XTrace (curvlinops, its only implementation) rung
    by rung over ``2·seeds``."""
    prune = next(t for t in tools if isinstance(t, Prunehess))
    m_h, rms_h = hutchinson_rms(prune, ref, 4 * seeds, deflated=False)
    m_pp, rms_pp, _ = rungs_rms(lambda m, seed: prune.trace("hutch++", m, seed), ref, 2 * seeds)
    probes = {"hutchinson": m_h, "hutchinson-batched": m_h, "hutchinson-vmap": m_h, "hutch++": m_pp}
    notes = [f"trace: Hutchinson needs {m_h} products (RMS {rms_h:.3f} over {4 * seeds} seeds), Hutch++ {m_pp} "
             f"(RMS {rms_pp:.3f} over {2 * seeds} seeds)"]
    curv = [t for t in tools if "xtrace" in t.trace_methods]
    if curv:
        m_x, rms_x, _ = rungs_rms(lambda m, seed: curv[0].trace("xtrace", m, seed), ref, 2 * seeds)
        probes["xtrace"] = m_x
        notes[0] += f", XTrace {m_x} (RMS {rms_x:.3f} over {2 * seeds} seeds)"
    return {k: v for k, v in probes.items() if v is not None}, notes


def fastest_trace(tool: Tool, probes: dict[str, int]) -> Optional[tuple[str, int]]:
    """Of ``tool``'s estimators, the one with the least time at the products it needs (one timing each)."""
    timed_once = []
    for method in tool.trace_methods:
        if method in probes:
            started = time.perf_counter()
            tool.trace(method, probes[method], 1000)
            timed_once.append((time.perf_counter() - started, method))
    return (min(timed_once)[1], probes[min(timed_once)[1]]) if timed_once else None


# ----- timing ---------------------------------------------------------------------------------------------------
def timed(tools: list[Tool], jobs: dict[str, Any], repeats: int) -> dict[str, tuple[float, float]]:
    """``name -> (median seconds, products per call)``; ``jobs[name]`` is a callable or ``None`` (skipped)."""
    times: dict[str, list[float]] = {t.name: [] for t in tools if jobs.get(t.name)}
    products: dict[str, int] = {}
    active = [t for t in tools if jobs.get(t.name)]
    for repeat in range(repeats):
        for tool in active[repeat % len(active):] + active[: repeat % len(active)]:
            tool.reset()
            started = time.perf_counter()
            jobs[tool.name](repeat)
            times[tool.name].append(time.perf_counter() - started)
            products[tool.name] = tool.products
    return {name: (statistics.median(ts), products[name]) for name, ts in times.items()}


def bench_workload(title: str, model: nn.Module, batches: list, ref: Reference, classes: list, args) -> Table:
    table = Table(title, notes=[f"reference: {ref.note}; top-5 {', '.join(f'{x:.6g}' for x in ref.top)}"])
    tools = [cls(model, batches, ref.boundaries) for cls in classes]
    for k in (1, 5):
        chosen = {t.name: top_setting(t, k, ref) for t in tools}
        jobs = {t.name: (lambda r, t=t, s=chosen[t.name][0]: t.top(k, s)) if chosen[t.name][0] is not None else None
                for t in tools}
        measured = timed(tools, jobs, args.repeats)
        table.rows[f"top-{k} to 1e-3"] = {
            t.name: Cell(*measured[t.name], t.describe_top(chosen[t.name][0]), chosen[t.name][1])
            if t.name in measured else Cell(math.nan, None, "no setting of the ladder reaches 1e-3") for t in tools}
        log(f"{title[:20]} top-{k}: " + ", ".join(f"{n} {c.seconds:.3f} s" for n, c in table.rows[f'top-{k} to 1e-3'].items()))
    probes, notes = trace_probes(tools, ref, args.seeds)
    table.notes += notes
    traces = {t.name: fastest_trace(t, probes) for t in tools}
    jobs = {t.name: (lambda r, t=t, s=traces[t.name]: t.trace(s[0], s[1], 100 + r)) if traces[t.name] else None
            for t in tools}
    measured = timed(tools, jobs, args.repeats)
    table.rows["trace to 5 % RMS"] = {
        t.name: Cell(*measured[t.name], f"{traces[t.name][0]}, {traces[t.name][1]} products")
        if t.name in measured else Cell(math.nan, None, "no estimator reaches 5 %") for t in tools}
    measured = timed(tools, {t.name: (lambda r, t=t: t.density(STEPS, r)) for t in tools}, args.repeats)
    table.rows["density, 100 steps"] = {t.name: Cell(*measured[t.name], "1 run, 100 steps") for t in tools}
    m_defl, rms_defl = hutchinson_rms(tools[0], ref, 2 * args.seeds, deflated=True,
                                      most=probes.get("hutchinson", max(M_LADDER)))
    plain = traces[tools[0].name]
    batched = "-" + plain[0].rsplit("-", 1)[1] if plain and plain[0].startswith("hutchinson-") else ""
    own = ("deflated" + batched, m_defl) if m_defl and (not plain or m_defl < plain[1]) else plain
    table.notes.append(f"full analysis, prunehess's trace: {own[0]}, {own[1]} probes (deflated: "
                       + (f"{m_defl} probes, RMS {rms_defl:.3f}" if m_defl else "none of the ladder") +
                       f" over {2 * args.seeds} seeds, each its own SLQ run)")
    full = {}
    for t in tools:
        top1 = table.rows["top-1 to 1e-3"][t.name]
        setting = choose(t.top_ladder, lambda s: t.describe_top(s) == top1.setting)
        trace = own if isinstance(t, Prunehess) else traces[t.name]
        full[t.name] = None if setting is None or trace is None else (
            lambda r, t=t, s=setting, tr=trace: t.full(s, tr[0], tr[1], STEPS, 200 + r))
    measured = timed(tools, full, args.repeats)
    table.rows["full analysis"] = {t.name: Cell(*measured[t.name], "top-1 + trace + density")
                                   if t.name in measured else Cell(math.nan, None, "—") for t in tools}
    return table


# ----- the table ------------------------------------------------------------------------------------------------
def render(tables: list[Table], machine: list[str], names: list[str]) -> str:
    peers = names[1:]
    lines = ["- " + m for m in machine]
    for table in tables:
        lines += ["", f"#### {table.title}", "",
                  "| task | " + " | ".join(names) + " | " + " | ".join(f"speed-up vs {p}" for p in peers) + " |",
                  "|---" * (1 + len(names) + len(peers)) + "|"]
        for task, cells in table.rows.items():
            shown = []
            for name in names:
                c = cells.get(name)
                if c is None or not math.isfinite(c.seconds):
                    shown.append(c.setting if c else "—")
                    continue
                err = f", err {c.error:.1e}" if c.error is not None and math.isfinite(c.error) else ""
                shown.append(f"{_fmt(c.seconds)} ({c.products} HVPs; {c.setting}{err})")
            ph = cells.get(names[0])
            ups = [f"{cells[p].seconds / ph.seconds:.2f}×" if ph and p in cells and math.isfinite(cells[p].seconds)
                   and math.isfinite(ph.seconds) else "—" for p in peers]
            lines.append(f"| {task} | " + " | ".join(shown) + " | " + " | ".join(ups) + " |")
        lines += [""] + [f"- {n}" for n in table.notes]
    return "\n".join(lines) + "\n"


def _fmt(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workloads", default="lenet,mlp", help="comma-separated: lenet, mlp")
    p.add_argument("--data-root", default=str(HERE.parent.parent / "shared" / "data"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seeds", type=int, default=16, help="seeds of the trace's RMS error")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--markdown", default=None)
    p.add_argument("--json", default=None)
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    classes, missing = available()
    tables = []
    for name in args.workloads.split(","):
        log(f"workload {name}: reference")
        model, batches, ref, title = lenet(args.data_root) if name.strip() == "lenet" else small_mlp()
        tables.append(bench_workload(title, model, batches, ref, classes, args))
        write(args, tables, classes, missing, started)  # after every workload: a run cut short keeps what it measured


def write(args, tables: list[Table], classes: list, missing: list[str], started: float) -> None:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    machine = [f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, torch "
               f"{torch.__version__} with {torch.get_num_threads()} intra-op thread(s), numpy {np.__version__}",
               f"load average at the end: {', '.join(f'{x:.1f}' for x in load)}" if load else "load: unknown",
               f"medians of {args.repeats} interleaved repeats; total {time.perf_counter() - started:.0f} s", *missing]
    text = render(tables, machine, [c.name for c in classes])
    print(text, flush=True)
    if args.markdown:
        Path(args.markdown).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps([{"title": t.title, "notes": t.notes, "rows": {
            task: {n: vars(c) for n, c in cells.items()} for task, cells in t.rows.items()}} for t in tables],
            indent=1, default=str))


if __name__ == "__main__":
    main()
