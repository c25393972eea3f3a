"""``resnet20``: the CIFAR ResNet family (depth 6n+2) of PyHessian's example, with BatchNorm and skip switches.

State-dict keys are PyHessian's ``models/resnet.py`` ones, so its checkpoints load: ``conv1``, ``bn1``,
``layer{1,2,3}.<i>.{conv1,bn1,conv2,bn2}``, ``layer{2,3}.0.downsample.{0,1}`` (1x1 projection, + BatchNorm), ``fc``.
Convolutions have no bias. ``batch_norm=False`` builds no BatchNorm module at all (no ``bn*`` keys, no
``downsample.1``); ``residual=False`` builds no skip connection at all (no ``downsample``), as in PyHessian.
The final pooling is adaptive (global average), which equals PyHessian's ``AvgPool2d(8)`` on 32x32 inputs and
also accepts 28x28 or 8x8 ones. ResNet-20 has 272,474 parameters.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._blocks import conv3x3, init_he, norm2d

__all__ = ["CifarResNet", "CifarBasicBlock"]


class CifarBasicBlock(nn.Module):
    """conv-bn-relu-conv-bn (+ skip) -relu, PyHessian's ``BasicBlock``."""

    def __init__(self, inplanes: int, planes: int, *, stride: int, batch_norm: bool, residual: bool) -> None:
        super().__init__()
        self.residual = residual
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = norm2d(planes, batch_norm)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm2d(planes, batch_norm)
        self.downsample: nn.Sequential | None = None
        if residual and (stride != 1 or inplanes != planes):
            projection: list[nn.Module] = [nn.Conv2d(inplanes, planes, kernel_size=1, stride=stride, bias=False)]
            if batch_norm:
                projection.append(nn.BatchNorm2d(planes))
            self.downsample = nn.Sequential(*projection)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return F.relu(out)


class CifarResNet(nn.Module):
    """ResNet-``depth`` for small images: three stages of (depth-2)/6 blocks, 16/32/64 channels."""

    def __init__(
        self,
        *,
        depth: int = 20,
        in_channels: int = 3,
        num_classes: int = 10,
        batch_norm: bool = True,
        residual: bool = True,
        base_channels: int = 16,
    ) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6 != 0:
            raise ValueError(f"depth must be 6n+2 with n >= 1 (8, 14, 20, 32, 44, 56, 110, ...), not {depth}")
        blocks = (depth - 2) // 6
        self.depth = depth
        self.conv1 = nn.Conv2d(in_channels, base_channels, kernel_size=3, padding=1, bias=False)
        self.bn1 = norm2d(base_channels, batch_norm)
        stages = []
        inplanes = base_channels
        for index, planes in enumerate((base_channels, 2 * base_channels, 4 * base_channels)):
            layer = nn.ModuleList()
            for b in range(blocks):
                stride = 2 if (index > 0 and b == 0) else 1
                layer.append(
                    CifarBasicBlock(inplanes, planes, stride=stride, batch_norm=batch_norm, residual=residual)
                )
                inplanes = planes
            stages.append(layer)
        self.layer1, self.layer2, self.layer3 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, num_classes)
        init_he(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        for layer in (self.layer1, self.layer2, self.layer3):
            for block in layer:
                x = block(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))
