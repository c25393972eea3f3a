"""torchvision datasets read from tiny files written in their real on-disk formats, normalised as documented."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from torchvision import datasets, transforms

from prunehess.data import dataset_info, load_split, test_loader
from prunehess.errors import DataError


def _normalised(images_nchw: np.ndarray, name: str) -> torch.Tensor:
    """The documented normalisation, computed independently: (pixel / 255 - mean) / std per channel."""
    info = dataset_info(name)
    x = torch.from_numpy(images_nchw.astype(np.float32) / np.float32(255))
    mean = torch.tensor(info.mean).view(-1, 1, 1)
    std = torch.tensor(info.std).view(-1, 1, 1)
    return (x - mean) / std


@pytest.mark.parametrize(("name", "folder"), [("mnist", "MNIST"), ("fashionmnist", "FashionMNIST")])
def test_mnist_like_from_idx_files(
    name: str, folder: str, tmp_path: Path, write_mnist: Callable[..., dict[str, np.ndarray]]
) -> None:
    written = write_mnist(folder=folder)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        ds = load_split(name, root=tmp_path, split=split)
        images, labels = written[f"{prefix}_images"], written[f"{prefix}_labels"]
        assert len(ds) == len(images)
        x, y = ds[3]
        assert x.dtype == torch.float32 and x.shape == (1, 28, 28)
        assert y.dtype == torch.int64 and y.dim() == 0 and int(y) == labels[3]
        expected = _normalised(images[:, None], name)
        torch.testing.assert_close(ds[list(range(len(ds)))][0], expected, rtol=0, atol=1e-6)
    mean, std = dataset_info(name).mean[0], dataset_info(name).std[0]
    assert float(load_split(name, root=tmp_path, split="train")[0][0][0, 0, 0]) == pytest.approx(
        (written["train_images"][0, 0, 0] / 255 - mean) / std, abs=1e-6
    )


def test_mnist_values_match_torchvision_transforms_bit_for_bit(
    tmp_path: Path, write_mnist: Callable[..., dict[str, np.ndarray]]
) -> None:
    write_mnist()
    reference = datasets.MNIST(
        str(tmp_path),
        train=True,
        transform=transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))]),
    )
    ours = load_split("mnist", root=tmp_path, split="train")
    for i in range(len(ours)):
        assert torch.equal(ours[i][0], reference[i][0])
        assert int(ours[i][1]) == reference[i][1]


def test_cifar10_in_its_real_format(tmp_path: Path, write_cifar10: Callable[..., dict[str, np.ndarray]]) -> None:
    """CIFAR-10 pickles; torchvision's md5 integrity check is monkeypatched (see the ``write_cifar10`` fixture)."""
    written = write_cifar10()
    for split in ("train", "test"):
        ds = load_split("cifar10", root=tmp_path, split=split)
        x, y = ds[list(range(len(ds)))]
        assert x.shape == (len(written[f"{split}_labels"]), 3, 32, 32)
        expected = _normalised(written[f"{split}_images"].transpose(0, 3, 1, 2), "cifar10")
        torch.testing.assert_close(x, expected, rtol=0, atol=1e-6)
        assert y.tolist() == written[f"{split}_labels"].tolist()


def test_svhn_in_its_real_format(tmp_path: Path, write_svhn: Callable[..., dict[str, np.ndarray]]) -> None:
    """SVHN .mat files; torchvision's md5 integrity check is monkeypatched (see the ``write_svhn`` fixture)."""
    written = write_svhn(split="test", n=12)
    ds = load_split("svhn", root=tmp_path, split="test")
    x, y = ds[:]
    torch.testing.assert_close(x, _normalised(written["images"], "svhn"), rtol=0, atol=1e-6)
    assert y.tolist() == written["labels"].tolist()  # label 10 read as digit 0
    assert 0 in y.tolist()


def test_test_loader_batches_in_order(tmp_path: Path, write_mnist: Callable[..., dict[str, np.ndarray]]) -> None:
    written = write_mnist(n_test=7)
    loader = test_loader("mnist", root=tmp_path, batch_size=3)
    batches = list(loader)
    assert [len(y) for _, y in batches] == [3, 3, 1]
    assert len(loader) == 3
    x = torch.cat([x for x, _ in batches])
    torch.testing.assert_close(x, _normalised(written["t10k_images"][:, None], "mnist"), rtol=0, atol=1e-6)
    assert torch.cat([y for _, y in batches]).tolist() == written["t10k_labels"].tolist()


@pytest.mark.parametrize(
    ("name", "where"),
    [
        ("mnist", "MNIST/raw"),
        ("fashionmnist", "FashionMNIST/raw"),
        ("cifar10", "cifar-10-batches-py"),
        ("svhn", "train_32x32.mat"),
    ],
)
def test_missing_dataset_says_where_and_how(name: str, where: str, tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        load_split(name, root=tmp_path, split="train")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(str(tmp_path / where))
    assert "--no-download" in message and "--data-root" in message


def test_half_present_mnist_names_the_missing_files(
    tmp_path: Path, write_mnist: Callable[..., dict[str, np.ndarray]]
) -> None:
    write_mnist()
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="missing t10k-labels-idx1-ubyte"):
        load_split("mnist", root=tmp_path, split="train")


def test_corrupt_idx_file_is_one_line_data_error(
    tmp_path: Path, write_mnist: Callable[..., dict[str, np.ndarray]]
) -> None:
    write_mnist()
    (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x0d\x03garbage")
    with pytest.raises(DataError) as err:
        load_split("mnist", root=tmp_path, split="train")
    assert str(err.value).startswith(f"{tmp_path / 'MNIST' / 'raw'}: cannot read mnist train split")
    assert "\n" not in str(err.value)


def test_unknown_dataset_lists_known_names() -> None:
    expected = r"^unknown dataset 'imagenet'; known: mnist, fashionmnist, cifar10, svhn, digits$"
    with pytest.raises(DataError, match=expected):
        load_split("imagenet", root=".", split="train")
