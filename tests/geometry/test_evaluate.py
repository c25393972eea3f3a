"""Batched point evaluation against direct evaluations: the model's weights set to each point, one forward each."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prunehess.geometry import CLASSIFICATION, PointEvaluator, interpolation, loss_landscape, model_state, steps
from prunehess.geometry.directions import filter_normalized_direction, gradient_direction

pytestmark = pytest.mark.usefixtures("float64")


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).double()


def _data(seed: int = 1, sizes=(10, 10, 7), features: int = 5, classes: int = 3):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, features, generator=g, dtype=torch.float64), torch.randint(0, classes, (n,), generator=g))
            for n in sizes]


@torch.no_grad()
def _direct(model: nn.Module, state: dict, data) -> tuple[float, float]:
    """Mean cross-entropy and error of ``model`` with its parameters and buffers set to ``state``: a plain forward."""
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict({k: state[k] for k in saved})
    model.eval()
    n = sum(len(y) for _, y in data)
    loss = sum(float(F.cross_entropy(model(x), y, reduction="sum")) for x, y in data) / n
    error = sum(int((model(x).argmax(1) != y).sum()) for x, y in data) / n
    model.load_state_dict(saved)
    return loss, error


def _moved(model: nn.Module, directions, c) -> dict:
    state = model_state(model)
    return {k: v + sum(float(cj) * d[k] for cj, d in zip(c, directions) if k in d) for k, v in state.items()}


@pytest.mark.parametrize("batched", [True, False], ids=["vmap", "loop"])
def test_points_equal_direct_evaluation(batched):
    model, data = _mlp(), _data()
    params = dict(model.named_parameters())
    directions = [filter_normalized_direction(params, {}, seed=3), gradient_direction(model, data, {})]
    C = torch.tensor([[0.0, 0.0], [1.0, 0.0], [-0.5, 0.25], [0.3, -1.7], [2.0, 2.0]], dtype=torch.float64)
    values = PointEvaluator(model, directions, batched=batched)(C, data)
    for i, c in enumerate(C):
        loss, error = _direct(model, _moved(model, directions, c), data)
        assert abs(float(values.loss[i]) - loss) <= 1e-12 * max(1.0, loss), (i, float(values.loss[i]), loss)
        assert float(values.error[i]) == pytest.approx(error, abs=1e-15)


def test_chunks_give_the_same_numbers():
    model, data = _mlp(), _data()
    d = [filter_normalized_direction(dict(model.named_parameters()), {}, seed=5)]
    C = torch.linspace(-1, 1, 9, dtype=torch.float64)[:, None]
    whole = PointEvaluator(model, d)
    small = PointEvaluator(model, d, memory_bytes=1)  # one point per pass
    a, b = whole(C, data), small(C, data)
    assert whole.chunk == 9 and small.chunk == 1
    assert torch.allclose(a.loss, b.loss, rtol=0, atol=1e-14)
    # one point at a time (no vmap) holds a chunk's weights too, within the same budget
    looped = PointEvaluator(model, d, batched=False, memory_bytes=1)
    assert torch.allclose(looped(C, data).loss, a.loss, rtol=0, atol=1e-14) and looped.chunk == 1


def test_directions_that_move_nothing_give_one_value_everywhere():
    model, data = _mlp(), _data()
    C = torch.linspace(-1, 1, 4, dtype=torch.float64)[:, None]
    for batched in (True, False):
        values = PointEvaluator(model, [{}], batched=batched)(C, data)
        loss, _ = _direct(model, model_state(model), data)
        assert torch.allclose(values.loss, torch.full((4,), loss, dtype=torch.float64), rtol=1e-13, atol=0)


class _NeedsItem(nn.Module):
    """A model vmap cannot run: a data-dependent Python branch on a tensor value."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(5, 3)

    def forward(self, x):
        out = self.fc(x)
        return out * 2.0 if out.sum().item() > 1e9 else out


def test_models_vmap_cannot_run_fall_back_to_a_loop():
    torch.manual_seed(0)
    model, data = _NeedsItem().double(), _data()
    d = [{n: torch.ones_like(p) for n, p in model.named_parameters()}]
    notes = []
    evaluator = PointEvaluator(model, d, note=notes.append)
    values = evaluator(torch.tensor([[0.0], [0.1]], dtype=torch.float64), data)
    assert evaluator.mode == "loop"
    assert len(notes) == 1 and "_NeedsItem" in notes[0] and "one at a time" in notes[0]
    for i, c in enumerate((0.0, 0.1)):
        assert float(values.loss[i]) == pytest.approx(_direct(model, _moved(model, d, [c]), data)[0], abs=1e-12)


def test_landscape_curves_and_surface_equal_direct_evaluation():
    model, data = _mlp(2), _data()
    params = dict(model.named_parameters())
    dirs = {"random": filter_normalized_direction(params, {}, seed=1), "gradient": gradient_direction(model, data, {})}
    t = steps(0.8, 5)
    result = loss_landscape(model, dirs, t, data, surface=("random", "gradient", t, t[:3]))
    assert result.points == 1 + 2 * 5 + 5 * 3
    assert result.center == pytest.approx(_direct(model, model_state(model), data)[0], abs=1e-12)
    for name, d in dirs.items():
        want = [_direct(model, _moved(model, [d], [s]), data)[0] for s in t]
        np.testing.assert_allclose(result.curves[name], want, rtol=1e-12, atol=0)
    grid = [[_direct(model, _moved(model, [dirs["random"], dirs["gradient"]], [a, b]), data)[0] for b in t[:3]]
            for a in t]
    np.testing.assert_allclose(result.surface, grid, rtol=1e-12, atol=0)


def test_interpolation_with_batchnorm_statistics_equals_direct_evaluation():
    def net(seed):
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 3)).double()
        with torch.no_grad():
            model[1].running_mean.uniform_(-0.5, 0.5)
            model[1].running_var.uniform_(0.5, 2.0)
        return model

    model, other, data = net(0), net(1), _data()
    state_a = {k: v.clone() for k, v in model_state(model).items()}
    state_b = {k: v.clone() for k, v in model_state(other).items()}
    alpha = np.linspace(0, 1, 6)
    path = interpolation(model, state_a, state_b, alpha, [data, data[:1]])
    assert path.mode == "vmap"
    for i, a in enumerate(alpha):
        mixed = {k: (1 - a) * state_a[k] + a * state_b[k] if state_a[k].is_floating_point() else state_a[k]
                 for k in state_a}
        loss, error = _direct(model, mixed, data)
        assert float(path.values[0].loss[i]) == pytest.approx(loss, rel=1e-12, abs=0)
        assert float(path.values[0].error[i]) == pytest.approx(error, abs=1e-15)
        assert float(path.values[1].loss[i]) == pytest.approx(_direct(model, mixed, data[:1])[0], rel=1e-12, abs=0)


def test_objective_is_what_extract_checks():
    """The loss at a point with all coefficients 0 is the checkpoint's mean cross-entropy over the batch."""
    model, data = _mlp(), _data()
    values = PointEvaluator(model, [{}])(torch.zeros(1, 1, dtype=torch.float64), data)
    n = sum(len(y) for _, y in data)
    with torch.no_grad():
        want = sum(float(CLASSIFICATION.loss(model(x), y)) for x, y in data) / n
    assert float(values.loss[0]) == pytest.approx(want, rel=1e-14)
