"""HVP strategy edge cases: unused parameters, constant gradients, eval_mode, unknown strategies."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from helpers import assert_close, autograd_hessian, coordinate_index, restrict
from prunehess import HessianOperator
from prunehess.operators.hessian import BATCHED_STRATEGIES
from prunehess.operators.hvp import STRATEGIES, eval_mode, make_hvp

pytestmark = pytest.mark.usefixtures("float64")


class WithUnused(nn.Module):
    def __init__(self):
        super().__init__()
        self.used = nn.Linear(3, 2)
        self.unused = nn.Linear(3, 2)  # never called: no gradient at all

    def forward(self, x):
        return torch.tanh(self.used(x))


@pytest.mark.parametrize("batched", BATCHED_STRATEGIES)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_unused_parameters_have_zero_curvature(strategy, batched):
    torch.manual_seed(0)
    model = WithUnused().double()
    x, y = torch.randn(6, 3), torch.randint(0, 2, (6,))
    op = HessianOperator(model, [(x[:4], y[:4]), (x[4:], y[4:])], strategy=strategy, batched_strategy=batched)
    H_used = autograd_hessian(model, x, y, nn.functional.cross_entropy, ["used.weight", "used.bias"])
    expected = torch.zeros(op.size, op.size)
    expected[:8, :8] = H_used
    V = torch.randn(op.size, 3)
    assert_close(op.matmat(V), expected @ V, rtol=1e-10, atol=1e-12, name=f"{strategy}/{batched} matmat")
    assert_close(op.matvec(V[:, 0]), expected @ V[:, 0], rtol=1e-10, atol=1e-12, name=f"{strategy} matvec")
    block = op.restrict(["unused.weight"])
    assert_close(block.matmat(V[:6]), torch.zeros(6, 3), rtol=0, atol=0, name="unused block")


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_loss_linear_in_parameters_has_zero_hessian(strategy):
    """A loss linear in the parameters: gradients are constants without a graph; H = 0 without errors."""
    model = nn.Linear(3, 2).double()
    x = torch.randn(5, 3)
    op = HessianOperator(model, [(x, torch.zeros(5))], lambda out, y: out.mean(), strategy=strategy,
                         batched_strategy="graph_batched")
    assert torch.equal(op.matvec(torch.randn(8)), torch.zeros(8))
    assert torch.equal(op.matmat(torch.randn(8, 3)), torch.zeros(8, 3))


def test_eval_mode_restores_flags_even_on_error():
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5), nn.BatchNorm1d(2))
    model.train()
    model[1].eval()
    flags = [m.training for m in model.modules()]
    with pytest.raises(RuntimeError, match="boom"):
        with eval_mode(model):
            assert not any(m.training for m in model.modules())
            raise RuntimeError("boom")
    assert [m.training for m in model.modules()] == flags


def test_unknown_strategy():
    with pytest.raises(ValueError, match="unknown HVP strategy"):
        make_hvp("magic", None, ["w"])


def test_helpers_index_selection_is_consistent():
    """The test truths' index selection: restricting to every coordinate is the identity."""
    shapes = {"a": torch.Size([2, 2]), "b": torch.Size([3])}
    H = torch.randn(7, 7)
    index = coordinate_index(shapes, ["a", "b"])
    assert torch.equal(restrict(H, index), H)
    index = coordinate_index(shapes, ["b", "a"], {"a": torch.tensor([[True, False], [False, True]])})
    assert index.tolist() == [4, 5, 6, 0, 3]
