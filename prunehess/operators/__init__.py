"""Linear operators: the Hessian of a model's loss, and generic operators for tests and references."""
from prunehess.operators.base import LambdaOperator, LinearOperator, TensorOperator, as_operator
from prunehess.operators.engine import ProductEngine
from prunehess.operators.fisher import EmpiricalFisherOperator
from prunehess.operators.ggn import GGNOperator
from prunehess.operators.hessian import HessianOperator, split_batch
from prunehess.operators.masks import detect_masks, prune_pair_masks, zero_masks
from prunehess.operators.params import ParameterSpace
from prunehess.operators.tuning import Tuning, tune
from prunehess.operators.rule import rule_tuning
from prunehess.operators.curvature import CurvatureOperator, loss_gradient
from prunehess.operators.linearity import check_piecewise_linear

__all__ = [
    # the Hessian
    "HessianOperator",
    "split_batch",
    "ProductEngine",
    # Gauss–Newton and empirical Fisher curvature (positive semi-definite, same interface)
    "GGNOperator",
    "EmpiricalFisherOperator",
    "CurvatureOperator",
    "loss_gradient",
    "check_piecewise_linear",
    # choosing its product strategies
    "Tuning",
    "rule_tuning",
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
