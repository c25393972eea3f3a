"""Curvature tracking during training: top Hessian eigenvalue and trace through the engine.

Like HessianFlow's and LayerHessians' training drivers, a run can record the curvature of the loss every few
epochs. The numbers come from :class:`prunehess.operators.HessianOperator` on a fixed Hessian batch, over the
*surviving* coordinates (the engine's ``masks="auto"``: exactly-zero weights of weight matrices and kernels are not
coordinates, as when the saved checkpoint is analysed), with the model in eval mode,
and with the same seed at every call — so a value in the training log is what a direct engine call on the saved
checkpoint with the same batch and seed returns.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prunehess.estimators import hutchinson_trace, lanczos_top_eigen
from prunehess.operators import HessianOperator

__all__ = ["Curvature", "CurvatureTracker", "engine_curvature"]


@dataclass(frozen=True)
class Curvature:
    """One curvature record: top eigenvalue, Hutchinson trace estimate (with its stderr) and HVPs spent."""

    top_eigenvalue: float
    trace: float
    trace_stderr: float
    n_hvp: int


def engine_curvature(
    model: nn.Module,
    batches: Sequence[tuple[Tensor, Tensor]],
    *,
    seed: int,
    trace_probes: int,
    loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
) -> Curvature:
    """Top eigenvalue (Lanczos) and Hutchinson trace of the loss Hessian of ``model`` on ``batches`` (surviving
    coordinates)."""
    op = HessianOperator(model, data=batches, loss_fn=loss_fn, masks="auto")
    eig = lanczos_top_eigen(op, k=1, seed=seed)
    tr = hutchinson_trace(op, seed=seed, n_probes=trace_probes)
    return Curvature(
        top_eigenvalue=float(eig.eigenvalues[0]),
        trace=float(tr.estimate),
        trace_stderr=float(getattr(tr, "stderr", float("nan"))),
        n_hvp=int(getattr(eig, "n_hvp", 0)) + int(getattr(tr, "n_hvp", 0)),
    )


@dataclass
class CurvatureTracker:
    """A callable ``model -> Curvature`` bound to one Hessian batch, seed and probe count."""

    batches: Sequence[tuple[Tensor, Tensor]]
    seed: int
    trace_probes: int = 20

    def __call__(self, model: nn.Module) -> Curvature:
        with torch.enable_grad():
            return engine_curvature(model, self.batches, seed=self.seed, trace_probes=self.trace_probes)
