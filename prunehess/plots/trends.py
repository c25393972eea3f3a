"""Trends of the top eigenvalue and the trace: within a pruning iteration (against epoch) and across
iterations (the best checkpoint of each, against the percent of parameters remaining).

The four seed functions (:func:`plot_top_eigenvalues`, :func:`plot_trace`, :func:`plot_top_eigenvalues_best`,
:func:`plot_trace_best`) keep the seed's names, parameters and saved files; each is a thin wrapper over a
renderer (:func:`render_epoch_trend`, :func:`render_best_trend`) that takes numbers and returns a figure.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from prunehess.layout import OutputLayout
from prunehess.plots import _common as c
from prunehess.plots import _summary

__all__ = [
    "render_epoch_trend",
    "render_best_trend",
    "epoch_trend",
    "best_trend",
    "plot_top_eigenvalues",
    "plot_trace",
    "plot_top_eigenvalues_best",
    "plot_trace_best",
    "stderr_band",
]

BAND_LABEL = "± 2 standard errors"

# ---------------------------------------------------------------------------------------------- renderers
def render_epoch_trend(epochs: Sequence[float], values: np.ndarray, *, ylabel: str = "value", title: str = "",
                       ax: Axes | None = None, labels: Sequence[str] | None = None,
                       stderr: Sequence[float] | None = None) -> Figure:
    """Values against epoch, one line per column of ``values``.

    Args:
        epochs: the snapshot epochs, shape ``(n,)``.
        values: shape ``(n,)``, or ``(n, k)`` for the top ``k`` eigenvalues (one line each, NaN for gaps).
        ylabel, title: axis label and title.
        ax: axes to draw on; a new figure when omitted.
        labels: legend entries for the columns (default ``λ1 … λk`` when ``k > 1``).
        stderr: standard errors of a single line of ``values`` (``(n,)``, NaN where unknown): drawn as a
            band of ± 2 standard errors (:func:`stderr_band`).

    The y axis is logarithmic when the values (and the band) are positive and span two decades or more.

    Example:
        >>> fig = render_epoch_trend([0, 10, 20], [3.0, 2.0, 1.0], ylabel="Hessian trace")
        >>> fig.axes[0].lines[0].get_ydata().tolist()
        [3.0, 2.0, 1.0]
    """
    x = np.asarray(epochs, dtype=float).reshape(-1)
    y = np.asarray(values, dtype=float)
    y = y.reshape(x.size, -1) if y.size else y.reshape(x.size, 0)
    if y.shape[0] != x.size:
        raise ValueError(f"epoch trend: {x.size} epochs but {y.shape[0]} rows of values")
    k = y.shape[1]
    if stderr is not None and k != 1:
        raise ValueError(f"epoch trend: standard errors need one line of values, got {k}")
    figure, ax = c.new_axes(ax)
    if labels is None:
        labels = [f"λ{j + 1}" for j in range(k)] if k > 1 else [None]
    elif len(labels) != k:
        raise ValueError(f"epoch trend: {len(labels)} labels for {k} columns of values")
    lines = [ax.plot(x, y[:, j], marker="o", markersize=4, linewidth=1.5, label=labels[j])[0] for j in range(k)]
    band = stderr_band(ax, x, y[:, 0], stderr, color=lines[0].get_color()) if k == 1 else None
    c.auto_value_scale(ax, _with_band(y, band))
    c.epoch_axis(ax, x)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if k > 1 or (labels and labels[0]) or band is not None:
        ax.legend(fontsize="small")
    ax.grid(True, alpha=0.3)
    return figure


def render_best_trend(percents: Sequence[float], values: Sequence[float], *, ylabel: str = "value",
                      title: str = "", ax: Axes | None = None, label: str | None = None,
                      stderr: Sequence[float] | None = None, color: str | None = None) -> Figure:
    """Values of successive pruning iterations against the percent of parameters remaining.

    The x axis runs from dense (left) to sparse (right), on a log scale when all percents are positive (so
    geometric pruning gives evenly spaced points, as the seed's evenly spaced ticks), with a tick at every
    iteration's percent, labelled to 0.1 and rotated 45° as in the seed. ``stderr`` (NaN where unknown) adds a
    band of ± 2 standard errors (:func:`stderr_band`); ``color`` sets the line's colour.

    Example:
        >>> fig = render_best_trend([100.0, 80.0, 64.0], [5.0, 6.0, 8.0], ylabel="Hessian trace")
        >>> fig.axes[0].lines[0].get_xdata().tolist(), bool(fig.axes[0].xaxis_inverted())
        ([100.0, 80.0, 64.0], True)
    """
    x = np.asarray(percents, dtype=float).reshape(-1)
    y = np.asarray(values, dtype=float).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"best trend: {x.size} percents but {y.size} values")
    figure, ax = c.new_axes(ax)
    (line,) = ax.plot(x, y, marker="o", markersize=4, linewidth=1.5, label=label, color=color)
    band = stderr_band(ax, x, y, stderr, color=line.get_color())
    c.percent_axis(ax, x)
    c.auto_value_scale(ax, _with_band(y, band))
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if label or band is not None:
        ax.legend(fontsize="small")
    ax.grid(True, alpha=0.3)
    return figure


def stderr_band(ax: Axes, x: Sequence[float], values: Sequence[float], stderr: Sequence[float] | None, *,
                color=None, alpha: float = 0.22, label: str | None = BAND_LABEL):
    """Fill ``values ± 2·stderr`` against ``x`` (a gap where a standard error is NaN); the
    :class:`~matplotlib.collections.PolyCollection` drawn, or ``None`` when no standard error is known or all
    are 0 (exact traces: there is no band to show).

    Example:
        >>> from matplotlib.figure import Figure
        >>> band = stderr_band(Figure().add_subplot(), [0, 1], [5.0, 6.0], [0.5, 0.25])
        >>> edges = band.get_paths()[0].vertices[:, 1]
        >>> float(edges.min()), float(edges.max())
        (4.0, 6.5)
    """
    if stderr is None:
        return None
    x = np.asarray(x, dtype=float).reshape(-1)
    y = np.asarray(values, dtype=float).reshape(-1)
    se = np.asarray(stderr, dtype=float).reshape(-1)
    if se.shape != y.shape or x.shape != y.shape:
        raise ValueError(f"standard error band: {x.size} x, {y.size} values and {se.size} standard errors")
    if not np.isfinite(se).any() or np.nanmax(np.abs(se)) == 0:
        return None
    return ax.fill_between(x, y - 2 * se, y + 2 * se, color=color, alpha=alpha, linewidth=0, label=label)


def _with_band(values: np.ndarray, band) -> np.ndarray:
    """``values`` and the band's edges: what the value axis must show (for the choice of a log scale)."""
    if band is None:
        return np.asarray(values, dtype=float)
    edges = np.concatenate([path.vertices[:, 1] for path in band.get_paths()])
    return np.concatenate([np.asarray(values, dtype=float).ravel(), edges])


# ------------------------------------------------------------------------------------------------ loaders
def epoch_trend(layout: OutputLayout, metric: str, layer: int | None, iteration: int,
                epochs: int | None = None) -> tuple[list[int], np.ndarray]:
    """``(epochs, values)`` of one iteration: trace ``(n,)``, top eigenvalues ``(n, k)``."""
    results = layout.read_metric(metric, layer)
    return _epoch_series(layout, metric, layer, results, iteration, epochs)


def _epoch_series(layout: OutputLayout, metric: str, layer: int | None, results: dict, iteration: int,
                  epochs: int | None) -> tuple[list[int], np.ndarray]:
    folder = layout.metric_dir(metric, layer)
    available = [e for (i, e) in results if i == iteration]
    chosen = c.select_epochs(available, epochs, folder, iteration)
    return chosen, _values(layout, metric, layer, [results[(iteration, e)] for e in chosen],
                           [(iteration, e) for e in chosen])


def _values(layout: OutputLayout, metric: str, layer: int | None, arrays: list[np.ndarray], keys) -> np.ndarray:
    if metric == "trace":
        return np.array([c.single_value(a, layout.result_path(metric, i, e, layer)) for a, (i, e) in zip(arrays, keys)])
    return c.eigenvalue_rows(arrays)


def best_trend(layout: OutputLayout, metric: str, layer: int | None,
               iterations: Sequence[int]) -> dict[int, tuple[int | None, np.ndarray]]:
    """``iteration -> (epoch drawn, values)`` for the best checkpoint of each iteration (see
    :func:`prunehess.plots._common.best_epochs`)."""
    results = layout.read_metric(metric, layer)
    chosen = c.best_epochs(layout, metric, layer, iterations, results.keys())
    out = {}
    for iteration, epoch in chosen.items():
        values = _values(layout, metric, layer, [results[(iteration, epoch)]], [(iteration, epoch)])
        out[iteration] = (epoch, values[0])
    return out


# ------------------------------------------------------------------------------------ the seed's functions
def _plot_within(metric: str, path, save_path, layers, models, epochs, model_name, dataset_name,
                 remain_params_file_path) -> list[Path]:
    layout = c.resolve_layout(path, metric)
    percents, source = c.percents_with_source(layout, remain_params_file_path)
    stderrs = _summary.trace_stderrs(layout) if metric == "trace" else {}
    label = c.metric_label(metric, c.curvature_of(layout))
    written = []
    for layer in c.layers_to_plot(layout, metric, layers):
        results = layout.read_metric(metric, layer)
        folder = layout.metric_dir(metric, layer)
        for iteration in c.select_iterations((i for i, e in results if e is not None), models, folder):
            x, y = _epoch_series(layout, metric, layer, results, iteration, epochs)
            title = c.plot_title(c.TITLES[metric], model_name, dataset_name, c.percent_of(percents, iteration, source))
            stderr = _summary.stderrs_of(stderrs, [(iteration, e) for e in x], layer)
            figure = render_epoch_trend(x, y, ylabel=label, title=title, stderr=stderr)
            target = Path(save_path) / c.folder_name(layer) / f"model{iteration}.jpg"
            written.append(c.save_figure(figure, target))
    return written


def _plot_best(metric: str, path, save_path, layers, models, model_name, dataset_name,
               remain_params_file_path) -> list[Path]:
    layout = c.resolve_layout(path, metric)
    percents, source = c.percents_with_source(layout, remain_params_file_path)
    stderrs = _summary.trace_stderrs(layout) if metric == "trace" else {}
    label = c.metric_label(metric, c.curvature_of(layout))
    written = []
    for layer in c.layers_to_plot(layout, metric, layers):
        keys = layout.list_results(metric, layer)
        iterations = c.select_iterations((i for i, _ in keys), models, layout.metric_dir(metric, layer))
        best = best_trend(layout, metric, layer, iterations)
        x = [c.percent_of(percents, i, source) for i in iterations]
        y = [float(best[i][1][0]) if metric == "top_eigenvalues" else float(best[i][1]) for i in iterations]
        title = c.plot_title(c.TITLES[metric], model_name, dataset_name)
        stderr = _summary.stderrs_of(stderrs, [(i, best[i][0]) for i in iterations], layer)
        figure = render_best_trend(x, y, ylabel=label, title=title, stderr=stderr)
        written.append(c.save_figure(figure, Path(save_path) / c.folder_name(layer) / "best_model.jpg"))
    return written


def plot_top_eigenvalues(path, save_path, layers=0, models=None, epochs=None, model_name="", dataset_name="",
                         remain_params_file_path=None) -> list[Path]:
    """The top eigenvalue against epoch, one figure per pruning iteration (the seed's function).

    Args:
        path: the ``top_eigenvalues`` folder of an extract output (as the seed), or the output folder itself.
        save_path: where the figures go: ``whole_model/model<i>.jpg`` and ``layer<k>/model<i>.jpg`` for
            iteration ``i`` (0 = dense; the file of tag ``001``).
        layers: how many per-layer folders (``top_eigenvalues_layer0`` …) to draw too; 0 = whole model only;
            ``None``: every per-layer folder present.
        models: as the seed, one more than the number of iterations to draw (it counts tag ``000``, the
            initial weights, which is never drawn): tags ``001`` to ``models-1``. ``None``: every iteration.
        epochs: how many epoch snapshots per iteration to draw (the first ones); ``None``: all.
        model_name, dataset_name: words of the titles.
        remain_params_file_path: percents remaining per iteration; default the output's ``remain_params.txt``
            (or ``summary.csv``).

    Returns:
        The files written. Missing or malformed inputs raise :class:`prunehess.errors.DataError`.
    """
    return _plot_within("top_eigenvalues", path, save_path, layers, models, epochs, model_name, dataset_name,
                        remain_params_file_path)


def plot_trace(path, save_path, layers=0, models=None, epochs=None, model_name="", dataset_name="",
               remain_params_file_path=None) -> list[Path]:
    """The Hutchinson trace against epoch, one figure per pruning iteration, with a band of ± 2 standard errors
    (the ``trace_stderr`` column of ``summary.csv``; none for outputs without it); parameters as
    :func:`plot_top_eigenvalues` with ``path`` a ``trace`` folder."""
    return _plot_within("trace", path, save_path, layers, models, epochs, model_name, dataset_name,
                        remain_params_file_path)


def plot_top_eigenvalues_best(path, save_path, layers=0, models=None, epochs=None, model_name="", dataset_name="",
                              remain_params_file_path=None) -> list[Path]:
    """The top eigenvalue of each iteration's best checkpoint against the percent remaining (the seed's
    function), saved as ``whole_model/best_model.jpg`` and ``layer<k>/best_model.jpg``.

    The best checkpoint is the iteration's ``best`` file (highest test accuracy); where a layout has none,
    the snapshot with the highest ``test_accuracy`` in ``summary.csv``. ``epochs`` is accepted for the seed's
    signature and unused. Other parameters as :func:`plot_top_eigenvalues`.
    """
    del epochs
    return _plot_best("top_eigenvalues", path, save_path, layers, models, model_name, dataset_name,
                      remain_params_file_path)


def plot_trace_best(path, save_path, layers=0, models=None, epochs=None, model_name="", dataset_name="",
                    remain_params_file_path=None) -> list[Path]:
    """The trace of each iteration's best checkpoint against the percent remaining, with a band of ± 2 standard
    errors (as :func:`plot_trace`); as :func:`plot_top_eigenvalues_best` with ``path`` a ``trace`` folder."""
    del epochs
    return _plot_best("trace", path, save_path, layers, models, model_name, dataset_name, remain_params_file_path)
