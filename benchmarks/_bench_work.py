"""The pieces of work both tools do, as functions of (model, Hessian batch, device, settings).

Each returns a plain dict of numbers (time per phase, HVP counts, estimates) so the same function serves the
in-process timings and the fresh-process memory workers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import nn

from _bench_measure import sync, timed, timed_with
from _bench_pyhessian import HVPCounter, build_hessian, eig_shim, only_params, release


@dataclass(frozen=True)
class Settings:
    """PyHessian's knobs (its defaults unless ``--quick``), applied to both tools."""

    power_max_iter: int = 100  # PyHessian eigenvalues(maxIter)
    power_tol: float = 1e-3  # PyHessian eigenvalues(tol)
    trace_max_iter: int = 100  # PyHessian trace(maxIter)
    trace_tol: float = 1e-3  # PyHessian trace(tol)
    density_iter: int = 100  # PyHessian density(iter)
    density_runs: int = 1  # PyHessian density(n_v)
    top_k: int = 5
    seed: int = 0


# ----- PyHessian -------------------------------------------------------------------------------------------------
def sign_stop(vhv: Sequence[float], max_iter: int) -> bool:
    """Whether PyHessian's ``trace()`` stopped only because its running mean was negative: its rule
    ``|mean − previous| / (previous + 1e-6) < tol`` divides by the *signed* previous mean, so any negative
    running mean passes the test at the next probe."""
    if len(vhv) >= max_iter or len(vhv) < 2:
        return False
    previous = sum(vhv[:-1]) / (len(vhv) - 1)
    return previous + 1e-6 < 0

def _clock(device: torch.device, fn):
    sync(device)
    import time

    start = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - start, out


def pyhessian_full(model: nn.Module, batches, device: torch.device, s: Settings, *, names: Optional[Sequence[str]] = None,
                   top_k: int = 1, parts: Sequence[str] = ("top", "trace", "density")) -> dict:
    """One ``hessian`` object (restricted to ``names`` by ``requires_grad``), then top-k, trace, density."""
    out: dict = {}
    counter = HVPCounter()
    torch.manual_seed(s.seed)
    with counter.installed(), eig_shim(), only_params(model, names):
        t, H = _clock(device, lambda: build_hessian(model, batches, device))
        out["build_s"] = t
        total = t
        if "top" in parts:
            before = counter.count
            t, (vals, _) = _clock(device, lambda: H.eigenvalues(maxIter=s.power_max_iter, tol=s.power_tol, top_n=top_k))
            out.update(top_s=t, top_hvps=counter.count - before, top=[float(v) for v in vals])
            total += t
        if "trace" in parts:
            before = counter.count
            t, vhv = _clock(device, lambda: H.trace(maxIter=s.trace_max_iter, tol=s.trace_tol))
            out.update(trace_s=t, trace_hvps=counter.count - before, trace=float(sum(vhv) / len(vhv)),
                       sign_stop=sign_stop(vhv, s.trace_max_iter))
            total += t
        if "density" in parts:
            before = counter.count
            t, (nodes, weights) = _clock(device, lambda: H.density(iter=s.density_iter, n_v=s.density_runs))
            finite = [x for run in nodes for x in run if math.isfinite(x)]
            out.update(density_s=t, density_hvps=counter.count - before, density_top=float(max(finite)) if finite else float("nan"))
            total += t
        del H
        release(model)
    out["total_s"] = total
    out["hvps"] = counter.count
    return out


def _timed_hvp(fn, device: torch.device, repeats: int, gradient) -> dict:
    """``{"hvp_s"}``, and ``"grad_s"`` timed alternately with the product when ``gradient`` is given."""
    if gradient is None:
        t, _ = timed(fn, device, repeats=repeats, warmup=1)
        return {"hvp_s": t}
    t, g = timed_with(fn, gradient, device, repeats=repeats, warmup=1)
    return {"hvp_s": t, "grad_s": g}


def pyhessian_hvp(model: nn.Module, batches, device: torch.device, *, repeats: int = 3, gradient=None) -> dict:
    """Seconds for one of PyHessian's own products (``dataloader_hv_product`` or ``hessian_vector_product``);
    with ``gradient`` (a callable), also the gradient's seconds, timed alternately with the product."""
    from pyhessian.utils import hessian_vector_product

    torch.manual_seed(0)
    H = build_hessian(model, batches, device)
    v = [torch.randn_like(p) for p in H.params]
    if H.full_dataset:
        fn = lambda: H.dataloader_hv_product(v)  # noqa: E731
    else:
        fn = lambda: hessian_vector_product(H.gradsH, H.params, v)  # noqa: E731
    out = _timed_hvp(fn, device, repeats, gradient)
    del H, v
    release(model)
    return out


# ----- prunehess -------------------------------------------------------------------------------------------------
def operator(model, batches, *, strategy: str, batched: str, masks="auto", params=None, fast_second_order: bool = True):
    """prunehess's operator; ``strategy`` may carry what ``tune`` adds to graph reuse: ``"+one_chunk"`` (the
    mini-batches merged into one chunk) and ``"+cuda_graphs"`` (products replayed from CUDA graphs)."""
    from prunehess import HessianOperator

    strategy, *extras = strategy.split("+")
    batches = list(batches)
    chunk = sum(int(y.shape[0]) for _, y in batches) if "one_chunk" in extras else None
    return HessianOperator(model, batches, masks=masks, params=params, strategy=strategy, batched_strategy=batched,
                           fast_second_order=fast_second_order, cuda_graphs="cuda_graphs" in extras, chunk_size=chunk)


def probe_batch(batched: str) -> int:
    """Probes per batched product, as ``extract`` batches them: ``PROBES_PER_PRODUCT`` unless a plain loop."""
    from prunehess.operators.hessian import PROBES_PER_PRODUCT

    return 1 if batched == "loop" else PROBES_PER_PRODUCT


def prunehess_full(model: nn.Module, batches, device: torch.device, s: Settings, *, strategy: str, batched: str,
                   masks="auto", trace_method: str = "hutchinson", hutchpp_hvps: int = 0,
                   parts: Sequence[str] = ()) -> dict:
    """Operator, then what the pipeline runs per checkpoint: ``curvature_summary(H)`` (SLQ density; top-1 from its
    Lanczos run when converged to Lanczos's default tolerance 1e-4, else Lanczos; trace by PyHessian's rule or
    Hutch++).

    ``parts`` (``"top"``, ``"trace"``, ``"density"``) also times each estimator on its own, for the per-part rows.
    """
    from prunehess.estimators import (DensityOptions, EigenOptions, TraceOptions, curvature_summary, hutchinson_trace,
                                      hutchpp_trace, lanczos_top_eigen, slq_density)

    out: dict = {}
    t, H = _clock(device, lambda: operator(model, batches, strategy=strategy, batched=batched, masks=masks))
    total = t
    trace_probes = hutchpp_hvps if trace_method == "hutch++" else s.trace_max_iter
    options = dict(eigen=EigenOptions(k=1, tol=1e-4), trace=TraceOptions(method=trace_method, probes=trace_probes,
                                                                          tol=s.trace_tol),
                   density=DensityOptions(runs=s.density_runs, steps=s.density_iter))
    t, r = _clock(device, lambda: curvature_summary(H, **options, trace_batch_size=probe_batch(batched), seed=s.seed))
    total += t
    out.update(summary_s=t, top=[float(x) for x in r.eigen.eigenvalues], top_from_density=r.eigen.n_hvp == 0,
               trace_method=r.trace.method,
               trace=r.trace.estimate, trace_stderr=r.trace.stderr, density_top=float(r.density.nodes.max()))
    if "top" in parts:
        t, e = _clock(device, lambda: lanczos_top_eigen(H, k=1, seed=s.seed))
        out.update(top_s=t, top_hvps=e.n_hvp, top_alone=[float(x) for x in e.eigenvalues])
    if "trace" in parts:
        if trace_method == "hutch++":
            t, e = _clock(device, lambda: hutchpp_trace(H, n_hvp=hutchpp_hvps, batch_size=probe_batch(batched),
                                                        seed=s.seed))
        else:
            t, e = _clock(device, lambda: hutchinson_trace(H, n_probes=s.trace_max_iter, tol=s.trace_tol,
                                                           batch_size=probe_batch(batched), seed=s.seed))
        out.update(trace_s=t, trace_hvps=e.n_hvp, trace_alone=e.estimate)
    if "density" in parts:
        t, d = _clock(device, lambda: slq_density(H, n_runs=s.density_runs, n_steps=s.density_iter, seed=s.seed))
        out.update(density_s=t, density_hvps=d.n_hvp)
    out["hvps"] = r.n_hvp
    H.release()
    out["total_s"] = total
    return out


def prunehess_hvp(model: nn.Module, batches, device: torch.device, *, strategy: str, k: int = 1,
                  repeats: int = 3, gradient=None) -> dict:
    """Seconds per product for one strategy (``k`` > 1: per product of a ``k``-vector batch), graph build apart;
    ``"<strategy>:native"``: with PyTorch's own convolution/BatchNorm/ReLU double backward
    (``fast_second_order=False``). With ``gradient`` (a callable), also the gradient's seconds, timed alternately."""
    strategy, _, native = strategy.partition(":")
    single = strategy.partition("+")[0] in ("graph", "double_backward", "forward_over_reverse")
    H = operator(model, batches, strategy=strategy if single else "graph", batched="loop" if single else strategy,
                 fast_second_order=not native)
    g = torch.Generator().manual_seed(0)
    v = torch.randn(H.size, k, generator=g).to(device)
    fn = (lambda: H @ v[:, 0]) if k == 1 else (lambda: H @ v)  # noqa: E731
    build = 0.0
    if strategy.endswith("+cuda_graphs"):
        build, _ = _clock(device, lambda: H @ v[:, 0])  # graph build and capture
    elif strategy.partition("+")[0] in ("graph", "graph_batched"):
        build, _ = _clock(device, lambda: H.engine.gradient.grads())
    out = _timed_hvp(fn, device, repeats, gradient)
    H.release()
    return {**out, "hvp_s": out["hvp_s"] / k, "build_s": build}


def gradient_time(model: nn.Module, batches, device: torch.device, *, repeats: int = 3) -> float:
    """Seconds for one gradient of the mean loss over the Hessian batch (forward + backward per mini-batch)."""
    t, _ = timed(gradient_fn(model, batches), device, repeats=repeats, warmup=1)
    return t


def gradient_fn(model: nn.Module, batches):
    """One gradient of the mean loss over the Hessian batch, as a callable (the model in eval mode)."""
    import torch.nn.functional as F

    params = [p for p in model.parameters()]
    n = sum(int(y.shape[0]) for _, y in batches)

    def grad():
        total = None
        for x, y in batches:
            g = torch.autograd.grad(F.cross_entropy(model(x), y) * (y.shape[0] / n), params)
            total = g if total is None else [a + b for a, b in zip(total, g)]
        return total

    model.eval()
    return grad


# ----- per layer -------------------------------------------------------------------------------------------------
def pyhessian_layers(model, batches, device, s: Settings, names: Sequence[str]) -> dict:
    """One ``hessian`` per parameter tensor (others frozen): top-1, trace, density each."""
    per = {}
    total, hvps = 0.0, 0
    for name in names:
        r = pyhessian_full(model, batches, device, s, names=[name])
        per[name] = r
        total += r["total_s"]
        hvps += r["hvps"]
    return {"total_s": total, "hvps": hvps, "per": per}


def prunehess_layers(model, batches, device, s: Settings, names: Sequence[str], *, strategy: str, batched: str) -> dict:
    """One operator; per tensor what the pipeline runs with ``--compute-each-layer``: the block's
    ``curvature_summary`` (SLQ; top-1 from its run when converged, else Lanczos; the trace exact when the run spans
    the block, else the block's own Hutchinson probes with PyHessian's rule)."""
    import time

    from prunehess.estimators import DensityOptions, EigenOptions, TraceOptions, curvature_summary

    sync(device)
    start = time.perf_counter()
    H = operator(model, batches, strategy=strategy, batched=batched, masks=None)
    sub = H.restrict(list(names))
    per = {}
    trace_hvps = exact = 0
    for name, block in sub.layers().items():
        r = curvature_summary(block, eigen=EigenOptions(k=1, tol=1e-4),
                              trace=TraceOptions(probes=s.trace_max_iter, tol=s.trace_tol),
                              density=DensityOptions(runs=s.density_runs, steps=s.density_iter),
                              trace_batch_size=probe_batch(batched), seed=s.seed)
        per[name] = {"top": [float(r.eigen.eigenvalues[0])], "trace": r.trace.estimate, "hvps": r.n_hvp}
        trace_hvps += r.trace.n_hvp
        exact += r.trace.method == "exact"
    sync(device)
    total = time.perf_counter() - start
    hvps = sum(p["hvps"] for p in per.values())
    H.release()
    return {"total_s": total, "hvps": hvps, "trace_hvps": trace_hvps, "exact_traces": exact, "per": per}


# ----- trace accuracy over several seeds -------------------------------------------------------------------------
def pyhessian_traces(model: nn.Module, batches, device: torch.device, s: Settings, seeds: Sequence[int]) -> list[dict]:
    """PyHessian's ``trace()`` once per seed (global torch seed), on one ``hessian`` object."""
    counter = HVPCounter()
    out = []
    with counter.installed():
        H = build_hessian(model, batches, device)
        for seed in seeds:
            torch.manual_seed(seed)
            before = counter.count
            t, vhv = _clock(device, lambda: H.trace(maxIter=s.trace_max_iter, tol=s.trace_tol))
            out.append({"s": t, "hvps": counter.count - before, "trace": float(sum(vhv) / len(vhv)),
                        "sign_stop": sign_stop(vhv, s.trace_max_iter)})
        del H
        release(model)
    return out


def prunehess_traces(model: nn.Module, batches, device: torch.device, s: Settings, seeds: Sequence[int], *,
                     strategy: str, batched: str, method: str = "hutchinson", hutchpp_hvps: int = 99) -> list[dict]:
    """prunehess's trace once per seed: Hutchinson with PyHessian's rule, or Hutch++ with ``hutchpp_hvps``, or
    (``"deflated"``) Hutchinson with PyHessian's rule on the complement of the density run's Krylov space, as
    ``curvature_summary`` does: the density's run is made first, untimed (the full analysis makes it anyway);
    ``"deflated-min10"``: the same, the rule checked from the tenth probe on (``extract``'s default)."""
    from prunehess.estimators import hutchinson_trace, hutchpp_trace, slq_density

    H = operator(model, batches, strategy=strategy, batched=batched, masks=None)
    H @ torch.zeros(H.size, device=device)  # build the reused graph outside the timings (PyHessian's is built too)
    out = []
    for seed in seeds:
        if method in ("deflated", "deflated-min10"):
            d = slq_density(H, n_runs=s.density_runs, n_steps=s.density_iter, seed=seed, deflation=True)
            t, r = _clock(device, lambda: hutchinson_trace(  # probes from seed + 1, as curvature_summary draws them
                H, n_probes=s.trace_max_iter, tol=s.trace_tol, min_probes=10 if method == "deflated-min10" else 1,
                batch_size=probe_batch(batched), deflate=d.deflation, seed=seed + 1))
            del d
        elif method == "hutch++":
            t, r = _clock(device, lambda: hutchpp_trace(H, n_hvp=hutchpp_hvps, batch_size=probe_batch(batched),
                                                        seed=seed))
        else:
            t, r = _clock(device, lambda: hutchinson_trace(H, n_probes=s.trace_max_iter, tol=s.trace_tol,
                                                           batch_size=probe_batch(batched), seed=seed))
        out.append({"s": t, "hvps": r.n_hvp, "trace": r.estimate})
    H.release()
    return out
