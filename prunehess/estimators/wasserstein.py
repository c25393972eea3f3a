"""Wasserstein-1 distance between two discrete spectral measures.

For measures on the real line, ``W₁(μ, ν) = ∫ |F_μ(x) − F_ν(x)| dx`` with ``F`` the cumulative distribution
functions; for discrete measures the integrand is piecewise constant between the merged support points, so the
integral is exact. Used to compare a layer's spectral density with the whole network's (as LayerHessians does).
"""
from __future__ import annotations

from typing import Union

import numpy as np
import torch

__all__ = ["wasserstein_distance"]

ArrayLike = Union[np.ndarray, torch.Tensor, list]


def _measure(nodes: ArrayLike, weights: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(torch.as_tensor(nodes, dtype=torch.float64).cpu(), dtype=np.float64)
    w = np.asarray(torch.as_tensor(weights, dtype=torch.float64).cpu(), dtype=np.float64)
    if x.shape != w.shape:
        raise ValueError(f"nodes and weights differ in shape: {x.shape} vs {w.shape}")
    x, w = x.reshape(-1), w.reshape(-1)
    if x.size == 0 or w.sum() <= 0 or (w < 0).any():
        raise ValueError("a measure needs at least one node and non-negative weights with a positive sum")
    return x, w / w.sum()


def wasserstein_distance(nodes_a: ArrayLike, weights_a: ArrayLike, nodes_b: ArrayLike, weights_b: ArrayLike) -> float:
    """``W₁`` between ``Σ weights_a δ(nodes_a)`` and ``Σ weights_b δ(nodes_b)`` (weights normalised; several
    runs, given as 2-D arrays, are pooled).

    Example:
        >>> from prunehess.estimators import wasserstein_distance
        >>> wasserstein_distance([0.0], [1.0], [3.0], [1.0])
        3.0
    """
    xa, wa = _measure(nodes_a, weights_a)
    xb, wb = _measure(nodes_b, weights_b)
    support = np.union1d(xa, xb)
    gap = np.abs(_cdf(xa, wa, support) - _cdf(xb, wb, support))
    return float(np.sum(gap[:-1] * np.diff(support)))


def _cdf(x: np.ndarray, w: np.ndarray, support: np.ndarray) -> np.ndarray:
    """``F(s) = Σ_{x_i ≤ s} w_i`` at each support point."""
    order = np.argsort(x)
    cum = np.cumsum(w[order])
    pos = np.searchsorted(x[order], support, side="right")
    return np.where(pos > 0, cum[np.maximum(pos - 1, 0)], 0.0)
