"""Hutchinson and Hutch++ trace estimates: unbiasedness within standard errors, same-probe blocks, stopping,
convergence, reproducibility, and Hutch++ beating Hutchinson at equal products on a low-rank-plus-noise matrix."""
from __future__ import annotations

import math

import pytest
import torch

import cases
from helpers import assert_close, assert_scalar_close, random_symmetric, within_stderr
from prunehess import HessianOperator
from prunehess.estimators import (DensityOptions, EigenOptions, TraceOptions, curvature_summary, hutchinson_trace,
                                  hutchpp_trace)
from prunehess.estimators.sampling import make_generator, rademacher
from prunehess.operators import TensorOperator

pytestmark = pytest.mark.usefixtures("float64")


def dense_operator(n: int = 60, seed: int = 0) -> torch.Tensor:
    lam = torch.linspace(-1.0, 3.0, n) + torch.rand(n, generator=torch.Generator().manual_seed(seed))
    return random_symmetric(n, lam, seed)[0]


def low_rank_plus_noise(n: int = 100, rank: int = 10, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(n, rank, generator=g))
    N = torch.randn(n, n, generator=g) / math.sqrt(n)
    return (U * (100 * 0.7 ** torch.arange(float(rank)))) @ U.T + 0.1 * N @ N.T


def regenerate_products(A: torch.Tensor, n_probes: int, batch_size: int, seed: int) -> torch.Tensor:
    """The per-coordinate products ``z ⊙ A z`` of the probes the estimator draws (same generator, same order)."""
    generator = make_generator(seed)
    cols, drawn = [], 0
    while drawn < n_probes:
        b = min(batch_size, n_probes - drawn)
        Z = rademacher((A.shape[0], b), generator=generator, dtype=A.dtype, device="cpu")
        cols.append(Z * (A @ Z))
        drawn += b
    return torch.cat(cols, dim=1)


# ----- Hutchinson ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(4))
def test_hutchinson_within_three_stderr(seed):
    A = dense_operator(seed=seed)
    res = hutchinson_trace(A, n_probes=200, seed=seed)
    within_stderr(res.estimate, float(torch.trace(A)), res.stderr, name=f"Hutchinson seed {seed}")
    assert res.n_hvp == 200 and res.samples.shape == (200,) and res.method == "hutchinson"


@pytest.mark.parametrize("batch_size", [1, 7])
def test_hutchinson_samples_are_the_probes_quadratic_forms(batch_size):
    A = dense_operator()
    res = hutchinson_trace(A, n_probes=30, batch_size=batch_size, seed=3)
    products = regenerate_products(A, 30, batch_size, seed=3)
    assert_close(res.samples, products.sum(dim=0), rtol=1e-12, atol=1e-12, name="zᵀAz per probe")
    assert_scalar_close(res.estimate, float(res.samples.mean()), rtol=1e-14, name="mean")
    assert_scalar_close(res.stderr, float(res.samples.std() / math.sqrt(30)), rtol=1e-12, name="stderr")


def test_hutchinson_exact_on_diagonal():
    res = hutchinson_trace(torch.diag(torch.tensor([1.0, -2.0, 3.5])), n_probes=10)
    assert res.estimate == 2.5 and res.stderr == 0.0


def test_blocks_from_the_same_probes():
    A = dense_operator(n=40, seed=1)
    blocks = {"a": slice(0, 10), "b": slice(10, 25), "c": slice(25, 40)}
    op = TensorOperator(A)
    res = hutchinson_trace(op, n_probes=300, batch_size=4, seed=2, blocks=blocks)
    assert op.n_matvecs == res.n_hvp == 300, "blocks must cost no extra products"
    products = regenerate_products(A, 300, 4, seed=2)
    for name, sl in blocks.items():
        block = res.blocks[name]
        assert block.n_hvp == 0 and block.method == "hutchinson"
        assert_close(block.samples, products[sl].sum(dim=0), rtol=1e-12, atol=1e-12, name=f"block {name} samples")
        within_stderr(block.estimate, float(torch.trace(A[sl, sl])), block.stderr, name=f"block {name}")
    assert_close(sum(b.samples for b in res.blocks.values()), res.samples, rtol=1e-12, atol=1e-12, name="Σ block samples")
    assert_scalar_close(sum(b.estimate for b in res.blocks.values()), res.estimate, rtol=1e-12, atol=1e-12, name="Σ blocks")


def test_per_layer_traces_of_a_tiny_model(float64):
    c = cases.build("cnn_batchnorm")
    op = HessianOperator(c.model, c.data, c.loss_fn, batched_strategy="graph_batched")
    res = hutchinson_trace(op, blocks=op.block_slices(), n_probes=200, batch_size=20, seed=1)
    assert op.n_matvecs == 200
    within_stderr(res.estimate, float(torch.trace(c.expected)), res.stderr, name="model trace")
    for name, sl in c.block_slices().items():
        truth = float(torch.trace(c.expected[sl, sl]))
        within_stderr(res.blocks[name].estimate, truth, res.blocks[name].stderr, name=f"layer {name}")
    assert_scalar_close(sum(b.estimate for b in res.blocks.values()), res.estimate, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("batch_size", [1, 4])
def test_pyhessian_stopping_rule_stops(batch_size):
    A = dense_operator(seed=4)
    op = TensorOperator(A)
    tol = 1e-2
    res = hutchinson_trace(op, n_probes=2000, tol=tol, batch_size=batch_size, seed=0,
                           blocks={"first": slice(0, 30), "rest": slice(30, 60)})
    s = res.samples
    assert 2 <= s.numel() < 2000, "the rule never stopped"
    assert op.n_matvecs == res.n_hvp and s.numel() <= res.n_hvp < s.numel() + batch_size
    means = torch.cumsum(s, 0) / torch.arange(1, s.numel() + 1)
    change = ((means[1:] - means[:-1]).abs() / (means[:-1].abs() + 1e-6)).tolist()
    assert change[-1] < tol and all(c >= tol for c in change[:-1])
    assert all(b.samples.numel() == s.numel() for b in res.blocks.values())
    full = hutchinson_trace(A, n_probes=s.numel(), batch_size=batch_size, seed=0)
    assert torch.equal(full.samples, s), "stopping must not change the probes"


@pytest.mark.parametrize("min_probes", [1, 2, 10])
def test_min_probes_holds_the_rule_back(min_probes):
    A = dense_operator(seed=4)
    res = hutchinson_trace(A, n_probes=50, tol=1e9, min_probes=min_probes, seed=0)  # the rule holds at every probe
    assert res.samples.numel() == res.n_hvp == max(2, min_probes)  # PyHessian's rule needs a previous mean
    assert torch.equal(hutchinson_trace(A, n_probes=res.n_hvp, seed=0).samples, res.samples)
    with pytest.raises(ValueError, match="min_probes"):
        hutchinson_trace(A, n_probes=50, tol=1e-3, min_probes=0)


def test_a_minimum_of_ten_probes_makes_the_deflated_stderr_honest():
    """PyHessian's rule stops when two running means agree, which happens early and together with a small sample
    spread: with deflation (small variance) it often stops after two or three probes, and the 2-stderr interval
    misses the trace far more often than 5% of the time. Ten probes first bring it to about nominal (a t-interval
    with nine degrees of freedom covers 92%)."""
    A, _ = outliers_over_a_bulk(400, seed=3)
    exact = float(torch.trace(A))

    def coverage(min_probes: int) -> tuple[float, float]:
        runs = [curvature_summary(A, density=DensityOptions(steps=30), trace=TraceOptions(min_probes=min_probes),
                                  seed=2 * s).trace for s in range(150)]
        inside = [abs(t.estimate - exact) <= 2 * t.stderr for t in runs]
        return sum(inside) / len(runs), sum(t.n_hvp for t in runs) / len(runs)

    bare, bare_probes = coverage(1)
    held, held_probes = coverage(10)
    assert held_probes >= 10 and bare_probes < held_probes
    assert held >= 0.86 and held - bare >= 0.05, (bare, held)  # measured: 0.81 (6 probes) → 0.89 (11)


def test_stderr_shrinks_as_probes_grow():
    A = dense_operator(seed=5)
    truth = float(torch.trace(A))
    few = [hutchinson_trace(A, n_probes=25, seed=s) for s in range(10)]
    many = [hutchinson_trace(A, n_probes=400, seed=s) for s in range(10)]
    ratio = sum(r.stderr for r in many) / sum(r.stderr for r in few)
    assert 0.15 < ratio < 0.35, f"stderr ratio {ratio:.3f}, expected about √(25/400) = 0.25"
    err_few = sum((r.estimate - truth) ** 2 for r in few) / 10
    err_many = sum((r.estimate - truth) ** 2 for r in many) / 10
    assert err_many < err_few


def test_hutchinson_seed_reproducible_bit_for_bit():
    A = dense_operator()
    a = hutchinson_trace(A, n_probes=20, seed=9, batch_size=3, blocks={"x": slice(0, 5)})
    b = hutchinson_trace(A, n_probes=20, seed=9, batch_size=3, blocks={"x": slice(0, 5)})
    assert torch.equal(a.samples, b.samples) and a.estimate == b.estimate and a.stderr == b.stderr
    assert torch.equal(a.blocks["x"].samples, b.blocks["x"].samples)
    c = hutchinson_trace(A, n_probes=20, seed=10, batch_size=3)
    assert not torch.equal(a.samples, c.samples) and a.estimate != c.estimate


def test_single_probe_has_no_stderr():
    res = hutchinson_trace(dense_operator(), n_probes=1)
    assert math.isnan(res.stderr) and res.n_hvp == 1


# ----- Hutch++ --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(3))
def test_hutchpp_within_a_few_stderr(seed):
    A = dense_operator(n=80, seed=seed)
    op = TensorOperator(A)
    res = hutchpp_trace(op, n_hvp=90, seed=seed)
    assert res.method == "hutch++" and res.n_hvp == 90 == op.n_matvecs
    assert res.samples.shape == (30,)
    within_stderr(res.estimate, float(torch.trace(A)), res.stderr, n_sigma=4, name=f"Hutch++ seed {seed}")


def test_hutchpp_budget_split():
    op = TensorOperator(dense_operator(n=80))
    res = hutchpp_trace(op, n_hvp=31)  # sketch 10, exact 10, probes 11
    assert res.n_hvp == 31 == op.n_matvecs and res.samples.shape == (11,)
    with pytest.raises(ValueError, match="at least 3"):
        hutchpp_trace(op, n_hvp=2)


def test_hutchpp_exact_when_the_sketch_spans_the_space():
    A = dense_operator(n=10)
    op = TensorOperator(A)
    res = hutchpp_trace(op, n_hvp=33)
    assert_scalar_close(res.estimate, float(torch.trace(A)), rtol=1e-12, atol=1e-12, name="full sketch")
    assert res.n_hvp == 20 == op.n_matvecs and res.stderr == 0.0


def test_hutchpp_beats_hutchinson_at_equal_products():
    """Low rank plus noise, 60 products each, 30 seeds: Hutch++'s mean squared error is far below Hutchinson's."""
    A = low_rank_plus_noise()
    truth = float(torch.trace(A))
    m, seeds = 60, range(30)
    mse_h = sum((hutchinson_trace(A, n_probes=m, seed=s).estimate - truth) ** 2 for s in seeds) / len(seeds)
    results = [hutchpp_trace(A, n_hvp=m, seed=s) for s in seeds]
    assert all(r.n_hvp == m for r in results)
    mse_pp = sum((r.estimate - truth) ** 2 for r in results) / len(seeds)
    assert mse_pp < mse_h / 100, f"Hutch++ MSE {mse_pp:.3g} vs Hutchinson MSE {mse_h:.3g}"
    z = [(r.estimate - truth) / r.stderr for r in results]
    assert sum(abs(v) <= 3 for v in z) >= 27, f"Hutch++ z-scores {z}"


def test_hutchpp_batched_equals_unbatched_and_reproducible():
    A = dense_operator(n=50)
    a = hutchpp_trace(A, n_hvp=30, seed=4)
    b = hutchpp_trace(A, n_hvp=30, seed=4, batch_size=7)
    assert_scalar_close(a.estimate, b.estimate, rtol=1e-12, name="batched")
    assert a.n_hvp == b.n_hvp == 30
    c = hutchpp_trace(A, n_hvp=30, seed=4)
    assert a.estimate == c.estimate and torch.equal(a.samples, c.samples)
    assert hutchpp_trace(A, n_hvp=30, seed=5).estimate != a.estimate


# ----- Hutchinson deflated by the density's Krylov space --------------------------------------------------------------------
def outliers_over_a_bulk(n: int = 300, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Ten outliers (60 … 2) over 290 eigenvalues in [0, 0.5]: a trained network's Hessian in miniature, whose
    Hutchinson variance the outliers dominate."""
    g = torch.Generator().manual_seed(seed)
    lam = torch.cat([torch.tensor([60.0, 40, 25, 12, 9, 7, 5, 4, 3, 2]), 0.5 * torch.rand(n - 10, generator=g)])
    return random_symmetric(n, lam, seed)


def test_deflation_by_exact_eigenvectors_counts_them_exactly_and_probes_the_rest():
    A, V = outliers_over_a_bulk()
    lam = torch.linalg.eigvalsh(A).flip(0)
    from prunehess.estimators.results import Deflation

    top = Deflation(basis=V[:, :10].T.contiguous(), trace=float(lam[:10].sum()))
    r = hutchinson_trace(A, n_probes=200, deflate=top, seed=3)
    assert r.method == "hutchinson-deflated" and r.n_hvp == 200
    within_stderr(r.estimate, float(torch.trace(A)), r.stderr, n_sigma=4, name="deflated trace")
    plain = hutchinson_trace(A, n_probes=200, seed=3)
    assert r.stderr < 0.1 * plain.stderr  # the outliers carried the variance
    batched = hutchinson_trace(A, n_probes=200, deflate=top, seed=3, batch_size=7)  # projected as a matrix
    within_stderr(batched.estimate, float(torch.trace(A)), batched.stderr, n_sigma=4, name="batched probes")
    assert batched.stderr < 0.1 * plain.stderr
    every = Deflation(basis=V.T.contiguous(), trace=float(torch.trace(A)))  # the whole space: the probes vanish
    assert_scalar_close(hutchinson_trace(A, n_probes=3, deflate=every).estimate, float(torch.trace(A)),
                        rtol=1e-10, name="fully deflated")
    with pytest.raises(ValueError, match="not both"):
        hutchinson_trace(A, n_probes=3, deflate=top, blocks={"a": slice(0, 5)})


def test_slq_deflation_is_the_first_runs_krylov_basis_and_leaves_the_density_unchanged():
    from prunehess.estimators import slq_density

    A, _ = outliers_over_a_bulk()
    plain = slq_density(A, n_runs=2, n_steps=40, seed=1)
    d = slq_density(A, n_runs=2, n_steps=40, seed=1, deflation=True)
    assert torch.equal(d.nodes, plain.nodes) and torch.equal(d.weights, plain.weights) and plain.deflation is None
    Q = d.deflation.basis
    assert Q.shape == (40, 300)
    assert_close(Q @ Q.T, torch.eye(40), rtol=0, atol=1e-10, name="orthonormal rows")
    T = Q @ A @ Q.T  # the run's tridiagonal: its eigenvalues are run 0's nodes, its trace the part counted exactly
    assert_close(torch.linalg.eigvalsh(T), torch.sort(d.nodes[0]).values, rtol=0, atol=1e-9, name="T's spectrum")
    assert_scalar_close(d.deflation.trace, float(torch.trace(T)), rtol=1e-12, name="tr(QᵀAQ) = Σ α")
    one_at_a_time = slq_density(A, n_runs=2, n_steps=40, seed=1, deflation=True, batched=False)  # run 0 last
    assert_close(one_at_a_time.nodes, d.nodes, rtol=0, atol=1e-10, name="unbatched nodes")
    assert_close(one_at_a_time.deflation.basis, Q, rtol=0, atol=1e-10, name="run 0's basis")
    small = slq_density(torch.diag(torch.arange(1.0, 9.0)), n_steps=20, deflation=True)
    assert small.spans_space() and small.deflation.basis.shape == (8, 8)  # its trace is exact; its Ritz pairs too
    theta, vectors, _ = small.deflation.ritz_pairs(2)
    assert_close(theta, torch.tensor([8.0, 7.0], dtype=torch.float64), rtol=0, atol=1e-12, name="exact pairs")
    assert_close(vectors.abs(), torch.eye(8)[:, [7, 6]], rtol=0, atol=1e-6, name="exact eigenvectors")
    with pytest.raises(ValueError, match="not be independent"):  # the start vector would be the first probe
        hutchinson_trace(A, n_probes=5, deflate=d.deflation, seed=1)


def test_summary_trace_deflated_by_the_density_run_is_unbiased_closer_and_cheaper():
    """Over 24 seeds with PyHessian's stopping rule: centred on the trace, a fraction of plain Hutchinson's error,
    with fewer probes; ``TraceOptions(deflation=False)`` is plain Hutchinson exactly."""
    A, _ = outliers_over_a_bulk(400, seed=2)
    exact = float(torch.trace(A))
    steps = DensityOptions(steps=40)
    plain, deflated = [], []
    for seed in range(24):
        plain.append(curvature_summary(A, density=steps, trace=TraceOptions(deflation=False), seed=seed).trace)
        deflated.append(curvature_summary(A, density=steps, seed=seed).trace)
    assert {t.method for t in plain} == {"hutchinson"} and {t.method for t in deflated} == {"hutchinson-deflated"}
    err = torch.tensor([t.estimate - exact for t in deflated])
    rms = lambda e: float(e.pow(2).mean().sqrt())  # noqa: E731
    assert abs(float(err.mean())) < 4 * float(err.std()) / math.sqrt(len(err))  # no bias
    assert rms(err) < 0.25 * rms(torch.tensor([t.estimate - exact for t in plain]))
    assert sum(t.n_hvp for t in deflated) < 0.75 * sum(t.n_hvp for t in plain)
    reference = hutchinson_trace(A, n_probes=100, tol=1e-3, min_probes=10, seed=5)
    assert curvature_summary(A, density=steps, trace=TraceOptions(deflation=False), seed=5).trace.estimate \
        == reference.estimate
    pyhessian = hutchinson_trace(A, n_probes=100, tol=1e-3, seed=5)  # min_probes=1: PyHessian's rule exactly
    summary = curvature_summary(A, density=steps, trace=TraceOptions(deflation=False, min_probes=1), seed=5).trace
    assert summary.estimate == pyhessian.estimate and summary.n_hvp == pyhessian.n_hvp


def test_deflated_trace_of_a_tiny_model_against_its_dense_hessian(float64):
    case = cases.build("cnn_batchnorm")
    H = HessianOperator(case.model, case.data, case.loss_fn)
    exact = float(torch.trace(case.expected))
    # 30 steps on a larger space: probes needed
    s = curvature_summary(H, eigen=EigenOptions(k=1), density=DensityOptions(steps=30),
                          trace=TraceOptions(probes=300, tol=None))
    assert H.size > 30 and s.trace.method == "hutchinson-deflated" and s.density.deflation is None  # basis freed
    within_stderr(s.trace.estimate, exact, s.trace.stderr, n_sigma=4, name="deflated trace")
