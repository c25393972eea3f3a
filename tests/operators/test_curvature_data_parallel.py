"""Data-parallel GGN and empirical Fisher: each rank holds a share of the mini-batches, weights ``n_b / N`` use the
global ``N`` (``total_samples``), and ``reduce`` sums the shares' products: together they are the whole batch's.

The ranks are two threads of this process joined by an in-process all-reduce (a barrier and a sum in rank order,
so every rank holds the same numbers, as with Gloo's): the same calls as the Gloo test of the Hessian
(``tests/distributed/test_data_parallel_hvp.py``), without starting processes. The shares are unequal (mini-batches
of 4, 4 and 2 dealt round-robin: 6 and 4 samples).
"""
from __future__ import annotations

import copy
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

import cases
from helpers import assert_close
from prunehess.estimators import exact_diagonal, hutchinson_diagonal, lanczos_top_eigen
from prunehess.operators import EmpiricalFisherOperator, GGNOperator

WORLD = 2


class ThreadAllReduce:
    """``reduce_for(rank)(t)``: the sum over the ranks' ``t``, in rank order (the same tensor on every rank)."""

    def __init__(self, world: int):
        self.barrier = threading.Barrier(world, timeout=120)
        self.slots: list = [None] * world

    def reduce_for(self, rank: int):
        def reduce(t: torch.Tensor) -> torch.Tensor:
            self.slots[rank] = t.clone()
            self.barrier.wait()
            total = self.slots[0].clone()
            for other in self.slots[1:]:
                total += other
            self.barrier.wait()  # nobody overwrites a slot before every rank has summed
            return total

        return reduce


def _quantities(kind: str, op) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    v = torch.randn(op.size, generator=g, dtype=torch.float64)
    V = torch.randn(op.size, 3, generator=g, dtype=torch.float64)
    out = {}
    for strategy in op.STRATEGIES:
        for batched in op.BATCHED_STRATEGIES:
            op.set_strategy(strategy, batched)
            out[f"{strategy}/{batched}/matvec"] = op.matvec(v)
            out[f"{strategy}/{batched}/matmat"] = op.matmat(V)
    block = op.restrict(["2.weight"])
    out["block"] = block.matvec(v[: block.size])
    out["top_eigen"] = lanczos_top_eigen(op, k=2, seed=0, tol=1e-10).eigenvalues
    out["hutchinson_diagonal"] = hutchinson_diagonal(op, n_probes=8, batch_size=4).estimate
    out["gradient"] = op.gradient()
    if kind == "ggn":
        out["diagonal"] = op.diagonal()
        out["exact_diagonal/block"] = exact_diagonal(block).estimate
    return out


def _build(kind: str, c: cases.Case, share, total, reduce):
    """The operator of one rank, on its own copy of the model (as each process has one: ``functional_call``
    swaps a module's tensors while it runs, so threads must not share a module)."""
    cls = GGNOperator if kind == "ggn" else EmpiricalFisherOperator
    return cls(copy.deepcopy(c.model), share, c.loss_fn, total_samples=total, reduce=reduce)


@pytest.mark.parametrize("kind", ["ggn", "fisher"])
def test_shares_summed_by_reduce_equal_the_whole_batch(float64, kind):
    c = cases.build("masked_zeros")
    total = c.x.shape[0]
    shares = [c.data[r::WORLD] for r in range(WORLD)]
    assert [sum(int(y.shape[0]) for _, y in s) for s in shares] == [6, 4]
    bus = ThreadAllReduce(WORLD)

    def rank(r: int) -> dict[str, torch.Tensor]:
        try:
            return _quantities(kind, _build(kind, c, shares[r], total, bus.reduce_for(r)))
        except BaseException:
            bus.barrier.abort()  # the other rank stops waiting
            raise

    with ThreadPoolExecutor(WORLD) as pool:
        ranks = list(pool.map(rank, range(WORLD)))
    whole = _quantities(kind, _build(kind, c, c.data, None, None))
    for key, want in whole.items():
        assert torch.equal(ranks[0][key], ranks[1][key]), f"{key}: the ranks disagree"
        assert_close(ranks[0][key], want, rtol=1e-12, atol=1e-14, name=f"{kind} {key}")
    one_share = _build(kind, c, shares[0], total, None)
    v = torch.randn(one_share.size, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert float((one_share.matvec(v) - whole[f"{one_share.strategy}/loop/matvec"]).norm()) > 1e-3, \
        "one share alone is not the whole batch: the test is not vacuous"
