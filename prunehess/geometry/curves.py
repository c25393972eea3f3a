"""Landscapes and interpolation paths of one model, evaluated in batched passes (:mod:`~prunehess.geometry.evaluate`).

- :func:`loss_landscape`: ``L(θ + t·d)`` along each direction for the steps ``t``, and optionally the surface
  ``L(θ + a·d₁ + b·d₂)`` over the grid ``a × b``, all in the same passes (and the loss at ``θ`` itself).
- :func:`interpolation`: the loss and error at ``θ(α) = (1−α)·θ_A + α·θ_B`` (every floating entry of the state,
  BatchNorm's running statistics included, is interpolated; integer buffers are ``θ_A``'s).
- :func:`barrier_height`: ``max_α f(α) − ((1−α)·f(0) + α·f(1))``, the largest gap between a path and the straight
  line between its ends (0 for a path that is convex along ``α``, since the ends are on the grid).

Example:
    >>> import numpy as np
    >>> alpha = np.linspace(0.0, 1.0, 5)
    >>> barrier_height(alpha, 16 * alpha**2 * (1 - alpha) ** 2)
    1.0
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from prunehess.geometry.evaluate import CLASSIFICATION, Objective, PointEvaluator, PointValues, model_state

__all__ = ["steps", "Landscape", "loss_landscape", "Interpolation", "interpolation", "barrier_height"]

Batches = Sequence[tuple[Tensor, Tensor]]


def steps(radius: float, points: int) -> np.ndarray:
    """``points`` evenly spaced values from ``-radius`` to ``radius`` (float64; 0 among them when ``points`` is
    odd)."""
    if points < 2 or not radius > 0:
        raise ValueError(f"steps need points >= 2 and radius > 0, got {points} and {radius}")
    return np.linspace(-float(radius), float(radius), int(points))


@dataclass(frozen=True)
class Landscape:
    """``curves``: direction → losses at ``t``; ``surface``: ``(len(a), len(b))`` losses or ``None``; ``center``:
    the loss at ``θ``; ``mode``/``chunk``: how the points were evaluated (``vmap`` or ``loop``, points per pass)."""

    t: np.ndarray
    curves: dict[str, np.ndarray]
    surface: Optional[np.ndarray]
    center: float
    mode: str
    chunk: int
    points: int


def loss_landscape(model: nn.Module, directions: Mapping[str, Mapping[str, Tensor]], t: Sequence[float],
              batches: Batches, *, curves: Optional[Sequence[str]] = None,
              surface: Optional[tuple[str, str, Sequence[float], Sequence[float]]] = None,
              objective: Objective = CLASSIFICATION, batched: bool = True, memory_bytes: Optional[int] = None,
              note: Callable[[str], None] = lambda text: None) -> Landscape:
    """The loss along ``curves`` (names of ``directions``; all by default) at the steps ``t``, and with
    ``surface=(name_a, name_b, a, b)`` on the grid ``θ + a[i]·d_a + b[j]·d_b``, from the model's current state.

    Every point (and ``θ`` itself) is one row of one :class:`~prunehess.geometry.evaluate.PointEvaluator`, so the
    curves and the surface share passes.
    """
    names = list(directions)
    curves = list(names if curves is None else curves)
    t = np.asarray(t, dtype=np.float64).reshape(-1)
    m = len(names)
    rows = [np.zeros((1, m))]
    for name in curves:
        block = np.zeros((t.size, m))
        block[:, names.index(name)] = t
        rows.append(block)
    if surface is not None:
        first, second, a, b = surface
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        block = np.zeros((a.size * b.size, m))
        block[:, names.index(first)] = np.repeat(a, b.size)
        block[:, names.index(second)] = np.tile(b, a.size)
        rows.append(block)
    evaluator = PointEvaluator(model, [directions[n] for n in names], objective=objective, batched=batched,
                               memory_bytes=memory_bytes, note=note)
    coefficients = np.concatenate(rows)
    loss = evaluator(torch.from_numpy(coefficients), batches).loss.cpu().numpy()
    out = {name: loss[1 + j * t.size: 1 + (j + 1) * t.size] for j, name in enumerate(curves)}
    grid = loss[1 + len(curves) * t.size:].reshape(a.size, b.size) if surface is not None else None
    return Landscape(t=t, curves=out, surface=grid, center=float(loss[0]), mode=evaluator.mode,
                     chunk=int(evaluator.chunk or 0), points=len(coefficients))


@dataclass(frozen=True)
class Interpolation:
    """The loss and error along a path on each data set (``values[i]``: :class:`PointValues` of data set ``i``),
    and how the points were evaluated (``vmap`` or ``loop``)."""

    values: list[PointValues]
    mode: str


def interpolation(model: nn.Module, state_a: Mapping[str, Tensor], state_b: Mapping[str, Tensor],
                  alpha: Sequence[float], batches_list: Sequence[Batches], *,
                  objective: Objective = CLASSIFICATION, batched: bool = True, memory_bytes: Optional[int] = None,
                  note: Callable[[str], None] = lambda text: None) -> Interpolation:
    """The loss and error at ``(1−α)·θ_A + α·θ_B`` for each ``α``, on each data set of ``batches_list`` (e.g. the
    Hessian batch and the test split). ``state_a``/``state_b``: the model's parameters and buffers by name
    (:func:`~prunehess.geometry.evaluate.model_state` of the model loaded with each checkpoint)."""
    names = list(model_state(model))
    missing = [n for n in names if n not in state_a or n not in state_b]
    if missing:
        raise KeyError(f"interpolation: the states lack {missing[:3]}")
    floating = [n for n in names if state_a[n].is_floating_point()]
    base = {n: torch.zeros_like(state_a[n]) if n in floating else state_a[n] for n in names}
    ends = [{n: state_a[n] for n in floating}, {n: state_b[n].to(state_a[n]) for n in floating}]
    evaluator = PointEvaluator(model, ends, base=base, objective=objective, batched=batched,
                               memory_bytes=memory_bytes, note=note)
    alpha = torch.as_tensor(np.asarray(alpha, dtype=np.float64))
    coefficients = torch.stack([1.0 - alpha, alpha], dim=1)
    values = [evaluator(coefficients, batches) for batches in batches_list]
    return Interpolation(values, evaluator.mode)


def barrier_height(alpha: Sequence[float], values: Sequence[float]) -> float:
    """``max_i values[i] − ((1−α_i)·values[0] + α_i·values[-1])`` for ``α`` from 0 to 1: the largest gap between
    the path and the straight line between its ends (the chord). NaN values give NaN."""
    alpha = np.asarray(alpha, dtype=np.float64).reshape(-1)
    f = np.asarray(values, dtype=np.float64).reshape(-1)
    if alpha.shape != f.shape or alpha.size < 2:
        raise ValueError(f"barrier: {alpha.size} values of alpha but {f.size} values")
    chord = (1.0 - alpha) * f[0] + alpha * f[-1]
    return float(np.max(f - chord))
