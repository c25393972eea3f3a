"""The Hessian trace: Hutchinson (PyHessian's stopping rule, deflated by the density's Krylov space) or Hutch++.

Writes ``trace/`` (the estimate) and the ``summary.csv`` columns ``trace`` and ``trace_stderr`` (0 when exact: a
block no larger than the density run, which spans it). See
:func:`~prunehess.estimators.summary.trace_after_density`.
"""
from __future__ import annotations

from dataclasses import replace

from prunehess.analyses.base import Analysis, BlockWriter, Workspace
from prunehess.analyses.density import KRYLOV_BASIS
from prunehess.estimators import TraceOptions, TraceResult
from prunehess.estimators.summary import trace_after_density, wants_deflation
from prunehess.layout import Column
from prunehess.operators.hessian import PROBES_PER_PRODUCT

__all__ = ["ANALYSIS"]


def probes_per_product(options: TraceOptions, batched_products: bool) -> int:
    """Probes applied at once: one at a time under a stopping rule (it may stop after any probe) or when the
    engine has no faster batched product; else :data:`~prunehess.operators.hessian.PROBES_PER_PRODUCT`."""
    one_by_one = options.method == "hutchinson" and options.tol is not None
    return 1 if one_by_one or not batched_products else PROBES_PER_PRODUCT


def compute(op, options: TraceOptions, work: Workspace) -> TraceResult:
    density = replace(work.results["density"], deflation=work.take(KRYLOV_BASIS))
    return trace_after_density(op, density, options, seed=work.seed,
                               batch_size=probes_per_product(options, work.batched_products))


def write(out: BlockWriter, result: TraceResult) -> None:
    out.values("trace", [result.estimate])


ANALYSIS = Analysis(
    name="trace",
    options=TraceOptions,
    compute=compute,
    write=write,
    row=lambda result: {"trace": result.estimate, "trace_stderr": result.stderr},
    n_hvp=lambda result: result.n_hvp,
    position=20,
    after=("density",),
    metrics=("trace",),
    columns=(Column("trace", "float"), Column("trace_stderr", "float")),
    requests=lambda options: frozenset({KRYLOV_BASIS}) if wants_deflation(options) else frozenset(),
    headline=(("trace", "trace"),),
)
