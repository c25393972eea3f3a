"""Renderers of a comparison: numbers in (one :class:`~prunehess.plots.compare.data.RunSeries` per run, or
arrays), a :class:`matplotlib.figure.Figure` out, no pyplot state. Run ``k`` has the ``k``-th colour and marker of
the cycle in every figure, so a run reads the same everywhere.

Example:
    >>> from prunehess.plots.compare.data import RunSeries
    >>> a = RunSeries("lt", [100.0, 50.0], {"trace": [40.0, 30.0]}, trace_stderr=[1.0, 2.0])
    >>> b = RunSeries("random", [100.0, 50.0], {"trace": [40.0, 45.0]})
    >>> fig = render_compare_overlay([a, b])
    >>> [line.get_label() for line in fig.axes[0].lines], fig.axes[0].lines[1].get_ydata().tolist()
    (['lt', 'random'], [40.0, 45.0])
"""
from __future__ import annotations

import textwrap
from typing import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from prunehess.plots import _common as c
from prunehess.plots.accuracy import ACCURACY_LABEL, MIN_SPAN
from prunehess.plots.compare.data import QUANTITIES, RunSeries
from prunehess.plots.compare.match import EXACT_GAP
from prunehess.plots.trends import stderr_band

__all__ = ["render_compare_overlay", "render_layer_overlay", "render_spectrum_distances",
           "render_distance_matrices", "render_matched_spectra", "QUANTITY_LABELS", "run_style"]

QUANTITY_LABELS = {"top_eigenvalue": "Top Hessian eigenvalue", "trace": "Hessian trace",
                   "lambda_min": "λmin (smallest eigenvalue)", "abs_min_over_max": "|λmin / λmax|",
                   "test_accuracy": ACCURACY_LABEL}
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
W1_LABEL = "Wasserstein-1 distance"


def run_style(k: int) -> dict:
    """Colour, marker and line style of run ``k`` (the same in every figure)."""
    return {"color": f"C{k % 10}", "marker": MARKERS[k % len(MARKERS)],
            "linestyle": ("-", "--", "-.", ":")[k // 10 % 4]}


def _percent_ticks(percents: np.ndarray, min_gap: float = 0.04) -> np.ndarray:
    """The levels to label: every one, less those within ``min_gap`` decades of one kept (labels would overlap)."""
    kept: list[float] = []
    for p in sorted(np.unique(percents[np.isfinite(percents)]), reverse=True):
        if not kept or p <= 0 or kept[-1] <= 0 or np.log10(kept[-1] / p) >= min_gap:
            kept.append(p)
    return np.array(kept)


def _draw(ax: Axes, series: Sequence[RunSeries], quantity: str, ylabel: str | None = None) -> list[str]:
    """One line per run that has ``quantity`` (the trace with its ± 2 SE band); returns the runs without it."""
    lacking, shown = [], []
    for k, run in enumerate(series):
        if quantity not in run.values:
            lacking.append(run.label)
            continue
        y = run.values[quantity]
        (line,) = ax.plot(run.percents, y, markersize=4.5, linewidth=1.5, label=run.label, **run_style(k))
        shown.append(y)
        if quantity == "trace":
            band = stderr_band(ax, run.percents, y, run.trace_stderr, color=line.get_color(), alpha=0.18, label=None)
            shown += [] if band is None else [p.vertices[:, 1] for p in band.get_paths()]
    c.percent_axis(ax, _percent_ticks(np.concatenate([run.percents for run in series])))
    values = np.concatenate(shown) if shown else np.array([])
    if quantity == "test_accuracy":
        _accuracy_axis(ax, values)
    else:
        c.auto_value_scale(ax, values)
    ax.set_ylabel(ylabel or QUANTITY_LABELS[quantity])
    ax.grid(True, alpha=0.3)
    if lacking:
        ax.text(0.01, 0.02, f"no {QUANTITY_LABELS[quantity].split(' (')[0]} for: {', '.join(lacking)}",
                transform=ax.transAxes, fontsize="x-small", color="0.35", style="italic", va="bottom")
    return lacking


def _accuracy_axis(ax: Axes, values: np.ndarray) -> None:
    """Linear, in percent, spanning at least :data:`~prunehess.plots.accuracy.MIN_SPAN`."""
    ax.set_yscale("linear")
    finite = values[np.isfinite(values)]
    if finite.size and finite.max() - finite.min() < MIN_SPAN:
        middle = 0.5 * (finite.max() + finite.min())
        lo = min(max(middle - MIN_SPAN / 2, 0.0), 1.0 - MIN_SPAN)
        ax.set_ylim(lo, lo + MIN_SPAN)
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=1))


def _grid(n: int, ncols: int, panel: tuple[float, float], extra_height: float = 0.9) -> tuple[Figure, list[Axes]]:
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    figure = Figure(figsize=(panel[0] * ncols, panel[1] * nrows + extra_height), layout="constrained")
    axes = list(figure.subplots(nrows, ncols, squeeze=False).ravel())
    for ax in axes[n:]:
        ax.set_visible(False)
    return figure, axes


def _wrap(note: str, inches: float) -> str:
    return "\n".join(textwrap.wrap(note, width=max(20, int(13 * inches))))


def _finish(figure: Figure, axes: Sequence[Axes], labels: Sequence[str], title: str, note: str,
            same_x: bool = True) -> None:
    """Hide the x labels of panels with a panel below (``same_x``: all panels have one x axis); the runs' legend
    (and the note) in the grid's empty slot when it has one, else the legend on top under the title and the note
    at the bottom."""
    visible = [ax for ax in axes if ax.get_visible()]
    for ax in visible if same_x else ():
        box = ax.get_position()
        if any(o is not ax and abs(o.get_position().x0 - box.x0) < 1e-6 and o.get_position().y0 < box.y0
               for o in visible):
            ax.set_xlabel("")
            ax.tick_params(axis="x", labelbottom=False)
    handles: dict[str, object] = {}
    for ax in visible:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    ordered = [label for label in labels if label in handles]
    spare = [ax for ax in axes if not ax.get_visible()]
    if spare:
        slot = spare[0]
        slot.set_visible(True)
        slot.axis("off")
        if ordered:
            slot.legend([handles[label] for label in ordered], ordered, loc="upper center", fontsize="medium",
                        frameon=False, title="runs", title_fontsize="medium")
        if note:
            slot.text(0.5, 0.45, _wrap(note, 0.9 * slot.get_position().width * figure.get_figwidth()),
                      transform=slot.transAxes, ha="center", va="top", fontsize="small", color="0.3")
        if title:
            figure.suptitle(title)
        return
    if ordered:
        figure.legend([handles[label] for label in ordered], ordered, loc="outside upper center",
                      ncol=min(len(ordered), 5), fontsize="small", frameon=False, title=title or None,
                      title_fontsize="large")
    elif title:
        figure.suptitle(title)
    if note:
        figure.supxlabel(_wrap(note, figure.get_figwidth()), fontsize="small", color="0.3")


def render_compare_overlay(series: Sequence[RunSeries], *, quantities: Sequence[str] | None = None, title: str = "",
                           note: str = "", ylabels: Mapping[str, str] | None = None,
                           axes: Sequence[Axes] | None = None) -> Figure:
    """Several runs against the percent of weights remaining (dense left, sparse right), one panel per quantity
    that any run has (top eigenvalue, trace with ± 2 standard errors, λmin, ``|λmin/λmax|``, test accuracy, in
    that order), one line per run; a panel names the runs it lacks.

    Args:
        series: one :class:`~prunehess.plots.compare.data.RunSeries` per run, in legend order.
        quantities: the panels to consider (default all of :data:`~prunehess.plots.compare.data.QUANTITIES`).
        title: the figure's title; note: a line under the panels (e.g. how sparsity levels were paired).
        ylabels: quantity -> y label, replacing the default.
        axes: one axes per panel drawn; default a new figure (one column up to three panels, else two).
    """
    wanted = [q for q in (quantities or QUANTITIES) if any(q in run.values for run in series)]
    if not wanted:
        raise ValueError(f"compare overlay: none of the runs has {', '.join(quantities or QUANTITIES)}")
    if axes is None:
        figure, axes = _grid(len(wanted), 1 if len(wanted) <= 3 else 2, (6.0, 2.6), 1.0 + 0.4 * bool(note))
    elif len(axes) != len(wanted):
        raise ValueError(f"compare overlay: {len(axes)} axes for {len(wanted)} panels ({', '.join(wanted)})")
    for ax, quantity in zip(axes, wanted):
        _draw(ax, series, quantity, (ylabels or {}).get(quantity))
    figure = axes[0].figure
    _finish(figure, axes, [run.label for run in series], title, note)
    return figure


def render_layer_overlay(blocks: Mapping[str, Sequence[RunSeries]], quantity: str, *, title: str = "",
                         note: str = "", ylabel: str | None = None, ncols: int = 3) -> Figure:
    """One panel per layer (``blocks``: panel title -> the runs' series of that layer), each with one line per
    run of ``quantity`` against the percent of weights remaining."""
    if not blocks:
        raise ValueError("layer overlay: no layers")
    figure, axes = _grid(len(blocks), ncols, (4.3, 3.0), 0.8 + 0.4 * bool(note))
    labels: list[str] = []
    for ax, (name, series) in zip(axes, blocks.items()):
        _draw(ax, series, quantity, ylabel)
        ax.set_title(name, fontsize="medium")
        labels += [run.label for run in series if run.label not in labels]
    _finish(figure, axes, labels, title, note)
    return figure


def render_spectrum_distances(percents: Sequence[float], distances: Mapping[str, Sequence[float]], *,
                              reference: str = "", title: str = "", note: str = "", ax: Axes | None = None,
                              first_style: int = 1) -> Figure:
    """Wasserstein-1 distance of each run's spectrum to the reference run's against the reference's percent of
    weights remaining (NaN: not compared at that level). Run ``j`` of ``distances`` takes style ``first_style +
    j`` (the first run, the reference, is style 0)."""
    figure, ax = c.new_axes(ax, (6.4, 4.0))
    x = np.asarray(percents, dtype=float)
    for j, (label, values) in enumerate(distances.items()):
        ax.plot(x, np.asarray(values, dtype=float), markersize=5, linewidth=1.5, label=label,
                **run_style(first_style + j))
    c.percent_axis(ax, x)
    ax.set_ylim(bottom=0)
    ax.set_ylabel(f"{W1_LABEL} to {reference}" if reference else W1_LABEL)
    ax.grid(True, alpha=0.3)
    if distances:
        ax.legend(fontsize="small")
    if title:
        ax.set_title(title, fontsize="medium")
    if note:
        figure.supxlabel(_wrap(note, figure.get_figwidth()), fontsize="small", color="0.3")
    return figure


def render_distance_matrices(percents: Sequence[float], matrices: np.ndarray, labels: Sequence[str], *,
                             title: str = "", ncols: int = 4) -> Figure:
    """One heat map per level (``matrices``: ``(levels, runs, runs)`` Wasserstein-1 distances, NaN blank), the
    numbers written in the cells, one colour scale."""
    matrices = np.asarray(matrices, dtype=float)
    n = len(labels)
    figure, axes = _grid(len(percents), ncols, (1.2 + 0.75 * n, 0.9 + 0.7 * n), 0.6)
    vmax = float(np.nanmax(matrices)) if np.isfinite(matrices).any() else 1.0
    image = None
    for ax, percent, matrix in zip(axes, percents, matrices):
        image = ax.imshow(matrix, cmap="viridis", vmin=0.0, vmax=vmax or 1.0)
        for (a, b), value in np.ndenumerate(matrix):
            if np.isfinite(value):
                ax.text(b, a, f"{value:.2g}", ha="center", va="center", fontsize="x-small",
                        color="white" if value < 0.6 * vmax else "black")
        ax.set_xticks(range(n), labels, rotation=45, ha="right", fontsize="small")
        ax.set_yticks(range(n), labels, fontsize="small")
        ax.set_title(f"{percent:.1f} % remaining", fontsize="medium")
    if image is not None:
        figure.colorbar(image, ax=[ax for ax in axes if ax.get_visible()], label=W1_LABEL, shrink=0.8)
    if title:
        figure.suptitle(title)
    return figure


def _symlog_scale(ax: Axes, lo: float, hi: float) -> None:
    scale = max(abs(lo), abs(hi), 1e-12)
    linthresh = 10.0 ** np.floor(np.log10(scale * 1e-3))
    ax.set_xscale("symlog", linthresh=linthresh, linscale=0.5)
    ax.set_xticks(c.symlog_ticks(lo, hi, linthresh, max_ticks=6))


def _level_title(level: int, percent: float, labels: Sequence[str], paired: np.ndarray | None) -> str:
    """``"22.2 % remaining"``, and the other runs' levels paired with it where they differ."""
    title = f"{percent:.1f} % remaining"
    if paired is None:
        return title
    others = [f"{labels[j]} {paired[j, level]:.1f}" for j in range(1, len(labels))
              if np.isfinite(paired[j, level]) and abs(paired[j, level] - percent) > EXACT_GAP]
    return title + (f"\n({', '.join(others)})" if others else "")


def render_matched_spectra(percents: Sequence[float], spectra: Sequence[Sequence[tuple | None]],
                           labels: Sequence[str], *, distances: np.ndarray | None = None,
                           paired: np.ndarray | None = None, title: str = "", note: str = "",
                           ncols: int = 3) -> Figure:
    """The cumulative spectral distribution ``F(λ)`` of each run at each level (``spectra[l][j]``: run ``j``'s
    ``(nodes, weights)`` at level ``l``, or ``None``), one panel per level on a symmetric-log eigenvalue axis;
    the area between two curves is their Wasserstein-1 distance (``distances[l, j]``: run ``j``'s to the first
    run, written in the panel). ``paired[j, l]``: the percent of run ``j``'s level paired with level ``l``
    (named in the panel's title where it differs)."""
    figure, axes = _grid(len(percents), ncols, (4.3, 3.0), 0.8 + 0.4 * bool(note))
    for level, (ax, percent) in enumerate(zip(axes, percents)):
        drawn = [(j, m) for j, m in enumerate(spectra[level]) if m is not None]
        if not drawn:
            ax.text(0.5, 0.5, "no spectra", transform=ax.transAxes, ha="center", color="0.4")
            continue
        lo = min(float(np.min(m[0])) for _, m in drawn)
        hi = max(float(np.max(m[0])) for _, m in drawn)
        for j, (nodes, weights) in drawn:
            order = np.argsort(nodes)
            x = np.concatenate([[lo], nodes[order], [hi]])
            y = np.concatenate([[0.0], np.cumsum(weights[order]), [1.0]])
            style = run_style(j)
            ax.step(x, y, where="post", color=style["color"], linestyle=style["linestyle"], linewidth=1.4,
                    label=labels[j])
        _symlog_scale(ax, lo, hi)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(_level_title(level, percent, labels, paired), fontsize="medium")
        ax.set_xlabel("Eigenvalue")
        ax.set_ylabel("Fraction of eigenvalues ≤ λ")
        ax.grid(True, alpha=0.3)
        if distances is not None:
            lines = [f"{labels[j]} {distances[level, j]:.3g}" for j, _ in drawn
                     if j > 0 and np.isfinite(distances[level, j])]
            if lines:
                ax.text(0.03, 0.97, "\n".join([f"W₁ to {labels[0]}:", *lines]), transform=ax.transAxes, va="top",
                        fontsize="x-small")
    _finish(figure, axes, labels, title, note, same_x=False)
    return figure
