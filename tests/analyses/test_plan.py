"""The analyses as units: found by the registry, run in dependency order on one workspace, sharing products, and
giving exactly what the library's ``curvature_summary`` gives."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from prunehess.analyses import ANALYSES, AnalysisOptions, Plan, Workspace, analysis, compute_order
from prunehess.estimators import DensityOptions, EigenOptions, TraceOptions, curvature_summary
from prunehess.operators import LambdaOperator


def _operator(n: int = 60, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    spectrum = torch.cat([torch.tensor([40.0, 25.0, -3.0], dtype=torch.float64),
                          torch.linspace(-0.5, 2.0, n - 3, dtype=torch.float64)])
    return Q @ torch.diag(spectrum) @ Q.T


def _counted(A: torch.Tensor) -> tuple[LambdaOperator, list[int]]:
    calls = [0]

    def matvec(v):
        calls[0] += 1 if v.dim() == 1 else v.shape[1]
        return A @ v

    return LambdaOperator(matvec, A.shape[0], dtype=A.dtype), calls


def test_the_seed_analyses_are_found_and_ordered():
    seed = ("top_eigen", "trace", "density")
    assert [unit.name for unit in ANALYSES if unit.name in seed] == ["top_eigen", "trace", "density"]
    assert [unit.name for unit in compute_order() if unit.name in seed] == ["density", "trace", "top_eigen"]
    assert analysis("trace").metrics == ("trace",)
    with pytest.raises(KeyError, match="no analysis 'nope'"):
        analysis("nope")


def test_the_analyses_section_holds_each_analysis_options():
    options = AnalysisOptions()
    assert isinstance(options.trace, TraceOptions) and isinstance(options.density, DensityOptions)
    assert isinstance(options.top_eigen, EigenOptions) and options.scope.params == "active"
    assert {f.name for f in dataclasses.fields(options)} == {"scope", *(unit.name for unit in ANALYSES)}


@pytest.mark.parametrize("trace", [TraceOptions(), TraceOptions(deflation=False), TraceOptions(method="hutch++"),
                                   TraceOptions(tol=None, probes=12)], ids=["deflated", "plain", "hutch++", "no-tol"])
def test_a_plan_gives_exactly_what_curvature_summary_gives(trace):
    A = _operator()
    options = dataclasses.replace(AnalysisOptions(), trace=trace, density=DensityOptions(steps=20),
                                  top_eigen=EigenOptions(k=2))
    options = dataclasses.replace(options, bottom_eigen=dataclasses.replace(options.bottom_eigen, k=0))
    op, calls = _counted(A)
    plan = Plan.of(options)
    results = plan.run(op, seed=3)
    summary = curvature_summary(A, eigen=EigenOptions(k=2), trace=trace, density=DensityOptions(steps=20), seed=3)
    assert torch.equal(results["top_eigen"].eigenvalues, summary.eigen.eigenvalues)
    assert results["trace"].estimate == summary.trace.estimate and results["trace"].method == summary.trace.method
    assert torch.equal(results["density"].nodes, summary.density.nodes)
    assert plan.n_hvp(results) == summary.n_hvp == calls[0]
    assert results["density"].deflation is None  # the basis is never kept in a result


def test_the_trace_asks_for_the_krylov_basis_only_when_it_deflates():
    deflated = Plan.of(AnalysisOptions())
    plain = Plan.of(dataclasses.replace(AnalysisOptions(), trace=TraceOptions(deflation=False)))
    assert deflated.requested == {"krylov_basis": 1} and plain.requested == {}


def test_the_workspace_hands_a_by_product_to_each_taker_and_then_forgets_it():
    work = Workspace(seed=0, requested={"basis": 2})
    work.hand_on("basis", [1, 2])
    work.hand_on("other", [3])
    assert work.take("other") is None
    assert work.take("basis") == [1, 2] and "basis" in work._handed  # one taker left
    assert work.take("basis") == [1, 2] and "basis" not in work._handed
    assert work.take("basis") is None


def test_a_density_result_frees_its_basis_before_the_top_eigenvalues_run():
    """The trace takes the density run's basis; by the time the top eigenvalues' own Lanczos run starts (its Ritz
    values did not converge in 5 steps), nothing holds the basis any more."""
    import gc
    import weakref

    A = _operator()
    seen = {}

    def matvec(v):
        basis = seen.get("basis")
        if seen.get("watch") and basis is not None:
            gc.collect()
            seen["alive_during_eigen"] = basis() is not None
        return A @ v

    op = LambdaOperator(matvec, A.shape[0], dtype=A.dtype)
    options = dataclasses.replace(AnalysisOptions(), density=DensityOptions(steps=5), top_eigen=EigenOptions(k=1, tol=1e-10))
    plan = Plan.of(options)
    work = Workspace(seed=0, requested=plan.requested)
    for unit, own in plan.steps:
        if unit.name == "top_eigen":
            seen["watch"] = True
        work.results[unit.name] = unit.compute(op, own, work)
        if unit.name == "density":
            seen["basis"] = weakref.ref(work._handed["krylov_basis"].basis)
    assert seen["alive_during_eigen"] is False
