"""Masked training: pruned weights stay exactly zero through SGD with momentum and Adam; evaluation."""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from prunehess.training.loop import evaluate, make_optimizer, train_epoch
from prunehess.training.pruning import apply_masks_, full_masks, magnitude_prune, prunable_weights


def _data(n=64):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 6, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("optimizer, kwargs", [
    ("sgd", dict(lr=0.1, momentum=0.9, weight_decay=1e-2)),
    ("adam", dict(lr=1e-2, weight_decay=1e-2)),
])
@pytest.mark.parametrize("warm_optimizer", [False, True], ids=["fresh", "warm"])
def test_pruned_weights_stay_zero(h, optimizer, kwargs, warm_optimizer):
    torch.manual_seed(0)
    model = h.TinyMLP()
    loader = _data()
    opt = make_optimizer(optimizer, model.parameters(), **kwargs)
    if warm_optimizer:  # momentum / Adam moments already non-zero on the weights about to be pruned
        train_epoch(model, loader, opt, {})
    weights = prunable_weights(model)
    masks = magnitude_prune(weights, full_masks(weights), 60.0)
    apply_masks_(model, masks)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for _ in range(3):
        loss = train_epoch(model, loader, opt, masks)
        assert loss == loss  # finite
        for name, mask in masks.items():
            w = dict(model.named_parameters())[name]
            assert torch.count_nonzero(w[~mask]) == 0, name
    for name, mask in masks.items():
        w = dict(model.named_parameters())[name]
        assert not torch.equal(w[mask], before[name][mask]), "survivors should train"


def test_evaluate_restores_mode_and_counts(h):
    torch.manual_seed(0)
    model = h.TinyMLP().train()
    loader = _data(40)
    result = evaluate(model, loader)
    assert model.training and result.n == 40
    assert 0.0 <= result.accuracy <= 100.0 and result.loss > 0
    batches = list(loader)
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    with torch.no_grad():
        expected = torch.nn.functional.cross_entropy(model(x), y).item()
    assert result.loss == pytest.approx(expected, rel=1e-6)


def test_unknown_optimizer():
    with pytest.raises(ValueError, match="sgd"):
        make_optimizer("lbfgs", [torch.nn.Parameter(torch.zeros(1))], lr=0.1)
