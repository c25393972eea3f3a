"""Products replayed from CUDA graphs: one capture per operator, then each product is one graph launch.

A Hessian-vector product over a reused first-order graph is a few hundred small kernels; for networks of the
sizes pruning studies use, launching them from Python and the autograd engine costs more than running them
(ResNet-20 on 200 samples: ~12 ms of GPU work in ~20 ms of wall time on an H100). A CUDA graph records the
kernels of one product once and replays them with one launch. The first-order graph is built on the capture
stream, so the backward passes recorded in it run there; every captured product of an operator and its blocks
draws temporaries from one shared memory pool and keeps its own input and output buffers, so products may be
replayed in any order. A product that cannot be captured (an operation that synchronises with the host) warns
once and runs eagerly. :meth:`CudaGraphs.reset` drops the captures (they point into the first-order graph's
memory) when that graph is released. This is the low-level helper: :class:`~prunehess.operators.engine.ProductEngine`
owns one context per operator and its blocks, opens it, and releases the captures with the first-order graph.
"""
from __future__ import annotations

import warnings
from typing import Callable, Optional

import torch
from torch import Tensor

__all__ = ["CudaGraphs", "CapturedProduct"]


class CapturedProduct:
    """``v -> fn(v)`` for flat vectors of one size, captured on the first call and replayed afterwards."""

    def __init__(self, fn: Callable[[Tensor], Tensor], owner: "CudaGraphs"):
        self.fn = fn
        self.owner = owner
        self.graph: Optional[torch.cuda.CUDAGraph] = None
        self.static_in: Optional[Tensor] = None
        self.static_out: Optional[Tensor] = None
        self.failed = False

    def __call__(self, v: Tensor) -> Tensor:
        if self.failed:
            return self.fn(v)
        if self.graph is None:
            try:
                self._capture(v)
            except RuntimeError as err:  # an operation that cannot be captured (e.g. one that syncs the host)
                warnings.warn(f"CUDA graph capture failed, products run eagerly: {str(err).splitlines()[0]}")
                self.failed = True
                self.drop()
                return self.fn(v)
        self.static_in.copy_(v)
        self.graph.replay()
        return self.static_out.clone()

    def _capture(self, v: Tensor) -> None:
        stream = self.owner.stream
        self.static_in = v.detach().clone()
        stream.wait_stream(torch.cuda.current_stream(v.device))
        with torch.cuda.stream(stream):
            self.fn(self.static_in)  # warm-up: lazy initialisation must not happen inside the capture
        torch.cuda.current_stream(v.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.owner.pool, stream=stream):
            self.static_out = self.fn(self.static_in)
        self.graph = graph
        self.owner.captured.append(self)

    def drop(self) -> None:
        self.graph = self.static_in = self.static_out = None


class CudaGraphs:
    """The capture stream and memory pool shared by an operator and its blocks, and their captures."""

    def __init__(self, device: torch.device):
        self.stream = torch.cuda.Stream(device)
        self.pool = torch.cuda.graph_pool_handle()
        self.captured: list[CapturedProduct] = []

    def product(self, fn: Callable[[Tensor], Tensor]) -> CapturedProduct:
        return CapturedProduct(fn, self)

    def reset(self) -> None:
        """Forget every capture (call when the first-order graph they replay is freed)."""
        for product in self.captured:
            product.drop()
        self.captured.clear()
