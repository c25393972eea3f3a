"""``fc1``: the lottery-ticket 300-100 multilayer perceptron.

State-dict layout as the seed's trainer: ``classifier.0`` = Linear(in, 300), ``classifier.2`` = Linear(300, 100),
``classifier.4`` = Linear(100, num_classes), ReLUs at 1 and 3; the input is flattened in :meth:`FC1.forward`.
"""
from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["FC1"]


class FC1(nn.Module):
    """Fully connected 300-100 network; ``in_features = prod(input_shape)``."""

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        in_features = math.prod(input_shape)
        self.classifier = nn.Sequential(
            nn.Linear(in_features, 300),
            nn.ReLU(),
            nn.Linear(300, 100),
            nn.ReLU(),
            nn.Linear(100, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(x, 1))
