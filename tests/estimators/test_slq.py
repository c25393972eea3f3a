"""Stochastic Lanczos quadrature: Gauss-quadrature moments against vᵀAᵖv, convergence to tr(Aᵖ)/n, edge cases,
PyHessian's broadening, and DensityResult."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import cases
from helpers import assert_close, assert_scalar_close, random_symmetric, within_stderr
from prunehess import HessianOperator
from prunehess.estimators import DensityResult, gaussian_density, slq_density
from prunehess.estimators.sampling import make_generator, rademacher

pytestmark = pytest.mark.usefixtures("float64")


def operator(n: int = 60, seed: int = 0) -> torch.Tensor:
    """Spectrum in [−0.5, 1.2] (‖A‖ ≈ 1, so powers stay O(1)) with a few outliers."""
    g = torch.Generator().manual_seed(seed)
    lam = torch.cat([torch.tensor([1.2, 1.1, -0.5]), torch.rand(n - 3, generator=g) * 0.6 - 0.1])
    return random_symmetric(n, lam, seed)[0]


def probe_moments(A: torch.Tensor, n_runs: int, seed: int, max_power: int) -> torch.Tensor:
    """``vᵀAᵖv / ‖v‖²`` for the Rademacher start vectors SLQ draws (regenerated from the seed), p = 0..max_power."""
    V = rademacher((A.shape[0], n_runs), generator=make_generator(seed), dtype=A.dtype, device="cpu")
    out, W = [], V.clone()
    for _ in range(max_power + 1):
        out.append((V * W).sum(dim=0) / (V * V).sum(dim=0))
        W = A @ W
    return torch.stack(out, dim=1)  # (runs, powers)


def quadrature_moments(d: DensityResult, max_power: int) -> torch.Tensor:
    return torch.stack([(d.weights * d.nodes**p).sum(dim=1) for p in range(max_power + 1)], dim=1)


# ----- moments ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("m", [3, 10])
def test_quadrature_moments_are_exact_below_2m(m):
    """Gauss quadrature from m Lanczos steps integrates λᵖ exactly for p < 2m: Σ w θᵖ = vᵀAᵖv/‖v‖² per run."""
    A = operator()
    d = slq_density(A, n_runs=5, n_steps=m, seed=3)
    assert d.nodes.shape == d.weights.shape == (5, m) and d.dim == 60 and d.n_hvp == 5 * m
    got, want = quadrature_moments(d, 2 * m), probe_moments(A, 5, seed=3, max_power=2 * m)
    assert_close(got[:, : 2 * m], want[:, : 2 * m], rtol=1e-9, atol=1e-12, name=f"moments p < 2m (m={m})")
    if m == 3:  # the check has teeth: p = 2m is not integrated exactly
        gap = (got[:, 2 * m] - want[:, 2 * m]).abs()
        assert bool((gap > 1e-6).all()), f"p = 2m should not be exact for a generic spectrum: {gap.tolist()}"


def test_weights_sum_to_one_and_nodes_lie_in_the_spectrum():
    A = operator(seed=1)
    values = torch.linalg.eigvalsh(A)
    d = slq_density(A, n_runs=4, n_steps=12, seed=0)
    assert_close(d.weights.sum(dim=1), torch.ones(4), rtol=0, atol=1e-13, name="weights per run")
    assert bool((d.weights >= 0).all())
    assert bool((d.nodes >= values[0] - 1e-10).all() and (d.nodes <= values[-1] + 1e-10).all())
    flat_nodes, flat_weights = d.flat()
    assert flat_nodes.shape == (48,) and abs(float(flat_weights.sum()) - 1.0) < 1e-13


@pytest.mark.parametrize("p", [1, 2, 3, 4])
def test_averaged_moments_converge_to_normalised_traces(p):
    A = operator(seed=2)
    truth = float(torch.trace(torch.linalg.matrix_power(A, p))) / A.shape[0]
    d = slq_density(A, n_runs=40, n_steps=8, seed=1)
    per_run = (d.weights * d.nodes**p).sum(dim=1)
    stderr = float(per_run.std() / math.sqrt(per_run.numel()))
    assert_scalar_close(d.moment(p), float(per_run.mean()), rtol=1e-13, name="DensityResult.moment")
    within_stderr(d.moment(p), truth, stderr, name=f"moment {p}")
    assert d.moment(0) == pytest.approx(1.0, abs=1e-13)


def test_moments_of_a_tiny_model_hessian(float64):
    c = cases.build("mlp_tanh_ce")
    op = HessianOperator(c.model, c.data, c.loss_fn, batched_strategy="graph_batched")
    d = slq_density(op, n_runs=3, n_steps=6, seed=2)
    got = quadrature_moments(d, 11)
    want = probe_moments(c.expected, 3, seed=2, max_power=11)
    assert_close(got, want, rtol=1e-8, atol=1e-12, name="Hessian quadrature moments")


# ----- small operators and early breakdown --------------------------------------------------------------------------
def test_operator_smaller_than_n_steps_recovers_the_spectrum():
    lam = torch.tensor([2.0, -1.0, 0.5, 3.0, 1.5])
    A, Q = random_symmetric(5, lam, seed=4)
    d = slq_density(A, n_runs=3, n_steps=50, seed=5)
    assert d.nodes.shape == (3, 5) and d.n_hvp <= 15
    V = rademacher((5, 3), generator=make_generator(5), dtype=torch.float64, device="cpu")
    expected_w = (Q.T @ V) ** 2 / 5  # (vᵀu_i)² / ‖v‖²
    order = torch.argsort(lam)
    for r in range(3):
        keep = d.weights[r] > 1e-12
        assert_close(d.nodes[r][keep], lam[order][expected_w[order, r] > 1e-12], rtol=0, atol=1e-12, name=f"nodes run {r}")
        assert_close(d.weights[r][keep], expected_w[order, r][expected_w[order, r] > 1e-12], rtol=1e-10, atol=1e-13,
                     name=f"weights run {r}")


def test_diagonal_operator_gives_uniform_weights():
    d = slq_density(torch.diag(torch.tensor([1.0, 2.0, 3.0, 4.0])), n_runs=2, n_steps=10)
    assert_close(d.nodes, torch.tensor([[1.0, 2.0, 3.0, 4.0]] * 2), rtol=0, atol=1e-12, name="nodes")
    assert_close(d.weights, torch.full((2, 4), 0.25), rtol=0, atol=1e-12, name="weights = 1/n")


def test_early_breakdown_pads_with_zero_weights():
    """Three distinct eigenvalues: each run stops after 3 steps; its quadrature is exact for every power."""
    lam = torch.tensor([2.0] * 10 + [0.5] * 10 + [-1.0] * 10)
    A, _ = random_symmetric(30, lam, seed=6)
    d = slq_density(A, n_runs=4, n_steps=8, seed=7)
    assert d.nodes.shape == (4, 8) and d.n_hvp == 12
    assert bool((d.weights[:, 3:] == 0).all())
    assert_close(d.nodes[:, :3], torch.tensor([[-1.0, 0.5, 2.0]] * 4), rtol=0, atol=1e-12, name="exact nodes")
    assert_close(quadrature_moments(d, 20), probe_moments(A, 4, seed=7, max_power=20), rtol=1e-9, atol=1e-12,
                 name="all moments exact after breakdown")


def test_batched_and_unbatched_runs_agree():
    A = operator(seed=8)
    a = slq_density(A, n_runs=4, n_steps=10, seed=2, batched=True)
    b = slq_density(A, n_runs=4, n_steps=10, seed=2, batched=False)
    assert a.n_hvp == b.n_hvp == 40
    assert_close(a.nodes, b.nodes, rtol=1e-12, atol=1e-13, name="nodes")
    assert_close(a.weights, b.weights, rtol=1e-10, atol=1e-13, name="weights")


def test_seed_reproducible_and_argument_checks():
    A = operator()
    a, b = slq_density(A, n_runs=2, n_steps=5, seed=1), slq_density(A, n_runs=2, n_steps=5, seed=1)
    assert torch.equal(a.nodes, b.nodes) and torch.equal(a.weights, b.weights)
    assert not torch.equal(a.nodes, slq_density(A, n_runs=2, n_steps=5, seed=2).nodes)
    for kw in ({"n_runs": 0}, {"n_steps": 0}):
        with pytest.raises(ValueError, match="positive"):
            slq_density(A, **kw)


# ----- broadening ------------------------------------------------------------------------------------------------
def pyhessian_density_generate(eigenvalues, weights, num_bins=10000, sigma_squared=1e-5, overhead=0.01):
    """PyHessian's ``density_plot.density_generate``, transcribed (numpy, Riemann-sum normalisation)."""
    eigenvalues, weights = np.array(eigenvalues), np.array(weights)
    lambda_max = np.mean(np.max(eigenvalues, axis=1), axis=0) + overhead
    lambda_min = np.mean(np.min(eigenvalues, axis=1), axis=0) - overhead
    grids = np.linspace(lambda_min, lambda_max, num=num_bins)
    sigma = sigma_squared * max(1, (lambda_max - lambda_min))
    density_output = np.zeros((eigenvalues.shape[0], num_bins))
    for i in range(eigenvalues.shape[0]):
        gauss = np.exp(-((grids[:, None] - eigenvalues[i][None, :]) ** 2) / (2.0 * sigma)) / np.sqrt(2 * np.pi * sigma)
        density_output[i] = (gauss * weights[i][None, :]).sum(axis=1)
    density = np.mean(density_output, axis=0)
    normalization = np.sum(density) * (grids[1] - grids[0])
    return density / normalization, grids, sigma


HAND_NODES = torch.tensor([[-0.2, 0.1, 0.4, 2.5], [-0.1, 0.0, 0.3, 2.7]], dtype=torch.float64)
HAND_WEIGHTS = torch.tensor([[0.1, 0.5, 0.3, 0.1], [0.2, 0.2, 0.4, 0.2]], dtype=torch.float64)


def test_gaussian_density_grid_sigma_and_shape_follow_pyhessian():
    """Grid bounds (run-averaged extremes ± 0.01), σ² = 1e-5·max(1, range), and the broadened shape."""
    grid, density = gaussian_density(HAND_NODES, HAND_WEIGHTS, num_points=2000)
    ref, ref_grid, sigma = pyhessian_density_generate(HAND_NODES.numpy(), HAND_WEIGHTS.numpy(), num_bins=2000)
    lo, hi = (-0.2 + -0.1) / 2 - 0.01, (2.5 + 2.7) / 2 + 0.01
    assert grid.dtype == density.dtype == torch.float64 and grid.shape == (2000,)
    assert_close(grid[[0, -1]], torch.tensor([lo, hi]), rtol=0, atol=1e-15, name="grid bounds")
    assert_close(grid, torch.from_numpy(ref_grid), rtol=0, atol=1e-14, name="grid")
    assert sigma == pytest.approx(1e-5 * (hi - lo), rel=1e-14)
    ours = density / density.sum()
    theirs = torch.from_numpy(ref) / float(np.sum(ref))
    assert_close(ours, theirs, rtol=1e-9, atol=1e-15, name="broadened shape (up to normalisation)")
    assert_scalar_close(float(torch.trapezoid(density, grid)), 1.0, rtol=1e-12, name="integrates to 1")


@pytest.mark.parametrize("runs", ["one_run", "two_runs"])
def test_gaussian_density_normalisation_is_pyhessians(runs):
    """PyHessian divides by Σ density · Δx (a Riemann sum), not the trapezoid rule: the values must match its,
    not only its shape. With one run the grid ends 0.01 (≈ 3σ) past the extreme nodes, where the density is not
    negligible, so the two normalisations differ by ~1e-4."""
    if runs == "one_run":
        nodes = torch.tensor([[0.0, 0.3, 1.0]], dtype=torch.float64)
        weights = torch.tensor([[0.2, 0.5, 0.3]], dtype=torch.float64)
    else:
        nodes, weights = HAND_NODES, HAND_WEIGHTS
    grid, density = gaussian_density(nodes, weights, num_points=2000)
    ref, _, _ = pyhessian_density_generate(nodes.numpy(), weights.numpy(), num_bins=2000)
    assert_close(density, torch.from_numpy(ref), rtol=1e-9, atol=1e-12, name="PyHessian's density values")


def test_gaussian_density_single_run_explicit_sigma_and_grid():
    nodes, weights = torch.tensor([0.0, 1.0]), torch.tensor([0.25, 0.75])
    grid = torch.linspace(-3.0, 4.0, 7001)
    g, density = gaussian_density(nodes, weights, sigma_squared=0.04, grid=grid)
    assert torch.equal(g, grid)
    expected = sum(w * torch.exp(-((grid - x) ** 2) / 0.08) / math.sqrt(2 * math.pi * 0.04) for x, w in zip(nodes, weights))
    assert_close(density, expected, rtol=1e-6, atol=1e-12, name="two Gaussians")  # area 1 up to the tails
    mean = float(torch.trapezoid(grid * density, grid))
    assert mean == pytest.approx(0.75, abs=1e-9)
    assert_scalar_close(float(torch.trapezoid(density, grid)), 1.0, rtol=1e-12)


def test_density_result_moment_flat_and_broadened():
    d = DensityResult(nodes=HAND_NODES, weights=HAND_WEIGHTS, n_hvp=8, dim=100)
    for p in range(5):
        expected = 0.5 * sum(float((HAND_WEIGHTS[r] * HAND_NODES[r] ** p).sum()) for r in range(2))
        assert_scalar_close(d.moment(p), expected, rtol=1e-14, atol=1e-15, name=f"moment {p}")
    nodes, weights = d.flat()
    assert torch.equal(nodes, HAND_NODES.reshape(-1)) and torch.equal(weights, HAND_WEIGHTS.reshape(-1) / 2)
    g1, d1 = d.broadened(num_points=500)
    g2, d2 = gaussian_density(HAND_NODES, HAND_WEIGHTS, num_points=500)
    assert torch.equal(g1, g2) and torch.equal(d1, d2)
