"""Estimators: pure functions of a linear operator (or a square tensor) returning small result objects."""
from prunehess.estimators.hutchinson import TraceOptions, hutchinson_trace, hutchpp_trace
from prunehess.estimators.lanczos import EigenOptions, lanczos_top_eigen, lanczos_tridiagonal
from prunehess.estimators.power import power_iteration
from prunehess.estimators.results import DensityResult, EigenResult, TraceResult
from prunehess.estimators.broadening import gaussian_density
from prunehess.estimators.slq import DensityOptions, slq_density
from prunehess.estimators.summary import CurvatureSummary, curvature_summary
from prunehess.estimators.wasserstein import wasserstein_distance

__all__ = [
    # eigenvalues
    "lanczos_top_eigen",
    "power_iteration",
    "lanczos_tridiagonal",
    # trace
    "hutchinson_trace",
    "hutchpp_trace",
    # spectral density
    "slq_density",
    "gaussian_density",
    "wasserstein_distance",
    # all three, sharing products
    "curvature_summary",
    # options of the analyses
    "EigenOptions",
    "TraceOptions",
    "DensityOptions",
    # results
    "EigenResult",
    "TraceResult",
    "DensityResult",
    "CurvatureSummary",
]
