"""Comparing two rankings of the surviving weights: which ones a step removed, which ones OBD would have removed.

For one layer's surviving weights (flat, in the same order) with a saliency ``s`` (OBD's ``½ H_kk w_k²``) and the
set ``R`` the pruning step actually removed (``k = |R|`` weights):

- :func:`lowest_saliency`: the set OBD would have removed at the same count, the ``k`` lowest saliencies (ties
  broken by position, so the choice is reproducible).
- :func:`expected_hits`: ``|R ∩ R_OBD|``, averaged over the ways ties at OBD's threshold can be broken. With ``t``
  the ``k``-th smallest saliency, OBD removes every weight below ``t`` (``a`` of them) and ``k − a`` of the ``m``
  weights at ``t``; uniformly over those choices each tied weight is removed with probability ``(k − a) / m``, so
  the expected count is ``|R ∩ {s < t}| + (k − a)/m · |R ∩ {s = t}|``. Without ties it is ``|R ∩ R_OBD|``. Ties
  are common: a weight into a dead ReLU unit has ``H_kk = 0`` exactly.
- :func:`spearman`: Spearman's rank correlation, the Pearson correlation of the ranks, tied values given the mean
  of the ranks they span (``NaN`` for fewer than two values or a constant input).

A removal chosen at random would hit ``k²/n`` of ``R`` on average (``n`` the survivors): :func:`chance_hits`.

Example:
    >>> import numpy as np
    >>> average_ranks(np.array([10.0, 20.0, 20.0, 5.0])).tolist()
    [2.0, 3.5, 3.5, 1.0]
    >>> round(spearman(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 4.0, 9.0, 16.0])), 12)
    1.0
    >>> lowest_saliency(np.array([0.3, 0.1, 0.2, 0.1]), 2).tolist()
    [False, True, False, True]
    >>> float(expected_hits(np.array([True, False, False, False]), np.array([0.0, 0.5, 1.0, 2.0])))
    1.0
    >>> float(expected_hits(np.array([True, False, False, False]), np.array([0.0, 0.0, 0.0, 2.0])))  # 3 tied, 1 taken
    0.3333333333333333
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["average_ranks", "spearman", "lowest_saliency", "expected_hits", "chance_hits"]


def _flat(values, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=float).reshape(-1)
    if np.isnan(array).any():
        raise ValueError(f"{name}: NaN among the values to rank (pruned weights must be left out first)")
    return array


def average_ranks(values) -> np.ndarray:
    """Ranks ``1 … n`` of ``values`` (float), ties given the mean of the ranks they span."""
    values = _flat(values, "values")
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.r_[True, ordered[1:] != ordered[:-1]] if values.size else np.zeros(0, dtype=bool)
    first = np.flatnonzero(starts)
    last = np.r_[first[1:], values.size] - 1
    group = np.cumsum(starts) - 1
    ranks = np.empty(values.size, dtype=float)
    ranks[order] = ((first + last) / 2.0 + 1.0)[group]
    return ranks


def spearman(a, b) -> float:
    """Spearman's rank correlation of ``a`` and ``b`` (same length), ties averaged; ``NaN`` when undefined."""
    a, b = _flat(a, "a"), _flat(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"spearman: {a.size} values against {b.size}")
    if a.size < 2:
        return math.nan
    ra, rb = average_ranks(a), average_ranks(b)
    ra -= ra.mean()
    rb -= rb.mean()
    scale = math.sqrt(float(ra @ ra) * float(rb @ rb))
    return float(ra @ rb) / scale if scale > 0 else math.nan


def lowest_saliency(saliency, count: int) -> np.ndarray:
    """The boolean mask of the ``count`` lowest values of ``saliency`` (ties broken by position)."""
    saliency = _flat(saliency, "saliency")
    if not 0 <= count <= saliency.size:
        raise ValueError(f"cannot remove {count} of {saliency.size} weights")
    chosen = np.zeros(saliency.size, dtype=bool)
    chosen[np.argsort(saliency, kind="mergesort")[:count]] = True
    return chosen


def expected_hits(removed, saliency) -> float:
    """``|R ∩ R_OBD|`` for the removed set ``removed`` (boolean) and OBD's ``|R|`` lowest ``saliency``, averaged
    over the ways ties at OBD's threshold can be broken (module docstring)."""
    removed = np.asarray(removed, dtype=bool).reshape(-1)
    saliency = _flat(saliency, "saliency")
    if removed.shape != saliency.shape:
        raise ValueError(f"expected_hits: {removed.size} flags for {saliency.size} saliencies")
    k = int(removed.sum())
    if k == 0:
        return 0.0
    threshold = np.partition(saliency, k - 1)[k - 1]
    below, tied = saliency < threshold, saliency == threshold
    share = (k - int(below.sum())) / int(tied.sum())
    return float(np.sum(removed & below)) + share * float(np.sum(removed & tied))


def chance_hits(removed: int, surviving: int) -> float:
    """The expected ``|R ∩ R'|`` of two independent uniform choices of ``removed`` of ``surviving`` weights."""
    return removed * removed / surviving if surviving else 0.0
