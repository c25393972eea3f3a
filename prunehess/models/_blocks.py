"""Pieces shared by the ResNets: 3x3 convolutions, optional BatchNorm, He initialisation.

Forward passes use no in-place operations, so ``torch.func`` transforms (``vmap``, ``jvp`` of ``grad``) apply.
"""
from __future__ import annotations

from torch import nn

__all__ = ["conv3x3", "norm2d", "init_he"]


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1 and no bias."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def norm2d(channels: int, batch_norm: bool) -> nn.Module:
    """``BatchNorm2d(channels)``, or a parameter-free ``Identity`` when ``batch_norm`` is off."""
    return nn.BatchNorm2d(channels) if batch_norm else nn.Identity()


def init_he(model: nn.Module) -> None:
    """Convolutions ~ N(0, 2 / (k·k·out_channels)), BatchNorm weight 1 and bias 0 (He et al., 2015)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
