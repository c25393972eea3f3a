"""The top eigenvalues: the density run's Ritz values when they meet the tolerance, else Lanczos (or power).

Writes ``top_eigenvalues/`` (largest first, one per line) and the ``summary.csv`` column ``top_eigenvalues``.
It runs after the trace, so that the density's Krylov basis, which deflates the trace, is freed before a
Lanczos run of its own allocates another. See :func:`~prunehess.estimators.summary.top_eigen_after_density`.
"""
from __future__ import annotations

from prunehess.analyses.base import Analysis, BlockWriter, Workspace
from prunehess.estimators import EigenOptions, EigenResult
from prunehess.estimators.summary import top_eigen_after_density
from prunehess.layout import Column

__all__ = ["ANALYSIS"]


def compute(op, options: EigenOptions, work: Workspace) -> EigenResult:
    return top_eigen_after_density(op, work.results["density"], options, seed=work.seed)


def write(out: BlockWriter, result: EigenResult) -> None:
    out.values("top_eigenvalues", result.eigenvalues)


ANALYSIS = Analysis(
    name="top_eigen",
    options=EigenOptions,
    compute=compute,
    write=write,
    row=lambda result: {"top_eigenvalues": [float(v) for v in result.eigenvalues]},
    n_hvp=lambda result: result.n_hvp,
    position=10,
    after=("density", "trace"),
    metrics=("top_eigenvalues",),
    columns=(Column("top_eigenvalues", "floats"),),
    headline=(("top", "top_eigenvalues"),),
)
