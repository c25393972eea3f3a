"""The benchmark's models, data and weights: the same for PyHessian and prunehess.

- ``lenet``: LeNet-300-100 (prunehess's ``fc1`` layout: Linear(784,300), ReLU, Linear(300,100), ReLU,
  Linear(100,10) on the flattened image) on 1000 MNIST samples in mini-batches of 200 — real MNIST from
  ``--data-root`` (torchvision's files, normalised with mean 0.1307 and std 0.3081) when present, else random
  MNIST-shaped data.
- ``resnet20``: the CIFAR ResNet-20 (BatchNorm, residual connections) on 200 random CIFAR-shaped samples in one
  mini-batch of 200.

Weights: a seeded initialisation followed by a few SGD steps (so the Hessian is not a random network's), and a
pruned variant with the smallest 80% of every Linear/Conv weight set to exact zeros (then a few more masked SGD
steps), which prunehess detects as masks.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


@dataclass
class Workload:
    """One benchmark case: a model in eval mode, its Hessian batch (on the device) and a description."""

    key: str  # e.g. "lenet", "lenet-pruned"
    title: str
    model: nn.Module
    batches: list[tuple[Tensor, Tensor]]  # mini-batches on the device
    data_note: str
    pruned: bool = False

    @property
    def n_samples(self) -> int:
        return sum(int(y.shape[0]) for _, y in self.batches)

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @property
    def n_surviving(self) -> int:
        return sum(int((p != 0).sum()) if p.dim() >= 2 else p.numel() for p in self.model.parameters())


# ----- models ---------------------------------------------------------------------------------------------------
class _FC1(nn.Module):
    """Fallback LeNet-300-100 with prunehess's ``fc1`` state-dict layout (``classifier.{0,2,4}``)."""

    def __init__(self, in_features: int = 784, num_classes: int = 10):
        super().__init__()
        self.classifier = nn.Sequential(
            nn.Linear(in_features, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, num_classes)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(x, 1))


class _Block(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class _ResNet20(nn.Module):
    """Fallback CIFAR ResNet-20 (PyHessian's ``resnet`` layout, 272,474 parameters)."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        stages, inplanes = [], 16
        for index, planes in enumerate((16, 32, 64)):
            blocks = []
            for b in range(3):
                blocks.append(_Block(inplanes, planes, 2 if index > 0 and b == 0 else 1))
                inplanes = planes
            stages.append(nn.ModuleList(blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        for stage in (self.layer1, self.layer2, self.layer3):
            for block in stage:
                x = block(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def build(name: str) -> tuple[nn.Module, str]:
    """The model ``name`` from ``prunehess.models`` when importable, else the local definition."""
    shape = (1, 28, 28) if name == "fc1" else (3, 32, 32)
    try:
        from prunehess.models import build_model

        return build_model(name, input_shape=shape, num_classes=10), "prunehess.models"
    except Exception:  # the registry is optional here: fall back to the local definitions
        return (_FC1() if name == "fc1" else _ResNet20()), "benchmarks/_bench_setup.py"


# ----- data -----------------------------------------------------------------------------------------------------
def _mnist(root: Optional[str], n: int) -> Optional[tuple[Tensor, Tensor]]:
    if not root or not (Path(root) / "MNIST" / "raw").is_dir():
        return None
    try:
        from torchvision.datasets import MNIST

        ds = MNIST(root, train=True, download=False)
    except Exception:
        return None
    x = ds.data[:n].float().div(255.0).sub(MNIST_MEAN).div(MNIST_STD).unsqueeze(1)
    return x, ds.targets[:n].long()


def _sgd(model: nn.Module, x: Tensor, y: Tensor, *, steps: int, batch: int, lr: float, seed: int,
         masks: Optional[dict[str, Tensor]] = None) -> None:
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    model.train()
    named = dict(model.named_parameters())
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (batch,), generator=g)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
        if masks:
            with torch.no_grad():
                for name, mask in masks.items():
                    named[name].mul_(mask)
    opt.zero_grad(set_to_none=True)
    model.eval()


def prune_by_magnitude(model: nn.Module, fraction: float) -> dict[str, Tensor]:
    """Zero the smallest ``fraction`` of every Linear/Conv weight (layer-wise); returns the masks."""
    masks = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                k = int(math.floor(fraction * p.numel()))
                if k == 0:
                    continue
                threshold = p.abs().flatten().kthvalue(k).values
                mask = p.abs() > threshold
                p.mul_(mask)
                masks[name] = mask
    return masks


def _split(x: Tensor, y: Tensor, mini: int, device: torch.device) -> list[tuple[Tensor, Tensor]]:
    return [(x[i : i + mini].to(device), y[i : i + mini].to(device)) for i in range(0, x.shape[0], mini)]


def make_workloads(model_name: str, *, device: torch.device, data_root: Optional[str], quick: bool, seed: int = 0,
                   prune_fraction: float = 0.8) -> list[Workload]:
    """The dense and pruned workloads of ``model_name`` (``lenet`` or ``resnet20``); ``quick``: smaller batches
    (LeNet 200 samples in mini-batches of 100, ResNet-20 4 samples in one) and fewer SGD steps."""
    torch.manual_seed(seed)
    if model_name == "lenet":
        n_hess, mini = (200, 100) if quick else (1000, 200)
        train_n = 8000
        real = _mnist(data_root, train_n)
        if real is not None:
            x, y = real
            note = f"real MNIST ({data_root}), normalised {MNIST_MEAN}/{MNIST_STD}"
        else:
            g = torch.Generator().manual_seed(seed)
            x = torch.randn(train_n, 1, 28, 28, generator=g)
            y = torch.randint(0, 10, (train_n,), generator=g)
            note = "random MNIST-shaped data (no MNIST under --data-root)"
        model, source = build("fc1")
        steps, batch, lr = (30, 128, 0.05) if quick else (150, 128, 0.05)
        title = "LeNet-300-100"
    elif model_name == "resnet20":
        n_hess, mini = (4, 4) if quick else (200, 200)
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n_hess, 3, 32, 32, generator=g)
        y = torch.randint(0, 10, (n_hess,), generator=g)
        note = "random CIFAR-shaped data"
        model, source = build("resnet20")
        steps, batch, lr = (3, 4, 0.05) if quick else (20, 50, 0.05)
        title = "ResNet-20"
    else:
        raise ValueError(f"unknown model {model_name!r}; choose lenet or resnet20")
    _sgd(model, x, y, steps=steps, batch=batch, lr=lr, seed=seed)
    hx, hy = x[:n_hess], y[:n_hess]
    note = f"{note}; {n_hess} samples in mini-batches of {mini}; {steps} SGD steps from a seeded init; model from {source}"
    dense = Workload(model_name, title, model.to(device).eval(), _split(hx, hy, mini, device), note)
    pruned_model = copy.deepcopy(model).cpu()
    masks = prune_by_magnitude(pruned_model, prune_fraction)
    _sgd(pruned_model, x, y, steps=max(steps // 3, 3), batch=batch, lr=lr / 2, seed=seed + 1, masks=masks)
    pruned = Workload(
        f"{model_name}-pruned",
        f"{title}, {int(prune_fraction * 100)}% of weights pruned",
        pruned_model.to(device).eval(),
        _split(hx, hy, mini, device),
        note + f"; then {int(prune_fraction * 100)}% of every Linear/Conv weight zeroed by magnitude, a few masked SGD steps",
        pruned=True,
    )
    return [dense, pruned]
