"""Directions: filter normalisation (Li et al.), unit directions on the surviving weights, eigenvectors from the
saved files, the gradient."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prunehess.errors import CheckpointError, DataError
from prunehess.geometry import (eigen_direction, filter_normalized_direction, gradient_direction, surviving_masks,
                                unit_direction)
from prunehess.plots.overlap import read_eigenvectors

pytestmark = pytest.mark.usefixtures("float64")


def _pruned_net(seed: int = 0):
    """A conv (4-D filters) and a linear layer (rows), with exact zeros in both weights; BatchNorm between."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(3 * 2 * 2, 4)).double()
    with torch.no_grad():
        model[0].weight[1] = 0.0  # a whole filter pruned
        model[0].weight[0, 0, 0, :2] = 0.0
        model[3].weight[:, ::3] = 0.0
    return model


def test_each_filter_gets_the_norm_of_the_weights_filter_and_zero_where_pruned():
    model = _pruned_net()
    params = dict(model.named_parameters())
    masks = surviving_masks(model, {})
    d = filter_normalized_direction(params, masks, seed=7)
    for name in ("0.weight", "3.weight"):
        w, di = params[name].detach(), d[name]
        np.testing.assert_allclose(di.reshape(len(di), -1).norm(dim=1), w.reshape(len(w), -1).norm(dim=1),
                                   rtol=1e-12, atol=0)
        assert torch.all(di[w == 0] == 0)
        assert torch.all(di[w != 0] != 0)
    assert torch.all(d["0.weight"][1] == 0)  # the pruned filter stays zero
    for name in ("0.bias", "1.weight", "1.bias", "3.bias"):  # biases and BatchNorm: left out
        assert torch.all(d[name] == 0), name


def test_include_biases_keeps_them_as_the_parameters_themselves():
    model = _pruned_net()
    params = dict(model.named_parameters())
    d = filter_normalized_direction(params, {}, seed=7, include_biases=True)
    for name in ("0.bias", "1.weight", "1.bias", "3.bias"):
        assert torch.equal(d[name], params[name].detach()), name
    same = filter_normalized_direction(params, {}, seed=7)
    assert torch.equal(d["3.weight"], same["3.weight"])  # the same draws: biases do not consume any


def test_the_same_seed_gives_the_same_direction_and_another_seed_another():
    params = dict(_pruned_net().named_parameters())
    a, b = (filter_normalized_direction(params, {}, seed=s) for s in (1, 1))
    c = filter_normalized_direction(params, {}, seed=2)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["3.weight"], c["3.weight"])


def test_unit_direction_is_unit_on_the_surviving_weights():
    model = _pruned_net()
    masks = surviving_masks(model, {})
    vectors = {n: torch.ones_like(p) for n, p in model.named_parameters()}
    d = unit_direction(vectors, masks)
    assert sum(float((v**2).sum()) for v in d.values()) == pytest.approx(1.0, abs=1e-14)
    assert torch.all(d["0.weight"][model[0].weight == 0] == 0)
    with pytest.raises(CheckpointError, match="zero"):
        unit_direction({n: torch.zeros_like(p) for n, p in model.named_parameters()}, masks, what="x")


def test_surviving_masks_add_the_checkpoints_masks_and_all_means_none():
    model = _pruned_net()
    extra = torch.ones_like(model[3].weight, dtype=torch.bool)
    extra[0, 1] = False
    masks = surviving_masks(model, {"3.weight": extra})
    assert not masks["3.weight"][0, 1] and not masks["3.weight"][0, 0]  # the file's mask and the exact zero
    assert set(masks) == {"0.weight", "3.weight"}  # biases and BatchNorm are never pruned
    assert surviving_masks(model, {"3.weight": extra}, params="all") == {}


def _npz(vectors: dict, eigenvalues) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, eigenvalues=np.asarray(eigenvalues), **{k: np.asarray(v, dtype=np.float32)
                                                            for k, v in vectors.items()})
    return buffer.getvalue()


def test_eigen_direction_reads_the_saved_vectors(tmp_path):
    model = nn.Linear(3, 2).double()
    saved = {"weight": np.arange(12, dtype=float).reshape(2, 2, 3), "bias": np.ones((2, 2))}
    path = tmp_path / "eigenvectors001_best.npz"
    path.write_bytes(_npz(saved, [5.0, 2.0]))
    read = read_eigenvectors(path)
    d = eigen_direction(read.vectors, 1, model, {}, source=str(path))
    want = np.concatenate([saved["weight"][1].ravel(), saved["bias"][1]])
    want = want / np.linalg.norm(want)
    np.testing.assert_allclose(np.concatenate([d["weight"].numpy().ravel(), d["bias"].numpy()]), want, rtol=1e-7)
    bad = tmp_path / "eigenvectors002_best.npz"
    bad.write_bytes(_npz({"weight": np.ones((1, 3, 3))}, [1.0]))
    with pytest.raises(DataError, match=r"eigenvectors002_best.npz: weight has shape \(3, 3\)"):
        eigen_direction(read_eigenvectors(bad).vectors, 0, model, {}, source=str(bad))
    other = tmp_path / "eigenvectors003_best.npz"
    other.write_bytes(_npz({"fc.weight": np.ones((1, 2, 3))}, [1.0]))
    with pytest.raises(DataError, match="fc.weight, which the model does not have"):
        eigen_direction(read_eigenvectors(other).vectors, 0, model, {}, source=str(other))


def test_gradient_direction_is_the_normalised_gradient_on_the_surviving_weights():
    model = _pruned_net(1)
    g = torch.Generator().manual_seed(0)
    data = [(torch.randn(5, 2, 4, 4, generator=g, dtype=torch.float64), torch.randint(0, 4, (5,), generator=g)),
            (torch.randn(3, 2, 4, 4, generator=g, dtype=torch.float64), torch.randint(0, 4, (3,), generator=g))]
    masks = surviving_masks(model, {})
    model.train()
    d = gradient_direction(model, data, masks)  # in eval mode (BatchNorm's running statistics), then restored
    assert model.training
    model.eval()
    loss = sum(F.cross_entropy(model(x), y, reduction="sum") for x, y in data) / 8
    grads = dict(zip([n for n, _ in model.named_parameters()], torch.autograd.grad(loss, list(model.parameters()))))
    grads = {n: g * masks[n] if n in masks else g for n, g in grads.items()}
    norm = torch.sqrt(sum((g**2).sum() for g in grads.values()))
    for name in grads:
        torch.testing.assert_close(d[name], grads[name] / norm, rtol=1e-12, atol=1e-15)
