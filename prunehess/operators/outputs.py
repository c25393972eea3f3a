"""The loss's curvature on the network's outputs, ``H_ℓ = ∇²_z loss_fn(z, y)``, applied and factored.

The generalised Gauss–Newton matrix of ``L(θ) = Σ_b (n_b / N) loss_fn(f(x_b; θ), y_b)`` is
``G = Σ_b (n_b / N) J_bᵀ H_ℓ,b J_b`` with ``J_b = ∂f(x_b; θ)/∂θ`` and ``H_ℓ,b`` the Hessian of the mini-batch's
loss with respect to its whole output tensor (Schraudolph, *Neural Computation* 14(7), 2002; Martens, *JMLR* 21,
2020). Where ``loss_fn`` is the mean of per-sample losses ``ℓ(z_i, y_i)``, ``H_ℓ,b = (1/n_b) blockdiag(Λ_i)`` with
``Λ_i = ∇²_{z_i} ℓ(z_i, y_i)``, and ``G = (1/N) Σ_i J_iᵀ Λ_i J_i``.

- Cross-entropy (``F.cross_entropy``, or ``nn.CrossEntropyLoss`` with no class weights, mean reduction and no
  label smoothing) on ``(n, C)`` logits and class-index targets, none of them ignored: ``Λ_i = diag(p_i) − p_i
  p_iᵀ``, ``p_i = softmax(z_i)``, applied in closed form. Its factor ``Λ = MᵀM`` has rows ``√p_c (e_c − p)``
  (since ``Σ_c p_c = 1``), so ``diag(JᵀΛJ) = Σ_c p_c (J_c − Σ_c' p_c' J_c')²``: a sum of squares.
- Mean squared error (``F.mse_loss``, or ``nn.MSELoss`` with mean reduction) with targets of the outputs' shape:
  ``loss_fn = (1/(n_b C)) Σ (z − y)²`` over ``C`` entries per sample, so ``H_ℓ,b = 2/(n_b C) · I`` and
  ``Λ_i = (2/C) I`` (factor ``√(2/C) I``).
- Any other loss: ``H_ℓ,b U`` by reverse-over-reverse differentiation of the loss alone (``vjp`` of ``grad`` at
  ``z``: exact, no dense matrix, valid for losses that do not split by sample), and the per-sample ``Λ_i`` by
  reverse-over-reverse ``jacrev`` of the loss of one sample, factored by its eigendecomposition ``Λ = Q diag(λ) Qᵀ``
  (rows ``√|λ_r| q_rᵀ`` with signs ``sign λ_r``: a non-convex loss makes the GGN indefinite).

Example:
    >>> import torch, torch.nn.functional as F
    >>> z, y = torch.tensor([[0.0, 0.0]]), torch.tensor([0])
    >>> batch_curvature(F.cross_entropy, z, y)(torch.tensor([[1.0, 0.0]]))  # (diag p − ppᵀ) e₀, p = (½, ½)
    tensor([[ 0.2500, -0.2500]])
    >>> M, signs = sample_factors(F.cross_entropy, z, y)  # Λ = MᵀM, rows √p_c (e_c − p)
    >>> M[0], signs
    (tensor([[ 0.3536, -0.3536],
            [-0.3536,  0.3536]]), tensor([[1., 1.]]))
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import grad, jacrev, vjp, vmap

__all__ = ["loss_kind", "batch_curvature", "sample_factors", "check_mean_of_samples"]

LossFn = Callable[[Tensor, Tensor], Tensor]


def _cross_entropy_ignore_index(loss_fn: LossFn):
    """The ``ignore_index`` of a plain cross-entropy loss, or ``None`` when ``loss_fn`` is not one."""
    if loss_fn is F.cross_entropy:
        return -100
    if (isinstance(loss_fn, nn.CrossEntropyLoss) and loss_fn.weight is None and loss_fn.reduction == "mean"
            and loss_fn.label_smoothing == 0.0):
        return loss_fn.ignore_index
    return None


def _is_mean_squared_error(loss_fn: LossFn) -> bool:
    return loss_fn is F.mse_loss or (isinstance(loss_fn, nn.MSELoss) and loss_fn.reduction == "mean")


def loss_kind(loss_fn: LossFn, z: Tensor, y: Tensor) -> str:
    """``"cross_entropy"`` or ``"mse"`` where the closed form applies to these outputs and targets, else
    ``"generic"`` (automatic differentiation of the loss on the outputs)."""
    ignore = _cross_entropy_ignore_index(loss_fn)
    if (ignore is not None and z.dim() == 2 and y.dim() == 1 and not y.is_floating_point()
            and not bool((y == ignore).any())):
        return "cross_entropy"
    if _is_mean_squared_error(loss_fn) and y.shape == z.shape:
        return "mse"
    return "generic"


def batch_curvature(loss_fn: LossFn, z: Tensor, y: Tensor) -> Callable[[Tensor], Tensor]:
    """``U ↦ H_ℓ U`` for the mini-batch's loss ``loss_fn(z, y)`` at the outputs ``z`` (detached), for ``U`` shaped
    like ``z`` or with one more leading dimension (several vectors at once)."""
    z = z.detach()
    kind = loss_kind(loss_fn, z, y)
    if kind == "cross_entropy":
        p = torch.softmax(z, dim=1)
        n = z.shape[0]

        def apply_ce(U: Tensor) -> Tensor:
            pu = p * U
            return (pu - p * pu.sum(dim=-1, keepdim=True)) / n

        return apply_ce
    if kind == "mse":
        scale = 2.0 / z.numel()
        return lambda U: U * scale
    _, pullback = vjp(grad(lambda out: loss_fn(out, y)), z)

    def apply_generic(U: Tensor) -> Tensor:
        if U.dim() == z.dim():
            return pullback(U)[0]
        return vmap(lambda u: pullback(u)[0])(U)

    return apply_generic


def sample_factors(loss_fn: LossFn, z: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Per-sample factors of ``Λ_i = ∇²_{z_i} ℓ(z_i, y_i)``: ``M`` of shape ``(n, R, C)`` and signs ``(n, R)`` with
    ``Λ_i = M_iᵀ diag(signs_i) M_i`` (``C`` the entries of one sample's output, flattened), so that
    ``diag(J_iᵀ Λ_i J_i) = Σ_r signs_ir ((M_i J_i)_r)²``. ``ℓ`` is ``loss_fn`` of one sample."""
    z = z.detach()
    n = z.shape[0]
    kind = loss_kind(loss_fn, z, y)
    if kind == "cross_entropy":
        p = torch.softmax(z, dim=1)
        eye = torch.eye(z.shape[1], dtype=z.dtype, device=z.device)
        M = p.sqrt().unsqueeze(2) * (eye.unsqueeze(0) - p.unsqueeze(1))  # rows √p_c (e_c − p)
        return M, torch.ones(n, z.shape[1], dtype=z.dtype, device=z.device)
    if kind == "mse":
        C = z[0].numel()
        eye = torch.eye(C, dtype=z.dtype, device=z.device) * (2.0 / C) ** 0.5
        return eye.expand(n, C, C), torch.ones(n, C, dtype=z.dtype, device=z.device)
    flat = z.reshape(n, -1)

    def one(zi: Tensor, yi: Tensor) -> Tensor:
        return loss_fn(zi.reshape(z.shape[1:]).unsqueeze(0), yi.unsqueeze(0))

    lam = vmap(jacrev(jacrev(one)))(flat, y)  # (n, C, C); reverse over reverse (F.mse_loss fails forward-mode)
    values, vectors = torch.linalg.eigh((lam + lam.transpose(1, 2)) / 2)
    M = values.abs().sqrt().unsqueeze(2) * vectors.transpose(1, 2)  # rows √|λ_r| q_rᵀ
    return M, torch.sign(values)


def check_mean_of_samples(loss_fn: LossFn, z: Tensor, y: Tensor, *, rtol: float = 1e-5) -> None:
    """Raise ``ValueError`` unless ``loss_fn(z, y)`` is the mean of the per-sample ``loss_fn(z[i:i+1], y[i:i+1])``
    (mean reduction): per-sample gradients and the per-sample factors assume it."""
    with torch.no_grad():
        whole = loss_fn(z, y)
        parts = vmap(lambda zi, yi: loss_fn(zi.unsqueeze(0), yi.unsqueeze(0)))(z, y)
        mean = parts.mean()
    if whole.dim() != 0:
        raise ValueError(f"loss_fn returned shape {tuple(whole.shape)}, not a scalar: use a mean-reduced loss")
    scale = max(float(whole.abs()), float(mean.abs()), 1e-30)
    if abs(float(whole) - float(mean)) > rtol * scale:
        raise ValueError(f"loss_fn is not the mean of its per-sample values ({float(whole):.6g} over the "
                         f"mini-batch, {float(mean):.6g} averaged over samples): use a mean-reduced loss")
