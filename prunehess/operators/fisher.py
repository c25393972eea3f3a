"""The empirical Fisher matrix of a model's loss over a fixed batch, as a linear operator.

With ``g_i = ∇_θ ℓ(f(x_i; θ), y_i)`` the loss gradient of sample ``i`` (``ℓ`` is ``loss_fn`` of one sample; the
mini-batch loss must be the mean of these),

    F = (1/N) Σ_i g_i g_iᵀ,    F V = (1/N) Gᵀ (G V)  with the rows of G the g_i,

over the ``N = total_samples`` samples of the Hessian batch (with ``reduce``, each process sums its share and the
shares are added: the weights are ``n_b / N`` as for :class:`~prunehess.operators.hessian.HessianOperator`). ``F``
is positive semi-definite of rank at most ``N``; it is the "empirical" Fisher, built from the observed labels,
which is neither the Fisher information nor the Hessian in general (Kunstner, Hennig & Balles, NeurIPS 2019).

The per-sample gradients come from ``vmap(grad(ℓ))`` over each chunk of the batch
(:func:`~prunehess.operators.samples.sample_gradients`), on the surviving coordinates only. Strategies:

- ``"cache"``: compute ``G`` once (at the first product) and keep it: every product, single or batched, is then
  two matrix products with no pass through the network. ``G`` holds ``N_local × d`` numbers (``N_local`` the
  samples of this process, ``d`` the operator's coordinates): 1000 samples of LeNet-300-100 (266,610 weights) in
  float32 take 1.07 GB; ResNet-20 (272,474) about the same. Blocks read their columns of the operator's ``G``.
- ``"recompute"``: recompute each chunk's per-sample gradients for every product (memory of one chunk's).
- ``"auto"`` (default): ``"cache"`` when ``G`` fits in ``cache_bytes`` (default 2 GiB), else ``"recompute"``; a
  block decides again on its own size (a layer's ``G`` often fits where the whole network's does not).

``"matmul"`` (default) applies ``k`` vectors at once as one matrix product; ``"loop"`` one at a time.

Example:
    >>> import torch
    >>> from prunehess.operators import EmpiricalFisherOperator
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <...>
    >>> model = torch.nn.Linear(3, 2)
    >>> F = EmpiricalFisherOperator(model, [(torch.randn(4, 3), torch.randint(0, 2, (4,)))])
    >>> F.shape, F.strategy, F.cache_nbytes()  # 4 samples × 8 coordinates × 4 bytes
    ((8, 8), 'cache', 128)
    >>> int(torch.linalg.matrix_rank(F.to_dense()))  # at most the number of samples
    4
"""
from __future__ import annotations

from typing import Callable, Literal, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prunehess.operators.curvature import CurvatureOperator, Masks, SharedBatch, build_problem, build_space
from prunehess.operators.hessian import ParamSelector
from prunehess.operators.hvp import HVPProblem
from prunehess.operators.params import ParameterSpace
from prunehess.operators.samples import check_loss, sample_gradients
from prunehess.operators.tuning import Tuning

__all__ = ["EmpiricalFisherOperator", "DEFAULT_CACHE_BYTES"]

DEFAULT_CACHE_BYTES = 2**31
"""The default budget for the cached per-sample gradients (2 GiB)."""

Strategy = Literal["auto", "cache", "recompute"]
Columns = list[tuple[slice, slice]]  # (where in this operator's vectors, where in the cached rows)


def _gram_product(G: Tensor, columns: Columns, V: Tensor, out: Tensor) -> None:
    """``out += G_Sᵀ (G_S V)`` with ``G_S`` the columns of ``G`` this operator's coordinates map to."""
    s = sum(G[:, rows] @ V[mine] for mine, rows in columns)
    for mine, rows in columns:
        out[mine] += G[:, rows].T @ s


class _SampleGradients(SharedBatch):
    """The per-sample gradients of every chunk over the root operator's coordinates (built on first use)."""

    def __init__(self, problem: HVPProblem, space: ParameterSpace):
        super().__init__(problem)
        self.space = space
        self.gradients: Optional[list[Tensor]] = None
        self.checked = False

    def release(self) -> None:
        self.gradients = None

    def check(self) -> None:
        if not self.checked:
            check_loss(self.problem)
            self.checked = True

    def compute(self, space: ParameterSpace) -> list[Tensor]:
        self.check()
        return [sample_gradients(self.problem, space, x, y) for x, y in self.problem.batches]

    def rows(self) -> list[Tensor]:
        if self.gradients is None:
            self.gradients = self.compute(self.space)
        return self.gradients


class EmpiricalFisherOperator(CurvatureOperator):
    """``F @ v`` for the empirical Fisher ``(1/N) Σ_i g_i g_iᵀ`` of the per-sample loss gradients.

    Args:
        model, data, loss_fn, params, masks, chunk_size, total_samples, reduce: as for
            :class:`~prunehess.operators.hessian.HessianOperator` (``loss_fn`` mean-reduced: checked on the first
            mini-batch); a chunk is also how many samples' gradients ``vmap`` computes at once.
        strategy: ``"auto"``, ``"cache"`` or ``"recompute"`` (module docstring).
        batched_strategy: ``"matmul"`` or ``"loop"``.
        forward: only ``None`` or the model itself.
        cache_bytes: the most memory ``"auto"`` lets the cached per-sample gradients take.
    """

    kind = "empirical Fisher"
    STRATEGIES = ("cache", "recompute")
    BATCHED_STRATEGIES = ("loop", "matmul")

    def __init__(
        self,
        model: nn.Module,
        data: Sequence[tuple[Tensor, Tensor]],
        loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
        *,
        params: ParamSelector = None,
        masks: Masks = "auto",
        strategy: Strategy = "auto",
        batched_strategy: Literal["loop", "matmul"] = "matmul",
        forward: Optional[Callable[[Tensor], Tensor]] = None,
        chunk_size: Optional[int] = None,
        total_samples: Optional[int] = None,
        reduce: Optional[Callable[[Tensor], Tensor]] = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ):
        problem = build_problem(model, data, loss_fn, forward=forward, total_samples=total_samples)
        space = build_space(model, params, masks)
        self.cache_bytes = int(cache_bytes)
        self._own: Optional[list[Tensor]] = None
        self._init_shared(_SampleGradients(problem, space), space, strategy, batched_strategy, reduce)
        if chunk_size is not None:
            self.set_chunk_size(chunk_size)

    def _init_block(self, block: "EmpiricalFisherOperator") -> None:
        block.cache_bytes = self.cache_bytes
        block._own = None

    def restrict(self, names: Union[str, Sequence[str]]) -> "EmpiricalFisherOperator":
        """The diagonal block of ``names``, reading the operator's cached gradients; under ``"auto"`` it decides
        again whether its own rows fit."""
        block = super().restrict(names)
        if self.auto:
            block.set_strategy("auto", block.batched_strategy)
        return block

    def set_strategy(self, strategy: Strategy, batched_strategy: Optional[str] = None, *,
                     cuda_graphs: Optional[bool] = None) -> None:
        """Choose ``"cache"``, ``"recompute"`` or ``"auto"`` (decided now by :meth:`cache_nbytes`), and
        ``"matmul"`` or ``"loop"``."""
        self.auto = strategy == "auto"
        if self.auto:
            strategy = "cache" if self.cache_nbytes() <= self.cache_bytes else "recompute"
        super().set_strategy(strategy, batched_strategy, cuda_graphs=cuda_graphs)
        if strategy == "recompute":
            self._own = None

    def cache_nbytes(self) -> int:
        """Bytes of this operator's per-sample gradients: samples in this process × coordinates × item size."""
        samples = sum(int(y.shape[0]) for _, y in self.problem.minibatches)
        return samples * self.size * torch.empty((), dtype=self.dtype).element_size()

    def _tuned(self, tuning: Tuning) -> tuple[str, str]:
        """Only the chunk size carries over: whether ``G`` is cached is a memory budget (``cache_bytes``), and
        batched products cost no more memory than single ones."""
        return ("auto" if self.auto else self.strategy), self.batched_strategy

    def release(self) -> None:
        """Free the cached per-sample gradients (the operator's, shared with its blocks, and this block's own)."""
        self._own = None
        super().release()

    # ----- products -----------------------------------------------------------------------------------------
    def _cached(self) -> tuple[list[Tensor], Columns]:
        """The cached rows and where this operator's coordinates sit in them: the root's rows where they fit the
        budget (or are already built), else this block's own."""
        shared: _SampleGradients = self._shared
        root = shared.space
        if shared.gradients is not None or self._root_fits():
            if root.names == self.names:
                return shared.rows(), [(slice(0, self.size), slice(0, self.size))]
            theirs, mine = root.slices(), self.space.slices()
            return shared.rows(), [(mine[n], theirs[n]) for n in self.names]
        if self._own is None:
            self._own = shared.compute(self.space)
        return self._own, [(slice(0, self.size), slice(0, self.size))]

    def _root_fits(self) -> bool:
        samples = sum(int(y.shape[0]) for _, y in self.problem.minibatches)
        return samples * self._shared.space.dim * torch.empty((), dtype=self.dtype).element_size() <= self.cache_bytes

    def _product(self, V: Tensor) -> Tensor:
        out = torch.zeros_like(V)
        if self.strategy == "cache":
            rows, columns = self._cached()
            for G in rows:
                _gram_product(G, columns, V, out)
        else:
            self._shared.check()
            whole = [(slice(0, self.size), slice(0, self.size))]
            for x, y in self.problem.batches:
                _gram_product(sample_gradients(self.problem, self.space, x, y), whole, V, out)
        return out.div_(self.problem.total_samples)
