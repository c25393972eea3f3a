"""Model registry: build a network by name for a dataset's input shape and class count."""
from __future__ import annotations

from typing import Callable

from torch import nn

from prunehess.errors import ConfigError
from prunehess.operators.masks import is_prunable_weight

from .factory import build_from_factory, is_factory_spec
from .fc1 import FC1
from .lenet5 import LeNet5
from .resnet18 import ResNet18
from .resnet_cifar import CifarResNet
from .vgg import VGG11

__all__ = ["MODEL_NAMES", "build_model", "is_prunable"]

MODEL_NAMES: tuple[str, ...] = ("fc1", "lenet5", "resnet20", "resnet18", "vgg11_bn")

_Builder = Callable[[tuple[int, int, int], int, bool, bool, int], nn.Module]


def _resnet20(shape: tuple[int, int, int], classes: int, bn: bool, res: bool, depth: int) -> nn.Module:
    try:
        return CifarResNet(depth=depth, in_channels=shape[0], num_classes=classes, batch_norm=bn, residual=res)
    except ValueError as err:
        raise ConfigError(f"resnet20: {err}") from err


_BUILDERS: dict[str, _Builder] = {
    "fc1": lambda shape, classes, bn, res, depth: FC1(shape, classes),
    "lenet5": lambda shape, classes, bn, res, depth: LeNet5(shape, classes),
    "resnet20": _resnet20,
    "resnet18": lambda shape, classes, bn, res, depth: ResNet18(
        in_channels=shape[0], num_classes=classes, batch_norm=bn, residual=res
    ),
    "vgg11_bn": lambda shape, classes, bn, res, depth: VGG11(shape, classes, batch_norm=bn),
}


def build_model(
    name: str,
    *,
    input_shape: tuple[int, int, int],
    num_classes: int,
    batch_norm: bool = True,
    residual: bool = True,
    depth: int = 20,
) -> nn.Module:
    """Build model ``name`` (one of :data:`MODEL_NAMES`, any case) or a user factory ``FILE.py:factory``.

    ``batch_norm``/``residual`` switch BatchNorm and skip connections of ``resnet20`` and ``resnet18``
    (``batch_norm`` also gives ``vgg11_bn`` torchvision's plain ``vgg11`` layout); ``depth`` (6n+2) sizes
    ``resnet20``. The other models ignore them; user factories receive those their signature accepts.

    Example:
        >>> model = build_model("fc1", input_shape=(1, 28, 28), num_classes=10)
        >>> [k for k in model.state_dict()][:2]
        ['classifier.0.weight', 'classifier.0.bias']
    """
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3 or min(shape) < 1 or num_classes < 1:
        raise ConfigError(f"{name}: input_shape must be (C, H, W) of positive sizes and num_classes >= 1")
    builder = _BUILDERS.get(name.lower())
    if builder is not None:
        return builder(shape, int(num_classes), bool(batch_norm), bool(residual), int(depth))  # type: ignore[arg-type]
    if is_factory_spec(name):
        return build_from_factory(
            name, input_shape=shape, num_classes=num_classes, batch_norm=batch_norm, residual=residual, depth=depth
        )
    raise ConfigError(
        f"unknown model '{name}'; known: {', '.join(MODEL_NAMES)} (or your own as FILE.py:factory "
        "or package.module:factory)"
    )


is_prunable = is_prunable_weight  # one definition of "prunable" for masks, pruning and the models
