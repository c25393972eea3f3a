"""Saliencies of the surviving weights, and the quadratic model of the loss change of a pruning step.

For a loss ``L`` at weights ``w`` with gradient ``g`` and Hessian (or a curvature model of it) ``H``, removing the
weights of a set ``S`` is the step ``δ = −w`` on ``S`` (zero elsewhere), and the second-order Taylor model of the
change is

    ΔL ≈ gᵀδ + ½ δᵀ H δ.

- :func:`magnitude_saliency`: ``|w_k|``, the criterion of iterative magnitude pruning.
- :func:`obd_saliency`: Optimal Brain Damage (LeCun, Denker & Solla, *NIPS 2*, 1990): at a minimum (``g ≈ 0``) and
  neglecting the off-diagonal terms, removing weight ``k`` alone costs ``½ H_kk w_k²``. The diagonal comes from
  :func:`~prunehess.estimators.diagonal.hutchinson_diagonal` or
  :func:`~prunehess.estimators.diagonal.exact_diagonal` (``result.to_tensors(H.space)``).
- :func:`quadratic_loss_change`: the model above for removing a whole set at once, off-diagonal terms and gradient
  included, at the cost of one product ``H δ``; exact when the loss is quadratic in the weights (a linear model
  with squared error).

Saliencies are dicts name → tensor of the parameter's shape; pruned coordinates (``False`` in ``masks``, or ``NaN``
in the diagonal) are ``NaN``, so they are neither ranked nor summed by mistake (``torch.nan_to_num`` or the masks
drop them).

Example:
    >>> import torch
    >>> w = {"fc.weight": torch.tensor([[1.0, -2.0], [0.5, 3.0]])}
    >>> d = {"fc.weight": torch.tensor([[4.0, 1.0], [2.0, 0.0]])}
    >>> keep = {"fc.weight": torch.tensor([[True, True], [False, True]])}
    >>> obd_saliency(w, d, keep)["fc.weight"].tolist()  # ½ H_kk w_k²
    [[2.0, 2.0], [nan, 0.0]]
    >>> magnitude_saliency(w, keep)["fc.weight"].tolist()
    [[1.0, 2.0], [nan, 3.0]]
    >>> H = torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    >>> change = quadratic_loss_change(H, torch.tensor([0.5, 0.0]), torch.tensor([1.0, 1.0]), torch.tensor([True, True]))
    >>> change.first_order, change.second_order, change.predicted  # −g·w + ½ wᵀHw
    (-0.5, 3.0, 2.5)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Optional, Union

import torch
from torch import Tensor

from prunehess.operators.base import LinearOperator, as_operator

__all__ = ["magnitude_saliency", "obd_saliency", "LossChange", "quadratic_loss_change"]


def _mark_pruned(values: Tensor, mask: Optional[Tensor]) -> Tensor:
    if mask is None:
        return values
    return values.masked_fill(~mask.bool().to(values.device), math.nan)


def magnitude_saliency(weights: Mapping[str, Tensor], masks: Optional[Mapping[str, Tensor]] = None) -> dict[str, Tensor]:
    """``|w|`` per weight tensor (``NaN`` where ``masks`` says pruned)."""
    masks = masks or {}
    return {name: _mark_pruned(w.detach().abs(), masks.get(name)) for name, w in weights.items()}


def obd_saliency(weights: Mapping[str, Tensor], diagonal: Mapping[str, Tensor],
                 masks: Optional[Mapping[str, Tensor]] = None) -> dict[str, Tensor]:
    """OBD's ``½ H_kk w_k²`` for each weight tensor named in ``diagonal`` (the diagonal in the parameter's shape;
    ``NaN`` where it is ``NaN`` or ``masks`` says pruned)."""
    masks = masks or {}
    out = {}
    for name, d in diagonal.items():
        w = weights[name].detach()
        if tuple(d.shape) != tuple(w.shape):
            raise ValueError(f"{name}: diagonal of shape {tuple(d.shape)} for a weight of shape {tuple(w.shape)}")
        out[name] = _mark_pruned(0.5 * d.to(w.device, w.dtype) * w.square(), masks.get(name))
    return out


@dataclass(frozen=True)
class LossChange:
    """The quadratic model ``gᵀδ + ½ δᵀHδ`` of removing a set of weights: its two terms and the products used."""

    first_order: float  # gᵀδ
    second_order: float  # ½ δᵀ H δ
    removed: int  # weights removed
    n_hvp: int

    @property
    def predicted(self) -> float:
        """The predicted change of the loss."""
        return self.first_order + self.second_order


def quadratic_loss_change(
    A: Union[LinearOperator, Tensor],
    gradient: Tensor,
    weights: Tensor,
    removed: Tensor,
) -> LossChange:
    """``gᵀδ + ½ δᵀ A δ`` with ``δ = −w`` on the ``removed`` coordinates (zero elsewhere), from one product.

    All vectors are flat over the operator's coordinates: ``gradient`` (e.g.
    :func:`~prunehess.operators.curvature.loss_gradient`), ``weights`` (``A.space.to_flat(dict(
    model.named_parameters()))``) and ``removed`` (boolean).
    """
    op = as_operator(A)
    for label, vector in (("gradient", gradient), ("weights", weights), ("removed", removed)):
        if tuple(vector.shape) != (op.size,):
            raise ValueError(f"{label} must have shape ({op.size},), got {tuple(vector.shape)}")
    removed = removed.to(device=op.device, dtype=torch.bool)
    delta = torch.where(removed, -weights.to(device=op.device, dtype=op.dtype), torch.zeros((), dtype=op.dtype,
                                                                                             device=op.device))
    first = float(torch.dot(gradient.to(device=op.device, dtype=torch.float64), delta.double()))
    second = 0.5 * float(torch.dot(delta.double(), op.matvec(delta).double()))
    return LossChange(first, second, int(removed.sum()), 1)
