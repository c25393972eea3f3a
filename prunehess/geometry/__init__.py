"""Landscape geometry: commands built on a finished extract output.

- :mod:`~prunehess.geometry.landscape`: ``prunehess landscape``, the loss along directions around checkpoints
  (top eigenvectors, gradient, filter-normalised random) and over the top-1 × top-2 plane.
- :mod:`~prunehess.geometry.barrier`: ``prunehess barrier``, the loss and error along straight lines between
  checkpoints (consecutive iterations, rewinding, another run) and their barriers.
- :mod:`~prunehess.geometry.pruning_step`: ``prunehess pruning-step``, each pruning step's removed weights against
  OBD's choice, and the quadratic model of its loss change against the loss (:mod:`~prunehess.geometry.step`,
  :mod:`~prunehess.geometry.ranking`).
- :mod:`~prunehess.geometry.evaluate`: the loss at many points of weight space in batched passes (``vmap``).
- :mod:`~prunehess.geometry.directions`, :mod:`~prunehess.geometry.curves`: directions, curves, paths, barriers.
- :mod:`~prunehess.geometry.session`, :mod:`~prunehess.geometry.runner`, :mod:`~prunehess.geometry.records`: the
  finished run opened again, one process or torchrun, resuming.

The overlaps of saved eigenspaces are figures of the output alone: :mod:`prunehess.plots.overlap`.
"""
from prunehess._lazy import lazy_exports

_EXPORTS = {  # module: the names this package re-exports from it (imported at first use: prunehess._lazy)
    "barrier": ("run_barrier",),
    "curves": ("Interpolation", "Landscape", "barrier_height", "interpolation", "loss_landscape", "steps"),
    "directions": ("eigen_direction", "filter_normalized_direction", "gradient_direction", "surviving_masks",
                   "unit_direction"),
    "evaluate": ("CLASSIFICATION", "Objective", "PointEvaluator", "PointValues", "model_state"),
    "landscape": ("run_landscape",),
    "options": ("BarrierOptions", "LandscapeOptions", "PruningStepOptions", "RunOptions"),
    "pruning_step": ("run_pruning_step",),
    "ranking": ("average_ranks", "expected_hits", "lowest_saliency", "spearman"),
    "runner": ("JobReport",),
    "step": ("StepResult", "StepRow", "analyse_step", "step_diagonal"),
}

__all__ = [
    # the commands
    "run_landscape", "run_barrier", "run_pruning_step", "LandscapeOptions", "BarrierOptions", "PruningStepOptions",
    "RunOptions", "JobReport",
    # the pruning step: magnitude against OBD, the quadratic model against the loss
    "analyse_step", "StepResult", "StepRow", "step_diagonal", "spearman", "average_ranks", "lowest_saliency",
    "expected_hits",
    # curves, surfaces, paths
    "loss_landscape", "Landscape", "interpolation", "Interpolation", "barrier_height", "steps",
    # directions
    "unit_direction", "eigen_direction", "gradient_direction", "filter_normalized_direction", "surviving_masks",
    # batched evaluation
    "PointEvaluator", "PointValues", "Objective", "CLASSIFICATION", "model_state",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
