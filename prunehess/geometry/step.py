"""One pruning step, measured at the weights before it: what it removed, what OBD would have removed, and the loss.

Given a network at the weights ``θ`` of the checkpoint before the step, the surviving weights ``S`` there
(``before``) and the surviving weights after the step (``after``), both as boolean masks of the prunable weights,
the step removed ``R = S ∖ after`` (a weight pruned before and alive after is not removed: it is counted as regrown).
:func:`analyse_step` computes, per prunable weight tensor and for all of them together:

- **OBD's choice at the same counts.** The diagonal ``H_kk`` of the Hessian of the mean loss over ``batches`` on the
  surviving weights, exact where :func:`~prunehess.operators.linearity.check_piecewise_linear` accepts the network
  (``diag(H) = diag(G)``: :func:`~prunehess.estimators.diagonal.exact_diagonal`), else Hutchinson's estimate
  (:func:`~prunehess.estimators.diagonal.hutchinson_diagonal`, ``probes`` Rademacher probes, with a standard error
  per weight); ``diagonal`` chooses (``auto``, ``exact``, ``hutchinson``). OBD's saliency ``½ H_kk w_k²`` (LeCun,
  Denker & Solla 1990; :func:`~prunehess.estimators.saliency.obd_saliency`) would have removed, in each tensor, its
  ``|R_l|`` least salient survivors; the overlap is ``|R ∩ R_OBD| / |R|`` (ties at OBD's threshold averaged:
  :func:`~prunehess.geometry.ranking.expected_hits`; summed over the tensors for the whole model, since OBD chooses
  per tensor).
- **Spearman's rank correlation** of ``|w|`` (magnitude pruning's criterion) and OBD's saliency over ``S``.
- **The quadratic model of the step against the loss.** ``δ = −w`` on ``R`` (zero elsewhere) is a step in the
  coordinates of ``S``; the model predicts ``ΔL ≈ gᵀδ + ½ δᵀHδ`` (one product:
  :func:`~prunehess.estimators.saliency.quadratic_loss_change`), the actual change is ``L(θ + δ) − L(θ)`` (a
  forward pass). Per tensor: removing that tensor's ``R_l`` alone. Exact for a loss quadratic in the weights.

Everything is evaluated in eval mode, in the model's dtype (losses summed in float64), with the mean loss
``L = Σ_b (n_b / N) loss_fn(model(x_b), y_b)`` of the operators.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from prunehess.errors import ConfigError
from prunehess.estimators.diagonal import DiagonalResult, exact_diagonal, hutchinson_diagonal
from prunehess.estimators.saliency import LossChange, magnitude_saliency, obd_saliency, quadratic_loss_change
from prunehess.geometry.options import DIAGONALS
from prunehess.geometry.ranking import expected_hits, spearman
from prunehess.operators import HessianOperator
from prunehess.operators.curvature import loss_gradient
from prunehess.operators.hvp import eval_mode
from prunehess.operators.linearity import NotPiecewiseLinearError

__all__ = ["DIAGONALS", "StepRow", "StepResult", "analyse_step", "step_diagonal", "WHOLE"]

WHOLE = "all"
"""The name of the row of every prunable weight together."""


@dataclass(frozen=True)
class StepRow:
    """One weight tensor's part of a step (or every prunable weight's: ``name == "all"``)."""

    name: str
    weights: int  # entries of the tensor(s)
    surviving: int  # before the step
    kept: int  # surviving after the step
    removed: int  # surviving before, pruned after
    hits: float  # |R ∩ R_OBD|, ties averaged
    spearman: float  # of |w| and ½ H_kk w_k² over the survivors before
    change: LossChange  # the quadratic model of removing R
    actual: float  # L(θ + δ) − L(θ)
    diagonal_rel_stderr: float  # ‖stderr‖ / ‖diag‖ over the survivors (0 when exact)

    @property
    def overlap(self) -> float:
        """``|R ∩ R_OBD| / |R|`` (``NaN`` when nothing was removed)."""
        return self.hits / self.removed if self.removed else math.nan

    @property
    def remaining_percent_before(self) -> float:
        return 100.0 * self.surviving / self.weights if self.weights else math.nan

    @property
    def remaining_percent_after(self) -> float:
        return 100.0 * self.kept / self.weights if self.weights else math.nan


@dataclass(frozen=True)
class StepResult:
    """A step's rows (``rows[0]`` all prunable weights, then one per tensor in ``named_parameters()`` order), the
    loss before it, how the diagonal was obtained, the products used and the weights regrown."""

    rows: tuple[StepRow, ...]
    loss: float
    diagonal: str  # "exact" or "hutchinson"
    probes: int
    n_hvp: int
    regrown: int


def step_diagonal(H: HessianOperator, diagonal: str = "auto", *, probes: int = 100, seed: int = 0,
                  max_bytes: int = 2**28) -> DiagonalResult:
    """``diag(H)``: exact where the network is piecewise linear in each selected tensor (``auto``, ``exact``; the
    latter refuses other networks with a :class:`~prunehess.errors.ConfigError` saying why), else (``auto``,
    ``hutchinson``) Hutchinson's estimate from ``probes`` probes seeded ``seed``."""
    if diagonal not in DIAGONALS:
        raise ConfigError(f"diagonal: {diagonal!r} is not one of {', '.join(DIAGONALS)}")
    if diagonal != "hutchinson":
        try:
            return exact_diagonal(H, max_bytes=max_bytes)
        except NotPiecewiseLinearError as err:
            if diagonal == "exact":
                raise ConfigError(f"diagonal 'exact': {err}") from None
    return hutchinson_diagonal(H, n_probes=probes, seed=seed)


@torch.no_grad()
def _mean_loss(model: nn.Module, batches, loss_fn, total: int, replaced: Mapping[str, Tensor]) -> float:
    state = {**dict(model.named_parameters()), **dict(model.named_buffers()), **replaced}
    with eval_mode(model):
        return sum(float(loss_fn(functional_call(model, state, (x,)), y).double()) * int(y.shape[0])
                   for x, y in batches) / total


def _bool_masks(masks: Mapping[str, Tensor], shapes: Mapping[str, torch.Size], what: str) -> dict[str, Tensor]:
    out = {}
    for name, shape in shapes.items():
        if name not in masks:
            raise ValueError(f"{what}: no mask for {name}")
        if tuple(masks[name].shape) != tuple(shape):
            raise ValueError(f"{what}: the mask of {name} has shape {tuple(masks[name].shape)}, the weight "
                             f"{tuple(shape)}")
        out[name] = masks[name].detach().bool().cpu()
    return out


def _row(name: str, weights: int, keep: Tensor, after: Tensor, magnitude: Tensor, saliency: Tensor,
         stderr: Tensor, diag: Tensor, change: LossChange, actual: float, hits: Optional[float] = None) -> StepRow:
    """A row from flat CPU tensors: ``keep``/``after`` masks, and the survivors' ``magnitude``, ``saliency``,
    diagonal and its ``stderr``; ``hits`` (default: OBD choosing among these survivors) is given for the whole
    model, where OBD chooses per tensor."""
    removed = keep & ~after
    if hits is None:
        hits = expected_hits(removed[keep].numpy(), saliency.numpy())
    size, noise = float(diag.norm()), float(stderr.norm())
    return StepRow(name=name, weights=weights, surviving=int(keep.sum()), kept=int(after.sum()),
                   removed=int(removed.sum()), hits=hits, spearman=spearman(magnitude.numpy(), saliency.numpy()),
                   change=change, actual=actual,
                   diagonal_rel_stderr=0.0 if noise == 0 else noise / size if size > 0 else math.inf)


def analyse_step(model: nn.Module, batches: Sequence[tuple[Tensor, Tensor]], before: Mapping[str, Tensor],
                 after: Mapping[str, Tensor], *, loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
                 diagonal: str = "auto", probes: int = 100, seed: int = 0, total_samples: Optional[int] = None,
                 max_bytes: int = 2**28) -> StepResult:
    """The step from the surviving weights ``before`` to ``after`` (boolean masks keyed by the names of the prunable
    weights, every one of them), at ``model``'s current weights, over ``batches`` (module docstring)."""
    params = dict(model.named_parameters())
    names = list(before)
    if not names:
        raise ValueError("analyse_step: no prunable weights (empty masks)")
    shapes = {n: params[n].shape for n in names}
    before, after = _bool_masks(before, shapes, "before"), _bool_masks(after, shapes, "after")
    device = params[names[0]].device
    total = int(total_samples) if total_samples is not None else sum(int(y.shape[0]) for _, y in batches)
    H = HessianOperator(model, batches, loss_fn, masks={n: m.to(device) for n, m in before.items()},
                        total_samples=total)
    block = H.restrict(names)
    diag = step_diagonal(block, diagonal, probes=probes, seed=seed, max_bytes=max_bytes)
    d, se = diag.to_tensors(block.space), diag.to_tensors(block.space, "stderr")
    weights = {n: params[n].detach().double().cpu() for n in names}
    saliency = obd_saliency(weights, d, before)
    magnitude = magnitude_saliency(weights, before)
    gradient, theta = loss_gradient(H), H.space.to_flat({n: p.detach() for n, p in params.items()})
    loss = _mean_loss(model, batches, loss_fn, total, {})
    n_hvp = diag.n_hvp

    def removal(chosen: Sequence[str]) -> tuple[LossChange, float]:
        nonlocal n_hvp
        removed = {n: (before[n] & ~after[n]) if n in chosen else torch.zeros(shapes[n], dtype=torch.bool)
                   for n in names}
        if not any(bool(r.any()) for r in removed.values()):
            return LossChange(0.0, 0.0, 0, 0), 0.0
        flags = H.space.to_flat({n: removed[n].to(device) if n in removed else torch.zeros_like(p, dtype=torch.bool)
                                 for n, p in params.items()})
        change = quadratic_loss_change(H, gradient, theta, flags)
        n_hvp += change.n_hvp
        pruned = {n: params[n].detach() * (~removed[n]).to(device, params[n].dtype) for n in chosen}
        return change, _mean_loss(model, batches, loss_fn, total, pruned) - loss

    # per tensor, flat: the masks before and after, then |w|, ½ H_kk w_k², stderr and H_kk of the survivors
    parts = {n: [before[n].reshape(-1), after[n].reshape(-1)]
             + [t[n].reshape(-1)[before[n].reshape(-1)] for t in (magnitude, saliency, se, d)] for n in names}
    pooled = [torch.cat([parts[n][j] for n in names]) for j in range(6)]
    layers = [_row(n, shapes[n].numel(), *parts[n], *removal([n])) for n in names]
    whole = _row(WHOLE, sum(shapes[n].numel() for n in names), *pooled, *removal(names),
                 hits=sum(row.hits for row in layers))
    H.release()
    regrown = sum(int((after[n] & ~before[n]).sum()) for n in names)
    return StepResult((whole, *layers), loss, diag.method, diag.probes, n_hvp, regrown)
