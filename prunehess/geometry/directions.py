"""Directions in weight space, as parameter name → tensor, zero on pruned weights.

- :func:`surviving_masks`: the surviving weights of a loaded checkpoint (its masks and the exact zeros of prunable
  weights, as extract's operator takes them), or none with ``--params all``.
- :func:`unit_direction`: a direction restricted to the surviving coordinates and scaled to unit Euclidean norm, so
  that in ``θ + t·d`` the step ``t`` is a distance in parameter space. The eigenvectors (:func:`eigen_direction`,
  from the saved ``.npz``) and the gradient (:func:`gradient_direction`, of the mean loss on the Hessian batch)
  are used this way.
- :func:`filter_normalized_direction`: Li et al., *Visualizing the Loss Landscape of Neural Nets* (NeurIPS 2018):
  a Gaussian direction, zero on pruned weights, each filter of which (a row of a linear layer's weight: one
  neuron's incoming weights; one output channel of a convolution) is scaled to the norm of the same filter of the
  weights (surviving ones). Then ``t = 1`` moves every filter by its own norm: ``t`` is in units of the filter norms,
  and ``‖d‖`` equals the norm of the (prunable) weights. One-dimensional parameters (biases, BatchNorm scales and
  shifts) are left out (zero) by default; with ``include_biases`` they are kept as Li et al. keep them: the
  direction there is the parameter itself.

Example:
    >>> import torch
    >>> w = {"fc.weight": torch.tensor([[3.0, 4.0], [1.0, 0.0]]), "fc.bias": torch.tensor([1.0, 2.0])}
    >>> d = filter_normalized_direction(w, {}, seed=0)
    >>> [round(v, 5) for v in d["fc.weight"].norm(dim=1).tolist()], d["fc.bias"].tolist()
    ([5.0, 1.0], [0.0, 0.0])
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from prunehess.errors import CheckpointError, DataError
from prunehess.geometry.evaluate import CLASSIFICATION, Objective
from prunehess.models import is_prunable
from prunehess.operators.hvp import eval_mode
from prunehess.operators.masks import zero_masks

__all__ = ["surviving_masks", "unit_direction", "eigen_direction", "gradient_direction",
           "filter_normalized_direction", "direction_norm"]

Direction = dict[str, Tensor]


def surviving_masks(model: nn.Module, checkpoint_masks: Mapping[str, Tensor], params: str = "active"
                    ) -> dict[str, Tensor]:
    """``name -> bool mask`` (True = surviving) of the model's current weights: the checkpoint's masks (prune
    pairs, ``mask.pth``) and the exact zeros of prunable weights; ``{}`` (every coordinate) for ``params="all"``."""
    if params == "all":
        return {}
    masks = dict(zero_masks(model, is_prunable))
    device = next(model.parameters()).device
    for name, mask in checkpoint_masks.items():
        mask = mask.to(device)
        masks[name] = masks[name] & mask if name in masks else mask
    return masks


def direction_norm(direction: Mapping[str, Tensor]) -> float:
    """The Euclidean norm of a direction over all its entries (float64)."""
    return math.sqrt(sum(float(v.double().pow(2).sum()) for v in direction.values()))


def unit_direction(vectors: Mapping[str, Tensor], masks: Mapping[str, Tensor], *, what: str = "direction"
                   ) -> Direction:
    """``vectors`` zeroed on pruned weights and scaled to unit norm; a zero vector is a :class:`CheckpointError`
    naming ``what``."""
    masked = {name: v * masks[name].to(v.dtype) if name in masks else v.clone() for name, v in vectors.items()}
    norm = direction_norm(masked)
    if not norm > 0 or not math.isfinite(norm):
        raise CheckpointError(f"{what}: the direction is {'zero' if norm == 0 else norm} on the surviving weights")
    return {name: v / norm for name, v in masked.items()}


def eigen_direction(vectors: Mapping[str, np.ndarray], index: int, model: nn.Module, masks: Mapping[str, Tensor],
                    *, source: str) -> Direction:
    """Saved eigenvector ``index`` (``vectors``: name → ``(k, *shape)``, from
    :func:`prunehess.plots.overlap.read_eigenvectors`) as a unit direction over the model's parameters (those the
    file lacks are zero: they were not coordinates of its Hessian); ``source`` names the file in errors."""
    params = dict(model.named_parameters())
    unknown = sorted(set(vectors) - set(params))
    if unknown:
        raise DataError(f"{source}: eigenvector entries for {', '.join(unknown[:3])}, which the model does not have")
    out = {}
    for name, p in params.items():
        if name not in vectors:
            out[name] = torch.zeros_like(p.detach())
            continue
        saved = vectors[name]
        if tuple(saved.shape[1:]) != tuple(p.shape):
            raise DataError(f"{source}: {name} has shape {tuple(saved.shape[1:])}, the model's {tuple(p.shape)}")
        out[name] = torch.from_numpy(np.ascontiguousarray(saved[index])).to(device=p.device, dtype=p.dtype)
    return unit_direction(out, masks, what=f"{source} (eigenvector {index + 1})")


def gradient_direction(model: nn.Module, batches: Sequence[tuple[Tensor, Tensor]], masks: Mapping[str, Tensor], *,
                       objective: Objective = CLASSIFICATION, what: str = "gradient") -> Direction:
    """The gradient of the mean loss over ``batches`` (eval mode) as a unit direction over the surviving
    weights: ``t > 0`` climbs, ``t < 0`` descends."""
    params = dict(model.named_parameters())
    total = sum(int(y.shape[0]) for _, y in batches)
    grads = {name: torch.zeros_like(p.detach()) for name, p in params.items()}
    with eval_mode(model), torch.enable_grad():
        for x, y in batches:
            loss = objective.loss(model(x), y) / total
            found = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
            for name, g in zip(params, found):
                if g is not None:
                    grads[name] += g.detach()
    return unit_direction(grads, masks, what=what)


def filter_normalized_direction(params: Mapping[str, Tensor], masks: Mapping[str, Tensor], *, seed: int,
                                include_biases: bool = False) -> Direction:
    """Li et al.'s filter-normalised random direction (see the module docstring), zero on pruned weights.

    The Gaussian draws come from a CPU generator seeded with ``seed``, in float64, one tensor after the other in
    ``params`` order (only for parameters of two or more dimensions), so the same seed gives the same draws on any
    device and for every checkpoint of a run (each then masked and scaled to its own weights).
    """
    generator = torch.Generator().manual_seed(int(seed))
    out = {}
    for name, w in params.items():
        w = w.detach()
        mask = masks.get(name)
        alive = w if mask is None else w * mask.to(w.dtype)
        if w.dim() <= 1:
            out[name] = alive.clone() if include_biases else torch.zeros_like(w)
            continue
        r = torch.randn(w.shape, generator=generator, dtype=torch.float64).to(device=w.device, dtype=w.dtype)
        if mask is not None:
            r = r * mask.to(w.dtype)
        r_norms = r.reshape(r.shape[0], -1).norm(dim=1)
        w_norms = alive.reshape(w.shape[0], -1).norm(dim=1)
        scale = torch.where(r_norms > 0, w_norms / torch.where(r_norms > 0, r_norms, torch.ones_like(r_norms)),
                            torch.zeros_like(r_norms))
        out[name] = r * scale.reshape(-1, *([1] * (w.dim() - 1)))
    return out

