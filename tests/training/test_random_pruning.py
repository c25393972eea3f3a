"""Random pruning, the control: exactly magnitude pruning's per-layer counts, other weights, seeded."""
from __future__ import annotations

import pytest
import torch

from prunehess.training import RunFolder, run_training
from prunehess.training.pruning import (
    default_is_prunable,
    full_masks,
    magnitude_prune,
    prune_count,
    prune_layers,
    random_prune,
)

SHAPES = {"a.weight": (40, 30), "b.weight": (30, 20), "c.weight": (4, 3, 3, 3), "d.weight": (10, 20)}


def _weights(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {name: torch.randn(*shape, generator=g) * (1 + i) for i, (name, shape) in enumerate(SHAPES.items())}


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("global_pruning", [False, True], ids=["per-layer", "global"])
def test_random_keeps_magnitudes_per_layer_counts_and_draws_other_weights(global_pruning):
    masks_rnd = full_masks(_weights(0))
    for k in range(1, 4):
        weights = _weights(k)
        magnitude = magnitude_prune(weights, masks_rnd, 30.0, global_pruning=global_pruning)
        new = random_prune(weights, masks_rnd, 30.0, global_pruning=global_pruning, generator=_gen(k))
        for name in SHAPES:
            assert int(new[name].sum()) == int(magnitude[name].sum()), (name, k)
            assert not bool((new[name] & ~masks_rnd[name]).any()), "a pruned weight came back"
            assert not torch.equal(new[name], magnitude[name]), f"{name}: random chose magnitude's weights"
        masks_rnd = new
    if global_pruning:  # the counts are global magnitude pruning's: layers lose different fractions
        fractions = {round(int(m.sum()) / m.numel(), 4) for m in masks_rnd.values()}
        assert len(fractions) > 1


def test_random_dropped_weights_are_not_the_smallest():
    weights = _weights(5)
    new = random_prune(weights, full_masks(weights), 50.0, generator=_gen(0))
    for name, w in weights.items():
        dropped, kept = w[~new[name]].abs(), w[new[name]].abs()
        assert dropped.max() > kept.min(), name  # magnitude pruning would give dropped.max() <= kept.min()


def test_random_is_seeded():
    weights = _weights(1)
    a = random_prune(weights, full_masks(weights), 20.0, generator=_gen(3))
    b = random_prune(weights, full_masks(weights), 20.0, generator=_gen(3))
    c = random_prune(weights, full_masks(weights), 20.0, generator=_gen(4))
    assert all(torch.equal(a[n], b[n]) for n in SHAPES)
    assert not all(torch.equal(a[n], c[n]) for n in SHAPES)


def test_prune_layers_uses_each_layers_rate_and_magnitude():
    weights = _weights(2)
    rates = {"a.weight": 10.0, "b.weight": 45.0, "c.weight": 0.0}
    new = prune_layers(weights, full_masks(weights), rates)
    for name, shape in SHAPES.items():
        n = torch.Size(shape).numel()
        assert int((~new[name]).sum()) == prune_count(n, rates.get(name, 0.0)), name
        if (~new[name]).any():
            assert weights[name][~new[name]].abs().max() <= weights[name][new[name]].abs().min()
    with pytest.raises(ValueError, match="a.weight"):
        prune_layers(weights, full_masks(weights), {"a.weight": 100.0})


@pytest.mark.parametrize("global_pruning", [False, True], ids=["per-layer", "global"])
def test_random_run_has_magnitudes_counts_on_its_own_weights(tmp_path, h, global_pruning):
    config = h.config(tmp_path / "run", prune_iterations=3, epochs=1, prune_type="random", prune_percent=30.0,
                      global_pruning=global_pruning)
    run_training(config, components=h.components())
    folder = RunFolder.for_config(config)
    assert folder.initial.name == "initial_state_dict_random.pth" and folder.archive.exists()
    initial = h.load(folder.initial)
    for ite in (1, 2):
        before, start = h.load(folder.snapshot(ite - 1, 1)), h.load(folder.snapshot(ite, 0))
        masks = {n: w != 0 for n, w in before.items() if default_is_prunable(n, w)}
        magnitude = magnitude_prune(before, masks, 30.0, global_pruning=global_pruning)
        for name, mask in masks.items():
            survives = start[name] != 0
            assert int(survives.sum()) == int(magnitude[name].sum()), (ite, name)
            assert not bool((survives & ~mask).any())
            assert not torch.equal(survives, magnitude[name]), (ite, name)
            assert torch.equal(start[name][survives], initial[name][survives])  # rewound like lt
