"""ProductEngine: the Hessian batch and its chunks, the HVP closures, the reused gradient and the CUDA-graph
lifecycle, shared by an operator and its blocks.

The capture lifecycle is checked here with a stand-in for the CUDA-graph helper (no GPU needed); the real captures
are checked against eager products in ``tests/test_cuda.py``.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import cases
from helpers import assert_close, check_products, probes
from prunehess import HessianOperator, split_batch
from prunehess.operators import ProductEngine
from prunehess.operators import engine as engine_module
from prunehess.operators.hvp import STRATEGIES

pytestmark = pytest.mark.usefixtures("float64")

RTOL, ATOL = 1e-9, 1e-12


# ----- the Hessian batch -------------------------------------------------------------------------------------
def test_split_batch():
    x, y = torch.arange(10.0).reshape(10, 1), torch.arange(10)
    parts = split_batch(x, y, 4)
    assert [p[0].shape[0] for p in parts] == [4, 4, 2]
    assert torch.equal(torch.cat([p[1] for p in parts]), y)
    assert len(split_batch(x, y, 10)) == 1
    with pytest.raises(ValueError):
        split_batch(x, y, 0)


def test_weights_and_chunks():
    """Weights ``n_b / N`` (``N`` the global batch when given); chunks merge consecutive mini-batches up to the
    chunk size and reweight them; a chunk of one mini-batch keeps the caller's tensors."""
    x, y = torch.randn(10, 3), torch.randint(0, 2, (10,))
    data = split_batch(x, y, 3)  # 3, 3, 3, 1
    engine = ProductEngine.from_batches(torch.nn.Linear(3, 2), data, F.cross_entropy, ["weight", "bias"],
                                        total_samples=20)
    assert engine.problem.weights == [0.15, 0.15, 0.15, 0.05] and engine.chunk_size is None
    assert not engine.custom_forward and engine.device == torch.device("cpu")
    engine.set_chunk_size(7)
    assert [int(b.shape[0]) for _, b in engine.problem.batches] == [6, 4]
    assert engine.problem.weights == [0.3, 0.2] and engine.chunk_size == 7
    assert torch.equal(engine.problem.batches[0][0], x[:6])
    engine.set_chunk_size(3)
    assert all(a[0] is b[0] for a, b in zip(engine.problem.batches, data))
    with pytest.raises(ValueError, match="chunk_size"):
        engine.set_chunk_size(0)


@pytest.mark.parametrize("chunk_size", [1, 5, 8, 1000])
def test_chunk_size_same_numbers(case, chunk_size):
    reference = HessianOperator(case.model, case.data, case.loss_fn).to_dense()
    for strategy in STRATEGIES:
        op = HessianOperator(case.model, case.data, case.loss_fn, chunk_size=chunk_size, strategy=strategy)
        V = probes(op.size)
        assert_close(op.matmat(V), reference @ V, rtol=1e-11, atol=1e-13, name=f"chunk_size={chunk_size}/{strategy}")


def test_set_chunk_size_same_numbers_and_shared_with_blocks():
    c = cases.build("cnn_batchnorm")
    assert len(c.data) > 1
    op = HessianOperator(c.model, c.data, c.loss_fn)
    block = op.restrict(op.names[:1])
    assert block.engine is op.engine
    first = op.names[0]
    sl = op.space.slices()[first]
    expected_block = c.expected[sl, sl]
    op.matvec(torch.ones(op.size, dtype=torch.float64))  # builds the mini-batched graph
    op.set_chunk_size(10_000)
    assert op.chunk_size == block.chunk_size == 10_000 and len(op.problem.batches) == 1
    check_products(op, c.expected, "one chunk", rtol=RTOL, atol=ATOL)
    assert_close(block.to_dense(), expected_block, rtol=RTOL, atol=ATOL, name="block after set_chunk_size")
    later = op.restrict(op.names[1:2])
    assert later.chunk_size == 10_000
    block.set_chunk_size(None)  # one setting for the operator and all its blocks
    assert op.chunk_size is None and later.chunk_size is None
    op.set_chunk_size(10_000)
    op.set_chunk_size(None)
    assert len(op.problem.batches) == len(c.data)
    assert all(a[0] is b[0] for a, b in zip(op.problem.batches, c.data))  # the caller's tensors, not copies
    check_products(op, c.expected, "mini-batches again", rtol=RTOL, atol=ATOL)
    with pytest.raises(ValueError, match="chunk_size"):
        op.set_chunk_size(0)


# ----- closures and the reused gradient ----------------------------------------------------------------------
def test_hvp_closures_are_built_once_per_strategy_and_selection():
    c = cases.build("mlp_tanh_ce")
    op = HessianOperator(c.model, c.data, c.loss_fn)
    engine = op.engine
    names = list(op.names[:2])
    assert engine.hvp("graph", names) is engine.hvp("graph", tuple(names))
    assert engine.hvp("graph", names) is not engine.hvp("double_backward", names)
    assert engine.hvp("graph", names) is not engine.hvp("graph", names[::-1])
    op.restrict(names).matvec(torch.ones(op.restrict(names).size))
    assert engine.hvp("graph", names) is engine.hvp("graph", names)  # the block used the engine's closure


def test_release_rebuilds_graph():
    c = cases.build("mlp_tanh_ce")
    op = HessianOperator(c.model, c.data, c.loss_fn, strategy="graph")
    check_products(op, c.expected, "before release", rtol=RTOL, atol=ATOL)
    op.release()
    check_products(op, c.expected, "after release", rtol=RTOL, atol=ATOL)


# ----- the CUDA-graph lifecycle, with a stand-in for the capture helper --------------------------------------
class _FakeCapture:
    """A captured product that records its calls (it "captures" at its first call, as the real one)."""

    def __init__(self, fn, owner):
        self.fn, self.owner = fn, owner
        self.graph = None
        self.failed = False
        self.calls = 0

    def __call__(self, v):
        if self.graph is None:
            self.graph = "recorded"
            self.owner.captured.append(self)
        self.calls += 1
        return self.fn(v)


class _FakeGraphs:
    """The context: no stream (the gradient stays on the current one), a list of captures, ``reset``."""

    opened = 0

    def __init__(self, device):
        _FakeGraphs.opened += 1
        self.stream = None
        self.captured = []

    def product(self, fn):
        return _FakeCapture(fn, self)

    def reset(self):
        for product in self.captured:
            product.graph = None
        self.captured.clear()


def test_capture_lifecycle(monkeypatch):
    """One context per engine, opened at the first capture (the first-order graph is rebuilt then); one capture
    per parameter selection, shared by equal blocks; ``release`` drops the gradient and the recorded graphs
    together (the captures record again at their next call); ``release_captures`` forgets the captures only."""
    monkeypatch.setattr(engine_module, "CudaGraphs", _FakeGraphs)
    _FakeGraphs.opened = 0
    c = cases.build("mlp_tanh_ce")
    op = HessianOperator(c.model, c.data, c.loss_fn)
    engine = op.engine
    op.matvec(torch.ones(op.size))
    assert engine.gradient.built and engine.captured(op.names) is None
    whole = engine.capture(op.names, op._product)
    assert _FakeGraphs.opened == 1 and not engine.gradient.built  # rebuilt on the capture stream
    V = probes(op.size, 2)
    assert_close(whole(V[:, 0]), c.expected @ V[:, 0], rtol=RTOL, atol=ATOL, name="captured product")
    assert whole.graph == "recorded" and engine.captured(op.names) is whole
    block = op.restrict(op.names[:1])
    assert engine.capture(block.names, block._product) is not whole
    assert engine.capture(op.names, op._product) is whole and _FakeGraphs.opened == 1
    engine.release()
    assert whole.graph is None and not engine.gradient.built and engine.captured(op.names) is whole
    whole(V[:, 1])
    assert whole.graph == "recorded" and whole.calls == 2
    engine.release_captures()
    assert whole.graph is None and engine.captured(op.names) is None and engine.gradient.built
    assert engine.capture(op.names, op._product) is not whole and _FakeGraphs.opened == 1
