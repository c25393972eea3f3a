"""Choose the product configuration without timing anything: ``extract --strategy auto``.

Timing the strategies (:func:`~prunehess.operators.tuning.tune`) cost more than it saved on the runs it was
measured on (on a 2-core CPU, 3.3 s of a 12.7 s six-checkpoint run, with a choice that varied from run to run
and up to twice the peak memory), and the same configuration won every measurement taken without load
(``docs/benchmarks.md``, "The strategy rule"):

- **graph reuse** (the first-order graph built once per operator and kept): every product is one backward pass
  through it, where PyHessian's double backward rebuilds the graph for every product (LeNet-300-100 on 1000
  MNIST images: 16.4 against 32.7 ms a product on the 2-core CPU, 6.7 against 16.3 ms on an H100; ResNet-20:
  23.1 against 43.7 ms on an H100);
- **one product at a time** (``batched_strategy="loop"``): on a CPU a batched product of ``k`` vectors costs
  about ``k`` products, and on a GPU the products replayed from CUDA graphs leave batching little to gain,
  for ``k`` times the memory;
- **the mini-batches merged into larger chunks** where memory allows (fewer, larger kernels: LeNet-300-100's five
  mini-batches of 200 merged into one chunk of 1000 take 11.2 instead of 16.4 ms a product on the 2-core CPU). The
  graph keeps every mini-batch's activations anyway; what merging adds is a copy of the merged inputs and, during a
  product, temporaries the size of a chunk's activations instead of a mini-batch's. Both are computed without
  timing: the activations the first-order graph keeps per sample (:func:`graph_bytes_per_sample`: one sample through
  the forward and the gradient, counting the tensors autograd saves) times the samples added to a chunk, plus the
  merged inputs' bytes. Chunks grow by whole mini-batches while that stays within ``merge_budget`` (64 MiB);
- **on a GPU, products replayed from CUDA graphs** (on an H100: 1.4 against 6.7 ms eager for LeNet-300-100, 11.9
  against 23.1 ms for ResNet-20, for a capture that held 66 MiB more at the peak);
- **PyHessian's double backward** only where the kept graph would not fit: more than a quarter of the memory
  free on the device (``torch.cuda.mem_get_info``; the available RAM on a CPU).

A custom forward (``nn.DataParallel``) keeps graph reuse without CUDA graphs. ``extract --strategy tune`` still
times the candidates on the first checkpoint.

Example:
    >>> import torch
    >>> from prunehess import HessianOperator
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> x, y = torch.randn(40, 4), torch.randint(0, 3, (40,))
    >>> H = HessianOperator(model, [(x[:10], y[:10]), (x[10:20], y[10:20]), (x[20:], y[20:])])
    >>> choice = rule_tuning(H)
    >>> choice.strategy, choice.batched_strategy, choice.chunk_size, dict(choice.timings)
    ('graph', 'loop', 40, {})
"""
from __future__ import annotations

import os
from typing import Optional, Sequence

import torch
from torch import Tensor

from prunehess.operators.hvp import HVPProblem, eval_mode
from prunehess.operators.kernels import fast_second_order
from prunehess.operators.tuning import Tunable, Tuning

__all__ = ["rule_tuning", "graph_bytes_per_sample", "saved_bytes", "merged_chunk_size", "MERGE_BUDGET"]

MERGE_BUDGET = 64 * 2**20
"""Bytes that merging mini-batches into chunks may add to the peak (merged inputs and larger temporaries)."""
_GRAPH_SHARE = 0.25  # graph reuse keeps its graph only where it takes at most this share of the free memory


def rule_tuning(op: Tunable, *, merge_budget: int = MERGE_BUDGET) -> Tuning:
    """The configuration of the rule in the module docstring, for ``op`` (not applied; nothing is timed, no
    product is computed: one sample goes through the forward pass and the gradient). ``timings`` is empty."""
    problem = op.problem
    per_sample = graph_bytes_per_sample(problem, op.names)
    free = _free_bytes(op.device)
    if free is not None and per_sample * problem.total_samples > _GRAPH_SHARE * free:
        return Tuning("double_backward")
    chunk = merged_chunk_size(problem.minibatches, per_sample, merge_budget)
    return Tuning("graph", "loop", cuda_graphs=op.supports_cuda_graphs, chunk_size=chunk)


def merged_chunk_size(batches: Sequence[tuple[Tensor, Tensor]], per_sample: int, budget: int) -> Optional[int]:
    """The largest chunk of consecutive whole mini-batches whose merging adds at most ``budget`` bytes: the merged
    copy of the batch's inputs and targets, plus ``per_sample`` bytes for each sample a chunk holds beyond a
    mini-batch (a product's temporaries grow with the chunk it is working on). ``None``: keep the mini-batches
    as given (one mini-batch, or no merge fits). In samples, as :meth:`HessianOperator.set_chunk_size
    <prunehess.operators.hessian.HessianOperator.set_chunk_size>` takes it.

    Example:
        >>> batches = [(torch.zeros(200, 64), torch.zeros(200, dtype=torch.long))] * 5
        >>> merged_chunk_size(batches, per_sample=2048, budget=2**20)   # 1 MiB: two mini-batches together
        400
        >>> merged_chunk_size(batches, per_sample=2048, budget=64 * 2**20)   # all of them
        1000
        >>> merged_chunk_size(batches, per_sample=2048, budget=2**18) is None   # not even the merged copy
        True
    """
    sizes = [int(y.shape[0]) for _, y in batches]
    total, step = sum(sizes), max(sizes)
    copied = sum(x.element_size() * x.numel() + y.element_size() * y.numel() for x, y in batches)
    best = None
    for count in range(2, len(sizes) + 1):
        chunk = min(count * step, total)
        if copied + (chunk - step) * per_sample > budget:
            break
        best = chunk
    return best


def graph_bytes_per_sample(problem: HVPProblem, names: Sequence[str]) -> int:
    """Bytes of the tensors the first-order graph keeps for one sample: one sample of the first mini-batch goes
    through the forward pass and ``∇L`` with ``create_graph=True``, as graph reuse builds it (see
    :func:`saved_bytes`); the whole first mini-batch, per sample, for a model that cannot take a single one."""
    x, y = problem.minibatches[0]
    try:
        return saved_bytes(problem, names, x[:1], y[:1])
    except (RuntimeError, ValueError, IndexError):  # e.g. a forward that squeezes the batch dimension away
        return -(-saved_bytes(problem, names, x, y) // max(int(y.shape[0]), 1))


def saved_bytes(problem: HVPProblem, names: Sequence[str], x: Tensor, y: Tensor) -> int:
    """Bytes of the distinct storages autograd saves while building the first-order graph of ``(x, y)``, leaving
    out the parameters', the buffers' and the Hessian batch's own (they are held anyway)."""
    model = problem.model
    shared = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    shared |= {t.untyped_storage().data_ptr() for pair in [*problem.minibatches, (x, y)] for t in pair}
    saved: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in shared:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    params = problem.parameters(names)
    with eval_mode(model), torch.enable_grad(), fast_second_order(problem.fast_second_order), \
            torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = problem.loss_fn(model(x), y)
        torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
    return sum(saved.values())


def _free_bytes(device: torch.device) -> Optional[int]:
    """Free memory on ``device`` (a GPU's free bytes; on a CPU the kernel's ``MemAvailable``, which counts the
    page cache it can reclaim, else the free pages), or ``None`` where unknown."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):  # not Linux
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # not a POSIX system
        return None
