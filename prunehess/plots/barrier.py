"""Error barriers (``prunehess barrier``): the files' format, their readers, and a figure per pair kind.

A path, ``barrier/<kind>_<tagA>_<tagB>.txt``, is ``#`` comment lines then the columns ``alpha loss error test_loss
test_error``: at ``θ(α) = (1−α)·θ_A + α·θ_B``, the mean loss and the error (fraction misclassified) on the Hessian
batch, then on the test split. ``barrier/barrier.csv`` has one row per pair (:data:`BARRIER_COLUMNS`): the pair,
its barriers (the largest gap ``max_α f(α) − ((1−α) f(0) + α f(1))`` between the path and the straight line
between its ends, for each of the four columns) and the ends' values.

Example:
    >>> text = path_text([0.0, 0.5, 1.0], [[1.0, 0.1, 1.1, 0.12], [2.0, 0.4, 2.2, 0.5], [1.0, 0.1, 1.0, 0.1]])
    >>> text.splitlines()[0]
    '# alpha loss error test_loss test_error'
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from prunehess.errors import DataError
from prunehess.layout.paths import BARRIER_KINDS
from prunehess.plots import _common as c

__all__ = ["PATH_COLUMNS", "BARRIER_COLUMNS", "path_text", "read_path", "barrier_table_text", "read_barrier_table",
           "render_barrier_paths", "barrier_figures", "plot_barrier"]

PATH_COLUMNS = ("alpha", "loss", "error", "test_loss", "test_error")
BARRIER_COLUMNS = ("kind", "tag_a", "tag_b", "other", "points", "loss_barrier", "error_barrier", "test_loss_barrier",
                   "test_error_barrier", "loss_a", "loss_b", "test_error_a", "test_error_b")
_TEXT_COLUMNS = ("kind", "tag_a", "tag_b", "other")
KIND_TITLES = {
    "consecutive": "Linear interpolation from each iteration's best to the next iteration's best",
    "rewind": "Linear interpolation from epoch 0 to the best checkpoint of each iteration",
    "against": "Linear interpolation from this run's best to the other run's, same iteration",
}


def path_text(alpha: Sequence[float], values: np.ndarray, comments: Sequence[str] = ()) -> str:
    """The text of a path file: ``# comment`` lines, the column names, then one row per ``alpha`` (``values``:
    ``(points, 4)``: loss, error, test loss, test error)."""
    alpha = np.asarray(alpha, dtype=float).reshape(-1)
    values = np.asarray(values, dtype=float).reshape(alpha.size, len(PATH_COLUMNS) - 1)
    lines = [f"# {line}" for line in comments] + ["# " + " ".join(PATH_COLUMNS)]
    lines += [" ".join(repr(float(v)) for v in (a, *row)) for a, row in zip(alpha, values)]
    return "\n".join(lines) + "\n"


def read_path(path: str | Path) -> dict[str, np.ndarray]:
    """``column -> values`` of a path file (:data:`PATH_COLUMNS`); :class:`DataError` naming the file otherwise."""
    path = Path(path)
    try:
        table = np.loadtxt(path, ndmin=2, comments="#")
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: not a table of numbers ({err})") from None
    if table.shape[1] != len(PATH_COLUMNS):
        raise DataError(f"{path}: expected {len(PATH_COLUMNS)} columns ({' '.join(PATH_COLUMNS)}), "
                        f"found {table.shape[1]}")
    return {name: table[:, j] for j, name in enumerate(PATH_COLUMNS)}


def barrier_table_text(rows: Sequence[Mapping[str, Any]]) -> str:
    """``barrier.csv``: :data:`BARRIER_COLUMNS` as the header, one row per pair (numbers at full precision)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(BARRIER_COLUMNS)
    for row in rows:
        writer.writerow(["" if row.get(k) is None else (repr(float(row[k])) if k not in _TEXT_COLUMNS + ("points",)
                                                         else row[k]) for k in BARRIER_COLUMNS])
    return buffer.getvalue()


def read_barrier_table(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a ``barrier.csv`` (numbers as floats, ``points`` an int, ``other`` ``""`` when none)."""
    return c.read_table(path, BARRIER_COLUMNS, _barrier_cell, "a row of numbers after kind, tags and other")


def _barrier_cell(key: str, text: str) -> Any:
    return text if key in _TEXT_COLUMNS else int(text) if key == "points" else float(text)


def render_barrier_paths(paths: Sequence[tuple[str, Mapping[str, np.ndarray]]], *, title: str = "") -> Figure:
    """Two panels against ``α``: the loss and the error, one colour per pair (``(label, columns)``), solid on the
    Hessian batch, dashed on the test split; the loss panel also draws each Hessian-batch path's chord (dotted),
    the straight line between its ends that the barrier is measured from."""
    if not paths:
        raise ValueError("barrier paths: nothing to draw")
    figure = Figure(figsize=(11.0, 4.4), layout="constrained")
    axes = figure.subplots(1, 2)
    colors = [f"C{j % 10}" for j in range(len(paths))]
    for (label, columns), color in zip(paths, colors):
        for ax, name in zip(axes, ("loss", "error")):
            ax.plot(columns["alpha"], columns[name], color=color, linewidth=1.6, marker="o", markersize=2.5,
                    label=label)
            ax.plot(columns["alpha"], columns[f"test_{name}"], color=color, linewidth=1.1, linestyle="--")
        ends = columns["alpha"][[0, -1]]
        axes[0].plot(ends, columns["loss"][[0, -1]], color=color, linewidth=0.8, linestyle=":", alpha=0.8)
    for ax, name in zip(axes, ("Loss", "Error (fraction misclassified)")):
        ax.set_xlabel("α  (θ = (1−α)·θ_A + α·θ_B)")
        ax.set_ylabel(name)
        ax.grid(True, alpha=0.3)
    axes[0].plot([], [], color="0.3", linestyle="-", label="Hessian batch")
    axes[0].plot([], [], color="0.3", linestyle="--", label="test split")
    axes[0].plot([], [], color="0.3", linestyle=":", label="chord (barrier: the largest gap above it)")
    axes[0].legend(fontsize="x-small", ncol=2 if len(paths) > 6 else 1)
    if title:
        figure.suptitle(title)
    return figure


def barrier_figures(layout, *, models=None, model_name: str = "", dataset_name: str = ""
                    ) -> list[tuple[str, Figure, str]]:
    """``(file name, figure, caption)`` of each pair kind's figure of the output's ``barrier/`` folder (see
    :func:`plot_barrier`); none without path files."""
    files = layout.list_barrier_paths()
    names = " on ".join(name for name in (model_name, dataset_name) if name)
    out = []
    for kind in BARRIER_KINDS:
        chosen = [(f"{a} → {b}", read_path(p)) for (k, a, b), p in files.items() if k == kind and (
            models is None or max(int(a.split("_")[0]), int(b.split("_")[0])) < int(models))]
        if chosen:
            title = KIND_TITLES[kind] + (f" ({names})" if names else "")
            out.append((f"{kind}.jpg", render_barrier_paths(chosen, title=title),
                        f"{KIND_TITLES[kind]}: loss and error against alpha"))
    return out


def plot_barrier(path, save_path, models=None, model_name="", dataset_name="",
                 remain_params_file_path=None) -> list[Path]:
    """One figure per pair kind of an output's ``barrier/`` folder: ``<kind>.jpg`` (``consecutive``, ``rewind``,
    ``against``). ``models`` keeps pairs whose tags are all below ``models-1`` (as the seed's plots; ``None``:
    all). Returns the files written; no path files is a :class:`DataError`."""
    del remain_params_file_path  # the pairs are labelled by their tags
    layout = c.resolve_root(path)
    if not layout.list_barrier_paths():
        raise DataError(f"{layout.barrier_dir}: no barrier paths; run prunehess barrier {layout.root}")
    figures = barrier_figures(layout, models=models, model_name=model_name, dataset_name=dataset_name)
    return [c.save_figure(figure, Path(save_path) / name) for name, figure, _ in figures]
