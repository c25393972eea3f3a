"""The genuine MNIST files at ../shared/data (beside the project, here and in CI); skipped where absent."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from prunehess.data import hessian_batch, load_split, test_loader

REAL_ROOT = Path(__file__).resolve().parents[2].parent / "shared" / "data"

pytestmark = pytest.mark.skipif(
    not (REAL_ROOT / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file(), reason=f"no real MNIST at {REAL_ROOT}"
)


def test_real_mnist_normalisation_and_batch() -> None:
    train = load_split("mnist", root=REAL_ROOT, split="train")
    assert len(train) >= 1000
    batches = hessian_batch("mnist", root=REAL_ROOT, size=1000, mini_batch_size=300, seed=1)
    assert [len(x) for x, _ in batches] == [300, 300, 300, 100]
    x = torch.cat([x for x, _ in batches])
    y = torch.cat([y for _, y in batches])
    # the usual constants fit real digits: roughly zero mean and unit variance
    assert abs(float(x.mean())) < 0.1 and abs(float(x.std()) - 1) < 0.1
    assert float(x.min()) == pytest.approx(-0.1307 / 0.3081, abs=1e-6)
    assert set(y.tolist()) == set(range(10))


def test_real_mnist_test_loader() -> None:
    loader = test_loader("mnist", root=REAL_ROOT, batch_size=1000)
    x, y = next(iter(loader))
    assert x.shape == (1000, 1, 28, 28) and y.shape == (1000,) and y.dtype == torch.int64
    assert sum(len(y) for _, y in loader) == len(load_split("mnist", root=REAL_ROOT, split="test"))
