"""Dataset registry: torchvision's MNIST, FashionMNIST, CIFAR-10, SVHN and scikit-learn's bundled digits.

Registry:
    :class:`DatasetInfo`, :data:`DATASET_NAMES`, :func:`dataset_info`
Loading:
    :func:`load_split` (a split as normalised ``(x, y)`` pairs), :func:`test_loader` (test-accuracy batches)
The Hessian batch:
    :func:`hessian_batch` (a seeded subset of the training split, on the device once, in mini-batches)
"""
from __future__ import annotations

from .batches import hessian_batch, test_loader
from .images import ImageDataset
from .registry import DATASET_NAMES, DatasetInfo, dataset_info
from .sources import load_split

__all__ = [
    # registry
    "DatasetInfo",
    "DATASET_NAMES",
    "dataset_info",
    # loading
    "load_split",
    "test_loader",
    "ImageDataset",
    # the Hessian batch
    "hessian_batch",
]
