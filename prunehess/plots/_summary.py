"""Numbers the figures take from ``summary.csv``: the trace's standard errors and the best test accuracies.

Rows are matched by ``(iteration, epoch, layer)``, with ``epoch`` ``None`` for an iteration's best checkpoint and
``layer`` ``None`` for the whole model. Outputs without the file or a column give empty mappings, and the
figures are drawn without what they would have added.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np

from prunehess.layout import OutputLayout

__all__: list[str] = []

Key = tuple[int, "int | None", "int | None"]


def summary_rows(layout: OutputLayout) -> list[dict[str, Any]]:
    """The rows of the output's ``summary.csv``; ``[]`` without one."""
    return layout.read_summary() if layout.summary_file.is_file() else []


def _finite(value: Any) -> float | None:
    if value is None or isinstance(value, (str, list)):
        return None
    value = float(value)
    return value if np.isfinite(value) else None


def trace_stderrs(layout: OutputLayout, rows: Iterable[Mapping[str, Any]] | None = None) -> dict[Key, float]:
    """``(iteration, epoch, layer) -> trace_stderr`` of every row with a number in that column (0 for an exact
    trace); empty for outputs written before the column existed."""
    rows = summary_rows(layout) if rows is None else rows
    found: dict[Key, float] = {}
    for row in rows:
        value = _finite(row.get("trace_stderr"))
        if value is not None and row.get("iteration") is not None:
            found[(row["iteration"], row.get("epoch"), row.get("layer"))] = value
    return found


def stderrs_of(stderrs: Mapping[Key, float], keys: Iterable[tuple[int, int | None]],
               layer: int | None) -> np.ndarray | None:
    """The standard errors of ``keys`` (``(iteration, epoch)``) for ``layer``, NaN where a row lacks one;
    ``None`` when none has one, or all are 0 (exact traces): no band to draw."""
    return drawable(np.array([stderrs.get((i, e, layer), np.nan) for i, e in keys], dtype=float))


def drawable(stderr: np.ndarray) -> np.ndarray | None:
    """``stderr``, or ``None`` when no entry is a positive number (nothing to draw)."""
    return stderr if stderr.size and np.nanmax(np.abs(stderr), initial=0.0) > 0 else None


def best_accuracies(layout: OutputLayout, rows: Iterable[Mapping[str, Any]] | None = None
                    ) -> dict[int, tuple[int | None, float]]:
    """``iteration -> (epoch, test accuracy)`` of each pruning iteration's best checkpoint (whole-model rows).

    The ``best`` row's accuracy when it has one; else the snapshot with the highest accuracy, the earliest on
    ties (the checkpoint :func:`prunehess.plots._common.best_epochs` draws when there is no best file).
    Iterations without any accuracy are left out; so is the initial-weights row (iteration -1).
    """
    rows = summary_rows(layout) if rows is None else rows
    best: dict[int, tuple[int | None, float]] = {}
    snapshots: dict[int, tuple[float, int]] = {}
    for row in rows:
        iteration, epoch, accuracy = row.get("iteration"), row.get("epoch"), _finite(row.get("test_accuracy"))
        if iteration is None or iteration < 0 or row.get("layer") is not None or accuracy is None:
            continue
        if epoch is None:
            best[iteration] = (None, accuracy)
        elif iteration not in snapshots or (-accuracy, epoch) < (-snapshots[iteration][0], snapshots[iteration][1]):
            snapshots[iteration] = (accuracy, epoch)
    for iteration, (accuracy, epoch) in snapshots.items():
        best.setdefault(iteration, (epoch, accuracy))
    return dict(sorted(best.items()))
