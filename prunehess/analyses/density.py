"""The spectral density: stochastic Lanczos quadrature (PyHessian's ``density``), and the ESD figure.

Writes ``density_eigen/`` (the Ritz nodes, one column per run), ``density_weight/`` (their quadrature weights,
each column summing to 1) and ``esd_plot/`` (PyHessian's Gaussian-broadened density as a PDF). It runs first:
its Lanczos run already holds the top eigenvalues (:mod:`~prunehess.analyses.top_eigen`) and its Krylov basis
deflates the trace (:mod:`~prunehess.analyses.trace`), which asks for it as ``"krylov_basis"``.
"""
from __future__ import annotations

from dataclasses import replace

from prunehess.analyses.base import Analysis, BlockWriter, Workspace
from prunehess.estimators import DensityOptions, DensityResult, slq_density
from prunehess.plots.esd import esd_pdf

__all__ = ["ANALYSIS", "KRYLOV_BASIS"]

KRYLOV_BASIS = "krylov_basis"
"""The by-product handed on: the first run's Krylov basis and ``tr(T)``, a
:class:`~prunehess.estimators.results.Deflation` (``None`` when the run spans the space)."""


def compute(op, options: DensityOptions, work: Workspace) -> DensityResult:
    """``options.runs`` SLQ runs of ``options.steps`` steps from the run's seed; the first run's basis is handed on
    when a later analysis asked for it, and not kept in the result."""
    found = slq_density(op, n_runs=options.runs, n_steps=options.steps, seed=work.seed,
                        deflation=KRYLOV_BASIS in work.requested)
    work.hand_on(KRYLOV_BASIS, found.deflation)
    return replace(found, deflation=None)


def write(out: BlockWriter, result: DensityResult) -> None:
    out.table("density_eigen", result.nodes.numpy().T)  # one column per run, one node per line (the seed's)
    out.table("density_weight", result.weights.numpy().T)
    grid, density = result.broadened()
    out.raw("esd_plot", esd_pdf(grid.numpy(), density.numpy()), ext="pdf")


ANALYSIS = Analysis(
    name="density",
    options=DensityOptions,
    compute=compute,
    write=write,
    row=lambda result: {},
    n_hvp=lambda result: result.n_hvp,
    position=30,
    metrics=("density_eigen", "density_weight", "esd_plot"),
)
