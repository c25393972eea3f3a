"""The diagonal: Hutchinson's estimate against exact diagonals, per-output-channel traces, and the exact diagonal of
piecewise-linear networks against the dense Hessian (float64)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

import cases
from helpers import assert_close, random_symmetric
from prunehess import HessianOperator, split_batch
from prunehess.estimators import DiagonalResult, exact_diagonal, hutchinson_diagonal, output_channels
from prunehess.operators import GGNOperator, TensorOperator
from prunehess.operators.linearity import NotPiecewiseLinearError
from prunehess.reference import dense_ggn, dense_hessian_diagonal

pytestmark = pytest.mark.usefixtures("float64")


def _matrix(n: int = 60, seed: int = 4) -> torch.Tensor:
    A, _ = random_symmetric(n, torch.linspace(-2.0, 10.0, n), seed)
    return A


# ----- Hutchinson's diagonal -------------------------------------------------------------------------------------
def test_within_standard_errors_and_converging():
    """|estimate − diag| ≤ 4 stderr for nearly all coordinates (≥ 99%, none beyond 6); the error falls like 1/√m;
    the stderr matches the exact Rademacher standard deviation √(Σ_{j≠k} A_kj² / m)."""
    A = _matrix()
    truth = torch.diagonal(A)
    exact_sd = ((A**2).sum(1) - truth**2).sqrt()
    errors = {}
    for m in (100, 1600):
        res = hutchinson_diagonal(A, n_probes=m, batch_size=50, seed=7)
        assert (res.n_hvp, res.probes, res.method) == (m, m, "hutchinson")
        z = (res.estimate - truth).abs() / res.stderr
        assert float((z <= 4).double().mean()) >= 0.99 and float(z.max()) < 6, f"{m} probes: z up to {z.max():.2f}"
        ratio = res.stderr * math.sqrt(m) / exact_sd
        assert abs(float(ratio.median()) - 1) < 0.1, f"stderr off by {float(ratio.median()):.3f}"
        errors[m] = float((res.estimate - truth).norm())
    assert errors[1600] < errors[100] / 2.5, errors  # 1/√16 = 1/4 in expectation


def test_seeded_and_exact_on_diagonal_matrices():
    A = _matrix(20)
    first = hutchinson_diagonal(A, n_probes=30, batch_size=7, seed=3)
    again = hutchinson_diagonal(TensorOperator(A), n_probes=30, batch_size=7, seed=3)
    assert torch.equal(first.estimate, again.estimate) and torch.equal(first.stderr, again.stderr)
    assert not torch.equal(first.estimate, hutchinson_diagonal(A, n_probes=30, batch_size=7, seed=4).estimate)
    D = torch.diag(torch.arange(1.0, 6.0))
    res = hutchinson_diagonal(D, n_probes=5)
    assert torch.equal(res.estimate, torch.arange(1.0, 6.0)) and torch.equal(res.stderr, torch.zeros(5))
    with pytest.raises(ValueError, match="at least 2"):
        hutchinson_diagonal(A, n_probes=1)


def test_hessian_diagonal_and_channel_traces(float64):
    """On a Hessian operator (pruned conv net) the estimate matches the dense diagonal within its errors, and each
    output channel's trace matches the sum of the dense diagonal over its surviving weights."""
    c = cases.build("cnn_batchnorm")
    keep = torch.rand(2, 1, 3, 3, generator=torch.Generator().manual_seed(0)) > 0.3
    H = HessianOperator(c.model, c.data, c.loss_fn, masks={"0.weight": keep}, batched_strategy="graph_batched")
    truth = torch.diagonal(c.hessian(masks={"0.weight": keep}))
    channels = output_channels(H)
    assert list(channels) == ["0.weight", "4.weight"] and channels["0.weight"].count == 2
    res = hutchinson_diagonal(H, n_probes=300, batch_size=30, seed=2, channels=channels)
    z = (res.estimate - truth).abs() / res.stderr
    assert float((z <= 4).double().mean()) >= 0.98 and float(z.max()) < 6
    for name, ch in channels.items():
        traces = res.channels[name]
        sl = ch.coords
        exact = torch.zeros(ch.count, dtype=torch.float64).index_add_(0, ch.channel, truth[sl])
        assert torch.equal(traces.surviving, torch.bincount(ch.channel, minlength=ch.count))
        assert bool(((traces.estimate - exact).abs() <= 4 * traces.stderr).all()), (name, traces, exact)
        same = torch.zeros(ch.count, dtype=torch.float64).index_add_(0, ch.channel, res.estimate[sl])
        assert_close(traces.estimate, same, rtol=1e-12, atol=1e-14, name=f"{name}: channel sums of the estimate")
    assert int(channels["0.weight"].channel.numel()) == int(keep.sum())


def test_to_tensors_marks_pruned_coordinates():
    space = HessianOperator(*_masked_relu_net()).space
    values = torch.arange(float(space.dim))
    res = DiagonalResult(values, values / 10, 0, 0, "exact")
    full = res.to_tensors(space)
    assert list(full) == list(space.names)
    mask = space.masks["0.weight_orig"]
    assert torch.isnan(full["0.weight_orig"][~mask]).all() and not torch.isnan(full["0.weight_orig"][mask]).any()
    assert torch.equal(space.to_flat({n: torch.nan_to_num(t) for n, t in full.items()}), values)
    assert torch.equal(space.to_flat({n: torch.nan_to_num(t) for n, t in res.to_tensors(space, "stderr").items()}),
                       values / 10)


# ----- the exact diagonal ----------------------------------------------------------------------------------------
def _masked_relu_net():
    g = torch.Generator().manual_seed(5)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    prune.l1_unstructured(model[0], "weight", amount=0.4)
    x, y = torch.randn(9, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (9,), generator=g)
    return model, split_batch(x, y, 4)


def _conv_bn_relu_net():
    """Conv → BatchNorm (eval, non-trivial statistics) → ReLU → max-pool → residual-free linear head."""
    g = torch.Generator().manual_seed(6)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(3, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(8, 4)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.8)
        model[1].running_mean.copy_(torch.randn(3, generator=g))
        model[1].running_var.copy_(torch.rand(3, generator=g) + 0.5)
    model.train()  # evaluated in eval mode all the same
    x, y = torch.randn(7, 2, 4, 4, generator=g, dtype=torch.float64), torch.randint(0, 4, (7,), generator=g)
    return model, split_batch(x, y, 3)


@pytest.mark.parametrize("net", ["relu_mse", "masked_relu_ce", "conv_bn_relu"])
def test_exact_diagonal_of_piecewise_linear_networks_is_the_hessians(net):
    if net == "relu_mse":
        c = cases.build("mlp_relu_mse")
        model, data, loss_fn = c.model, c.data, c.loss_fn
    else:
        model, data = _masked_relu_net() if net == "masked_relu_ce" else _conv_bn_relu_net()
        loss_fn = F.cross_entropy
    H = HessianOperator(model, data, loss_fn)
    truth = dense_hessian_diagonal(model, data, loss_fn)
    res = exact_diagonal(H, channels=output_channels(H))
    assert (res.method, res.n_hvp, res.probes) == ("exact", 0, 0) and torch.equal(res.stderr, torch.zeros_like(truth))
    assert_close(res.estimate, truth, rtol=1e-10, atol=1e-12, name=f"{net}: exact diagonal")
    for name, ch in output_channels(H).items():
        sums = torch.zeros(ch.count, dtype=torch.float64).index_add_(0, ch.channel, truth[ch.coords])
        assert_close(res.channels[name].estimate, sums, rtol=1e-10, atol=1e-12, name=f"{name} channel traces")
    block = H.restrict(H.names[-1])
    sl = H.block_slices()[H.names[-1]]
    assert_close(exact_diagonal(block).estimate, truth[sl], rtol=1e-10, atol=1e-12, name="block")
    assert float((dense_ggn(model, data, loss_fn) - H.to_dense()).abs().max()) > 1e-3, "H ≠ G off the diagonal"


def test_exact_diagonal_refused_where_it_does_not_hold():
    """A Tanh network is refused naming the module; the block after the Tanh is piecewise linear in its own
    weights, and gets its exact diagonal; a GGN operator's diagonal is always exact."""
    c = cases.build("mlp_tanh_ce")
    H = HessianOperator(c.model, c.data, c.loss_fn)
    with pytest.raises(NotPiecewiseLinearError, match=r"module '1' \(Tanh\) applies tanh"):
        exact_diagonal(H)
    cnn = cases.build("cnn_batchnorm")
    with pytest.raises(ValueError, match="Gauss–Newton"):  # also a ValueError
        exact_diagonal(HessianOperator(cnn.model, cnn.data))
    last = H.restrict(["2.weight", "2.bias"])
    assert_close(exact_diagonal(last).estimate, torch.diagonal(c.hessian(["2.weight", "2.bias"])), rtol=1e-10,
                 atol=1e-12, name="after the Tanh")
    G = GGNOperator(c.model, c.data, c.loss_fn)
    assert_close(exact_diagonal(G).estimate, torch.diagonal(dense_ggn(c.model, c.data, c.loss_fn)), rtol=1e-10,
                 atol=1e-12, name="GGN")
    assert float((exact_diagonal(G).estimate - torch.diagonal(c.expected)).abs().max()) > 1e-3
    with pytest.raises(TypeError, match="GGNOperator or a HessianOperator"):
        exact_diagonal(TensorOperator(torch.eye(3)))


@pytest.mark.parametrize("layer", [nn.BatchNorm1d(5, track_running_stats=False), nn.LayerNorm(5), nn.Sigmoid(),
                                   nn.GELU(), nn.Softmax(dim=1)], ids=lambda m: type(m).__name__)
def test_refusals_name_the_module(layer):
    model = nn.Sequential(nn.Linear(4, 5), layer, nn.Linear(5, 3)).double()
    data = [(torch.randn(6, 4, dtype=torch.float64), torch.randint(0, 3, (6,)))]
    with pytest.raises(NotPiecewiseLinearError, match=rf"module '1' \({type(layer).__name__}\)"):
        exact_diagonal(HessianOperator(model, data))
