"""Seeded random probes, drawn on the CPU so that a seed gives the same vectors on every device."""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["make_generator", "rademacher", "gaussian"]


def make_generator(seed: int) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(int(seed))


def rademacher(shape: tuple[int, ...], *, generator: torch.Generator, dtype: torch.dtype, device) -> Tensor:
    """Entries ±1 with equal probability."""
    z = torch.randint(0, 2, shape, generator=generator, dtype=torch.int8)
    return z.to(dtype).mul_(2).sub_(1).to(device)  # in place: one vector's memory, not three


def gaussian(shape: tuple[int, ...], *, generator: torch.Generator, dtype: torch.dtype, device) -> Tensor:
    """Standard normal entries."""
    return torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype=dtype, device=device)
