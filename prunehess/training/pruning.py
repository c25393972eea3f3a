"""Magnitude pruning with explicit boolean masks.

A mask is a ``bool`` tensor shaped like its weight, ``True`` where the weight survives; masks are keyed by
``named_parameters()`` names, one per prunable weight (by default the weights of two or more dimensions —
linear and convolutional kernels; biases and norm parameters are never pruned).

One pruning round removes ``round(P/100 · n)`` of the ``n`` *surviving* weights, rounding half up:

* per layer (default): ``n`` is each layer's survivors, and each layer loses its own smallest ``|w|``;
* global: ``n`` is the survivors of all prunable layers together, ranked by ``|w|`` across layers.

Ties in ``|w|`` are broken by position (the earlier flat index of the earlier layer is pruned first), so a round is
a deterministic function of the weights. :func:`prune_layers` prunes each layer at its own rate (the Hessian-aware
rule's); :func:`random_prune` is the control that keeps magnitude pruning's per-layer counts and draws which
weights at random. Pruned weights are held at exactly ``0`` (see :func:`apply_masks_` and
:func:`mask_gradients_`), which is also how the analysis side recovers the masks from a plain state dict.

Example:
    >>> import torch
    >>> w = {"w": torch.tensor([[0.3, -0.1], [0.5, 0.2]])}
    >>> masks = magnitude_prune(w, full_masks(w), 50.0)
    >>> masks["w"].tolist()
    [[True, False], [True, False]]
"""
from __future__ import annotations

import math
from typing import Callable, Mapping

import torch
from torch import Tensor, nn

from prunehess.operators.masks import is_prunable_weight

__all__ = [
    "default_is_prunable",
    "prunable_weights",
    "full_masks",
    "prune_count",
    "magnitude_prune",
    "prune_layers",
    "random_prune",
    "apply_masks_",
    "mask_gradients_",
    "count_parameters",
    "remaining_percent",
]

Masks = dict[str, Tensor]


default_is_prunable = is_prunable_weight  # weights of linear and convolution layers, as everywhere


def prunable_weights(
    model: nn.Module, is_prunable: Callable[[str, Tensor], bool] = default_is_prunable
) -> dict[str, nn.Parameter]:
    """The model's prunable parameters, by name, in ``named_parameters()`` order."""
    return {name: p for name, p in model.named_parameters() if is_prunable(name, p)}


def full_masks(weights: Mapping[str, Tensor]) -> Masks:
    """All-``True`` masks (nothing pruned yet) for the given weights."""
    return {name: torch.ones_like(w, dtype=torch.bool) for name, w in weights.items()}


def prune_count(n_remaining: int, percent: float) -> int:
    """How many of ``n_remaining`` survivors one round removes: ``floor(P·n/100 + 1/2)`` (half rounds up)."""
    return min(n_remaining, int(math.floor(float(percent) * n_remaining / 100.0 + 0.5)))


def _smallest(values: Tensor, count: int) -> Tensor:
    """Indices of the ``count`` smallest entries of a 1-D tensor, ties broken by position."""
    order = torch.sort(values, stable=True).indices
    return order[:count]


def magnitude_prune(
    weights: Mapping[str, Tensor], masks: Mapping[str, Tensor], percent: float, *, global_pruning: bool = False
) -> Masks:
    """One magnitude-pruning round: new masks with ``percent`` % of the survivors removed.

    Args:
        weights: the trained weights, by name (only names present in ``masks`` are pruned).
        masks: the current masks (``True`` = survives); they are not modified.
        percent: percent of the remaining weights to remove, ``0 <= percent < 100``.
        global_pruning: rank all layers' survivors together instead of each layer on its own.

    Returns:
        New masks, a subset of the old ones, with exactly :func:`prune_count` fewer survivors per layer (or in
        total when ``global_pruning``).
    """
    if not 0.0 <= float(percent) < 100.0:
        raise ValueError(f"percent must be in [0, 100), got {percent}")
    names = list(masks)
    if not global_pruning:
        return prune_layers(weights, masks, {name: percent for name in names})
    new = {name: m.clone() for name, m in masks.items()}
    alive = [masks[name].reshape(-1).nonzero().squeeze(1) for name in names]
    magnitudes = torch.cat(
        [weights[name].detach().reshape(-1)[idx].abs().to(torch.float64).cpu() for name, idx in zip(names, alive)]
    ) if names else torch.empty(0, dtype=torch.float64)
    count = prune_count(magnitudes.numel(), percent)
    if count:
        chosen = _smallest(magnitudes, count)
        offsets = torch.tensor([0] + [idx.numel() for idx in alive]).cumsum(0)
        for i, name in enumerate(names):
            in_layer = chosen[(chosen >= offsets[i]) & (chosen < offsets[i + 1])] - offsets[i]
            if in_layer.numel():
                new[name].view(-1)[alive[i][in_layer.to(alive[i].device)]] = False
    return new


def prune_layers(weights: Mapping[str, Tensor], masks: Mapping[str, Tensor], percents: Mapping[str, float]) -> Masks:
    """Per-layer magnitude pruning at each layer's own rate: layer ``name`` loses :func:`prune_count` of its
    survivors at ``percents[name]`` (a layer absent from ``percents`` keeps them all), the smallest ``|w|`` first.

    Example:
        >>> w = {"a": torch.tensor([0.3, -0.1, 0.5, 0.2]), "b": torch.tensor([1.0, 2.0])}
        >>> {k: m.tolist() for k, m in prune_layers(w, full_masks(w), {"a": 50.0}).items()}
        {'a': [True, False, True, False], 'b': [True, True]}
    """
    new = {name: m.clone() for name, m in masks.items()}
    for name, percent in percents.items():
        if not 0.0 <= float(percent) < 100.0:
            raise ValueError(f"{name}: percent must be in [0, 100), got {percent}")
        alive = masks[name].reshape(-1).nonzero().squeeze(1)
        count = prune_count(alive.numel(), percent)
        if count:
            magnitudes = weights[name].detach().reshape(-1)[alive].abs()
            new[name].view(-1)[alive[_smallest(magnitudes, count)]] = False
    return new


def random_prune(
    weights: Mapping[str, Tensor], masks: Mapping[str, Tensor], percent: float, *, global_pruning: bool = False,
    generator: torch.Generator,
) -> Masks:
    """The random-pruning control: each layer loses exactly as many survivors as :func:`magnitude_prune` (with
    the same ``percent`` and ``global_pruning``) would take from it, drawn uniformly at random by ``generator``
    (a CPU generator; layers drawn in ``masks`` order). The layer-wise sparsity is magnitude pruning's; which
    weights go is not.

    Example:
        >>> w = {"a": torch.tensor([0.3, -0.1, 0.5, 0.2])}
        >>> masks = random_prune(w, full_masks(w), 50.0, generator=torch.Generator().manual_seed(0))
        >>> int(masks["a"].sum())
        2
    """
    reference = magnitude_prune(weights, masks, percent, global_pruning=global_pruning)
    new = {name: m.clone() for name, m in masks.items()}
    for name, mask in masks.items():
        alive = mask.reshape(-1).nonzero().squeeze(1)
        count = int(mask.sum()) - int(reference[name].sum())
        order = torch.randperm(alive.numel(), generator=generator)
        if count:
            new[name].view(-1)[alive[order[:count].to(alive.device)]] = False
    return new


@torch.no_grad()
def apply_masks_(model: nn.Module, masks: Mapping[str, Tensor]) -> None:
    """Set the pruned weights of ``model`` to exactly ``+0.0``, in place."""
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        p = params[name]
        p.masked_fill_(~mask.to(p.device), 0.0)


@torch.no_grad()
def mask_gradients_(model: nn.Module, masks: Mapping[str, Tensor]) -> None:
    """Zero the gradients of pruned weights, in place (call between ``backward`` and ``step``).

    With zero gradients and zero weights, SGD momentum, weight decay and Adam's moments of a pruned weight stay
    exactly zero from a fresh optimizer on; :func:`apply_masks_` after each step makes it a guarantee.
    """
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        grad = params[name].grad
        if grad is not None:
            grad.masked_fill_(~mask.to(grad.device), 0.0)


def count_parameters(model: nn.Module, masks: Mapping[str, Tensor]) -> tuple[int, int]:
    """``(surviving, total)`` over *all* parameters (weights, biases, norm parameters); only masks prune."""
    total = sum(p.numel() for p in model.parameters())
    pruned = sum(int((~m).sum()) for m in masks.values())
    return total - pruned, total


def remaining_percent(model: nn.Module, masks: Mapping[str, Tensor]) -> float:
    """Percent of all parameters that survive pruning (what ``remain_params.txt`` lists, before rounding)."""
    surviving, total = count_parameters(model, masks)
    return 100.0 * surviving / total if total else 100.0
