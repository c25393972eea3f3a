"""Top eigenvalues, trace and spectral density of one operator, sharing the products they can share.

PyHessian computes the three separately: power iteration for the top eigenvalues, Hutchinson probes for the
trace, and an independent Lanczos run per density sample. The density's Lanczos run already holds the top
eigenvalues: after ``m`` steps its largest Ritz values ``θ`` come with residual bounds ``|β_m s_{m,j}|``
(Golub & Van Loan, §10.1), and where those meet the tolerance they are the same answer
:func:`~prunehess.estimators.lanczos_top_eigen` would give, at no extra product. When the operator has no more
dimensions than the run has steps (a small layer: a bias, BatchNorm's scales), the run spans the whole space:
its nodes are the exact eigenvalues, so the top-k are exact and the trace is their sum, again without a product.

:func:`curvature_summary` computes the density first, then only what it did not already give.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, Mapping, Optional, Union

import torch
from torch import Tensor

from prunehess.estimators.hutchinson import hutchinson_trace, hutchpp_trace
from prunehess.estimators.lanczos import lanczos_top_eigen
from prunehess.estimators.power import power_iteration
from prunehess.estimators.results import DensityResult, EigenResult, TraceResult
from prunehess.estimators.slq import slq_density
from prunehess.operators.base import LinearOperator, as_operator

__all__ = ["CurvatureSummary", "curvature_summary", "top_eigen_from_density", "exact_trace_from_density"]


@dataclass(frozen=True)
class CurvatureSummary:
    """What one analysis of an operator gives: top eigenvalues, trace, spectral density."""

    eigen: EigenResult
    trace: TraceResult
    density: DensityResult

    @property
    def n_hvp(self) -> int:
        """Products used in all (a part taken from the density's run counts none of its own)."""
        return self.eigen.n_hvp + self.trace.n_hvp + self.density.n_hvp


def top_eigen_from_density(density: DensityResult, k: int, *, tol: float, run: int = 0) -> Optional[EigenResult]:
    """The ``k`` largest Ritz values of the density's run ``run`` when each has residual bound ``≤ tol·|θ|``
    (``lanczos_top_eigen``'s criterion) or the run spans the space; ``None`` otherwise, or when the run ended
    early on an invariant subspace (it may then miss eigenvalues outside it). No products."""
    if density.residuals is None or density.lengths is None:
        return None
    length = int(density.lengths[run])
    exact = density.spans_space(run)
    if k > length or (length < density.nodes.shape[1] and not exact):
        return None
    theta = density.nodes[run, :length]
    res = density.residuals[run, :length]
    order = torch.argsort(theta, descending=True)[:k]
    theta, res = theta[order], res[order]
    floor = torch.finfo(torch.float32).eps * float(theta.abs().max())
    if not exact and not bool((res <= tol * torch.clamp(theta.abs(), min=floor)).all()):
        return None
    return EigenResult(eigenvalues=theta, eigenvectors=None, residuals=torch.zeros_like(res) if exact else res,
                       n_hvp=0, n_iter=length, converged=True, method="lanczos")


def exact_trace_from_density(density: DensityResult, run: int = 0) -> Optional[TraceResult]:
    """The exact trace (the sum of all eigenvalues) when run ``run`` spans the space; ``None`` otherwise."""
    if not density.spans_space(run):
        return None
    nodes = density.nodes[run]
    return TraceResult(float(nodes.sum()), 0.0, 0, nodes.clone(), "exact")


def curvature_summary(
    A: Union[LinearOperator, Tensor],
    *,
    k: int = 1,
    method: Literal["lanczos", "power"] = "lanczos",
    tol: float = 1e-3,
    max_iter: int = 100,
    trace_method: Literal["hutchinson", "hutch++"] = "hutchinson",
    trace_probes: int = 100,
    trace_tol: Optional[float] = 1e-3,
    trace_min_probes: int = 10,
    trace_batch_size: int = 1,
    trace_blocks: Optional[Mapping[str, slice]] = None,
    slq_runs: int = 1,
    slq_steps: int = 100,
    trace_deflation: bool = True,
    seed: int = 0,
) -> CurvatureSummary:
    """Top-``k`` eigenvalues, trace and SLQ density of ``A`` (PyHessian's three analyses), sharing products.

    The density comes first (``slq_runs`` × ``slq_steps``). With ``method="lanczos"`` its first run's top Ritz
    values are the answer when they meet ``tol`` (else :func:`lanczos_top_eigen` runs with ``tol``,
    ``max_iter``); ``method="power"`` always runs power iteration (PyHessian's semantics). The trace is exact
    when the first run spans the space, else Hutchinson (``trace_probes`` probes, PyHessian's stopping rule at
    ``trace_tol`` after at least ``trace_min_probes`` probes; per-block estimates with ``trace_blocks``) or
    Hutch++ with ``trace_probes`` products.
    With ``trace_deflation`` Hutchinson counts the part of the trace in the density run's Krylov space exactly
    (``Σ αⱼ``) and probes only its complement (:class:`~prunehess.estimators.results.Deflation`; the probes then
    come from ``seed + 1``, independent of the density's start vectors): the same rule stops sooner and closer to
    the trace. ``trace_deflation=False``, or ``trace_blocks``, gives PyHessian's plain Hutchinson.

    Example:
        >>> import torch
        >>> from prunehess.estimators import curvature_summary
        >>> s = curvature_summary(torch.diag(torch.arange(1.0, 11.0, dtype=torch.float64)), k=2, slq_steps=20)
        >>> [round(x, 6) for x in s.eigen.eigenvalues.tolist()], s.trace.method, round(s.trace.estimate, 6), s.n_hvp
        ([10.0, 9.0], 'exact', 55.0, 10)
    """
    op = as_operator(A)
    k = min(k, op.size)
    if method not in ("lanczos", "power"):
        raise ValueError(f"unknown method {method!r}; choose 'lanczos' or 'power'")
    if trace_method not in ("hutchinson", "hutch++"):
        raise ValueError(f"unknown trace method {trace_method!r}; choose 'hutchinson' or 'hutch++'")
    deflate = bool(trace_deflation) and trace_method == "hutchinson" and trace_blocks is None
    density = slq_density(op, n_runs=slq_runs, n_steps=slq_steps, seed=seed, deflation=deflate)
    # the trace first: its deflation holds the density run's basis, which is freed before any other Lanczos run
    trace = exact_trace_from_density(density) if trace_blocks is None else None
    if trace is None and trace_method == "hutchinson":
        trace = hutchinson_trace(op, n_probes=trace_probes, tol=trace_tol, min_probes=trace_min_probes,
                                 batch_size=trace_batch_size, blocks=trace_blocks, deflate=density.deflation,
                                 seed=seed if density.deflation is None else seed + 1)
    elif trace is None:
        trace = hutchpp_trace(op, n_hvp=trace_probes, batch_size=trace_batch_size, seed=seed)
    density = replace(density, deflation=None)  # the last reference to the run's basis
    if method == "lanczos":
        eigen = top_eigen_from_density(density, k, tol=tol)
        if eigen is None:
            eigen = lanczos_top_eigen(op, k=k, tol=tol, max_iter=max(max_iter, 2 * k), seed=seed)
    else:
        eigen = power_iteration(op, k=k, tol=tol, max_iter=max_iter, seed=seed)
    return CurvatureSummary(eigen=eigen, trace=trace, density=density)
