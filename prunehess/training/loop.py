"""One epoch of masked training, and evaluation.

Training is plain mini-batch cross-entropy minimisation with the masks enforced at every step::

    loss.backward(); grad[pruned] = 0; optimizer.step(); weight[pruned] = 0

so pruned weights are exactly zero before and after every step, whatever the optimizer (SGD with momentum and
weight decay, Adam): their gradients, momentum buffers and Adam moments stay zero from a fresh optimizer on, and
the post-step fill makes it a guarantee even for optimizers that would move a zero-gradient weight.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prunehess.training.pruning import apply_masks_, mask_gradients_

__all__ = ["make_optimizer", "train_epoch", "evaluate", "EvalResult"]

LossFn = Callable[[Tensor, Tensor], Tensor]


def make_optimizer(
    name: str, params: Iterable[nn.Parameter], *, lr: float, momentum: float = 0.9, weight_decay: float = 0.0
) -> torch.optim.Optimizer:
    """A fresh ``sgd`` (with ``momentum``) or ``adam`` optimizer."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be 'sgd' or 'adam', got {name!r}")


def train_epoch(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    optimizer: torch.optim.Optimizer,
    masks: Mapping[str, Tensor],
    *,
    device: torch.device | str = "cpu",
    loss_fn: LossFn = F.cross_entropy,
) -> float:
    """Train one pass over ``batches`` with the masks enforced; return the sample-weighted mean training loss."""
    model.train()
    total, count = 0.0, 0
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        mask_gradients_(model, masks)
        optimizer.step()
        apply_masks_(model, masks)
        total += float(loss.detach()) * y.shape[0]
        count += y.shape[0]
    return total / count if count else float("nan")


@dataclass(frozen=True)
class EvalResult:
    """Mean loss and accuracy (percent) over a data set."""

    loss: float
    accuracy: float
    n: int


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    *,
    device: torch.device | str = "cpu",
    loss_fn: LossFn = F.cross_entropy,
) -> EvalResult:
    """Mean loss and accuracy of ``model`` in eval mode (the previous mode is restored)."""
    was_training = model.training
    model.eval()
    total, correct, count = 0.0, 0, 0
    try:
        for x, y in batches:
            x, y = x.to(device), y.to(device)
            out = model(x)
            total += float(loss_fn(out, y, reduction="sum"))
            correct += int((out.argmax(dim=1) == y).sum())
            count += y.shape[0]
    finally:
        model.train(was_training)
    if not count:
        return EvalResult(float("nan"), float("nan"), 0)
    return EvalResult(total / count, 100.0 * correct / count, count)
