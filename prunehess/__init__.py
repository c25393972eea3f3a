"""prunehess: Hessian curvature of iteratively pruned neural networks.

The library layer: build a :class:`HessianOperator` for a model, a loss and a Hessian batch (on the surviving
weights of a pruned model), and give it to the estimators, pure functions of any linear operator:
``lanczos_top_eigen(H, k=3)``, ``hutchinson_trace(H)``, ``slq_density(H)``, or ``curvature_summary(H)`` for all
three sharing products.
"""
from prunehess._version import __version__
from prunehess.estimators import (
    DensityOptions,
    DensityResult,
    EigenOptions,
    EigenResult,
    TraceOptions,
    TraceResult,
    curvature_summary,
    gaussian_density,
    hutchinson_trace,
    hutchpp_trace,
    lanczos_top_eigen,
    power_iteration,
    slq_density,
    wasserstein_distance,
)
from prunehess.operators import (
    EmpiricalFisherOperator,
    GGNOperator,
    HessianOperator,
    LambdaOperator,
    LinearOperator,
    ParameterSpace,
    TensorOperator,
    detect_masks,
    split_batch,
)


__all__ = [
    # operators
    "HessianOperator",
    "GGNOperator",
    "EmpiricalFisherOperator",
    "split_batch",
    "detect_masks",
    "ParameterSpace",
    "LinearOperator",
    "LambdaOperator",
    "TensorOperator",
    # estimators
    "lanczos_top_eigen",
    "power_iteration",
    "hutchinson_trace",
    "hutchpp_trace",
    "slq_density",
    "curvature_summary",
    "gaussian_density",
    "wasserstein_distance",
    # options (as extract's command line names them) and results
    "EigenOptions",
    "TraceOptions",
    "DensityOptions",
    "EigenResult",
    "TraceResult",
    "DensityResult",
]
