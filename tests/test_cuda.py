"""The CUDA path: products on a GPU equal those on the CPU; DataParallel products equal plain ones.

Skipped where no GPU is visible (CI); run on a GPU machine with ``pytest tests/test_cuda.py``.
"""
import copy

import pytest
import torch
from torch import nn

from prunehess import HessianOperator, split_batch

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
    top_cpu, top_gpu = cpu.top_eigen(3, tol=1e-8), gpu.top_eigen(3, tol=1e-8)
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
