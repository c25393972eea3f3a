"""The run's Hessian-vector-product strategy: chosen once, saved, and the same for every checkpoint.

``--strategy auto`` (the default) chooses by a rule, without timing (:func:`prunehess.operators.rule.rule_tuning`:
graph reuse, one product at a time, the mini-batches merged into chunks where their activations fit a memory
budget, CUDA graphs on a GPU); ``--strategy tune`` times the candidates on the first checkpoint computed
(:func:`prunehess.operators.tune`). Either choice is saved in ``.prunehess/strategy.json`` under the run's
numerics key and device type, so that every checkpoint of the run, the ranks of a torchrun job and a resumed run
use the same one (numbers agree to rounding across strategies; one run's numbers agree exactly): a choice saved
before is reused, whichever way it was made. Under data parallelism every rank must run the same strategy:
graph reuse, mini-batches as given. A named strategy is used as it is. The model's determinism is checked once,
on the first operator.
"""
from __future__ import annotations

from typing import Any, Optional

import torch

from prunehess.operators import HessianOperator, Tuning, tune
from prunehess.operators.rule import rule_tuning
from prunehess.pipeline.events import Listener, Note
from prunehess.pipeline.state import RunState

__all__ = ["RunStrategy", "CHOSEN"]

CHOSEN = ("auto", "tune")
"""The ``--strategy`` values that choose (by rule, by timing) rather than name a strategy."""


def _describe(choice: dict[str, Any], timings: dict[str, float], saved_by_other: bool) -> str:
    measured = ", ".join(f"{k} {1000 * v:.1f} ms" for k, v in timings.items())
    line = f"  HVP strategy: {measured} ->" if measured else "  HVP strategy (by rule, untimed):"
    line += f" {choice['strategy']}{' (CUDA graphs)' if choice.get('cuda_graphs') else ''}"
    line += f", chunks of {choice['chunk_size']}" if choice.get("chunk_size") else ""
    line += f" / batched {choice['batched_strategy']}"
    return line + (" (chosen first by another process of this run)" if saved_by_other else "")


class RunStrategy:
    """The strategy of one run (``choice``: ``None`` until the first checkpoint settles it), in the form saved in
    ``strategy.json`` and ``config.yaml``'s ``hvp_strategy``."""

    def __init__(self, requested: str, state: RunState, device: torch.device, emit: Listener):
        self.requested, self.state, self.device, self.emit = requested, state, device, emit
        self.choice: Optional[dict[str, Any]] = None

    def settle(self, op: HessianOperator) -> None:
        """Give ``op`` the run's strategy, choosing it on the first call."""
        if self.choice is None:
            self.choice = self._choose(op)
            self._apply(op, self.choice)
            op.check_deterministic()
        else:
            self._apply(op, self.choice)

    def known(self) -> dict[str, Any]:
        """The strategy of the run's finished checkpoints, without measuring (every checkpoint was done before)."""
        if self.choice is not None:
            return self.choice
        if self.requested not in CHOSEN:
            return {"strategy": self.requested, "batched_strategy": "loop"}
        return self.state.saved_strategy(self.device.type) or {}

    def _choose(self, op: HessianOperator) -> dict[str, Any]:
        if self.requested not in CHOSEN or op.reduces:
            return {"strategy": "graph" if self.requested in CHOSEN else self.requested, "batched_strategy": "loop"}
        saved = self.state.saved_strategy(self.device.type)  # by device type: cuda:0, cuda:1 … share one choice
        if saved is not None:
            return saved
        # timing compares the Hessian's product strategies; the GGN and Fisher operators take the rule's choice
        timed = self.requested == "tune" and isinstance(op, HessianOperator)
        tuning = tune(op) if timed else rule_tuning(op)
        mine = tuning.to_dict()
        choice = self.state.save_first_strategy(self.device.type, mine)
        self.emit(Note(_describe(choice, dict(tuning.timings), saved_by_other=choice != mine)))
        return choice

    @staticmethod
    def _apply(op: HessianOperator, choice: dict[str, Any]) -> None:
        op.apply_tuning(Tuning.from_dict(choice))  # CUDA graphs only where the operator supports them
