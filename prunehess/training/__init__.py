"""Iterative magnitude-pruning (lottery-ticket) runs: ``prunehess train``.

Produces the zips that :func:`prunehess.pipeline.extract` analyses, in the seed trainer's naming.
"""
from prunehess.training.absa import AdaptiveBatchSize, BatchSizeSchedule, ConstantBatchSize, make_batch_schedule
from prunehess.training.config import TrainConfig
from prunehess.training.loop import EvalResult, evaluate, make_optimizer, train_epoch
from prunehess.training.pruning import (
    apply_masks_,
    count_parameters,
    full_masks,
    magnitude_prune,
    mask_gradients_,
    prunable_weights,
    prune_count,
    remaining_percent,
)
from prunehess.training.run import (
    LOG_COLUMNS,
    RunComponents,
    RunFolder,
    RunSummary,
    TrainEvent,
    default_components,
    read_log,
    run_training,
)
from prunehess.training.track import Curvature, CurvatureTracker, engine_curvature

__all__ = [
    # the run
    "TrainConfig", "run_training", "RunSummary", "RunComponents", "RunFolder", "TrainEvent", "default_components",
    "read_log", "LOG_COLUMNS",
    # pruning
    "magnitude_prune", "prune_count", "full_masks", "prunable_weights", "apply_masks_", "mask_gradients_",
    "count_parameters", "remaining_percent",
    # training
    "make_optimizer", "train_epoch", "evaluate", "EvalResult",
    # batch size schedules
    "BatchSizeSchedule", "ConstantBatchSize", "AdaptiveBatchSize", "make_batch_schedule",
    # curvature tracking
    "Curvature", "CurvatureTracker", "engine_curvature",
]
