#!/usr/bin/env python
"""A 41 × 41 loss surface of LeNet-300-100, batched (``vmap`` chunks) against a per-point loop.

    python benchmarks/bench_landscape.py                  # CPU; real MNIST from ../shared/data when present
    python benchmarks/bench_landscape.py --device cuda --points 41 --repeat 3

The model is ``prunehess.models.FC1`` on 28×28 MNIST (the Hessian batch of ``prunehess.data.hessian_batch("mnist",
root="../shared/data", size=1000, mini_batch_size=200, seed=1)``), with half of each weight matrix pruned (exact
zeros), or on 8×8 digits when MNIST is not there. The surface is the loss at ``θ + a·d₁ + b·d₂`` over a 41 × 41 grid
of ``a, b`` in ``[-1, 1]``, ``d₁, d₂`` two filter-normalised random directions (Li et al. 2018), both ways:

- batched: :func:`prunehess.geometry.loss_landscape`: ``torch.func.functional_call`` under ``vmap`` over chunks of
  grid points sized to the memory budget, one forward pass per mini-batch and chunk;
- loop: what Li et al.'s ``loss-landscape`` does: for each point, copy ``θ + a·d₁ + b·d₂`` into one model's weights,
  then a forward pass per mini-batch.

Same points, same numbers (the largest difference is printed); the times are the best of ``--repeat`` runs.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from prunehess.data import hessian_batch
from prunehess.geometry import filter_normalized_direction, loss_landscape, steps, surviving_masks
from prunehess.models import FC1

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def _setup(device: torch.device):
    """The model (half its weights pruned), its Hessian batch, two directions, and which data it is."""
    try:
        batches = hessian_batch("mnist", root=SHARED_DATA, size=1000, mini_batch_size=200, seed=1, device=device)
        name, shape = "mnist (1000 samples, ../shared/data)", (1, 28, 28)
    except Exception:  # no MNIST here: the bundled digits
        batches = hessian_batch("digits", root=SHARED_DATA, size=1000, mini_batch_size=200, seed=1, device=device)
        name, shape = "digits (1000 samples)", (1, 8, 8)
    torch.manual_seed(0)
    model = FC1(shape, 10).to(device).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.mul_(p.abs() > p.abs().median())
    masks = surviving_masks(model, {})
    params = dict(model.named_parameters())
    d1 = filter_normalized_direction(params, masks, seed=1)
    d2 = filter_normalized_direction(params, masks, seed=2)
    return model, batches, d1, d2, name


def batched(model, batches, d1, d2, t):
    result = loss_landscape(model, {"d1": d1, "d2": d2}, t, batches, curves=[], surface=("d1", "d2", t, t))
    return result.surface, result.chunk


@torch.no_grad()
def loop(model, batches, d1, d2, t):
    """Li et al.'s way: each point's weights copied into the model, then the forward passes."""
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    named = dict(model.named_parameters())
    total = sum(len(y) for _, y in batches)
    out = np.empty((len(t), len(t)))
    for i, a in enumerate(t):
        for j, b in enumerate(t):
            for n, p in named.items():
                p.copy_(base[n] + float(a) * d1[n] + float(b) * d2[n])
            out[i, j] = sum(float(F.cross_entropy(model(x), y, reduction="sum")) for x, y in batches) / total
    for n, p in named.items():
        p.copy_(base[n])
    return out


def _best_time(function, repeat: int, device: torch.device):
    best, value = float("inf"), None
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        value = function()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - started)
    return best, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--points", type=int, default=41)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    device = torch.device(args.device)
    model, batches, d1, d2, data = _setup(device)
    t = steps(1.0, args.points)
    batched(model, batches, d1, d2, t[:3])  # warm up (vmap's first call traces)
    fast, (surface, chunk) = _best_time(lambda: batched(model, batches, d1, d2, t), args.repeat, device)
    slow, reference = _best_time(lambda: loop(model, batches, d1, d2, t), args.repeat, device)
    points = args.points**2
    print(f"LeNet-300-100 (FC1, {sum(p.numel() for p in model.parameters())} parameters, half the weights pruned) "
          f"on {data}, device {device}, torch {torch.__version__}")
    print(f"{args.points} x {args.points} surface = {points} points")
    print(f"  batched (vmap, {chunk} points per pass): {fast:8.2f} s  ({1e3 * fast / points:.2f} ms/point)")
    print(f"  per-point loop (Li et al.):          {slow:8.2f} s  ({1e3 * slow / points:.2f} ms/point)")
    print(f"  ratio loop / batched: {slow / fast:.2f}x")
    diff = np.abs(surface - reference)
    print(f"  same numbers: largest difference {diff.max():.3g} (relative {np.max(diff / np.abs(reference)):.3g}), "
          f"loss range {reference.min():.4g} .. {reference.max():.4g}")


if __name__ == "__main__":
    main()
