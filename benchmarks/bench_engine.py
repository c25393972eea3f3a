#!/usr/bin/env python
"""PyHessian (PyPI 0.1) against prunehess on the same models, weights and Hessian batch, in one process.

For each model (LeNet-300-100 on 1000 MNIST samples in mini-batches of 200; ResNet-20 on 200 CIFAR-shaped
samples) and its pruned variant, measures: one gradient; one Hessian-vector product per strategy; top-1 and
top-k eigenvalues (PyHessian's power iteration against prunehess's Lanczos and power iteration); the trace
(Hutchinson with PyHessian's stopping rule, and Hutch++); the SLQ density; a full per-checkpoint analysis
(top-1 + trace + density with PyHessian's defaults); per-layer mode; and peak memory. Errors are relative to a
high-accuracy reference: Lanczos with ``tol=1e-8`` for eigenvalues and the *exact* trace (see ``_bench_exact.py``).
prunehess's strategies are those ``prunehess.operators.tune`` picks on the dense model (as the pipeline does on
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
from dataclasses import asdict
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

from prunehess.estimators import lanczos_top_eigen, power_iteration  # noqa: E402
from prunehess.operators import tune  # noqa: E402

from _bench_exact import check_exact_trace, exact_diagonal, traces  # noqa: E402
from _bench_measure import PeakMemory, run_worker, timed  # noqa: E402
from _bench_pyhessian import SHIM_NOTE  # noqa: E402
from _bench_setup import Workload, make_workloads  # noqa: E402
from _bench_table import Section, render_markdown, render_text  # noqa: E402
from _bench_work import (  # noqa: E402
    Settings,
    gradient_fn,
    gradient_time,
    operator,
    prunehess_full,
    prunehess_hvp,
    probe_batch,
    prunehess_layers,
    prunehess_traces,
    pyhessian_full,
    pyhessian_hvp,
    pyhessian_layers,
    pyhessian_traces,
)

STRATEGY_ROWS = (
    ("graph", 1, "graph reuse (first-order graph kept)"),
    ("graph:native", 1, "graph reuse, PyTorch's own conv/BatchNorm/ReLU double backward"),
    ("graph+one_chunk", 1, "graph reuse, the mini-batches in one chunk"),
    ("graph+cuda_graphs", 1, "graph reuse replayed from a CUDA graph"),
    ("double_backward", 1, "double backward (rebuilt per HVP)"),
    ("forward_over_reverse", 1, "forward-over-reverse (jvp of grad)"),
    ("vmap", 10, "vmap over 10 tangents, per HVP"),
    ("graph_batched", 10, "graph_batched over 10 vectors, per HVP"),
)


def rel(est: Optional[float], ref: Optional[float]) -> Optional[float]:
    if est is None or ref is None or ref == 0:
        return None
    return abs(est - ref) / abs(ref)


def rel_many(est: list[float], ref: list[float], *, by_magnitude: bool = False) -> Optional[float]:
    """Worst relative error after sorting both lists (by value, or by magnitude for power iteration)."""
    key = abs if by_magnitude else None
    est = sorted(est, key=key, reverse=True)
    ref = sorted(ref, key=key, reverse=True)
    if len(est) > len(ref):
        return None
    return max(abs(e - r) / abs(r) for e, r in zip(est, ref))


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----- the benchmark of one model --------------------------------------------------------------------------------
class Bench:
    def __init__(self, args, device: torch.device, settings: Settings, state_dir: str, sections: list, flush):
        self.sections = sections  # shared with main(), which writes them out at every flush()
        self.flush = flush
        self.args = args
        self.device = device
        self.s = settings
        self.state_dir = state_dir
        self.repeats = 1 if args.quick else args.repeats
        self.memory = args.memory != "off"
        self.seeds = list(range(args.trace_seeds))

    # ----- memory: in-process on CUDA, a fresh process per tool on the CPU
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
        return PeakMemory(self.device) if (self.device.type == "cuda" and self.memory) else _null()

    def run(self, dense: Workload, pruned: Optional[Workload]) -> list[Section]:
        if self.args.hvp_only:
            sec = Section(f"{dense.title}: {dense.n_params:,} parameters, {dense.n_samples} samples in "
                          f"{len(dense.batches)} mini-batch(es) [{self.device.type}]", notes=[dense.data_note])
            self.sections.append(sec)
            self.hvp_rows(sec, dense)
            self.tune_row(sec, dense)
            self.flush()
            return []
        dense_sec = self.dense_section(dense)
        self.sections.append(dense_sec)
        self.flush()
        if pruned is not None and not self.args.skip_pruned:
            self.sections.append(self.pruned_section(pruned))
            self.flush()
        if not self.args.skip_layers:  # last: the longest part
            self.layer_rows(dense_sec, dense, self.diag)
            self.flush()
        return []

    # ----- the dense model: everything
    def dense_section(self, w: Workload) -> Section:
        s, dev, model, batches = self.s, self.device, w.model, w.batches
        sec = Section(f"{w.title}: {w.n_params:,} parameters, {w.n_samples} samples in {len(batches)} mini-batch(es) [{dev.type}]")
        sec.notes.append(w.data_note)
        mode = "data= (graph built once, reused)" if len(batches) == 1 else "dataloader= (every mini-batch's graph rebuilt per HVP)"
        sec.notes.append(f"PyHessian mode: {mode}")

        self.hvp_rows(sec, w)
        strategy, batched, t_tune = self.tune_row(sec, w)
        ref_vals, ref_lm, diag, tr_exact = self.references(sec, w)

        log(f"{w.key}: full analysis (top-1 + trace + density), PyHessian")
        peak = self._peak()
        with peak:
            ph = pyhessian_full(model, batches, dev, s)
        ph_mem = getattr(peak, "mb", None) if dev.type == "cuda" else self.memory_of(w, "ph-full", {})
        log(f"{w.key}: full analysis, prunehess")
        peak = self._peak()
        with peak:
            pn = prunehess_full(model, batches, dev, s, strategy=strategy, batched=batched, masks=None)
        alone = prunehess_full(model, batches, dev, s, strategy=strategy, batched=batched, masks=None,
                               parts=("top", "trace", "density"))  # each estimator on its own, for the part rows
        pn = {**alone, **pn}
        pn_mem = getattr(peak, "mb", None) if dev.type == "cuda" else self.memory_of(
            w, "pn-full", {"strategy": strategy, "batched": batched, "masks": None})
        log(f"{w.key}: full analysis, prunehess with Hutch++")
        pn_pp = prunehess_full(model, batches, dev, s, strategy=strategy, batched=batched, masks=None,
                               trace_method="hutch++", hutchpp_hvps=self.args.hutchpp_hvps)

        # top-1
        sec.add("top-1: PyH power vs ph Lanczos (default tol 1e-4)", ph["top_s"], pn["top_s"], ph["top_hvps"], pn["top_hvps"],
                rel(ph["top"][0], ref_lm[0]), rel(pn["top_alone"][0], ref_vals[0]))
        log(f"{w.key}: top-1 by prunehess power iteration")
        H = operator(model, batches, strategy=strategy, batched=batched, masks=None)
        H @ torch.zeros(H.size, device=dev)  # the reused graph is built once per operator; keep it out of the timings
        t, r = timed(lambda: power_iteration(H, k=1, max_iter=s.power_max_iter, tol=s.power_tol, seed=s.seed), dev)
        sec.add("top-1: PyH power vs ph power (same rule)", ph["top_s"], t, ph["top_hvps"], r.n_hvp,
                rel(ph["top"][0], ref_lm[0]), rel(float(r.eigenvalues[0]), ref_lm[0]))

        # top-k
        log(f"{w.key}: top-{s.top_k}")
        phk = pyhessian_full(model, batches, dev, s, top_k=s.top_k, parts=("top",))
        ph_errk = rel_many(phk["top"], ref_lm, by_magnitude=True)
        sec.notes.append(f"top-{s.top_k} found by PyHessian's power iteration: " + ", ".join(f"{v:.6g}" for v in phk["top"]))
        for label, estimator, kwargs in [
            ("ph Lanczos (default tol 1e-4)", lanczos_top_eigen, {}),
            ("ph Lanczos (tol 1e-2)", lanczos_top_eigen, {"tol": 1e-2}),
            ("ph power (same rule)", power_iteration, {"max_iter": s.power_max_iter, "tol": s.power_tol}),
        ]:
            t, r = timed(lambda: estimator(H, k=s.top_k, seed=s.seed, **kwargs), dev)
            power = estimator is power_iteration
            err = rel_many([float(x) for x in r.eigenvalues], ref_lm if power else ref_vals, by_magnitude=power)
            sec.add(f"top-{s.top_k}: PyH power vs {label}", phk["top_s"], t, phk["top_hvps"], r.n_hvp, ph_errk, err,
                    note="error: worst of the k" + (" (power: against the top-k by magnitude)" if power else ""))
        H.release()

        # trace
        sec.add("trace: PyH vs ph Hutchinson (PyH's rule), seed 0", ph["trace_s"], pn["trace_s"], ph["trace_hvps"],
                pn["trace_hvps"], rel(ph["trace"], tr_exact), rel(pn["trace_alone"], tr_exact),
                note=f"probes batched {probe_batch(batched)} at a time ({batched})"
                     + ("; PyH stopped on a negative running mean" if ph.get("sign_stop") else ""))
        if self.seeds:
            log(f"{w.key}: trace accuracy over {len(self.seeds)} seeds")
            ph_t = pyhessian_traces(model, batches, dev, s, self.seeds)
            for label, method in (("ph Hutchinson (PyH's rule)", "hutchinson"),
                                  ("ph Hutchinson deflated by the density's Krylov space (PyH's rule)", "deflated"),
                                  ("ph Hutchinson deflated, PyH's rule from the 10th probe (extract's default)",
                                   "deflated-min10"),
                                  (f"ph Hutch++ ({self.args.hutchpp_hvps} HVPs)", "hutch++")):
                pn_t = prunehess_traces(model, batches, dev, s, self.seeds, strategy=strategy, batched=batched, method=method,
                                        hutchpp_hvps=self.args.hutchpp_hvps)
                sec.add(f"trace over {len(self.seeds)} seeds: PyH vs {label}", _mean(ph_t, "s"), _mean(pn_t, "s"),
                        round(_mean(ph_t, "hvps")), round(_mean(pn_t, "hvps")), _rms(ph_t, tr_exact), _rms(pn_t, tr_exact),
                        note="mean time and HVPs per estimate; error: RMS over seeds"
                             + ("; the trace's own time and HVPs (its Krylov basis is the density's run's)"
                                if method.startswith("deflated") else "")
                             + (f"; PyH stopped on a negative running mean in {sum(r['sign_stop'] for r in ph_t)} of "
                                f"{len(ph_t)}" if any(r["sign_stop"] for r in ph_t) else ""))

        # density
        sec.add(f"density: SLQ iter={s.density_iter}, n_v={s.density_runs}", ph["density_s"], pn["density_s"],
                ph["density_hvps"], pn["density_hvps"], rel(ph["density_top"], ref_vals[0]), rel(pn["density_top"], ref_vals[0]),
                note="error: top Ritz node vs λ_max")

        # the whole analysis
        e_ph = (rel(ph["top"][0], ref_lm[0]), rel(ph["trace"], tr_exact))
        e_pn = (rel(pn["top"][0], ref_vals[0]), rel(pn["trace"], tr_exact))
        e_pp = (rel(pn_pp["top"][0], ref_vals[0]), rel(pn_pp["trace"], tr_exact))
        sec.add("FULL ANALYSIS: top-1 + trace (PyH's rule from the 10th probe) + density", ph["total_s"], pn["total_s"],
                ph["hvps"], pn["hvps"],
                max(e_ph), max(e_pn), note=f"error: worst of top-1 ({_e(e_ph[0])}/{_e(e_pn[0])}) and trace "
                f"({_e(e_ph[1])}/{_e(e_pn[1])}), seed 0; ph: curvature_summary() (trace: {pn['trace_method']}), top-1 "
                + ("from the density's Lanczos run" if pn["top_from_density"] else "by its own Lanczos run")
                + f"; tune() not included ({t_tune:.1f} s once per run)")
        sec.add(f"FULL ANALYSIS: top-1 + trace (Hutch++ {self.args.hutchpp_hvps}) + density", ph["total_s"], pn_pp["total_s"],
                ph["hvps"], pn_pp["hvps"], max(e_ph), max(e_pp),
                note=f"error: worst of top-1 ({_e(e_ph[0])}/{_e(e_pp[0])}) and trace ({_e(e_ph[1])}/{_e(e_pp[1])}), seed 0")
        if ph_mem is not None or pn_mem is not None:
            how = "torch.cuda.max_memory_allocated" if dev.type == "cuda" else "VmHWM of a fresh process per tool"
            sec.add("PEAK MEMORY: full analysis", ph_mem, pn_mem, unit="MiB", note=f"{how}; ratio > 1: prunehess uses less")
        if batched != "loop":
            log(f"{w.key}: full analysis, prunehess with batched=loop (memory trade-off)")
            peak = self._peak()
            with peak:
                pl = prunehess_full(model, batches, dev, s, strategy=strategy, batched="loop", masks=None)
            pl_mem = getattr(peak, "mb", None) if dev.type == "cuda" else self.memory_of(
                w, "pn-full", {"strategy": strategy, "batched": "loop", "masks": None})
            e_pl = (rel(pl["top"][0], ref_vals[0]), rel(pl["trace"], tr_exact))
            sec.add(f"FULL ANALYSIS, ph without batching ({strategy} + loop)", ph["total_s"], pl["total_s"], ph["hvps"],
                    pl["hvps"], max(e_ph), max(e_pl), note="what tune() would pick if batched products had to fit "
                    "PyHessian's memory" + _mem_pair(ph_mem, pl_mem))

        self.diag = diag
        return sec

    def hvp_rows(self, sec: Section, w: Workload) -> float:
        dev, model, batches = self.device, w.model, w.batches
        log(f"{w.key}: gradient and HVP strategies")
        grad = gradient_time(model, batches, dev, repeats=self.repeats)
        sec.add("gradient (one pass over the batch)", pn=grad,
                note="the HVP ≤ 2× gradient target's yardstick; each product row times it again, alternately with "
                     "the product, for its ratio")
        gradient = gradient_fn(model, batches)
        peak = self._peak()
        with peak:
            r = pyhessian_hvp(model, batches, dev, repeats=self.repeats, gradient=gradient)
        ph_hvp = r["hvp_s"]
        mem = getattr(peak, "mb", None) if dev.type == "cuda" else self.memory_of(w, "ph-hvp", {})
        sec.add("HVP: PyHessian's own", ph=ph_hvp, note=f"{ph_hvp / r['grad_s']:.2f}× gradient" + _mem(mem))
        for strategy, k, label in STRATEGY_ROWS:
            if strategy.endswith("+cuda_graphs") and dev.type != "cuda":
                continue
            if "one_chunk" in strategy and len(batches) == 1:
                continue  # nothing to merge
            peak = self._peak()
            try:
                with peak:
                    r = prunehess_hvp(model, batches, dev, strategy=strategy, k=k, repeats=self.repeats,
                                      gradient=gradient)
            except (RuntimeError, NotImplementedError) as err:  # unsupported operator or out of memory
                sec.add(f"HVP: {label}", ph=ph_hvp, note=f"failed: {str(err).splitlines()[0][:80]}")
                if dev.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            mem = getattr(peak, "mb", None) if dev.type == "cuda" else self.memory_of(w, "pn-hvp", {"strategy": strategy, "k": k})
            note = f"{r['hvp_s'] / r['grad_s']:.2f}× gradient"
            if r.get("build_s"):
                note += f"; + graph build{' and capture' if 'cuda_graphs' in strategy else ''} {_t(r['build_s'])} once"
            sec.add(f"HVP: {label}", ph=ph_hvp, pn=r["hvp_s"], note=note + _mem(mem))
        return grad

    def tune_row(self, sec: Section, w: Workload) -> tuple[str, str, float]:
        log(f"{w.key}: tune()")
        H = operator(w.model, w.batches, strategy="graph", batched="loop")
        kwargs = {"k": 2, "repeats": 1} if self.args.quick else {}
        t_tune, tuning = timed(lambda: tune(H, **kwargs), self.device)  # leaves H configured with its choice
        timings = tuning.timings
        strategy = H.strategy + ("+one_chunk" if H.chunk_size else "") + ("+cuda_graphs" if H.cuda_graphs else "")
        batched = H.batched_strategy
        H.release()
        note = (f"picked {strategy} + batched {batched}; its timings per HVP: "
                + ", ".join(f"{k.replace('batched:', 'b:')} {_t(v)}" for k, v in timings.items()))
        if self.args.quick:  # on tiny batches the pick is noise, and a vmap pick makes the smoke run slow
            strategy, batched = "graph", "loop"
            note += "; --quick uses graph + loop regardless"
        sec.add("tune(): picks the strategies", pn=t_tune, note=note)
        self.strategy, self.batched = strategy, batched
        return strategy, batched, t_tune

    def references(self, sec: Section, w: Workload):
        """Top-k by value (Lanczos "LA", for Lanczos) and by magnitude ("LM", what power iteration finds), both at
        ``--ref-tol``; the exact Hessian diagonal (trace and block traces)."""
        s, dev, model, batches = self.s, self.device, w.model, w.batches
        log(f"{w.key}: references (Lanczos tol={self.args.ref_tol:g}; exact diagonal)")
        H = operator(model, batches, strategy=self.strategy, batched=self.batched, masks=None)
        kw = dict(k=s.top_k, tol=self.args.ref_tol, max_iter=self.args.ref_max_iter, seed=123)
        t_ref, ref = timed(lambda: lanczos_top_eigen(H, which="LA", **kw), dev)
        ref_lm = lanczos_top_eigen(H, which="LM", **kw)
        la = [float(x) for x in ref.eigenvalues]
        lm = [float(x) for x in ref_lm.eigenvalues]
        t_exact, diag = timed(lambda: exact_diagonal(model, batches), dev)
        tr_exact = traces(diag)[0]
        check = spot_check(H, diag)
        H.release()
        same = all(abs(a - b) <= 1e-6 * abs(a) for a, b in zip(la, lm))
        sec.notes.append(
            f"references: top-{s.top_k} by Lanczos tol={self.args.ref_tol:g} ({ref.n_hvp} HVPs, {t_ref:.1f} s, "
            f"converged={ref.converged}): " + ", ".join(f"{v:.6g}" for v in la)
            + ("" if same else f"; by magnitude (what power iteration converges to; {ref_lm.n_hvp} HVPs, converged="
               f"{ref_lm.converged}): " + ", ".join(f"{v:.6g}" for v in lm))
            + f"; exact trace {tr_exact:.6g} from the exact Hessian diagonal ({t_exact:.1f} s; "
            f"spot-checked against eᵢᵀHeᵢ on 4 coordinates: max rel. diff {check:.1e})")
        return la, lm, diag, tr_exact

    def layer_rows(self, sec: Section, w: Workload, diag) -> None:
        s, dev, model, batches = self.s, self.device, w.model, w.batches
        all_names = [n for n, _ in model.named_parameters()]
        names = list(all_names)
        limit = self.args.layer_limit
        if limit is None and dev.type != "cuda" and len(names) > 12:
            limit = 6
        if limit and limit < len(names):
            step = (len(names) - 1) / (limit - 1) if limit > 1 else 0
            names = list(dict.fromkeys(names[round(i * step)] for i in range(limit)))
        log(f"{w.key}: per-layer mode over {len(names)} tensors, PyHessian")
        ph = pyhessian_layers(model, batches, dev, s, names)
        log(f"{w.key}: per-layer mode, prunehess")
        pb = prunehess_layers(model, batches, dev, s, names, strategy=self.strategy, batched=self.batched)
        log(f"{w.key}: per-layer references")
        H = operator(model, batches, strategy=self.strategy, batched=self.batched, masks=None)
        top_ref = {}
        for n in names:
            block = H.restrict([n])
            kw = dict(k=1, tol=self.args.ref_tol, max_iter=self.args.ref_max_iter, seed=123)
            top_ref[n] = (float(lanczos_top_eigen(block, which="LA", **kw).eigenvalues[0]),
                          float(lanczos_top_eigen(block, which="LM", **kw).eigenvalues[0]))
        H.release()
        tr_blocks = traces(diag)[1]
        tr_ph = _median([rel(ph["per"][n]["trace"], tr_blocks[n]) for n in names])
        top_ph = _median([rel(ph["per"][n]["top"][0], top_ref[n][1]) for n in names])
        subset = "" if len(names) == len(all_names) else f" ({len(names)} of {len(all_names)}, evenly spaced)"
        tr_pn = _median([rel(pb["per"][n]["trace"], tr_blocks[n]) for n in names])
        top_pn = _median([rel(pb["per"][n]["top"][0], top_ref[n][0]) for n in names])
        sec.add(f"PER-LAYER: top-1 + trace + density per tensor, {len(names)} tensors{subset}", ph["total_s"],
                pb["total_s"], ph["hvps"], pb["hvps"], tr_ph, tr_pn,
                note=f"error: median per-layer trace error (top-1: {_e(top_ph)}/{_e(top_pn)}); ph: curvature_summary() per block, "
                     f"{pb['exact_traces']} of {len(names)} traces exact (the block's SLQ run spans it), the others "
                     f"per-block probes by PyH's rule ({pb['trace_hvps']} HVPs)")

    # ----- the pruned model: mask-aware analysis
    def pruned_section(self, w: Workload) -> Section:
        s, dev, model, batches = self.s, self.device, w.model, w.batches
        strategy, batched = self.strategy, self.batched
        sec = Section(f"{w.title}: {w.n_surviving:,} of {w.n_params:,} parameters survive [{dev.type}]")
        sec.notes.append(w.data_note)
        log(f"{w.key}: references")
        diag = exact_diagonal(model, batches)
        weight_masks = {n: p.detach() != 0 for n, p in model.named_parameters() if p.dim() >= 2}
        refs = {}
        for masks in (None, "auto"):
            H = operator(model, batches, strategy=strategy, batched=batched, masks=masks)
            r = lanczos_top_eigen(H, k=1, tol=self.args.ref_tol, max_iter=self.args.ref_max_iter, seed=123)
            if masks is None:
                lm = float(lanczos_top_eigen(H, k=1, which="LM", tol=self.args.ref_tol,
                                             max_iter=self.args.ref_max_iter, seed=123).eigenvalues[0])
            H.release()
            refs[masks] = (float(r.eigenvalues[0]), traces(diag, None if masks is None else weight_masks)[0], H.size)
        log(f"{w.key}: full analysis, PyHessian (all parameters: its only behaviour)")
        peak = self._peak()
        with peak:
            ph = pyhessian_full(model, batches, dev, s)
        ph_mem = getattr(peak, "mb", None) if dev.type == "cuda" else self.memory_of(w, "ph-full", {})
        l_all, t_all, _ = refs[None]
        e_ph = (rel(ph["top"][0], lm), rel(ph["trace"], t_all))
        for masks, label in ((None, "all parameters (PyHessian's operator)"), ("auto", "surviving weights (default)")):
            log(f"{w.key}: full analysis, prunehess on {label}")
            peak = self._peak()
            with peak:
                pn = prunehess_full(model, batches, dev, s, strategy=strategy, batched=batched, masks=masks)
            mem = getattr(peak, "mb", None) if dev.type == "cuda" else self.memory_of(
                w, "pn-full", {"strategy": strategy, "batched": batched, "masks": masks})
            l_ref, t_ref, n = refs[masks]
            e_pn = (rel(pn["top"][0], l_ref), rel(pn["trace"], t_ref))
            sec.add(f"FULL ANALYSIS: ph on {label}", ph["total_s"], pn["total_s"], ph["hvps"], pn["hvps"], max(e_ph), max(e_pn),
                    note=f"n={n:,}; λ_max {ph['top'][0]:.4g}/{pn['top'][0]:.4g} (ref {l_ref:.4g}), "
                         f"trace {ph['trace']:.4g}/{pn['trace']:.4g} (exact {t_ref:.4g})" + _mem_pair(ph_mem, mem))
        sec.notes.append("PyHessian always analyses every coordinate, pruned ones included (its λ_max and trace are the "
                         "all-parameter row's references); prunehess's default is the surviving weights' Hessian")
        return sec


def spot_check(H, diag: dict) -> float:
    """Max relative difference between the exact diagonal and ``eᵢᵀ H eᵢ`` for 4 coordinates (2 largest, 2 random)."""
    flat = H.space.to_flat({n: d.to(H.dtype) for n, d in diag.items()}).double().cpu()
    g = torch.Generator().manual_seed(1)
    idx = torch.topk(flat, 2).indices.tolist() + torch.randint(0, H.size, (2,), generator=g).tolist()
    worst = 0.0
    for i in idx:
        e = torch.zeros(H.size, dtype=H.dtype, device=H.device)
        e[i] = 1
        hii = float((H @ e)[i])
        worst = max(worst, abs(hii - float(flat[i])) / max(abs(float(flat[i])), 1e-12))
    return worst


def _mean(rows: list[dict], key: str) -> float:
    return statistics.fmean(r[key] for r in rows)


def _rms(rows: list[dict], exact: float) -> float:
    return (statistics.fmean(((r["trace"] - exact) / exact) ** 2 for r in rows)) ** 0.5


def _median(errs):
    errs = [e for e in errs if e is not None]
    return statistics.median(errs) if errs else None


def _t(x: float) -> str:
    return f"{x * 1e3:.0f} ms" if x < 1 else f"{x:.2f} s"


def _mem(mb: Optional[float]) -> str:
    return "" if mb is None else f"; peak {mb:,.0f} MiB"


def _mem_pair(a: Optional[float], b: Optional[float]) -> str:
    if a is None and b is None:
        return ""
    return f"; peak memory {'—' if a is None else f'{a:,.0f}'}/{'—' if b is None else f'{b:,.0f}'} MiB"


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
    p.add_argument("--quick", action="store_true",
                   help="smoke run of every code path on small batches, 1 thread unless --threads (< 60 s); measures nothing")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--markdown", default=None, metavar="PATH", help="also write the table as markdown here")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the raw rows as JSON here")
    p.add_argument("--memory", choices=("auto", "on", "off"), default="auto",
                   help="peak memory (CPU: fresh worker processes re-run the work; off saves that time)")
    p.add_argument("--layer-limit", type=int, default=None,
                   help="per-layer mode on this many evenly spaced parameter tensors (default: all; 6 for ResNet-20 on CPU)")
    p.add_argument("--hvp-only", action="store_true", help="only the gradient, HVP-strategy and tune() rows")
    p.add_argument("--skip-layers", action="store_true", help="leave out per-layer mode")
    p.add_argument("--skip-pruned", action="store_true", help="leave out the pruned variants")
    p.add_argument("--trace-seeds", type=int, default=5, help="seeds for the trace-accuracy rows (RMS error); 0: skip them")
    p.add_argument("--hutchpp-hvps", type=int, default=99, help="Hutch++'s budget of HVPs")
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
        settings = Settings(power_max_iter=8, trace_max_iter=8, density_iter=8, top_k=2)
        args.layer_limit = args.layer_limit or 2
        args.trace_seeds = min(args.trace_seeds, 1)
        args.hutchpp_hvps = min(args.hutchpp_hvps, 6)
        args.ref_max_iter = min(args.ref_max_iter, 30)
        args.ref_tol = max(args.ref_tol, 1e-5)
        args.threads = args.threads or 1
        torch.set_num_threads(args.threads)
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
        f"errors are relative to Lanczos tol {args.ref_tol:g} (eigenvalues) and the exact trace.",
        f"- PyHessian settings (both tools): power maxIter={settings.power_max_iter} tol={settings.power_tol:g}, "
        f"trace maxIter={settings.trace_max_iter} tol={settings.trace_tol:g}, density iter={settings.density_iter} "
        f"n_v={settings.density_runs}; seed {settings.seed}" + (" (--quick: reduced)" if args.quick else ""),
    ]
    log("checking the exact-trace reference against dense Hessians of tiny networks")
    checks = check_exact_trace()
    worst = max(abs(a - b) / abs(b) for _, a, b in checks)
    preamble.append(f"- exact-trace reference checked against torch.func.hessian on tiny networks "
                    f"({', '.join(c for c, _, _ in checks)}): max rel. difference {worst:.1e}")
    sections: list[Section] = []

    def write(final: bool = False) -> None:
        """Write the files (also after every part, so a run cut short keeps what it measured)."""
        head = preamble + ([] if final else ["- (partial: the run had not finished when this was written)"])
        if args.markdown:
            Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
            Path(args.markdown).write_text(render_markdown(sections, head))
        if args.json:
            Path(args.json).write_text(json.dumps(
                {"preamble": head, "sections": [{"title": sec.title, "notes": sec.notes, "rows": [asdict(r) for r in sec.rows]}
                                                for sec in sections]}, indent=1, default=float))

    with tempfile.TemporaryDirectory(prefix="prunehess-bench-") as state_dir:
        for name in models:
            log(f"{name}: building the model, data and weights")
            dense, pruned = make_workloads(name, device=device, data_root=args.data_root, quick=args.quick)
            Bench(args, device, settings, state_dir, sections, write).run(dense, pruned)
            del dense, pruned
    preamble.append(f"- total benchmark time {time.perf_counter() - started:.0f} s")
    print("\n".join(preamble))
    print(render_text(sections))
    write(final=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
