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
left out). Per-sample Jacobians come from ``torch.func`` (``vmap`` of ``jacrev``) in small chunks: this costs
about ``C`` (number of classes) gradients per sample, no Hessian-vector product, and is exact up to rounding.
:func:`check_exact_trace` compares it with the dense Hessian of tiny networks (``prunehess.reference``).
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, vmap


def exact_trace(
    model: nn.Module,
    batches: Sequence[tuple[Tensor, Tensor]],
    *,
    names: Optional[Sequence[str]] = None,
    masks: Optional[Mapping[str, Tensor]] = None,
    chunk: int = 20,
) -> tuple[float, dict[str, float]]:
    """``(tr H, {name: tr H_name})`` over the parameters ``names`` (default all), surviving coordinates only."""
    named = {n: p.detach() for n, p in model.named_parameters()}
    names = list(names or named)
    fixed = {n: p for n, p in named.items() if n not in names}
    fixed.update(dict(model.named_buffers()))
    selected = {n: named[n] for n in names}
    n_total = sum(int(y.shape[0]) for _, y in batches)
    masks = masks or {}

    def logits(p: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(model, {**fixed, **p}, (x.unsqueeze(0),)).squeeze(0)

    jacobians = vmap(jacrev(logits), in_dims=(None, 0))
    blocks = {n: torch.zeros((), dtype=torch.float64) for n in names}
    training = model.training
    model.eval()
    try:
        for x_all, _ in batches:
            for start in range(0, x_all.shape[0], chunk):
                x = x_all[start : start + chunk]
                with torch.no_grad():
                    p = torch.softmax(model(x).double(), dim=1)  # (B, C)
                J = jacobians(selected, x)
                for n in names:
                    Jn = J[n].reshape(x.shape[0], p.shape[1], -1).double()  # (B, C, P)
                    if n in masks:
                        Jn = Jn * masks[n].reshape(1, 1, -1).to(Jn)
                    first = torch.einsum("bc,bcp->", p, Jn * Jn)
                    mean = torch.einsum("bc,bcp->bp", p, Jn)
                    blocks[n] += ((first - (mean * mean).sum()) / n_total).cpu()
                del J
    finally:
        model.train(training)
    per_block = {n: float(v) for n, v in blocks.items()}
    return float(sum(per_block.values())), per_block


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
