"""Reading without the heavy imports: scikit-learn's digits from its bundled CSV, MNIST from its raw IDX files.

Both give the arrays the libraries give (``load_digits()``, ``torchvision.datasets.MNIST``), and neither imports
the library where the files are there (importing scikit-learn or torchvision costs about a second a process).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from prunehess.data import sources
from prunehess.data.sources import DIGITS_TRAIN_SIZE, load_split

REAL_ROOT = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def test_digits_arrays_are_load_digits_arrays() -> None:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.uint8)[:, None]
    for split, part in (("train", slice(None, DIGITS_TRAIN_SIZE)), ("test", slice(DIGITS_TRAIN_SIZE, None))):
        x, y = sources._digits_arrays(split)
        assert x.dtype == torch.uint8 and y.dtype == torch.int64
        np.testing.assert_array_equal(x.numpy(), images[part])
        np.testing.assert_array_equal(y.numpy(), bunch.target[part])
    np.testing.assert_array_equal(sources._digits_table(), sources._digits_table_from_sklearn())


def _imports_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "; import sys; print(' '.join(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True).stdout.split()
    return {name.split(".")[0] for name in out}


def test_digits_do_not_import_sklearn() -> None:
    assert "sklearn" not in _imports_after("from prunehess.data import load_split; load_split('digits', root='.', "
                                           "split='train')")


def test_digits_fall_back_to_load_digits_without_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Where the CSV is not where the package keeps it (another layout of scikit-learn), ``load_digits`` reads it."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    moved = type(spec)(spec.name, spec.loader, origin=spec.origin, is_package=True)
    moved.submodule_search_locations = [str(tmp_path)]  # no datasets/data/digits.csv.gz there
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: moved)
    np.testing.assert_array_equal(sources._digits_table(), sources._digits_table_from_sklearn())


@pytest.mark.parametrize(("name", "folder"), [("mnist", "MNIST"), ("fashionmnist", "FashionMNIST")])
def test_idx_files_read_as_torchvision_reads_them(name: str, folder: str, tmp_path: Path,
                                                  write_mnist: Callable[..., dict[str, np.ndarray]]) -> None:
    write_mnist(folder=folder)
    for split in ("train", "test"):
        direct = sources._idx_arrays(name, tmp_path, split)
        assert direct is not None
        via = sources._torchvision_arrays(name, tmp_path, split, download=False)
        for a, b in zip(direct, via):
            assert a.dtype == b.dtype and torch.equal(a, b)


def test_a_broken_idx_file_is_left_to_torchvision(tmp_path: Path,
                                                  write_mnist: Callable[..., dict[str, np.ndarray]]) -> None:
    write_mnist()
    (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + b"\x00" * 7)
    assert sources._idx_arrays("mnist", tmp_path, "train") is None
    assert sources._idx_arrays("mnist", tmp_path, "test") is not None
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    assert sources._idx_arrays("mnist", tmp_path, "test") is None  # a missing file: torchvision may download it


@pytest.mark.skipif(not (REAL_ROOT / "MNIST" / "raw").is_dir(), reason=f"no real MNIST at {REAL_ROOT}")
def test_real_mnist_without_torchvision() -> None:
    for split in ("train", "test"):
        direct = sources._idx_arrays("mnist", REAL_ROOT, split)
        via = sources._torchvision_arrays("mnist", REAL_ROOT, split, download=False)
        assert direct is not None and all(torch.equal(a, b) for a, b in zip(direct, via))
    code = f"from prunehess.data import load_split; load_split('mnist', root={str(REAL_ROOT)!r}, split='train')"
    assert "torchvision" not in _imports_after(code)
    assert len(load_split("mnist", root=REAL_ROOT, split="test")) > 0
