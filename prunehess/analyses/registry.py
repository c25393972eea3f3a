"""Finding the analyses, the options section they make together, and the order they run in.

Every module of :mod:`prunehess.analyses` that defines ``ANALYSIS`` (an :class:`~prunehess.analyses.base.Analysis`)
is one analysis: adding a module adds its options to ``extract``'s command line and YAML files, its options that
change numbers to the resume key, its files to the output tree and its columns to ``summary.csv``.
:class:`AnalysisOptions` is the ``analyses`` section of the run's configuration: the :class:`ScopeOptions` (which
weights and which blocks are analysed) and one field per analysis, named after it, holding its options.
"""
from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from dataclasses import dataclass
from typing import Any, Callable

from prunehess.analyses.base import Analysis
from prunehess.options import check, option

__all__ = ["ANALYSES", "ScopeOptions", "AnalysisOptions", "analysis", "compute_order", "PARAM_MODES", "CURVATURES"]

PARAM_MODES = ("active", "all")
CURVATURES = ("hessian", "ggn", "fisher")


@dataclass(frozen=True)
class ScopeOptions:
    """What is analysed: which curvature matrix, which coordinates (the surviving weights, or every one as PyHessian)
    and which blocks."""

    params: str = option("active", choices=PARAM_MODES,
                         help="active: the Hessian over surviving weights (pruned ones are not parameters); all: every "
                              "coordinate (PyHessian).")
    compute_each_layer: bool = option(False, aliases=("--compute_each_layer",),
                                      help="Also analyse each parameter tensor's diagonal block (folders "
                                           "*_layer<k>/).")
    curvature: str = option("hessian", choices=CURVATURES,
                            help="Which curvature matrix: the loss Hessian; the generalised Gauss–Newton JᵀH_ℓJ "
                                 "(positive semi-definite, no second derivatives of the network); or the empirical "
                                 "Fisher (mean of per-sample gradient outer products).")

    def __post_init__(self) -> None:
        check(self)


def _discover() -> tuple[Analysis, ...]:
    package = importlib.import_module(__package__)
    found = []
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{__package__}.{info.name}")
        unit = getattr(module, "ANALYSIS", None)
        if isinstance(unit, Analysis):
            found.append(unit)
    names = [unit.name for unit in found]
    if len(set(names)) != len(names):
        raise RuntimeError(f"two analyses share a name: {sorted(names)}")
    return tuple(sorted(found, key=lambda unit: (unit.position, unit.name)))


ANALYSES: tuple[Analysis, ...] = _discover()
"""Every analysis, in the order of their files, ``summary.csv`` columns and report sections."""


def analysis(name: str) -> Analysis:
    """The analysis called ``name``."""
    for unit in ANALYSES:
        if unit.name == name:
            return unit
    raise KeyError(f"no analysis {name!r}; known: {', '.join(unit.name for unit in ANALYSES)}")


def compute_order(units: tuple[Analysis, ...] = ANALYSES,
                  first: Callable[[Analysis], bool] = lambda unit: False) -> tuple[Analysis, ...]:
    """``units`` in an order where each runs after those it names in ``after``; among those ready, the ones
    ``first`` prefers, then by position.

    Example:
        >>> [unit.name for unit in compute_order()][:3]
        ['density', 'trace', 'top_eigen']
    """
    done: list[Analysis] = []
    waiting = list(units)
    names = {unit.name for unit in units}
    while waiting:
        ready = [unit for unit in waiting if all(d in {u.name for u in done} or d not in names for d in unit.after)]
        if not ready:
            raise RuntimeError(f"analyses wait on each other: {[unit.name for unit in waiting]}")
        chosen = next((unit for unit in ready if first(unit)), ready[0])
        done.append(chosen)
        waiting.remove(chosen)
    return tuple(done)


def _analysis_options_type() -> type:
    fields: list[Any] = [("scope", ScopeOptions, dataclasses.field(default_factory=ScopeOptions))]
    fields += [(unit.name, unit.options, dataclasses.field(default_factory=unit.options)) for unit in ANALYSES]
    cls = dataclasses.make_dataclass("AnalysisOptions", fields, frozen=True)
    cls.__module__ = __name__
    cls.__doc__ = ("The analyses section of a run's configuration: ``scope`` (:class:`ScopeOptions`) and, for each "
                   "analysis, an attribute named after it holding its options.")
    return cls


AnalysisOptions = _analysis_options_type()
