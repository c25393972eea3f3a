"""What the curvature operators built from a network's outputs share: wiring, blocks, chunks, checks.

:class:`~prunehess.operators.ggn.GGNOperator` and :class:`~prunehess.operators.fisher.EmpiricalFisherOperator` act
on the flat vectors of :class:`~prunehess.operators.hessian.HessianOperator` (selected parameters, surviving
coordinates: :class:`~prunehess.operators.params.ParameterSpace`), over the same Hessian batch with the same weights
``n_b / N`` (``N = total_samples``: the global batch when ``data`` is one process's share, the shares' products
summed by ``reduce``), and offer its interface: ``restrict`` / ``layers`` / ``block_slices`` (diagonal blocks sharing
the batch and what was cached on it), ``set_strategy`` / ``apply_tuning`` / ``set_chunk_size``, ``release``,
``check_deterministic``, ``reduces``, ``supports_cuda_graphs`` (always ``False``). The model is evaluated in eval
mode, through its functional form (``torch.func.functional_call``), so a custom ``forward`` such as
``nn.DataParallel`` is refused. Each family has its own strategies; :meth:`CurvatureOperator.apply_tuning` takes a
:class:`~prunehess.operators.tuning.Tuning` measured on the Hessian and applies what carries over.

:func:`loss_gradient` is ``∇L`` on the coordinates of any of these operators (the Hessian's too).

Example:
    >>> import torch
    >>> from prunehess.operators import GGNOperator
    >>> from prunehess.operators.curvature import loss_gradient
    >>> model = torch.nn.Linear(3, 2)
    >>> G = GGNOperator(model, [(torch.randn(6, 3), torch.randint(0, 2, (6,)))])
    >>> G.shape, list(G.block_slices()), G.restrict("bias").shape, tuple(loss_gradient(G).shape)
    ((8, 8), ['weight', 'bias'], (2, 2), (8,))
"""
from __future__ import annotations

from typing import Callable, Iterable, Literal, Mapping, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from prunehess.errors import NonDeterministicError
from prunehess.operators.base import LinearOperator
from prunehess.operators.engine import rechunk
from prunehess.operators.hessian import ParamSelector, _select
from prunehess.operators.hvp import HVPProblem, eval_mode
from prunehess.operators.masks import detect_masks
from prunehess.operators.params import ParameterSpace
from prunehess.operators.tuning import Tuning

__all__ = ["CurvatureOperator", "SharedBatch", "build_problem", "build_space", "functional_parts", "loss_gradient"]

Masks = Union[Literal["auto"], None, Mapping[str, Tensor]]


def build_problem(model: nn.Module, data: Sequence[tuple[Tensor, Tensor]], loss_fn: Callable[[Tensor, Tensor], Tensor],
                  *, forward: Optional[Callable[[Tensor], Tensor]] = None,
                  total_samples: Optional[int] = None) -> HVPProblem:
    """Model, loss and the mini-batches ``data`` with weights ``n_b / N`` (``N = total_samples``, default: the
    samples in ``data``)."""
    if not data:
        raise ValueError("the Hessian batch is empty")
    if forward is not None and forward is not model:
        raise ValueError("a custom forward (e.g. DataParallel) cannot be differentiated with torch.func: these "
                         "operators run the model's own forward (share the batch across processes with "
                         "total_samples and reduce instead)")
    data = list(data)
    n_total = int(total_samples) if total_samples is not None else sum(int(y.shape[0]) for _, y in data)
    return HVPProblem(model, loss_fn, data, [int(y.shape[0]) / n_total for _, y in data], None, False,
                      total_samples=n_total)


def build_space(model: nn.Module, params: ParamSelector, masks: Masks) -> ParameterSpace:
    """The selected parameters (as :class:`HessianOperator` selects them) and their masks."""
    names = _select(model, params)
    if isinstance(masks, str):
        if masks != "auto":
            raise ValueError(f"masks must be 'auto', None or a mapping, got {masks!r}")
        masks = detect_masks(model)
    named = dict(model.named_parameters())
    return ParameterSpace.from_tensors({n: named[n] for n in names}, dict(masks or {}))


def functional_parts(model: nn.Module, names: Sequence[str]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """``(primals, fixed)`` for ``functional_call``: the selected parameters detached, and every other parameter
    and buffer (detached)."""
    selected = set(names)
    named = dict(model.named_parameters())
    fixed = {n: p.detach() for n, p in named.items() if n not in selected}
    fixed.update(dict(model.named_buffers()))
    return {n: named[n].detach() for n in names}, fixed


class SharedBatch:
    """The Hessian batch (and its chunks) an operator shares with its blocks; subclasses add caches built on it,
    which :meth:`release` drops."""

    def __init__(self, problem: HVPProblem):
        self.problem = problem

    def release(self) -> None:
        """Drop what was cached on the batch (rebuilt at the next product)."""

    def set_chunk_size(self, chunk_size: Optional[int]) -> None:
        """Merge consecutive mini-batches into chunks of up to ``chunk_size`` samples (weights ``n_c / N``)."""
        rechunk(self.problem, chunk_size, self.release)


class CurvatureOperator(LinearOperator):
    """A symmetric curvature operator of a model's loss over a fixed batch (see the module docstring).

    Subclasses set :attr:`STRATEGIES` and :attr:`BATCHED_STRATEGIES`, implement ``_product(V)`` for flat ``V`` of
    shape ``(n,)`` or ``(n, k)`` (before the cross-process ``reduce``) and ``_tuned(tuning)``.
    """

    kind = "curvature"
    STRATEGIES: tuple[str, ...] = ()
    BATCHED_STRATEGIES: tuple[str, ...] = ("loop",)
    fresh_products = True
    cuda_graphs = False  # never captured: products are torch.func transforms and matrix products

    def _init_shared(self, shared: SharedBatch, space: ParameterSpace, strategy: str, batched_strategy: str,
                     reduce: Optional[Callable[[Tensor], Tensor]]) -> None:
        first = dict(shared.problem.model.named_parameters())[space.names[0]]
        super().__init__(space.dim, first.dtype, first.device)
        self._shared = shared
        self.space = space
        self._reduce = reduce
        self.set_strategy(strategy, batched_strategy)

    # ----- configuration -------------------------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        """The selected parameter names, in flat-vector order."""
        return self.space.names

    @property
    def problem(self) -> HVPProblem:
        """Model, loss and Hessian batch (shared with the blocks)."""
        return self._shared.problem

    @property
    def reduces(self) -> bool:
        """Whether products are combined across processes (data-parallel Hessian batch)."""
        return self._reduce is not None

    @property
    def supports_cuda_graphs(self) -> bool:
        """``False``: these products are not captured in CUDA graphs."""
        return False

    def set_strategy(self, strategy: str, batched_strategy: Optional[str] = None, *,
                     cuda_graphs: Optional[bool] = None) -> None:
        """Choose how single and batched products are computed (one of :attr:`STRATEGIES`, of
        :attr:`BATCHED_STRATEGIES`); ``cuda_graphs`` may only be ``None`` or ``False``."""
        if strategy not in self.STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(self.STRATEGIES)}")
        batched_strategy = batched_strategy or "loop"
        if batched_strategy not in self.BATCHED_STRATEGIES:
            raise ValueError(f"unknown batched strategy {batched_strategy!r}; choose one of "
                             f"{', '.join(self.BATCHED_STRATEGIES)}")
        if cuda_graphs:
            raise ValueError(f"{self.kind} products are not captured in CUDA graphs")
        self.strategy, self.batched_strategy = strategy, batched_strategy

    @property
    def chunk_size(self) -> Optional[int]:
        """Samples processed together (consecutive mini-batches merged), or ``None``: the mini-batches as given."""
        return self.problem.chunk_size

    def set_chunk_size(self, chunk_size: Optional[int]) -> None:
        """Process consecutive mini-batches together in chunks of up to ``chunk_size`` samples (``None``: as given);
        shared with the blocks; drops what was cached on the batch."""
        self._shared.set_chunk_size(chunk_size)

    def apply_tuning(self, tuning: Tuning) -> None:
        """Apply what carries over from a :class:`~prunehess.operators.tuning.Tuning` measured on the Hessian:
        the chunk size, and the strategies as ``_tuned`` maps them (CUDA graphs never)."""
        self.set_chunk_size(tuning.chunk_size)
        self.set_strategy(*self._tuned(tuning))

    def _tuned(self, tuning: Tuning) -> tuple[str, str]:
        raise NotImplementedError

    # ----- blocks --------------------------------------------------------------------------------------------
    def restrict(self, names: Union[str, Iterable[str]]) -> "CurvatureOperator":
        """The diagonal block of the parameters ``names`` (others fixed), sharing the batch and its caches."""
        names = (names,) if isinstance(names, str) else tuple(names)
        block = type(self).__new__(type(self))
        self._init_block(block)
        block._init_shared(self._shared, self.space.subspace(names), self.strategy, self.batched_strategy,
                           self._reduce)
        return block

    def _init_block(self, block: "CurvatureOperator") -> None:
        """Give a new block (before its wiring) what it inherits from this operator besides the shared batch."""

    def layers(self) -> dict[str, "CurvatureOperator"]:
        """One diagonal block per parameter tensor, in flat-vector order."""
        return {name: self.restrict([name]) for name in self.names}

    def block_slices(self) -> dict[str, slice]:
        """Where each parameter tensor's coordinates sit in a flat vector (per-layer Hutchinson blocks)."""
        return self.space.slices()

    def release(self) -> None:
        """Free what the products cached on the batch (shared with the blocks; rebuilt at the next product)."""
        self._shared.release()

    def gradient(self) -> Tensor:
        """``∇L`` on this operator's coordinates (:func:`loss_gradient`)."""
        return loss_gradient(self)

    # ----- products -----------------------------------------------------------------------------------------
    def _finish(self, flat: Tensor) -> Tensor:
        return self._reduce(flat) if self._reduce is not None else flat

    def _product(self, V: Tensor) -> Tensor:
        raise NotImplementedError

    def _matvec(self, v: Tensor) -> Tensor:
        return self._finish(self._product(v.contiguous()))

    def _matmat(self, V: Tensor) -> Tensor:
        if self.batched_strategy == "loop":
            return super()._matmat(V)
        return self._finish(self._product(V.contiguous()))

    # ----- checks -------------------------------------------------------------------------------------------
    def check_deterministic(self, *, rtol: float = 1e-4, seed: int = 0) -> float:
        """Apply the operator twice to one Gaussian vector (CPU generator seeded ``seed``), dropping the caches in
        between; raise :class:`NonDeterministicError` if the results differ by more than ``rtol`` (relative
        norm). Returns the relative difference. Costs two products."""
        generator = torch.Generator(device="cpu").manual_seed(int(seed))
        v = torch.randn((self.size,), generator=generator, dtype=torch.float64).to(dtype=self.dtype, device=self.device)
        first = self.matvec(v)
        self.release()
        second = self.matvec(v)
        scale = float(first.norm())
        diff = float((first - second).norm()) / scale if scale > 0 else float((first - second).norm())
        if diff > rtol:
            raise NonDeterministicError(
                f"two {self.kind} products of the same vector differ by {diff:.2e} (relative): the model is not a "
                "fixed function of its weights (stochastic layers, or a non-deterministic kernel)")
        return diff


def loss_gradient(op) -> Tensor:
    """``∇L = Σ_b (n_b / N) ∇ loss_fn(f(x_b), y_b)`` on the flat coordinates of ``op`` (a
    :class:`CurvatureOperator` or a :class:`~prunehess.operators.hessian.HessianOperator`: its ``problem`` and
    ``space``), in eval mode, summed across processes by the operator's ``reduce``."""
    problem, space = op.problem, op.space
    params = problem.parameters(space.names)
    total = [torch.zeros_like(p) for p in params]
    with eval_mode(problem.model), torch.enable_grad():
        for (x, y), w in zip(problem.batches, problem.weights):
            loss = problem.loss_fn(problem.forward(x), y) * w
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            total = [t if g is None else t + g for t, g in zip(total, grads)]
    return op._finish(space.to_flat(dict(zip(space.names, total))))
