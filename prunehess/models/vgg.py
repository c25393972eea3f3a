"""``vgg11_bn``: torchvision's VGG-11 (configuration "A") with BatchNorm, for any input channels and sizes.

State-dict keys as torchvision's ``vgg11_bn`` (with ``batch_norm=False``: as its ``vgg11``): ``features.<i>``
(Conv2d 3x3 + BatchNorm2d + ReLU per convolution, MaxPool2d(2) after stages), ``avgpool`` =
AdaptiveAvgPool2d((7, 7)), ``classifier.{0,3,6}`` = Linear(512·7·7, 4096), Linear(4096, 4096),
Linear(4096, num_classes) with ReLU and Dropout between them.

Small inputs: a MaxPool2d that would shrink a side below one pixel (28x28 input: the fifth; 8x8: the last two)
is replaced by ``nn.Identity``. Pools have no parameters, so the keys and their indices do not change.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["VGG11", "VGG11_CONFIG"]

VGG11_CONFIG: tuple[int | str, ...] = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


def _features(in_channels: int, height: int, width: int, batch_norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = in_channels
    for item in VGG11_CONFIG:
        if item == "M":
            if height >= 2 and width >= 2:
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                height, width = height // 2, width // 2
            else:  # would shrink below one pixel: keep the index, drop the pooling
                layers.append(nn.Identity())
            continue
        layers.append(nn.Conv2d(channels, int(item), kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(int(item)))
        layers.append(nn.ReLU())
        channels = int(item)
    return nn.Sequential(*layers)


class VGG11(nn.Module):
    """VGG-11 (BatchNorm optional) in torchvision's layout for inputs of shape ``(C, H, W)``."""

    def __init__(
        self, input_shape: tuple[int, int, int], num_classes: int, *, batch_norm: bool = True, dropout: float = 0.5
    ) -> None:
        super().__init__()
        self.features = _features(*input_shape, batch_norm=batch_norm)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))
