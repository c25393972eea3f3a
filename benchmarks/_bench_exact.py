"""The exact Hessian trace (and every parameter tensor's block trace) of a ReLU network in eval mode.

Write the loss of sample ``n`` as ``ℓ(z_n)`` with logits ``z_n = f(x_n; θ)``. Then
``H = (1/N) Σ_n [J_nᵀ Λ_n J_n + Σ_c r_{nc} ∇²_θ z_{nc}]`` with ``J_n = ∂z_n/∂θ``, ``Λ_n = diag(p_n) − p_n p_nᵀ``
(softmax cross-entropy) and ``r_n = p_n − onehot(y_n)`` — the Gauss–Newton part plus a residual part.

In LeNet-300-100 and in ResNet-20 in eval mode (ReLU, Linear/Conv, BatchNorm with fixed statistics, sums,
average pooling) every parameter tensor enters the logits *linearly* once the others are fixed (the input of a
layer does not depend on its own weights; ReLU is piecewise linear, so its second derivative is zero almost
everywhere). The residual part therefore has zero diagonal blocks, and the Hessian's diagonal equals the
Gauss–Newton diagonal:

    tr(H_B) = (1/N) Σ_n Σ_{i∈B} [J_nᵀ Λ_n J_n]_ii = (1/N) Σ_n ( Σ_c p_nc ‖J_nc,B‖² − ‖Σ_c p_nc J_nc,B‖² )

for every block ``B`` of coordinates inside one tensor or a union of tensors (masked coordinates are simply
left out): the diagonal is computed once and every trace is a sum of it. Per-sample Jacobians come from ``torch.func`` (``vmap`` of ``jacrev``) in small chunks: this costs
about ``C`` (number of classes) gradients per sample, no Hessian-vector product, and is exact up to rounding.
:func:`check_exact_trace` compares it with the dense Hessian of tiny networks (``prunehess.reference``).
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, vmap


def exact_diagonal(
    model: nn.Module, batches: Sequence[tuple[Tensor, Tensor]], *, chunk: int = 25
) -> dict[str, Tensor]:
    """The Hessian's diagonal, ``{name: tensor shaped like the parameter}`` (float64, on the CPU).

    Uses ``Λ = Bᵀ B`` with ``B = diag(√p)(I − 1 pᵀ)``, so each sample adds ``Σ_c p_c (J_c − Σ_c' p_c' J_c')²``
    coordinate-wise: a sum of squares, free of cancellation.
    """
    named = {n: p.detach() for n, p in model.named_parameters()}
    buffers = dict(model.named_buffers())
    n_total = sum(int(y.shape[0]) for _, y in batches)

    def logits(p: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(model, {**buffers, **p}, (x.unsqueeze(0),)).squeeze(0)

    jacobians = vmap(jacrev(logits), in_dims=(None, 0))
    diag = {n: torch.zeros(p.shape, dtype=torch.float64, device=p.device) for n, p in named.items()}
    training = model.training
    model.eval()
    try:
        for x_all, _ in batches:
            for start in range(0, x_all.shape[0], chunk):
                x = x_all[start : start + chunk]
                with torch.no_grad():
                    p = torch.softmax(model(x).double(), dim=1)  # (B, C)
                J = jacobians(named, x)  # name -> (B, C, *shape)
                for n, Jn in J.items():
                    Jn = Jn.reshape(x.shape[0], p.shape[1], -1)
                    centred = Jn - torch.einsum("bc,bcp->bp", p.to(Jn), Jn).unsqueeze(1)
                    d = torch.einsum("bc,bcp->p", p.to(Jn), centred * centred)
                    diag[n] += d.double().reshape(diag[n].shape) / n_total
                del J
    finally:
        model.train(training)
    return {n: d.cpu() for n, d in diag.items()}


def traces(diag: Mapping[str, Tensor], masks: Optional[Mapping[str, Tensor]] = None) -> tuple[float, dict[str, float]]:
    """``(tr H, {name: tr H_name})`` from the diagonal, over surviving coordinates when ``masks`` are given."""
    masks = masks or {}
    blocks = {n: float((d * masks[n].to(d.device)).sum()) if n in masks else float(d.sum()) for n, d in diag.items()}
    return float(sum(blocks.values())), blocks


def exact_trace(model: nn.Module, batches: Sequence[tuple[Tensor, Tensor]], *,
                masks: Optional[Mapping[str, Tensor]] = None) -> tuple[float, dict[str, float]]:
    """``(tr H, {name: tr H_name})`` over all parameters, surviving coordinates only when ``masks`` are given."""
    return traces(exact_diagonal(model, batches), masks)


def check_exact_trace() -> list[tuple[str, float, float]]:
    """``[(case, exact_trace, dense-Hessian trace)]`` on a tiny MLP, a tiny BN+residual CNN and a masked MLP."""
    from prunehess.reference import dense_hessian

    torch.manual_seed(0)
    out = []

    class TinyRes(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 3, 3, padding=1, bias=False)
            self.bn = nn.BatchNorm2d(3)
            self.conv2 = nn.Conv2d(3, 3, 3, padding=1, bias=False)
            self.fc = nn.Linear(3, 4)

        def forward(self, x):
            h = torch.relu(self.bn(self.conv(x)))
            h = torch.relu(h + self.conv2(h))
            return self.fc(h.mean(dim=(2, 3)))

    mlp = nn.Sequential(nn.Flatten(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3)).double()
    data_mlp = [(torch.randn(7, 6, dtype=torch.float64), torch.randint(0, 3, (7,))),
                (torch.randn(3, 6, dtype=torch.float64), torch.randint(0, 3, (3,)))]
    res = TinyRes().double()
    res.train()
    with torch.no_grad():  # give BatchNorm non-trivial running statistics
        for _ in range(3):
            res(torch.randn(8, 2, 4, 4, dtype=torch.float64))
    res.eval()
    with torch.no_grad():
        res.bn.weight.uniform_(0.5, 1.5)
        res.bn.bias.uniform_(-0.2, 0.2)
    data_res = [(torch.randn(6, 2, 4, 4, dtype=torch.float64), torch.randint(0, 4, (6,)))]
    for case, model, data, masks in [
        ("mlp", mlp, data_mlp, None),
        ("bn-residual-cnn", res, data_res, None),
        ("masked-mlp", mlp, data_mlp, {"1.weight": torch.rand(5, 6) > 0.5}),
    ]:
        dense = dense_hessian(model, data, masks=masks if masks is not None else None)
        out.append((case, exact_trace(model, data, masks=masks)[0], float(torch.trace(dense))))
    return out
