"""The report's spectra: density heat maps (outliers marked) and ESD curves of each iteration, and the distance of
each layer's spectrum to the whole model's."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import ListedColormap, Normalize
from matplotlib.figure import Figure

from prunehess.errors import DataError
from prunehess.layout import OutputLayout
from prunehess.plots import _common as c
from prunehess.plots import _outliers
from prunehess.plots.density import (
    COLORBAR_LABEL,
    default_linthresh,
    density_map,
    load_spectra,
    render_density_curves,
    render_density_heatmap,
)
from prunehess.plots.layer_match import layer_match_distances, render_layer_match
from prunehess.plots.report.page import Page, grid, iteration_name, layer_names

__all__: list[str] = []


def _side_bar(figure: Figure, mappable, label: str) -> None:
    cax = figure.add_axes((1 - 0.85 / figure.get_figwidth(), 0.2, 0.14 / figure.get_figwidth(), 0.65))
    figure.colorbar(mappable, cax=cax, label=label)


def _figure_legend(figure: Figure, axes: Sequence) -> None:
    """One legend under the grid for the markers of every panel."""
    entries: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    if entries:
        figure.legend(list(entries.values()), list(entries), loc="lower center", ncol=len(entries),
                      fontsize="small", frameon=False)


def _heatmaps(spectra: dict, tops: dict, grouped: dict, percents, linthresh: float) -> Figure:
    figure, axes = grid(len(spectra), right=1.0, bottom=0.95)
    vmax = max(float(density_map(group, num_points=200, linthresh=linthresh).density.max())
               for group in spectra.values())
    for ax, (iteration, group) in zip(axes, spectra.items()):
        render_density_heatmap(sorted(grouped[iteration]), group, ax=ax, linthresh=linthresh, num_points=200,
                               vmax=vmax, colorbar=False, top_eigenvalues=tops[iteration], legend=False)
        ax.set_title(iteration_name(iteration, percents), fontsize="small")
    _side_bar(figure, axes[0].collections[0], COLORBAR_LABEL)
    _figure_legend(figure, axes)
    return figure


def _curves(spectra: dict, grouped: dict, percents, linthresh: float) -> Figure:
    figure, axes = grid(len(spectra), right=1.0)
    all_epochs = [e for eps in grouped.values() for e in eps]
    epoch_range = (float(min(all_epochs)), float(max(all_epochs)))
    for ax, (iteration, group) in zip(axes, spectra.items()):
        epochs = sorted(grouped[iteration])
        render_density_curves(group, [f"epoch {e}" for e in epochs], ax=ax, linthresh=linthresh, values=epochs,
                              value_range=epoch_range, legend=False, num_points=250)
        ax.set_title(iteration_name(iteration, percents), fontsize="small")
    colours = ListedColormap(colormaps["viridis"](np.linspace(0.0, 0.9, 256)))  # the curves' colours
    _side_bar(figure, ScalarMappable(Normalize(*epoch_range), colours), "Epoch")
    return figure


def density_figures(page: Page, layout: OutputLayout, layer: int | None, percents: dict[int, float] | None,
                    where: str) -> None:
    """A heat map per iteration (one colour scale, outliers marked), then its ESD curves."""
    nodes = layout.list_results("density_eigen", layer)
    weights = layout.list_results("density_weight", layer)
    grouped = c.group_by_iteration(k for k in nodes if k in weights and k[0] >= 0 and k[1] is not None)
    if not grouped:
        page.note(f"Spectral densities ({where}): no snapshot has both density_eigen and density_weight.")
        return
    keys = {i: [(i, e) for e in sorted(eps)] for i, eps in sorted(grouped.items())}
    spectra = {i: load_spectra(layout, layer, k) for i, k in keys.items()}
    tops = {i: _outliers.load_top_eigenvalues(layout, layer, k) for i, k in keys.items()}
    linthresh = default_linthresh(np.concatenate([n for group in spectra.values() for n, _ in group]))
    page.figure(_heatmaps(spectra, tops, grouped, percents, linthresh),
                f"Spectral density over epoch × eigenvalue (symmetric-log axis; density per unit of that axis, "
                f"colours on a log scale), one panel per pruning iteration ({where}). The outliers lie under the "
                f"colour scale's floor: white dashes mark the Ritz nodes beyond the coloured bulk, diamonds each "
                f"epoch's largest eigenvalue (from top_eigenvalues where computed), with its value.")
    page.figure(_curves(spectra, grouped, percents, linthresh),
                f"Every ESD, one curve per epoch snapshot (colour: epoch), one panel per pruning iteration ({where}).")


def _layer_match_by_epoch(page: Page, layout: OutputLayout, usable: Sequence[int], labels: Sequence[str],
                          grouped: dict, percents: dict[int, float] | None) -> None:
    figure, axes = grid(len(grouped), ncols=3, panel=(4.4, 3.2), bottom=0.55 + 0.22 * int(np.ceil(len(usable) / 3)))
    for ax, (iteration, epochs) in zip(axes, sorted(grouped.items())):
        epochs = sorted(epochs)
        distances = layer_match_distances(layout, usable, [(iteration, e) for e in epochs])
        render_layer_match(epochs, distances, labels, ax=ax)
        ax.set_ylabel("W1 to the full spectrum", fontsize="small")
        ax.set_title(iteration_name(iteration, percents), fontsize="small")
        ax.get_legend().remove()
    figure.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=min(len(usable), 3),
                  fontsize="small", frameon=False)
    page.figure(figure, "Wasserstein-1 distance of each layer's spectral density to the whole model's, "
                        "against epoch, one panel per pruning iteration.")


def layer_match_section(page: Page, layout: OutputLayout, layers: Sequence[int],
                        percents: dict[int, float] | None) -> None:
    """W1 distance of each layer's spectrum to the whole model's: per iteration against epoch, then across."""
    usable = [k for k in layers if layout.metric_dir("density_eigen", k).is_dir()
              and layout.metric_dir("density_weight", k).is_dir()]
    if not usable or not layout.metric_dir("density_weight").is_dir():
        page.note("Layer match: no per-layer spectral densities in this output.")
        return
    names = layer_names(layout)
    labels = [c.layer_label(k, names) for k in usable]
    grouped = c.group_by_iteration(k for k in layout.list_results("density_eigen") if k[0] >= 0 and k[1] is not None)
    if grouped:  # snapshots by epoch (a zip of best checkpoints only has none)
        _layer_match_by_epoch(page, layout, usable, labels, grouped, percents)
    iterations = sorted({i for i, _ in layout.list_results("density_eigen") if i >= 0})
    if not percents or any(i not in percents for i in iterations):
        page.note("Layer match across iterations: skipped, no remaining percents.")
        return
    try:
        best = c.best_epochs(layout, "density_eigen", None, iterations, layout.list_results("density_eigen"))
    except DataError as err:
        page.note(f"Layer match across iterations: skipped, {err}")
        return
    distances = layer_match_distances(layout, usable, [(i, best[i]) for i in iterations])
    figure = render_layer_match([percents[i] for i in iterations], distances, labels, percent_axis=True,
                                title="Best checkpoint of each iteration")
    page.figure(figure, "Wasserstein-1 distance of each layer's spectral density to the whole model's, best "
                        "checkpoint of each pruning iteration.")
