"""``compare_runs``: read several extract outputs, draw them side by side, and (with ``save_path``) write the
figures, the distances and the HTML page."""
from __future__ import annotations

import csv
import dataclasses
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from prunehess.plots import _common as c
from prunehess.plots.compare import figures as f
from prunehess.plots.compare.data import LAYER_QUANTITIES, QUANTITIES, COLUMNS, Run, load_runs
from prunehess.plots.compare.match import Matching, SpectrumDistances, match_levels, spectrum_distances
from prunehess.plots.compare.page import comparison_page
from prunehess.storage import atomic_write_bytes, atomic_write_text

__all__ = ["Comparison", "compare_runs", "DEFAULT_SAVE_PATH", "PAGE_NAME"]

DEFAULT_SAVE_PATH = Path("comparison")
PAGE_NAME = "compare.html"
DISTANCES_NAME = "spectrum_distances.csv"
CAPTION_NAMES = {"top_eigenvalue": "top eigenvalue", "trace": "trace", "lambda_min": "λmin",
                 "abs_min_over_max": "|λmin/λmax|", "test_accuracy": "test accuracy"}
GENERIC_LABELS = {"top_eigenvalue": "Top curvature eigenvalue", "trace": "Curvature trace"}


@dataclass(frozen=True)
class Comparison:
    """What :func:`compare_runs` found and drew.

    Attributes:
        runs: the runs read, in the order given (the first is the reference of the sparsity pairing).
        matching: how each run's sparsity levels were paired with the first run's.
        distances: Wasserstein-1 distances between the runs' spectra at the paired levels.
        figures: name -> figure, in the page's order (``overlay``, ``layers_<quantity>``, ``spectrum_distance``,
            ``spectrum_matrices`` with three runs or more, ``spectra_matched``); saved as ``<name>.png``.
        captions: name -> what the figure shows.
        notes: what could not be drawn or was paired approximately, one line each.
        written: the files written (empty without ``save_path``); page: the HTML page, or ``None``.
    """

    runs: tuple[Run, ...]
    matching: Matching
    distances: SpectrumDistances
    figures: dict[str, Figure]
    captions: dict[str, str]
    notes: tuple[str, ...]
    written: tuple[Path, ...] = ()
    page: Path | None = None
    title: str = field(default="")


def _quantity_notes(runs: Sequence[Run]) -> list[str]:
    notes = []
    for quantity in QUANTITIES:
        having = [run.label for run in runs if quantity in run.whole.values]
        lacking = [run for run in runs if quantity not in run.whole.values]
        if lacking and having:
            files = ", ".join(f"{run.label} ({run.layout.summary_file})" for run in lacking)
            notes.append(f"{f.QUANTITY_LABELS[quantity]}: drawn for {', '.join(having)} only; no "
                         f"{COLUMNS[quantity]} values in {files}")
    for run in runs:
        if not run.config:
            notes.append(f"{run.label}: no {run.layout.config_file}; its model and dataset were not checked")
    return notes


def common_layers(runs: Sequence[Run]) -> tuple[list[int], list[str]]:
    """The layer indices every run has, and notes on those that only some have."""
    every = sorted(set.intersection(*(set(run.layers) for run in runs)))
    without = [run.label for run in runs if not run.layers]
    if without and len(without) < len(runs):
        return every, [f"per-layer: {', '.join(without)} {'has' if len(without) == 1 else 'have'} no per-layer "
                       "results (extract --compute-each-layer); no layer compared"]
    notes = []
    for run in runs:
        extra = [k for k in run.layers if k not in every]
        if extra:
            notes.append(f"per-layer: {run.label}'s layer(s) {', '.join(map(str, extra))} are not in every run; "
                         "not compared")
    return every, notes


def _layer_figures(runs, layers, ylabels, title, note) -> tuple[dict, dict]:
    figures, captions = {}, {}
    names = runs[0].layer_names
    for quantity in LAYER_QUANTITIES:
        blocks = {c.layer_label(k, names): [run.blocks[k] for run in runs] for k in layers}
        if not any(quantity in s.values for series in blocks.values() for s in series):
            continue
        label = ylabels.get(quantity, f.QUANTITY_LABELS[quantity])
        figures[f"layers_{quantity}"] = f.render_layer_overlay(blocks, quantity, ylabel=label, note=note,
                                                               title=f"{title}: {label.split(' (')[0]} per layer")
        band = " (bands: ± 2 standard errors)" if quantity == "trace" else ""
        captions[f"layers_{quantity}"] = (f"{label} of each run's best checkpoints, one panel per layer (the "
                                          f"layer's diagonal block), against the percent of weights remaining{band}.")
    return figures, captions


def _spectrum_figures(distances: SpectrumDistances, title: str, note: str) -> tuple[dict, dict]:
    figures, captions = {}, {}
    labels, percents = distances.labels, distances.matching.reference
    if not np.isfinite(distances.distances).any():
        return figures, captions
    first = labels[0]
    to_first = {label: distances.to_first[j] for j, label in enumerate(labels) if j > 0}
    figures["spectrum_distance"] = f.render_spectrum_distances(
        percents, to_first, reference=first, note=note, title=f"{title}: spectra against {first}'s")
    captions["spectrum_distance"] = (f"Wasserstein-1 distance between each run's spectral density (SLQ, best "
                                     f"checkpoint, whole model) and {first}'s at the same sparsity, in eigenvalue "
                                     "units: the area between the two cumulative distributions.")
    if len(labels) > 2:
        figures["spectrum_matrices"] = f.render_distance_matrices(percents, distances.distances, labels,
                                                                  title=f"{title}: every pair of spectra")
        captions["spectrum_matrices"] = "Wasserstein-1 distances between every pair of runs' spectra, per level."
    figures["spectra_matched"] = f.render_matched_spectra(
        percents, distances.spectra, labels, distances=distances.to_first.T, paired=distances.matching.percents,
        note=note,
        title=f"{title}: cumulative spectra at matched sparsity")
    captions["spectra_matched"] = (f"Each run's cumulative spectral distribution at each of {first}'s levels "
                                   "(symmetric-log eigenvalue axis: linear near zero); W₁ is the area between a "
                                   f"curve and {first}'s.")
    return figures, captions


def _figures(runs: Sequence[Run], matching: Matching, distances: SpectrumDistances, layers: list[int]
             ) -> tuple[str, dict, dict]:
    title = " on ".join(name for name in (runs[0].model, runs[0].dataset) if name) or "Runs compared"
    generic = any(run.curvature != "hessian" for run in runs)
    ylabels = GENERIC_LABELS if generic else {}
    note = matching.note()
    figures = {"overlay": f.render_compare_overlay([run.whole for run in runs], ylabels=ylabels, note=note,
                                                   title=f"{title}: best checkpoint of each pruning iteration")}
    drawn = [CAPTION_NAMES[q] for q in QUANTITIES if any(q in r.whole.values for r in runs)]
    captions = {"overlay": f"The {', '.join(drawn)} of each run's best checkpoints against the percent of weights "
                           "remaining (dense on the left), one line per run; the trace's bands are ± 2 standard "
                           "errors of its estimate."}
    more = [_layer_figures(runs, layers, ylabels, title, note) if layers else ({}, {}),
            _spectrum_figures(distances, title, note)]
    for figs, caps in more:
        figures.update(figs)
        captions.update(caps)
    return title, figures, captions


def compare_runs(paths: Sequence[str | Path], labels: Sequence[str] | None = None,
                 save_path: str | Path | None = None, *, dpi: int = 100) -> Comparison:
    """Several extract outputs side by side: the best checkpoints' top eigenvalue, trace (± 2 standard errors),
    λmin, ``|λmin/λmax|`` and test accuracy against the percent of weights remaining, one line per run, for the
    whole model and each layer every run has; and the Wasserstein-1 distance between their spectra at matched
    sparsity.

    Args:
        paths: two or more extract output folders of one model and dataset (their ``config.yaml``); the first is
            the reference: the others' sparsity levels are paired with its levels by nearest remaining percent.
        labels: one name per run; default the folders' names (made unique), or the runs' curvatures when those
            differ (``curvature`` in ``config.yaml``: ``hessian``, ``ggn``, ``fisher``).
        save_path: a folder to write ``<figure>.png``, ``spectrum_distances.csv`` and ``compare.html`` (one
            self-contained page) into; nothing is written when ``None``.
        dpi: resolution of the saved figures.

    Returns:
        A :class:`Comparison` (figures, the numbers behind them, notes, files written).

    Raises:
        ConfigError: fewer than two folders, labels that do not fit, runs of different models or datasets.
        DataError: a folder, ``summary.csv`` or column missing, or a run without best checkpoints.
    """
    runs = tuple(load_runs(paths, labels))
    matching = match_levels(runs)
    distances = spectrum_distances(runs, matching)
    layers, layer_notes = common_layers(runs)
    title, figures, captions = _figures(runs, matching, distances, layers)
    notes = tuple(n for n in (matching.note(), *_quantity_notes(runs), *layer_notes, *distances.notes) if n)
    comparison = Comparison(runs=runs, matching=matching, distances=distances, figures=figures, captions=captions,
                            notes=notes, title=title)
    if save_path is None:
        return comparison
    return write_comparison(comparison, Path(save_path), dpi=dpi)


def distances_csv(distances: SpectrumDistances) -> str:
    """One row per level and run: the first run's percent, the run, its paired percent, W₁ to the first run."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    first = distances.labels[0]
    writer.writerow(["reference_percent", "run", "run_percent", f"w1_to_{first}"])
    for level, percent in enumerate(distances.matching.reference):
        for j, label in enumerate(distances.labels[1:], start=1):
            paired, value = distances.matching.percents[j, level], distances.distances[level, 0, j]
            writer.writerow([repr(float(percent)), label, "" if np.isnan(paired) else repr(float(paired)),
                             "" if np.isnan(value) else repr(float(value))])
    return buffer.getvalue()


def write_comparison(comparison: Comparison, save_path: Path, *, dpi: int = 100) -> Comparison:
    """Write the figures (PNG), the distances (CSV) and the page into ``save_path``; the comparison with
    ``written`` and ``page`` filled in. The figures stay drawn."""
    written, images = [], {}
    for name, figure in comparison.figures.items():
        images[name] = c.figure_bytes(figure, "png", dpi)
        path = save_path / f"{name}.png"
        atomic_write_bytes(path, images[name])
        written.append(path)
    table = save_path / DISTANCES_NAME
    atomic_write_text(table, distances_csv(comparison.distances))
    page = save_path / PAGE_NAME
    atomic_write_text(page, comparison_page(comparison.title, comparison.runs, comparison.distances,
                                            comparison.notes, [(n, comparison.captions[n], images[n]) for n in images]))
    return dataclasses.replace(comparison, written=(*written, table, page), page=page)
