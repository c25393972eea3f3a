"""Iterative-pruning (lottery-ticket) runs: ``prunehess train``.

Produces the zips that :func:`prunehess.pipeline.extract` analyses, in the seed trainer's naming: magnitude
pruning with rewinding (``lt``, late rewinding with ``rewind_epoch``) or re-initialisation (``reinit``), the
random-pruning control (``random``), the fork's Hessian-aware rates (``hessian``), and several of them side by
side from one initialisation (:func:`run_variants`).
"""
from prunehess.training.absa import AdaptiveBatchSize, BatchSizeSchedule, ConstantBatchSize, make_batch_schedule
from prunehess.training.components import RunComponents, default_components
from prunehess.training.config import PRUNE_TYPES, TrainConfig
from prunehess.training.folder import LOG_COLUMNS, RunFolder, read_log
from prunehess.training.hessian_aware import LayerTraces, hessian_prune, hessian_rates
from prunehess.training.loop import EvalResult, evaluate, make_optimizer, train_epoch
from prunehess.training.pruning import (
    apply_masks_,
    count_parameters,
    full_masks,
    magnitude_prune,
    mask_gradients_,
    prunable_weights,
    prune_count,
    prune_layers,
    random_prune,
    remaining_percent,
)
from prunehess.training.run import RunSummary, TrainEvent, run_training
from prunehess.training.schedule import lr_at
from prunehess.training.track import Curvature, CurvatureTracker, engine_curvature
from prunehess.training.variants import run_variants

__all__ = [
    # the run
    "TrainConfig", "PRUNE_TYPES", "run_training", "run_variants", "RunSummary", "RunComponents", "RunFolder",
    "TrainEvent", "default_components", "read_log", "LOG_COLUMNS",
    # pruning rules
    "magnitude_prune", "random_prune", "prune_layers", "hessian_rates", "hessian_prune", "LayerTraces",
    "prune_count", "full_masks", "prunable_weights", "apply_masks_", "mask_gradients_", "count_parameters",
    "remaining_percent",
    # training
    "make_optimizer", "train_epoch", "evaluate", "EvalResult", "lr_at",
    # batch size schedules
    "BatchSizeSchedule", "ConstantBatchSize", "AdaptiveBatchSize", "make_batch_schedule",
    # curvature tracking
    "Curvature", "CurvatureTracker", "engine_curvature",
]
