"""``resnet18``: the pytorch-cifar ResNet-18 (BasicBlocks [2, 2, 2, 2], 64-512 channels, 3x3 stem).

State-dict keys as pytorch-cifar (and the lottery-ticket trainer): ``conv1``, ``bn1``, ``layer{1..4}.<i>.{conv1,
bn1,conv2,bn2}``, ``layer{2,3,4}.0.shortcut.{0,1}`` (1x1 projection + BatchNorm), ``linear``. The input channels
come from the dataset; the final pooling is global average, which equals pytorch-cifar's ``avg_pool2d(out, 4)``
on 32x32 (and 28x28) inputs and also accepts 8x8 ones. ``batch_norm=False`` removes every BatchNorm (no ``bn*``
and ``shortcut.1`` keys); ``residual=False`` removes every skip connection (no ``shortcut`` keys).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._blocks import conv3x3, init_he, norm2d

__all__ = ["ResNet18", "BasicBlock"]


class BasicBlock(nn.Module):
    """pytorch-cifar ``BasicBlock``: conv-bn-relu-conv-bn (+ shortcut) -relu."""

    def __init__(self, in_planes: int, planes: int, *, stride: int, batch_norm: bool, residual: bool) -> None:
        super().__init__()
        self.residual = residual
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn1 = norm2d(planes, batch_norm)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm2d(planes, batch_norm)
        self.shortcut = nn.Sequential()  # identity, no keys
        if residual and (stride != 1 or in_planes != planes):
            self.shortcut.append(nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False))
            if batch_norm:
                self.shortcut.append(nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.residual:
            out = out + self.shortcut(x)
        return F.relu(out)


class ResNet18(nn.Module):
    """ResNet-18 for small images (pytorch-cifar layout), ``in_channels`` input planes."""

    def __init__(
        self, *, in_channels: int = 3, num_classes: int = 10, batch_norm: bool = True, residual: bool = True
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, 64)
        self.bn1 = norm2d(64, batch_norm)
        in_planes = 64
        stages = []
        for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks = []
            for s in (stride, 1):
                blocks.append(BasicBlock(in_planes, planes, stride=s, batch_norm=batch_norm, residual=residual))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.linear = nn.Linear(512, num_classes)
        init_he(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.adaptive_avg_pool2d(out, 1)
        return self.linear(torch.flatten(out, 1))
