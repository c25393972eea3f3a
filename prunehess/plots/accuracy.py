"""Test accuracy of each pruning iteration's best checkpoint against the percent of weights remaining: the
pruning run's own figure, which the curvature trends are read against.

The accuracies come from the ``test_accuracy`` column of ``summary.csv`` (fractions; the axis shows percent).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from prunehess.errors import DataError
from prunehess.layout import OutputLayout, iteration_tag
from prunehess.plots import _common as c
from prunehess.plots import _summary
from prunehess.plots.trends import render_best_trend

__all__ = ["render_accuracy_best", "best_accuracy", "plot_accuracy_best"]

ACCURACY_LABEL = "Test accuracy"
ACCURACY_TITLE = "Test accuracy plot"
ACCURACY_COLOR = "tab:green"
MIN_SPAN = 0.05
"""The accuracy axis spans at least 5 percentage points, so that a change of a few test samples does not fill
the panel as if it were a collapse."""


def render_accuracy_best(percents: Sequence[float], accuracies: Sequence[float], *, title: str = "",
                         ax: Axes | None = None, color: str | None = ACCURACY_COLOR) -> Figure:
    """Test accuracy (fractions, drawn as given; ticks in percent) against the percent of weights remaining,
    on the axis of :func:`prunehess.plots.render_best_trend` (dense left, sparse right). Linear y axis spanning
    at least 5 percentage points (:data:`MIN_SPAN`).

    Example:
        >>> fig = render_accuracy_best([100.0, 80.0, 64.0], [0.91, 0.93, 0.92])
        >>> fig.axes[0].lines[0].get_ydata().tolist(), fig.axes[0].yaxis.get_major_formatter()(0.5, 0)
        ([0.91, 0.93, 0.92], '50.0%')
    """
    figure = render_best_trend(percents, accuracies, ylabel=ACCURACY_LABEL, title=title, ax=ax, color=color)
    ax = ax if ax is not None else figure.axes[0]
    ax.set_yscale("linear")
    finite = np.asarray(accuracies, dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size and finite.max() - finite.min() < MIN_SPAN:
        middle = 0.5 * (finite.max() + finite.min())
        lo = min(max(middle - MIN_SPAN / 2, 0.0), 1.0 - MIN_SPAN)
        ax.set_ylim(lo, lo + MIN_SPAN)
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=1))
    return figure


def best_accuracy(layout: OutputLayout, iterations: Sequence[int] | None = None) -> dict[int, tuple[int | None, float]]:
    """``iteration -> (epoch, test accuracy)`` of the best checkpoint of each iteration (epoch ``None``: the
    iteration's ``best`` checkpoint), from ``summary.csv``: the ``best`` row's accuracy, or where it has none
    the highest of the snapshots (the earliest on ties). ``iterations`` restricts and orders the result; one
    without an accuracy raises :class:`DataError`."""
    if not layout.summary_file.is_file():
        raise DataError(f"{layout.summary_file}: not found (test accuracies are read from it)")
    found = _summary.best_accuracies(layout)
    if iterations is None:
        return found
    missing = [i for i in iterations if i not in found]
    if missing:
        raise DataError(f"{layout.summary_file}: no test_accuracy for iteration tag(s) "
                        f"{', '.join(iteration_tag(i) for i in missing)} (extract records it unless run with "
                        "--no-test-accuracy)")
    return {i: found[i] for i in iterations}


def plot_accuracy_best(path, save_path, layers=0, models=None, epochs=None, model_name="", dataset_name="",
                       remain_params_file_path=None) -> list[Path]:
    """The test accuracy of each iteration's best checkpoint against the percent remaining, saved as
    ``save_path/best_model.jpg`` (``prunehess plot all`` puts it in ``accuracy_best/``).

    Args:
        path: the extract output folder, or any of its metric folders.
        models: as the seed, one more than the number of iterations to draw; ``None``: every iteration.
        model_name, dataset_name: words of the title.
        remain_params_file_path: percents remaining per iteration; default the output's ``remain_params.txt``.
        layers, epochs: accepted for the seed's signature; the accuracy is the whole model's, of the best
            checkpoint.

    Returns:
        The file written. Without ``summary.csv`` or any test accuracy: :class:`DataError`.
    """
    del layers, epochs
    layout = c.resolve_root(path)
    found = best_accuracy(layout)
    if not found:
        raise DataError(f"{layout.summary_file}: no test_accuracy of any pruning iteration (extract records it "
                        "unless run with --no-test-accuracy)")
    iterations = c.select_iterations(found, models, layout.summary_file)
    chosen = best_accuracy(layout, iterations)
    percents, source = c.percents_with_source(layout, remain_params_file_path)
    x = [c.percent_of(percents, i, source) for i in iterations]
    y = np.array([chosen[i][1] for i in iterations])
    figure = render_accuracy_best(x, y, title=c.plot_title(ACCURACY_TITLE, model_name, dataset_name))
    return [c.save_figure(figure, Path(save_path) / "best_model.jpg")]
