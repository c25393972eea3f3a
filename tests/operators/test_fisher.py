"""EmpiricalFisherOperator against explicit sums of per-sample outer products (float64, tight tolerances).

The truth is :func:`prunehess.reference.dense_empirical_fisher` over every coordinate (``masks=None``):
``(1/N) Σ_i g_i g_iᵀ`` with each ``g_i`` from ``torch.func.grad`` of the loss of sample ``i`` alone, restricted by
index selection to the selected parameters and surviving coordinates.
"""
from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F

import cases
from helpers import assert_close, check_products, coordinate_index, probes, restrict
from prunehess import split_batch
from prunehess.estimators import curvature_summary, hutchinson_trace, lanczos_top_eigen
from prunehess.operators import EmpiricalFisherOperator, Tuning
from prunehess.operators.fisher import DEFAULT_CACHE_BYTES
from prunehess.reference import dense_empirical_fisher

pytestmark = pytest.mark.usefixtures("float64")

RTOL, ATOL = 1e-10, 1e-12


@functools.lru_cache(maxsize=None)
def _full_fisher(name: str) -> torch.Tensor:
    c = cases.build(name)
    return dense_empirical_fisher(c.model, c.data, c.loss_fn, masks=None)


def expected(c: cases.Case, names=None, masks=None) -> torch.Tensor:
    return restrict(_full_fisher(c.name), coordinate_index(c.shapes, names or c.names, masks))


@pytest.mark.parametrize("strategy,batched", [("cache", "matmul"), ("cache", "loop"), ("recompute", "matmul"),
                                              ("recompute", "loop")])
def test_products_equal_outer_products(case, strategy, batched):
    Fo = EmpiricalFisherOperator(case.model, case.data, case.loss_fn, strategy=strategy, batched_strategy=batched)
    assert (Fo.strategy, Fo.batched_strategy) == (strategy, batched)
    truth = expected(case, masks=case.masks)
    if (strategy, batched) == ("cache", "matmul"):
        dense = Fo.to_dense()
        assert_close(dense, truth, rtol=RTOL, atol=ATOL, name=f"{case.name} Fisher")
        values = torch.linalg.eigvalsh(dense)
        assert values[0] >= -1e-10 * values[-1], f"not PSD: {values[0]:.3e} (largest {values[-1]:.3e})"
        assert int(torch.linalg.matrix_rank(dense)) <= case.x.shape[0]
    else:
        check_products(Fo, truth, f"{case.name}/{strategy}/{batched}", rtol=RTOL, atol=ATOL)


def test_cache_is_built_once_and_shared_with_blocks(case):
    """The per-sample gradients are computed at the first product only; blocks read their columns (any order)."""
    Fo = EmpiricalFisherOperator(case.model, case.data, case.loss_fn)
    assert Fo.strategy == "cache" and Fo.cache_nbytes() == case.x.shape[0] * Fo.size * 8
    assert Fo._shared.gradients is None  # nothing before the first product
    Fo.matvec(probes(Fo.size)[:, 0])
    rows = Fo._shared.gradients
    assert [tuple(G.shape) for G in rows] == [(int(y.shape[0]), Fo.size) for _, y in case.data]
    names = [case.names[-1], case.names[0]]
    block = Fo.restrict(names)
    check_products(block, expected(case, names, case.masks), f"{case.name} block {names}", rtol=RTOL, atol=ATOL)
    for name, layer in Fo.layers().items():
        assert_close(layer.to_dense(), expected(case, [name], case.masks), rtol=RTOL, atol=ATOL, name=name)
    assert Fo._shared.gradients is rows and block._own is None  # read, not recomputed
    Fo.release()
    assert Fo._shared.gradients is None


def test_auto_strategy_follows_the_memory_budget(float64):
    """``"auto"`` caches when ``N × d × itemsize`` fits ``cache_bytes``; a block decides again on its own size, and
    keeps its own rows when the whole operator's would not fit."""
    c = cases.build("masked_zeros")
    assert DEFAULT_CACHE_BYTES == 2**31
    small = 10 * 20 * 8  # 10 samples × 20 coordinates × float64
    Fo = EmpiricalFisherOperator(c.model, c.data, c.loss_fn, cache_bytes=small)
    assert Fo.size == 27 and Fo.strategy == "recompute" and Fo.auto
    block = Fo.restrict(["2.weight", "2.bias"])
    assert block.size <= 20 and block.strategy == "cache"
    check_products(block, expected(c, ["2.weight", "2.bias"], c.masks), "own cache", rtol=RTOL, atol=ATOL)
    assert block._own is not None and Fo._shared.gradients is None
    check_products(Fo, expected(c, masks=c.masks), "recomputed", rtol=RTOL, atol=ATOL)
    Fo.apply_tuning(Tuning("graph", "vmap", chunk_size=4))  # only the chunk size carries over
    assert (Fo.strategy, Fo.batched_strategy, Fo.chunk_size, Fo.auto) == ("recompute", "matmul", 4, True)
    Fo.set_strategy("cache", "loop")
    assert not Fo.auto
    check_products(Fo, expected(c, masks=c.masks), "forced cache", rtol=RTOL, atol=ATOL)


def test_configuration_errors(float64):
    c = cases.build("mlp_tanh_ce")
    Fo = EmpiricalFisherOperator(c.model, c.data, c.loss_fn)
    with pytest.raises(ValueError, match="unknown strategy 'graph'; choose one of cache, recompute"):
        Fo.set_strategy("graph")
    with pytest.raises(ValueError, match="unknown batched strategy 'vmap'"):
        Fo.set_strategy("cache", "vmap")
    with pytest.raises(ValueError, match="custom forward"):
        EmpiricalFisherOperator(c.model, c.data, c.loss_fn, forward=lambda x: c.model(x))
    summed = EmpiricalFisherOperator(c.model, c.data, lambda z, y: F.cross_entropy(z, y, reduction="sum"))
    with pytest.raises(ValueError, match="not the mean of its per-sample values"):
        summed.matvec(probes(summed.size)[:, 0])


def test_batch_weights_total_samples_and_reduce(case):
    one = EmpiricalFisherOperator(case.model, [(case.x, case.y)], case.loss_fn).to_dense()
    assert_close(one, expected(case, masks=case.masks), rtol=RTOL, atol=ATOL, name="one batch")
    V = probes(one.shape[0], 3)
    data = split_batch(case.x, case.y, 3)
    Fo = EmpiricalFisherOperator(case.model, data, case.loss_fn, chunk_size=7)
    assert_close(Fo.matmat(V), one @ V, rtol=1e-11, atol=1e-13, name="chunks")
    scaled = EmpiricalFisherOperator(case.model, data, case.loss_fn, total_samples=4 * case.x.shape[0],
                                     reduce=lambda t: 2 * t)
    assert_close(scaled.matmat(V), one @ V / 2, rtol=1e-11, atol=1e-13, name="total_samples and reduce")


def test_estimators_run_unchanged(float64):
    """Top eigenvalues, per-block Hutchinson traces and the whole summary on the Fisher operator."""
    c = cases.build("cnn_batchnorm")
    Fo = EmpiricalFisherOperator(c.model, c.data, c.loss_fn)
    truth = expected(c)
    exact = torch.linalg.eigvalsh(truth).flip(0)
    top = lanczos_top_eigen(Fo, k=2, tol=1e-10)
    assert_close(top.eigenvalues, exact[:2], rtol=1e-8, atol=0, name="top eigenvalues")
    trace = hutchinson_trace(Fo, n_probes=200, batch_size=20, blocks=Fo.block_slices(), seed=1)
    assert abs(trace.estimate - float(torch.trace(truth))) <= 4 * trace.stderr
    for name, sl in Fo.block_slices().items():
        block = trace.blocks[name]
        assert abs(block.estimate - float(torch.trace(truth[sl, sl]))) <= 4 * block.stderr + 1e-12, name
    summary = curvature_summary(Fo)
    assert summary.density.dim == Fo.size
    assert abs(float(summary.eigen.eigenvalues[0]) - float(exact[0])) <= 1e-3 * float(exact[0])
    assert Fo.check_deterministic() <= 1e-14
