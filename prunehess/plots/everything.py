"""``plot_all``: every figure of an output folder, each kind in its own folder, as the seed's notebook arranged them."""
from __future__ import annotations

from pathlib import Path

from prunehess.errors import DataError
from prunehess.plots import _summary
from prunehess.plots._common import resolve_root
from prunehess.plots.accuracy import plot_accuracy_best
from prunehess.plots.density import plot_density_eigen
from prunehess.plots.landscape import plot_geometry
from prunehess.plots.layer_match import plot_layer_match
from prunehess.plots.pruning_step import plot_pruning_step
from prunehess.plots.trends import plot_top_eigenvalues, plot_top_eigenvalues_best, plot_trace, plot_trace_best

__all__ = ["plot_all"]


def plot_all(path, save_path, layers=None, models=None, epochs=None, model_name="", dataset_name="",
             remain_params_file_path=None):
    """Every plot of an output folder, each in its own folder under ``save_path`` as the seed's notebook
    arranged them: ``top_eigenvalues/``, ``trace/``, ``SLQ/``, ``top_eigenvalues_best/``, ``trace_best/``, then
    ``accuracy_best/`` (with test accuracies in ``summary.csv``) and, with per-layer results, ``layer_match/``.
    ``layers=None`` draws every layer present. Plots whose results are absent (e.g. no ``trace`` folder) are
    skipped. Returns the files written.
    """
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
