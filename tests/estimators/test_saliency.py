"""Saliencies (magnitude, OBD) on hand-built cases, and the quadratic model of a pruning step against the exact loss
change where the loss is quadratic."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cases
from helpers import assert_close, assert_scalar_close
from prunehess import HessianOperator, split_batch
from prunehess.estimators import exact_diagonal, magnitude_saliency, obd_saliency, quadratic_loss_change
from prunehess.operators import GGNOperator, loss_gradient
from prunehess.reference import dense_hessian

pytestmark = pytest.mark.usefixtures("float64")

NAN = math.nan


def test_magnitude_and_obd_by_hand():
    w = {"a": torch.tensor([[1.0, -2.0, 0.5]]), "b": torch.tensor([-3.0, 4.0])}
    diag = {"a": torch.tensor([[2.0, 0.5, NAN]]), "b": torch.tensor([1.0, 0.25])}
    masks = {"b": torch.tensor([True, False])}
    mag = magnitude_saliency(w, masks)
    assert_close(torch.nan_to_num(mag["a"], -1.0), torch.tensor([[1.0, 2.0, 0.5]]), rtol=0, atol=0, name="|w|")
    assert mag["b"][0] == 3.0 and math.isnan(mag["b"][1])
    obd = obd_saliency(w, diag, masks)
    assert_close(torch.nan_to_num(obd["a"], -1.0), torch.tensor([[1.0, 1.0, -1.0]]), rtol=0, atol=0, name="½Hw²")
    assert obd["b"][0] == 4.5 and math.isnan(obd["b"][1])
    assert obd_saliency(w, {"b": diag["b"]}).keys() == {"b"}  # only the tensors with a diagonal
    with pytest.raises(ValueError, match="shape"):
        obd_saliency(w, {"b": torch.ones(3)})


def test_obd_from_the_exact_diagonal_of_a_relu_network():
    """OBD from ``exact_diagonal(H).to_tensors(H.space)`` is ½ H_kk w_k² with the dense Hessian's diagonal, NaN on
    pruned weights."""
    c = cases.build("masked_zeros")
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3)).double()
    model.load_state_dict(c.model.state_dict())
    H = HessianOperator(model, c.data)
    diag = exact_diagonal(H).to_tensors(H.space)
    weights = dict(model.named_parameters())
    obd = obd_saliency(weights, diag)
    flat = torch.diagonal(dense_hessian(model, c.data))
    expected = H.space.from_flat(0.5 * flat * H.space.to_flat(weights).detach() ** 2)
    for name, mask in c.masks.items():
        assert torch.isnan(obd[name][~mask]).all()
        assert_close(obd[name][mask], expected[name][mask], rtol=1e-10, atol=1e-14, name=name)
    assert_close(obd["2.bias"], expected["2.bias"], rtol=1e-10, atol=1e-14, name="bias")


@pytest.mark.parametrize("operator", ["hessian", "ggn"])
def test_quadratic_model_is_exact_for_least_squares(operator):
    """Linear model, squared error: L is quadratic in the weights (and G = H), so ``gᵀδ + ½δᵀHδ`` is the loss change
    of zeroing the removed weights, to rounding."""
    model, x, y, _ = cases.least_squares(n=12, d=4)
    data = split_batch(x, y, 5)
    op = (HessianOperator if operator == "hessian" else GGNOperator)(model, data, F.mse_loss)
    weights = op.space.to_flat(dict(model.named_parameters())).detach()
    removed = torch.tensor([True, False, True, False, True])
    with torch.no_grad():
        before = float(F.mse_loss(model(x), y))
    change = quadratic_loss_change(op, loss_gradient(op), weights, removed)
    assert change.n_hvp == 1 and change.removed == 3
    with torch.no_grad():
        model.weight[0, 0] = 0.0
        model.weight[0, 2] = 0.0
        model.bias.zero_()
        after = float(F.mse_loss(model(x), y))
    assert_scalar_close(change.predicted, after - before, rtol=1e-12, atol=1e-14, name="predicted loss change")
    assert abs(change.first_order) > 1e-3 and change.second_order > 1e-3  # both terms matter


def test_quadratic_form_and_checks():
    H = torch.tensor([[2.0, -1.0, 0.0], [-1.0, 3.0, 0.5], [0.0, 0.5, 1.0]])
    g = torch.tensor([0.1, -0.2, 0.3])
    w = torch.tensor([1.0, 2.0, -1.0])
    removed = torch.tensor([True, True, False])
    delta = torch.tensor([-1.0, -2.0, 0.0])
    change = quadratic_loss_change(H, g, w, removed)
    assert_scalar_close(change.first_order, float(g @ delta), rtol=1e-14)
    assert_scalar_close(change.second_order, 0.5 * float(delta @ H @ delta), rtol=1e-14)
    assert change.predicted == change.first_order + change.second_order
    with pytest.raises(ValueError, match="removed must have shape"):
        quadratic_loss_change(H, g, w, removed[:2])
