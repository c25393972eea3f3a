"""The CUDA path: products on a GPU equal those on the CPU; DataParallel products equal plain ones.

Skipped where no GPU is visible (CI); run on a GPU machine with ``pytest tests/test_cuda.py``.
"""
import copy

import pytest
import torch
from torch import nn

from prunehess import HessianOperator, split_batch
from prunehess.estimators import DensityOptions, EigenOptions, curvature_summary, lanczos_top_eigen
from prunehess.operators import tune

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _case():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 8 * 8, 10)).double()
    with torch.no_grad():
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
        w = model[4].weight
        w[w.abs() < w.abs().quantile(0.5)] = 0
    x, y = torch.randn(64, 1, 8, 8, dtype=torch.float64), torch.randint(0, 10, (64,))
    return model, x, y


@pytest.mark.parametrize("strategy,batched", [("graph", "graph_batched"), ("double_backward", "loop"),
                                              ("forward_over_reverse", "vmap")])
def test_cuda_products_equal_cpu(strategy, batched):
    model, x, y = _case()
    cpu = HessianOperator(model, split_batch(x, y, 24), strategy=strategy, batched_strategy=batched)
    gpu_model = copy.deepcopy(model).cuda()
    gpu = HessianOperator(gpu_model, split_batch(x.cuda(), y.cuda(), 24), strategy=strategy, batched_strategy=batched)
    V = torch.randn(cpu.size, 5, dtype=torch.float64)
    torch.testing.assert_close(gpu.matmat(V.cuda()).cpu(), cpu.matmat(V), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(gpu.matvec(V[:, 0].cuda()).cpu(), cpu.matvec(V[:, 0]), rtol=1e-9, atol=1e-12)
    top_cpu, top_gpu = lanczos_top_eigen(cpu, k=3, tol=1e-8), lanczos_top_eigen(gpu, k=3, tol=1e-8)
    torch.testing.assert_close(top_gpu.eigenvalues, top_cpu.eigenvalues, rtol=1e-7, atol=1e-10)


def test_dataparallel_products_equal_plain():
    model, x, y = _case()
    model = model.cuda()
    data = split_batch(x.cuda(), y.cuda(), 32)
    plain = HessianOperator(model, data)
    parallel = HessianOperator(model, data, forward=nn.DataParallel(model))
    v = torch.randn(plain.size, dtype=torch.float64, device="cuda")
    torch.testing.assert_close(parallel.matvec(v), plain.matvec(v), rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError):
        HessianOperator(model, data, forward=nn.DataParallel(model), strategy="forward_over_reverse")


@pytest.mark.parametrize("masks", ["auto", None])
def test_cuda_graph_products_equal_eager_ones(masks):
    """Captured products (the operator and its blocks, replayed in any order, across a release of the
    first-order graph) equal eager products."""
    model, x, y = _case()
    model = model.cuda()
    data = split_batch(x.cuda(), y.cuda(), 24)
    eager = HessianOperator(model, data, masks=masks)
    captured = HessianOperator(model, data, masks=masks, cuda_graphs=True)
    assert captured.cuda_graphs and captured.supports_cuda_graphs
    V = torch.randn(eager.size, 4, dtype=torch.float64, device="cuda")
    for j in range(4):  # the first call captures, the others replay with new inputs
        torch.testing.assert_close(captured.matvec(V[:, j]), eager.matvec(V[:, j]), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(captured.matmat(V), eager.matmat(V), rtol=1e-10, atol=1e-12)
    blocks, eager_blocks = captured.layers(), eager.layers()
    for name in reversed(list(blocks)):  # blocks captured in one order ...
        v = torch.randn(blocks[name].size, dtype=torch.float64, device="cuda")
        torch.testing.assert_close(blocks[name].matvec(v), eager_blocks[name].matvec(v), rtol=1e-10, atol=1e-12)
    for name in blocks:  # ... and replayed in another
        v = torch.randn(blocks[name].size, dtype=torch.float64, device="cuda")
        torch.testing.assert_close(blocks[name].matvec(v), eager_blocks[name].matvec(v), rtol=1e-10, atol=1e-12)
    captured.check_deterministic()  # releases the first-order graph: captures are dropped and redone
    torch.testing.assert_close(captured.matvec(V[:, 0]), eager.matvec(V[:, 0]), rtol=1e-10, atol=1e-12)
    options = dict(eigen=EigenOptions(k=2), density=DensityOptions(steps=30))
    s_eager, s_captured = curvature_summary(eager, **options), curvature_summary(captured, **options)
    torch.testing.assert_close(s_captured.eigen.eigenvalues, s_eager.eigen.eigenvalues, rtol=1e-9, atol=1e-12)



def test_engine_capture_lifecycle():
    """One capture context per engine (the first-order graph moves to its stream), one capture per selection, and
    the captured graphs released with the first-order graph (recorded again at the next product)."""
    model, x, y = _case()
    model = model.cuda()
    op = HessianOperator(model, split_batch(x.cuda(), y.cuda(), 24), cuda_graphs=True)
    engine = op.engine
    assert engine.gradient.stream is None and engine.captured(op.names) is None
    v = torch.randn(op.size, dtype=torch.float64, device="cuda")
    first = op.matvec(v)
    product = engine.captured(op.names)
    assert product is not None and product.graph is not None and not product.failed
    assert engine.gradient.stream is not None
    assert op.restrict(op.names).engine is engine
    op.release()
    assert product.graph is None and engine.captured(op.names) is product
    torch.testing.assert_close(op.matvec(v), first, rtol=1e-10, atol=1e-12)
    assert product.graph is not None
    engine.release_captures()
    assert product.graph is None and engine.captured(op.names) is None
    torch.testing.assert_close(op.matvec(v), first, rtol=1e-10, atol=1e-12)


def test_tune_measures_cuda_graphs():
    model, x, y = _case()
    model = model.cuda()
    op = HessianOperator(model, split_batch(x.cuda(), y.cuda(), 24))
    t = tune(op, k=4, repeats=2)
    timings = t.timings
    assert (op.strategy, op.cuda_graphs, op.chunk_size) == (t.strategy, t.cuda_graphs, t.chunk_size)
    if op.strategy == "graph":
        assert "graph+cuda_graphs" in timings
        if op.cuda_graphs:  # kept only when clearly faster (and within the memory rule)
            assert timings["graph+cuda_graphs"] * 1.15 < timings["graph"]
    v = torch.randn(op.size, dtype=torch.float64, device="cuda")
    plain = HessianOperator(model, split_batch(x.cuda(), y.cuda(), 24))
    torch.testing.assert_close(op.matvec(v), plain.matvec(v), rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="cuda_graphs"):
        HessianOperator(model, split_batch(x.cuda(), y.cuda(), 24), forward=nn.DataParallel(model), cuda_graphs=True)


class _SyncingScale(torch.autograd.Function):
    """``2x`` whose backward reads a number back to the host: cannot be captured in a CUDA graph."""

    @staticmethod
    def forward(ctx, x):
        return 2 * x

    @staticmethod
    def backward(ctx, grad):
        if float(grad.abs().sum()) < 0:  # a host synchronisation
            raise AssertionError
        return 2 * grad


class _Syncing(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = nn.Sequential(nn.Linear(8, 6), nn.Tanh())
        self.out = nn.Linear(6, 3)

    def forward(self, x):
        return self.out(_SyncingScale.apply(self.inner(x)))


def test_a_product_that_cannot_be_captured_runs_eagerly():
    torch.manual_seed(1)
    model = _Syncing().double().cuda()
    x, y = torch.randn(20, 8, dtype=torch.float64, device="cuda"), torch.randint(0, 3, (20,), device="cuda")
    eager = HessianOperator(model, [(x, y)])
    captured = HessianOperator(model, [(x, y)], cuda_graphs=True)
    v = torch.randn(eager.size, dtype=torch.float64, device="cuda")
    with pytest.warns(UserWarning, match="CUDA graph capture failed"):
        first = captured.matvec(v)
    torch.testing.assert_close(first, eager.matvec(v), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(captured.matvec(2 * v), eager.matvec(2 * v), rtol=1e-10, atol=1e-12)
    t = tune(HessianOperator(model, [(x, y)]), k=2, repeats=1)
    assert "graph+cuda_graphs" not in t.timings and not t.cuda_graphs
