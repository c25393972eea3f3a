"""The three tools of ``bench_peers.py`` behind one small interface, each called through its documented API.

Every tool gets the same model (in ``eval()`` mode), the same mini-batches (tensors on the device) and the mean
cross-entropy; each counts its own Hessian-vector products (columns of a batched product count one each).

- **prunehess**: ``HessianOperator`` with the configuration ``extract --strategy auto`` picks
  (:func:`prunehess.operators.rule.rule_tuning`); ``lanczos_top_eigen(tol=…)``; ``hutchinson_trace`` (probes one at a time, or
  all in one batched product: ``batch_size`` with ``graph_batched`` or ``vmap``) and ``hutchpp_trace``;
  ``slq_density``; the full analysis is ``curvature_summary`` (one SLQ run that also gives
  the top eigenvalue and deflates the trace's probes).
- **hessian-eigenthings 1.0.0a5**: ``HessianOperator(model, batches, supervised_loss(F.cross_entropy))`` (its
  average over equal mini-batches is the mean loss's Hessian); ``lanczos(k, max_iter, which="LA")``;
  ``trace(method="hutchinson"|"hutch++")``; ``spectral_density(num_runs=1, lanczos_steps=100)``.
- **curvlinops 3.0.1**: ``HessianLinearOperator(model, CrossEntropyLoss(), params, batches,
  check_deterministic=False)``; the top eigenvalues by SciPy's ``eigsh`` on ``A.to_scipy()`` (the route its
  documentation shows; a fixed start vector); ``hutchinson_trace``, ``hutchpp_trace``, ``xtrace``;
  ``lanczos_approximate_spectrum(ncv=100, boundaries=…)`` given the exact spectral boundaries (it would otherwise
  spend products estimating them; its Lanczos does not reorthogonalise).

Each tool's settings come in a ladder from cheap to accurate: ``bench_peers.py`` uses, per task, the first rung
that meets the task's accuracy.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

Batches = Sequence[tuple[Tensor, Tensor]]


class Tool:
    """``top(k, setting)``, ``trace(method, m, seed)``, ``density(steps, seed)``, ``full(...)``; ``products``
    counts the Hessian-vector products since the last :meth:`reset`."""

    name = ""
    top_ladder: Sequence[Any] = ()
    trace_methods: Sequence[str] = ()

    def __init__(self, model: nn.Module, batches: Batches, boundaries: tuple[float, float]):
        self.model, self.batches, self.boundaries = model, list(batches), boundaries
        self.products = 0

    def reset(self) -> None:
        self.products = 0

    def describe_top(self, setting: Any) -> str:
        return str(setting)

    def full(self, top_setting: Any, trace_method: str, m: int, steps: int, seed: int) -> tuple[float, float]:
        """Top-1, trace, and a ``steps``-step density, one after the other: ``(λ1, trace)``."""
        top = self.top(1, top_setting)[0]
        trace = self.trace(trace_method, m, seed)
        self.density(steps, seed)
        return top, trace

    def top(self, k: int, setting: Any) -> list[float]:
        raise NotImplementedError

    def trace(self, method: str, m: int, seed: int) -> float:
        raise NotImplementedError

    def density(self, steps: int, seed: int) -> None:
        raise NotImplementedError


# ----- prunehess ------------------------------------------------------------------------------------------------
class Prunehess(Tool):
    name = "prunehess"
    top_ladder = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 1e-4, 1e-5, 1e-6)  # Lanczos residual tolerance
    trace_methods = ("hutchinson", "hutchinson-batched", "hutchinson-vmap", "hutch++")
    BATCHED = {"batched": "graph_batched", "vmap": "vmap"}  # a method's suffix: how its probes are batched

    def __init__(self, model, batches, boundaries):
        super().__init__(model, batches, boundaries)
        from prunehess.operators import HessianOperator
        from prunehess.operators.rule import rule_tuning

        self.op = HessianOperator(model, self.batches, masks=None)
        self.op.apply_tuning(rule_tuning(self.op))

    def describe_top(self, setting):
        return f"Lanczos tol {setting:g}"

    def top(self, k, setting):
        from prunehess.estimators import lanczos_top_eigen

        found = lanczos_top_eigen(self.op, k=k, tol=setting, seed=0)
        self.products += found.n_hvp
        return [float(x) for x in found.eigenvalues]

    def trace(self, method, m, seed):
        from prunehess.estimators import hutchinson_trace, hutchpp_trace

        if method == "hutch++":
            found = hutchpp_trace(self.op, n_hvp=m, seed=seed)
        else:
            with self._batched(method):
                found = hutchinson_trace(self.op, n_probes=m, seed=seed,
                                         batch_size=m if self.op.batched_strategy != "loop" else 1)
        self.products += found.n_hvp
        return found.estimate

    def _batched(self, method: str):
        """All probes in one batched product where ``method`` ends in ``-batched`` (a batched backward over the kept
        graph: ``graph_batched``) or ``-vmap`` (``torch.func.vmap`` over forward-over-reverse, as curvlinops
        multiplies matrices); one at a time otherwise."""
        import contextlib

        @contextlib.contextmanager
        def scope():
            suffix = method.rsplit("-", 1)[-1] if "-" in method else ""
            self.op.set_strategy(self.op.strategy, self.BATCHED.get(suffix, "loop"))
            try:
                yield
            finally:
                self.op.set_strategy(self.op.strategy, "loop")

        return scope()

    def density(self, steps, seed):
        from prunehess.estimators import slq_density

        self.products += slq_density(self.op, n_runs=1, n_steps=steps, seed=seed).n_hvp

    def full(self, top_setting, trace_method, m, steps, seed):
        """``curvature_summary``: the SLQ run first; λ1 from it when converged to ``top_setting``; the trace by
        Hutchinson with ``m`` probes, deflated by the run's Krylov space (``trace_method`` ``"deflated…"``) or
        plain (``"hutchinson…"``), batched as :meth:`_batched` says; or Hutch++."""
        from prunehess.estimators import DensityOptions, EigenOptions, TraceOptions, curvature_summary

        trace = (TraceOptions(method="hutch++", probes=m) if trace_method == "hutch++" else
                 TraceOptions(probes=m, tol=None, min_probes=1, deflation=trace_method.startswith("deflated")))
        with self._batched(trace_method):
            found = curvature_summary(self.op, eigen=EigenOptions(k=1, tol=top_setting), trace=trace,
                                      density=DensityOptions(steps=steps), seed=seed,
                                      trace_batch_size=m if self.op.batched_strategy != "loop" else 1)
        self.products += found.n_hvp
        return float(found.eigen.eigenvalues[0]), found.trace.estimate


# ----- hessian-eigenthings ----------------------------------------------------------------------------------------
class Eigenthings(Tool):
    name = "hessian-eigenthings"
    top_ladder = (3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 80, 100)  # Lanczos steps (max_iter)
    trace_methods = ("hutchinson", "hutch++")

    def __init__(self, model, batches, boundaries):
        super().__init__(model, batches, boundaries)
        import hessian_eigenthings as eh

        self.eh = eh
        self.op = eh.HessianOperator(model, self.batches, eh.supervised_loss(F.cross_entropy))
        matvec = self.op.matvec

        def counted(v):
            self.products += 1
            return matvec(v)

        self.op.matvec = counted

    def describe_top(self, setting):
        return f"{setting} Lanczos steps"

    def top(self, k, setting):
        if setting < k:
            return [float("nan")] * k
        found = self.eh.lanczos(self.op, k=k, max_iter=setting, which="LA", seed=0)
        return sorted((float(x) for x in found.eigenvalues), reverse=True)

    def trace(self, method, m, seed):
        return float(self.eh.trace(self.op, num_matvecs=m, method=method, seed=seed).estimate)

    def density(self, steps, seed):
        self.eh.spectral_density(self.op, num_runs=1, lanczos_steps=steps, seed=seed)


# ----- curvlinops -------------------------------------------------------------------------------------------------
class Curvlinops(Tool):
    name = "curvlinops"
    top_ladder = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 0.0)  # eigsh's tol (0: machine precision)
    trace_methods = ("hutchinson", "hutch++", "xtrace")

    def __init__(self, model, batches, boundaries):
        super().__init__(model, batches, boundaries)
        from curvlinops import HessianLinearOperator

        params = [p for p in model.parameters() if p.requires_grad]
        self.A = HessianLinearOperator(model, nn.CrossEntropyLoss(), params, self.batches,
                                       check_deterministic=False)
        matmat = self.A._matmat

        def counted(M):
            self.products += int(M[0].shape[-1])
            return matmat(M)

        self.A._matmat = counted
        self.v0 = np.random.default_rng(0).standard_normal(self.A.shape[0]).astype(np.float32)

    def describe_top(self, setting):
        return f"eigsh tol {setting:g}"

    def top(self, k, setting):
        from scipy.sparse.linalg import eigsh

        values = eigsh(self.A.to_scipy(), k=k, which="LA", tol=setting, v0=self.v0, return_eigenvectors=False)
        return sorted((float(x) for x in values), reverse=True)

    def trace(self, method, m, seed):
        from curvlinops import hutchinson_trace, hutchpp_trace, xtrace

        torch.manual_seed(seed)  # its probes come from torch's global generator
        fn: Callable = {"hutchinson": hutchinson_trace, "hutch++": hutchpp_trace, "xtrace": xtrace}[method]
        return float(fn(self.A, m))

    def density(self, steps, seed):
        from curvlinops import lanczos_approximate_spectrum

        torch.manual_seed(seed)
        lanczos_approximate_spectrum(self.A, ncv=steps, num_repeats=1, boundaries=self.boundaries)


TOOLS = (Prunehess, Eigenthings, Curvlinops)


def available() -> tuple[list[type], list[str]]:
    """The tool classes whose package imports here, and a line for each that does not."""
    found, missing = [Prunehess], []
    for cls, module in ((Eigenthings, "hessian_eigenthings"), (Curvlinops, "curvlinops")):
        try:
            __import__(module)
            found.append(cls)
        except Exception as err:  # noqa: BLE001 - any import failure means "not here"
            missing.append(f"{cls.name}: not importable here ({type(err).__name__}: {err}); `make bench` installs it")
    return found, missing


def relative_errors(found: Sequence[float], reference: Sequence[float]) -> float:
    """The worst relative error of ``found`` against ``reference`` (both sorted, largest first)."""
    if any(not np.isfinite(x) for x in found) or len(found) < len(reference):
        return float("inf")
    return max(abs(a - b) / abs(b) for a, b in zip(sorted(found, reverse=True), reference))


def choose(options: Sequence[Any], meets: Callable[[Any], bool]) -> Optional[Any]:
    """The first of ``options`` for which ``meets`` holds (``None``: none does)."""
    for option in options:
        if meets(option):
            return option
    return None
