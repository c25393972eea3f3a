"""What prunehess knows of each dataset: input shape, class count and normalisation."""
from __future__ import annotations

from dataclasses import dataclass

from prunehess.errors import DataError

__all__ = ["DatasetInfo", "DATASET_NAMES", "dataset_info"]


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset's name, sample shape ``(C, H, W)``, class count and per-channel normalisation.

    Inputs are ``(pixel / max_pixel - mean) / std`` channel by channel.
    """

    name: str
    input_shape: tuple[int, int, int]
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


DATASET_NAMES: tuple[str, ...] = ("mnist", "fashionmnist", "cifar10", "svhn", "digits")

_INFOS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo("mnist", (1, 28, 28), 10, (0.1307,), (0.3081,)),
    "fashionmnist": DatasetInfo("fashionmnist", (1, 28, 28), 10, (0.2860,), (0.3530,)),
    # PyHessian's CIFAR-10 normalisation (its utils.getData), which the seed's analyses used
    "cifar10": DatasetInfo("cifar10", (3, 32, 32), 10, (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "svhn": DatasetInfo("svhn", (3, 32, 32), 10, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
    # scikit-learn's 8x8 digits: scaled to [0, 1] by /16, no further normalisation
    "digits": DatasetInfo("digits", (1, 8, 8), 10, (0.0,), (1.0,)),
}


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name`` (any case); :class:`DataError` listing the known names otherwise.

    Example:
        >>> dataset_info("mnist").input_shape
        (1, 28, 28)
    """
    info = _INFOS.get(name.lower())
    if info is None:
        raise DataError(f"unknown dataset '{name}'; known: {', '.join(DATASET_NAMES)}")
    return info
