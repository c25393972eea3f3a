"""Estimators: pure functions of a linear operator (or a square tensor) returning small result objects."""
from prunehess.estimators.hutchinson import TraceOptions, hutchinson_trace, hutchpp_trace
from prunehess.estimators.lanczos import (BottomEigenOptions, EigenOptions, lanczos_bottom_eigen, lanczos_top_eigen,
                                          lanczos_tridiagonal)
from prunehess.estimators.power import power_iteration
from prunehess.estimators.results import DensityResult, EigenResult, TraceResult
from prunehess.estimators.broadening import gaussian_density
from prunehess.estimators.slq import DensityOptions, slq_density
from prunehess.estimators.summary import CurvatureSummary, curvature_summary
from prunehess.estimators.wasserstein import wasserstein_distance
from prunehess.estimators.diagonal import (ChannelTraces, DiagonalResult, exact_diagonal, hutchinson_diagonal,
                                          output_channels)
from prunehess.estimators.saliency import LossChange, magnitude_saliency, obd_saliency, quadratic_loss_change

__all__ = [
    # eigenvalues
    "lanczos_top_eigen",
    "lanczos_bottom_eigen",
    "power_iteration",
    "lanczos_tridiagonal",
    # trace
    "hutchinson_trace",
    "hutchpp_trace",
    # spectral density
    "slq_density",
    "gaussian_density",
    "wasserstein_distance",
    # the diagonal and per-output-channel traces
    "hutchinson_diagonal",
    "exact_diagonal",
    "output_channels",
    # saliencies and the quadratic model of a pruning step
    "magnitude_saliency",
    "obd_saliency",
    "quadratic_loss_change",
    # all three, sharing products
    "curvature_summary",
    # options of the analyses
    "EigenOptions",
    "BottomEigenOptions",
    "TraceOptions",
    "DensityOptions",
    # results
    "EigenResult",
    "TraceResult",
    "DensityResult",
    "CurvatureSummary",
    "DiagonalResult",
    "ChannelTraces",
    "LossChange",
]
