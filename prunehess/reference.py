"""Exact references for tiny models: the dense Hessian by ``torch.func.hessian`` and its spectrum.

Used by the tests, the docs, and anyone who wants to check an estimate on a model small enough to hold its
Hessian (a few thousand parameters). The dense Hessian is taken over the same flat coordinates as
:class:`~prunehess.operators.HessianOperator` (selected parameters, surviving coordinates only).
"""
from __future__ import annotations

from typing import Callable, Literal, Mapping, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from prunehess.operators.hessian import HessianOperator
from prunehess.operators.hvp import eval_mode

__all__ = ["dense_hessian", "exact_spectrum"]


def dense_hessian(
    model: nn.Module,
    data: Sequence[tuple[Tensor, Tensor]],
    loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
    *,
    params=None,
    masks: Union[Literal["auto"], None, Mapping[str, Tensor]] = "auto",
) -> Tensor:
    """The Hessian of the mean loss over ``data``, as an ``n × n`` matrix over the same coordinates (selected
    parameters, surviving weights) as ``HessianOperator(model, data, loss_fn, params=params, masks=masks)``."""
    op = HessianOperator(model, data, loss_fn, params=params, masks=masks)
    space = op.space
    named = dict(model.named_parameters())
    base = {n: named[n].detach() for n in space.names}
    keep_fixed = {n: (base[n] * ~space.masks[n]) if n in space.masks else torch.zeros_like(base[n]) for n in space.names}
    fixed = {n: p.detach() for n, p in named.items() if n not in base}
    fixed.update(dict(model.named_buffers()))
    n_total = sum(int(y.shape[0]) for _, y in data)

    def loss_of(flat: Tensor) -> Tensor:
        chosen = space.from_flat(flat)
        p = {n: keep_fixed[n] + chosen[n] for n in space.names}
        return sum(loss_fn(functional_call(model, {**fixed, **p}, (x,)), y) * (y.shape[0] / n_total) for x, y in data)

    flat0 = space.to_flat(base)
    with eval_mode(model):
        return torch.func.hessian(loss_of)(flat0)


def exact_spectrum(matrix: Tensor) -> tuple[Tensor, Tensor]:
    """Eigenvalues (descending) and eigenvectors (columns) of a symmetric matrix, in float64."""
    values, vectors = torch.linalg.eigh(matrix.double())
    order = torch.argsort(values, descending=True)
    return values[order], vectors[:, order]
