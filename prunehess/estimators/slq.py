"""Spectral density by stochastic Lanczos quadrature (SLQ), and its Gaussian broadening.

For a unit Rademacher vector ``v``, ``m`` Lanczos steps give a tridiagonal ``T`` with eigenpairs
``(θ_j, s_j)``; the Gauss quadrature ``Σ_j s_{1j}² δ(λ − θ_j)`` matches the first ``2m − 1`` moments of the
measure ``Σ_i (vᵀu_i)² δ(λ − λ_i)``, whose expectation is the spectral density ``(1/n) Σ_i δ(λ − λ_i)``
(Lin, Saad & Yang, SIAM Review 2016; Ghorbani, Krishnan & Xiao, ICML 2019). Averaging ``n_runs``
independent runs reduces the variance. The runs advance in lockstep through batched products.
"""
from __future__ import annotations

import math
from typing import Optional, Union

import torch
from torch import Tensor

from prunehess.estimators.lanczos import lanczos_tridiagonal, tridiagonal_matrix
from prunehess.estimators.results import Deflation, DensityResult
from prunehess.estimators.sampling import make_generator, rademacher
from prunehess.operators.base import LinearOperator, as_operator

__all__ = ["slq_density", "gaussian_density"]


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
    probes must then come from another seed): the basis storage stays alive as long as the result holds it. Not
    returned when the run spans the space (its trace is then exact).

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
    for r, (alpha, beta) in enumerate(zip(alphas, betas)):
        theta, S = torch.linalg.eigh(tridiagonal_matrix(alpha, beta))
        w = S[0] ** 2
        length = theta.shape[0]
        nodes[r, :length], weights[r, :length] = theta, w / w.sum()
        nodes[r, length:] = theta[-1]
        lengths[r] = length
        if length < op.size:  # a run that spans the space has exact nodes
            residuals[r, :length] = (beta[-1] * S[-1]).abs()
    first = None
    if keep and int(lengths[0]) < op.size:
        first = Deflation(basis=tri[0].bases[0], trace=float(alphas[0].double().sum()), seed=seed)
    return DensityResult(nodes=nodes, weights=weights, n_hvp=sum(t.n_hvp for t in tri), dim=op.size,
                         residuals=residuals, lengths=lengths, deflation=first)


def gaussian_density(
    nodes: Tensor,
    weights: Tensor,
    *,
    num_points: int = 10_000,
    sigma_squared: Optional[float] = None,
    grid: Optional[Tensor] = None,
) -> tuple[Tensor, Tensor]:
    """PyHessian's broadened density: ``Σ_j w_j N(x; θ_j, σ²)`` averaged over runs, normalised so that its
    Riemann sum on the uniform grid is 1.

    The grid spans ``[min θ − 0.01, max θ + 0.01]`` (extremes averaged over runs) with ``num_points`` points,
    and ``σ² = 1e-5 · max(1, λ_max − λ_min)`` unless given.

    Returns:
        ``(grid, density)`` as float64 tensors.
    """
    nodes = torch.as_tensor(nodes, dtype=torch.float64)
    weights = torch.as_tensor(weights, dtype=torch.float64)
    if nodes.dim() == 1:
        nodes, weights = nodes.unsqueeze(0), weights.unsqueeze(0)
    lam_max = float(nodes.max(dim=1).values.mean()) + 0.01
    lam_min = float(nodes.min(dim=1).values.mean()) - 0.01
    if grid is None:
        grid = torch.linspace(lam_min, lam_max, num_points, dtype=torch.float64)
    else:
        grid = torch.as_tensor(grid, dtype=torch.float64)
    if sigma_squared is None:
        sigma_squared = 1e-5 * max(1.0, lam_max - lam_min)
    density = torch.zeros_like(grid)
    for r in range(nodes.shape[0]):
        for start in range(0, nodes.shape[1], 64):
            th = nodes[r, start : start + 64].unsqueeze(1)
            w = weights[r, start : start + 64].unsqueeze(1)
            gauss = torch.exp(-((grid.unsqueeze(0) - th) ** 2) / (2 * sigma_squared)) / math.sqrt(2 * math.pi * sigma_squared)
            density += (w * gauss).sum(dim=0)
    density /= nodes.shape[0]
    if grid.numel() > 1:
        area = float(density.sum() * (grid[1] - grid[0]))  # PyHessian's normalisation (a Riemann sum)
        if area > 0:
            density = density / area
    return grid, density
