"""Tiny cases as data: model, loss, data and seed, small enough to hold their dense Hessians.

Each entry of :data:`MODEL_CASES` names a model builder, a loss, the Hessian batch (samples, mini-batch size: the
last mini-batch is always smaller) and a seed; :func:`build` turns one into a :class:`Case` (float64) with the
truths the tests compare against: the dense Hessian over every parameter and the whole batch at once, computed
independently of the engine (:func:`helpers.autograd_hessian`), and the masks the case itself applied.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import prune

import helpers


# ----- model builders (each takes a torch.Generator and returns (model, masks it applied)) ---------------------
def _init(model: nn.Module, g: torch.Generator) -> nn.Module:
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.7)
    return model.double()


def mlp_tanh(g: torch.Generator):
    return _init(nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)), g), {}


def mlp_relu(g: torch.Generator):
    return _init(nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 2)), g), {}


def cnn_batchnorm(g: torch.Generator):
    """Conv → BatchNorm (non-trivial running statistics and affine parameters) → tanh → linear."""
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Tanh(), nn.Flatten(), nn.Linear(2 * 3 * 3, 3)
    )
    _init(model, g)
    bn = model[1]
    with torch.no_grad():
        bn.running_mean.copy_(torch.tensor([0.3, -0.2], dtype=torch.float64))
        bn.running_var.copy_(torch.tensor([0.5, 2.0], dtype=torch.float64))
        bn.weight.copy_(torch.tensor([1.3, 0.6], dtype=torch.float64))
    return model, {}


def masked_mlp_zeros(g: torch.Generator):
    """An MLP whose weight matrices hold exact zeros (pruned by zeroing): the masks are the non-zeros."""
    model, _ = mlp_tanh(g)
    masks = {}
    with torch.no_grad():
        for name in ("0.weight", "2.weight"):
            p = dict(model.named_parameters())[name]
            keep = torch.rand(p.shape, generator=g) > 0.4
            keep.view(-1)[0] = True  # never an empty layer
            p.mul_(keep.to(p.dtype))
            masks[name] = keep
    return model, masks


def masked_mlp_prune(g: torch.Generator):
    """An MLP pruned with ``torch.nn.utils.prune``: ``weight_orig`` (pruned entries non-zero) and ``weight_mask``."""
    model, _ = mlp_tanh(g)
    keep0 = torch.rand(model[0].weight.shape, generator=g) > 0.4
    keep0.view(-1)[0] = True
    prune.custom_from_mask(model[0], "weight", keep0.to(torch.float64))
    prune.l1_unstructured(model[2], "weight", amount=0.3)
    masks = {"0.weight_orig": keep0, "2.weight_orig": model[2].weight_mask.bool().clone()}
    return model, masks


# ----- losses ----------------------------------------------------------------------------------------------------
def mse(outputs: Tensor, targets: Tensor) -> Tensor:
    """Mean squared error written out (``F.mse_loss`` trips a PyTorch forward-AD bug: see test_hessian)."""
    return ((outputs - targets) ** 2).mean()


# ----- the cases -------------------------------------------------------------------------------------------------
MODEL_CASES: dict[str, dict] = {
    "mlp_tanh_ce": dict(build=mlp_tanh, loss=F.cross_entropy, input_shape=(4,), classes=3, n=10, mini=4, seed=0),
    "mlp_relu_mse": dict(build=mlp_relu, loss=mse, input_shape=(3,), outputs=2, n=9, mini=4, seed=1),
    "cnn_batchnorm": dict(build=cnn_batchnorm, loss=F.cross_entropy, input_shape=(1, 5, 5), classes=3, n=8, mini=3, seed=2),
    "masked_zeros": dict(build=masked_mlp_zeros, loss=F.cross_entropy, input_shape=(4,), classes=3, n=10, mini=4, seed=3),
    "masked_prune": dict(build=masked_mlp_prune, loss=F.cross_entropy, input_shape=(4,), classes=3, n=10, mini=4, seed=4),
}
MASKED_CASES = {k: v for k, v in MODEL_CASES.items() if k.startswith("masked")}


@dataclass
class Case:
    """One tiny problem, built: the model, its Hessian batch (full and as mini-batches) and the truths."""

    name: str
    model: nn.Module
    loss_fn: Callable[[Tensor, Tensor], Tensor]
    x: Tensor
    y: Tensor
    data: list  # mini-batches [(x_b, y_b)], last one smaller
    masks: dict = field(default_factory=dict)  # the masks the case applied (name -> bool), {} if unpruned

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.model.named_parameters()]

    @property
    def shapes(self) -> dict[str, torch.Size]:
        return {n: p.shape for n, p in self.model.named_parameters()}

    @cached_property
    def full_hessian(self) -> Tensor:
        """Dense Hessian over every coordinate of every parameter, whole batch at once, no engine code."""
        return helpers.autograd_hessian(self.model, self.x, self.y, self.loss_fn)

    def hessian(self, names: Optional[list[str]] = None, masks: Optional[dict] = None) -> Tensor:
        """The full dense Hessian restricted (by index selection) to ``names`` (default all) and surviving
        coordinates of ``masks``."""
        index = helpers.coordinate_index(self.shapes, names or self.names, masks)
        return helpers.restrict(self.full_hessian, index)

    @property
    def expected(self) -> Tensor:
        """What ``HessianOperator(model, data, loss)`` (masks="auto") must equal: surviving coordinates only."""
        return self.hessian(masks=self.masks)

    def block_slices(self) -> dict[str, slice]:
        """Where each parameter's surviving coordinates sit in the operator's flat vectors (from the case's masks)."""
        out, start = {}, 0
        for n, s in self.shapes.items():
            size = int(self.masks[n].sum()) if n in self.masks else torch.Size(s).numel()
            out[n] = slice(start, start + size)
            start += size
        return out


def build(name: str) -> Case:
    spec = MODEL_CASES[name]
    g = torch.Generator().manual_seed(spec["seed"])
    model, masks = spec["build"](g)
    n = spec["n"]
    x = torch.randn((n, *spec["input_shape"]), generator=g, dtype=torch.float64)
    if "classes" in spec:
        y = torch.randint(0, spec["classes"], (n,), generator=g)
    else:
        y = torch.randn((n, spec["outputs"]), generator=g, dtype=torch.float64)
    mini = spec["mini"]
    data = [(x[i : i + mini], y[i : i + mini]) for i in range(0, n, mini)]
    assert data[-1][1].shape[0] < mini, "every case has an uneven last mini-batch"
    return Case(name, model, spec["loss"], x, y, data, masks)


def least_squares(n: int = 12, d: int = 4, seed: int = 5):
    """A linear model ``y ≈ w·x + b`` with mean squared error: H = (2/N) X̃ᵀX̃ with X̃ = [X, 1] over (w, b)."""
    g = torch.Generator().manual_seed(seed)
    model = _init(nn.Linear(d, 1), g)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randn(n, 1, generator=g, dtype=torch.float64)
    Xt = torch.cat([x, torch.ones(n, 1, dtype=torch.float64)], dim=1)
    return model, x, y, 2.0 / n * Xt.T @ Xt
