"""Spectral density by stochastic Lanczos quadrature (SLQ), and its Gaussian broadening.

For a unit Rademacher vector ``v``, ``m`` Lanczos steps give a tridiagonal ``T`` with eigenpairs
``(θ_j, s_j)``; the Gauss quadrature ``Σ_j s_{1j}² δ(λ − θ_j)`` matches the first ``2m − 1`` moments of the
measure ``Σ_i (vᵀu_i)² δ(λ − λ_i)``, whose expectation is the spectral density ``(1/n) Σ_i δ(λ − λ_i)``
(Lin, Saad & Yang, SIAM Review 2016; Ghorbani, Krishnan & Xiao, ICML 2019). Averaging ``n_runs``
independent runs reduces the variance. The runs advance in lockstep through batched products.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Union

import torch
from torch import Tensor

from prunehess.estimators.lanczos import lanczos_tridiagonal, tridiagonal_matrix
from prunehess.estimators.results import Deflation, DensityResult
from prunehess.estimators.sampling import make_generator, rademacher
from prunehess.operators.base import LinearOperator, as_operator
from prunehess.options import check, option

__all__ = ["DensityOptions", "slq_density"]


@dataclass(frozen=True)
class DensityOptions:
    """The SLQ density's size: ``runs`` start vectors of ``steps`` Lanczos steps each (PyHessian's ``n_v``,
    ``iter``)."""

    steps: int = option(100, key="slq_steps", minimum=1, help="Lanczos steps per SLQ run (nodes per density file).")
    runs: int = option(1, key="slq_runs", minimum=1, help="SLQ runs (columns per density file).")

    def __post_init__(self) -> None:
        check(self)


def slq_density(
    A: Union[LinearOperator, Tensor],
    *,
    n_runs: int = 1,
    n_steps: int = 100,
    seed: int = 0,
    batched: bool = True,
    deflation: bool = False,
) -> DensityResult:
    """SLQ with ``n_runs`` Rademacher start vectors and ``n_steps`` Lanczos steps each (PyHessian's ``n_v``, ``iter``).

    When the operator has no more than ``n_steps`` dimensions, every run takes ``n`` steps: where it finds an
    invariant subspace (an eigenvalue of multiplicity > 1) it goes on from a random vector orthogonal to its
    basis, so its nodes are the exact spectrum, the new ones with weight 0 (the start vector's quadrature is
    complete at the invariant subspace); ``result.spans_space()`` says so. On a larger operator a run that finds
    an invariant subspace ends there with an exact quadrature; its remaining slots hold copies of its last node
    with weight 0, so every run has ``min(n_steps, n)`` nodes. ``batched=False`` runs one start vector at a time.

    ``deflation=True`` also returns, in ``result.deflation``, the first run's Krylov basis and ``tr(T) = Σ αⱼ``
    (a :class:`~prunehess.estimators.results.Deflation` for :func:`~prunehess.estimators.hutchinson_trace`, whose
    probes must then come from another seed), with the run's Ritz pairs (``Deflation.ritz_pairs``: eigenvectors
    without products): the basis storage stays alive as long as the result holds it. When the run spans the space
    its trace is exact, and its Ritz pairs are the operator's eigenpairs.

    Example:
        >>> import torch
        >>> from prunehess.estimators import slq_density
        >>> d = slq_density(torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)), n_steps=3)
        >>> sorted(round(x, 6) for x in d.nodes[0].tolist())
        [1.0, 2.0, 3.0]
        >>> round(d.moment(1), 6)  # tr(A) / n
        2.0
    """
    op = as_operator(A)
    if n_runs < 1 or n_steps < 1:
        raise ValueError(f"n_runs and n_steps must be positive, got {n_runs} and {n_steps}")
    generator = make_generator(seed)
    V = rademacher((op.size, n_runs), generator=generator, dtype=op.dtype, device=op.device)
    m = min(n_steps, op.size)
    # a small operator: a run that finds an invariant subspace goes on in its complement, so that it spans the
    # space (its nodes become the exact spectrum; the new nodes get weight 0, so the quadrature is unchanged)
    restart = generator if op.size <= n_steps else None
    keep = bool(deflation)
    if batched:
        tri = [lanczos_tridiagonal(op, V, m, keep_basis=keep, restart_generator=restart)]
    else:  # run 0 last, so that the basis it keeps is the only one alive
        done = {r: lanczos_tridiagonal(op, V[:, r], m, keep_basis=keep and r == 0, restart_generator=restart)
                for r in [*range(1, n_runs), 0]}
        tri = [done[r] for r in range(n_runs)]
    alphas = [a for t in tri for a in t.alphas]
    betas = [b for t in tri for b in t.betas]
    nodes = torch.zeros(n_runs, m, dtype=torch.float64)
    weights = torch.zeros(n_runs, m, dtype=torch.float64)
    residuals = torch.zeros(n_runs, m, dtype=torch.float64)
    lengths = torch.zeros(n_runs, dtype=torch.long)
    first_pairs = None
    for r, (alpha, beta) in enumerate(zip(alphas, betas)):
        theta, S = torch.linalg.eigh(tridiagonal_matrix(alpha, beta))
        if r == 0:
            first_pairs = (theta, S, float(beta[-1]))
        w = S[0] ** 2
        length = theta.shape[0]
        nodes[r, :length], weights[r, :length] = theta, w / w.sum()
        nodes[r, length:] = theta[-1]
        lengths[r] = length
        if length < op.size:  # a run that spans the space has exact nodes
            residuals[r, :length] = (beta[-1] * S[-1]).abs()
    first = None
    if keep:
        theta, S, coupling = first_pairs
        first = Deflation(basis=tri[0].bases[0], trace=float(alphas[0].double().sum()), seed=seed,
                          ritz_values=theta, ritz_coefficients=S, coupling=coupling)
    return DensityResult(nodes=nodes, weights=weights, n_hvp=sum(t.n_hvp for t in tri), dim=op.size,
                         residuals=residuals, lengths=lengths, deflation=first)
