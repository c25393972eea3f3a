"""Analyses: what ``extract`` computes for each checkpoint, one module each.

Each module defines ``ANALYSIS``, an :class:`~prunehess.analyses.base.Analysis`: its name, its options (a frozen
dataclass beside its estimator), how it computes from an operator (sharing products with the analyses before it),
the files it writes and its ``summary.csv`` columns. The seed tool's three are
:mod:`~prunehess.analyses.density` (SLQ), :mod:`~prunehess.analyses.trace` (Hutchinson) and
:mod:`~prunehess.analyses.top_eigen` (Lanczos). :data:`ANALYSES` lists them all; :class:`Plan` runs them.
"""
from prunehess.analyses.base import Analysis, BlockWriter, Workspace
from prunehess.analyses.plan import Plan
from prunehess.analyses.registry import ANALYSES, PARAM_MODES, AnalysisOptions, ScopeOptions, analysis, compute_order

__all__ = [
    "Analysis", "BlockWriter", "Workspace",
    "ANALYSES", "AnalysisOptions", "ScopeOptions", "PARAM_MODES", "analysis", "compute_order",
    "Plan",
]
