"""Exact references for tiny models: dense Hessian, Gauss–Newton and empirical Fisher matrices, and spectra.

Used by the tests, the docs, and anyone who wants to check an estimate on a model small enough to hold its
curvature (a few thousand parameters). Every dense matrix is taken over the same flat coordinates as
:class:`~prunehess.operators.HessianOperator` (selected parameters, surviving coordinates only), in eval mode, for the
mean loss ``Σ_b (n_b / N) loss_fn(f(x_b), y_b)`` over ``data``:

- :func:`dense_hessian`: ``torch.func.hessian`` of that loss;
- :func:`dense_ggn`: ``Σ_b (n_b / N) J_bᵀ H_ℓ,b J_b`` from the full Jacobian ``J_b`` of each mini-batch's outputs
  (``jacrev``) and the full Hessian ``H_ℓ,b`` of its loss in its outputs (reverse over reverse): any loss, no
  closed form, no per-sample split;
- :func:`dense_empirical_fisher`: ``(1/N) Σ_i g_i g_iᵀ`` from each sample's gradient, one sample at a time;
- :func:`dense_hessian_diagonal`: the dense Hessian's diagonal.

Example:
    >>> import torch
    >>> from prunehess.reference import dense_ggn, dense_hessian
    >>> model = torch.nn.Linear(2, 1).double()  # a linear model with squared error: G = H
    >>> data = [(torch.randn(5, 2, dtype=torch.float64), torch.randn(5, 1, dtype=torch.float64))]
    >>> mse = torch.nn.functional.mse_loss
    >>> bool(torch.allclose(dense_ggn(model, data, mse), dense_hessian(model, data, mse)))
    True
"""
from __future__ import annotations

from typing import Callable, Literal, Mapping, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, jacrev

from prunehess.operators.hessian import HessianOperator
from prunehess.operators.hvp import eval_mode
from prunehess.operators.params import ParameterSpace

__all__ = ["dense_hessian", "dense_ggn", "dense_empirical_fisher", "dense_hessian_diagonal", "exact_spectrum"]

Masks = Union[Literal["auto"], None, Mapping[str, Tensor]]
LossFn = Callable[[Tensor, Tensor], Tensor]


def _flat_model(model: nn.Module, data, params, masks: Masks) -> tuple[ParameterSpace, Tensor, Callable]:
    """``(space, θ₀, call)``: the operators' coordinates, their current values, and ``call(θ, x)``, the model's
    outputs on ``x`` with those coordinates set to ``θ`` (pruned ones held at their values)."""
    space = HessianOperator(model, data, params=params, masks=masks).space
    named = dict(model.named_parameters())
    base = {n: named[n].detach() for n in space.names}
    keep_fixed = {n: (base[n] * ~space.masks[n]) if n in space.masks else torch.zeros_like(base[n]) for n in space.names}
    fixed = {n: p.detach() for n, p in named.items() if n not in base}
    fixed.update(dict(model.named_buffers()))

    def call(flat: Tensor, x: Tensor) -> Tensor:
        chosen = space.from_flat(flat)
        p = {n: keep_fixed[n] + chosen[n] for n in space.names}
        return functional_call(model, {**fixed, **p}, (x,))

    return space, space.to_flat(base), call


def dense_hessian(
    model: nn.Module,
    data: Sequence[tuple[Tensor, Tensor]],
    loss_fn: LossFn = F.cross_entropy,
    *,
    params=None,
    masks: Masks = "auto",
) -> Tensor:
    """The Hessian of the mean loss over ``data``, as an ``n × n`` matrix over the same coordinates (selected
    parameters, surviving weights) as ``HessianOperator(model, data, loss_fn, params=params, masks=masks)``."""
    _, flat0, call = _flat_model(model, data, params, masks)
    n_total = sum(int(y.shape[0]) for _, y in data)

    def loss_of(flat: Tensor) -> Tensor:
        return sum(loss_fn(call(flat, x), y) * (y.shape[0] / n_total) for x, y in data)

    with eval_mode(model):
        return torch.func.hessian(loss_of)(flat0)


def dense_ggn(
    model: nn.Module,
    data: Sequence[tuple[Tensor, Tensor]],
    loss_fn: LossFn = F.cross_entropy,
    *,
    params=None,
    masks: Masks = "auto",
) -> Tensor:
    """The generalised Gauss–Newton matrix ``Σ_b (n_b / N) J_bᵀ H_ℓ,b J_b`` over the coordinates of
    ``GGNOperator(model, data, loss_fn, params=params, masks=masks)``, from dense Jacobians and output Hessians."""
    _, flat0, call = _flat_model(model, data, params, masks)
    n_total = sum(int(y.shape[0]) for _, y in data)
    total = torch.zeros(flat0.numel(), flat0.numel(), dtype=flat0.dtype, device=flat0.device)
    with eval_mode(model):
        for x, y in data:
            z = call(flat0, x).detach()
            J = jacrev(lambda flat: call(flat, x).reshape(-1))(flat0)  # (n_b·C, n)
            H_out = jacrev(jacrev(lambda out: loss_fn(out.reshape(z.shape), y)))(z.reshape(-1))  # (n_b·C, n_b·C)
            total += (y.shape[0] / n_total) * (J.T @ H_out @ J)
    return total


def dense_empirical_fisher(
    model: nn.Module,
    data: Sequence[tuple[Tensor, Tensor]],
    loss_fn: LossFn = F.cross_entropy,
    *,
    params=None,
    masks: Masks = "auto",
) -> Tensor:
    """The empirical Fisher ``(1/N) Σ_i g_i g_iᵀ`` over the coordinates of ``EmpiricalFisherOperator(model, data,
    loss_fn, params=params, masks=masks)``, ``g_i`` the gradient of ``loss_fn`` on sample ``i`` alone."""
    _, flat0, call = _flat_model(model, data, params, masks)
    rows = []
    with eval_mode(model):
        for x, y in data:
            for i in range(x.shape[0]):
                rows.append(grad(lambda flat: loss_fn(call(flat, x[i : i + 1]), y[i : i + 1]))(flat0))
    G = torch.stack(rows)
    return G.T @ G / G.shape[0]


def dense_hessian_diagonal(
    model: nn.Module,
    data: Sequence[tuple[Tensor, Tensor]],
    loss_fn: LossFn = F.cross_entropy,
    *,
    params=None,
    masks: Masks = "auto",
) -> Tensor:
    """The diagonal of :func:`dense_hessian` (flat, over the same coordinates)."""
    return torch.diagonal(dense_hessian(model, data, loss_fn, params=params, masks=masks)).clone()


def exact_spectrum(matrix: Tensor) -> tuple[Tensor, Tensor]:
    """Eigenvalues (descending) and eigenvectors (columns) of a symmetric matrix, in float64."""
    values, vectors = torch.linalg.eigh(matrix.double())
    order = torch.argsort(values, descending=True)
    return values[order], vectors[:, order]
