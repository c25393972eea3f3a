"""Reading each dataset's train or test split from disk (torchvision formats) or scikit-learn's bundled digits.

Where torchvision looks under ``root``: ``MNIST/raw/``, ``FashionMNIST/raw/`` (uncompressed IDX files),
``cifar-10-batches-py/`` (python pickles), ``train_32x32.mat`` / ``test_32x32.mat`` (SVHN). With ``download=True``
(``extract``'s default) torchvision fetches a missing dataset into ``root``, with a progress bar; nothing is fetched
otherwise. MNIST and FashionMNIST are read from their raw files directly when all are there (the arrays torchvision
reads, without importing it); torchvision reads the rest. Images are kept as ``uint8``; see
:class:`~prunehess.data.images.ImageDataset`.
"""
from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path
from typing import Callable, Literal, Optional

import numpy as np
import torch

from prunehess.errors import ConfigError, DataError

from .images import ImageDataset
from .registry import DatasetInfo, dataset_info

__all__ = ["load_split", "expected_files", "DIGITS_TRAIN_SIZE"]

Split = Literal["train", "test"]
DIGITS_TRAIN_SIZE = 1500  # first 1500 of scikit-learn's 1797 digits; the last 297 are the test split


def _one_line(err: BaseException) -> str:
    return " ".join(f"{type(err).__name__}: {err}".split())


def expected_files(name: str, root: Path, split: Split) -> list[Path]:
    """The files torchvision checks under ``root`` before reading ``name``'s ``split`` (none for ``digits``).

    MNIST-like and CIFAR-10 need both splits' files present; SVHN only the split's ``.mat`` file.
    """
    if name in ("mnist", "fashionmnist"):
        raw = root / ("MNIST" if name == "mnist" else "FashionMNIST") / "raw"
        names = ("images-idx3-ubyte", "labels-idx1-ubyte")
        return [raw / f"{prefix}-{name}" for prefix in ("train", "t10k") for name in names]
    if name == "cifar10":
        folder = root / "cifar-10-batches-py"
        return [folder / b for b in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]]
    if name == "svhn":
        return [root / f"{split}_32x32.mat"]
    return []


def _where(name: str, root: Path, split: Split) -> Path:
    """The folder (or, for SVHN, the file) that a message about ``name`` should name."""
    files = expected_files(name, root, split)
    return files[0] if name == "svhn" else files[0].parent


def _idx_array(path: Path, dims: int) -> np.ndarray:
    """An uncompressed IDX file of unsigned bytes with ``dims`` dimensions (MNIST's format: the magic number
    ``0x0000 08 <dims>``, then each dimension as a big-endian 32-bit integer, then the bytes)."""
    data = path.read_bytes()
    header = 4 * (dims + 1)
    if len(data) < header or data[:3] != b"\x00\x00\x08" or data[3] != dims:
        raise ValueError(f"{path}: not an IDX file of {dims}-dimensional unsigned bytes")
    shape = tuple(int.from_bytes(data[4 * i : 4 * i + 4], "big") for i in range(1, dims + 1))
    if len(data) - header != int(np.prod(shape)):
        raise ValueError(f"{path}: {len(data) - header} bytes for the shape {shape}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _idx_arrays(name: str, root: Path, split: Split) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
    """MNIST's or FashionMNIST's split read from its raw IDX files, as torchvision reads them (the same arrays)
    but without importing torchvision (about a second); ``None`` where torchvision should read it: a file
    missing (it may download it) or one that does not parse (its message says what is wrong)."""
    if name not in ("mnist", "fashionmnist") or not all(f.is_file() for f in expected_files(name, root, split)):
        return None
    raw = _where(name, root, split)
    prefix = "train" if split == "train" else "t10k"
    try:
        images = _idx_array(raw / f"{prefix}-images-idx3-ubyte", 3)
        labels = _idx_array(raw / f"{prefix}-labels-idx1-ubyte", 1)
    except (OSError, ValueError):
        return None
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


def _torchvision_arrays(name: str, root: Path, split: Split, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images uint8 (N, C, H, W), targets)`` of a torchvision dataset."""
    from torchvision import datasets

    train = split == "train"
    constructors: dict[str, Callable[[], object]] = {
        "mnist": lambda: datasets.MNIST(str(root), train=train, download=download),
        "fashionmnist": lambda: datasets.FashionMNIST(str(root), train=train, download=download),
        "cifar10": lambda: datasets.CIFAR10(str(root), train=train, download=download),
        "svhn": lambda: datasets.SVHN(str(root), split=split, download=download),
    }
    files = expected_files(name, root, split)
    where = _where(name, root, split)
    try:
        dataset = constructors[name]()
    except ImportError as err:  # SVHN reads .mat files with scipy
        raise DataError(f"{where}: reading {name} needs {err.name or 'scipy'}: pip install scipy") from err
    except Exception as err:  # torchvision raises RuntimeError, parse errors, or network errors on download
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            how = ("downloading is off (--no-download): drop it to fetch the files" if not download
                   else f"the download failed ({_one_line(err)}): connect to the internet and rerun")
            raise DataError(
                f"{where}: {name} {split} split not found (missing {', '.join(missing)}); {how}, "
                f"or pass --data-root DIR for a folder that already holds it"
            ) from err
        raise DataError(f"{where}: cannot read {name} {split} split: {_one_line(err)}") from err
    if name in ("mnist", "fashionmnist"):
        return dataset.data.unsqueeze(1), dataset.targets  # type: ignore[attr-defined]
    if name == "cifar10":  # (N, H, W, C) -> a (N, C, H, W) view
        images = torch.from_numpy(np.asarray(dataset.data)).permute(0, 3, 1, 2)  # type: ignore[attr-defined]
        return images, torch.as_tensor(np.asarray(dataset.targets), dtype=torch.int64)  # type: ignore[attr-defined]
    images = torch.from_numpy(np.asarray(dataset.data))  # type: ignore[attr-defined]  # SVHN: (N, C, H, W)
    return images, torch.as_tensor(np.asarray(dataset.labels), dtype=torch.int64)  # type: ignore[attr-defined]


def _digits_table() -> np.ndarray:
    """scikit-learn's bundled ``digits.csv.gz`` as ``load_digits`` parses it: ``(1797, 65)`` floats, 64 pixel
    values (0..16) then the label.

    The file is read from the installed package, located with :func:`importlib.util.find_spec` without importing
    scikit-learn (importing it costs about a second, most of a small run's data loading); where the file is not
    where the package keeps it, or does not parse, ``sklearn.datasets.load_digits`` reads it.
    """
    spec = importlib.util.find_spec("sklearn")
    if spec is None:
        raise DataError("digits: the bundled digits dataset needs scikit-learn: pip install scikit-learn")
    for folder in spec.submodule_search_locations or ():
        try:
            with gzip.open(Path(folder) / "datasets" / "data" / "digits.csv.gz", "rt", encoding="utf-8") as f:
                table = np.loadtxt(f, delimiter=",")
        except (OSError, ValueError, EOFError):
            continue
        if table.ndim == 2 and table.shape[1] == 65:
            return table
    return _digits_table_from_sklearn()


def _digits_table_from_sklearn() -> np.ndarray:
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise DataError("digits: the bundled digits dataset needs scikit-learn: pip install scikit-learn") from err
    data, target = load_digits(return_X_y=True)
    return np.column_stack([data, target])


def _digits_arrays(split: Split) -> tuple[torch.Tensor, torch.Tensor]:
    table = _digits_table()
    images = torch.from_numpy(table[:, :-1].astype(np.uint8).reshape(-1, 1, 8, 8))  # values 0..16
    targets = torch.from_numpy(table[:, -1].astype(np.int64))
    part = slice(None, DIGITS_TRAIN_SIZE) if split == "train" else slice(DIGITS_TRAIN_SIZE, None)
    return images[part], targets[part]


def _check_shape(info: DatasetInfo, where: object, images: torch.Tensor, targets: torch.Tensor) -> None:
    if tuple(images.shape[1:]) != info.input_shape or images.dtype != torch.uint8:
        raise DataError(
            f"{where}: {info.name} images are {images.dtype} {tuple(images.shape[1:])}, "
            f"expected uint8 {info.input_shape}"
        )
    if len(targets) and (int(targets.min()) < 0 or int(targets.max()) >= info.num_classes):
        raise DataError(f"{where}: {info.name} labels outside 0..{info.num_classes - 1}")


def load_split(name: str, *, root: str | Path, split: Split, download: bool = False) -> ImageDataset:
    """The ``train`` or ``test`` split of dataset ``name`` as a dataset of normalised ``(x, y)`` pairs.

    ``x`` is a float32 ``(C, H, W)`` tensor normalised with :func:`dataset_info`'s mean and std; ``y`` an int64
    scalar tensor. ``digits`` ignores ``root`` and ``download``. A missing or unreadable dataset is one
    :class:`DataError` line saying where it looked and how to get it.
    """
    info = dataset_info(name)
    if split not in ("train", "test"):
        raise ConfigError(f"unknown split '{split}'; known: train, test")
    root = Path(root).expanduser()
    if info.name == "digits":
        images, targets = _digits_arrays(split)
        where: object = "digits"
        divisor = 16.0
    else:
        found = _idx_arrays(info.name, root, split)
        images, targets = found if found is not None else _torchvision_arrays(info.name, root, split, download)
        where = _where(info.name, root, split)
        divisor = 255.0
    _check_shape(info, where, images, targets)
    return ImageDataset(images, targets, divisor=divisor, mean=info.mean, std=info.std)
