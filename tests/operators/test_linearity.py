"""check_piecewise_linear: which forward passes keep the outputs piecewise affine in each selected parameter tensor
(so that diag(H) = diag(GGN)), checked against the dense Hessian and GGN where it claims so, and refusals that
name the module."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import assert_close
from prunehess.models import build_model
from prunehess.operators import check_piecewise_linear
from prunehess.operators.linearity import NotPiecewiseLinearError
from prunehess.reference import dense_ggn, dense_hessian


class ReusedInSeries(nn.Module):
    """The same layer twice in a row: the outputs are quadratic in its weight."""

    def __init__(self):
        super().__init__()
        self.layer, self.head = nn.Linear(3, 3), nn.Linear(3, 2)

    def forward(self, x):
        return self.head(F.relu(self.layer(F.relu(self.layer(x)))))


class ReusedInParallel(ReusedInSeries):
    """The same layer on two branches that are added: still affine in its weight."""

    def forward(self, x):
        return self.head(F.relu(self.layer(x)) + F.relu(self.layer(2 * x)))


class Residual(nn.Module):
    """Conv → eval BatchNorm → ReLU with a skip connection, global average pooling, functional ReLUs."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.conv2, self.fc = nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), \
            nn.Conv2d(3, 3, 3, padding=1, bias=False), nn.Linear(3, 4)

    def forward(self, x):
        h = torch.relu(self.bn(self.conv(x)))
        h = F.relu(h + self.conv2(h))
        return self.fc(h.mean(dim=(2, 3)))


class Squared(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(3, 3)

    def forward(self, x):
        h = self.layer(x)
        return h * h


class Normalised(Squared):
    def forward(self, x):
        h = self.layer(x)
        return h / h.norm(dim=1, keepdim=True)


def _fill(model: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.8)
    return model


@pytest.mark.parametrize("name,shape", [("fc1", (1, 28, 28)), ("lenet5", (1, 28, 28)), ("resnet20", (3, 32, 32))])
def test_the_builtin_relu_networks_pass(name, shape):
    check_piecewise_linear(build_model(name, input_shape=shape, num_classes=10), torch.randn(2, *shape))


@pytest.mark.parametrize("model", [ReusedInParallel(), Residual(),
                                   nn.Sequential(nn.LayerNorm(3), nn.Linear(3, 4), nn.ReLU6(), nn.Linear(4, 2))],
                         ids=["reused in parallel", "residual", "layernorm on the input"])
def test_accepted_networks_have_the_ggn_diagonal(float64, model):
    """Where the check passes, the dense Hessian's diagonal is the dense GGN's (though the matrices differ)."""
    model = _fill(model.double(), 1)
    shape = (2, 4, 4) if isinstance(model, Residual) else (3,)
    x = torch.randn(6, *shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    y = torch.randint(0, 2, (6,), generator=torch.Generator().manual_seed(3))
    check_piecewise_linear(model, x[:2])
    data = [(x, y)]
    H, G = dense_hessian(model, data), dense_ggn(model, data)
    assert_close(torch.diagonal(H), torch.diagonal(G), rtol=1e-10, atol=1e-12, name="diag(H) = diag(G)")
    assert float((H - G).abs().max()) > 1e-4, "H = G: the case is too weak"


@pytest.mark.parametrize("model,module,why", [
    (ReusedInSeries(), r"'layer' \(Linear\) applies linear", r"multiplying \['layer.weight'\] by itself"),
    (Squared(), r"'<model>' \(Squared\) applies mul", "by itself"),
    (Normalised(), r"'<model>' \(Normalised\) applies norm", "not piecewise linear"),
    (nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, track_running_stats=False), nn.Linear(4, 2)),
     r"'1' \(BatchNorm1d\) applies batch_norm", "normalises by statistics"),
    (nn.Sequential(nn.Linear(3, 4), nn.SiLU(), nn.Linear(4, 2)), r"'1' \(SiLU\) applies silu", "not piecewise"),
    (nn.Sequential(nn.Linear(3, 4), nn.LogSoftmax(1), nn.Linear(4, 2)), r"'1' \(LogSoftmax\)", "not piecewise"),
], ids=["reused in series", "squared", "normalised", "batch statistics", "silu", "log-softmax"])
def test_refused_naming_the_module(model, module, why):
    with pytest.raises(NotPiecewiseLinearError, match=module) as info:
        check_piecewise_linear(model, torch.randn(2, 3))
    assert info.match(why)
    assert isinstance(info.value, ValueError)


def test_only_the_selected_tensors_count():
    """A nonlinearity before the selected layers does not matter; the model's flags are restored."""
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    model.train()
    check_piecewise_linear(model, torch.randn(2, 3), names=["2.weight", "4.weight", "4.bias"])
    assert all(m.training for m in model.modules())
    with pytest.raises(NotPiecewiseLinearError, match=r"\['0.weight'\]"):
        check_piecewise_linear(model, torch.randn(2, 3), names=["0.weight", "4.weight"])
