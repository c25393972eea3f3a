"""HessianOperator against dense Hessians computed without the engine (float64, tight tolerances).

Truths come from ``tests/cases.py``: the full dense Hessian of each tiny model over every coordinate and the
whole batch at once (plain double backward, row by row), restricted by index selection to the selected
parameters and surviving coordinates; and one closed form, least squares, H = (2/N) X̃ᵀX̃.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cases
from helpers import assert_close, assert_scalar_close, check_products, columns, probes
from prunehess import HessianOperator, split_batch
from prunehess.errors import ConfigError, NonDeterministicError
from prunehess.estimators import (EigenOptions, TraceOptions, hutchinson_trace, hutchpp_trace, lanczos_top_eigen,
                                  power_iteration, slq_density)
from prunehess.estimators.sampling import gaussian, make_generator
from prunehess.operators.hessian import BATCHED_STRATEGIES
from prunehess.operators.hvp import STRATEGIES

pytestmark = pytest.mark.usefixtures("float64")

RTOL, ATOL = 1e-9, 1e-12  # float64: the engine agrees with the independent Hessian to rounding


# ----- every strategy equals the dense Hessian -----------------------------------------------------------------
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_single_strategy_equals_dense(case, strategy):
    op = HessianOperator(case.model, case.data, case.loss_fn, strategy=strategy)
    assert op.shape == tuple(case.expected.shape)
    assert op.dtype == torch.float64
    if strategy == "forward_over_reverse":  # slowest per product: random vectors (vmap builds it whole below)
        V = probes(op.size, 6)
        H_V = torch.stack([op.matvec(V[:, j]) for j in range(V.shape[1])], dim=1)
        assert op.n_matvecs == 6
        assert_close(H_V, case.expected @ V, rtol=RTOL, atol=ATOL, name=f"{case.name}/{strategy}")
        return
    H = columns(op)
    assert op.n_matvecs == op.size
    assert_close(H, case.expected, rtol=RTOL, atol=ATOL, name=f"{case.name}/{strategy}")
    assert_close(H, H.T, rtol=RTOL, atol=ATOL, name="symmetry")


@pytest.mark.parametrize("batched", BATCHED_STRATEGIES)
def test_batched_strategy_equals_dense(case, batched):
    op = HessianOperator(case.model, case.data, case.loss_fn, batched_strategy=batched)
    assert_close(op.to_dense(), case.expected, rtol=RTOL, atol=ATOL, name=f"{case.name}/{batched} to_dense")
    V = probes(op.size, 5)
    before = op.n_matvecs
    assert_close(op.matmat(V), case.expected @ V, rtol=RTOL, atol=ATOL, name=f"{case.name}/{batched} matmat")
    assert op.n_matvecs - before == 5
    assert_close(op.matmat(V[:, :1]), case.expected @ V[:, :1], rtol=RTOL, atol=ATOL, name="k=1")


@pytest.mark.parametrize("strategy,batched", [(s, "loop") for s in STRATEGIES] + [("graph", b) for b in ("vmap", "graph_batched")])
def test_least_squares_closed_form(float64, strategy, batched):
    """Linear model, mean squared error: H = (2/N) X̃ᵀX̃ exactly, over mini-batches of uneven size."""
    model, x, y, H = cases.least_squares(n=12, d=4)
    data = split_batch(x, y, 5)
    assert [b[0].shape[0] for b in data] == [5, 5, 2]
    op = HessianOperator(model, data, cases.mse, strategy=strategy, batched_strategy=batched)
    assert op.names == ("weight", "bias")
    assert_close(columns(op), H, rtol=1e-12, atol=1e-13, name=f"least squares/{strategy}")
    assert_close(op.to_dense(), H, rtol=1e-12, atol=1e-13, name=f"least squares/{batched}")


@pytest.mark.parametrize("strategy,batched", [(s, "loop") for s in STRATEGIES] + [("graph", b) for b in ("vmap", "graph_batched")])
def test_torch_mse_loss_every_strategy(float64, strategy, batched):
    """``F.mse_loss`` is a loss users will pass. PyTorch's forward-mode AD of ``mse_loss``'s backward raises
    "ZeroTensors are immutable" under ``jvp(grad(...))``, so forward-over-reverse and vmap must not rely on it."""
    model, x, y, H = cases.least_squares(n=12, d=4)
    op = HessianOperator(model, split_batch(x, y, 5), F.mse_loss, strategy=strategy, batched_strategy=batched)
    assert_close(columns(op), H, rtol=1e-12, atol=1e-13, name=f"F.mse_loss/{strategy}")
    assert_close(op.matmat(probes(op.size)), H @ probes(op.size), rtol=1e-12, atol=1e-13, name=f"F.mse_loss/{batched}")


def test_least_squares_multi_output(float64):
    """Two outputs, mean over N·2 entries: H = (2/(2N)) (I₂ ⊗ X̃ᵀX̃) in (weight rows, bias) order, permuted."""
    g = torch.Generator().manual_seed(3)
    model = nn.Linear(3, 2).double()
    x = torch.randn(7, 3, generator=g, dtype=torch.float64)
    y = torch.randn(7, 2, generator=g, dtype=torch.float64)
    G = 2.0 / (7 * 2) * x.T @ x  # weight-weight block per output
    c = 2.0 / (7 * 2) * x.sum(0)  # weight-bias coupling per output
    H = torch.zeros(8, 8, dtype=torch.float64)
    for o in range(2):
        w = slice(3 * o, 3 * o + 3)
        b = 6 + o
        H[w, w] = G
        H[w, b] = c
        H[b, w] = c
        H[b, b] = 2.0 / (7 * 2) * 7
    op = HessianOperator(model, split_batch(x, y, 3), cases.mse, batched_strategy="graph_batched")
    assert_close(op.to_dense(), H, rtol=1e-12, atol=1e-13, name="multi-output least squares")


# ----- which parameters -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("order", ["model_order", "reversed"])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_subset_params_equal_slices(case, strategy, order):
    """``params=[names]`` (in any order: the flat vector follows the order given) is the index-selected Hessian."""
    names = [case.names[0], case.names[-1]]
    if order == "reversed":
        names = names[::-1]
    op = HessianOperator(case.model, case.data, case.loss_fn, params=names, strategy=strategy, batched_strategy="loop")
    assert op.names == tuple(names)
    V = probes(op.size, 4)
    H_V = torch.stack([op.matvec(V[:, j]) for j in range(V.shape[1])], dim=1)
    assert_close(H_V, case.hessian(names, case.masks) @ V, rtol=RTOL, atol=ATOL, name=f"{case.name}/{strategy} {names}")


def test_subset_params_selectors(case):
    biases = [n for n in case.names if n.endswith("bias")]
    op = HessianOperator(case.model, case.data, case.loss_fn, params=lambda n, p: n.endswith("bias"))
    assert op.names == tuple(biases)
    assert_close(op.to_dense(), case.hessian(biases), rtol=RTOL, atol=ATOL, name="callable selector")
    first = case.names[0]
    op = HessianOperator(case.model, case.data, case.loss_fn, params=first)  # one name as a string
    assert_close(op.to_dense(), case.hessian([first], case.masks), rtol=RTOL, atol=ATOL, name="single name")


def test_unknown_or_empty_selection(float64):
    c = cases.build("mlp_tanh_ce")
    with pytest.raises(KeyError, match="nope"):
        HessianOperator(c.model, c.data, c.loss_fn, params=["nope"])
    with pytest.raises(ValueError, match="no parameters"):
        HessianOperator(c.model, c.data, c.loss_fn, params=lambda n, p: False)
    with pytest.raises(ValueError, match="empty"):
        HessianOperator(c.model, [], c.loss_fn)
    with pytest.raises(ValueError, match="masks"):
        HessianOperator(c.model, c.data, c.loss_fn, masks="zeros")
    op = HessianOperator(c.model, c.data, c.loss_fn)
    with pytest.raises(ValueError, match="unknown strategy"):
        op.set_strategy("magic")
    with pytest.raises(ValueError, match="unknown batched strategy"):
        op.set_strategy("graph", "magic")


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_layers_are_slices_of_dense(case, strategy):
    op = HessianOperator(case.model, case.data, case.loss_fn, strategy=strategy, batched_strategy="loop")
    layers = op.layers()
    assert list(layers) == case.names
    slices = op.space.slices()
    assert slices == case.block_slices() == op.block_slices()
    for name, block in layers.items():
        sl = slices[name]
        assert block.names == (name,)
        assert block.size == sl.stop - sl.start
        assert block.strategy == strategy
        assert_close(columns(block), case.expected[sl, sl], rtol=RTOL, atol=ATOL, name=f"{case.name}/{strategy} block {name}")


@pytest.mark.parametrize("order", ["model_order", "shuffled"])
@pytest.mark.parametrize("batched", BATCHED_STRATEGIES)
def test_restrict_blocks(case, batched, order):
    """A multi-tensor block equals the index-selected dense Hessian, in the order the names are given."""
    names = [case.names[0], case.names[-1]] if len(case.names) < 3 else [case.names[0], case.names[2], case.names[-1]]
    if order == "shuffled":
        names = names[1:] + names[:1]
    op = HessianOperator(case.model, case.data, case.loss_fn, batched_strategy=batched)
    op.matvec(probes(op.size)[:, 0])  # the parent's graph exists before the block shares it
    block = op.restrict(names)
    assert block.names == tuple(names)
    assert block.batched_strategy == batched
    expected = case.hessian(names, case.masks)
    assert_close(block.to_dense(), expected, rtol=RTOL, atol=ATOL, name=f"{case.name}/{batched} restrict {names}")
    assert_close(op.restrict(names[0]).to_dense(), case.hessian(names[:1], case.masks), rtol=RTOL, atol=ATOL, name="str")
    with pytest.raises(KeyError):
        op.restrict(["nope"])


# ----- masks -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_masked_equals_restricted_dense(masked_case, strategy):
    """The operator on a pruned model is the full unmasked dense Hessian restricted to the surviving coordinates."""
    c = masked_case
    op = HessianOperator(c.model, c.data, c.loss_fn, strategy=strategy)
    assert set(op.space.masks) == set(c.masks)
    for name, mask in c.masks.items():
        assert torch.equal(op.space.masks[name].bool(), mask)
    n_survive = sum(int(m.sum()) for m in c.masks.values())
    n_other = sum(p.numel() for n, p in c.model.named_parameters() if n not in c.masks)
    assert op.size == n_survive + n_other < op.space.total
    index = []
    offset = 0
    for name, shape in c.shapes.items():  # the restriction built by hand, independently of helpers
        flat = torch.arange(offset, offset + torch.Size(shape).numel())
        index.append(flat[c.masks[name].reshape(-1)] if name in c.masks else flat)
        offset += torch.Size(shape).numel()
    index = torch.cat(index)
    expected = c.full_hessian[index][:, index]
    assert_close(columns(op), expected, rtol=RTOL, atol=ATOL, name=f"{c.name}/{strategy} masked")


@pytest.mark.parametrize("batched", ("vmap", "graph_batched"))
def test_masked_batched(masked_case, batched):
    c = masked_case
    op = HessianOperator(c.model, c.data, c.loss_fn, batched_strategy=batched)
    assert_close(op.to_dense(), c.expected, rtol=RTOL, atol=ATOL, name=f"{c.name}/{batched} masked")
    for name, block in op.layers().items():
        assert_close(block.to_dense(), c.hessian([name], c.masks), rtol=RTOL, atol=ATOL, name=f"masked block {name}")


def test_masks_none_is_every_coordinate(case):
    op = HessianOperator(case.model, case.data, case.loss_fn, masks=None)
    assert op.size == op.space.total == case.full_hessian.shape[0]
    assert_close(op.to_dense(), case.full_hessian, rtol=RTOL, atol=ATOL, name=f"{case.name} masks=None")


def test_explicit_mask_mapping(float64):
    """A user mask on an unpruned model restricts to its True coordinates."""
    c = cases.build("mlp_tanh_ce")
    keep = torch.rand(5, 4, generator=torch.Generator().manual_seed(1)) > 0.5
    op = HessianOperator(c.model, c.data, c.loss_fn, masks={"0.weight": keep})
    assert op.size == int(keep.sum()) + 5 + 15 + 3
    assert_close(op.to_dense(), c.hessian(masks={"0.weight": keep}), rtol=RTOL, atol=ATOL, name="explicit mask")


# ----- the Hessian batch -----------------------------------------------------------------------------------------
def test_minibatch_accumulation_equals_one_batch(case):
    """Mini-batches weighted by size (uneven last one) give the Hessian of the mean loss over the whole batch."""
    one = HessianOperator(case.model, [(case.x, case.y)], case.loss_fn).to_dense()
    assert_close(one, case.expected, rtol=RTOL, atol=ATOL, name="one batch vs independent")
    for size in (1, 3, case.x.shape[0] - 1):
        data = split_batch(case.x, case.y, size)
        for strategy in STRATEGIES:
            op = HessianOperator(case.model, data, case.loss_fn, strategy=strategy)
            V = probes(op.size, 2)
            H_V = torch.stack([op.matvec(V[:, j]) for j in range(V.shape[1])], dim=1)
            assert_close(H_V, one @ V, rtol=1e-11, atol=1e-13, name=f"{case.name} mini-batches of {size}/{strategy}")


def test_total_samples_and_reduce(float64):
    c = cases.build("mlp_tanh_ce")
    n = c.x.shape[0]
    half = HessianOperator(c.model, c.data, c.loss_fn, total_samples=2 * n, batched_strategy="graph_batched")
    assert_close(half.to_dense(), c.expected / 2, rtol=RTOL, atol=ATOL, name="total_samples = 2N")
    tripled = HessianOperator(c.model, c.data, c.loss_fn, reduce=lambda t: 3 * t)
    V = probes(tripled.size)
    assert_close(tripled.matvec(V[:, 0]), 3 * c.expected @ V[:, 0], rtol=RTOL, atol=ATOL, name="reduce matvec")
    tripled.set_strategy("graph", "vmap")
    assert_close(tripled.matmat(V), 3 * c.expected @ V, rtol=RTOL, atol=ATOL, name="reduce matmat")
    assert_close(tripled.restrict(["2.bias"]).to_dense(), 3 * c.hessian(["2.bias"]), rtol=RTOL, atol=ATOL, name="reduce block")


def test_custom_forward(float64):
    c = cases.build("cnn_batchnorm")
    wrapper = lambda x: c.model(x)  # noqa: E731  (stands in for nn.DataParallel(model))
    for strategy in ("graph", "double_backward"):
        op = HessianOperator(c.model, c.data, c.loss_fn, forward=wrapper, strategy=strategy, batched_strategy="graph_batched")
        check_products(op, c.expected, f"custom forward/{strategy}")
    with pytest.raises(ValueError, match="custom forward"):
        HessianOperator(c.model, c.data, c.loss_fn, forward=wrapper, strategy="forward_over_reverse")
    with pytest.raises(ValueError, match="custom forward"):
        HessianOperator(c.model, c.data, c.loss_fn, forward=wrapper, batched_strategy="vmap")


# ----- eval mode, determinism ------------------------------------------------------------------------------------
def test_train_flags_restored_and_eval_statistics_used(float64):
    """Products use eval mode (BatchNorm running statistics) whatever the model's mode, and restore every flag."""
    c = cases.build("cnn_batchnorm")
    c.model.train()
    c.model[2].eval()  # mixed flags must come back exactly
    flags = [m.training for m in c.model.modules()]
    stats = {k: v.clone() for k, v in c.model.named_buffers()}
    for strategy in STRATEGIES:
        for batched in BATCHED_STRATEGIES:
            op = HessianOperator(c.model, c.data, c.loss_fn, strategy=strategy, batched_strategy=batched)
            check_products(op, c.expected, f"train-mode model/{strategy}/{batched}", k=2)
            assert [m.training for m in c.model.modules()] == flags, f"flags changed by {strategy}/{batched}"
    for k, v in c.model.named_buffers():
        assert torch.equal(v, stats[k]), f"buffer {k} changed: BatchNorm ran in train mode"
    c.model.train()  # train-mode BatchNorm gives other outputs: the check above is not vacuous
    out = c.model(c.x)
    c.model.eval()
    assert not torch.allclose(out, c.model(c.x)), "train and eval forward coincide: the case is too weak"


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_check_deterministic_passes(case, strategy, monkeypatch):
    op = HessianOperator(case.model, case.data, case.loss_fn, strategy=strategy)
    seen = []
    matvec = HessianOperator._matvec
    monkeypatch.setattr(HessianOperator, "_matvec", lambda self, v: seen.append(v) or matvec(self, v))
    before = op.n_matvecs
    assert op.check_deterministic(seed=3) <= 1e-14
    assert op.n_matvecs - before == 2
    # the estimators' Gaussian vector of that seed, drawn on the CPU (the same on every device)
    expected = gaussian((op.size,), generator=make_generator(3), dtype=op.dtype, device=op.device)
    assert len(seen) == 2 and torch.equal(seen[0], expected) and torch.equal(seen[1], expected)


class AlwaysDropout(nn.Module):
    """Dropout that ignores eval mode: the model is not a fixed function of its weights."""

    def forward(self, x):
        return F.dropout(x, 0.5, training=True)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_check_deterministic_raises_on_forced_dropout(float64, strategy):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), AlwaysDropout(), nn.Tanh(), nn.Linear(8, 3)).double()
    x = torch.randn(16, 4)
    y = torch.randint(0, 3, (16,))
    op = HessianOperator(model, split_batch(x, y, 8), strategy=strategy)
    with pytest.raises(NonDeterministicError, match="differ"):
        op.check_deterministic()


# ----- the estimators on the operator ------------------------------------------------------------------------------
def test_estimators_on_the_operator(float64):
    """The estimators are functions of the operator (it has no estimator methods); per-layer Hutchinson traces come
    from :meth:`HessianOperator.block_slices`."""
    c = cases.build("cnn_batchnorm")
    op = HessianOperator(c.model, c.data, c.loss_fn)
    assert not any(hasattr(op, name) for name in ("top_eigen", "trace", "density", "summary", "tune"))
    exact = torch.linalg.eigvalsh(c.expected)
    largest, dominant = exact[-1], exact[exact.abs().argmax()]  # power iteration finds the largest in magnitude
    assert dominant < 0, "this case has a dominant negative eigenvalue"
    lanczos = lanczos_top_eigen(op, k=2, tol=1e-10)
    assert lanczos.method == "lanczos"
    assert_close(lanczos.eigenvalues, exact.flip(0)[:2], rtol=1e-8, atol=0, name="top_eigen/lanczos")
    assert_scalar_close(float(lanczos_top_eigen(op, k=1, which="LM", tol=1e-10).eigenvalues[0]), float(dominant),
                        rtol=1e-8)
    power = power_iteration(op, k=1, tol=1e-8, max_iter=1000)
    assert power.method == "power"
    assert_scalar_close(float(power.eigenvalues[0]), float(dominant), rtol=1e-6, name="top_eigen/power")
    assert largest > 0
    res = hutchinson_trace(op, blocks=op.block_slices(), n_probes=30)
    assert list(res.blocks) == c.names
    assert_scalar_close(sum(b.estimate for b in res.blocks.values()), res.estimate, rtol=1e-12, name="blocks sum")
    assert hutchpp_trace(op, n_hvp=op.size * 3).n_hvp == 2 * op.size
    assert_scalar_close(hutchpp_trace(op, n_hvp=op.size * 3).estimate, float(torch.trace(c.expected)), rtol=1e-9)
    density = slq_density(op, n_runs=2, n_steps=10)
    assert density.dim == op.size and density.nodes.shape == (2, 10) and density.n_hvp == 20
    assert_close(density.weights.sum(dim=1), torch.ones(2), rtol=1e-12, atol=0, name="SLQ weights")
    with pytest.raises(TypeError, match="blocks"):  # per-layer traces come from Hutchinson probes only
        hutchpp_trace(op, blocks=op.block_slices())
    with pytest.raises(ConfigError, match="hutchinson, hutch\\+\\+"):
        TraceOptions(method="exact")
    with pytest.raises(ConfigError, match="lanczos, power"):
        EigenOptions(method="arnoldi")


def test_cuda_graphs_need_a_gpu():
    case = cases.build("mlp_tanh_ce")
    op = HessianOperator(case.model, case.data, case.loss_fn)
    assert not op.supports_cuda_graphs and not op.cuda_graphs
    with pytest.raises(ValueError, match="cuda_graphs needs a CUDA device"):
        HessianOperator(case.model, case.data, case.loss_fn, cuda_graphs=True)
