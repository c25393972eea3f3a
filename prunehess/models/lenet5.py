"""``lenet5``: the lottery-ticket trainer's "LeNet5" (two 3x3 convolutions, one pooling, three linears).

State-dict layout as the seed's trainer: ``features.0`` = Conv2d(C, 64, 3, padding=1), ``features.2`` =
Conv2d(64, 64, 3, padding=1), ``features.4`` = MaxPool2d(2); ``classifier.0`` = Linear(64·(H//2)·(W//2), 256),
``classifier.2`` = Linear(256, 256), ``classifier.4`` = Linear(256, num_classes).
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["LeNet5"]


class LeNet5(nn.Module):
    """Conv(64)-Conv(64)-MaxPool-FC(256)-FC(256)-FC(num_classes) for inputs of shape ``(C, H, W)``."""

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        channels, height, width = input_shape
        self.features = nn.Sequential(
            nn.Conv2d(channels, 64, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Linear(64 * (height // 2) * (width // 2), 256),
            nn.ReLU(),
            nn.Linear(256, 256),
            nn.ReLU(),
            nn.Linear(256, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))
