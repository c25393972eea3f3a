"""Model registry: the seed's networks by name, and the user's own through ``FILE.py:factory``.

Builders:
    :func:`build_model`, :data:`MODEL_NAMES` (``fc1``, ``lenet5``, ``resnet20``, ``resnet18``, ``vgg11_bn``)
Pruning:
    :func:`is_prunable` (weights of Linear/Conv layers)
Architectures:
    :class:`FC1`, :class:`LeNet5`, :class:`CifarResNet`, :class:`ResNet18`, :class:`VGG11`
"""
from __future__ import annotations

from .fc1 import FC1
from .lenet5 import LeNet5
from .registry import MODEL_NAMES, build_model, is_prunable
from .resnet18 import ResNet18
from .resnet_cifar import CifarResNet
from .vgg import VGG11

__all__ = [
    # builders
    "MODEL_NAMES",
    "build_model",
    # pruning
    "is_prunable",
    # architectures
    "FC1",
    "LeNet5",
    "CifarResNet",
    "ResNet18",
    "VGG11",
]
