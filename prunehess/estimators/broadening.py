"""PyHessian's Gaussian broadening of a discrete spectral density (SLQ nodes and weights) onto a grid.

The SLQ quadrature is a sum of point masses ``Σ_j w_j δ(λ − θ_j)``; to draw it as a curve, PyHessian replaces
each mass by a Gaussian of variance ``σ²`` (Lin, Saad & Yang, SIAM Review 2016, §3: "broadening"), evaluates the
sum on a uniform grid and normalises it so that its Riemann sum is 1 (Ghorbani, Krishnan & Xiao, ICML 2019).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

__all__ = ["gaussian_density"]


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

    Example:
        >>> import torch
        >>> grid, density = gaussian_density(torch.tensor([0.0, 1.0]), torch.tensor([0.5, 0.5]), num_points=201)
        >>> round(float(density.sum() * (grid[1] - grid[0])), 6)  # normalised: the Riemann sum is 1
        1.0
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
