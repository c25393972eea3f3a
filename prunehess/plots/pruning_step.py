"""The pruning step (``prunehess pruning-step``): the table's format, its reader, and two figures.

``pruning_step/pruning_step.csv`` (and ``pruning_step/step_<tagA>_<tagB>.csv``, one step's rows) has one row per step
from prune iteration ``i`` to ``i+1`` for all prunable weights together (``layer`` empty, ``name`` ``all``), then one
per prunable weight tensor (``layer``: its index in ``layers.txt``), with the columns of :data:`STEP_COLUMNS`:

- ``iteration``, ``next_iteration`` (0-based, as in ``summary.csv``), ``tag``, ``next_tag`` (``001_best`` …);
- ``weights`` (entries), ``surviving`` (before the step), ``removed`` (surviving before, pruned after),
  ``remaining_percent_before``, ``remaining_percent_after`` (of the row's weights);
- ``overlap``: ``|R ∩ R_OBD| / |R|``, the share of the removed weights that OBD's saliency ``½ H_kk w_k²`` would have
  removed too at the same per-tensor counts (ties averaged; empty when nothing was removed), and
  ``chance_overlap``, what a uniformly random choice at the same counts would share (``|R| / |S|`` per tensor);
- ``spearman``: the rank correlation of ``|w|`` and OBD's saliency over the surviving weights;
- ``predicted_loss_change`` = ``first_order`` (``gᵀδ``) + ``second_order`` (``½ δᵀHδ``), the quadratic model of
  removing the row's removed weights (``δ = −w`` there), and ``actual_loss_change``, ``L(θ + δ) − L(θ)``, both on
  the Hessian batch at iteration ``i``'s best weights; ``loss``: ``L(θ)``;
- ``diagonal`` (``exact`` or ``hutchinson``), ``probes`` (0 when exact), ``diagonal_rel_stderr``
  (``‖stderr‖ / ‖diag‖`` over the surviving weights; 0 when exact), ``mask_source`` (where iteration ``i+1``'s
  mask came from: ``prune_pairs``, ``mask.pth`` or ``zeros``, joined by ``+`` for the whole model when they differ).

Figures: :func:`render_loss_change` (the quadratic model against the loss), :func:`render_saliency_agreement`
(overlap and rank correlation against the remaining percent).

Example:
    >>> row = {"iteration": 0, "next_iteration": 1, "tag": "001_best", "next_tag": "002_best", "layer": None,
    ...        "name": "all", "weights": 10, "surviving": 10, "removed": 2, "overlap": 0.5}
    >>> text = step_table_text([row])
    >>> text.splitlines()[1].split(",")[:8]
    ['0', '1', '001_best', '002_best', '', 'all', '10', '']
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullLocator

from prunehess.errors import DataError
from prunehess.plots import _common as c

__all__ = ["STEP_COLUMNS", "NOISY", "step_table_text", "read_step_table", "render_loss_change",
           "render_saliency_agreement", "diagonal_note", "pruning_step_figures", "plot_pruning_step"]

STEP_COLUMNS = ("iteration", "next_iteration", "tag", "next_tag", "layer", "name", "weights",
                "remaining_percent_before", "remaining_percent_after", "surviving", "removed", "overlap",
                "chance_overlap", "spearman", "predicted_loss_change", "actual_loss_change", "first_order",
                "second_order", "loss", "diagonal", "probes", "diagonal_rel_stderr", "mask_source")
_TEXT = ("tag", "next_tag", "name", "diagonal", "mask_source")
_INTEGER = ("iteration", "next_iteration", "layer", "weights", "surviving", "removed", "probes")
PERCENT_LABEL = "Prunable weights remaining before the step (%)"
NOISY = 0.25
"""Above this ``‖stderr‖ / ‖diag‖``, an estimated diagonal ranks its noise more than the weights."""


def _cell(key: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if key in _TEXT:
        return str(value)
    if key in _INTEGER:
        return str(int(value))
    return repr(float(value))


def step_table_text(rows: Sequence[Mapping[str, Any]]) -> str:
    """A step table: :data:`STEP_COLUMNS` as the header, one row per mapping (missing and ``NaN`` values empty,
    numbers at full precision)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(STEP_COLUMNS)
    for row in rows:
        writer.writerow([_cell(k, row.get(k)) for k in STEP_COLUMNS])
    return buffer.getvalue()


def _value(key: str, text: str) -> Any:
    if key in _TEXT:
        return text
    if text == "":
        return None if key in _INTEGER else math.nan
    return int(text) if key in _INTEGER else float(text)


def read_step_table(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a step table (integers as ``int``, ``layer`` ``None`` for the whole model, empty numbers
    ``NaN``); :class:`DataError` naming the file otherwise."""
    return c.read_table(path, STEP_COLUMNS, lambda key, text: _value(key, text or ""),
                        "a row of the pruning-step table")


# ---------------------------------------------------------------------------------------------- figures
def _whole(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted((r for r in rows if r["layer"] is None), key=lambda r: r["iteration"])


def _layers(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    out: dict[str, list] = {}
    for row in sorted((r for r in rows if r["layer"] is not None), key=lambda r: (r["layer"], r["iteration"])):
        out.setdefault(row["name"], []).append(row)
    return out


def _linthresh(values: np.ndarray) -> float:
    """The linear range of a symlog axis: the smallest non-zero magnitude (at least 1e-6 of the largest), so that
    the values spanning decades sit on the logarithmic part, without empty decades around zero."""
    magnitudes = np.abs(values[np.isfinite(values) & (values != 0)])
    if magnitudes.size == 0:
        return 1.0
    return float(max(magnitudes.min(), magnitudes.max() * 1e-6))


def _symlog(ax: Axes, axes: str, values: np.ndarray, limits: Sequence[float]) -> None:
    """Symlog scales on ``axes`` (``"x"``, ``"y"`` or ``"xy"``) over ``limits``, with decade ticks spaced apart."""
    threshold = _linthresh(values)
    ticks = FixedLocator(c.symlog_ticks(min(limits), max(limits), threshold, max_ticks=8))
    for name in axes:
        getattr(ax, f"set_{name}scale")("symlog", linthresh=threshold)
        getattr(ax, f"set_{name}lim")(limits)
        axis = ax.xaxis if name == "x" else ax.yaxis
        axis.set_major_locator(ticks)
        axis.set_minor_locator(NullLocator())
        axis.set_label_text(f"{axis.get_label_text()}  (symlog scale)")


def _spread(values: np.ndarray) -> bool:
    """Whether the non-zero magnitudes span a decade or more (then a symlog axis reads better)."""
    magnitudes = np.abs(values[np.isfinite(values) & (values != 0)])
    return magnitudes.size > 1 and c.spans_decades(magnitudes, ratio=10.0)


def _scatter(ax: Axes, whole: Sequence[Mapping], layers: Mapping[str, Sequence[Mapping]]) -> None:
    """Predicted (x) against actual (y): the whole model's steps labelled by their tags, each layer's smaller (a
    layer a step left alone, trivially at 0, is not drawn)."""
    layers = {name: [r for r in rows if r["removed"]] for name, rows in layers.items()}
    for j, (name, rows) in enumerate(layers.items()):
        ax.scatter([r["predicted_loss_change"] for r in rows], [r["actual_loss_change"] for r in rows], s=22,
                   marker="os^Dv<>p"[j % 8], facecolors="none", edgecolors=f"C{(j + 1) % 10}", linewidths=1.1,
                   label=f"{name} alone")
    x = np.array([r["predicted_loss_change"] for r in whole])
    y = np.array([r["actual_loss_change"] for r in whole])
    ax.scatter(x, y, s=46, color="C0", zorder=3, label="all prunable weights")
    for row, xi, yi in zip(whole, x, y):
        ax.annotate(f"{row['tag'][:3]}→{row['next_tag'][:3]}", (xi, yi), textcoords="offset points",
                    xytext=(5, -10), fontsize="x-small", color="C0")
    ax.set_xlabel("Predicted loss change  gᵀδ + ½ δᵀHδ")
    ax.set_ylabel("Actual loss change  L(θ+δ) − L(θ)")
    values = np.array([v for rows in [whole, *layers.values()] for r in rows
                       for v in (r["predicted_loss_change"], r["actual_loss_change"])], dtype=float)
    values = values[np.isfinite(values)]
    if values.size:
        lo, hi = float(values.min()), float(values.max())
        pad = 0.05 * (hi - lo) if hi > lo else max(abs(hi), 1.0) * 0.1
        ends = [lo - pad, hi + pad]
        if _spread(values):  # half a decade beyond the extremes (a symlog axis's own padding)
            threshold = _linthresh(values)
            ends = [lo * 1.6 if lo < 0 else -threshold if lo == 0 else lo / 1.6,
                    hi * 1.6 if hi > 0 else threshold if hi == 0 else hi / 1.6]
            _symlog(ax, "xy", values, ends)
        ax.plot(ends, ends, color="0.4", linestyle="--", linewidth=1.0, label="actual = predicted", zorder=1)
        ax.set_xlim(ends)
        ax.set_ylim(ends)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="x-small")


def _against_percent(ax: Axes, whole: Sequence[Mapping]) -> None:
    """The whole model's actual and predicted change, and the two terms of the prediction, against the percent
    remaining before each step."""
    percents = [r["remaining_percent_before"] for r in whole]
    ax.set_ylabel("Loss change of the step (Hessian batch)")
    styles = (("actual_loss_change", "actual", dict(color="k", marker="o", linewidth=1.8)),
              ("predicted_loss_change", "predicted (quadratic model)", dict(color="C0", marker="s", linewidth=1.6)),
              ("first_order", "first-order term gᵀδ", dict(color="C2", marker="^", linewidth=1.0, linestyle=":")),
              ("second_order", "second-order term ½ δᵀHδ", dict(color="C3", marker="v", linewidth=1.0,
                                                                  linestyle=":")))
    values = []
    for key, label, style in styles:
        ys = [r[key] for r in whole]
        values += ys
        ax.plot(percents, ys, markersize=5, label=label, **style)
    values = np.array(values, dtype=float)
    finite = values[np.isfinite(values)]
    if _spread(values):
        lo, hi = float(min(finite.min(), 0.0)), float(max(finite.max(), 0.0))
        threshold = _linthresh(values)
        _symlog(ax, "y", values, [lo * 1.6 if lo < 0 else -threshold, hi * 1.6 if hi > 0 else threshold])
    ax.axhline(0.0, color="0.6", linewidth=0.8)
    c.percent_axis(ax, percents)
    ax.set_xlabel(PERCENT_LABEL)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="x-small")


def render_loss_change(rows: Sequence[Mapping[str, Any]], *, title: str = "") -> Figure:
    """Two panels from a step table's rows: predicted against actual loss change (the identity dashed; each
    step of the whole model labelled ``i→i+1``, each layer's removal alone hollow), and both, with the two terms
    of the prediction, against the percent remaining before the step."""
    whole, layers = _whole(rows), _layers(rows)
    if not whole:
        raise ValueError("pruning step: no whole-model rows to draw")
    figure = Figure(figsize=(12.0, 4.8), layout="constrained")
    left, right = figure.subplots(1, 2)
    _scatter(left, whole, layers)
    left.set_title("Quadratic model against the loss", fontsize="medium")
    _against_percent(right, whole)
    right.set_title("Across the pruning iterations (all prunable weights)", fontsize="medium")
    if title:
        figure.suptitle(title)
    return figure


def _agreement_panel(ax: Axes, whole: Sequence[Mapping], layers: Mapping[str, Sequence[Mapping]], key: str,
                     ylabel: str) -> None:
    percents = [r["remaining_percent_before"] for r in whole]
    for j, (name, rows) in enumerate(layers.items()):
        ax.plot([r["remaining_percent_before"] for r in rows], [r[key] for r in rows], color=f"C{(j + 1) % 10}",
                marker="os^Dv<>p"[j % 8], markersize=4, linewidth=1.0, label=name)
    ax.plot(percents, [r[key] for r in whole], color="k", marker="o", linewidth=2.0, label="all prunable weights")
    if key == "overlap":
        ax.plot(percents, [r["chance_overlap"] for r in whole], color="0.5", linestyle=":", linewidth=1.4,
                label="chance (random removal, all)")
        ax.set_ylim(-0.02, 1.02)
    else:
        ax.axhline(0.0, color="0.6", linewidth=0.8)
        ax.set_ylim(min(-0.05, ax.get_ylim()[0]), 1.02)
    c.percent_axis(ax, percents)  # ticks at the whole model's percents (a layer's may differ a little)
    ax.set_xlabel("Weights remaining before the step (% of the layer's; ticks: of all prunable)")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="x-small")


def render_saliency_agreement(rows: Sequence[Mapping[str, Any]], *, title: str = "") -> Figure:
    """Two panels from a step table's rows against the percent remaining before each step: the overlap of the
    removed weights with OBD's choice (and chance), and the rank correlation of ``|w|`` and OBD's saliency; the
    whole model in black, each layer in colour."""
    whole, layers = _whole(rows), _layers(rows)
    if not whole:
        raise ValueError("pruning step: no whole-model rows to draw")
    figure = Figure(figsize=(12.0, 4.6), layout="constrained")
    left, right = figure.subplots(1, 2)
    _agreement_panel(left, whole, layers, "overlap", "Overlap with OBD's choice  |R ∩ R_OBD| / |R|")
    left.set_title("Removed weights OBD would have removed too", fontsize="medium")
    _agreement_panel(right, whole, layers, "spearman", "Spearman ρ of |w| and ½ H_kk w²")
    right.set_title("Magnitude against OBD saliency, surviving weights", fontsize="medium")
    figure.supxlabel(diagonal_note(rows), fontsize="small", color="0.25")
    if title:
        figure.suptitle(title)
    return figure


def diagonal_note(rows: Sequence[Mapping[str, Any]]) -> str:
    """One line on where the rows' ``H_kk`` came from, and for Hutchinson's estimate how noisy it is."""
    estimated = [r for r in rows if r["diagonal"] == "hutchinson"]
    if not estimated:
        return "H_kk: the exact diagonal of the Hessian"
    noise = [r["diagonal_rel_stderr"] for r in estimated if r["layer"] is None]
    probes = sorted({r["probes"] for r in estimated})
    line = (f"H_kk: Hutchinson's estimate ({'/'.join(map(str, probes))} probes), ‖stderr‖/‖diag‖ "
            f"{min(noise):.2g}–{max(noise):.2g} over all prunable weights")
    if max(noise) > NOISY:
        line += ": too noisy to rank single weights, so OBD's choice follows the noise (more --probes, or exact)"
    return line


def pruning_step_figures(layout, *, models=None, model_name: str = "", dataset_name: str = ""
                         ) -> list[tuple[str, Figure, str]]:
    """``(file name, figure, caption)`` of the two figures of the output's ``pruning_step/pruning_step.csv``
    (``models``: the steps into iterations below ``models``); none without the table or its rows."""
    if not layout.pruning_step_table_file.is_file():
        return []
    rows = [r for r in read_step_table(layout.pruning_step_table_file)
            if models is None or r["next_iteration"] < int(models)]
    if not _whole(rows):
        return []
    names = " on ".join(name for name in (model_name, dataset_name) if name)
    suffix = f" ({names})" if names else ""
    diagonal = "/".join(sorted({r["diagonal"] for r in rows}))
    return [("loss_change.jpg", render_loss_change(rows, title=f"The pruning step: quadratic model against the "
                                                                f"loss{suffix}"),
             "Each pruning step's loss change on the Hessian batch, predicted by the quadratic model gᵀδ + ½ δᵀHδ "
             "(δ = −w on the removed weights) against the actual L(θ+δ) − L(θ), at the weights before the step"),
            ("saliency_agreement.jpg", render_saliency_agreement(rows, title=f"The pruning step: magnitude against "
                                                                            f"OBD saliency{suffix}"),
             f"How many of the weights magnitude pruning removed OBD (½ H_kk w², {diagonal} diagonal) would have "
             "removed at the same per-layer counts, and the rank correlation of the two criteria")]


def plot_pruning_step(path, save_path, models=None, model_name="", dataset_name="",
                      remain_params_file_path=None) -> list[Path]:
    """The two figures of an output's ``pruning_step/`` folder, ``loss_change.jpg`` and
    ``saliency_agreement.jpg``, into ``save_path``; ``models`` keeps the steps into iterations below it. Returns
    the files written; no table is a :class:`DataError`."""
    del remain_params_file_path  # the table holds its own remaining percents
    layout = c.resolve_root(path)
    if not layout.pruning_step_table_file.is_file():
        raise DataError(f"{layout.pruning_step_table_file}: not found; run prunehess pruning-step {layout.root}")
    figures = pruning_step_figures(layout, models=models, model_name=model_name, dataset_name=dataset_name)
    return [c.save_figure(figure, Path(save_path) / name) for name, figure, _ in figures]
