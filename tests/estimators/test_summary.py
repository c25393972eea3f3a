"""curvature_summary: top eigenvalues from the density's Lanczos run, exact spectra of small operators, and the
fall-backs (unconverged Ritz values, runs that end on an invariant subspace)."""
from __future__ import annotations

import pytest
import torch

import cases
from helpers import assert_close, assert_scalar_close, random_symmetric, within_stderr
from prunehess import HessianOperator
from prunehess.errors import ConfigError
from prunehess.estimators import (DensityOptions, EigenOptions, TraceOptions, curvature_summary, lanczos_top_eigen,
                                  slq_density)
from prunehess.estimators.summary import exact_trace_from_density, top_eigen_from_density
from prunehess.operators.base import LambdaOperator

pytestmark = pytest.mark.usefixtures("float64")


def gapped(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Three separated outliers above a continuum in [-0.2, 0.8], like a trained network's Hessian."""
    g = torch.Generator().manual_seed(seed)
    lam = torch.cat([torch.tensor([5.0, 3.5, 2.0]), torch.rand(n - 3, generator=g) - 0.2])
    return random_symmetric(n, lam, seed)[0], torch.sort(lam, descending=True).values


class Counting(LambdaOperator):
    """A dense matrix as an operator that counts its products."""

    def __init__(self, A: torch.Tensor):
        super().__init__(lambda v: A @ v, A.shape[0], dtype=A.dtype, matmat=lambda V: A @ V)


def test_top_eigenvalues_come_from_the_density_run_at_no_extra_cost():
    A, lam = gapped(400)
    op = Counting(A)
    s = curvature_summary(op, eigen=EigenOptions(k=3, tol=1e-6), density=DensityOptions(steps=60),
                          trace=TraceOptions(probes=30, tol=None))
    assert s.eigen.n_hvp == 0 and s.eigen.converged and s.eigen.method == "lanczos"
    assert_close(s.eigen.eigenvalues, lam[:3], rtol=1e-8, atol=0, name="top-3 from the SLQ run")
    assert bool((s.eigen.residuals <= 1e-6 * s.eigen.eigenvalues.abs()).all())
    assert s.density.n_hvp == 60 and s.trace.n_hvp == 30
    assert op.n_matvecs == s.n_hvp == 90
    # the same values lanczos_top_eigen reports at that tolerance
    alone = lanczos_top_eigen(A, k=3, tol=1e-6)
    assert_close(s.eigen.eigenvalues, alone.eigenvalues, rtol=1e-8, atol=0, name="vs lanczos_top_eigen")


def test_unconverged_ritz_values_fall_back_to_lanczos():
    A, lam = gapped(400)
    op = Counting(A)
    short = slq_density(A, n_steps=4)
    assert top_eigen_from_density(short, 3, tol=1e-8) is None  # four steps do not converge three values to 1e-8
    s = curvature_summary(op, eigen=EigenOptions(k=3, tol=1e-8), density=DensityOptions(steps=4),
                          trace=TraceOptions(probes=5, tol=None))
    assert s.eigen.n_hvp > 0 and s.eigen.converged
    assert_close(s.eigen.eigenvalues, lam[:3], rtol=1e-10, atol=0, name="fallback Lanczos")
    assert op.n_matvecs == s.n_hvp == 4 + 5 + s.eigen.n_hvp


def test_small_operator_spectrum_and_trace_are_exact():
    A, lam = gapped(40)
    op = Counting(A)
    s = curvature_summary(op, eigen=EigenOptions(k=5), density=DensityOptions(steps=100))
    assert s.density.spans_space() and int(s.density.lengths[0]) == 40
    assert s.trace.method == "exact" and s.trace.stderr == 0.0 and s.trace.n_hvp == 0
    assert_scalar_close(s.trace.estimate, float(torch.trace(A)), rtol=1e-12, atol=1e-12, name="exact trace")
    assert_close(s.eigen.eigenvalues, lam[:5], rtol=1e-12, atol=1e-12, name="exact top-5")
    assert bool((s.eigen.residuals == 0).all())
    assert op.n_matvecs == s.n_hvp == 40  # the density's run only


def test_a_small_operator_with_repeated_eigenvalues_is_spanned_by_restarts():
    """Multiplicities end a Krylov space early; on an operator no larger than the run, the run goes on in the
    complement, so the nodes are the whole spectrum (copies included) and the trace is exact."""
    lam = torch.tensor([3.0, 3.0, 1.0, 1.0, 1.0, 0.0, 0.0, -1.0])
    A = random_symmetric(8, lam, seed=4)[0]
    d = slq_density(A, n_steps=20)
    assert d.spans_space() and int(d.lengths[0]) == 8
    assert_close(torch.sort(d.nodes[0]).values, torch.sort(lam).values, rtol=0, atol=1e-12, name="nodes")
    s = curvature_summary(A, eigen=EigenOptions(k=3), density=DensityOptions(steps=20))
    assert s.trace.method == "exact" and s.n_hvp == 8
    assert_scalar_close(s.trace.estimate, 8.0, rtol=1e-12, atol=1e-12, name="trace")
    assert_close(s.eigen.eigenvalues, torch.tensor([3.0, 3.0, 1.0]), rtol=0, atol=1e-12, name="top-3 with copies")
    # the restarted parts carry no weight: the quadrature is the start vector's, as without restarts
    assert_scalar_close(float(d.weights[0].sum()), 1.0, rtol=0, atol=1e-12, name="weights")


def test_a_run_ending_on_an_invariant_subspace_is_not_taken_for_the_spectrum():
    """2·I larger than the run: it stops after one step; its one node is an eigenvalue, but the trace is not
    that node, and the top-k must come from Lanczos (which restarts)."""
    n = 300
    A = 2.0 * torch.eye(n, dtype=torch.float64)
    d = slq_density(A, n_steps=100)
    assert int(d.lengths[0]) == 1 and not d.spans_space()
    assert exact_trace_from_density(d) is None and top_eigen_from_density(d, 2, tol=1e-3) is None
    s = curvature_summary(A, eigen=EigenOptions(k=2), density=DensityOptions(steps=100),
                          trace=TraceOptions(deflation=False))
    assert s.trace.method == "hutchinson"
    assert_scalar_close(s.trace.estimate, 2.0 * n, rtol=1e-12, atol=0, name="Rademacher probes on 2·I")
    assert_close(s.eigen.eigenvalues, torch.tensor([2.0, 2.0]), rtol=1e-10, atol=0, name="repeated top")
    # the run's one basis vector counted, the rest probed
    deflated = curvature_summary(A, eigen=EigenOptions(k=2), density=DensityOptions(steps=100))
    assert deflated.trace.method == "hutchinson-deflated"
    assert abs(deflated.trace.estimate - 2.0 * n) <= 5 * deflated.trace.stderr


def test_power_method_and_hutchpp_and_blocks_are_passed_through():
    A, lam = gapped(120)
    s = curvature_summary(A, eigen=EigenOptions(k=2, method="power", tol=1e-6, max_iter=500),
                          trace=TraceOptions(method="hutch++", probes=30))
    assert s.eigen.method == "power" and s.trace.method == "hutch++" and s.trace.n_hvp == 30
    assert_close(s.eigen.eigenvalues, lam[:2], rtol=1e-4, atol=0, name="power")
    blocks = {"first": slice(0, 50), "rest": slice(50, 120)}
    s = curvature_summary(A, trace_blocks=blocks, trace=TraceOptions(probes=40, tol=None),
                          density=DensityOptions(steps=150))
    assert s.trace.method == "hutchinson" and set(s.trace.blocks) == {"first", "rest"}  # blocks need probes
    with pytest.raises(ConfigError, match="lanczos"):  # an unknown method is refused before any product
        curvature_summary(A, eigen=EigenOptions(method="arnoldi"))
    with pytest.raises(ConfigError, match="hutch"):
        curvature_summary(A, trace=TraceOptions(method="exact"), density=DensityOptions(steps=5))


@pytest.mark.parametrize("name", ["mlp_tanh_ce", "cnn_batchnorm", "masked_prune"])
def test_hessian_operator_summary_against_the_dense_hessian(name):
    case = cases.build(name)
    H = HessianOperator(case.model, case.data, case.loss_fn)
    exact = torch.linalg.eigvalsh(case.expected).flip(0)
    s = curvature_summary(H, eigen=EigenOptions(k=2), density=DensityOptions(steps=100))
    # every case has fewer than 100 surviving coordinates (and eigenvalues of multiplicity > 1: restarts span them)
    assert H.size <= 100 and s.trace.method == "exact"
    assert_scalar_close(s.trace.estimate, float(torch.trace(case.expected)), rtol=1e-9, atol=1e-10, name="trace")
    assert_close(s.eigen.eigenvalues, exact[:2], rtol=1e-9, atol=1e-10, name="top-2")
    big_op = HessianOperator(case.model, case.data, case.loss_fn)
    big = curvature_summary(big_op, density=DensityOptions(steps=5), trace=TraceOptions(probes=400, tol=None),
                            trace_blocks=big_op.block_slices())
    assert big.trace.method == "hutchinson" and set(big.trace.blocks) == set(H.names)
    within_stderr(big.trace.estimate, float(torch.trace(case.expected)), big.trace.stderr, n_sigma=4, name="trace")


def test_the_density_runs_basis_is_freed_before_a_fallback_lanczos_run(monkeypatch):
    """The deflated trace holds the density run's basis; it must be gone before a second basis is allocated."""
    import weakref

    import prunehess.estimators.summary as summary

    A, _ = gapped(300)
    refs, alive_during_fallback = [], []
    density = summary.slq_density

    def watched_density(*args, **kwargs):
        d = density(*args, **kwargs)
        refs.append(weakref.ref(d.deflation.basis))
        return d

    def watched_lanczos(*args, **kwargs):
        alive_during_fallback.append(refs[0]() is not None)
        return lanczos_top_eigen(*args, **kwargs)

    monkeypatch.setattr(summary, "slq_density", watched_density)
    monkeypatch.setattr(summary, "lanczos_top_eigen", watched_lanczos)
    s = curvature_summary(A, eigen=EigenOptions(k=3, tol=1e-10), density=DensityOptions(steps=15),
                          trace=TraceOptions(probes=5, tol=None))
    assert s.trace.method == "hutchinson-deflated" and s.eigen.n_hvp > 0
    assert alive_during_fallback == [False] and s.density.deflation is None
