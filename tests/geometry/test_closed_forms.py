"""Curves and barriers against closed forms: exactly quadratic losses, curvature from second differences, and a
one-parameter family whose barrier is known."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prunehess.geometry import Objective, barrier_height, interpolation, loss_landscape, model_state, steps
from prunehess.reference import dense_hessian, exact_spectrum

pytestmark = pytest.mark.usefixtures("float64")

MSE = Objective(lambda out, y: F.mse_loss(out, y, reduction="sum"))


def _mse_mean(out, y):
    return F.mse_loss(out, y, reduction="sum") / y.shape[0]


def _linear_problem(seed: int = 0):
    """A linear model with MSE: the loss is exactly quadratic in the parameters."""
    g = torch.Generator().manual_seed(seed)
    model = nn.Linear(4, 2).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    data = [(torch.randn(n, 4, generator=g, dtype=torch.float64), torch.randn(n, 2, generator=g, dtype=torch.float64))
            for n in (6, 5)]
    return model, data


def _flat_to_named(model: nn.Module, flat: torch.Tensor) -> dict:
    out, start = {}, 0
    for name, p in model.named_parameters():
        out[name] = flat[start:start + p.numel()].reshape(p.shape)
        start += p.numel()
    return out


def _loss_and_gradient(model, data, loss_fn):
    n = sum(len(y) for _, y in data)
    loss = sum(loss_fn(model(x), y) * len(y) / n for x, y in data)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    return float(loss.detach()), torch.cat([g.reshape(-1) for g in grads])


@pytest.mark.parametrize("which", [0, 3, 9])
def test_curve_along_an_eigenvector_of_a_quadratic_is_exact(which):
    model, data = _linear_problem()
    H = dense_hessian(model, data, _mse_mean, masks=None)
    values, vectors = exact_spectrum(H)
    v, lam = vectors[:, which], float(values[which])
    loss0, g = _loss_and_gradient(model, data, _mse_mean)
    t = steps(2.5, 11)
    result = loss_landscape(model, {"v": _flat_to_named(model, v)}, t, data, objective=MSE)
    want = 0.5 * lam * t**2 + float(g @ v) * t + loss0
    np.testing.assert_allclose(result.curves["v"], want, rtol=0, atol=1e-10)


def test_second_difference_at_zero_tends_to_the_top_eigenvalue():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    g = torch.Generator().manual_seed(4)
    data = [(torch.randn(12, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (12,), generator=g))]
    values, vectors = exact_spectrum(dense_hessian(model, data, masks=None))
    lam, v = float(values[0]), _flat_to_named(model, vectors[:, 0])
    errors = []
    for h in (0.2, 0.1, 0.05, 0.025):
        f = loss_landscape(model, {"top1": v}, [-h, 0.0, h], data).curves["top1"]
        errors.append(abs((f[0] - 2 * f[1] + f[2]) / h**2 - lam))
    ratios = [a / b for a, b in zip(errors, errors[1:])]
    assert all(3.0 < r < 5.0 for r in ratios), (errors, ratios)  # O(h²): each halving divides the error by 4
    assert errors[-1] < 1e-3 * lam, (errors, lam)


def test_barrier_is_zero_for_identical_ends():
    model, data = _linear_problem()
    state = {k: v.clone() for k, v in model_state(model).items()}
    alpha = np.linspace(0, 1, 11)
    path = interpolation(model, state, state, alpha, [data], objective=MSE).values[0]
    assert float(path.loss.max() - path.loss.min()) <= 1e-13
    assert abs(barrier_height(alpha, path.loss.numpy())) <= 1e-13


def test_barrier_is_zero_along_a_convex_path_and_the_path_is_the_quadratic():
    model, data = _linear_problem(0)
    other, _ = _linear_problem(1)
    a, b = ({k: v.clone() for k, v in model_state(m).items()} for m in (model, other))
    H = dense_hessian(model, data, _mse_mean, masks=None)
    loss0, g = _loss_and_gradient(model, data, _mse_mean)
    d = torch.cat([(b[n] - a[n]).reshape(-1) for n, _ in model.named_parameters()])
    alpha = np.linspace(0, 1, 21)
    path = interpolation(model, a, b, alpha, [data], objective=MSE).values[0].loss.numpy()
    want = 0.5 * float(d @ H @ d) * alpha**2 + float(g @ d) * alpha + loss0
    np.testing.assert_allclose(path, want, rtol=0, atol=1e-10)
    assert barrier_height(alpha, path) == 0.0  # the ends, where the gap is exactly 0: the interior lies below


class _Product(nn.Module):
    """out = a·b·x: with x = y = 1 and MSE, L(a, b) = (ab − 1)²; (1, 1) and (−1, −1) are both minima."""

    def __init__(self, a: float, b: float):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a, dtype=torch.float64))
        self.b = nn.Parameter(torch.tensor(b, dtype=torch.float64))

    def forward(self, x):
        return self.a * self.b * x


@pytest.mark.parametrize("batched", [True, False], ids=["vmap", "loop"])
def test_known_barrier_of_a_one_parameter_family(batched):
    """θ(α) = (1−2α)(1, 1): L = ((1−2α)² − 1)² = 16 α² (1−α)², whose barrier is 1, at α = ½."""
    model = _Product(1.0, 1.0)
    data = [(torch.ones(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64))]
    ends = [{k: v.clone() for k, v in model_state(_Product(s, s)).items()} for s in (1.0, -1.0)]
    alpha = np.linspace(0, 1, 21)
    path = interpolation(model, *ends, alpha, [data], objective=MSE, batched=batched).values[0].loss.numpy()
    # MSE summed over the 3 samples, divided by N = 3: the per-sample loss
    np.testing.assert_allclose(path, 16 * alpha**2 * (1 - alpha) ** 2, rtol=0, atol=1e-14)
    assert barrier_height(alpha, path) == pytest.approx(1.0, abs=1e-14)


def test_barrier_height_of_known_sequences():
    alpha = np.linspace(0, 1, 5)
    assert barrier_height(alpha, 2.0 + 3.0 * alpha) == pytest.approx(0.0, abs=1e-15)  # on the chord
    assert barrier_height(alpha, [1.0, 3.0, 2.0, 1.5, 0.0]) == pytest.approx(3.0 - 0.75)  # chord 1 − α
    assert barrier_height(alpha, [1.0, 0.0, -1.0, 0.0, 1.0]) == 0.0  # convex: the ends
    with pytest.raises(ValueError):
        barrier_height(alpha, [1.0, 2.0])
