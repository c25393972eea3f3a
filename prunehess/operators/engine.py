"""The product machinery an operator and its blocks share: the Hessian batch, the reused gradient, CUDA graphs.

A :class:`ProductEngine` owns what every product of ``H = ∇²_θ L``, ``L = Σ_b (n_b / N) loss_fn(f(x_b; θ), y_b)``,
needs, whichever parameters it is restricted to:

- the :class:`~prunehess.operators.hvp.HVPProblem`: model, loss, forward, the mini-batches and their weights
  ``n_b / N``, and how consecutive mini-batches are merged into chunks (:meth:`ProductEngine.set_chunk_size`);
- the first-order gradient ``∇L`` kept with its graph (:class:`~prunehess.operators.hvp.ReusedGradient`), built
  at the first product that needs it and shared by the operator and all its blocks;
- the HVP closures (:func:`~prunehess.operators.hvp.make_hvp`), one per (strategy, parameter names);
- on a GPU, the CUDA-graph context: a capture stream and memory pool (:mod:`prunehess.operators.cudagraph`) and
  one captured product per parameter selection. :meth:`ProductEngine.capture` opens the context (the gradient is
  rebuilt on the capture stream), :meth:`ProductEngine.release_captures` drops the captures, and
  :meth:`ProductEngine.release` frees the first-order graph and the captures recorded on it together.

Example:
    >>> import torch
    >>> from prunehess.operators.engine import ProductEngine, split_batch
    >>> model = torch.nn.Linear(3, 2)
    >>> x, y = torch.randn(10, 3), torch.randint(0, 2, (10,))
    >>> engine = ProductEngine.from_batches(model, split_batch(x, y, 4), torch.nn.functional.cross_entropy,
    ...                                    ["weight", "bias"])
    >>> engine.problem.weights  # n_b / N
    [0.4, 0.4, 0.2]
    >>> engine.set_chunk_size(8)
    >>> [int(y.shape[0]) for _, y in engine.problem.batches], engine.problem.weights
    ([8, 2], [0.8, 0.2])
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
from torch import Tensor, nn

from prunehess.operators.cudagraph import CapturedProduct, CudaGraphs
from prunehess.operators.hvp import HVP, HVPProblem, ReusedGradient, make_hvp

__all__ = ["ProductEngine", "split_batch"]

Batches = Sequence[tuple[Tensor, Tensor]]


def split_batch(x: Tensor, y: Tensor, mini_batch_size: int) -> list[tuple[Tensor, Tensor]]:
    """Split one batch into mini-batches of ``mini_batch_size`` samples (the last may be smaller)."""
    if mini_batch_size < 1:
        raise ValueError(f"mini_batch_size must be positive, got {mini_batch_size}")
    return [(x[i : i + mini_batch_size], y[i : i + mini_batch_size]) for i in range(0, x.shape[0], mini_batch_size)]


def _merge_chunks(data: Batches, chunk_size: Optional[int]) -> list[tuple[Tensor, Tensor]]:
    """Concatenate consecutive mini-batches into chunks of at most ``chunk_size`` samples (a chunk of one
    mini-batch keeps its tensors: no copy)."""
    if chunk_size is None:
        return list(data)
    groups: list[list[tuple[Tensor, Tensor]]] = []
    count = 0
    for x, y in data:
        if not groups or count + x.shape[0] > chunk_size:
            groups.append([])
            count = 0
        groups[-1].append((x, y))
        count += x.shape[0]
    return [g[0] if len(g) == 1 else (torch.cat([x for x, _ in g]), torch.cat([y for _, y in g])) for g in groups]


def rechunk(problem: HVPProblem, chunk_size: Optional[int], release: Callable[[], None]) -> None:
    """Process ``problem``'s consecutive mini-batches together in chunks of up to ``chunk_size`` samples
    (``None``: as given), with weights ``n_c / N`` per chunk; ``release`` drops what was built on the old chunks.
    Nothing happens when the chunking is unchanged; the merge runs first, so running out of memory there changes
    nothing."""
    if chunk_size is not None and int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be positive or None, got {chunk_size}")
    chunk_size = None if chunk_size is None else int(chunk_size)
    if chunk_size == problem.chunk_size:
        return
    batches = _merge_chunks(problem.minibatches, chunk_size)
    release()
    problem.batches = batches
    problem.weights = [int(y.shape[0]) / problem.total_samples for _, y in batches]
    problem.chunk_size = chunk_size


class ProductEngine:
    """Hessian-vector products of one problem over any selection of its parameters ``names``.

    Args:
        problem: model, loss, Hessian batch and weights.
        names: every parameter the products may involve (the gradient kept for graph reuse covers them all).
    """

    def __init__(self, problem: HVPProblem, names: Sequence[str]):
        self.problem = problem
        self.gradient = ReusedGradient(problem, names)
        self._hvps: dict[tuple[str, tuple[str, ...]], HVP] = {}
        self._graphs: Optional[CudaGraphs] = None
        self._captures: dict[tuple[str, ...], CapturedProduct] = {}

    @classmethod
    def from_batches(
        cls,
        model: nn.Module,
        data: Batches,
        loss_fn: Callable[[Tensor, Tensor], Tensor],
        names: Sequence[str],
        *,
        forward: Optional[Callable[[Tensor], Tensor]] = None,
        total_samples: Optional[int] = None,
        fast_second_order: bool = True,
    ) -> "ProductEngine":
        """The engine of the mean loss over ``data`` (mini-batches ``(x_b, y_b)``), weights ``n_b / N`` with
        ``N = total_samples`` (default: the samples in ``data``; the global batch when ``data`` is one rank's)."""
        data = list(data)
        n_total = total_samples if total_samples is not None else sum(int(y.shape[0]) for _, y in data)
        problem = HVPProblem(model, loss_fn, data, [int(y.shape[0]) / n_total for _, y in data], forward,
                             fast_second_order, total_samples=n_total)
        return cls(problem, names)

    @property
    def custom_forward(self) -> bool:
        """Whether the model runs through another callable (e.g. ``nn.DataParallel``): autograd strategies only."""
        return self.problem.forward is not self.problem.model

    @property
    def device(self) -> torch.device:
        """The device of the parameters (and of the products)."""
        return self.problem.parameters(self.gradient.names[:1])[0].device

    # ----- the Hessian batch ---------------------------------------------------------------------------------
    @property
    def chunk_size(self) -> Optional[int]:
        """Samples processed together (consecutive mini-batches merged), or ``None``: the mini-batches as given."""
        return self.problem.chunk_size

    def set_chunk_size(self, chunk_size: Optional[int]) -> None:
        """Process consecutive mini-batches together in chunks of up to ``chunk_size`` samples (``None``: as
        given), with weights ``n_c / N`` per chunk. Releases the first-order graph (and its captures) when the
        chunking changes; the merge runs first, so running out of memory there changes nothing."""
        rechunk(self.problem, chunk_size, self.release)

    # ----- products ------------------------------------------------------------------------------------------
    def hvp(self, strategy: str, names: Sequence[str]) -> HVP:
        """The HVP closure of ``strategy`` over the parameters ``names`` (built once; graph reuse shares the
        engine's gradient)."""
        key = (strategy, tuple(names))
        if key not in self._hvps:
            self._hvps[key] = make_hvp(strategy, self.problem, key[1], self.gradient)
        return self._hvps[key]

    # ----- CUDA graphs ---------------------------------------------------------------------------------------
    def capture(self, names: Sequence[str], fn: Callable[[Tensor], Tensor]) -> CapturedProduct:
        """The product of the selection ``names`` as a CUDA graph: ``fn`` (its flat product over graph reuse) is
        recorded at the first call and replayed afterwards (eagerly where it cannot be captured). The first
        capture opens the engine's context: a capture stream and memory pool shared by every capture, and the
        first-order graph is rebuilt on that stream, where the captured backward passes run."""
        if self._graphs is None:
            self._graphs = CudaGraphs(self.device)
            self.gradient.build_on(self._graphs.stream)  # rebuilt on the capture stream at the first product
        key = tuple(names)
        if key not in self._captures:
            self._captures[key] = self._graphs.product(fn)
        return self._captures[key]

    def captured(self, names: Sequence[str]) -> Optional[CapturedProduct]:
        """The captured product of the selection ``names``, if :meth:`capture` made one."""
        return self._captures.get(tuple(names))

    def release_captures(self) -> None:
        """Forget every captured product (their graphs and buffers); the first-order graph is kept."""
        if self._graphs is not None:
            self._graphs.reset()
        self._captures.clear()

    def release(self) -> None:
        """Free the first-order graph (and the activations it holds) and the CUDA graphs recorded on it; both are
        rebuilt at the next product (a product that could not be captured stays eager)."""
        self.gradient.release()
        if self._graphs is not None:
            self._graphs.reset()
