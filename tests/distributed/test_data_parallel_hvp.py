"""The data-parallel Hessian-vector product: two Gloo processes (``torch.multiprocessing`` spawn), each holding its
share of the mini-batches, with ``HessianOperator(..., total_samples=N, reduce=all_reduce_sum)``, give the
single-process operator's products, blocks, top eigenvalues and traces.

The mini-batches are 16, 16, 16, 16 and 6 samples dealt round-robin as ``--data-parallel`` deals them: rank 0
holds 38 samples and rank 1 32, so the weights ``n_b / N`` must use the global ``N``. The sums run in another
order than in one process: float64 agrees to 1e-12 relative, float32 to 1e-6.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from prunehess import HessianOperator
from prunehess.estimators import hutchinson_trace, lanczos_top_eigen
from prunehess.operators.hessian import split_batch

# spawn pickles the worker by module name: make this file importable as itself in the children (they get our
# sys.path), and the same module object here
_HERE = Path(__file__).resolve().parent
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))
sys.modules.setdefault(Path(__file__).stem, sys.modules[__name__])

pytestmark = pytest.mark.slow

WORLD = 2
CASES = {"float64": (torch.float64, 1e-12), "float32": (torch.float32, 1e-6)}


def _problem(dtype: torch.dtype):
    """A pruned 6-8-3 tanh MLP (exact zeros: masks found automatically) on 70 samples in 5 mini-batches."""
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
        model[0].weight[model[0].weight.abs() < 0.3] = 0
    model = model.to(dtype)
    x = torch.randn(70, 6, generator=g, dtype=torch.float64).to(dtype)
    y = torch.randint(0, 3, (70,), generator=g)
    return model, split_batch(x, y, 16)


def _quantities(op: HessianOperator) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    v = torch.randn(op.size, generator=g, dtype=torch.float64).to(op.dtype)
    V = torch.randn(op.size, 3, generator=g, dtype=torch.float64).to(op.dtype)
    out: dict[str, torch.Tensor] = {}
    for strategy in ("graph", "double_backward", "forward_over_reverse"):
        op.set_strategy(strategy)
        out[f"matvec/{strategy}"] = op.matvec(v)
    for batched in ("loop", "graph_batched", "vmap"):
        op.set_strategy("graph", batched)
        out[f"matmat/{batched}"] = op.matmat(V)
    op.set_strategy("graph", "loop")
    block = op.restrict(["2.weight"])
    out["block/matvec"] = block.matvec(v[: block.size])
    out["top_eigen"] = lanczos_top_eigen(op, k=2, seed=0).eigenvalues
    out["trace"] = torch.tensor([hutchinson_trace(op, n_probes=20, seed=0).estimate], dtype=torch.float64)
    out["size"] = torch.tensor([op.size])
    return out


def _worker(rank: int, port: int, folder: str) -> None:
    import torch.distributed as dist

    from prunehess.pipeline.distributed import all_reduce_sum, close_process_group

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        results = {}
        for name, (dtype, _) in CASES.items():
            model, batches = _problem(dtype)
            total = sum(int(y.shape[0]) for _, y in batches)
            share = batches[rank::WORLD]
            op = HessianOperator(model, share, total_samples=total, reduce=all_reduce_sum)
            results[name] = _quantities(op)
        torch.save(results, Path(folder) / f"rank{rank}.pt")
    finally:
        # torch.func (forward-over-reverse, vmap) keeps Gloo threads alive past destroy_process_group(); exiting
        # under them aborts the child (SIGABRT): close_process_group() waits for them, as extract does
        close_process_group()


_worker.__module__ = Path(__file__).stem


def test_data_parallel_hvp_equals_single_process(tmp_path):
    import torch.multiprocessing as mp

    from dist_support import free_port

    mp.spawn(_worker, args=(free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for name, (dtype, rtol) in CASES.items():
            model, batches = _problem(dtype)
            assert [int(y.shape[0]) for _, y in batches[0::2]] == [16, 16, 6]  # unequal shares
            expected = _quantities(HessianOperator(model, batches))
            for key, want in expected.items():
                for r, got in enumerate(ranks):
                    # every rank holds the same all-reduced numbers (it decides convergence on them)
                    assert torch.equal(got[name][key], ranks[0][name][key]), f"{name} {key}: rank {r} differs"
                got = ranks[0][name][key]
                scale = float(want.double().norm())
                err = float((got.double() - want.double()).norm())
                assert err <= rtol * scale, f"{name} {key}: relative error {err / scale:.2e} > {rtol:g}"
    finally:
        torch.set_num_threads(threads)
