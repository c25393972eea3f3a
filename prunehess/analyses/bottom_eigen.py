"""Negative curvature: the smallest eigenvalues, the SLQ mass below zero, and ``|λmin / λmax|``.

Does pruning create saddles? The smallest eigenvalues come from the density's Lanczos run when its smallest Ritz
values meet the tolerance relative to the spectrum's scale (a run of 100 steps usually resolves both ends), else
from a Lanczos run of their own (:func:`~prunehess.estimators.lanczos_bottom_eigen`). Writes
``bottom_eigenvalues/bottom_eigenvaluesIII_EE.txt`` (the ``--bottom-n`` smallest, ascending, one per line) and the
``summary.csv`` columns ``bottom_eigenvalues``, ``negative_mass`` (the SLQ weight on nodes below ``−tol·max|θ|``,
averaged over runs: an estimate of the fraction of eigenvalues clearly below zero; the bulk of a trained network's
spectrum sits at zero, where a node's sign is rounding) and ``abs_min_over_max`` (``|λmin / λmax|``, the ratio
Li et al.'s loss-landscape maps show; Li et al., NeurIPS 2018). ``--bottom-n 0`` turns it off.
"""
from __future__ import annotations

from dataclasses import dataclass

from prunehess.analyses.base import Analysis, BlockWriter, Workspace
from prunehess.estimators import BottomEigenOptions, EigenResult
from prunehess.estimators.summary import bottom_eigen_after_density
from prunehess.layout import Column

__all__ = ["ANALYSIS", "NegativeCurvature"]


@dataclass(frozen=True)
class NegativeCurvature:
    """The smallest eigenvalues, the density's mass below zero and ``|λmin / λmax|``."""

    eigen: EigenResult
    negative_mass: float
    abs_min_over_max: float


def compute(op, options: BottomEigenOptions, work: Workspace) -> NegativeCurvature:
    density = work.results["density"]
    eigen = bottom_eigen_after_density(op, density, options, seed=work.seed)
    scale = float(density.nodes.abs().max())
    # below zero by more than the tolerance: the bulk's node near zero (its sign is rounding) is not negative mass
    mass = float((density.weights * (density.nodes < -options.tol * scale)).sum(dim=1).mean())
    top = work.results.get("top_eigen")
    lam_max = float(top.eigenvalues[0]) if top is not None else float(density.nodes.max())
    ratio = abs(float(eigen.eigenvalues[0]) / lam_max) if lam_max != 0 else float("inf")
    return NegativeCurvature(eigen, mass, ratio)


def write(out: BlockWriter, result: NegativeCurvature) -> None:
    out.values("bottom_eigenvalues", result.eigen.eigenvalues)


ANALYSIS = Analysis(
    name="bottom_eigen",
    options=BottomEigenOptions,
    compute=compute,
    write=write,
    row=lambda result: {"bottom_eigenvalues": [float(v) for v in result.eigen.eigenvalues],
                        "negative_mass": result.negative_mass, "abs_min_over_max": result.abs_min_over_max},
    n_hvp=lambda result: result.eigen.n_hvp,
    position=25,
    after=("density", "top_eigen"),
    metrics=("bottom_eigenvalues",),
    columns=(Column("bottom_eigenvalues", "floats"), Column("negative_mass", "float"),
             Column("abs_min_over_max", "float")),
    enabled=lambda options: options.k > 0,
    headline=(("min", "bottom_eigenvalues"),),
)
