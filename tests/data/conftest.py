"""Writers of tiny datasets in the real on-disk formats that torchvision reads."""
from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path
from typing import Callable

import numpy as np
import pytest


def _write_idx(path: Path, array: np.ndarray) -> None:
    """An uncompressed IDX file: magic 0x00000803 (uint8, 3-D images) or 0x00000801 (labels), big-endian dims."""
    assert array.dtype == np.uint8
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.tobytes())


def _images(rng: np.random.Generator, n: int, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)


@pytest.fixture()
def write_mnist(tmp_path: Path) -> Callable[..., dict[str, np.ndarray]]:
    """Write ``<root>/<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``; return the arrays written."""

    def write(folder: str = "MNIST", n_train: int = 12, n_test: int = 5, seed: int = 0) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        raw = tmp_path / folder / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        arrays = {}
        for prefix, n in (("train", n_train), ("t10k", n_test)):
            images, labels = _images(rng, n, (28, 28)), rng.integers(0, 10, size=n, dtype=np.uint8)
            _write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
            _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
            arrays[f"{prefix}_images"], arrays[f"{prefix}_labels"] = images, labels
        return arrays

    return write


@pytest.fixture()
def write_cifar10(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., dict[str, np.ndarray]]:
    """Write ``<root>/cifar-10-batches-py/`` pickles (rows of 3072 bytes, R then G then B planes).

    torchvision checks these files' md5 sums against the real CIFAR-10's; the check is monkeypatched to a
    plain existence check so that tiny files in the real format load.
    """
    import torchvision.datasets.cifar as cifar

    monkeypatch.setattr(cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))

    def write(per_batch: int = 2, n_test: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        folder = tmp_path / "cifar-10-batches-py"
        folder.mkdir(parents=True, exist_ok=True)
        train_images, train_labels = [], []
        for name, n in [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", n_test)]:
            images = _images(rng, n, (32, 32, 3))  # HWC, as torchvision exposes them
            labels = rng.integers(0, 10, size=n).tolist()
            rows = images.transpose(0, 3, 1, 2).reshape(n, 3072)
            with open(folder / name, "wb") as f:
                pickle.dump({"batch_label": name, "data": rows, "labels": labels}, f)
            if name == "test_batch":
                test_images, test_labels = images, labels
            else:
                train_images.append(images)
                train_labels += labels
        with open(folder / "batches.meta", "wb") as f:
            pickle.dump({"label_names": [f"class{i}" for i in range(10)], "num_vis": 3072}, f)
        return {
            "train_images": np.concatenate(train_images),
            "train_labels": np.array(train_labels),
            "test_images": test_images,
            "test_labels": np.array(test_labels),
        }

    return write


@pytest.fixture()
def write_svhn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., dict[str, np.ndarray]]:
    """Write ``<root>/{split}_32x32.mat`` with ``X`` (32, 32, 3, N) uint8 and ``y`` (N, 1) in 1..10 (10 = digit 0).

    torchvision checks the file's md5 sum against the real SVHN's; the check is monkeypatched to a plain
    existence check so that tiny files in the real format load.
    """
    import scipy.io
    import torchvision.datasets.svhn as svhn

    monkeypatch.setattr(svhn, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))

    def write(split: str = "train", n: int = 6, seed: int = 0) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        images = _images(rng, n, (3, 32, 32))  # NCHW
        digits = np.arange(n) % 10
        y = np.where(digits == 0, 10, digits).astype(np.uint8).reshape(n, 1)
        scipy.io.savemat(tmp_path / f"{split}_32x32.mat", {"X": images.transpose(2, 3, 1, 0), "y": y})
        return {"images": images, "labels": digits}

    return write
