"""Figures of an extract output: the seed tool's five plots, made robust, and what its users did by hand.

The seed's five saving functions keep their names and parameters
``(path, save_path, layers=0, models=None, epochs=None, model_name="", dataset_name="",
remain_params_file_path=None)`` and its files (``whole_model/model<i>.jpg``, ``layer<k>/model<i>.jpg``,
``best_model.jpg``); each is a thin wrapper over a renderer that takes numbers (and an optional ``ax``) and
returns a :class:`matplotlib.figure.Figure`. No figure is ever left open: figures are made without pyplot.
Added: the best checkpoints' test accuracy (:func:`plot_accuracy_best`), the three-panel summary of the best
checkpoints that opens the report (:func:`render_best_summary`), the layer match, and the HTML report.

Example:
    >>> import prunehess.plots as pp
    >>> figure = pp.render_epoch_trend([0, 10, 20], [5.0, 4.0, 4.5], ylabel="Hessian trace")
    >>> figure.axes[0].get_xlabel()
    'Epoch'
"""
from prunehess.plots.accuracy import best_accuracy, plot_accuracy_best, render_accuracy_best
from prunehess.plots.compare import compare_runs, render_compare_overlay
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
from prunehess.plots.headline import BestSummary, best_summary, render_best_summary
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

# landscape geometry (prunehess landscape, prunehess barrier, the saved eigenvectors' overlaps)
from prunehess.plots.barrier import plot_barrier, read_barrier_table, read_path, render_barrier_paths
from prunehess.plots.landscape import (plot_geometry, plot_landscape, read_curve, read_surface,
                                       render_landscape_curves, render_landscape_panels, render_surface)
from prunehess.plots.overlap import (eigenvector_overlap, layer_shares, overlap_matrix, plot_overlap,
                                     read_eigenvectors, render_layer_shares, render_overlap_matrix, subspace_overlap)

# the pruning step (prunehess pruning-step)
from prunehess.plots.pruning_step import (plot_pruning_step, read_step_table, render_loss_change,
                                          render_saliency_agreement)

__all__ = [
    # the seed's five saving functions, and the layer match
    "plot_top_eigenvalues",
    "plot_trace",
    "plot_density_eigen",
    "plot_top_eigenvalues_best",
    "plot_trace_best",
    "plot_accuracy_best",
    "plot_layer_match",
    "plot_all",
    # renderers: numbers in, figure out
    "render_epoch_trend",
    "render_best_trend",
    "render_accuracy_best",
    "render_best_summary",
    "render_density_heatmap",
    "render_node_scatter",
    "render_density_curves",
    "render_esd",
    "render_layer_match",
    # numbers behind the figures
    "epoch_trend",
    "best_trend",
    "best_accuracy",
    "best_summary",
    "BestSummary",
    "load_spectra",
    "density_map",
    "DensityMap",
    "DENSITY_STYLES",
    "layer_match_distances",
    # the HTML report
    "write_report",
    "render_report",
    # runs side by side
    "compare_runs",
    "render_compare_overlay",
    # landscape geometry: figures of prunehess landscape / barrier, and eigenspace overlaps
    "plot_landscape", "plot_barrier", "plot_overlap", "plot_geometry",
    "render_landscape_curves", "render_landscape_panels", "render_surface", "render_barrier_paths",
    "render_overlap_matrix", "render_layer_shares",
    "read_curve", "read_surface", "read_path", "read_barrier_table", "read_eigenvectors",
    "subspace_overlap", "eigenvector_overlap", "layer_shares", "overlap_matrix",
    # the pruning step: figures of prunehess pruning-step
    "plot_pruning_step", "render_loss_change", "render_saliency_agreement", "read_step_table",
]


def plot_all(path, save_path, layers=None, models=None, epochs=None, model_name="", dataset_name="",
             remain_params_file_path=None):
    """Every plot of an output folder, each in its own folder under ``save_path`` as the seed's notebook
    arranged them: ``top_eigenvalues/``, ``trace/``, ``SLQ/``, ``top_eigenvalues_best/``, ``trace_best/``, then
    ``accuracy_best/`` (with test accuracies in ``summary.csv``) and, with per-layer results, ``layer_match/``.
    ``layers=None`` draws every layer present. Plots whose results are absent (e.g. no ``trace`` folder) are
    skipped. Returns the files written.
    """
    from pathlib import Path

    from prunehess.errors import DataError
    from prunehess.plots import _summary
    from prunehess.plots._common import resolve_root

    layout = resolve_root(path)
    save_path = Path(save_path)
    common = dict(layers=layers, models=models, epochs=epochs, model_name=model_name, dataset_name=dataset_name,
                  remain_params_file_path=remain_params_file_path)
    jobs = [  # (metric read, function, folder, whether it draws snapshots against epoch)
        ("top_eigenvalues", plot_top_eigenvalues, "top_eigenvalues", True),
        ("trace", plot_trace, "trace", True),
        ("density_eigen", plot_density_eigen, "SLQ", True),
        ("top_eigenvalues", plot_top_eigenvalues_best, "top_eigenvalues_best", False),
        ("trace", plot_trace_best, "trace_best", False),
    ]
    written = []
    for metric, function, folder, by_epoch in jobs:
        if not layout.metric_dir(metric).is_dir():
            continue
        if by_epoch and not any(i >= 0 and e is not None for i, e in layout.list_results(metric)):
            continue  # best checkpoints only (no snapshots): nothing to draw against epoch
        written += function(layout.root, save_path / folder, **common)
    if _summary.best_accuracies(layout):
        written += plot_accuracy_best(layout.root, save_path / "accuracy_best", **common)
    if layers != 0 and layout.layers_present() and layout.metric_dir("density_eigen").is_dir():
        written += plot_layer_match(layout.root, save_path / "layer_match", **common)
    # landscape geometry: landscape/, barrier/, overlap/ when prunehess landscape / barrier or saved eigenvectors
    written += plot_geometry(layout.root, save_path, **common)
    # the pruning step: pruning_step/ when prunehess pruning-step ran
    if layout.pruning_step_table_file.is_file():
        written += plot_pruning_step(layout.root, save_path / "pruning_step", models=models, model_name=model_name,
                                     dataset_name=dataset_name)
    if not written:
        raise DataError(f"{layout.root}: no results to plot (no top_eigenvalues, trace or density_eigen folder)")
    return written
