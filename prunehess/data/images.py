"""An in-memory image dataset that normalises only the samples asked for.

Images stay as stored (``uint8``, shape ``(N, C, H, W)``, possibly a strided view of the loader's array); a
sample is ``(images[i] / divisor - mean) / std`` in float32 with the same operations, in the same order, as
torchvision's ``ToTensor()`` + ``Normalize(mean, std)``, so values are identical to that pipeline.
Indexing with a list, slice or tensor of indices returns a whole batch at once (the loaders use this).
"""
from __future__ import annotations

import operator
from typing import Any, Sequence

import torch
from torch.utils.data import Dataset

__all__ = ["ImageDataset"]


class ImageDataset(Dataset):
    """``(x, y)`` pairs: ``x`` a normalised float32 ``(C, H, W)`` tensor, ``y`` an int64 scalar tensor."""

    def __init__(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        *,
        divisor: float,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        if images.dim() != 4 or len(images) != len(targets):
            raise ValueError(f"need images (N, C, H, W) and N targets, got {tuple(images.shape)} and {len(targets)}")
        self.images = images
        self.targets = targets.to(torch.int64)
        self.divisor = float(divisor)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    def __len__(self) -> int:
        return len(self.targets)

    def take(self, indices: torch.Tensor, *, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """The normalised batch ``(x, y)`` of ``indices`` (a 1-D int64 tensor), converting only those samples."""
        x = self.images[indices].contiguous().to(dtype).div(self.divisor)
        mean = torch.as_tensor(self.mean, dtype=dtype).view(-1, 1, 1)
        std = torch.as_tensor(self.std, dtype=dtype).view(-1, 1, 1)
        return x.sub_(mean).div_(std), self.targets[indices]

    def __getitem__(self, index: Any) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            i = operator.index(index)
        except TypeError:  # a batch of indices
            if isinstance(index, slice):
                return self.take(torch.arange(len(self))[index])
            return self.take(torch.as_tensor(index, dtype=torch.int64).reshape(-1))
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for a dataset of {len(self)} samples")
        x, y = self.take(torch.tensor([i]))
        return x[0], y[0]
