"""Magnitude pruning: the schedule to the weight, per layer and globally; masks only ever shrink."""
from __future__ import annotations

import pytest
import torch

from prunehess.training.pruning import (
    apply_masks_,
    count_parameters,
    full_masks,
    magnitude_prune,
    prune_count,
    remaining_percent,
)

SHAPES = {"a.weight": (13, 7), "b.weight": (5, 3), "c.weight": (2, 3, 3, 3), "d.weight": (1, 1)}


def _weights(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {name: torch.randn(*shape, generator=g) for name, shape in SHAPES.items()}


def _expected(n: int, percent: float, rounds: int) -> list[int]:
    counts = [n]
    for _ in range(rounds):
        counts.append(counts[-1] - prune_count(counts[-1], percent))
    return counts


@pytest.mark.parametrize("n, percent, expected", [
    (100, 20, 20), (91, 20, 18), (15, 20, 3), (5, 10, 1), (4, 10, 0), (1, 50, 1), (0, 20, 0), (7, 0, 0),
    (300, 20, 60), (3, 50, 2),
])
def test_prune_count_rounds_half_up(n, percent, expected):
    assert prune_count(n, percent) == expected


@pytest.mark.parametrize("percent", [20.0, 37.5, 50.0])
def test_per_layer_schedule_to_the_weight(percent):
    masks = full_masks(_weights())
    for k in range(1, 5):
        weights = _weights(seed=k)  # retrained weights differ each round
        new = magnitude_prune(weights, masks, percent)
        for name, shape in SHAPES.items():
            n = torch.Size(shape).numel()
            assert int(new[name].sum()) == _expected(n, percent, k)[-1], (name, k)
            assert not bool((new[name] & ~masks[name]).any()), "a pruned weight came back"
            # the dropped ones are the smallest survivors of this round
            dropped = masks[name] & ~new[name]
            if dropped.any() and new[name].any():
                assert weights[name][dropped].abs().max() <= weights[name][new[name]].abs().min()
        masks = new


def test_global_schedule_to_the_weight_and_ranks_across_layers():
    masks = full_masks(_weights())
    total = sum(torch.Size(s).numel() for s in SHAPES.values())
    for k in range(1, 4):
        weights = _weights(seed=10 + k)
        new = magnitude_prune(weights, masks, 20.0, global_pruning=True)
        assert sum(int(m.sum()) for m in new.values()) == _expected(total, 20.0, k)[-1]
        kept = torch.cat([weights[n][new[n]].abs() for n in SHAPES])
        dropped = torch.cat([weights[n][masks[n] & ~new[n]].abs() for n in SHAPES])
        assert dropped.max() <= kept.min()
        masks = new
    # global pruning does not remove the same fraction from every layer
    per_layer = {n: int(m.sum()) / m.numel() for n, m in masks.items()}
    assert len(set(round(v, 6) for v in per_layer.values())) > 1


def test_ties_are_broken_by_position_and_pruning_is_deterministic():
    w = {"w": torch.tensor([[1.0, -1.0, 1.0, 2.0]])}
    masks = magnitude_prune(w, full_masks(w), 50.0)
    assert masks["w"].tolist() == [[False, False, True, True]]
    again = magnitude_prune(w, full_masks(w), 50.0)
    assert torch.equal(masks["w"], again["w"])


def test_zero_percent_and_inputs_untouched():
    w = _weights()
    masks = full_masks(w)
    before = {k: m.clone() for k, m in masks.items()}
    same = magnitude_prune(w, masks, 0.0)
    assert all(torch.equal(same[k], masks[k]) for k in masks)
    magnitude_prune(w, masks, 50.0)
    assert all(torch.equal(before[k], masks[k]) for k in masks)
    with pytest.raises(ValueError):
        magnitude_prune(w, masks, 100.0)


def test_apply_masks_and_remaining_percent_count_all_parameters():
    model = torch.nn.Sequential(torch.nn.Linear(10, 4), torch.nn.Linear(4, 2))
    names = ["0.weight", "1.weight"]
    weights = {n: p for n, p in model.named_parameters() if n in names}
    masks = magnitude_prune(weights, full_masks(weights), 25.0)  # 10 of 40 and 2 of 8
    apply_masks_(model, masks)
    assert int((model[0].weight == 0).sum()) == 10 and int((model[1].weight == 0).sum()) == 2
    assert torch.all(torch.signbit(model[0].weight[~masks["0.weight"]]) == 0), "pruned weights are +0.0"
    surviving, total = count_parameters(model, masks)
    assert (surviving, total) == (44 + 10 - 12, 54)
    nonzero = sum(int((p != 0).sum()) for p in model.parameters())
    assert remaining_percent(model, masks) == pytest.approx(100.0 * nonzero / total)
