"""The Hessian of a model's loss over a fixed batch, as a linear operator on (surviving) parameters.

``HessianOperator(model, data)`` is ``H = ∇²_θ L(θ)`` for ``L = Σ_b (n_b / N) loss_fn(model(x_b), y_b)``, the mean
loss over the Hessian batch ``data`` (a list of mini-batches ``(x_b, y_b)`` already on the device; the last may be
smaller). Its vectors are flat tensors over the selected parameters' surviving coordinates (see
:class:`~prunehess.operators.params.ParameterSpace`): for a pruned model the operator is ``Pᵀ H P`` with ``P``
selecting the surviving weights, so its spectrum is the sparse network's. Nothing is computed until the first
product; the model is evaluated in ``eval()`` mode. The operator is a snapshot: build a new one after the
weights change.

The operator wires a :class:`~prunehess.operators.engine.ProductEngine` (data, reused gradient, CUDA graphs) to a
parameter space; :meth:`HessianOperator.restrict` gives diagonal blocks sharing the engine. The estimators are
functions of it (:mod:`prunehess.estimators`), and :func:`~prunehess.operators.tuning.tune` picks its strategies.

Example:
    >>> import torch
    >>> from prunehess import HessianOperator
    >>> from prunehess.estimators import lanczos_top_eigen
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <...>
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 3))
    >>> data = [(torch.randn(8, 4), torch.randint(0, 3, (8,)))]
    >>> H = HessianOperator(model, data)
    >>> H.shape
    (15, 15)
    >>> top = lanczos_top_eigen(H, k=2)
    >>> bool(top.eigenvalues[0] >= top.eigenvalues[1])
    True
    >>> list(H.block_slices())
    ['0.weight', '0.bias']
"""
from __future__ import annotations

from typing import Callable, Iterable, Literal, Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prunehess.errors import NonDeterministicError
from prunehess.operators.base import LinearOperator
from prunehess.operators.engine import ProductEngine, split_batch
from prunehess.operators.hvp import BATCHED_STRATEGIES, STRATEGIES, HVPProblem
from prunehess.operators.masks import detect_masks
from prunehess.operators.params import ParameterSpace
from prunehess.operators.tuning import PROBES_PER_PRODUCT, Tuning

__all__ = ["HessianOperator", "split_batch", "BATCHED_STRATEGIES", "PROBES_PER_PRODUCT"]

Strategy = Literal["graph", "double_backward", "forward_over_reverse"]
BatchedStrategy = Literal["loop", "vmap", "graph_batched"]
ParamSelector = Union[None, Sequence[str], Callable[[str, Tensor], bool]]


def _select(model: nn.Module, params: ParamSelector) -> tuple[str, ...]:
    named = dict(model.named_parameters())
    if params is None:
        names = [n for n, p in named.items() if p.requires_grad]
    elif callable(params):
        names = [n for n, p in named.items() if params(n, p)]
    else:
        if isinstance(params, str):
            params = [params]
        unknown = [n for n in params if n not in named]
        if unknown:
            raise KeyError(f"unknown parameters {unknown}; the model has {list(named)}")
        names = list(params)
    if not names:
        raise ValueError("no parameters selected")
    return tuple(names)


class HessianOperator(LinearOperator):
    """``H @ v`` for the Hessian of the mean loss over a fixed batch.

    Args:
        model: the network (its weights are read at the first product).
        data: the Hessian batch as mini-batches ``[(x, y), ...]`` on the model's device.
        loss_fn: ``loss_fn(outputs, targets)`` returning the mean loss of a mini-batch (cross-entropy by default).
        params: which parameter tensors: ``None`` (all), a list of names, or ``filter(name, param) -> bool``;
            the others are held fixed (a list of one name gives that layer's diagonal block).
        masks: ``"auto"`` (default): the surviving weights of a pruned model (``torch.nn.utils.prune`` pairs, else
            exact zeros of weight matrices and kernels); ``None``: every coordinate (PyHessian's behaviour); or a
            mapping name → boolean mask.
        strategy: how one product is computed: ``"graph"`` (first-order graph built once and reused),
            ``"double_backward"`` (PyHessian's, least memory) or ``"forward_over_reverse"`` (``torch.func``).
        batched_strategy: how ``k`` products at once are computed: ``"loop"``, ``"vmap"`` (``torch.func.vmap``
            over forward-over-reverse) or ``"graph_batched"`` (batched backward over the reused graph).
            :func:`~prunehess.operators.tuning.tune` measures and picks both.
        forward: the callable that runs the model (e.g. ``nn.DataParallel(model)``); autograd strategies only.
        chunk_size: process consecutive mini-batches together in chunks of up to this many samples (faster where
            memory allows; the numbers are the same up to rounding).
        total_samples: ``N`` for the weights ``n_b / N`` (the global batch size when ``data`` is one rank's share).
        reduce: applied to every flat product (e.g. an all-reduce sum across ranks).
        fast_second_order: record convolutions and eval-mode BatchNorm in forms whose second derivatives are
            cheap (autograd strategies; see :mod:`prunehess.operators.kernels`). ``False``: PyTorch's own.
        cuda_graphs: on a GPU with the ``"graph"`` strategy, capture each operator's (and block's) product in a
            CUDA graph on first use and replay it afterwards (:meth:`ProductEngine.capture
            <prunehess.operators.engine.ProductEngine.capture>`); :func:`~prunehess.operators.tuning.tune` turns it
            on where it is clearly faster.
    """

    fresh_products = True  # products are concatenated from autograd's new gradients (or cloned from a CUDA graph)

    def __init__(
        self,
        model: nn.Module,
        data: Sequence[tuple[Tensor, Tensor]],
        loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
        *,
        params: ParamSelector = None,
        masks: Union[Literal["auto"], None, Mapping[str, Tensor]] = "auto",
        strategy: Strategy = "graph",
        batched_strategy: BatchedStrategy = "loop",
        forward: Optional[Callable[[Tensor], Tensor]] = None,
        chunk_size: Optional[int] = None,
        total_samples: Optional[int] = None,
        reduce: Optional[Callable[[Tensor], Tensor]] = None,
        fast_second_order: bool = True,
        cuda_graphs: bool = False,
    ):
        if not data:
            raise ValueError("the Hessian batch is empty")
        names = _select(model, params)
        if isinstance(masks, str):
            if masks != "auto":
                raise ValueError(f"masks must be 'auto', None or a mapping, got {masks!r}")
            masks = detect_masks(model)
        named = dict(model.named_parameters())
        space = ParameterSpace.from_tensors({n: named[n] for n in names}, dict(masks or {}))
        engine = ProductEngine.from_batches(model, data, loss_fn, names, forward=forward, total_samples=total_samples,
                                            fast_second_order=fast_second_order)
        self._init_shared(engine, space, strategy, batched_strategy, reduce, cuda_graphs)
        if chunk_size is not None:
            self.set_chunk_size(chunk_size)

    def _init_shared(self, engine: ProductEngine, space: ParameterSpace, strategy: str, batched_strategy: str,
                     reduce: Optional[Callable[[Tensor], Tensor]], cuda_graphs: bool) -> None:
        first = dict(engine.problem.model.named_parameters())[space.names[0]]
        super().__init__(space.dim, first.dtype, first.device)
        self.engine = engine
        self.space = space
        self._reduce = reduce
        self.cuda_graphs = False
        self.set_strategy(strategy, batched_strategy, cuda_graphs=cuda_graphs)

    # ----- configuration -------------------------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        """The selected parameter names, in flat-vector order."""
        return self.space.names

    @property
    def problem(self) -> HVPProblem:
        """Model, loss and Hessian batch (shared with the blocks: :attr:`engine`'s)."""
        return self.engine.problem

    @property
    def reduces(self) -> bool:
        """Whether products are combined across processes (data-parallel Hessian batch)."""
        return self._reduce is not None

    def set_strategy(self, strategy: Strategy, batched_strategy: Optional[BatchedStrategy] = None, *,
                     cuda_graphs: Optional[bool] = None) -> None:
        """Choose how single and batched products are computed (``cuda_graphs``: keep the current setting when
        ``None``)."""
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
        batched_strategy = batched_strategy or "loop"
        if batched_strategy not in BATCHED_STRATEGIES:
            raise ValueError(f"unknown batched strategy {batched_strategy!r}; choose one of {', '.join(BATCHED_STRATEGIES)}")
        if self.engine.custom_forward and (strategy == "forward_over_reverse" or batched_strategy == "vmap"):
            raise ValueError("a custom forward (e.g. DataParallel) needs an autograd strategy: 'graph' or 'double_backward'")
        if cuda_graphs is None:
            cuda_graphs = self.cuda_graphs
        if cuda_graphs and not self.supports_cuda_graphs:
            raise ValueError("cuda_graphs needs a CUDA device, the model's own forward and no cross-process reduce")
        self.strategy, self.batched_strategy, self.cuda_graphs = strategy, batched_strategy, bool(cuda_graphs)

    @property
    def supports_cuda_graphs(self) -> bool:
        """Whether products can be captured in CUDA graphs: a GPU, the model's own forward, no cross-process reduce."""
        return self.device.type == "cuda" and not self.engine.custom_forward and self._reduce is None

    @property
    def chunk_size(self) -> Optional[int]:
        """Samples processed together (consecutive mini-batches merged), or ``None``: the mini-batches as given."""
        return self.engine.chunk_size

    def set_chunk_size(self, chunk_size: Optional[int]) -> None:
        """Process consecutive mini-batches together in chunks of up to ``chunk_size`` samples (``None``: as
        given). Larger chunks mean fewer, larger kernels per product (the numbers are the same up to rounding)
        and larger temporaries, and a merged copy of the batch; with graph reuse the kept graph holds every
        chunk's activations anyway. Shared by the operator and its blocks; drops the first-order graph (rebuilt at
        the next product)."""
        self.engine.set_chunk_size(chunk_size)

    def apply_tuning(self, tuning: Tuning) -> None:
        """Configure products as ``tuning`` says (from :func:`~prunehess.operators.tuning.tune`, or
        :meth:`Tuning.from_dict <prunehess.operators.tuning.Tuning.from_dict>` of a saved record): chunking,
        strategies, and CUDA graphs where this operator supports them (a record may come from another process).
        Frees the first-order graph when neither chosen strategy reuses it."""
        self.set_chunk_size(tuning.chunk_size)
        self.set_strategy(tuning.strategy, tuning.batched_strategy,
                          cuda_graphs=tuning.cuda_graphs and self.supports_cuda_graphs)
        if self.strategy != "graph" and self.batched_strategy != "graph_batched":
            self.release()

    # ----- blocks --------------------------------------------------------------------------------------------
    def restrict(self, names: Union[str, Iterable[str]]) -> "HessianOperator":
        """The diagonal block of the selected parameters ``names`` (others fixed), sharing data and graph."""
        names = (names,) if isinstance(names, str) else tuple(names)
        block = HessianOperator.__new__(HessianOperator)
        block._init_shared(self.engine, self.space.subspace(names), self.strategy, self.batched_strategy,
                           self._reduce, self.cuda_graphs)
        return block

    def layers(self) -> dict[str, "HessianOperator"]:
        """One diagonal block per parameter tensor, in ``named_parameters()`` order."""
        return {name: self.restrict([name]) for name in self.names}

    def block_slices(self) -> dict[str, slice]:
        """Where each parameter tensor's coordinates sit in a flat vector: the per-layer blocks of
        ``hutchinson_trace(H, blocks=H.block_slices())``, whose ``tr(H_ll)`` come from the same probes."""
        return self.space.slices()

    def release(self) -> None:
        """Free the reused first-order graph (and the activations it holds) and the CUDA graphs captured on it."""
        self.engine.release()

    # ----- products -----------------------------------------------------------------------------------------
    def _finish(self, flat: Tensor) -> Tensor:
        return self._reduce(flat) if self._reduce is not None else flat

    def _matvec(self, v: Tensor) -> Tensor:
        v = v.contiguous()  # column views are slow
        if self.cuda_graphs and self.strategy == "graph":
            return self.engine.capture(self.names, self._product)(v)
        return self._finish(self._product(v))

    def _product(self, v: Tensor) -> Tensor:
        return self.space.to_flat(self.engine.hvp(self.strategy, self.names).apply(self.space.from_flat(v)))

    def _matmat(self, V: Tensor) -> Tensor:
        if self.batched_strategy == "loop":
            return super()._matmat(V)
        strategy = "forward_over_reverse" if self.batched_strategy == "vmap" else "graph"
        hv = self.engine.hvp(strategy, self.names).apply_batched(self.space.from_flat(V.T.contiguous()))
        return self._finish(self.space.to_flat(hv)).T

    # ----- checks -------------------------------------------------------------------------------------------
    def check_deterministic(self, *, rtol: float = 1e-4, seed: int = 0) -> float:
        """Apply ``H`` twice to one random vector (Gaussian, from a CPU generator seeded ``seed``); raise
        :class:`NonDeterministicError` if the results differ by more than ``rtol`` (relative norm). Returns the
        relative difference. Costs two products."""
        generator = torch.Generator(device="cpu").manual_seed(int(seed))
        v = torch.randn((self.size,), generator=generator, dtype=torch.float64).to(dtype=self.dtype, device=self.device)
        first = self.matvec(v)
        self.release()  # rebuild the reused first-order graph: randomness in the forward pass would be baked into it
        second = self.matvec(v)
        scale = float(first.norm())
        diff = float((first - second).norm()) / scale if scale > 0 else float((first - second).norm())
        if diff > rtol:
            raise NonDeterministicError(
                f"two Hessian-vector products of the same vector differ by {diff:.2e} (relative): the model is not a "
                "fixed function of its weights (stochastic layers, or a non-deterministic kernel)"
            )
        return diff
