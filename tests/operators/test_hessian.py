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
from helpers import assert_close, assert_scalar_close
from prunehess import HessianOperator, split_batch
from prunehess.errors import NonDeterministicError
from prunehess.operators import hessian as hessian_module
from prunehess.operators.hessian import BATCHED_STRATEGIES
from prunehess.operators.hvp import STRATEGIES

pytestmark = pytest.mark.usefixtures("float64")

RTOL, ATOL = 1e-9, 1e-12  # float64: the engine agrees with the independent Hessian to rounding


def columns(op: HessianOperator) -> torch.Tensor:
    """The matrix of ``op`` by single products ``op.matvec(e_i)`` (exercises ``strategy``, not the batched path)."""
    eye = torch.eye(op.size, dtype=op.dtype)
    return torch.stack([op.matvec(eye[:, i]) for i in range(op.size)], dim=1)


def probes(n: int, k: int = 3, seed: int = 11) -> torch.Tensor:
    return torch.randn(n, k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def check_products(op: HessianOperator, expected: torch.Tensor, name: str, k: int = 3) -> None:
    """Random single and batched products against ``expected`` (cheaper than a full dense build)."""
    V = probes(op.size, k)
    assert_close(op.matmat(V), expected @ V, rtol=RTOL, atol=ATOL, name=f"{name} matmat")
    assert_close(op.matvec(V[:, 0]), expected @ V[:, 0], rtol=RTOL, atol=ATOL, name=f"{name} matvec")


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
    assert slices == case.block_slices()
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
def test_split_batch():
    x, y = torch.arange(10.0).reshape(10, 1), torch.arange(10)
    parts = split_batch(x, y, 4)
    assert [p[0].shape[0] for p in parts] == [4, 4, 2]
    assert torch.equal(torch.cat([p[1] for p in parts]), y)
    assert len(split_batch(x, y, 10)) == 1
    with pytest.raises(ValueError):
        split_batch(x, y, 0)


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


@pytest.mark.parametrize("chunk_size", [1, 5, 8, 1000])
def test_chunk_size_same_numbers(case, chunk_size):
    reference = HessianOperator(case.model, case.data, case.loss_fn).to_dense()
    for strategy in STRATEGIES:
        op = HessianOperator(case.model, case.data, case.loss_fn, chunk_size=chunk_size, strategy=strategy)
        V = probes(op.size)
        assert_close(op.matmat(V), reference @ V, rtol=1e-11, atol=1e-13, name=f"chunk_size={chunk_size}/{strategy}")


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


# ----- eval mode, determinism, tuning ----------------------------------------------------------------------------
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
def test_check_deterministic_passes(case, strategy):
    op = HessianOperator(case.model, case.data, case.loss_fn, strategy=strategy)
    before = op.n_matvecs
    assert op.check_deterministic() <= 1e-14
    assert op.n_matvecs - before == 2


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


def test_tune_returns_timings_and_stays_exact(float64):
    c = cases.build("cnn_batchnorm")
    op = HessianOperator(c.model, c.data, c.loss_fn)
    timings = op.tune(k=4, repeats=1)
    expected_keys = set(STRATEGIES) | {"batched:loop", "batched:vmap", "batched:graph_batched"}
    if op.strategy == "graph":  # graph reuse also times the mini-batches merged into one chunk
        expected_keys.add("graph+one_chunk")
    assert set(timings) == expected_keys
    assert all(isinstance(t, float) and 0 < t < 60 for t in timings.values())
    assert op.tuning == timings
    assert op.strategy in STRATEGIES and op.batched_strategy in BATCHED_STRATEGIES
    fastest = min(timings[s] for s in STRATEGIES)
    assert timings[op.strategy] == fastest or (op.strategy == "graph" and timings["graph"] <= 1.15 * fastest)
    assert timings[f"batched:{op.batched_strategy}"] == min(v for k, v in timings.items() if k.startswith("batched:"))
    assert_close(columns(op), c.expected, rtol=RTOL, atol=ATOL, name=f"after tune ({op.strategy})")
    assert_close(op.to_dense(), c.expected, rtol=RTOL, atol=ATOL, name=f"after tune ({op.batched_strategy})")
    only = HessianOperator(c.model, c.data, c.loss_fn).tune(k=2, repeats=1, candidates=["double_backward"])
    assert set(only) == {"double_backward", "batched:loop"}


def test_set_chunk_size_same_numbers_and_shared_with_blocks(float64):
    c = cases.build("cnn_batchnorm")
    assert len(c.data) > 1
    op = HessianOperator(c.model, c.data, c.loss_fn)
    block = op.restrict(op.names[:1])
    first = op.names[0]
    sl = op.space.slices()[first]
    expected_block = c.expected[sl, sl]
    op.matvec(torch.ones(op.size, dtype=torch.float64))  # builds the mini-batched graph
    op.set_chunk_size(10_000)
    assert op.chunk_size == block.chunk_size == 10_000 and len(op.problem.batches) == 1
    check_products(op, c.expected, "one chunk")
    assert_close(block.to_dense(), expected_block, rtol=RTOL, atol=ATOL, name="block after set_chunk_size")
    later = op.restrict(op.names[1:2])
    assert later.chunk_size == 10_000
    block.set_chunk_size(None)  # one setting for the operator and all its blocks
    assert op.chunk_size is None and later.chunk_size is None
    op.set_chunk_size(10_000)
    op.set_chunk_size(None)
    assert len(op.problem.batches) == len(c.data)
    assert all(a[0] is b[0] for a, b in zip(op.problem.batches, c.data))  # the caller's tensors, not copies
    check_products(op, c.expected, "mini-batches again")
    with pytest.raises(ValueError, match="chunk_size"):
        op.set_chunk_size(0)


def test_tune_times_one_chunk_for_graph_reuse(float64):
    c = cases.build("cnn_batchnorm")
    op = HessianOperator(c.model, c.data, c.loss_fn)
    timings = op.tune(k=2, repeats=1, candidates=["graph", "one_chunk"])
    assert set(timings) == {"graph", "graph+one_chunk", "batched:loop"}
    total = sum(int(y.shape[0]) for _, y in c.data)
    assert op.chunk_size in (None, total)
    if op.chunk_size == total:
        assert 1.05 * timings["graph+one_chunk"] < timings["graph"]
    check_products(op, c.expected, f"after tune (chunk_size={op.chunk_size})")
    single = HessianOperator(c.model, c.data[:1], c.loss_fn).tune(k=2, repeats=1, candidates=["graph", "one_chunk"])
    assert "graph+one_chunk" not in single  # one mini-batch: nothing to merge


def test_tune_times_its_candidates_in_rounds(float64, monkeypatch):
    """After one timing each (with its warm-up and memory peak), the candidates take turns: a load passing over
    the machine slows every candidate of a round alike, not one candidate's every repeat (a shared machine once
    made graph reuse look 100x slower than forward-over-reverse that way)."""
    c = cases.build("mlp_tanh_ce")
    op = HessianOperator(c.model, c.data, c.loss_fn)
    monkeypatch.setattr(hessian_module, "_HOPELESS", float("inf"))  # every candidate takes its turns
    seen_single, seen_batched = [], []
    matvec, matmat = HessianOperator._matvec, HessianOperator._matmat
    monkeypatch.setattr(HessianOperator, "_matvec", lambda self, v: seen_single.append(self.strategy) or matvec(self, v))
    monkeypatch.setattr(HessianOperator, "_matmat",
                        lambda self, V: seen_batched.append(self.batched_strategy) or matmat(self, V))
    op.tune(k=2, repeats=3, candidates=["graph", "double_backward", "forward_over_reverse", "vmap", "graph_batched"])
    singles = ["graph", "double_backward", "forward_over_reverse"]
    first_pass = [name for name in singles for _ in range(2)]  # warm-up, then one timing
    assert seen_single[:6] == first_pass and seen_single[6:12] == singles * 2  # then two rounds, in turn
    batched = ["vmap", "graph_batched"]
    assert seen_batched[:4] == [name for name in batched for _ in range(2)]
    assert seen_batched[4:10] == [*batched, "loop"] * 2  # the loop they must beat takes its turns too
    check_products(op, c.expected, "after tune")


class _FakeClock:
    """``time`` for the operator module: each product advances it by its strategy's cost, nothing else does."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


def test_tune_leaves_hopeless_candidates_out_of_its_rounds(float64, monkeypatch):
    """A candidate whose first timing (after its warm-up) is already twice the default's is left out of the
    rounds: on ResNet-20 on a CPU, vmap over ten vectors costs ~35 s a product, most of tune()'s time."""
    c = cases.build("mlp_tanh_ce")
    op = HessianOperator(c.model, c.data, c.loss_fn)
    clock = _FakeClock()
    monkeypatch.setattr(hessian_module, "time", clock)
    single_cost = {"graph": 1.0, "double_backward": 3.0, "forward_over_reverse": 1.5}
    batched_cost = {"loop": 2.0, "vmap": 5.0, "graph_batched": 3.0}  # k = 2: the loop costs two products
    seen_single, seen_batched, in_matmat = [], [], []
    matvec, matmat = HessianOperator._matvec, HessianOperator._matmat

    def fake_matvec(self, v):
        if not in_matmat:
            seen_single.append(self.strategy)
            clock.now += single_cost[self.strategy]
        return matvec(self, v)

    def fake_matmat(self, V):
        seen_batched.append(self.batched_strategy)
        clock.now += batched_cost[self.batched_strategy]
        in_matmat.append(True)
        try:
            return matmat(self, V)
        finally:
            in_matmat.pop()

    monkeypatch.setattr(HessianOperator, "_matvec", fake_matvec)
    monkeypatch.setattr(HessianOperator, "_matmat", fake_matmat)
    timings = op.tune(k=2, repeats=3, candidates=["forward_over_reverse", "double_backward", "graph", "vmap",
                                                   "graph_batched"])
    # each candidate: a warm-up and one timing; double backward's 3 > 2 × 1 (graph reuse's): no rounds for it
    assert seen_single == [name for name in ("forward_over_reverse", "double_backward", "graph") for _ in range(2)] \
        + ["forward_over_reverse", "graph"] * 2
    # vmap's 5 > 2 × 2 (the loop of k = 2 products): no rounds for it; graph_batched takes its turns
    assert seen_batched == ["vmap", "vmap", "graph_batched", "graph_batched", *["graph_batched", "loop"] * 2]
    assert timings["double_backward"] == 3.0 and timings["forward_over_reverse"] == 1.5
    assert timings["batched:vmap"] == 2.5 and timings["batched:graph_batched"] == 1.5
    assert op.strategy == "graph" and op.batched_strategy == "loop"
    check_products(op, c.expected, "after tune")


def test_tune_does_not_time_a_batched_candidate_whose_warm_up_broke_the_memory_rule(float64, monkeypatch):
    """vmap over ten vectors on ResNet-20 on a CPU: ~35 s a product, and out on memory anyway (it holds ten sets of
    activations): its warm-up decides."""
    c = cases.build("mlp_tanh_ce")
    op = HessianOperator(c.model, c.data, c.loss_fn)
    seen = []
    matmat = HessianOperator._matmat
    monkeypatch.setattr(HessianOperator, "_matmat",
                        lambda self, V: seen.append(self.batched_strategy) or matmat(self, V))
    monkeypatch.setattr(HessianOperator, "_within", lambda self, single, before, after, factor: False)
    timings = op.tune(k=2, repeats=3, candidates=["graph", "vmap", "graph_batched"])
    assert seen == ["vmap", "graph_batched"]  # one warm-up each, no timing, no rounds
    assert timings["batched:vmap"] == timings["batched:graph_batched"] == float("inf")
    assert op.batched_strategy == "loop"


def test_tune_with_custom_forward_skips_torch_func(float64):
    c = cases.build("mlp_tanh_ce")
    op = HessianOperator(c.model, c.data, c.loss_fn, forward=lambda x: c.model(x))
    timings = op.tune(k=2, repeats=1)
    assert "forward_over_reverse" not in timings and "batched:vmap" not in timings
    check_products(op, c.expected, "tuned custom forward")


def test_release_rebuilds_graph(float64):
    c = cases.build("mlp_tanh_ce")
    op = HessianOperator(c.model, c.data, c.loss_fn, strategy="graph")
    check_products(op, c.expected, "before release")
    op.release()
    check_products(op, c.expected, "after release")


# ----- the estimator API on the operator --------------------------------------------------------------------------
def test_operator_estimator_methods(float64):
    c = cases.build("cnn_batchnorm")
    op = HessianOperator(c.model, c.data, c.loss_fn)
    exact = torch.linalg.eigvalsh(c.expected)
    largest, dominant = exact[-1], exact[exact.abs().argmax()]  # power iteration finds the largest in magnitude
    assert dominant < 0, "this case has a dominant negative eigenvalue"
    lanczos = op.top_eigen(2, tol=1e-10)
    assert lanczos.method == "lanczos"
    assert_close(lanczos.eigenvalues, exact.flip(0)[:2], rtol=1e-8, atol=0, name="top_eigen/lanczos")
    assert_scalar_close(float(op.top_eigen(1, which="LM", tol=1e-10).eigenvalues[0]), float(dominant), rtol=1e-8)
    power = op.top_eigen(1, method="power", tol=1e-8, max_iter=1000)
    assert power.method == "power"
    assert_scalar_close(float(power.eigenvalues[0]), float(dominant), rtol=1e-6, name="top_eigen/power")
    assert largest > 0
    res = op.trace(per_layer=True, n_probes=30)
    assert list(res.blocks) == c.names
    assert_scalar_close(sum(b.estimate for b in res.blocks.values()), res.estimate, rtol=1e-12, name="blocks sum")
    assert op.trace(method="hutch++", n_hvp=op.size * 3).n_hvp == 2 * op.size
    assert_scalar_close(op.trace(method="hutch++", n_hvp=op.size * 3).estimate, float(torch.trace(c.expected)), rtol=1e-9)
    density = op.density(n_runs=2, n_steps=10)
    assert density.dim == op.size and density.nodes.shape == (2, 10) and density.n_hvp == 20
    assert_close(density.weights.sum(dim=1), torch.ones(2), rtol=1e-12, atol=0, name="SLQ weights")
    with pytest.raises(ValueError, match="per-layer"):
        op.trace(method="hutch++", per_layer=True)
    with pytest.raises(ValueError, match="unknown method"):
        op.trace(method="exact")
    with pytest.raises(ValueError, match="unknown method"):
        op.top_eigen(1, method="arnoldi")


def test_cuda_graphs_need_a_gpu():
    case = cases.build("mlp_tanh_ce")
    op = HessianOperator(case.model, case.data, case.loss_fn)
    assert not op.supports_cuda_graphs and not op.cuda_graphs
    with pytest.raises(ValueError, match="cuda_graphs needs a CUDA device"):
        HessianOperator(case.model, case.data, case.loss_fn, cuda_graphs=True)
    assert "graph+cuda_graphs" not in op.tune(k=2, repeats=1)
