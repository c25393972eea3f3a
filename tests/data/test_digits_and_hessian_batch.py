"""The bundled digits dataset, the registry, and the seeded Hessian batch."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from prunehess.data import DATASET_NAMES, DatasetInfo, dataset_info, hessian_batch, load_split
from prunehess.errors import DataError

DEVICES = ["cpu", "meta"] + (["cuda"] if torch.cuda.is_available() else [])


def test_registry() -> None:
    assert DATASET_NAMES == ("mnist", "fashionmnist", "cifar10", "svhn", "digits")
    assert dataset_info("MNIST") == DatasetInfo("mnist", (1, 28, 28), 10, (0.1307,), (0.3081,))
    assert dataset_info("fashionmnist").mean == (0.2860,) and dataset_info("fashionmnist").std == (0.3530,)
    for name in DATASET_NAMES:
        info = dataset_info(name)
        assert len(info.mean) == len(info.std) == info.input_shape[0] and info.num_classes == 10
    with pytest.raises(Exception):
        info.name = "x"  # type: ignore[misc]  # frozen


def test_digits_splits_and_scaling() -> None:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    train = load_split("digits", root="unused", split="train")
    test = load_split("digits", root="unused", split="test")
    assert (len(train), len(test)) == (1500, 297)
    x, y = train[:]
    assert x.shape == (1500, 1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    torch.testing.assert_close(x, torch.from_numpy(bunch.images[:1500, None] / 16).float(), rtol=0, atol=0)
    xt, yt = test[:]
    torch.testing.assert_close(xt, torch.from_numpy(bunch.images[1500:, None] / 16).float(), rtol=0, atol=0)
    assert yt.tolist() == bunch.target[1500:].tolist()


def test_digits_without_sklearn_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sklearn" else find_spec(name, *a))
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(DataError, match="pip install scikit-learn"):
        load_split("digits", root=".", split="train")


def _batch(**overrides: object) -> list[tuple[torch.Tensor, torch.Tensor]]:
    kwargs: dict = {"root": ".", "size": 450, "mini_batch_size": 200, "seed": 1, **overrides}
    return hessian_batch("digits", **kwargs)


def test_hessian_batch_shapes_and_mini_batches() -> None:
    batches = _batch()
    assert [len(x) for x, _ in batches] == [200, 200, 50]
    assert [len(y) for _, y in batches] == [200, 200, 50]
    assert all(x.shape[1:] == (1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64 for x, y in batches)
    assert [len(x) for x, _ in _batch(size=400)] == [200, 200]


def test_hessian_batch_is_seed_deterministic() -> None:
    first, again, other = _batch(seed=3), _batch(seed=3), _batch(seed=4)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    assert not torch.equal(first[0][0], other[0][0])


def test_hessian_batch_is_the_seeded_permutation() -> None:
    x, y = (torch.cat(t) for t in zip(*_batch(seed=7)))
    indices = torch.randperm(1500, generator=torch.Generator().manual_seed(7))[:450]
    xs, ys = load_split("digits", root=".", split="train")[indices]
    assert torch.equal(x, xs) and torch.equal(y, ys)


def test_whole_split_when_size_equals_it() -> None:
    x, y = (torch.cat(t) for t in zip(*_batch(size=1500, mini_batch_size=1000)))
    full_x, full_y = load_split("digits", root=".", split="train")[:]
    key = torch.randn(64, dtype=torch.float64)
    fingerprints = torch.sort(x.reshape(1500, -1).double() @ key).values
    assert torch.equal(fingerprints, torch.sort(full_x.reshape(1500, -1).double() @ key).values)
    assert torch.equal(torch.bincount(y), torch.bincount(full_y))


def test_size_larger_than_split_is_data_error() -> None:
    with pytest.raises(DataError, match="larger than the training split \\(1500 samples\\)"):
        _batch(size=1501)


@pytest.mark.parametrize("device", DEVICES)
def test_hessian_batch_on_device_and_dtype(device: str) -> None:
    batches = _batch(device=device, dtype=torch.float64)
    for x, y in batches:
        assert x.device.type == device and y.device.type == device
        assert x.dtype == torch.float64 and y.dtype == torch.int64


def test_mini_batches_are_views_of_one_moved_tensor() -> None:
    batches = _batch()
    pointers = {x.untyped_storage().data_ptr() for x, _ in batches}
    assert len(pointers) == 1


def test_hessian_batch_indexes_only_the_chosen_samples(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, write_mnist: Callable[..., dict[str, np.ndarray]]
) -> None:
    """Only the chosen samples are normalised: the uint8 images are indexed before any float conversion."""
    from prunehess.data.images import ImageDataset

    write_mnist(n_train=50)
    seen: list[int] = []
    take = ImageDataset.take

    def spy(self: ImageDataset, indices: torch.Tensor, **kwargs: object):
        seen.append(len(indices))
        return take(self, indices, **kwargs)

    monkeypatch.setattr(ImageDataset, "take", spy)
    batches = hessian_batch("mnist", root=tmp_path, size=10, mini_batch_size=4, seed=0)
    assert seen == [10] and [len(x) for x, _ in batches] == [4, 4, 2]
