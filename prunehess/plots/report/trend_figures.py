"""The report's trends of the top eigenvalue and the trace: every iteration against epoch, and each iteration's
best checkpoint against the percent remaining; traces with their band of ± 2 standard errors."""
from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from prunehess.errors import DataError
from prunehess.layout import OutputLayout, iteration_tag
from prunehess.plots import _common as c
from prunehess.plots import _summary
from prunehess.plots.report.page import Page
from prunehess.plots.trends import render_best_trend, stderr_band

__all__: list[str] = []

Series = dict[int, tuple[list[int], np.ndarray, "np.ndarray | None"]]


def _value(layout: OutputLayout, metric: str, values: np.ndarray, key: tuple[int, int | None],
           layer: int | None) -> float:
    if metric == "trace":
        return c.single_value(values, layout.result_path(metric, *key, layer))
    return float(values.reshape(-1)[0])


def scalar_series(layout: OutputLayout, metric: str, layer: int | None, stderrs: dict) -> Series:
    """``iteration -> (epochs, values, standard errors or None)`` of every epoch snapshot (top eigenvalue:
    the largest)."""
    found: dict[int, tuple[list[int], list[float]]] = {}
    for (iteration, epoch), values in layout.read_metric(metric, layer).items():
        if iteration < 0 or epoch is None:
            continue
        found.setdefault(iteration, ([], []))
        found[iteration][0].append(epoch)
        found[iteration][1].append(_value(layout, metric, values, (iteration, epoch), layer))
    series: Series = {}
    for iteration, (epochs, values) in sorted(found.items()):
        order = np.argsort(epochs)
        epochs = [epochs[k] for k in order]
        series[iteration] = (epochs, np.asarray(values)[order],
                             _summary.stderrs_of(stderrs, [(iteration, e) for e in epochs], layer))
    return series


def _within_figure(series: Series, metric: str, percents: dict[int, float] | None, where: str,
                   label: str) -> Figure:
    figure = Figure(figsize=(7.0, 4.4), layout="constrained")
    ax = figure.add_subplot()
    cmap = colormaps["viridis"]
    n = len(series)
    shown = []
    for idx, (iteration, (epochs, values, stderr)) in enumerate(series.items()):
        name = f"{percents[iteration]:.1f}%" if percents and iteration in percents else iteration_tag(iteration)
        color = cmap(0.9 * idx / max(n - 1, 1))
        ax.plot(epochs, values, marker="o", markersize=3, linewidth=1.2, color=color, label=name)
        band = stderr_band(ax, epochs, values, stderr, color=color, alpha=0.18, label=None)
        shown.append(values if band is None else np.concatenate(
            [values, *(p.vertices[:, 1] for p in band.get_paths())]))
    c.auto_value_scale(ax, np.concatenate(shown))
    c.epoch_axis(ax, [e for epochs, _, _ in series.values() for e in epochs])
    ax.set_ylabel(label)
    ax.set_title(f"{c.TITLES[metric]}: {where}, every iteration", fontsize="medium")
    ax.legend(fontsize="x-small", ncol=2 if n > 8 else 1, title="params remaining", title_fontsize="x-small")
    ax.grid(True, alpha=0.3)
    return figure


def trend_figures(page: Page, layout: OutputLayout, metric: str, layer: int | None,
                  percents: dict[int, float] | None, where: str, stderrs: dict) -> None:
    """``metric`` against epoch for every iteration, then each iteration's best checkpoint against percent; the
    standard errors ``(iteration, epoch, layer) -> stderr`` are the trace's, drawn for it alone."""
    stderrs = stderrs if metric == "trace" else {}
    label = c.metric_label(metric, c.curvature_of(layout))
    series = scalar_series(layout, metric, layer, stderrs)
    band = " (bands: ± 2 standard errors)" if any(s is not None for _, _, s in series.values()) else ""
    if series:
        page.figure(_within_figure(series, metric, percents, where, label),
                    f"{label} against epoch, one line per pruning iteration ({where}){band}.")
    keys = layout.list_results(metric, layer)
    iterations = sorted({i for i, _ in keys if i >= 0})
    if not iterations or not percents or any(i not in percents for i in iterations):
        page.note(f"{label} across iterations ({where}): skipped, no remaining percents.")
        return
    try:
        best = c.best_epochs(layout, metric, layer, iterations, keys)
    except DataError as err:
        page.note(f"{label} across iterations ({where}): skipped, {err}")
        return
    values = [_value(layout, metric, layout.read_result(metric, i, best[i], layer), (i, best[i]), layer)
              for i in iterations]
    stderr = _summary.stderrs_of(stderrs, [(i, best[i]) for i in iterations], layer)
    figure = render_best_trend([percents[i] for i in iterations], values, ylabel=label, stderr=stderr,
                               title=f"{c.TITLES[metric]}: {where}, best checkpoints")
    figure.axes[0].title.set_fontsize("medium")
    page.figure(figure, f"{label} of each iteration's best checkpoint ({where})"
                        f"{' (band: ± 2 standard errors)' if stderr is not None else ''}.")
