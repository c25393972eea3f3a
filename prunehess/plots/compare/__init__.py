"""Runs side by side: several extract outputs of one model and dataset (lottery ticket against its controls —
re-initialised, randomly pruned, Hessian-pruned — or a Hessian run against a GGN run of the same zip) drawn on
one set of axes.

:func:`compare_runs` reads the outputs (:mod:`~prunehess.plots.compare.data`), pairs their sparsity levels with
the first run's by nearest remaining percent and compares their spectra at the paired levels
(:mod:`~prunehess.plots.compare.match`), draws the overlays (:mod:`~prunehess.plots.compare.figures`: renderers,
numbers in) and, given a folder, writes the figures and one self-contained HTML page
(:mod:`~prunehess.plots.compare.page`). ``prunehess compare OUT_A OUT_B …`` is the same from the shell.

Example:
    >>> from prunehess.plots.compare import RunSeries, render_compare_overlay
    >>> fig = render_compare_overlay([RunSeries("lt", [100.0, 50.0], {"top_eigenvalue": [9.0, 6.0]}),
    ...                               RunSeries("random", [100.0, 50.0], {"top_eigenvalue": [9.0, 12.0]})])
    >>> [ax.get_ylabel() for ax in fig.axes]
    ['Top Hessian eigenvalue']
"""
from prunehess.plots.compare.data import QUANTITIES, Run, RunSeries, load_runs
from prunehess.plots.compare.figures import (
    render_compare_overlay,
    render_distance_matrices,
    render_layer_overlay,
    render_matched_spectra,
    render_spectrum_distances,
)
from prunehess.plots.compare.match import Matching, SpectrumDistances, match_levels, spectrum_distances
from prunehess.plots.compare.run import DEFAULT_SAVE_PATH, PAGE_NAME, Comparison, compare_runs

__all__ = [
    "compare_runs", "Comparison", "DEFAULT_SAVE_PATH", "PAGE_NAME",
    "load_runs", "Run", "RunSeries", "QUANTITIES",
    "match_levels", "Matching", "spectrum_distances", "SpectrumDistances",
    "render_compare_overlay", "render_layer_overlay", "render_spectrum_distances", "render_distance_matrices",
    "render_matched_spectra",
]
