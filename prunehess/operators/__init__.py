"""Linear operators: the Hessian of a model's loss, and generic operators for tests and references."""
from prunehess.operators.base import LambdaOperator, LinearOperator, TensorOperator, as_operator
from prunehess.operators.engine import ProductEngine
from prunehess.operators.hessian import HessianOperator, split_batch
from prunehess.operators.masks import detect_masks, prune_pair_masks, zero_masks
from prunehess.operators.params import ParameterSpace
from prunehess.operators.tuning import Tuning, tune

__all__ = [
    # the Hessian
    "HessianOperator",
    "split_batch",
    "ProductEngine",
    # choosing its product strategies
    "Tuning",
    "tune",
    # generic operators
    "LinearOperator",
    "LambdaOperator",
    "TensorOperator",
    "as_operator",
    # parameters and masks
    "ParameterSpace",
    "detect_masks",
    "prune_pair_masks",
    "zero_masks",
]
