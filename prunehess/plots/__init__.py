"""Figures of an extract output: the seed tool's five plots, made robust, and what its users did by hand.

The seed's five saving functions keep their names and parameters
``(path, save_path, layers=0, models=None, epochs=None, model_name="", dataset_name="",
remain_params_file_path=None)`` and its files (``whole_model/model<i>.jpg``, ``layer<k>/model<i>.jpg``,
``best_model.jpg``); each is a thin wrapper over a renderer that takes numbers (and an optional ``ax``) and
returns a :class:`matplotlib.figure.Figure`. No figure is ever left open: figures are made without pyplot.
Added: the best checkpoints' test accuracy (:func:`plot_accuracy_best`), the three-panel summary of the best
checkpoints that opens the report (:func:`render_best_summary`), the layer match, and the HTML report.

Each name is imported from its module at first use (PEP 562), so that ``extract``, which draws only the ESD
PDFs, does not pay for matplotlib's axes, pyplot-free renderers and the report until they are used.

Example:
    >>> import prunehess.plots as pp
    >>> figure = pp.render_epoch_trend([0, 10, 20], [5.0, 4.0, 4.5], ylabel="Hessian trace")
    >>> figure.axes[0].get_xlabel()
    'Epoch'
"""
from prunehess._lazy import lazy_exports

_EXPORTS = {  # module: the names this package re-exports from it
    "accuracy": ("best_accuracy", "plot_accuracy_best", "render_accuracy_best"),
    "compare": ("compare_runs", "render_compare_overlay"),
    "density": ("DENSITY_STYLES", "DensityMap", "density_map", "load_spectra", "plot_density_eigen",
                "render_density_curves", "render_density_heatmap", "render_node_scatter"),
    "esd": ("render_esd",),
    "everything": ("plot_all",),
    "headline": ("BestSummary", "best_summary", "render_best_summary"),
    "layer_match": ("layer_match_distances", "plot_layer_match", "render_layer_match"),
    "report": ("render_report", "write_report"),
    "trends": ("best_trend", "epoch_trend", "plot_top_eigenvalues", "plot_top_eigenvalues_best", "plot_trace",
               "plot_trace_best", "render_best_trend", "render_epoch_trend"),
    # landscape geometry (prunehess landscape, prunehess barrier, the saved eigenvectors' overlaps)
    "barrier": ("plot_barrier", "read_barrier_table", "read_path", "render_barrier_paths"),
    "landscape": ("plot_geometry", "plot_landscape", "read_curve", "read_surface", "render_landscape_curves",
                  "render_landscape_panels", "render_surface"),
    "overlap": ("eigenvector_overlap", "layer_shares", "overlap_matrix", "plot_overlap", "read_eigenvectors",
                "render_layer_shares", "render_overlap_matrix", "subspace_overlap"),
    # the pruning step (prunehess pruning-step)
    "pruning_step": ("plot_pruning_step", "read_step_table", "render_loss_change", "render_saliency_agreement"),
}
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


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
