"""Figures of an extract output: the seed tool's five plots, made robust, and what its users did by hand.

The seed's five saving functions keep their names and parameters
``(path, save_path, layers=0, models=None, epochs=None, model_name="", dataset_name="",
remain_params_file_path=None)`` and its files (``whole_model/model<i>.jpg``, ``layer<k>/model<i>.jpg``,
``best_model.jpg``); each is a thin wrapper over a renderer that takes numbers (and an optional ``ax``) and
returns a :class:`matplotlib.figure.Figure`. No figure is ever left open: figures are made without pyplot.

Example:
    >>> import prunehess.plots as pp
    >>> figure = pp.render_epoch_trend([0, 10, 20], [5.0, 4.0, 4.5], ylabel="Hessian trace")
    >>> figure.axes[0].get_xlabel()
    'Epoch'
"""
from prunehess.plots.density import (
    DENSITY_STYLES,
    DensityMap,
    density_map,
    load_spectra,
    plot_density_eigen,
    render_density_curves,
    render_density_heatmap,
    render_node_scatter,
)
from prunehess.plots.esd import render_esd
from prunehess.plots.layer_match import layer_match_distances, plot_layer_match, render_layer_match
from prunehess.plots.report import render_report, write_report
from prunehess.plots.trends import (
    best_trend,
    epoch_trend,
    plot_top_eigenvalues,
    plot_top_eigenvalues_best,
    plot_trace,
    plot_trace_best,
    render_best_trend,
    render_epoch_trend,
)

__all__ = [
    # the seed's five saving functions, and the layer match
    "plot_top_eigenvalues",
    "plot_trace",
    "plot_density_eigen",
    "plot_top_eigenvalues_best",
    "plot_trace_best",
    "plot_layer_match",
    "plot_all",
    # renderers: numbers in, figure out
    "render_epoch_trend",
    "render_best_trend",
    "render_density_heatmap",
    "render_node_scatter",
    "render_density_curves",
    "render_esd",
    "render_layer_match",
    # numbers behind the figures
    "epoch_trend",
    "best_trend",
    "load_spectra",
    "density_map",
    "DensityMap",
    "DENSITY_STYLES",
    "layer_match_distances",
    # the HTML report
    "write_report",
    "render_report",
]


def plot_all(path, save_path, layers=None, models=None, epochs=None, model_name="", dataset_name="",
             remain_params_file_path=None):
    """Every plot of an output folder, each in its own folder under ``save_path`` as the seed's notebook
    arranged them: ``top_eigenvalues/``, ``trace/``, ``SLQ/``, ``top_eigenvalues_best/``, ``trace_best/`` and,
    with per-layer results, ``layer_match/``. ``layers=None`` draws every layer present. Plots whose results
    are absent (e.g. no ``trace`` folder) are skipped. Returns the files written.
    """
    from pathlib import Path

    from prunehess.errors import DataError
    from prunehess.plots._common import resolve_root

    layout = resolve_root(path)
    save_path = Path(save_path)
    common = dict(layers=layers, models=models, epochs=epochs, model_name=model_name, dataset_name=dataset_name,
                  remain_params_file_path=remain_params_file_path)
    jobs = [
        ("top_eigenvalues", plot_top_eigenvalues, "top_eigenvalues"),
        ("trace", plot_trace, "trace"),
        ("density_eigen", plot_density_eigen, "SLQ"),
        ("top_eigenvalues", plot_top_eigenvalues_best, "top_eigenvalues_best"),
        ("trace", plot_trace_best, "trace_best"),
    ]
    written = []
    for metric, function, folder in jobs:
        if layout.metric_dir(metric).is_dir():
            written += function(layout.root, save_path / folder, **common)
    if layers != 0 and layout.layers_present() and layout.metric_dir("density_eigen").is_dir():
        written += plot_layer_match(layout.root, save_path / "layer_match", **common)
    if not written:
        raise DataError(f"{layout.root}: no results to plot (no top_eigenvalues, trace or density_eigen folder)")
    return written
