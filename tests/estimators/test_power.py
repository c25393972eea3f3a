"""Power iteration with deflation: PyHessian's stopping rule, deflation, reproducibility."""
from __future__ import annotations

import pytest
import torch

from helpers import assert_close, overlaps, random_symmetric
from prunehess.estimators import power_iteration
from prunehess.estimators.sampling import gaussian, make_generator
from prunehess.operators import LambdaOperator

pytestmark = pytest.mark.usefixtures("float64")


class Recording(LambdaOperator):
    """A dense matrix that records every vector it is applied to, and the products."""

    def __init__(self, A: torch.Tensor):
        super().__init__(lambda v: A @ v, A.shape[0], dtype=A.dtype)
        self.A = A
        self.inputs: list[torch.Tensor] = []

    def _matvec(self, v):
        self.inputs.append(v.clone())
        return self.A @ v


def spectrum_operator(seed: int = 0) -> torch.Tensor:
    lam = torch.cat([torch.tensor([4.0, 3.0, 2.0]), torch.rand(37, generator=torch.Generator().manual_seed(seed))])
    return random_symmetric(40, lam, seed)[0]


def pyhessian_power(A: torch.Tensor, k: int, max_iter: int, tol: float, seed: int):
    """PyHessian's ``hessian.eigenvalues`` loop on a dense matrix, with prunehess's start vectors."""
    generator = make_generator(seed)
    eigenvalues, eigenvectors, computed = [], [], 0
    for _ in range(k):
        v = gaussian((A.shape[0],), generator=generator, dtype=A.dtype, device="cpu")
        v = v / v.norm()
        eigenvalue = None
        for _ in range(max_iter):
            for u in eigenvectors:
                v = v - (v @ u) * u
            v = v / v.norm()
            Hv = A @ v
            computed += 1
            tmp = float(Hv @ v)
            v = Hv / Hv.norm()
            if eigenvalue is None:
                eigenvalue = tmp
            elif abs(eigenvalue - tmp) / (abs(eigenvalue) + 1e-6) < tol:
                break
            else:
                eigenvalue = tmp
        eigenvalues.append(eigenvalue)
        eigenvectors.append(v)
    return eigenvalues, computed


@pytest.mark.parametrize("tol", [1e-2, 1e-3, 1e-6])
def test_stopping_rule_is_relative_change_below_tol(tol):
    """Stop at the first product whose Rayleigh quotient moved by less than ``tol`` relative, not before."""
    op = Recording(spectrum_operator())
    res = power_iteration(op, k=1, tol=tol, max_iter=1000)
    q = [float(v @ (op.A @ v)) for v in op.inputs]
    assert res.n_hvp == res.n_iter == len(q) == op.n_matvecs
    change = [abs(q[i] - q[i - 1]) / (abs(q[i - 1]) + 1e-6) for i in range(1, len(q))]
    assert change[-1] < tol, "stopped before the rule was met"
    assert all(c >= tol for c in change[:-1]), "went on after the rule was met"
    assert float(res.eigenvalues[0]) == q[-1]  # the Rayleigh quotient of the last vector
    assert res.converged
    for v in op.inputs:
        assert abs(float(v.norm()) - 1.0) < 1e-12


def test_matches_pyhessian_loop():
    """Same start vector, same rule: the same number of products, the eigenvalue within ``tol`` of PyHessian's
    (PyHessian reports the previous Rayleigh quotient when it stops, prunehess the latest)."""
    A = spectrum_operator(1)
    for tol in (1e-3, 1e-5):
        ours = power_iteration(A, k=1, tol=tol, seed=3)
        theirs, computed = pyhessian_power(A, 1, 100, tol, seed=3)
        assert ours.n_hvp == computed
        assert abs(float(ours.eigenvalues[0]) - theirs[0]) <= tol * abs(theirs[0])
    ours = power_iteration(A, k=3, tol=1e-6, seed=3)
    theirs, computed = pyhessian_power(A, 3, 100, 1e-6, seed=3)
    assert_close(ours.eigenvalues, torch.tensor(theirs), rtol=1e-5, atol=0, name="k=3 vs PyHessian")
    assert abs(ours.n_hvp - computed) <= 3


def test_max_iter_caps_products():
    res = power_iteration(spectrum_operator(), k=2, tol=0.0, max_iter=7)
    assert res.n_hvp == 14 and res.n_iter == 14 and not res.converged


def test_deflation_finds_top_k():
    A = spectrum_operator(2)
    values, vectors = torch.linalg.eigh(A)
    values, vectors = values.flip(0), vectors.flip(1)
    op = Recording(A)
    res = power_iteration(op, k=3, tol=1e-13, max_iter=3000, return_eigenvectors=True)
    assert res.converged
    assert_close(res.eigenvalues, values[:3], rtol=1e-9, atol=0, name="deflated eigenvalues")
    assert bool((overlaps(res.eigenvectors, vectors[:, :3]) > 0.999).all())
    assert_close(res.eigenvectors.T @ res.eigenvectors, torch.eye(3), rtol=0, atol=1e-6, name="orthonormal")
    first = res.eigenvectors[:, 0]
    n_first = power_iteration(A, k=1, tol=1e-13, max_iter=3000).n_hvp  # same seed: the first pair's products
    later = op.inputs[n_first:]
    assert len(later) == res.n_hvp - n_first > 10
    assert max(abs(float(v @ first)) for v in later) < 1e-12, "vectors not kept orthogonal to found eigenvectors"
    true = (A @ res.eigenvectors - res.eigenvectors * res.eigenvalues).norm(dim=0)
    assert_close(res.residuals, true, rtol=1e-8, atol=1e-14, name="reported residuals")


def test_dominant_negative_eigenvalue():
    """Power iteration converges to the largest in magnitude (PyHessian's semantics)."""
    A = torch.diag(torch.tensor([-10.0, 5.0, 1.0, 0.5]))
    res = power_iteration(A, k=2, tol=1e-12, max_iter=1000)
    assert_close(res.eigenvalues, torch.tensor([-10.0, 5.0]), rtol=1e-10, atol=0, name="LM order")


def test_seed_reproducible_bit_for_bit():
    A = spectrum_operator(3)
    a = power_iteration(A, k=2, seed=5, return_eigenvectors=True)
    b = power_iteration(A, k=2, seed=5, return_eigenvectors=True)
    assert torch.equal(a.eigenvalues, b.eigenvalues) and torch.equal(a.eigenvectors, b.eigenvectors)
    assert torch.equal(a.residuals, b.residuals) and a.n_hvp == b.n_hvp
    c = power_iteration(A, k=2, seed=6, return_eigenvectors=True)
    assert not torch.equal(a.eigenvalues, c.eigenvalues)
    assert power_iteration(A, k=1).eigenvectors is None
    assert power_iteration(A, k=1).method == "power"


def test_argument_checks():
    with pytest.raises(ValueError, match="k must be"):
        power_iteration(torch.eye(3), k=4)
    with pytest.raises(ValueError, match="k must be"):
        power_iteration(torch.eye(3), k=0)
