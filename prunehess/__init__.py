"""prunehess: Hessian curvature of iteratively pruned neural networks.

The library layer: build a :class:`HessianOperator` for a model, a loss and a Hessian batch, and ask it for
``top_eigen(k)``, ``trace()`` and ``density()``; or call the estimators on any linear operator.
"""
from prunehess.estimators import (
    DensityResult,
    EigenResult,
    TraceResult,
    gaussian_density,
    hutchinson_trace,
    hutchpp_trace,
    lanczos_top_eigen,
    power_iteration,
    slq_density,
    wasserstein_distance,
)
from prunehess.operators import (
    HessianOperator,
    LambdaOperator,
    LinearOperator,
    ParameterSpace,
    TensorOperator,
    detect_masks,
    split_batch,
)

__version__ = "0.1.0"

__all__ = [
    # operators
    "HessianOperator",
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
    "gaussian_density",
    "wasserstein_distance",
    # results
    "EigenResult",
    "TraceResult",
    "DensityResult",
]
