"""The learning rate of each training epoch: linear warmup and a step schedule, restarting every iteration.

Training epoch ``e`` (``1 … E``: the pass after which snapshot ``epoch<e>`` is taken) trains at::

    lr_e = lr · w(e) · γ^#{m in milestones : m < e},      w(e) = min(1, e / N)   (w = 1 without warmup)

* ``--warmup N``: the lr climbs linearly over the first ``N`` epochs — epoch 1 at ``lr/N``, epoch ``N`` at ``lr``.
  The pruning-PyHessian fork added a warmup switch to its lottery-ticket trainer to reproduce the ResNet-18
  results of Frankle & Carbin (2019), who warm the lr up linearly at the start of training; here it is per epoch
  and its length is an option.
* ``--lr-milestones m1,m2,…`` and ``--lr-gamma γ``: the lr is multiplied by ``γ`` after epoch ``m`` (epochs
  ``m+1 …`` train at the lower rate), like :class:`torch.optim.lr_scheduler.MultiStepLR` stepped once per epoch.

Each pruning iteration starts the schedule again from epoch 1 (with a fresh optimizer). Without warmup or
milestones every epoch trains at exactly ``lr``.

Example:
    >>> [lr_at(e, lr=1.0, warmup=2, milestones=(3,), gamma=0.1) for e in range(1, 6)]
    [0.5, 1.0, 1.0, 0.1, 0.1]
"""
from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["lr_at", "set_lr_"]


def lr_at(epoch: int, *, lr: float, warmup: int = 0, milestones: Sequence[int] = (), gamma: float = 0.1) -> float:
    """The learning rate of training epoch ``epoch`` (``>= 1``); see the module docstring."""
    if epoch < 1:
        raise ValueError(f"training epochs are numbered from 1, got {epoch}")
    factor = min(1.0, epoch / warmup) if warmup else 1.0
    decays = sum(1 for m in milestones if m < epoch)
    return lr * factor * gamma ** decays if (factor != 1.0 or decays) else lr


def set_lr_(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every parameter group's learning rate, in place."""
    for group in optimizer.param_groups:
        group["lr"] = lr
