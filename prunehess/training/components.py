"""What a training run trains on (model factory, data, Hessian batch), its batches and its derived seeds.

Every random choice of a run draws from a seed derived from ``(seed, purpose, iteration, …)``, never from the
order in which earlier draws happened: two runs with the same seed — two variants of one ``--variants`` command,
or a resumed run and one that went through — see the same initialisation and the same data order.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
from torch import Tensor, nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler, TensorDataset

from prunehess.training.config import TrainConfig
from prunehess.training.pruning import default_is_prunable

__all__ = ["RunComponents", "default_components", "derived_seed", "make_loader", "DEFAULT_DATA_ROOT"]

DEFAULT_DATA_ROOT = Path("data")  # relative to the working directory, when no --data-root is given


@dataclass
class RunComponents:
    """What a run trains on. :func:`default_components` builds them from the registries.

    Attributes:
        model_factory: returns a freshly initialised model, drawing from the global torch RNG.
        train_set, test_set: map-style datasets of ``(x, y)``.
        hessian_batches: returns the fixed Hessian batch ``[(x, y), …]`` for curvature tracking and Hessian-aware
            pruning (called only when one of them is used).
        is_prunable: ``(name, param) -> bool``.
    """

    model_factory: Callable[[], nn.Module]
    train_set: Dataset
    test_set: Dataset
    hessian_batches: Optional[Callable[[], Sequence[tuple[Tensor, Tensor]]]] = None
    is_prunable: Callable[[str, Tensor], bool] = default_is_prunable


def default_components(config: TrainConfig) -> RunComponents:
    """Model, data and Hessian batch from :mod:`prunehess.models` and :mod:`prunehess.data`."""
    from prunehess import data, models

    info = data.dataset_info(config.dataset)
    root = config.data_root if config.data_root is not None else DEFAULT_DATA_ROOT

    def factory() -> nn.Module:
        return models.build_model(config.model, input_shape=tuple(info.input_shape), num_classes=info.num_classes,
                                  **dict(config.model_kwargs))

    def hessian_batches():
        return data.hessian_batch(
            config.dataset, size=config.hessian_batch_size,
            mini_batch_size=config.hessian_mini_batch_size or config.hessian_batch_size,
            seed=config.seed, device=torch.device(config.device), root=root, download=config.download,
        )

    train_set = data.load_split(config.dataset, root=root, split="train", download=config.download)
    test_set = data.load_split(config.dataset, root=root, split="test", download=config.download)
    return RunComponents(factory, train_set, test_set, hessian_batches, models.is_prunable)


def _whole_batches(batch: Any) -> Any:
    return batch


def make_loader(dataset: Dataset, batch_size: int, *, generator: Optional[torch.Generator], num_workers: int = 0
                ) -> DataLoader:
    """Batches of ``dataset`` (shuffled by ``generator`` when given). Datasets that index a batch at once
    (``prunehess.data``'s image sets, ``TensorDataset``) are read one batch per lookup, others sample by sample;
    the order is the same either way."""
    sampler = RandomSampler(dataset, generator=generator) if generator is not None else SequentialSampler(dataset)
    if hasattr(dataset, "take") or isinstance(dataset, TensorDataset):
        batches = BatchSampler(sampler, batch_size=batch_size, drop_last=False)
        return DataLoader(dataset, batch_size=None, sampler=batches, collate_fn=_whole_batches,
                          num_workers=num_workers)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers)


def derived_seed(seed: int, *keys: Any) -> int:
    """A 63-bit seed for one purpose, e.g. ``derived_seed(seed, "shuffle", iteration, epoch)``."""
    digest = hashlib.sha256(repr((int(seed),) + keys).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)
