"""Calling PyPI's ``pyhessian`` 0.1 the way its example (and the pruning fork) does, with its HVPs counted.

- The Hessian batch is one mini-batch → ``hessian(model, criterion, data=(x, y))`` (gradient graph built once
  in the constructor and reused by every product); several → ``hessian(..., dataloader=batches)`` (PyHessian
  rebuilds every mini-batch's gradient graph for every product). The batches are already on the device, so
  PyHessian's ``.to(device)`` per batch is free: this is the strongest PyHessian baseline, not a DataLoader.
- One layer: PyHessian has no parameter selection, but it only sees parameters with ``requires_grad``
  (``get_params_grad``), so a layer's block is analysed by switching ``requires_grad`` off for every other
  parameter while one ``hessian`` object is built and used (as a per-layer fork has to).
- ``density()`` calls ``torch.eig``, removed from PyTorch 2: :func:`eig_shim` puts back that ONE function,
  with the old return convention, computed by ``torch.linalg.eigh`` (the matrix is PyHessian's symmetric
  tridiagonal ``T``). Nothing else of PyHessian is changed.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Optional, Sequence

import torch
from torch import Tensor, nn

SHIM_NOTE = (
    "pyhessian 0.1's density() calls torch.eig, removed in PyTorch 2; the benchmark shims that one call with "
    "torch.linalg.eigh (same return convention: (eigenvalues as [real, imag] columns, eigenvectors))"
)


def _eig(A: Tensor, eigenvectors: bool = False) -> tuple[Tensor, Tensor]:
    """``torch.eig``'s old API for a symmetric matrix: ``(e, V)`` with ``e[:, 0]`` real parts, ``e[:, 1]`` zeros."""
    A64 = A.detach().double()
    if not bool(torch.isfinite(A64).all()):  # what LAPACK would have choked on: propagate NaNs, do not raise
        nan = torch.full((A.shape[0],), float("nan"), dtype=A.dtype, device=A.device)
        return torch.stack([nan, torch.zeros_like(nan)], 1), torch.full_like(A, float("nan"))
    values, vectors = torch.linalg.eigh(A64)
    e = torch.stack([values, torch.zeros_like(values)], dim=1).to(A.dtype)
    return e, (vectors.to(A.dtype) if eigenvectors else torch.empty(0, dtype=A.dtype, device=A.device))


@contextlib.contextmanager
def eig_shim() -> Iterator[None]:
    """Install ``torch.eig`` (see :func:`_eig`) for the duration of the block, and take it away afterwards."""
    had = hasattr(torch, "eig")
    old = getattr(torch, "eig", None)
    torch.eig = _eig  # type: ignore[attr-defined]
    try:
        yield
    finally:
        if had:
            torch.eig = old  # type: ignore[attr-defined]
        else:
            del torch.eig  # type: ignore[attr-defined]


class HVPCounter:
    """Counts PyHessian's Hessian-vector products (``hessian_vector_product`` and ``dataloader_hv_product``)."""

    def __init__(self):
        self.count = 0

    @contextlib.contextmanager
    def installed(self) -> Iterator["HVPCounter"]:
        import importlib

        ph = importlib.import_module("pyhessian.hessian")  # the module (the package re-exports the class as `hessian`)
        single, loader = ph.hessian_vector_product, ph.hessian.dataloader_hv_product
        counter = self

        def counted_single(*args, **kwargs):
            counter.count += 1
            return single(*args, **kwargs)

        def counted_loader(self_, v):
            counter.count += 1
            return loader(self_, v)

        ph.hessian_vector_product = counted_single
        ph.hessian.dataloader_hv_product = counted_loader
        try:
            yield self
        finally:
            ph.hessian_vector_product = single
            ph.hessian.dataloader_hv_product = loader


@contextlib.contextmanager
def only_params(model: nn.Module, names: Optional[Sequence[str]]) -> Iterator[None]:
    """Switch ``requires_grad`` off for every parameter not in ``names`` (``None``: leave all on)."""
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    if names is not None:
        keep = set(names)
        for n, p in model.named_parameters():
            p.requires_grad_(n in keep)
    try:
        yield
    finally:
        for n, p in model.named_parameters():
            p.requires_grad_(flags[n])


def build_hessian(model: nn.Module, batches: Sequence[tuple[Tensor, Tensor]], device: torch.device):
    """PyHessian's ``hessian`` object over the Hessian batch (``data=`` for one mini-batch, else ``dataloader=``)."""
    from pyhessian import hessian

    model.zero_grad(set_to_none=True)  # the data= constructor accumulates into .grad
    criterion = nn.CrossEntropyLoss()
    cuda = device.type == "cuda"
    if len(batches) == 1:
        return hessian(model, criterion, data=batches[0], cuda=cuda)
    return hessian(model, criterion, dataloader=list(batches), cuda=cuda)


def release(model: nn.Module) -> None:
    """Drop the gradient graphs PyHessian leaves in ``.grad`` (they hold the activations)."""
    model.zero_grad(set_to_none=True)
