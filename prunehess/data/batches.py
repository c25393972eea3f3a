"""The Hessian batch (a seeded subset of the training split, on the device once) and the test-set loader."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import BatchSampler, DataLoader, SequentialSampler

from prunehess.errors import ConfigError, DataError

from .sources import load_split

__all__ = ["hessian_batch", "test_loader"]


def hessian_batch(
    name: str,
    *,
    root: str | Path,
    size: int,
    mini_batch_size: int,
    seed: int,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    download: bool = False,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``size`` training samples chosen by a seeded permutation, as mini-batches on ``device``.

    The indices are ``torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:size]`` (all of
    the split, permuted, when ``size`` equals its length). Only those samples are normalised (in ``dtype``); they
    are stacked, moved to ``device`` once, and split into views of ``mini_batch_size`` samples (the last may be
    smaller). Labels are int64. ``size`` larger than the split raises :class:`DataError`.
    """
    if size < 1 or mini_batch_size < 1:
        raise ConfigError(f"hessian batch size ({size}) and mini-batch size ({mini_batch_size}) must be >= 1")
    dataset = load_split(name, root=root, split="train", download=download)
    if size > len(dataset):
        raise DataError(
            f"{name}: hessian batch size {size} is larger than the training split ({len(dataset)} samples)"
        )
    generator = torch.Generator().manual_seed(int(seed))
    indices = torch.randperm(len(dataset), generator=generator)[:size]
    x, y = dataset.take(indices, dtype=dtype)
    x, y = x.to(device), y.to(device)
    return list(zip(torch.split(x, mini_batch_size), torch.split(y, mini_batch_size)))


def _as_batch(batch: Any) -> Any:
    """Collate for pre-batched samples: pass the ``(x, y)`` tuple through untouched."""
    return batch


def test_loader(name: str, *, root: str | Path, batch_size: int = 1000, download: bool = False) -> DataLoader:
    """The test split in order, as ``(x, y)`` batches of ``batch_size`` (normalised float32 on the CPU).

    Each batch is gathered and normalised in one indexing operation rather than sample by sample.
    """
    if batch_size < 1:
        raise ConfigError(f"test batch size must be >= 1, not {batch_size}")
    dataset = load_split(name, root=root, split="test", download=download)
    sampler = BatchSampler(SequentialSampler(dataset), batch_size=batch_size, drop_last=False)
    return DataLoader(dataset, batch_size=None, sampler=sampler, collate_fn=_as_batch)


test_loader.__test__ = False  # type: ignore[attr-defined]  # not a pytest test when imported into tests
