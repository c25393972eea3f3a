"""Linear operators: the Hessian of a model's loss, and generic operators for tests and references."""
from prunehess.operators.base import LambdaOperator, LinearOperator, TensorOperator, as_operator
from prunehess.operators.hessian import HessianOperator, split_batch
from prunehess.operators.masks import detect_masks, prune_pair_masks, zero_masks
from prunehess.operators.params import ParameterSpace

__all__ = [
    "HessianOperator",
    "split_batch",
    "LinearOperator",
    "LambdaOperator",
    "TensorOperator",
    "as_operator",
    "ParameterSpace",
    "detect_masks",
    "prune_pair_masks",
    "zero_masks",
]
