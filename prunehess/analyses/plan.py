"""Running the analyses of one operator: the enabled ones, in compute order, sharing one workspace."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Mapping

from prunehess.analyses.base import Analysis, Workspace
from prunehess.analyses.registry import ANALYSES, compute_order

__all__ = ["Plan"]


@dataclass(frozen=True)
class Plan:
    """The analyses one run computes, each with its options, in the order they run.

    ``steps`` holds ``(analysis, options)`` pairs; ``requested`` the by-products they ask of each other.
    """

    steps: tuple[tuple[Analysis, Any], ...]
    requested: Mapping[str, int]

    @classmethod
    def of(cls, options: Any, *, layer: bool = False) -> "Plan":
        """The plan of a run's :class:`~prunehess.analyses.registry.AnalysisOptions` for the whole network, or for a
        layer's block (``layer=True``: only the analyses that run per layer). Analyses that take a by-product of
        an earlier one run as soon as they can, so that it is freed before the others run."""
        chosen = [unit for unit in ANALYSES if unit.enabled(getattr(options, unit.name)) and (unit.layers or not layer)]
        takes = {unit.name: unit.requests(getattr(options, unit.name)) for unit in chosen}
        steps = tuple((unit, getattr(options, unit.name))
                      for unit in compute_order(tuple(chosen), first=lambda unit: bool(takes[unit.name])))
        return cls(steps, dict(Counter(name for names in takes.values() for name in names)))

    def run(self, op: Any, *, seed: int, batched_products: bool = False) -> dict[str, Any]:
        """``name -> result`` of every step on the operator ``op``."""
        work = Workspace(seed=seed, batched_products=batched_products, requested=self.requested)
        for unit, own in self.steps:
            work.results[unit.name] = unit.compute(op, own, work)
        return work.results

    def n_hvp(self, results: dict[str, Any]) -> int:
        """Products used by all the steps (parts taken from an earlier step count none)."""
        return sum(unit.n_hvp(results[unit.name]) for unit, _ in self.steps)
