"""The headline of a pruning run: each iteration's best checkpoint's top eigenvalue, trace (± 2 standard errors)
and test accuracy against the percent of weights remaining, in aligned panels sharing that axis.

:func:`best_summary` reads the numbers (whole model) from an output tree; :func:`render_best_summary` draws
them. The report opens with this figure.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from prunehess.errors import DataError
from prunehess.layout import OutputLayout
from prunehess.plots import _common as c
from prunehess.plots import _summary
from prunehess.plots.accuracy import ACCURACY_COLOR, render_accuracy_best
from prunehess.plots.trends import best_trend, render_best_trend

__all__ = ["BestSummary", "best_summary", "render_best_summary"]

TOP_COLOR = "tab:blue"
TRACE_COLOR = "tab:orange"


@dataclass(frozen=True)
class BestSummary:
    """The best checkpoint of each pruning iteration, whole model.

    Attributes:
        iterations: the pruning iterations (0 = dense), in order.
        percents: percent of weights remaining of each.
        top_eigenvalue, trace, trace_stderr, test_accuracy: one value per iteration (NaN where that iteration has
            none), or ``None`` when the output has none at all (no ``top_eigenvalues`` or ``trace`` folder, no
            ``trace_stderr`` or ``test_accuracy`` in ``summary.csv``). Accuracies are fractions.
    """

    iterations: tuple[int, ...]
    percents: np.ndarray
    top_eigenvalue: np.ndarray | None
    trace: np.ndarray | None
    trace_stderr: np.ndarray | None
    test_accuracy: np.ndarray | None


def best_summary(layout: OutputLayout | str | Path, remain_params_file_path=None) -> BestSummary:
    """The :class:`BestSummary` of an output tree (its layout or folder): best checkpoints as
    :func:`prunehess.plots.best_trend` picks them (the ``best`` file, else the highest test accuracy),
    accuracies from ``summary.csv`` (the ``best`` row, else the highest snapshot's). :class:`DataError` when
    there is nothing to summarise or no percents."""
    layout = layout if isinstance(layout, OutputLayout) else c.resolve_root(layout)
    rows = _summary.summary_rows(layout)
    accuracy = _summary.best_accuracies(layout, rows)
    found = {m: sorted({i for i, _ in layout.list_results(m) if i >= 0}) for m in ("top_eigenvalues", "trace")
             if layout.metric_dir(m).is_dir()}
    iterations = sorted(set(accuracy).union(*found.values()))
    if not iterations:
        raise DataError(f"{layout.root}: no best checkpoint to summarise (no top_eigenvalues, trace or test accuracy)")
    percents, source = c.percents_with_source(layout, remain_params_file_path)
    best = {m: best_trend(layout, m, None, its) for m, its in found.items()}

    def column(metric: str) -> np.ndarray | None:
        if metric not in best:
            return None
        return np.array([float(np.ravel(best[metric][i][1])[0]) if i in best[metric] else np.nan for i in iterations])

    stderr = None
    if "trace" in best:
        stderrs, trace_best = _summary.trace_stderrs(layout, rows), best["trace"]
        stderr = _summary.drawable(np.array([stderrs.get((i, trace_best[i][0], None), np.nan)
                                             if i in trace_best else np.nan for i in iterations]))
    acc = np.array([accuracy[i][1] if i in accuracy else np.nan for i in iterations]) if accuracy else None
    return BestSummary(iterations=tuple(iterations),
                       percents=np.array([c.percent_of(percents, i, source) for i in iterations]),
                       top_eigenvalue=column("top_eigenvalues"), trace=column("trace"), trace_stderr=stderr,
                       test_accuracy=acc)


def render_best_summary(percents: Sequence[float], *, top_eigenvalue: Sequence[float] | None = None,
                        trace: Sequence[float] | None = None, trace_stderr: Sequence[float] | None = None,
                        test_accuracy: Sequence[float] | None = None, title: str = "",
                        axes: Sequence[Axes] | None = None, curvature: str = "hessian") -> Figure:
    """One panel per quantity given (top eigenvalue, trace with its ± 2 standard-error band, test accuracy),
    stacked and sharing the remaining-percent axis (dense left, sparse right), so a change in curvature reads
    straight down to the accuracy of the same checkpoints.

    Args:
        percents: percent of weights remaining of each iteration.
        top_eigenvalue, trace, trace_stderr, test_accuracy: one value per iteration (NaN: none); ``None``
            leaves the panel out (``trace_stderr`` the band).
        title: the figure's title.
        axes: one axes per panel drawn; a new figure when omitted.
        curvature: the run's matrix (``hessian``, ``ggn``, ``fisher``), named in the labels.

    Example:
        >>> fig = render_best_summary([100.0, 80.0], top_eigenvalue=[12.0, 6.0], test_accuracy=[0.9, 0.92])
        >>> [ax.get_ylabel() for ax in fig.axes]
        ['Top Hessian eigenvalue', 'Test accuracy']
    """
    panels = [(name, values) for name, values in (("top_eigenvalues", top_eigenvalue), ("trace", trace),
                                                  ("accuracy", test_accuracy)) if values is not None]
    if not panels:
        raise ValueError("best summary: no top eigenvalues, traces or accuracies to draw")
    if axes is None:
        figure = Figure(figsize=(7.6, 0.9 + 2.25 * len(panels)), layout="constrained")
        axes = figure.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    elif len(axes) != len(panels):
        raise ValueError(f"best summary: {len(axes)} axes for {len(panels)} panels")
    for ax, (name, values) in zip(axes, panels):
        if name == "accuracy":
            render_accuracy_best(percents, values, ax=ax, color=ACCURACY_COLOR)
        else:
            render_best_trend(percents, values, ax=ax, ylabel=c.metric_label(name, curvature),
                              stderr=trace_stderr if name == "trace" else None,
                              color=TOP_COLOR if name == "top_eigenvalues" else TRACE_COLOR)
    for ax in axes[:-1]:
        ax.set_xlabel("")
        ax.tick_params(axis="x", labelbottom=False)
    figure = axes[0].figure
    figure.align_ylabels(list(axes))
    if title:
        figure.suptitle(title)
    return figure
