"""Masks of surviving weights: torch.nn.utils.prune pairs, exact zeros, and which one wins."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

import cases
from prunehess.operators import detect_masks, prune_pair_masks, zero_masks
from prunehess.operators.masks import is_prunable_weight

pytestmark = pytest.mark.usefixtures("float64")


def test_prune_pair_masks_match_buffers():
    c = cases.build("masked_prune")
    masks = prune_pair_masks(c.model)
    assert set(masks) == {"0.weight_orig", "2.weight_orig"}
    for name, mask in masks.items():
        assert mask.dtype == torch.bool
        assert torch.equal(mask, c.masks[name])
    assert detect_masks(c.model).keys() == masks.keys()


def test_zero_masks_are_exact_nonzeros_of_weights_only():
    c = cases.build("masked_zeros")
    with torch.no_grad():
        c.model[0].bias[1] = 0.0  # a zero bias is not a pruned weight
    masks = zero_masks(c.model)
    assert set(masks) == set(c.masks)
    for name, mask in masks.items():
        assert torch.equal(mask, c.masks[name])
    assert detect_masks(c.model).keys() == masks.keys()


def test_dense_model_has_no_masks():
    c = cases.build("mlp_tanh_ce")
    assert zero_masks(c.model) == {} and prune_pair_masks(c.model) == {} and detect_masks(c.model) == {}


def test_prune_pairs_take_priority_over_zeros():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)).double()
    with torch.no_grad():
        model[1].weight[0, 0] = 0.0  # exact zero in an unpruned layer
    prune.l1_unstructured(model[0], "weight", amount=0.5)
    assert set(detect_masks(model)) == {"0.weight_orig"}


def test_custom_prunable_filter():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)).double()
    with torch.no_grad():
        model[0].weight[0, 0] = 0.0
        model[1].weight[0, 0] = 0.0
    assert set(detect_masks(model, prunable=lambda n, p: n.startswith("1."))) == {"1.weight"}
    assert is_prunable_weight("w", torch.zeros(2, 2)) and not is_prunable_weight("b", torch.zeros(2))
