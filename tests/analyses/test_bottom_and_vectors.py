"""Negative curvature and eigenvectors as analyses, against the dense Hessian of tiny float64 models: the smallest
eigenvalues to 1e-4 of λmax, eigenvectors with ‖Hv − λv‖ ≤ 1e-4·λmax and exactly 0 on pruned weights, the SLQ
mass below zero, and |λmin/λmax| — whether the density's run resolves them (many steps) or not (few steps)."""
from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
import torch

import cases
from prunehess import HessianOperator
from prunehess.analyses import AnalysisOptions, Plan
from prunehess.analyses.top_eigen import eigenvectors_npz
from prunehess.estimators import BottomEigenOptions, DensityOptions, EigenOptions
from prunehess.operators import TensorOperator

pytestmark = pytest.mark.usefixtures("float64")


def _options(steps: int, k: int = 2, vectors: bool = True) -> AnalysisOptions:
    return dataclasses.replace(AnalysisOptions(), density=DensityOptions(steps=steps),
                               top_eigen=EigenOptions(k=k, tol=1e-8, vectors=vectors),
                               bottom_eigen=BottomEigenOptions(k=k, tol=1e-8))


@pytest.mark.parametrize("name", list(cases.MODEL_CASES))
@pytest.mark.parametrize("steps", [100, 12], ids=["run-spans", "short-run"])
def test_bottom_eigenvalues_and_top_eigenvectors_match_the_dense_hessian(name, steps):
    case = cases.build(name)
    H = HessianOperator(case.model, case.data, case.loss_fn)
    dense = case.expected
    exact = torch.linalg.eigvalsh(dense)
    lam_max = float(exact.abs().max())
    results = Plan.of(_options(steps)).run(H, seed=0)

    bottom = results["bottom_eigen"]
    assert torch.allclose(bottom.eigen.eigenvalues, exact[:2], atol=1e-4 * lam_max, rtol=0), (bottom, exact[:2])
    assert bottom.abs_min_over_max == pytest.approx(abs(float(exact[0]) / float(exact[-1])), rel=1e-4, abs=1e-6)
    assert 0.0 <= bottom.negative_mass <= 1.0

    top = results["top_eigen"]
    assert torch.allclose(top.eigenvalues, exact.flip(0)[:2], atol=1e-4 * lam_max, rtol=0)
    flat = H.space.to_flat({n: v for n, v in top.vectors.items()}).T  # (n, k)
    residual = (dense @ flat - flat * top.eigenvalues).norm(dim=0)
    assert float(residual.max()) <= 1e-4 * lam_max
    assert torch.allclose(flat.T @ flat, torch.eye(2), atol=1e-6)
    for pname, mask in case.masks.items():  # pruned weights are not coordinates: exactly zero
        assert torch.all(top.vectors[pname][:, ~mask] == 0)


def test_the_npz_holds_the_eigenvalues_and_one_float32_array_per_parameter():
    case = cases.build("masked_zeros")
    H = HessianOperator(case.model, case.data, case.loss_fn)
    top = Plan.of(_options(100)).run(H, seed=0)["top_eigen"]
    saved = np.load(io.BytesIO(eigenvectors_npz(top)))
    assert sorted(saved.files) == sorted(["eigenvalues", *case.names])
    assert np.array_equal(saved["eigenvalues"], top.eigenvalues.numpy())
    for name, shape in case.shapes.items():
        assert saved[name].shape == (2, *shape) and saved[name].dtype == np.float32
        if name in case.masks:
            assert np.all(saved[name][:, ~case.masks[name].numpy()] == 0)


def test_negative_mass_is_the_fraction_of_negative_eigenvalues_on_a_diagonal():
    """Rademacher start vectors weigh every eigenvector of a diagonal operator 1/n: the mass below zero is exact."""
    values = torch.tensor([-3.0, -1.0, -0.5, 0.2, 1.0, 2.0, 4.0, 9.0])
    results = Plan.of(_options(8, vectors=False)).run(TensorOperator(torch.diag(values)), seed=1)
    assert results["bottom_eigen"].negative_mass == pytest.approx(3 / 8, abs=1e-12)
    assert results["bottom_eigen"].abs_min_over_max == pytest.approx(3 / 9, abs=1e-12)
    assert results["bottom_eigen"].eigen.eigenvalues.tolist() == pytest.approx([-3.0, -1.0], abs=1e-12)


def test_a_bulk_node_a_rounding_below_zero_is_not_negative_mass():
    """A trained network's bulk sits at zero; a node at −1e-7·λmax is rounding, not negative curvature (the
    tolerance is the smallest eigenvalues', relative to the spectrum's scale)."""
    values = torch.tensor([-2.0, -9e-7, -1e-7, 0.0, 1e-7, 3.0, 5.0, 10.0])
    options = dataclasses.replace(_options(8, vectors=False), bottom_eigen=BottomEigenOptions(k=2))  # tol 1e-3
    results = Plan.of(options).run(TensorOperator(torch.diag(values)), seed=1)
    assert results["bottom_eigen"].negative_mass == pytest.approx(1 / 8, abs=1e-9)


def test_eigenvectors_from_the_density_run_cost_no_products():
    """A spectrum whose outliers the density's run converges: the top pairs come from its basis (0 products)."""
    g = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(120, 120, generator=g))
    A = Q @ torch.diag(torch.cat([torch.tensor([50.0, 30.0]), torch.linspace(-0.2, 1.0, 118)])) @ Q.T
    results = Plan.of(_options(60)).run(TensorOperator(A), seed=0)
    top = results["top_eigen"]
    assert top.eigen.n_hvp == 0 and top.eigen.eigenvectors.shape == (120, 2)
    residual = (A @ top.eigen.eigenvectors - top.eigen.eigenvectors * top.eigenvalues).norm(dim=0)
    assert float(residual.max()) <= 1e-6 * 50
