"""Tiny runs for the training tests: a small MLP on synthetic data, and digits + fc1 through the registries."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from prunehess.training import RunComponents, TrainConfig


class TinyMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, 13), nn.ReLU(), nn.Linear(13, 7), nn.ReLU(), nn.Linear(7, 3))

    def forward(self, x):
        return self.body(x)


def tiny_components() -> RunComponents:
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(96, 6, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    xt = torch.randn(40, 6, generator=g)
    yt = (xt[:, 0] > 0).long() + (xt[:, 1] > 0.5).long()
    return RunComponents(
        model_factory=TinyMLP,
        train_set=TensorDataset(x, y),
        test_set=TensorDataset(xt, yt),
        hessian_batches=lambda: [(x[:48], y[:48])],
    )


def tiny_config(output: Path, **overrides) -> TrainConfig:
    values = dict(dataset="tiny", model="tiny", output=output, prune_iterations=3, prune_percent=20.0, epochs=3,
                  save_freq=1, batch_size=16, test_batch_size=40, optimizer="sgd", lr=0.05, momentum=0.9,
                  weight_decay=1e-3, seed=7, device="cpu")
    values.update(overrides)
    return TrainConfig(**values)


def digits_config(output: Path, **overrides) -> TrainConfig:
    values = dict(dataset="digits", model="fc1", output=output, prune_iterations=3, prune_percent=20.0, epochs=2,
                  save_freq=1, batch_size=100, seed=3, device="cpu")
    values.update(overrides)
    return TrainConfig(**values)


def file_digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def load(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture
def components() -> RunComponents:
    return tiny_components()


class _Helpers:
    """The helpers above, as a fixture (test modules cannot import conftest under --import-mode=importlib)."""

    TinyMLP = TinyMLP
    components = staticmethod(tiny_components)
    config = staticmethod(tiny_config)
    digits_config = staticmethod(digits_config)
    digests = staticmethod(file_digests)
    load = staticmethod(load)


@pytest.fixture
def h() -> type[_Helpers]:
    return _Helpers
