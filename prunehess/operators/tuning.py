"""Measure the product strategies on one operator and pick the fastest within the memory rules
(``extract --strategy tune``; the default, ``--strategy auto``, chooses without timing:
:mod:`prunehess.operators.rule`).

:func:`tune` times seconds per product (the fastest of ``repeats``) of each single-product strategy (``graph``,
``double_backward``, ``forward_over_reverse``), then, for graph reuse, the mini-batches merged into one chunk and
products replayed from CUDA graphs, then the batched strategies (``vmap``, ``graph_batched``) over ``k`` vectors
against ``k`` single products. The decision rules:

- a single strategy is chosen when fastest, but ties within ``_CLEARLY_FASTER`` (15 %) go to graph reuse
  (cheapest in principle; timings are noisy);
- one chunk is kept when ``_CHUNK_FASTER`` (5 %) faster with its peak memory within ``_CHUNK_MEMORY_FACTOR``
  (10 %) of the mini-batched graph's;
- CUDA graphs are kept when ``_CLEARLY_FASTER`` faster with the peak within ``memory_factor``;
- a batched strategy is kept when ``_CLEARLY_FASTER`` faster per vector than the single products, and only if its
  peak memory stays within ``memory_factor`` times the single strategy's (it holds ``k`` sets of activations; on
  a CPU the process's high-water mark may grow by at most ``memory_factor − 1``); one whose warm-up already broke
  that rule is not timed (``inf``);
- after one warm-up and one timing each, candidates take turns in ``repeats − 1`` interleaved rounds (a load
  passing over the machine slows a whole round alike), except those already ``_HOPELESS`` (2×) slower than the
  default (graph reuse; the loop of single products);
- a candidate that fails (unsupported operator, out of memory) is skipped.

The result is a :class:`Tuning`, the record ``extract`` saves in ``strategy.json`` and applies to every checkpoint
with :meth:`HessianOperator.apply_tuning <prunehess.operators.hessian.HessianOperator.apply_tuning>`.

Example:
    >>> t = Tuning("graph", "vmap", timings={"graph": 0.0123456789})
    >>> t.to_dict()
    {'strategy': 'graph', 'batched_strategy': 'vmap', 'cuda_graphs': False, 'chunk_size': None,
     'timings': {'graph': 0.012346}}
    >>> Tuning.from_dict(t.to_dict()) == Tuning("graph", "vmap", timings={"graph": 0.012346})
    True
"""
from __future__ import annotations

import functools
import math
import sys
import time
import types
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Protocol, Sequence

import torch
from torch import Tensor

from prunehess.operators.engine import ProductEngine
from prunehess.operators.hvp import BATCHED_STRATEGIES, STRATEGIES, HVPProblem

try:
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None

__all__ = ["Tuning", "tune", "PROBES_PER_PRODUCT"]

PROBES_PER_PRODUCT = 10
"""Vectors per batched product where a batched strategy was chosen (``extract``'s probes), and what :func:`tune`
times."""

_CLEARLY_FASTER = 1.15  # a strategy must beat the default by this factor to be chosen
_HOPELESS = 2.0  # a candidate this many times slower than the default at first is not timed again
_CHUNK_FASTER = 1.05  # one chunk (same strategy, same memory in principle) must be this much faster
_CHUNK_MEMORY_FACTOR = 1.1  # ... and its peak memory within this factor of the mini-batched one's
_BATCHED = ("vmap", "graph_batched")  # the batched strategies timed against the loop of single products


@dataclass(frozen=True)
class Tuning:
    """A product configuration and the timings it was chosen from (seconds per product; ``inf``: rejected).

    ``to_dict`` is ``strategy.json``'s record: the four settings and the timings rounded to 6 decimals.
    """

    strategy: str
    batched_strategy: str = "loop"
    cuda_graphs: bool = False
    chunk_size: Optional[int] = None
    timings: Mapping[str, float] = field(default_factory=dict, hash=False)  # a read-only view

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}")
        if self.batched_strategy not in BATCHED_STRATEGIES:
            raise ValueError(f"unknown batched strategy {self.batched_strategy!r}; choose one of "
                             f"{', '.join(BATCHED_STRATEGIES)}")
        object.__setattr__(self, "timings", types.MappingProxyType(dict(self.timings)))

    def to_dict(self) -> dict[str, Any]:
        """``{"strategy", "batched_strategy", "cuda_graphs", "chunk_size", "timings"}`` (timings rounded)."""
        return {"strategy": self.strategy, "batched_strategy": self.batched_strategy, "cuda_graphs": self.cuda_graphs,
                "chunk_size": self.chunk_size, "timings": {k: round(v, 6) for k, v in self.timings.items()}}

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> "Tuning":
        """The tuning of a :meth:`to_dict` record; other keys are ignored, missing settings take their defaults
        (a hand-set choice saves only the strategies)."""
        chunk = record.get("chunk_size")
        return cls(record["strategy"], record.get("batched_strategy") or "loop", bool(record.get("cuda_graphs")),
                   None if chunk is None else int(chunk), dict(record.get("timings") or {}))


class Tunable(Protocol):
    """What :func:`tune` uses of a :class:`~prunehess.operators.hessian.HessianOperator` (named here, not imported:
    the operator imports :class:`Tuning`)."""

    size: int
    dtype: torch.dtype
    device: torch.device
    names: tuple[str, ...]
    engine: ProductEngine
    problem: HVPProblem
    strategy: str
    batched_strategy: str
    cuda_graphs: bool
    chunk_size: Optional[int]
    supports_cuda_graphs: bool

    def set_strategy(self, strategy: str, batched_strategy: Optional[str] = None, *,
                     cuda_graphs: Optional[bool] = None) -> None: ...
    def set_chunk_size(self, chunk_size: Optional[int]) -> None: ...
    def apply_tuning(self, tuning: Tuning) -> None: ...
    def _matvec(self, v: Tensor) -> Tensor: ...
    def _matmat(self, V: Tensor) -> Tensor: ...


def tune(
    op: Tunable,
    *,
    k: int = PROBES_PER_PRODUCT,
    repeats: int = 3,
    candidates: Optional[Sequence[str]] = None,
    memory_factor: float = 1.5,
) -> Tuning:
    """Time the product strategies on ``op`` and return the fastest configuration within the memory rules (see
    the module docstring), with every timing (batched ones per vector, under ``batched:<name>``).

    ``candidates`` limits the choice (names of strategies, ``"one_chunk"``, ``"cuda_graphs"``). The products
    timed are uncounted (``op.n_matvecs`` does not change). ``op`` is left configured with the result (its last
    step is ``op.apply_tuning(result)``), so applying it again changes nothing; apply it to another operator (a
    later checkpoint's) to configure that one the same way.
    """
    singles, batched = _candidates(op, candidates)
    fallback = op.strategy
    v, V = _probes(op, k)
    timings, peaks = _time_singles(op, singles, v, repeats)
    best = _pick_single(timings, fallback)
    _use_strategy(op, best)
    chosen = timings.get(best, math.inf)  # seconds per product of the configuration kept so far
    if best == "graph" and "graph" in timings and len(op.problem.batches) > 1 and _allowed("one_chunk", candidates):
        t, chosen, peaks["graph"] = _try_one_chunk(op, v, repeats, peaks.get("graph", 0), chosen)
        if t is not None:
            timings["graph+one_chunk"] = t
    if best == "graph" and op.supports_cuda_graphs and _allowed("cuda_graphs", candidates):
        t = _try_cuda_graphs(op, v, repeats, peaks.get("graph", 0), chosen, memory_factor)
        if t is not None:
            timings["graph+cuda_graphs"] = t
    loop = timings.get("graph+cuda_graphs", chosen) if op.cuda_graphs else chosen
    per_vector = _time_batched(op, batched, V, repeats, loop, peaks.get(best, 0), memory_factor)
    timings.update({f"batched:{name}": t for name, t in per_vector.items()})
    result = Tuning(op.strategy, _pick_batched(per_vector), op.cuda_graphs, op.chunk_size, timings)
    op.apply_tuning(result)
    return result


# ----- candidates and decisions ------------------------------------------------------------------------------
def _allowed(name: str, candidates: Optional[Sequence[str]]) -> bool:
    return candidates is None or name in candidates


def _candidates(op: Tunable, candidates: Optional[Sequence[str]]) -> tuple[list[str], list[str]]:
    """The single and batched strategies to time (no ``torch.func`` strategy with a custom forward)."""
    singles = [s for s in (candidates or STRATEGIES) if s in STRATEGIES]
    batched = [s for s in (candidates or _BATCHED) if s in _BATCHED]
    if op.engine.custom_forward:
        singles = [s for s in singles if s != "forward_over_reverse"]
        batched = [s for s in batched if s != "vmap"]
    return singles, batched


def _probes(op: Tunable, k: int) -> tuple[Tensor, Tensor]:
    """One vector and ``k`` vectors, Gaussian from seed 0 (the same on every device)."""
    g = torch.Generator().manual_seed(0)
    v = torch.randn(op.size, generator=g, dtype=torch.float64).to(op.dtype).to(op.device)
    V = torch.randn(op.size, k, generator=g, dtype=torch.float64).to(op.dtype).to(op.device)
    return v, V


def _pick_single(timings: Mapping[str, float], fallback: str) -> str:
    """The fastest single strategy; near-ties (within ``_CLEARLY_FASTER``) go to graph reuse."""
    best = min(timings, key=timings.get) if timings else fallback
    if "graph" in timings and timings["graph"] <= _CLEARLY_FASTER * timings[best]:
        best = "graph"
    return best


def _pick_batched(per_vector: Mapping[str, float]) -> str:
    """The fastest batched strategy if it clearly beats one product at a time (worth its memory), else the loop."""
    fastest = min(per_vector, key=per_vector.get)
    return fastest if _CLEARLY_FASTER * per_vector[fastest] < per_vector["loop"] else "loop"


def _use_strategy(op: Tunable, name: str) -> None:
    op.set_strategy(name, op.batched_strategy)


def _use_batched(op: Tunable, name: str) -> None:
    op.set_strategy(op.strategy, name)


def _use_cuda_graphs(op: Tunable, on: bool) -> None:
    op.set_strategy(op.strategy, op.batched_strategy, cuda_graphs=on)


# ----- the measurements --------------------------------------------------------------------------------------
def _time_singles(op: Tunable, singles: Sequence[str], v: Tensor,
                  repeats: int) -> tuple[dict[str, float], dict[str, int]]:
    """Seconds per product and peak memory of each single strategy that runs: a warm-up and one timing each,
    then the rounds."""
    timings: dict[str, float] = {}
    peaks: dict[str, int] = {}
    product = functools.partial(op._matvec, v)
    for name in singles:
        _use_strategy(op, name)
        _reset_peak(op.device)
        t = _timed(op.device, product, times=1)
        if t is not None:
            timings[name] = t
            peaks[name] = _peak(op.device)
    _rounds(op, _use_strategy, product, timings, "graph", repeats)
    return timings, peaks


def _try_one_chunk(op: Tunable, v: Tensor, repeats: int, graph_peak: int,
                   chosen: float) -> tuple[Optional[float], float, int]:
    """Graph reuse over the mini-batches merged into one chunk (the kept graph holds every mini-batch's
    activations anyway: fewer, larger kernels). Kept if ``_CHUNK_FASTER`` faster within ``_CHUNK_MEMORY_FACTOR``
    of ``graph_peak``, else the chunking is restored. Returns (its seconds or ``None``, the seconds per product
    kept, the graph's peak kept)."""
    unchunked = op.chunk_size
    before = _reset_peak(op.device)
    try:
        op.set_chunk_size(op.problem.total_samples)
        t = _timed(op.device, functools.partial(op._matvec, v), times=repeats)
    except RuntimeError as err:  # out of memory while merging
        if "out of memory" not in str(err).lower():
            raise
        t = None
    peak = _peak(op.device)
    if t is not None and _CHUNK_FASTER * t < chosen and _within(op.device, graph_peak, before, peak,
                                                                _CHUNK_MEMORY_FACTOR):
        return t, t, peak
    op.set_chunk_size(unchunked)
    return t, chosen, graph_peak


def _try_cuda_graphs(op: Tunable, v: Tensor, repeats: int, graph_peak: int, chosen: float,
                     memory_factor: float) -> Optional[float]:
    """Graph reuse replayed from CUDA graphs: kept if ``_CLEARLY_FASTER`` faster than ``chosen`` with the peak
    within ``memory_factor`` of ``graph_peak``; otherwise turned off and the captures dropped. Returns its
    seconds per product, or ``None`` where it failed or could not be captured."""
    _use_cuda_graphs(op, True)
    before = _reset_peak(op.device)
    t = _timed(op.device, functools.partial(op._matvec, v), times=repeats)
    captured = op.engine.captured(op.names)
    worked = t is not None and captured is not None and not captured.failed
    keep = False
    if worked:
        fits = _within(op.device, graph_peak, before, _peak(op.device), memory_factor)
        keep = fits and _CLEARLY_FASTER * t < chosen
    _use_cuda_graphs(op, keep)
    if not keep:
        op.engine.release_captures()
    return t if worked else None


def _time_batched(op: Tunable, batched: Sequence[str], V: Tensor, repeats: int, loop: float, reference_peak: int,
                  memory_factor: float) -> dict[str, float]:
    """Seconds per vector of each batched strategy and of the loop of single products (``loop`` seconds each);
    ``inf`` for one that broke the memory rule. In the rounds the loop takes its turns as ``k`` products."""
    k = V.shape[1]
    per_vector = {"loop": loop}
    products: dict[str, float] = {}  # seconds per batched product of k vectors
    product = functools.partial(op._matmat, V)
    for name in batched:
        _use_batched(op, name)
        before = _reset_peak(op.device)
        fits = functools.partial(_fits, op.device, reference_peak, before, memory_factor)
        t = _timed(op.device, product, times=1, fits=fits)
        if t is not None and t < math.inf and fits():
            products[name] = t
        elif t is not None:
            per_vector[name] = math.inf
    if products:  # in rounds with k single products, the loop they must beat
        products["loop"] = k * loop
        _rounds(op, _use_batched, product, products, "loop", repeats)
        per_vector.update({name: t / k for name, t in products.items()})
    return per_vector


def _timed(device: torch.device, fn: Callable[[], object], times: int,
           fits: Optional[Callable[[], bool]] = None) -> Optional[float]:
    """Fastest of ``times`` timings after a warm-up (robust to other load); ``inf`` without timing when the
    warm-up already broke the memory rule ``fits``; ``None`` when ``fn`` fails (unsupported, out of memory)."""
    try:
        fn()  # warm-up (and, for "graph", building the first-order graph)
        if fits is not None and not fits():
            return math.inf
        return min(_once(device, fn) for _ in range(times))
    except (RuntimeError, NotImplementedError) as err:
        _free_after(err)
        return None


def _rounds(op: Tunable, choose: Callable[[Tunable, str], None], fn: Callable[[], object], best: dict[str, float],
            reference: str, repeats: int) -> None:
    """``repeats − 1`` more timings of each candidate in ``best`` (set with ``choose``), one of each per round,
    keeping each one's fastest in ``best``. Candidates already ``_HOPELESS`` times slower than ``reference`` are
    left out; one that fails now counts ``inf``."""
    names = [name for name in best
             if reference not in best or name == reference or best[name] <= _HOPELESS * best[reference]]
    for _ in range(repeats - 1):
        for name in names:
            choose(op, name)
            try:
                best[name] = min(best[name], _once(op.device, fn))
            except (RuntimeError, NotImplementedError) as err:  # e.g. out of memory only now
                _free_after(err)
                best[name] = math.inf


def _once(device: torch.device, fn: Callable[[], object]) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def _free_after(err: BaseException) -> None:
    """Return cached GPU memory after running out of it."""
    if "out of memory" in str(err).lower() and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----- memory ------------------------------------------------------------------------------------------------
def _cpu_high_water() -> int:
    """The process's peak resident memory in bytes (0 where the platform does not say)."""
    if resource is None:  # pragma: no cover - Windows
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _reset_peak(device: torch.device) -> int:
    """Start a peak-memory measurement; returns the current high-water mark (CPU) or 0 (CUDA)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return 0
    return _cpu_high_water()


def _peak(device: torch.device) -> int:
    """Peak bytes since :func:`_reset_peak` (CUDA), or the process's high-water mark (CPU)."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return _cpu_high_water()


def _within(device: torch.device, single_peak: int, before: int, after: int, factor: float) -> bool:
    """Whether a peak ``after`` keeps the memory rule: within ``factor`` times ``single_peak`` (CUDA), or the
    high-water mark grown by at most ``factor − 1`` of ``before`` (CPU)."""
    if device.type == "cuda":
        return after <= factor * max(single_peak, 1)
    return after - before <= (factor - 1.0) * before  # the high-water mark may only grow a little


def _fits(device: torch.device, single_peak: int, before: int, factor: float) -> bool:
    """:func:`_within` for the peak so far."""
    return _within(device, single_peak, before, _peak(device), factor)
