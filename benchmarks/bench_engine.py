#!/usr/bin/env python
"""PyHessian (PyPI 0.1) against prunehess on the same models, weights and Hessian batch, in one process.

For each model (LeNet-300-100 on 1000 MNIST samples in mini-batches of 200; ResNet-20 on 200 CIFAR-shaped
samples) and its pruned variant, measures: one gradient; one Hessian-vector product per strategy; top-1 and
top-k eigenvalues (PyHessian's power iteration against prunehess's Lanczos and power iteration); the trace
(Hutchinson with PyHessian's stopping rule, and Hutch++); the SLQ density; a full per-checkpoint analysis
(top-1 + trace + density with PyHessian's defaults); per-layer mode; and peak memory. Errors are relative to a
high-accuracy reference: Lanczos with ``tol=1e-8`` for eigenvalues and the *exact* trace (see ``_bench_exact.py``).
prunehess's strategies are those ``HessianOperator.tune()`` picks on the dense model (as the pipeline does on
the first checkpoint).

Run ``python benchmarks/bench_engine.py --help``; ``--quick`` is a smoke run of every code path (< 60 s).
PyHessian's ``density()`` calls ``torch.eig``, removed in PyTorch 2: that one call is shimmed (see
``_bench_pyhessian.py``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, replace
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
try:
    import prunehess  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(1, str(HERE.parent))

warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=UserWarning)

import torch  # noqa: E402

from _bench_exact import check_exact_trace, exact_trace  # noqa: E402
from _bench_measure import PeakMemory, run_worker, timed  # noqa: E402
from _bench_pyhessian import SHIM_NOTE  # noqa: E402
from _bench_setup import Workload, make_workloads  # noqa: E402
from _bench_table import Section, render_markdown, render_text  # noqa: E402
from _bench_work import (  # noqa: E402
    Settings,
    gradient_time,
    operator,
    prunehess_full,
    prunehess_hvp,
    prunehess_layers,
    pyhessian_full,
    pyhessian_hvp,
    pyhessian_layers,
)

STRATEGY_ROWS = (
    ("graph", 1, "graph reuse (first-order graph kept)"),
    ("double_backward", 1, "double backward (rebuilt per HVP)"),
    ("forward_over_reverse", 1, "forward-over-reverse (jvp of grad)"),
    ("vmap", 10, "vmap over 10 tangents, per HVP"),
    ("graph_batched", 10, "graph_batched over 10 vectors, per HVP"),
)


def rel(est: Optional[float], ref: Optional[float]) -> Optional[float]:
    if est is None or ref is None or ref == 0:
        return None
    return abs(est - ref) / abs(ref)


def rel_many(est: list[float], ref: list[float]) -> Optional[float]:
    est = sorted(est, reverse=True)
    if len(est) > len(ref):
        return None
    return max(abs(e - r) / abs(r) for e, r in zip(est, ref))


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----- the benchmark of one model --------------------------------------------------------------------------------
class Bench:
    def __init__(self, args, device: torch.device, settings: Settings, state_dir: str):
        self.args = args
        self.device = device
        self.s = settings
        self.state_dir = state_dir
        self.repeats = 2 if args.quick else args.repeats
        self.memory = args.memory == "on" or (args.memory == "auto")

    # memory: in-process on CUDA, a fresh process per tool on the CPU
    def _save_state(self, w: Workload) -> str:
        path = os.path.join(self.state_dir, f"{w.key}.pt")
        if not os.path.exists(path):
            torch.save({"model": w.model, "batches": w.batches}, path)
        return path

    def memory_of(self, w: Workload, job: str, extra: dict) -> Optional[float]:
        if not self.memory or self.device.type == "cuda":
            return None
        answer = run_worker(str(HERE / "bench_engine.py"), self._save_state(w), job,
                            {**extra, "settings": asdict(self.s), "device": self.device.type}, self.args.threads)
        if "error" in answer:
            log(f"  memory worker {job} failed: {answer['error']}")
            return None
        return answer.get("peak_mb")

    def _peak(self):
        return PeakMemory(self.device) if self.device.type == "cuda" else None

    def run(self, dense: Workload, pruned: Optional[Workload]) -> list[Section]:
        sections = [self.dense_section(dense)]
        if pruned is not None and not self.args.skip_pruned:
            sections.append(self.pruned_section(pruned))
        return sections

    def dense_section(self, w: Workload) -> Section:
        s, dev, model, batches = self.s, self.device, w.model, w.batches
        sec = Section(f"{w.title}: {w.n_params:,} parameters, {w.n_samples} samples in {len(batches)} mini-batch(es) [{dev.type}]")
        sec.notes.append(w.data_note)
        mode = "data= (graph built once, reused)" if len(batches) == 1 else "dataloader= (graph rebuilt per mini-batch per HVP)"
        sec.notes.append(f"PyHessian mode: {mode}")

        log(f"{w.key}: gradient and HVP strategies")
        grad = gradient_time(model, batches, dev, repeats=self.repeats)
        sec.add("gradient (1 pass over the batch)", pn=grad, note="reference for the HVP ≤ 2× gradient target")
        ph_hvp = pyhessian_hvp(model, batches, dev, repeats=self.repeats)["hvp_s"]
        ph_mem = None if dev.type == "cuda" else self.memory_of(w, "ph-hvp", {})
        sec.add("HVP: PyHessian's own product", ph=ph_hvp,
                note=f"{ph_hvp / grad:.2f}× gradient" + (f"; peak {ph_mem:,.0f} MiB" if ph_mem is not None else ""))
        hvp_times = {}
        for strategy, k, label in STRATEGY_ROWS:
            peak = self._peak()
            try:
                with (peak or _null()):
                    r = prunehess_hvp(model, batches, dev, strategy=strategy, k=k, repeats=self.repeats)
            except (RuntimeError, NotImplementedError) as err:  # unsupported operator or out of memory
                sec.add(f"HVP: {label}", ph=ph_hvp, note=f"failed: {str(err).splitlines()[0][:80]}")
                if dev.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            hvp_times[strategy] = r["hvp_s"]
            mem = peak.mb if peak else self.memory_of(w, "pn-hvp", {"strategy": strategy, "k": k})
            note = f"{r['hvp_s'] / grad:.2f}× gradient"
            if r.get("build_s"):
                note += f"; graph build {r['build_s'] * 1e3:.0f} ms once"
            if mem is not None:
                note += f"; peak {mem:,.0f} MiB"
            sec.add(f"HVP: {label}", ph=ph_hvp, pn=r["hvp_s"], note=note)

        log(f"{w.key}: tune()")
        H = operator(model, batches, strategy="graph", batched="loop")
        t_tune, timings = timed(lambda: H.tune(), dev)
        strategy, batched = H.strategy, H.batched_strategy
        H.release()
        measured = {k: v for k, v in hvp_times.items()}
        best = min(measured, key=measured.get) if measured else "?"
        sec.add("tune(): strategy choice", pn=t_tune,
                note=f"picked {strategy} + batched {batched} (fastest per HVP measured above: {best}); tune's timings: "
                     + ", ".join(f"{k}={v * 1e3:.0f}ms" for k, v in timings.items()))
        self.strategy, self.batched = strategy, batched

        log(f"{w.key}: references (Lanczos tol={self.args.ref_tol:g}, exact trace)")
        H = operator(model, batches, strategy=strategy, batched=batched, masks=None)
        t_ref, ref = timed(lambda: H.top_eigen(k=s.top_k, tol=self.args.ref_tol, max_iter=self.args.ref_max_iter, seed=123), dev)
        H.release()
        ref_vals = [float(x) for x in ref.eigenvalues]
        t_exact, (tr_exact, tr_blocks) = timed(lambda: exact_trace(model, batches), dev)
        sec.notes.append(
            f"references: top-{s.top_k} by Lanczos tol={self.args.ref_tol:g} ({ref.n_hvp} HVPs, {t_ref:.1f} s, converged={ref.converged}): "
            + ", ".join(f"{v:.6g}" for v in ref_vals)
            + f"; exact trace {tr_exact:.6g} (Gauss–Newton diagonal, exact for ReLU nets in eval mode; {t_exact:.1f} s)"
        )

        log(f"{w.key}: full analysis (top-1 + trace + density), PyHessian")
        peak = self._peak()
        with (peak or _null()):
            ph = pyhessian_full(model, batches, dev, s)
        ph_mem_full = peak.mb if peak else self.memory_of(w, "ph-full", {})
        log(f"{w.key}: full analysis, prunehess")
        peak_pn = self._peak()
        with (peak_pn or _null()):
            pn = prunehess_full(model, batches, dev, s, strategy=strategy, batched=batched, masks=None)
        pn_mem_full = peak_pn.mb if peak_pn else self.memory_of(w, "pn-full", {"strategy": strategy, "batched": batched})

        sec.add("top-1 eigenvalue (PyH power vs Lanczos)", ph["top_s"], pn["top_s"], ph["top_hvps"], pn["top_hvps"],
                rel(ph["top"][0], ref_vals[0]), rel(pn["top"][0], ref_vals[0]))
        log(f"{w.key}: top-1 by prunehess power iteration")
        Hp = operator(model, batches, strategy=strategy, batched=batched, masks=None)
        t, r = timed(lambda: Hp.top_eigen(k=1, method="power", max_iter=s.power_max_iter, tol=s.power_tol, seed=s.seed), dev)
        Hp.release()
        sec.add("top-1 eigenvalue (PyH power vs ph power)", ph["top_s"], t, ph["top_hvps"], r.n_hvp,
                rel(ph["top"][0], ref_vals[0]), rel(float(r.eigenvalues[0]), ref_vals[0]), note="same algorithm and rule")

        log(f"{w.key}: top-{s.top_k}")
        ph5 = pyhessian_full(model, batches, dev, s, top_k=s.top_k, parts=("top",))
        H = operator(model, batches, strategy=strategy, batched=batched, masks=None)
        t_l, r_l = timed(lambda: H.top_eigen(k=s.top_k, seed=s.seed), dev)
        t_l2, r_l2 = timed(lambda: H.top_eigen(k=s.top_k, tol=1e-2, seed=s.seed), dev)
        t_p, r_p = timed(lambda: H.top_eigen(k=s.top_k, method="power", max_iter=s.power_max_iter, tol=s.power_tol, seed=s.seed), dev)
        H.release()
        ph_err5 = rel_many(ph5["top"], ref_vals)
        for label, t, r, note in [
            (f"top-{s.top_k} eigenvalues (Lanczos, default tol 1e-4)", t_l, r_l, "max rel. error over the k"),
            (f"top-{s.top_k} eigenvalues (Lanczos, tol 1e-2)", t_l2, r_l2, "looser tolerance, still ≥ PyHessian's accuracy?"),
            (f"top-{s.top_k} eigenvalues (ph power, PyH's rule)", t_p, r_p, "same algorithm and rule"),
        ]:
            sec.add(label, ph5["top_s"], t, ph5["top_hvps"], r.n_hvp, ph_err5,
                    rel_many([float(x) for x in r.eigenvalues], ref_vals), note=note)

        sec.add("trace (Hutchinson, PyH's stopping rule)", ph["trace_s"], pn["trace_s"], ph["trace_hvps"], pn["trace_hvps"],
                rel(ph["trace"], tr_exact), rel(pn["trace"], tr_exact),
                note=f"probes batched by {batched}" if batched != "loop" else "probes one at a time")
        log(f"{w.key}: Hutch++ at PyHessian's HVP count")
        budget = max(3, ph["trace_hvps"])
        Hh = operator(model, batches, strategy=strategy, batched=batched, masks=None)
        bs = 1 if batched == "loop" else 10
        t, r = timed(lambda: Hh.trace(method="hutch++", n_hvp=budget, batch_size=bs, seed=s.seed), dev)
        Hh.release()
        sec.add("trace (PyH Hutchinson vs Hutch++, same HVPs)", ph["trace_s"], t, ph["trace_hvps"], r.n_hvp,
                rel(ph["trace"], tr_exact), rel(r.estimate, tr_exact), note=f"Hutch++ stderr {r.stderr / abs(tr_exact):.1e} rel.")
        sec.add(f"density (SLQ, iter={s.density_iter}, n_v={s.density_runs})", ph["density_s"], pn["density_s"],
                ph["density_hvps"], pn["density_hvps"], rel(ph["density_top"], ref_vals[0]), rel(pn["density_top"], ref_vals[0]),
                note="error: top Ritz node vs λ_max")
        errs_ph = [rel(ph["top"][0], ref_vals[0]), rel(ph["trace"], tr_exact)]
        errs_pn = [rel(pn["top"][0], ref_vals[0]), rel(pn["trace"], tr_exact)]
        sec.add("FULL ANALYSIS (top-1 + trace + density)", ph["total_s"], pn["total_s"], ph["hvps"], pn["hvps"],
                max(errs_ph), max(errs_pn),
                note=f"error = max(top-1, trace): top-1 {errs_ph[0]:.1e}/{errs_pn[0]:.1e}, trace {errs_ph[1]:.1e}/{errs_pn[1]:.1e}; "
                     f"tune() not included ({t_tune:.1f} s once per run)")
        log(f"{w.key}: full analysis with Hutch++ (same budget as PyHessian's trace)")
        pn_pp = prunehess_full(model, batches, dev, s, strategy=strategy, batched=batched, masks=None,
                               trace_method="hutch++", hutchpp_hvps=budget)
        errs_pp = [rel(pn_pp["top"][0], ref_vals[0]), rel(pn_pp["trace"], tr_exact)]
        sec.add("FULL ANALYSIS, trace by Hutch++", ph["total_s"], pn_pp["total_s"], ph["hvps"], pn_pp["hvps"],
                max(errs_ph), max(errs_pp), note=f"trace error {errs_ph[1]:.1e}/{errs_pp[1]:.1e}")
        if ph_mem_full is not None or pn_mem_full is not None:
            how = "torch.cuda.max_memory_allocated" if dev.type == "cuda" else "VmHWM of a fresh process per tool"
            sec.add("PEAK MEMORY, full analysis", ph_mem_full, pn_mem_full, unit="MiB", note=f"{how}; ratio > 1: prunehess lighter")

        if not self.args.skip_layers:
            self.layer_rows(sec, w, tr_blocks)
        return sec

    def layer_rows(self, sec: Section, w: Workload, tr_blocks: dict) -> None:
        s, dev, model, batches = self.s, self.device, w.model, w.batches
        names = [n for n, _ in model.named_parameters()]
        limit = self.args.layer_limit
        if limit is None and dev.type != "cuda" and len(names) > 12:
            limit = 6
        if limit and limit < len(names):
            step = (len(names) - 1) / (limit - 1) if limit > 1 else 0
            names = [names[round(i * step)] for i in range(limit)]
        log(f"{w.key}: per-layer mode over {len(names)} tensors, PyHessian")
        ph = pyhessian_layers(model, batches, dev, s, names)
        log(f"{w.key}: per-layer mode, prunehess")
        pn = prunehess_layers(model, batches, dev, s, names, strategy=self.strategy, batched=self.batched)
        log(f"{w.key}: per-layer references")
        H = operator(model, batches, strategy=self.strategy, batched=self.batched, masks=None)
        top_ref = {}
        for name in names:
            top_ref[name] = float(H.restrict([name]).top_eigen(k=1, tol=self.args.ref_tol, max_iter=self.args.ref_max_iter,
                                                             seed=123).eigenvalues[0])
        H.release()

        def med(errs):
            errs = [e for e in errs if e is not None]
            return statistics.median(errs) if errs else None

        tr_ph = med([rel(ph["per"][n]["trace"], tr_blocks[n]) for n in names])
        tr_pn = med([rel(pn["per"][n]["trace"], tr_blocks[n]) for n in names])
        top_ph = med([rel(ph["per"][n]["top"][0], top_ref[n]) for n in names])
        top_pn = med([rel(pn["per"][n]["top"][0], top_ref[n]) for n in names])
        subset = "" if len(names) == len(list(model.named_parameters())) else f" ({len(names)} of {len(list(model.named_parameters()))}, evenly spaced)"
        sec.add(f"PER-LAYER MODE, {len(names)} tensors{subset}", ph["total_s"], pn["total_s"], ph["hvps"], pn["hvps"],
                tr_ph, tr_pn,
                note=f"error = median per-layer trace error; median per-layer top-1 error {_e(top_ph)}/{_e(top_pn)}; "
                     f"prunehess traces: {pn['trace_hvps']} shared HVPs")

    def pruned_section(self, w: Workload) -> Section:
        s, dev, model, batches = self.s, self.device, w.model, w.batches
        strategy, batched = self.strategy, self.batched
        sec = Section(f"{w.title}: {w.n_surviving:,} of {w.n_params:,} parameters survive [{dev.type}]")
        sec.notes.append(w.data_note)
        log(f"{w.key}: references")
        refs = {}
        for masks in (None, "auto"):
            H = operator(model, batches, strategy=strategy, batched=batched, masks=masks)
            r = H.top_eigen(k=1, tol=self.args.ref_tol, max_iter=self.args.ref_max_iter, seed=123)
            H.release()
            m = None if masks is None else {n: p != 0 for n, p in model.named_parameters() if p.dim() >= 2}
            refs[masks] = (float(r.eigenvalues[0]), exact_trace(model, batches, masks=m)[0], H.size)
        log(f"{w.key}: full analysis, PyHessian (all parameters: its only behaviour)")
        peak = self._peak()
        with (peak or _null()):
            ph = pyhessian_full(model, batches, dev, s)
        ph_mem = peak.mb if peak else self.memory_of(w, "ph-full", {})
        rows = []
        for masks, label in ((None, "all parameters (= PyHessian's operator)"), ("auto", "surviving weights only (default)")):
            log(f"{w.key}: full analysis, prunehess, {label}")
            peak = self._peak()
            with (peak or _null()):
                pn = prunehess_full(model, batches, dev, s, strategy=strategy, batched=batched, masks=masks)
            mem = peak.mb if peak else self.memory_of(w, "pn-full", {"strategy": strategy, "batched": batched, "masks": masks})
            rows.append((masks, label, pn, mem))
        l_all, t_all, n_all = refs[None]
        for masks, label, pn, mem in rows:
            l_ref, t_ref, n = refs[masks]
            e_ph = [rel(ph["top"][0], l_all), rel(ph["trace"], t_all)]
            e_pn = [rel(pn["top"][0], l_ref), rel(pn["trace"], t_ref)]
            sec.add(f"FULL ANALYSIS, prunehess on {label}", ph["total_s"], pn["total_s"], ph["hvps"], pn["hvps"], max(e_ph), max(e_pn),
                    note=f"n={n:,}; λ_max ref {l_ref:.5g} (all params: {l_all:.5g}), trace ref {t_ref:.5g}; "
                         f"PyH λ_max {ph['top'][0]:.5g}, ph {pn['top'][0]:.5g}")
            if ph_mem is not None or mem is not None:
                sec.add(f"PEAK MEMORY, full analysis, {label}", ph_mem, mem, unit="MiB")
        return sec


def _e(x):
    return "—" if x is None else f"{x:.1e}"


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# ----- the memory worker -----------------------------------------------------------------------------------------
def worker_main(args) -> None:
    """Run one job in this fresh process and print ``{"peak_mb": ..., "time_s": ...}`` as the last line."""
    extra = json.loads(args._extra)
    device = torch.device(extra.get("device", "cpu"))
    state = torch.load(args._state, weights_only=False, map_location=device)
    model, batches = state["model"], state["batches"]
    s = Settings(**extra["settings"])
    job = args._worker
    peak = PeakMemory(device)
    start = time.perf_counter()
    with peak:
        if job == "ph-full":
            pyhessian_full(model, batches, device, s)
        elif job == "pn-full":
            prunehess_full(model, batches, device, s, strategy=extra["strategy"], batched=extra["batched"],
                           masks=extra.get("masks"))
        elif job == "ph-hvp":
            pyhessian_hvp(model, batches, device, repeats=1)
        elif job == "pn-hvp":
            prunehess_hvp(model, batches, device, strategy=extra["strategy"], k=extra["k"], repeats=1)
        else:
            raise SystemExit(f"unknown worker job {job!r}")
    print(json.dumps({"peak_mb": peak.mb, "time_s": time.perf_counter() - start}))


# ----- main ------------------------------------------------------------------------------------------------------
def machine(device: torch.device, threads: int) -> str:
    cpu = platform.processor() or "cpu"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__} with {threads} intra-op thread(s)"
    if device.type == "cuda":
        text = f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda}); host: " + text
    return text


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--data-root", default=str(HERE.parent.parent / "shared" / "data"),
                   help="folder with torchvision's MNIST/raw files (else random MNIST-shaped data)")
    p.add_argument("--models", default="lenet,resnet20", help="comma-separated: lenet, resnet20")
    p.add_argument("--quick", action="store_true", help="smoke run of every code path on small batches (< 60 s)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--markdown", default=None, metavar="PATH", help="also write the table as markdown here")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the raw rows as JSON here")
    p.add_argument("--memory", choices=("auto", "on", "off"), default="auto",
                   help="peak memory (CPU: fresh worker processes re-run the work; off saves that time)")
    p.add_argument("--layer-limit", type=int, default=None,
                   help="per-layer mode on this many evenly spaced parameter tensors (default: all; 6 for ResNet-20 on CPU)")
    p.add_argument("--skip-layers", action="store_true", help="leave out per-layer mode")
    p.add_argument("--skip-pruned", action="store_true", help="leave out the pruned variants")
    p.add_argument("--repeats", type=int, default=3, help="repeats of each single-HVP timing (median)")
    p.add_argument("--ref-tol", type=float, default=1e-8, help="Lanczos tolerance of the eigenvalue reference")
    p.add_argument("--ref-max-iter", type=int, default=400)
    p.add_argument("--_worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--_state", default=None, help=argparse.SUPPRESS)
    p.add_argument("--_extra", default="{}", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args._worker:
        worker_main(args)
        return 0
    try:
        import pyhessian  # noqa: F401
    except ImportError:
        print("pyhessian is not installed: pip install -e '.[bench]'", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device available", file=sys.stderr)
        return 2
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in ("lenet", "resnet20")]
    if unknown:
        print(f"unknown model(s) {unknown}; choose from lenet, resnet20", file=sys.stderr)
        return 2
    if args.quick:
        settings = Settings(power_max_iter=20, trace_max_iter=20, density_iter=20, top_k=2)
        args.layer_limit = args.layer_limit or 2
        args.ref_max_iter = min(args.ref_max_iter, 80)
        args.ref_tol = max(args.ref_tol, 1e-6)
        if args.memory == "auto":
            args.memory = "off"
    else:
        settings = Settings()
    threads = torch.get_num_threads()
    started = time.perf_counter()
    preamble = [
        f"- machine: {machine(device, threads)}",
        f"- command: `python benchmarks/bench_engine.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
        f"- {SHIM_NOTE}",
        "- ratio = PyHessian / prunehess (time: speed-up; memory: saving). HVPs and errors are PyHessian / prunehess; "
        "errors are relative to Lanczos tol 1e-8 (eigenvalues) and the exact trace.",
        f"- PyHessian settings (both tools): power maxIter={settings.power_max_iter} tol={settings.power_tol:g}, "
        f"trace maxIter={settings.trace_max_iter} tol={settings.trace_tol:g}, density iter={settings.density_iter} "
        f"n_v={settings.density_runs}; seed {settings.seed}" + (" (--quick: reduced)" if args.quick else ""),
    ]
    log("checking the exact-trace reference against dense Hessians of tiny networks")
    checks = check_exact_trace()
    worst = max(abs(a - b) / abs(b) for _, a, b in checks)
    preamble.append(f"- exact-trace reference checked against torch.func.hessian on tiny networks "
                    f"({', '.join(c for c, _, _ in checks)}): max rel. difference {worst:.1e}")
    sections = []
    with tempfile.TemporaryDirectory(prefix="prunehess-bench-") as state_dir:
        for name in models:
            log(f"{name}: building the model, data and weights")
            dense, pruned = make_workloads(name, device=device, data_root=args.data_root, quick=args.quick)
            bench = Bench(args, device, settings, state_dir)
            sections += bench.run(dense, pruned)
            del dense, pruned
    preamble.append(f"- total benchmark time {time.perf_counter() - started:.0f} s")
    print("\n".join(preamble))
    print(render_text(sections))
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(render_markdown(sections, preamble))
    if args.json:
        Path(args.json).write_text(json.dumps([{"title": sec.title, "notes": sec.notes, "rows": [asdict(r) for r in sec.rows]}
                                               for sec in sections], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
