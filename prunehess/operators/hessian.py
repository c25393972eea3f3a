"""The Hessian of a model's loss over a fixed batch, as a linear operator on (surviving) parameters.

``HessianOperator(model, data)`` is ``H = ∇²_θ L(θ)`` for ``L = Σ_b (n_b / N) loss_fn(model(x_b), y_b)``, the mean
loss over the Hessian batch ``data`` (a list of mini-batches ``(x_b, y_b)`` already on the device; the last may be
smaller). Its vectors are flat tensors over the selected parameters' surviving coordinates (see
:class:`~prunehess.operators.params.ParameterSpace`): for a pruned model the operator is ``Pᵀ H P`` with ``P``
selecting the surviving weights, so its spectrum is the sparse network's. Nothing is computed until the first
product; the model is evaluated in ``eval()`` mode. The operator is a snapshot: build a new one after the
weights change.

Example:
    >>> import torch
    >>> from prunehess import HessianOperator
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <...>
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 3))
    >>> data = [(torch.randn(8, 4), torch.randint(0, 3, (8,)))]
    >>> H = HessianOperator(model, data)
    >>> H.shape
    (15, 15)
    >>> top = H.top_eigen(k=2)
    >>> bool(top.eigenvalues[0] >= top.eigenvalues[1])
    True
"""
from __future__ import annotations

import time
from typing import Callable, Iterable, Literal, Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prunehess.errors import NonDeterministicError
from prunehess.operators.base import LinearOperator
from prunehess.operators.hvp import HVP, HVPProblem, ReusedGradient, make_hvp
from prunehess.operators.masks import detect_masks
from prunehess.operators.params import ParameterSpace

__all__ = ["HessianOperator", "split_batch", "BATCHED_STRATEGIES", "PROBES_PER_PRODUCT"]

Strategy = Literal["graph", "double_backward", "forward_over_reverse"]
BatchedStrategy = Literal["loop", "vmap", "graph_batched"]
BATCHED_STRATEGIES = ("loop", "vmap", "graph_batched")
PROBES_PER_PRODUCT = 10
"""Vectors per batched product where a batched strategy was chosen (``extract``'s probes), and what ``tune()`` times."""
ParamSelector = Union[None, Sequence[str], Callable[[str, Tensor], bool]]


_CLEARLY_FASTER = 1.15  # tune(): a strategy must beat the default by this factor to be chosen
_HOPELESS = 2.0  # tune(): a candidate this many times slower than the default at first is not timed again
_CHUNK_FASTER = 1.05  # tune(): one chunk (same strategy, same memory in principle) must be this much faster
_CHUNK_MEMORY_FACTOR = 1.1  # tune(): ... and its peak memory within this factor of the mini-batched one's


def _cpu_high_water() -> int:
    """The process's peak resident memory in bytes (0 where the platform does not say)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return 0
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def split_batch(x: Tensor, y: Tensor, mini_batch_size: int) -> list[tuple[Tensor, Tensor]]:
    """Split one batch into mini-batches of ``mini_batch_size`` samples (the last may be smaller)."""
    if mini_batch_size < 1:
        raise ValueError(f"mini_batch_size must be positive, got {mini_batch_size}")
    return [(x[i : i + mini_batch_size], y[i : i + mini_batch_size]) for i in range(0, x.shape[0], mini_batch_size)]


def _merge_chunks(data: Sequence[tuple[Tensor, Tensor]], chunk_size: Optional[int]) -> list[tuple[Tensor, Tensor]]:
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
            :meth:`tune` measures and picks both.
        forward: the callable that runs the model (e.g. ``nn.DataParallel(model)``); autograd strategies only.
        chunk_size: process consecutive mini-batches together in chunks of up to this many samples (faster where
            memory allows; the numbers are the same up to rounding).
        total_samples: ``N`` for the weights ``n_b / N`` (the global batch size when ``data`` is one rank's share).
        reduce: applied to every flat product (e.g. an all-reduce sum across ranks).
        fast_second_order: record convolutions and eval-mode BatchNorm in forms whose second derivatives are
            cheap (autograd strategies; see :mod:`prunehess.operators.kernels`). ``False``: PyTorch's own.
        cuda_graphs: on a GPU with the ``"graph"`` strategy, capture each operator's (and block's) product in a
            CUDA graph on first use and replay it afterwards (:mod:`prunehess.operators.cudagraph`); :meth:`tune`
            turns it on where it is clearly faster.
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
        data = list(data)
        n_total = total_samples if total_samples is not None else sum(int(y.shape[0]) for _, y in data)
        problem = HVPProblem(model, loss_fn, data, [int(y.shape[0]) / n_total for _, y in data], forward,
                             fast_second_order, total_samples=n_total)
        self._init_shared(problem, space, ReusedGradient(problem, names), strategy, batched_strategy, reduce,
                          cuda_graphs)
        if chunk_size is not None:
            self.set_chunk_size(chunk_size)

    def _init_shared(self, problem, space, gradient, strategy, batched_strategy, reduce, cuda_graphs) -> None:
        first = dict(problem.model.named_parameters())[space.names[0]]
        super().__init__(space.dim, first.dtype, first.device)
        self.problem = problem
        self.space = space
        self._gradient = gradient
        self._reduce = reduce
        self._hvps: dict[str, HVP] = {}
        self._captured = None
        self.set_strategy(strategy, batched_strategy, cuda_graphs=cuda_graphs)
        self.tuning: dict[str, float] = {}

    # ----- configuration -------------------------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        """The selected parameter names, in flat-vector order."""
        return self.space.names

    @property
    def reduces(self) -> bool:
        """Whether products are combined across processes (data-parallel Hessian batch)."""
        return self._reduce is not None

    def set_strategy(self, strategy: Strategy, batched_strategy: Optional[BatchedStrategy] = None, *,
                     cuda_graphs: Optional[bool] = None) -> None:
        """Choose how single and batched products are computed (``cuda_graphs``: keep the current setting when
        ``None``)."""
        from prunehess.operators.hvp import STRATEGIES

        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
        batched_strategy = batched_strategy or "loop"
        if batched_strategy not in BATCHED_STRATEGIES:
            raise ValueError(f"unknown batched strategy {batched_strategy!r}; choose one of {', '.join(BATCHED_STRATEGIES)}")
        custom_forward = self.problem.forward is not self.problem.model
        if custom_forward and (strategy == "forward_over_reverse" or batched_strategy == "vmap"):
            raise ValueError("a custom forward (e.g. DataParallel) needs an autograd strategy: 'graph' or 'double_backward'")
        if cuda_graphs is None:
            cuda_graphs = getattr(self, "cuda_graphs", False)
        if cuda_graphs and not self.supports_cuda_graphs:
            raise ValueError("cuda_graphs needs a CUDA device, the model's own forward and no cross-process reduce")
        self.strategy, self.batched_strategy, self.cuda_graphs = strategy, batched_strategy, bool(cuda_graphs)

    @property
    def supports_cuda_graphs(self) -> bool:
        """Whether products can be captured in CUDA graphs: a GPU, the model's own forward, no cross-process reduce."""
        return self.device.type == "cuda" and self.problem.forward is self.problem.model and self._reduce is None

    def _hvp(self, strategy: str) -> HVP:
        if strategy not in self._hvps:
            self._hvps[strategy] = make_hvp(strategy, self.problem, self.names, self._gradient)
        return self._hvps[strategy]

    @property
    def chunk_size(self) -> Optional[int]:
        """Samples processed together (consecutive mini-batches merged), or ``None``: the mini-batches as given."""
        return self.problem.chunk_size

    def set_chunk_size(self, chunk_size: Optional[int]) -> None:
        """Process consecutive mini-batches together in chunks of up to ``chunk_size`` samples (``None``: as
        given). Larger chunks mean fewer, larger kernels per product (the numbers are the same up to rounding)
        and larger temporaries, and a merged copy of the batch; with graph reuse the kept graph holds every
        chunk's activations anyway. Shared by the operator and its blocks; drops the first-order graph (rebuilt at
        the next product)."""
        if chunk_size is not None and int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be positive or None, got {chunk_size}")
        chunk_size = None if chunk_size is None else int(chunk_size)
        problem = self.problem
        if chunk_size == problem.chunk_size:
            return
        batches = _merge_chunks(problem.minibatches, chunk_size)  # may run out of memory: nothing changed yet
        self.release()
        problem.batches = batches
        problem.weights = [int(y.shape[0]) / problem.total_samples for _, y in batches]
        problem.chunk_size = chunk_size

    def restrict(self, names: Union[str, Iterable[str]]) -> "HessianOperator":
        """The diagonal block of the selected parameters ``names`` (others fixed), sharing data and graph."""
        names = (names,) if isinstance(names, str) else tuple(names)
        block = HessianOperator.__new__(HessianOperator)
        block._init_shared(self.problem, self.space.subspace(names), self._gradient, self.strategy,
                           self.batched_strategy, self._reduce, self.cuda_graphs)
        return block

    def layers(self) -> dict[str, "HessianOperator"]:
        """One diagonal block per parameter tensor, in ``named_parameters()`` order."""
        return {name: self.restrict([name]) for name in self.names}

    def release(self) -> None:
        """Free the reused first-order graph (and the activations it holds)."""
        self._gradient.release()

    # ----- products -----------------------------------------------------------------------------------------
    def _finish(self, flat: Tensor) -> Tensor:
        return self._reduce(flat) if self._reduce is not None else flat

    def _matvec(self, v: Tensor) -> Tensor:
        v = v.contiguous()  # column views are slow
        if self.cuda_graphs and self.strategy == "graph":
            return self._captured_product()(v)
        return self._finish(self._product(v))

    def _product(self, v: Tensor) -> Tensor:
        return self.space.to_flat(self._hvp(self.strategy).apply(self.space.from_flat(v)))

    def _captured_product(self):
        """This operator's product as a CUDA graph (captured on first use; the first-order graph is moved to
        the capture stream, shared with the operator's blocks)."""
        from prunehess.operators.cudagraph import CudaGraphs

        if self._captured is None:
            context = self._gradient.cuda_graphs
            if context is None:
                context = CudaGraphs(self.device)
                self._gradient.release()  # rebuilt on the capture stream at the first product
                self._gradient.stream = context.stream
                self._gradient.on_release.append(context.reset)
                self._gradient.cuda_graphs = context
            self._captured = context.product(self._product)
        return self._captured

    def _matmat(self, V: Tensor) -> Tensor:
        if self.batched_strategy == "loop":
            return super()._matmat(V)
        strategy = "forward_over_reverse" if self.batched_strategy == "vmap" else "graph"
        hv = self._hvp(strategy).apply_batched(self.space.from_flat(V.T.contiguous()))
        return self._finish(self.space.to_flat(hv)).T

    # ----- checks and tuning --------------------------------------------------------------------------------
    def check_deterministic(self, *, rtol: float = 1e-4, seed: int = 0) -> float:
        """Apply ``H`` twice to one random vector; raise :class:`NonDeterministicError` if the results differ by
        more than ``rtol`` (relative norm). Returns the relative difference. Costs two products."""
        from prunehess.estimators.sampling import gaussian, make_generator

        v = gaussian((self.size,), generator=make_generator(seed), dtype=self.dtype, device=self.device)
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

    def tune(
        self,
        *,
        k: int = PROBES_PER_PRODUCT,
        repeats: int = 3,
        candidates: Optional[Sequence[str]] = None,
        memory_factor: float = 1.5,
    ) -> dict[str, float]:
        """Time each strategy on this operator and keep the fastest for single and for batched products.

        Measures seconds per product (fastest of ``repeats``) for ``graph``, ``double_backward`` and
        ``forward_over_reverse`` (single), then for graph reuse: the mini-batches merged into one chunk (kept
        when ≥ 5 % faster with the peak memory within 10 %: :meth:`set_chunk_size`) and, on a GPU, products
        replayed from a CUDA graph (kept when clearly faster); and ``vmap`` and ``graph_batched`` over ``k``
        vectors. ``candidates`` limits the choice (names of strategies, ``"one_chunk"``, ``"cuda_graphs"``). Strategies that
        fail (unsupported operator, out of memory) are skipped, and a batched strategy is kept only if its peak
        memory stays within ``memory_factor`` times the chosen single strategy's (batched products hold ``k``
        sets of activations; on a CPU the process's high-water mark is watched instead), and one whose warm-up
        already broke that rule is not timed. Candidates are timed in interleaved rounds; one whose first timing
        after its warm-up is already twice the default's (graph reuse; one product at a time) is not timed
        again. Returns the timings (also kept in :attr:`tuning`); rejected batched strategies appear as ``inf``.
        """
        from prunehess.operators.hvp import STRATEGIES

        custom_forward = self.problem.forward is not self.problem.model
        singles = [s for s in (candidates or STRATEGIES) if s in STRATEGIES]
        batched = [s for s in (candidates or ("vmap", "graph_batched")) if s in ("vmap", "graph_batched")]
        if custom_forward:
            singles = [s for s in singles if s != "forward_over_reverse"]
            batched = [s for s in batched if s != "vmap"]
        g = torch.Generator().manual_seed(0)
        v = torch.randn(self.size, generator=g, dtype=torch.float64).to(self.dtype).to(self.device)
        V = torch.randn(self.size, k, generator=g, dtype=torch.float64).to(self.dtype).to(self.device)
        timings: dict[str, float] = {}

        def once(fn) -> float:
            self._sync()
            start = time.perf_counter()
            fn()
            self._sync()
            return time.perf_counter() - start

        def timed(fn, times: int = repeats, fits: Optional[Callable[[], bool]] = None) -> Optional[float]:
            """Fastest of ``times`` timings after a warm-up; ``inf`` without timing when the warm-up already broke
            the memory rule ``fits`` (the candidate is out whatever its speed)."""
            try:
                fn()  # warm-up (and, for "graph", building the first-order graph)
                if fits is not None and not fits():
                    return float("inf")
                return min(once(fn) for _ in range(times))  # the fastest repeat: robust to other load
            except (RuntimeError, NotImplementedError) as err:  # unsupported op or out of memory
                if "out of memory" in str(err).lower() and torch.cuda.is_available():
                    torch.cuda.empty_cache()
                return None

        def rounds(settings: dict[str, Callable[[], None]], fn: Callable[[], None], best: dict[str, float],
                   reference: str) -> None:
            """``repeats − 1`` more timings of each candidate, one of each per round: a load that passes over the
            machine slows every candidate of its round alike instead of one candidate's every repeat. Candidates
            whose first (warm) timing is already ``_HOPELESS`` times the default's (``reference``) are left out of
            the rounds."""
            if reference in best:
                settings = {name: setting for name, setting in settings.items()
                            if name == reference or best[name] <= _HOPELESS * best[reference]}
            for _ in range(repeats - 1):
                for name, setting in settings.items():
                    setting()
                    try:
                        best[name] = min(best[name], once(fn))
                    except (RuntimeError, NotImplementedError) as err:  # e.g. out of memory only now
                        if "out of memory" in str(err).lower() and torch.cuda.is_available():
                            torch.cuda.empty_cache()
                        best[name] = float("inf")

        saved = (self.strategy, self.batched_strategy)
        peaks: dict[str, int] = {}
        for name in singles:
            self.strategy = name
            self._reset_peak()
            t = timed(lambda: self._matvec(v), times=1)
            if t is not None:
                timings[name] = t
                peaks[name] = self._peak()
        rounds({name: (lambda name=name: setattr(self, "strategy", name)) for name in timings},
               lambda: self._matvec(v), timings, reference="graph")
        best_single = min(timings, key=timings.get) if timings else saved[0]
        if "graph" in timings and timings["graph"] <= _CLEARLY_FASTER * timings[best_single]:
            best_single = "graph"  # near-ties go to graph reuse: cheapest in principle, and timings are noisy
        self.strategy = best_single
        chosen = timings.get(best_single, float("inf"))  # seconds per product of the configuration kept so far
        if (best_single == "graph" and "graph" in timings and len(self.problem.batches) > 1
                and (candidates is None or "one_chunk" in candidates)):
            # the kept graph holds every mini-batch's activations anyway: one chunk means fewer, larger kernels
            unchunked = self.chunk_size
            before = self._reset_peak()
            try:
                self.set_chunk_size(self.problem.total_samples)
                t = timed(lambda: self._matvec(v))
            except RuntimeError as err:  # out of memory while merging
                if "out of memory" not in str(err).lower():
                    raise
                t = None
            peak = self._peak()
            if t is not None:
                timings["graph+one_chunk"] = t
            if t is not None and _CHUNK_FASTER * t < chosen \
                    and self._within(peaks.get("graph", 0), before, peak, _CHUNK_MEMORY_FACTOR):
                chosen, peaks["graph"] = t, peak
            else:
                self.set_chunk_size(unchunked)
        if best_single == "graph" and self.supports_cuda_graphs and (candidates is None or "cuda_graphs" in candidates):
            self.cuda_graphs = True
            before = self._reset_peak()
            t = timed(lambda: self._matvec(v))
            captured = self._captured
            if t is not None and captured is not None and not captured.failed:
                timings["graph+cuda_graphs"] = t
                fits = self._within(peaks.get("graph", 0), before, self._peak(), memory_factor)
                self.cuda_graphs = fits and _CLEARLY_FASTER * t < chosen
            else:
                self.cuda_graphs = False
            if not self.cuda_graphs and self._gradient.cuda_graphs is not None:
                self._gradient.cuda_graphs.reset()
                self._captured = None
        batched_timings = {"loop": timings.get("graph+cuda_graphs", chosen) if self.cuda_graphs else chosen}
        products: dict[str, float] = {}  # seconds per batched product of k vectors
        for name in batched:
            self.batched_strategy = name
            before = self._reset_peak()

            def fits(before: int = before) -> bool:
                return self._within(peaks.get(best_single, 0), before, self._peak(), memory_factor)

            t = timed(lambda: self._matmat(V), times=1, fits=fits)
            if t is not None and t < float("inf") and fits():
                products[name] = t
            elif t is not None:
                batched_timings[name] = float("inf")
        if products:  # in rounds with k single products, the loop they must beat
            products["loop"] = k * batched_timings["loop"]
            setting = {name: (lambda name=name: setattr(self, "batched_strategy", name)) for name in products}
            rounds(setting, lambda: self._matmat(V), products, reference="loop")
            batched_timings.update({name: t / k for name, t in products.items()})
        timings.update({f"batched:{n}": t for n, t in batched_timings.items()})
        fastest = min(batched_timings, key=batched_timings.get)
        # a batched strategy must clearly beat one product at a time to be worth its memory
        self.batched_strategy = fastest if _CLEARLY_FASTER * batched_timings[fastest] < batched_timings["loop"] else "loop"
        if self.strategy != "graph" and self.batched_strategy != "graph_batched":
            self.release()
        self.tuning = timings
        return timings

    def _reset_peak(self) -> int:
        """Start a peak-memory measurement; returns the current high-water mark (CPU) or 0 (CUDA)."""
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return 0
        return _cpu_high_water()

    def _peak(self) -> int:
        """Peak bytes since :meth:`_reset_peak` (CUDA), or the process's high-water mark (CPU)."""
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        return _cpu_high_water()

    def _within(self, single_peak: int, before: int, after: int, factor: float) -> bool:
        if self.device.type == "cuda":
            return after <= factor * max(single_peak, 1)
        return after - before <= (factor - 1.0) * before  # the high-water mark may only grow a little

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # ----- estimators ---------------------------------------------------------------------------------------
    def top_eigen(self, k: int = 1, *, method: Literal["lanczos", "power"] = "lanczos", **kwargs):
        """Top-``k`` eigenvalues (and eigenvectors with ``return_eigenvectors=True``); see
        :func:`~prunehess.estimators.lanczos_top_eigen` and :func:`~prunehess.estimators.power_iteration`."""
        from prunehess.estimators import lanczos_top_eigen, power_iteration

        if method == "lanczos":
            return lanczos_top_eigen(self, k=k, **kwargs)
        if method == "power":
            return power_iteration(self, k=k, **kwargs)
        raise ValueError(f"unknown method {method!r}; choose 'lanczos' or 'power'")

    def trace(self, *, method: Literal["hutchinson", "hutch++"] = "hutchinson", per_layer: bool = False, **kwargs):
        """Trace estimate; with ``per_layer=True`` (Hutchinson) every parameter tensor's block trace comes from the
        same probes, in ``result.blocks``. See :func:`~prunehess.estimators.hutchinson_trace`, :func:`hutchpp_trace`."""
        from prunehess.estimators import hutchinson_trace, hutchpp_trace

        if method == "hutchinson":
            return hutchinson_trace(self, blocks=self.space.slices() if per_layer else None, **kwargs)
        if method == "hutch++":
            if per_layer:
                raise ValueError("per-layer traces come from Hutchinson probes; use method='hutchinson'")
            return hutchpp_trace(self, **kwargs)
        raise ValueError(f"unknown method {method!r}; choose 'hutchinson' or 'hutch++'")

    def summary(self, *, k: int = 1, per_layer_traces: bool = False, **kwargs):
        """Top-``k`` eigenvalues, trace and density in one call, sharing products (the density's Lanczos run gives
        the top eigenvalues when they have converged, and on a small block the exact spectrum and trace); see
        :func:`~prunehess.estimators.curvature_summary`. ``per_layer_traces=True`` adds every parameter tensor's
        trace from the same Hutchinson probes."""
        from prunehess.estimators import curvature_summary

        blocks = self.space.slices() if per_layer_traces else None
        return curvature_summary(self, k=k, trace_blocks=blocks, **kwargs)

    def density(self, *, n_runs: int = 1, n_steps: int = 100, seed: int = 0, **kwargs):
        """Spectral density by stochastic Lanczos quadrature; see :func:`~prunehess.estimators.slq_density`."""
        from prunehess.estimators import slq_density

        return slq_density(self, n_runs=n_runs, n_steps=n_steps, seed=seed, **kwargs)
