"""Hessian-aware pruning (``--prune-type hessian``): per-layer rates from each layer's Hessian trace.

The rule comes from the pruning-PyHessian fork (DeimosXing/CS280proj-Hessian-aware-pruning, a 2020 course project
whose analysis half is prunehess's seed tool; its lottery-ticket trainer had a ``--hessian`` switch): a layer whose
loss curvature is high is sensitive to losing weights, so it is pruned gently; a flat layer is pruned harder. The
fork's trainer skipped layers under 1 % of the parameters in all its pruning; here that belongs to this rule only
(``lt``, ``reinit`` and ``random`` prune every prunable layer, as before). For a round at ``P`` percent:

1. layers whose weight tensor holds under 1 % of the model's parameters (all of them: weights, biases, norm
   parameters) are not pruned;
2. for each other layer ``l`` with survivors, ``t_l = tr(H_ll)``, the trace of the loss Hessian's diagonal block
   on the layer's *surviving* weights (Hutchinson's estimate, :func:`prunehess.estimators.hutchinson_trace`, on a
   :class:`prunehess.operators.HessianOperator` over the run's fixed Hessian batch with the current masks,
   restricted to the layer with ``.restrict([l])``; seeded with the run's seed; model in eval mode), taken at the
   final weights of the previous iteration — the weights magnitude pruning ranks;
3. with ``t̄`` the mean of those traces, a layer with ``t_l >= t̄`` loses ``P/2`` % of its survivors and one with
   ``t_l < t̄`` loses ``min(2P, 30)`` %, by magnitude within the layer
   (:func:`~prunehess.training.pruning.prune_layers`).

The rule is :func:`hessian_rates` (pure: traces in, rates out); :class:`LayerTraces` computes the traces, and a run
takes any ``(model, masks, names) -> {name: trace}`` in its place (``run_training(..., layer_traces=...)``).

Example:
    >>> rates = hessian_rates({"a": 5.0, "b": 1.0, "c": 3.0}, {"a": 400, "b": 400, "c": 400, "d": 4}, total=1204,
    ...                       percent=20.0)
    >>> rates
    {'a': 10.0, 'b': 30.0, 'c': 10.0, 'd': 0.0}
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

import torch
from torch import Tensor, nn

from prunehess.estimators import hutchinson_trace
from prunehess.operators import HessianOperator
from prunehess.training.pruning import Masks, prune_layers

__all__ = ["SMALL_LAYER_FRACTION", "RATE_CAP", "hessian_rates", "hessian_prune", "needs_trace", "LayerTraces",
           "TraceFn"]

SMALL_LAYER_FRACTION = 0.01  # layers holding less of the model's parameters are not pruned
RATE_CAP = 30.0  # the largest rate a flat layer is pruned at

TraceFn = Callable[[nn.Module, Mapping[str, Tensor], Sequence[str]], Mapping[str, float]]


def needs_trace(masks: Mapping[str, Tensor], total: int) -> list[str]:
    """The layers the rule reads a trace of: holding at least 1 % of the ``total`` parameters, with survivors."""
    return [name for name, m in masks.items() if m.numel() >= SMALL_LAYER_FRACTION * total and bool(m.any())]


def hessian_rates(traces: Mapping[str, float], sizes: Mapping[str, int], *, total: int, percent: float
                  ) -> dict[str, float]:
    """The percent each layer loses: ``P/2`` at or above the mean trace, ``min(2P, 30)`` below it, ``0`` for a
    layer under 1 % of ``total`` parameters (or one given no trace: it has no survivors).

    Args:
        traces: ``tr(H_ll)`` of the layers that need one (:func:`needs_trace`).
        sizes: every prunable layer's weight count (survivors and pruned).
        total: the model's parameter count.
        percent: the round's ``P``.
    """
    rated = [name for name in sizes if sizes[name] >= SMALL_LAYER_FRACTION * total and name in traces]
    if not rated:
        return {name: 0.0 for name in sizes}
    mean = sum(float(traces[name]) for name in rated) / len(rated)
    high, low = float(percent) / 2.0, min(2.0 * float(percent), RATE_CAP)
    return {name: (high if float(traces[name]) >= mean else low) if name in rated else 0.0 for name in sizes}


def hessian_prune(weights: Mapping[str, Tensor], masks: Mapping[str, Tensor], percent: float,
                  traces: Mapping[str, float], *, total: int) -> Masks:
    """One Hessian-aware round: :func:`hessian_rates` per layer, then magnitude pruning within each layer."""
    missing = [name for name in needs_trace(masks, total) if name not in traces]
    if missing:
        raise ValueError(f"hessian pruning needs the trace of {missing}")
    rates = hessian_rates(traces, {name: m.numel() for name, m in masks.items()}, total=total, percent=percent)
    return prune_layers(weights, masks, rates)


@dataclass
class LayerTraces:
    """``(model, masks, names) -> {name: tr(H_ll)}`` by Hutchinson on one Hessian batch, with one seed."""

    batches: Sequence[tuple[Tensor, Tensor]]
    seed: int
    probes: int = 20

    def __call__(self, model: nn.Module, masks: Mapping[str, Tensor], names: Iterable[str]) -> dict[str, float]:
        names = list(names)
        if not names:
            return {}
        with torch.enable_grad():
            op = HessianOperator(model, self.batches, masks=dict(masks), params=names)
            try:
                return {name: float(hutchinson_trace(op.restrict([name]), n_probes=self.probes, seed=self.seed)
                                    .estimate) for name in names}
            finally:
                op.release()
