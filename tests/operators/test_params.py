"""ParameterSpace: flat vectors of surviving coordinates, and back."""
from __future__ import annotations

import pytest
import torch

from prunehess.operators import ParameterSpace

pytestmark = pytest.mark.usefixtures("float64")


def make_space(masked: bool = True) -> tuple[ParameterSpace, dict, dict]:
    g = torch.Generator().manual_seed(0)
    tensors = {"a.weight": torch.randn(3, 4, generator=g), "a.bias": torch.randn(3, generator=g),
               "b.weight": torch.randn(2, 3, 2, generator=g)}
    masks = {}
    if masked:
        masks = {"a.weight": torch.rand(3, 4, generator=g) > 0.5, "b.weight": torch.rand(2, 3, 2, generator=g) > 0.3}
    return ParameterSpace.from_tensors(tensors, masks), tensors, masks


def test_dims_sizes_and_slices():
    space, tensors, masks = make_space()
    sizes = (int(masks["a.weight"].sum()), 3, int(masks["b.weight"].sum()))
    assert space.names == ("a.weight", "a.bias", "b.weight")
    assert space.sizes == sizes
    assert space.dim == sum(sizes)
    assert space.total == 12 + 3 + 12
    assert space.slices() == {
        "a.weight": slice(0, sizes[0]), "a.bias": slice(sizes[0], sizes[0] + 3), "b.weight": slice(sizes[0] + 3, sum(sizes))
    }


def test_to_flat_picks_surviving_coordinates_row_major():
    space, tensors, masks = make_space()
    flat = space.to_flat(tensors)
    expected = torch.cat([tensors["a.weight"][masks["a.weight"]], tensors["a.bias"], tensors["b.weight"][masks["b.weight"]]])
    assert torch.equal(flat, expected)  # boolean indexing is row-major too


def test_round_trip_flat_to_tensors_to_flat():
    space, _, masks = make_space()
    flat = torch.randn(space.dim, generator=torch.Generator().manual_seed(1))
    full = space.from_flat(flat)
    assert {n: tuple(t.shape) for n, t in full.items()} == {"a.weight": (3, 4), "a.bias": (3,), "b.weight": (2, 3, 2)}
    for name, mask in masks.items():
        assert bool((full[name][~mask] == 0).all()), f"pruned coordinates of {name} must be zero"
    assert torch.equal(space.to_flat(full), flat)


def test_round_trip_tensors_zeroes_pruned():
    space, tensors, masks = make_space()
    back = space.from_flat(space.to_flat(tensors))
    for name, t in tensors.items():
        expected = t * masks[name] if name in masks else t
        assert torch.equal(back[name], expected)


@pytest.mark.parametrize("lead", [(5,), (2, 3)])
def test_batched_leading_dims(lead):
    space, _, masks = make_space()
    flat = torch.randn(*lead, space.dim, generator=torch.Generator().manual_seed(2))
    full = space.from_flat(flat)
    assert full["b.weight"].shape == (*lead, 2, 3, 2)
    assert torch.equal(space.to_flat(full), flat)
    for idx in torch.cartesian_prod(*[torch.arange(n) for n in lead]).reshape(-1, len(lead)).tolist():
        one = space.from_flat(flat[tuple(idx)])
        for name in space.names:
            assert torch.equal(full[name][tuple(idx)], one[name])
        assert bool((full["a.weight"][tuple(idx)][~masks["a.weight"]] == 0).all())


def test_unmasked_space_is_plain_concatenation():
    space, tensors, _ = make_space(masked=False)
    assert space.dim == space.total
    assert torch.equal(space.to_flat(tensors), torch.cat([t.reshape(-1) for t in tensors.values()]))


def test_subspace_keeps_masks_and_given_order():
    space, tensors, masks = make_space()
    sub = space.subspace(["b.weight", "a.bias"])
    assert sub.names == ("b.weight", "a.bias")
    assert set(sub.masks) == {"b.weight"}
    assert torch.equal(sub.to_flat(tensors), torch.cat([tensors["b.weight"][masks["b.weight"]], tensors["a.bias"]]))
    with pytest.raises(KeyError, match="nope"):
        space.subspace(["nope"])


def test_mask_shape_mismatch_and_ignored_masks():
    with pytest.raises(ValueError, match="shape"):
        ParameterSpace(("w",), (torch.Size([2, 2]),), {"w": torch.ones(4, dtype=torch.bool)})
    space = ParameterSpace.from_tensors({"w": torch.ones(2, 2)}, {"other": torch.ones(3, dtype=torch.bool)})
    assert space.masks == {} and space.dim == 4
