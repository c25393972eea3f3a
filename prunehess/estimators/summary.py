"""Top eigenvalues, trace and spectral density of one operator, sharing the products they can share.

PyHessian computes the three separately: power iteration for the top eigenvalues, Hutchinson probes for the
trace, and an independent Lanczos run per density sample. The density's Lanczos run already holds the top
eigenvalues: after ``m`` steps its largest Ritz values ``θ`` come with residual bounds ``|β_m s_{m,j}|``
(Golub & Van Loan, §10.1), and where those meet the tolerance they are the same answer
:func:`~prunehess.estimators.lanczos_top_eigen` would give, at no extra product. When the operator has no more
dimensions than the run has steps (a small layer: a bias, BatchNorm's scales), the run spans the whole space:
its nodes are the exact eigenvalues, so the top-k are exact and the trace is their sum, again without a product.

:func:`curvature_summary` computes the density first, then only what it did not already give: the steps are
:func:`trace_after_density` and :func:`top_eigen_after_density`, which ``extract``'s analyses call one by one.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping, Optional, Union

import torch
from torch import Tensor

from prunehess.estimators.hutchinson import TraceOptions, hutchinson_trace, hutchpp_trace
from prunehess.estimators.lanczos import (BottomEigenOptions, EigenOptions, converged_pairs, lanczos_bottom_eigen,
                                          lanczos_top_eigen)
from prunehess.estimators.power import power_iteration
from prunehess.estimators.results import Deflation, DensityResult, EigenResult, TraceResult
from prunehess.estimators.slq import DensityOptions, slq_density
from prunehess.operators.base import LinearOperator, as_operator

__all__ = ["CurvatureSummary", "curvature_summary", "top_eigen_from_density", "exact_trace_from_density",
           "bottom_eigen_from_density", "trace_after_density", "top_eigen_after_density",
           "bottom_eigen_after_density", "top_eigenpairs_from_basis", "wants_deflation"]


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
    return _extreme_from_density(density, k, tol=tol, run=run, smallest=False)


def bottom_eigen_from_density(density: DensityResult, k: int, *, tol: float, run: int = 0) -> Optional[EigenResult]:
    """The ``k`` smallest Ritz values of the density's run ``run``, smallest first, when each has residual bound
    ``≤ tol·max|θ|`` (``lanczos_bottom_eigen``'s criterion) or the run spans the space; ``None`` otherwise."""
    return _extreme_from_density(density, k, tol=tol, run=run, smallest=True)


def _extreme_from_density(density: DensityResult, k: int, *, tol: float, run: int, smallest: bool
                          ) -> Optional[EigenResult]:
    if density.residuals is None or density.lengths is None:
        return None
    length = int(density.lengths[run])
    exact = density.spans_space(run)
    if k > length or (length < density.nodes.shape[1] and not exact):
        return None
    nodes = density.nodes[run, :length]
    res = density.residuals[run, :length]
    order = torch.argsort(nodes, descending=not smallest)[:k]
    theta, res = nodes[order], res[order]
    scale = float(nodes.abs().max()) if smallest else None
    if not exact and not converged_pairs(theta, res, tol, scale=scale):
        return None
    return EigenResult(eigenvalues=theta, eigenvectors=None, residuals=torch.zeros_like(res) if exact else res,
                       n_hvp=0, n_iter=length, converged=True, method="lanczos")


def exact_trace_from_density(density: DensityResult, run: int = 0) -> Optional[TraceResult]:
    """The exact trace (the sum of all eigenvalues) when run ``run`` spans the space; ``None`` otherwise."""
    if not density.spans_space(run):
        return None
    nodes = density.nodes[run]
    return TraceResult(float(nodes.sum()), 0.0, 0, nodes.clone(), "exact")


def wants_deflation(trace: TraceOptions, blocks: Optional[Mapping[str, slice]] = None) -> bool:
    """Whether the trace will be deflated by the density run's Krylov space (so the density must keep it)."""
    return bool(trace.deflation) and trace.method == "hutchinson" and blocks is None


def trace_after_density(A: Union[LinearOperator, Tensor], density: DensityResult, options: TraceOptions, *,
                        seed: int, batch_size: int = 1, blocks: Optional[Mapping[str, slice]] = None) -> TraceResult:
    """The trace, given the density of ``A`` computed with ``seed``: exact when its first run spans the space
    (no products), else Hutchinson (deflated by ``density.deflation`` when it holds one, with probes from
    ``seed + 1``, independent of the run's start vector; per-block estimates with ``blocks``) or Hutch++."""
    op = as_operator(A)
    trace = exact_trace_from_density(density) if blocks is None else None
    if trace is not None:
        return trace
    if options.method == "hutchinson":
        return hutchinson_trace(op, n_probes=options.probes, tol=options.tol, min_probes=options.min_probes,
                                batch_size=batch_size, blocks=blocks, deflate=density.deflation,
                                seed=seed if density.deflation is None else seed + 1)
    return hutchpp_trace(op, n_hvp=options.probes, batch_size=batch_size, seed=seed)


def top_eigen_after_density(A: Union[LinearOperator, Tensor], density: DensityResult, options: EigenOptions, *,
                            seed: int) -> EigenResult:
    """The top ``options.k`` eigenvalues (at most the size of ``A``), given its density: Lanczos reads them from
    the density's first run when they meet ``options.tol`` (no products), else runs
    :func:`~prunehess.estimators.lanczos_top_eigen`; ``method="power"`` always runs power iteration (PyHessian's
    semantics)."""
    op = as_operator(A)
    k = min(options.k, op.size)
    if options.method == "power":
        return power_iteration(op, k=k, tol=options.tol, max_iter=options.max_iter, seed=seed)
    eigen = top_eigen_from_density(density, k, tol=options.tol)
    if eigen is None:
        eigen = lanczos_top_eigen(op, k=k, tol=options.tol, max_iter=max(options.max_iter, 2 * k), seed=seed)
    return eigen


def top_eigenpairs_from_basis(density: DensityResult, basis: Optional[Deflation], k: int, *, tol: float
                              ) -> Optional[EigenResult]:
    """The top ``k`` eigenvalues and unit eigenvectors from the density's first run, without products: its Ritz
    pairs (``basis``, from ``slq_density(deflation=True)``) when :func:`top_eigen_from_density` accepts its values
    (the same values, the same criterion); ``None`` otherwise (then ask Lanczos for eigenvectors, after dropping
    the basis: it may be large)."""
    if basis is None or basis.ritz_values is None or top_eigen_from_density(density, k, tol=tol) is None:
        return None
    theta, vectors, residuals = basis.ritz_pairs(k)
    return EigenResult(eigenvalues=theta, eigenvectors=vectors,
                       residuals=torch.zeros_like(residuals) if density.spans_space() else residuals, n_hvp=0,
                       n_iter=int(basis.basis.shape[0]), converged=True, method="lanczos")


def bottom_eigen_after_density(A: Union[LinearOperator, Tensor], density: DensityResult,
                               options: BottomEigenOptions, *, seed: int) -> EigenResult:
    """The ``options.k`` smallest eigenvalues (at most the size of ``A``), smallest first, given its density: read
    from the density's first run when they meet ``options.tol`` (relative to the spectrum's scale), else
    :func:`~prunehess.estimators.lanczos_bottom_eigen`."""
    op = as_operator(A)
    k = min(options.k, op.size)
    eigen = bottom_eigen_from_density(density, k, tol=options.tol)
    if eigen is None:
        eigen = lanczos_bottom_eigen(op, k=k, tol=options.tol, max_iter=max(options.max_iter, 2 * k), seed=seed)
    return eigen


def curvature_summary(
    A: Union[LinearOperator, Tensor],
    *,
    eigen: EigenOptions = EigenOptions(),
    trace: TraceOptions = TraceOptions(),
    density: DensityOptions = DensityOptions(),
    seed: int = 0,
    trace_batch_size: int = 1,
    trace_blocks: Optional[Mapping[str, slice]] = None,
) -> CurvatureSummary:
    """Top eigenvalues, trace and SLQ density of ``A`` (PyHessian's three analyses), sharing products.

    The density comes first (``density.runs`` × ``density.steps``, from ``seed``), then
    :func:`trace_after_density` (exact when the first run spans the space; Hutchinson deflated by the run's
    Krylov space, unless ``trace.deflation`` is off or ``trace_blocks`` asks for per-block traces from plain
    probes; or Hutch++), then :func:`top_eigen_after_density` (the density run's top Ritz values when they meet
    ``eigen.tol``). The run's basis is freed before any further Lanczos run. ``trace_batch_size`` probes go
    through one batched product.

    Example:
        >>> import torch
        >>> from prunehess.estimators import EigenOptions, DensityOptions, curvature_summary
        >>> A = torch.diag(torch.arange(1.0, 11.0, dtype=torch.float64))
        >>> s = curvature_summary(A, eigen=EigenOptions(k=2), density=DensityOptions(steps=20))
        >>> [round(x, 6) for x in s.eigen.eigenvalues.tolist()], s.trace.method, round(s.trace.estimate, 6), s.n_hvp
        ([10.0, 9.0], 'exact', 55.0, 10)
    """
    op = as_operator(A)
    found = slq_density(op, n_runs=density.runs, n_steps=density.steps, seed=seed,
                        deflation=wants_deflation(trace, trace_blocks))
    # the trace first: its deflation holds the density run's basis, which is freed before any other Lanczos run
    traced = trace_after_density(op, found, trace, seed=seed, batch_size=trace_batch_size, blocks=trace_blocks)
    found = replace(found, deflation=None)  # the last reference to the run's basis
    return CurvatureSummary(eigen=top_eigen_after_density(op, found, eigen, seed=seed), trace=traced, density=found)
