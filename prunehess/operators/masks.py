"""Masks of surviving weights: from ``torch.nn.utils.prune`` pairs or from exact zeros.

A mask is a boolean tensor shaped like its parameter, ``True`` where the weight survives. Masks are keyed by
the parameter's name in ``model.named_parameters()`` (for a ``torch.nn.utils.prune`` pair that is the
``<name>_orig`` parameter, whose ``<name>_mask`` buffer gives the mask).
"""
from __future__ import annotations

from typing import Callable, Optional

from torch import Tensor, nn

__all__ = ["prune_pair_masks", "zero_masks", "detect_masks", "is_prunable_weight"]


def is_prunable_weight(name: str, param: Tensor) -> bool:
    """Weights of linear and convolutional layers (two or more dims); never biases or norm parameters."""
    return param.dim() >= 2 and not name.endswith("bias")


def prune_pair_masks(model: nn.Module) -> dict[str, Tensor]:
    """Masks of the ``<name>_orig`` / ``<name>_mask`` pairs that ``torch.nn.utils.prune`` installs."""
    masks = {}
    for module_name, module in model.named_modules():
        prefix = f"{module_name}." if module_name else ""
        params = dict(module.named_parameters(recurse=False))
        for buffer_name, buffer in module.named_buffers(recurse=False):
            if buffer_name.endswith("_mask") and f"{buffer_name[:-5]}_orig" in params:
                masks[f"{prefix}{buffer_name[:-5]}_orig"] = buffer.detach().bool()
    return masks


def zero_masks(
    model: nn.Module, prunable: Callable[[str, Tensor], bool] = is_prunable_weight
) -> dict[str, Tensor]:
    """Masks of the exact non-zeros of prunable weights, for those weights that have any zero."""
    masks = {}
    for name, param in model.named_parameters():
        if prunable(name, param):
            mask = param.detach() != 0
            if not bool(mask.all()):
                masks[name] = mask
    return masks


def detect_masks(
    model: nn.Module, prunable: Optional[Callable[[str, Tensor], bool]] = None
) -> dict[str, Tensor]:
    """The masks of a pruned model: prune pairs when present, else exact zeros of prunable weights."""
    masks = prune_pair_masks(model)
    if masks:
        return masks
    return zero_masks(model, prunable or is_prunable_weight)
