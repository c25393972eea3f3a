"""The pruning step's numbers on hand-built cases: the quadratic model (exact for a linear model with squared
error), OBD's choice at the same counts on a known diagonal, the overlap and Spearman correlation with ties, and
which diagonal is used; a ReLU and a tanh network against the dense float64 Hessian."""
from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from torch import nn

from prunehess.errors import ConfigError
from prunehess.geometry import analyse_step, average_ranks, expected_hits, lowest_saliency, spearman
from prunehess.geometry.ranking import chance_hits
from prunehess.reference import dense_hessian

pytestmark = pytest.mark.usefixtures("float64")


class TwoInputs(nn.Module):
    """Linear in all its parameters jointly: the mean squared error is exactly quadratic in them."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 2)
        self.b = nn.Linear(4, 2, bias=False)

    def forward(self, x):
        return self.a(x[:, :3]) + self.b(x[:, 3:])


def _linear_case():
    torch.manual_seed(0)
    model = TwoInputs()
    x, y = torch.randn(30, 7), torch.randn(30, 2)
    with torch.no_grad():
        model.a.weight[0, 2] = 0.0  # pruned before the step
    before = {"a.weight": torch.tensor([[1, 1, 0], [1, 1, 1]]).bool(), "b.weight": torch.ones(2, 4).bool()}
    after = {"a.weight": torch.tensor([[0, 1, 0], [1, 0, 1]]).bool(),
             "b.weight": torch.tensor([[1, 0, 1, 1], [1, 1, 0, 1]]).bool()}
    return model, [(x[:16], y[:16]), (x[16:], y[16:])], (x, y), before, after


def test_the_prediction_is_the_actual_change_for_a_quadratic_loss():
    model, batches, (x, y), before, after = _linear_case()
    result = analyse_step(model, batches, before, after, loss_fn=F.mse_loss)
    whole, a, b = result.rows
    assert [row.name for row in result.rows] == ["all", "a.weight", "b.weight"]
    assert (whole.removed, a.removed, b.removed) == (4, 2, 2)
    assert result.loss == pytest.approx(float(F.mse_loss(model(x), y).detach()), rel=1e-13)
    for row, names in ((whole, ("a.weight", "b.weight")), (a, ("a.weight",)), (b, ("b.weight",))):
        changed = {n: p.detach() * after[n] if n in names else p.detach() for n, p in model.named_parameters()}
        direct = float(F.mse_loss(torch.func.functional_call(model, changed, (x,)), y)) - result.loss
        assert row.actual == pytest.approx(direct, rel=1e-12, abs=1e-14), row.name
        assert abs(row.change.predicted - row.actual) <= 1e-10, (row.name, row.change, row.actual)
        assert row.change.first_order != 0 and row.change.second_order > 0  # not a minimum: both terms count
    assert whole.change.predicted != pytest.approx(a.change.predicted + b.change.predicted)  # the blocks interact
    assert result.diagonal == "exact" and result.probes == 0 and whole.diagonal_rel_stderr == 0.0
    assert result.regrown == 0
    assert (whole.remaining_percent_before, whole.remaining_percent_after) == (100 * 13 / 14, 100 * 9 / 14)


def test_obd_at_the_same_counts_on_a_known_diagonal():
    """One weight vector, squared error on Hadamard inputs scaled per column by s: H = 2·diag(s²) exactly, so
    OBD's saliencies ½ H_kk w_k² = s_k² w_k² are known."""
    model = nn.Linear(4, 1, bias=False)
    hadamard = torch.tensor([[1.0, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]])
    x = hadamard * torch.tensor([2.0, 1.0, 1.0, 0.25])
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.25, 1.0, 2.0, 3.0]]))
    y = model(x).detach() + torch.tensor([[0.5], [-0.5], [0.5], [-0.5]])  # a non-zero residual
    assert torch.equal(torch.diagonal(dense_hessian(model, [(x, y)], F.mse_loss, masks=None)),
                       torch.tensor([8.0, 2.0, 2.0, 0.125]))
    saliency = np.array([0.25, 1.0, 4.0, 0.5625])
    assert lowest_saliency(saliency, 2).tolist() == [True, False, False, True]
    # magnitude removes the two smallest |w| (0 and 1); OBD the two lowest s_k² w_k² (0 and 3)
    keep, after = {"weight": torch.ones(1, 4).bool()}, {"weight": torch.tensor([[False, False, True, True]])}
    result = analyse_step(model, [(x, y)], keep, after, loss_fn=F.mse_loss)
    whole, layer = result.rows
    assert result.diagonal == "exact"
    assert layer.hits == 1.0 and layer.overlap == 0.5 and whole.overlap == 0.5
    assert layer.spearman == pytest.approx(0.4, rel=1e-12)  # ranks [1,2,3,4] against [1,3,4,2]: 1 − 6·6/(4·15)
    assert abs(layer.change.predicted - layer.actual) <= 1e-10
    # ties at OBD's threshold (the two saliencies at 1 when w_0 = 0.5) are shared: each counts 1/2
    assert lowest_saliency([1.0, 1.0, 4.0, 0.5625], 2).tolist() == [True, False, False, True]  # by position
    assert expected_hits(np.array([True, True, False, False]), np.array([1.0, 1.0, 4.0, 0.5625])) == 1.0
    assert expected_hits(np.array([True, False, True, False]), np.array([1.0, 1.0, 4.0, 0.5625])) == 0.5


def test_whole_model_overlap_sums_the_per_layer_choices():
    """OBD chooses per tensor at the step's counts: the whole model's overlap is Σ hits / Σ removed, not a
    choice among all tensors pooled (which here would pick b's large-saliency weights never)."""
    model, batches, _, before, after = _linear_case()
    result = analyse_step(model, batches, before, after, loss_fn=F.mse_loss)
    whole, a, b = result.rows
    assert whole.hits == a.hits + b.hits
    assert whole.overlap == pytest.approx((a.hits + b.hits) / 4)


def test_ranks_spearman_and_overlap_with_ties():
    assert average_ranks([3.0, 1.0, 3.0, 3.0, 0.5]).tolist() == [4.0, 2.0, 4.0, 4.0, 1.0]
    # ranks of b [1, 2, 3.5, 5, 3.5]: ρ = 8 / √(10 · 9.5)
    assert spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) == pytest.approx(8 / math.sqrt(95), rel=1e-14)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 2, 3], [7, 7, 7])) and math.isnan(spearman([1], [2]))
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, 200).astype(float), rng.integers(0, 7, 200).astype(float)  # many ties
    assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic, rel=1e-12)
    saliency = np.array([0.0, 0.0, 0.0, 1.0, 2.0, 3.0])
    # k = 2, all three zeros tied at OBD's threshold, 2 of 3 taken: the one removed zero counts 2/3
    assert expected_hits(np.array([1, 0, 0, 0, 1, 0], bool), saliency) == pytest.approx(2 / 3)
    assert expected_hits(np.array([1, 1, 0, 0, 0, 0], bool), saliency) == pytest.approx(4 / 3)
    assert expected_hits(np.array([0, 0, 0, 1, 1, 0], bool), saliency) == 0.0
    # k = 4: the three zeros and 1.0 below or at the threshold, no ties at it
    assert expected_hits(np.array([1, 1, 1, 0, 0, 1], bool), saliency) == 3.0
    assert expected_hits(np.zeros(6, bool), saliency) == 0.0
    # averaging over random tie-breaks: the mean over every ordering of the tied group
    hits = []
    for order in ([0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]):
        chosen = np.zeros(6, bool)
        chosen[order[:2]] = True
        hits.append(np.sum(chosen & np.array([1, 0, 0, 0, 1, 0], bool)))
    assert np.mean(hits) == pytest.approx(2 / 3)
    assert chance_hits(2, 10) == pytest.approx(0.4)


def _mlp(activation: type[nn.Module], seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(OrderedDict(fc1=nn.Linear(6, 9), act=activation(), fc2=nn.Linear(9, 4)))


def _magnitude_masks(model: nn.Module, fraction: float, before=None) -> dict:
    """Magnitude pruning of ``fraction`` of each weight's survivors (after ``before``)."""
    out = {}
    for name, p in model.named_parameters():
        if p.dim() < 2:
            continue
        keep = torch.ones_like(p, dtype=torch.bool) if before is None else before[name]
        k = int(round(fraction * int(keep.sum())))
        score = p.detach().abs().masked_fill(~keep, math.inf).reshape(-1)
        mask = keep.clone().reshape(-1)
        mask[torch.argsort(score)[:k]] = False
        out[name] = mask.reshape(p.shape)
    return out


def _relu_step():
    model = _mlp(nn.ReLU, 1)
    before = _magnitude_masks(model, 0.3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in before:
                p.mul_(before[name])
    after = _magnitude_masks(model, 0.25, before)
    torch.manual_seed(2)
    x, y = torch.randn(40, 6), torch.randint(0, 4, (40,))
    return model, [(x[:25], y[:25]), (x[25:], y[25:])], before, after


def test_a_relu_network_against_the_dense_hessian():
    """Exact diagonal (recorded), OBD's overlap and ρ from the dense Hessian's diagonal, and the quadratic model
    equal to the dense quadratic form over the surviving weights before the step."""
    model, batches, before, after = _relu_step()
    result = analyse_step(model, batches, before, after)
    assert result.diagonal == "exact" and result.probes == 0
    H = dense_hessian(model, batches, masks=before)
    diagonal = torch.diagonal(H)
    names = [n for n, _ in model.named_parameters()]
    sizes = [int(before[n].sum()) if n in before else p.numel() for n, p in model.named_parameters()]
    blocks = dict(zip(names, torch.split(torch.arange(H.shape[0]), sizes)))
    params = dict(model.named_parameters())
    loss = lambda: sum(F.cross_entropy(model(x), y) * len(y) for x, y in batches) / 40  # noqa: E731
    gradient = torch.autograd.grad(loss(), [params[n] for n in names])
    g = torch.cat([gr[before[n]] if n in before else gr.reshape(-1) for n, gr in zip(names, gradient)])
    for row in result.rows[1:]:
        keep, w = before[row.name], params[row.name].detach()[before[row.name]]
        d = diagonal[blocks[row.name]]
        saliency = (0.5 * d * w.square()).numpy()
        removed = (~after[row.name])[keep].numpy()
        assert row.removed == int(removed.sum()) > 0
        assert row.hits == pytest.approx(expected_hits(removed, saliency), abs=1e-9), row.name
        assert row.spearman == pytest.approx(spearmanr(w.abs().numpy(), saliency).statistic, rel=1e-9), row.name
        delta = torch.zeros(H.shape[0])
        delta[blocks[row.name][torch.from_numpy(removed)]] = -w[torch.from_numpy(removed)]
        assert row.change.first_order == pytest.approx(float(g @ delta), rel=1e-9, abs=1e-14)
        assert row.change.second_order == pytest.approx(float(0.5 * delta @ H @ delta), rel=1e-9)
    assert result.rows[0].removed == sum(row.removed for row in result.rows[1:])


def test_the_diagonal_choice_is_recorded():
    model, batches, before, after = _relu_step()
    estimated = analyse_step(model, batches, before, after, diagonal="hutchinson", probes=30, seed=4)
    assert estimated.diagonal == "hutchinson" and estimated.probes == 30 and estimated.n_hvp == 30 + 3
    assert all(row.diagonal_rel_stderr > 0 for row in estimated.rows)
    tanh = _mlp(nn.Tanh, 3)
    with torch.no_grad():
        for name, p in tanh.named_parameters():
            if name in before:
                p.mul_(before[name])
    auto = analyse_step(tanh, batches, before, after, probes=12)
    assert auto.diagonal == "hutchinson" and auto.probes == 12
    again = analyse_step(tanh, batches, before, after, probes=12)
    assert [r.hits for r in again.rows] == [r.hits for r in auto.rows]  # seeded: the same probes
    with pytest.raises(ConfigError, match=r"diagonal 'exact'.*Tanh"):
        analyse_step(tanh, batches, before, after, diagonal="exact")
    with pytest.raises(ConfigError, match="diagonal: 'diag' is not one of auto, exact, hutchinson"):
        analyse_step(tanh, batches, before, after, diagonal="diag")


def test_regrown_weights_are_not_removed():
    model, batches, before, after = _relu_step()
    regrow = {n: m.clone() for n, m in after.items()}
    pruned = torch.nonzero(~before["fc1.weight"])[0]
    regrow["fc1.weight"][tuple(pruned)] = True
    result = analyse_step(model, batches, before, regrow)
    reference = analyse_step(model, batches, before, after)
    assert result.regrown == 1 and reference.regrown == 0
    assert [r.removed for r in result.rows] == [r.removed for r in reference.rows]
    assert result.rows[1].kept == reference.rows[1].kept + 1
