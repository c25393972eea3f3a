"""GGNOperator against dense Gauss–Newton matrices built from full Jacobians (float64, tight tolerances).

The truth is :func:`prunehess.reference.dense_ggn` over every coordinate (``masks=None``): ``Σ_b (n_b/N) J_bᵀ H_ℓ,b
J_b`` from ``jacrev`` of each mini-batch's outputs and the dense Hessian of its loss in its outputs, no closed form,
restricted by index selection to the selected parameters and surviving coordinates. One closed form: for a linear
model with squared error the GGN is the Hessian, ``(2/N) X̃ᵀX̃``.
"""
from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cases
from helpers import assert_close, assert_scalar_close, check_products, coordinate_index, probes, restrict
from prunehess import split_batch
from prunehess.estimators import (DensityOptions, EigenOptions, curvature_summary, hutchinson_trace, lanczos_top_eigen,
                                  power_iteration, slq_density)
from prunehess.errors import NonDeterministicError
from prunehess.operators import GGNOperator, HessianOperator, Tuning
from prunehess.operators.curvature import loss_gradient
from prunehess.reference import dense_ggn

pytestmark = pytest.mark.usefixtures("float64")

RTOL, ATOL = 1e-10, 1e-12


@functools.lru_cache(maxsize=None)
def _full_ggn(name: str) -> torch.Tensor:
    """The dense GGN of case ``name`` over every coordinate (built once per case)."""
    c = cases.build(name)
    return dense_ggn(c.model, c.data, c.loss_fn, masks=None)


def expected(c: cases.Case, names=None, masks=None) -> torch.Tensor:
    return restrict(_full_ggn(c.name), coordinate_index(c.shapes, names or c.names, masks))


# ----- products --------------------------------------------------------------------------------------------------
def test_default_products_equal_dense(case):
    """The whole matrix (masks="auto": surviving coordinates of the pruned cases), single products."""
    G = GGNOperator(case.model, case.data, case.loss_fn)
    assert G.shape == (case.expected.shape[0],) * 2 and G.dtype == torch.float64
    assert (G.strategy, G.batched_strategy, G.supports_cuda_graphs, G.cuda_graphs) == ("reuse", "loop", False, False)
    dense = G.to_dense()
    assert G.n_matvecs == G.size
    assert_close(dense, expected(case, masks=case.masks), rtol=RTOL, atol=ATOL, name=f"{case.name} GGN")
    assert_close(dense, dense.T, rtol=RTOL, atol=ATOL, name="symmetry")


@pytest.mark.parametrize("strategy,batched", [("recompute", "loop"), ("reuse", "vmap"), ("recompute", "vmap")])
def test_strategies_equal_dense(case, strategy, batched):
    G = GGNOperator(case.model, case.data, case.loss_fn, strategy=strategy, batched_strategy=batched)
    before = G.n_matvecs
    check_products(G, expected(case, masks=case.masks), f"{case.name}/{strategy}/{batched}", rtol=RTOL, atol=ATOL)
    assert G.n_matvecs - before == 4


def test_positive_semi_definite(case):
    """Convex losses of the outputs (cross-entropy, squared error): no eigenvalue below −1e-10·λmax."""
    values = torch.linalg.eigvalsh(GGNOperator(case.model, case.data, case.loss_fn, batched_strategy="vmap").to_dense())
    assert values[-1] > 0
    assert values[0] >= -1e-10 * values[-1], f"smallest eigenvalue {values[0]:.3e} (largest {values[-1]:.3e})"


def test_differs_from_the_hessian_where_the_network_is_nonlinear(case):
    """Not vacuous: every tiny case has a residual term ``Σ r ∇²z`` (hidden layers)."""
    G = GGNOperator(case.model, case.data, case.loss_fn, batched_strategy="vmap").to_dense()
    assert float((G - case.expected).abs().max()) > 1e-3


@pytest.mark.parametrize("loss", ["F.mse_loss", "nn.MSELoss", "written out"])
def test_linear_least_squares_is_the_hessian(float64, loss):
    """Linear model, squared error: J does not depend on θ, so G = H = (2/N) X̃ᵀX̃ exactly (closed-form MSE
    curvature and the generic one)."""
    model, x, y, H = cases.least_squares(n=12, d=4)
    loss_fn = {"F.mse_loss": F.mse_loss, "nn.MSELoss": nn.MSELoss(), "written out": cases.mse}[loss]
    G = GGNOperator(model, split_batch(x, y, 5), loss_fn, batched_strategy="vmap")
    assert_close(G.to_dense(), H, rtol=1e-12, atol=1e-13, name=f"least squares ({loss})")
    assert_close(HessianOperator(model, split_batch(x, y, 5), loss_fn).to_dense(), G.to_dense(), rtol=1e-12,
                 atol=1e-13, name="GGN = Hessian")


def test_softmax_regression_is_the_hessian(float64):
    """Softmax regression: the logits are linear in θ, so the GGN is the Hessian for cross-entropy too."""
    g = torch.Generator().manual_seed(2)
    model = nn.Linear(3, 4).double()
    x, y = torch.randn(11, 3, generator=g, dtype=torch.float64), torch.randint(0, 4, (11,), generator=g)
    data = split_batch(x, y, 4)
    assert_close(GGNOperator(model, data).to_dense(), HessianOperator(model, data).to_dense(), rtol=1e-11,
                 atol=1e-13, name="softmax regression")


def test_closed_forms_equal_the_generic_curvature(float64):
    """Cross-entropy as ``F.cross_entropy``, ``nn.CrossEntropyLoss()`` (closed form) and a wrapper (autodiff on the
    outputs) give one operator; targets at ``ignore_index`` take the generic path and still match the dense GGN."""
    c = cases.build("mlp_tanh_ce")
    V = probes(43, 4)
    closed = GGNOperator(c.model, c.data, F.cross_entropy, batched_strategy="vmap").matmat(V)
    module = GGNOperator(c.model, c.data, nn.CrossEntropyLoss(), batched_strategy="vmap").matmat(V)
    generic = GGNOperator(c.model, c.data, lambda z, y: F.cross_entropy(z, y), batched_strategy="vmap").matmat(V)
    assert_close(module, closed, rtol=1e-13, atol=1e-15, name="nn.CrossEntropyLoss")
    assert_close(generic, closed, rtol=1e-11, atol=1e-13, name="generic cross-entropy")
    y = c.y.clone()
    y[[1, 6]] = -100
    data = split_batch(c.x, y, 4)
    dense = dense_ggn(c.model, data, F.cross_entropy)
    assert_close(GGNOperator(c.model, data).to_dense(), dense, rtol=RTOL, atol=ATOL, name="ignored targets")


# ----- which parameters, blocks, masks ----------------------------------------------------------------------------
def test_blocks_are_slices_of_dense(case):
    """``layers()`` and a multi-tensor ``restrict`` in shuffled order are index-selected blocks of the dense GGN;
    blocks share the parent's kept graphs."""
    G = GGNOperator(case.model, case.data, case.loss_fn)
    G.matvec(probes(G.size)[:, 0])  # the parent's graphs exist before the blocks share them
    assert G.block_slices() == case.block_slices()
    for name, block in G.layers().items():
        assert block.names == (name,) and block.strategy == "reuse"
        check_products(block, expected(case, [name], case.masks), f"{case.name} block {name}", k=2, rtol=RTOL,
                       atol=ATOL)
    names = [case.names[-1], case.names[0]]
    assert_close(G.restrict(names).to_dense(), expected(case, names, case.masks), rtol=RTOL, atol=ATOL,
                 name=f"{case.name} restrict {names}")
    assert_close(G.restrict(names[0]).to_dense(), expected(case, names[:1], case.masks), rtol=RTOL, atol=ATOL,
                 name="restrict(str)")
    with pytest.raises(KeyError):
        G.restrict(["nope"])


def test_params_and_masks(float64):
    """``params=`` (names in any order, a callable), ``masks=None`` and an explicit mask mapping."""
    c = cases.build("masked_prune")
    names = ["2.bias", "0.weight_orig"]
    G = GGNOperator(c.model, c.data, c.loss_fn, params=names, batched_strategy="vmap")
    assert G.names == tuple(names)
    assert_close(G.to_dense(), expected(c, names, c.masks), rtol=RTOL, atol=ATOL, name="params list")
    biases = GGNOperator(c.model, c.data, c.loss_fn, params=lambda n, p: n.endswith("bias"))
    assert_close(biases.to_dense(), expected(c, ["0.bias", "2.bias"]), rtol=RTOL, atol=ATOL, name="callable")
    every = GGNOperator(c.model, c.data, c.loss_fn, masks=None)
    assert every.size == every.space.total
    check_products(every, _full_ggn(c.name), "masks=None", rtol=RTOL, atol=ATOL)
    keep = {"2.weight_orig": torch.rand(3, 5, generator=torch.Generator().manual_seed(3)) > 0.5}
    mine = GGNOperator(c.model, c.data, c.loss_fn, masks=keep)
    check_products(mine, expected(c, masks=keep), "explicit mask", rtol=RTOL, atol=ATOL)
    with pytest.raises(ValueError, match="masks"):
        GGNOperator(c.model, c.data, c.loss_fn, masks="zeros")
    with pytest.raises(ValueError, match="no parameters"):
        GGNOperator(c.model, c.data, c.loss_fn, params=lambda n, p: False)
    with pytest.raises(ValueError, match="empty"):
        GGNOperator(c.model, [], c.loss_fn)


# ----- the batch, processes, configuration -----------------------------------------------------------------------
def test_minibatches_chunks_and_weights(case):
    """Mini-batches weighted ``n_b / N`` (uneven last one) or merged into chunks give the whole batch's GGN;
    ``total_samples`` rescales, ``reduce`` is applied to every product (single, batched, block)."""
    one = GGNOperator(case.model, [(case.x, case.y)], case.loss_fn).to_dense()
    assert_close(one, expected(case, masks=case.masks), rtol=RTOL, atol=ATOL, name="one batch")
    V = probes(one.shape[0], 3)
    for size in (1, 3):
        G = GGNOperator(case.model, split_batch(case.x, case.y, size), case.loss_fn, batched_strategy="vmap")
        assert_close(G.matmat(V), one @ V, rtol=1e-11, atol=1e-13, name=f"mini-batches of {size}")
        G.set_chunk_size(5)
        sizes = [int(y.shape[0]) for _, y in G.problem.batches]
        assert G.chunk_size == 5 and max(sizes) <= 5 and sum(sizes) == case.x.shape[0]
        assert_close(G.matmat(V), one @ V, rtol=1e-11, atol=1e-13, name=f"chunks of 5 from {size}")
    n = case.x.shape[0]
    scaled = GGNOperator(case.model, case.data, case.loss_fn, total_samples=2 * n, reduce=lambda t: 3 * t,
                         batched_strategy="vmap")
    assert scaled.reduces
    assert_close(scaled.matmat(V), 1.5 * one @ V, rtol=1e-11, atol=1e-13, name="total_samples and reduce")
    assert_close(scaled.matvec(V[:, 0]), 1.5 * one @ V[:, 0], rtol=1e-11, atol=1e-13, name="reduce matvec")
    sl = case.block_slices()[case.names[-1]]
    assert_close(scaled.restrict(case.names[-1]).to_dense(), 1.5 * one[sl, sl], rtol=1e-11, atol=1e-13, name="block")


def test_strategy_settings_and_tuning(float64):
    c = cases.build("cnn_batchnorm")
    G = GGNOperator(c.model, c.data, c.loss_fn, chunk_size=4)
    assert G.chunk_size == 4
    with pytest.raises(ValueError, match="unknown strategy 'graph'; choose one of reuse, recompute"):
        G.set_strategy("graph")
    with pytest.raises(ValueError, match="unknown batched strategy 'graph_batched'"):
        G.set_strategy("reuse", "graph_batched")
    with pytest.raises(ValueError, match="CUDA graphs"):
        G.set_strategy("reuse", cuda_graphs=True)
    G.apply_tuning(Tuning("graph", "graph_batched", cuda_graphs=True, chunk_size=None))
    assert (G.strategy, G.batched_strategy, G.cuda_graphs, G.chunk_size) == ("reuse", "vmap", False, None)
    G.matvec(probes(G.size)[:, 0])
    assert G._shared._graphs  # the kept forward graphs ...
    G.apply_tuning(Tuning("double_backward", "loop", chunk_size=8))
    assert (G.strategy, G.batched_strategy, G.chunk_size) == ("recompute", "loop", 8)
    assert not G._shared._graphs  # ... are freed by "recompute"
    check_products(G, expected(c), "after tuning", rtol=RTOL, atol=ATOL)
    G.set_strategy("reuse")
    G.matvec(probes(G.size)[:, 0])
    G.release()
    assert not G._shared._graphs and not G._shared._curvatures
    with pytest.raises(ValueError, match="custom forward"):
        GGNOperator(c.model, c.data, c.loss_fn, forward=lambda x: c.model(x))
    assert GGNOperator(c.model, c.data, c.loss_fn, forward=c.model).size == G.size  # the model itself is fine


def test_like_a_hessian_operator(float64):
    """``GGNOperator.like(H)``: the same coordinates, batch, weights, chunking and reduce as a Hessian operator."""
    c = cases.build("masked_zeros")
    H = HessianOperator(c.model, c.data, c.loss_fn, total_samples=20, reduce=lambda t: 2 * t, chunk_size=8)
    G = GGNOperator.like(H.restrict(["2.weight", "0.bias"]))
    assert G.names == ("2.weight", "0.bias") and G.chunk_size == 8 and G.reduces
    assert_close(G.to_dense(), expected(c, ["2.weight", "0.bias"], c.masks), rtol=RTOL, atol=ATOL, name="like")


def test_eval_mode_flags_restored_and_deterministic(float64):
    """Products use BatchNorm's running statistics whatever the model's mode, and restore every flag."""
    c = cases.build("cnn_batchnorm")
    c.model.train()
    c.model[2].eval()
    flags = [m.training for m in c.model.modules()]
    stats = {k: v.clone() for k, v in c.model.named_buffers()}
    for strategy in GGNOperator.STRATEGIES:
        G = GGNOperator(c.model, c.data, c.loss_fn, strategy=strategy, batched_strategy="vmap")
        check_products(G, expected(c), f"train-mode model/{strategy}", k=2, rtol=RTOL, atol=ATOL)
        assert G.check_deterministic(seed=2) <= 1e-14
        assert [m.training for m in c.model.modules()] == flags
    assert all(torch.equal(v, stats[k]) for k, v in c.model.named_buffers())
    noisy = nn.Sequential(nn.Linear(4, 6), _AlwaysDropout(), nn.Linear(6, 3)).double()
    data = [(torch.randn(8, 4, dtype=torch.float64), torch.randint(0, 3, (8,)))]
    with pytest.raises(NonDeterministicError, match="GGN products"):
        GGNOperator(noisy, data).check_deterministic()


class _AlwaysDropout(nn.Module):
    def forward(self, x):
        return F.dropout(x, 0.5, training=True)


def test_exact_diagonal_of_the_ggn(case):
    """``G.diagonal()`` from per-sample vector-Jacobian products is the dense GGN's diagonal (every case, with
    tiny memory groups: one sample at a time)."""
    G = GGNOperator(case.model, case.data, case.loss_fn)
    truth = torch.diagonal(expected(case, masks=case.masks))
    assert_close(G.diagonal(), truth, rtol=RTOL, atol=ATOL, name=f"{case.name} diagonal")
    assert_close(G.diagonal(max_bytes=1), truth, rtol=RTOL, atol=ATOL, name="one sample per group")
    assert_close(G.restrict(case.names[0]).diagonal(), truth[case.block_slices()[case.names[0]]], rtol=RTOL,
                 atol=ATOL, name="block diagonal")


def test_loss_gradient(case):
    """``∇L`` on the operator's coordinates (mini-batch weights, masks) equals autograd on the whole batch."""
    G = GGNOperator(case.model, case.data, case.loss_fn, total_samples=case.x.shape[0], reduce=lambda t: t)
    params = [p for _, p in case.model.named_parameters()]
    case.model.eval()
    full = torch.autograd.grad(case.loss_fn(case.model(case.x), case.y), params)
    flat = torch.cat([g.reshape(-1) for g in full])[coordinate_index(case.shapes, case.names, case.masks)]
    assert_close(G.gradient(), flat, rtol=1e-11, atol=1e-14, name="gradient")
    assert_close(loss_gradient(HessianOperator(case.model, case.data, case.loss_fn)), flat, rtol=1e-11, atol=1e-14,
                 name="gradient of the Hessian operator")


def test_estimators_run_unchanged(float64):
    """Lanczos, power iteration, per-block Hutchinson traces, SLQ and the summary take the GGN as they take H."""
    c = cases.build("cnn_batchnorm")
    G = GGNOperator(c.model, c.data, c.loss_fn, batched_strategy="vmap")
    truth = expected(c)
    exact = torch.linalg.eigvalsh(truth).flip(0)
    top = lanczos_top_eigen(G, k=3, tol=1e-10)
    assert_close(top.eigenvalues, exact[:3], rtol=1e-8, atol=0, name="top eigenvalues")
    assert_scalar_close(float(power_iteration(G, k=1, tol=1e-8, max_iter=500).eigenvalues[0]), float(exact[0]),
                        rtol=1e-5, name="power iteration")
    trace = hutchinson_trace(G, n_probes=200, batch_size=20, blocks=G.block_slices(), seed=1)
    assert abs(trace.estimate - float(torch.trace(truth))) <= 4 * trace.stderr
    density = slq_density(G, n_runs=2, n_steps=12)
    assert float(density.nodes.min()) >= -1e-10 * float(exact[0])
    names = ["0.weight", "4.bias"]
    block, sub = G.restrict(names), expected(c, names)
    summary = curvature_summary(block, eigen=EigenOptions(k=2), density=DensityOptions(steps=block.size))
    assert_close(summary.eigen.eigenvalues, torch.linalg.eigvalsh(sub).flip(0)[:2], rtol=1e-8, atol=0, name="summary")
    assert summary.trace.method == "exact"
    assert_scalar_close(summary.trace.estimate, float(torch.trace(sub)), rtol=1e-9, name="exact trace")


def test_untraceable_models_fall_back_to_plain_jvps(float64, monkeypatch):
    """Under ``"reuse"`` the JVP is traced once per chunk (``torch.func.linearize``); where tracing fails the
    operator warns once and runs ``torch.func.jvp`` instead, with the same numbers."""
    from prunehess.operators import ggn as ggn_module

    c = cases.build("masked_prune")
    traced = GGNOperator(c.model, c.data, c.loss_fn)
    V = probes(traced.size, 3)
    want = traced.matmat(V)
    assert all(fn is not None for fn in traced._shared._jvps.values()) and len(traced._shared._jvps) == 3

    def refuse(*args, **kwargs):
        raise RuntimeError("cannot trace this\nsecond line")

    monkeypatch.setattr(ggn_module, "linearize", refuse)
    plain = GGNOperator(c.model, c.data, c.loss_fn)
    with pytest.warns(UserWarning, match="cannot be traced, products run it untraced: cannot trace this$") as seen:
        got = plain.matmat(V)
    assert len([w for w in seen if "cannot be traced" in str(w.message)]) == 1
    assert_close(got, want, rtol=1e-12, atol=1e-14, name="untraced")
    assert_close(plain.restrict("2.bias").matvec(V[-3:, 0]), expected(c, ["2.bias"]) @ V[-3:, 0],
                 rtol=RTOL, atol=ATOL, name="untraced block")
