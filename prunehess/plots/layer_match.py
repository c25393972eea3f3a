"""How well each layer's Hessian block matches the whole network's spectrum (the LayerHessians question).

For every checkpoint, the Wasserstein-1 distance between the spectral density of layer k's diagonal block
(its SLQ nodes and weights) and that of the full Hessian:

    W1(μ_k, μ) = ∫ |F_k(λ) − F(λ)| dλ,

with F_k, F the cumulative distributions of the two discrete measures. A layer whose distance stays small
carries the shape of the whole spectrum; the figures follow it across epochs within an iteration and across
pruning iterations (best checkpoints), one line per layer.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from prunehess.errors import DataError
from prunehess.layout import OutputLayout
from prunehess.plots import _common as c
from prunehess.plots.density import load_spectra

__all__ = ["layer_match_distances", "render_layer_match", "plot_layer_match"]

YLABEL = "Wasserstein-1 distance to the full spectrum"


def layer_match_distances(layout: OutputLayout, layers: Sequence[int],
                          keys: Sequence[tuple[int, int | None]]) -> np.ndarray:
    """``(len(keys), len(layers))`` W1 distances of each layer's spectrum to the whole model's
    (:func:`prunehess.estimators.wasserstein_distance`)."""
    from prunehess.estimators.wasserstein import wasserstein_distance  # imports torch: only when needed

    whole = load_spectra(layout, None, keys)
    out = np.empty((len(keys), len(layers)))
    for j, layer in enumerate(layers):
        for i, ((nodes_l, weights_l), (nodes, weights)) in enumerate(zip(load_spectra(layout, layer, keys), whole)):
            out[i, j] = wasserstein_distance(nodes_l, weights_l, nodes, weights)
    return out


def render_layer_match(x: Sequence[float], distances: np.ndarray, labels: Sequence[str], *, title: str = "",
                       ax: Axes | None = None, percent_axis: bool = False) -> Figure:
    """One line per layer: its W1 distance to the full spectrum against ``x`` (epochs, or remaining percents
    when ``percent_axis``). Log y when the distances span decades."""
    x = np.asarray(x, dtype=float).reshape(-1)
    d = np.asarray(distances, dtype=float).reshape(x.size, -1)
    if d.shape[1] != len(labels):
        raise ValueError(f"layer match: {d.shape[1]} columns of distances but {len(labels)} labels")
    figure, ax = c.new_axes(ax, figsize=(7.0, 4.6))
    for j, label in enumerate(labels):
        ax.plot(x, d[:, j], marker="o", markersize=3, linewidth=1.3, label=label)
    if percent_axis:
        c.percent_axis(ax, x)
    else:
        c.epoch_axis(ax, x)
    c.auto_value_scale(ax, d)
    ax.set_ylabel(YLABEL)
    if title:
        ax.set_title(title)
    if labels:
        ax.legend(fontsize="x-small", ncol=2 if len(labels) > 6 else 1)
    ax.grid(True, alpha=0.3)
    return figure


def _layer_names(layout: OutputLayout) -> Mapping[int, str]:
    if not layout.layers_file.is_file():
        return {}
    return {k: name for k, name, _ in layout.read_layers()}


def plot_layer_match(path, save_path, layers=None, models=None, epochs=None, model_name="", dataset_name="",
                     remain_params_file_path=None) -> list[Path]:
    """Per-layer against full spectrum: W1 distance of each layer's ESD to the whole model's.

    Writes ``save_path/model<i>.jpg`` for each iteration ``i`` (distance against epoch) and
    ``save_path/best_model.jpg`` (best checkpoint of each iteration against the percent remaining).

    Args:
        path: the ``density_eigen`` folder of an extract output, or the output folder.
        layers: how many per-layer folders to compare (the first ones); ``None``: every one present.
        Others: as :func:`prunehess.plots.plot_top_eigenvalues`.
    """
    metric = "density_eigen"
    layout = c.resolve_layout(path, metric)
    chosen_layers = [k for k in c.layers_to_plot(layout, metric, layers) if k is not None]
    if not chosen_layers:
        raise DataError(f"{layout.root}: no per-layer results (density_eigen_layer<k> folders); run extract with "
                        "--compute-each-layer")
    percents, source = c.percents_with_source(layout, remain_params_file_path)
    names = _layer_names(layout)
    labels = [c.layer_label(k, names) for k in chosen_layers]
    keys = layout.list_results(metric, None)
    grouped = c.group_by_iteration(keys)
    folder = layout.metric_dir(metric)
    snapshots = c.snapshot_iterations(grouped)  # none when the run kept best checkpoints only
    iterations = c.select_iterations(snapshots, models, folder) if snapshots else []
    save_path = Path(save_path)
    written = []
    for iteration in iterations:
        chosen = c.select_epochs(grouped[iteration], epochs, folder, iteration)
        distances = layer_match_distances(layout, chosen_layers, [(iteration, e) for e in chosen])
        title = c.plot_title(c.TITLES["layer_match"], model_name, dataset_name,
                             c.percent_of(percents, iteration, source))
        figure = render_layer_match(chosen, distances, labels, title=title)
        written.append(c.save_figure(figure, save_path / f"model{iteration}.jpg"))
    across = iterations or c.select_iterations([i for i in grouped if i >= 0], models, folder)
    best = c.best_epochs(layout, metric, None, across, keys)
    distances = layer_match_distances(layout, chosen_layers, [(i, best[i]) for i in across])
    x = [c.percent_of(percents, i, source) for i in across]
    figure = render_layer_match(x, distances, labels, percent_axis=True,
                                title=c.plot_title(c.TITLES["layer_match"], model_name, dataset_name))
    written.append(c.save_figure(figure, save_path / "best_model.jpg"))
    return written
