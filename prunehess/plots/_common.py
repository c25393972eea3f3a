"""Shared plumbing of the plots: figures that never touch pyplot, saving, titles, and reading results.

Figures are :class:`matplotlib.figure.Figure` objects made directly (not through ``pyplot``), so nothing is
registered as an open figure, nothing piles up between calls, and no backend is needed to save. Jupyter still
shows a returned figure inline.
"""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullFormatter, NullLocator

from prunehess.errors import DataError
from prunehess.layout import METRICS, OutputLayout, iteration_tag
from prunehess.storage import atomic_write_bytes

__all__: list[str] = []

LABELS = {
    "top_eigenvalues": "Top Hessian eigenvalue",
    "trace": "Hessian trace",
}
CURVATURE_NAMES = {"hessian": "Hessian", "ggn": "GGN", "fisher": "empirical-Fisher"}
"""``--curvature`` (in the output's ``config.yaml``) → the matrix's name in labels."""


def curvature_of(layout: OutputLayout) -> str:
    """The run's curvature matrix (``hessian``, ``ggn``, ``fisher``) from its ``config.yaml``; ``hessian`` when
    absent or unreadable (outputs of earlier versions)."""
    try:
        config = layout.read_config() if layout.config_file.is_file() else {}
    except DataError:
        return "hessian"
    value = str(config.get("curvature") or "hessian")
    return value if value in CURVATURE_NAMES else "hessian"


def metric_label(metric: str, curvature: str = "hessian") -> str:
    """The axis label of ``metric`` for a run of ``curvature``: ``Top GGN eigenvalue``, ``Hessian trace`` …"""
    return LABELS[metric].replace("Hessian", CURVATURE_NAMES.get(curvature, "Hessian"))
TITLES = {
    "top_eigenvalues": "Top eigenvalues plot",
    "trace": "Trace plot",
    "density_eigen": "SLQ plot",
    "layer_match": "Layer-wise vs full spectrum",
}
REMAINING_LABEL = "Remaining parameters (%)"


# ------------------------------------------------------------------------------------------------ figures
def new_axes(ax: Axes | None, figsize: tuple[float, float] = (6.4, 4.4)) -> tuple[Figure, Axes]:
    """``ax`` and its figure, or a fresh pyplot-free figure with one axes."""
    if ax is not None:
        return ax.figure, ax
    figure = Figure(figsize=figsize, layout="constrained")
    return figure, figure.add_subplot()


def figure_bytes(figure: Figure, fmt: str = "jpg", dpi: int = 100) -> bytes:
    buffer = io.BytesIO()
    kwargs = {"pil_kwargs": {"quality": 92}} if fmt in ("jpg", "jpeg") else {}
    figure.savefig(buffer, format=fmt, dpi=dpi, **kwargs)
    return buffer.getvalue()


def save_figure(figure: Figure, path: Path, dpi: int = 100) -> Path:
    """Save ``figure`` atomically to ``path`` (format from the suffix) and drop its canvas contents."""
    atomic_write_bytes(path, figure_bytes(figure, path.suffix.lstrip(".").lower() or "png", dpi))
    figure.clear()
    return path


def run_names(layout: OutputLayout, config: Mapping | None = None) -> tuple[str, str]:
    """``(model, dataset)`` for titles, from the run's ``config.yaml`` (or ``config``, already read);
    ``("", "")`` without a readable one. A model built from a file (``DIR/net.py:factory``) is named without its
    folders (``net.py:factory``)."""
    if config is None:
        try:
            config = layout.read_config() if layout.config_file.is_file() else {}
        except DataError:
            return "", ""
    model = re.split(r"[\\/]", str(config.get("model") or ""))[-1]
    return model, str(config.get("dataset") or "")


def plot_title(kind: str, model_name: str = "", dataset_name: str = "", percent: float | None = None) -> str:
    """``"Trace plot for fc1 on mnist (80.0% params remaining)"``; empty names leave their words out."""
    title = kind
    if model_name:
        title += f" for {model_name}"
    if dataset_name:
        title += f" on {dataset_name}"
    if percent is not None:
        title += f" ({percent:.1f}% params remaining)"
    return title


def spans_decades(values: Iterable[float], ratio: float = 100.0) -> bool:
    """True when every finite value is positive and the largest is at least ``ratio`` times the smallest."""
    array = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=float).ravel()
    array = array[np.isfinite(array)]
    return array.size > 1 and bool(np.all(array > 0)) and array.max() >= ratio * array.min()


def auto_value_scale(ax: Axes, values: Iterable[float], axis: str = "y") -> str:
    """Log scale on ``axis`` when the values span decades (all positive), else linear. Returns the scale."""
    scale = "log" if spans_decades(values) else "linear"
    (ax.set_yscale if axis == "y" else ax.set_xscale)(scale)
    return scale


def percent_axis(ax: Axes, percents: Sequence[float]) -> None:
    """Remaining-percent x axis: dense on the left, log scale when all percents are positive (geometric
    pruning gives evenly spaced points), a tick labelled to 0.1 at every percent, rotated 45° as the seed."""
    x = np.asarray(percents, dtype=float).reshape(-1)
    if x.size and np.all(x > 0):
        ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(np.unique(x)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:.1f}"))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.tick_params(axis="x", labelrotation=45)
    if x.size > 1 and not ax.xaxis_inverted():
        ax.invert_xaxis()
    ax.set_xlabel(REMAINING_LABEL)


def epoch_axis(ax: Axes, epochs: Iterable[float], max_labels: int = 12) -> None:
    """x axis "Epoch", with a tick at every snapshot epoch when there are few, else integer ticks."""
    unique = np.unique(np.asarray(list(epochs), dtype=float))
    if 0 < unique.size <= max_labels:
        ax.xaxis.set_major_locator(FixedLocator(unique))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(nbins=max_labels, integer=True))
    ax.set_xlabel("Epoch")


def symlog_ticks(lo: float, hi: float, linthresh: float, max_ticks: int = 9) -> np.ndarray:
    """Decade ticks (and 0) for a symlog axis over ``[lo, hi]``, at least 1/``max_ticks`` of the axis apart.

    Picked from the outermost decade inwards on each side, so the extremes are always labelled.
    """
    from matplotlib.scale import SymmetricalLogTransform

    transform = SymmetricalLogTransform(10, linthresh, 1)
    first = int(np.ceil(np.log10(linthresh) - 1e-9))
    pos = [10.0 ** k for k in range(first, int(np.floor(np.log10(hi))) + 1)] if hi >= linthresh else []
    neg = [-(10.0 ** k) for k in range(first, int(np.floor(np.log10(-lo))) + 1)] if lo <= -linthresh else []
    span = float(np.ptp(transform.transform_non_affine(np.array([lo, hi], dtype=float))))
    gap = span / max(max_ticks, 2)
    zero = [0.0] if lo <= 0 <= hi else []
    kept: list[float] = list(zero)
    for side in (pos[::-1], neg[::-1]):  # outermost first
        last = None
        for tick in side:
            u = float(transform.transform_non_affine(np.array([tick]))[0])
            if last is not None and abs(u - last) < gap:
                continue
            if zero and abs(u) < gap:
                continue
            kept.append(tick)
            last = u
    return np.array(sorted(t for t in kept if lo <= t <= hi))


def layer_label(layer: int | None, names: Mapping[int, str] | None = None) -> str:
    if layer is None:
        return "whole model"
    name = (names or {}).get(layer)
    return f"layer {layer} ({name})" if name else f"layer {layer}"


def folder_name(layer: int | None) -> str:
    """The seed's save folder: ``whole_model`` or ``layer<k>``."""
    return "whole_model" if layer is None else f"layer{layer}"


# ----------------------------------------------------------------------------------------- reading results
def resolve_layout(path: str | Path, metric: str) -> OutputLayout:
    """The output tree behind ``path``: a metric folder as the seed took (``output/trace``), or the root.

    A folder of another metric, or a folder holding no ``metric`` folder, raises :class:`DataError`.
    """
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{path}: no such folder")
    parsed = _metric_folder(path)
    if parsed:
        if parsed[0] != metric:
            raise DataError(f"{path}: a {parsed[0]} folder; this plot reads {metric} (pass the "
                            f"{metric} folder or the output folder)")
        return OutputLayout(path.parent)
    layout = OutputLayout(path)
    if not layout.metric_dir(metric).is_dir():
        raise DataError(f"{path}: neither a {metric} folder nor an output folder holding one")
    return layout


def resolve_root(path: str | Path) -> OutputLayout:
    """The output tree behind ``path``: the output folder itself, or any metric folder in it."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{path}: no such folder")
    return OutputLayout(path.parent if _metric_folder(path) else path)


def _metric_folder(path: Path) -> tuple[str, int | None] | None:
    """``(metric, layer)`` if ``path`` is a metric folder: named as one of the seed's metrics' folders, or as
    any metric's folder and holding results of it (an output folder named ``output`` is not one)."""
    parsed = OutputLayout.parse_metric_dir(path.name)
    if parsed and (parsed[0] in METRICS or OutputLayout.parse_metric_folder(path)):
        return parsed
    return None


def layers_to_plot(layout: OutputLayout, metric: str, layers: int | None) -> list[int | None]:
    """``[None]`` (whole model) then the first ``layers`` per-layer folders, as the seed's ``layers``
    (``None``: every ``<metric>_layer<k>`` folder present)."""
    if layers is None:
        return [None, *(k for k in layout.layers_present() if layout.metric_dir(metric, k).is_dir())]
    if isinstance(layers, bool) or not isinstance(layers, (int, np.integer)) or layers < 0:
        raise ValueError(f"layers must be a count >= 0, got {layers!r}")
    chosen: list[int | None] = [None, *range(int(layers))]
    for layer in chosen[1:]:
        folder = layout.metric_dir(metric, layer)
        if not folder.is_dir():
            raise DataError(f"{folder}: no such folder (layers={layers} asks for layer 0 to {layers - 1})")
    return chosen


def remaining_percents(layout: OutputLayout, remain_params_file_path: str | Path | None = None) -> dict[int, float]:
    """Percent of parameters remaining per iteration (0 = dense).

    From ``remain_params_file_path`` when given, else the tree's ``remain_params.txt``, else the
    ``remaining_percent`` column of ``summary.csv``; with none of them, :class:`DataError`.
    """
    if remain_params_file_path is not None or layout.remain_params_file.is_file():
        values = layout.read_remain_params(remain_params_file_path)
        return dict(enumerate(values))
    if layout.summary_file.is_file():
        found = {row["iteration"]: row["remaining_percent"] for row in layout.read_summary()
                 if row.get("iteration") is not None and row.get("remaining_percent") is not None}
        if found:
            return found
    raise DataError(f"{layout.remain_params_file}: not found (and no remaining_percent in summary.csv); "
                    "pass remain_params_file_path")


def percent_of(percents: Mapping[int, float], iteration: int, source: str) -> float:
    try:
        return percents[iteration]
    except KeyError:
        raise DataError(f"{source}: no remaining percent for iteration {iteration} (tag "
                        f"{iteration_tag(iteration)}; line {iteration + 1} of remain_params.txt)") from None


def percents_with_source(layout: OutputLayout, remain_params_file_path: str | Path | None
                         ) -> tuple[dict[int, float], str]:
    """:func:`remaining_percents` and the file they came from (for messages naming it)."""
    return remaining_percents(layout, remain_params_file_path), percent_source(layout, remain_params_file_path)


def percent_source(layout: OutputLayout, remain_params_file_path: str | Path | None) -> str:
    if remain_params_file_path is not None:
        return str(remain_params_file_path)
    if layout.remain_params_file.is_file() or not layout.summary_file.is_file():
        return str(layout.remain_params_file)
    return str(layout.summary_file)


def select_iterations(available: Iterable[int], models: int | None, folder: Path) -> list[int]:
    """Pruning iterations to draw: all found (``models=None``) or, as the seed, tags ``001`` to ``models-1``.

    The initial weights (iteration -1, tag ``000``) are never drawn, as in the seed.
    """
    found = sorted({i for i in available if i >= 0})
    if models is None:
        if not found:
            raise DataError(f"{folder}: no results of pruning iterations (tags 001 and up)")
        return found
    if isinstance(models, bool) or not isinstance(models, (int, np.integer)) or models < 2:
        raise ValueError(f"models must be >= 2 (as the seed, it counts tag 000: models=21 draws tags 001-020), "
                         f"got {models!r}")
    wanted = list(range(int(models) - 1))
    missing = [iteration_tag(i) for i in wanted if i not in found]
    if missing:
        raise DataError(f"{folder}: no results for iteration tag(s) {', '.join(missing)} "
                        f"(models={models} asks for tags 001 to {iteration_tag(int(models) - 2)})")
    return wanted


def select_epochs(available: Iterable[int | None], epochs: int | None, folder: Path, iteration: int) -> list[int]:
    """Snapshot epochs of one iteration in numeric order: all, or the first ``epochs`` (the seed's count)."""
    found = sorted(e for e in available if e is not None)
    if epochs is None:
        if not found:
            raise DataError(f"{folder}: no epoch snapshots for iteration tag {iteration_tag(iteration)}")
        return found
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ValueError(f"epochs must be a count >= 1, got {epochs!r}")
    if len(found) < epochs:
        raise DataError(f"{folder}: iteration tag {iteration_tag(iteration)} has {len(found)} epoch snapshot(s), "
                        f"epochs={epochs} asks for {epochs}")
    return found[: int(epochs)]


def group_by_iteration(keys: Iterable[tuple[int, int | None]]) -> dict[int, list[int | None]]:
    grouped: dict[int, list[int | None]] = {}
    for iteration, epoch in keys:
        grouped.setdefault(iteration, []).append(epoch)
    return grouped


def snapshot_iterations(grouped: Mapping[int, Sequence[int | None]]) -> list[int]:
    """Iterations with at least one epoch snapshot (not only a ``best`` file)."""
    return [i for i, epochs in grouped.items() if any(e is not None for e in epochs)]


def best_epochs(layout: OutputLayout, metric: str, layer: int | None, iterations: Sequence[int],
                keys: Iterable[tuple[int, int | None]]) -> dict[int, int | None]:
    """The checkpoint drawn as "best" for each iteration: its ``best`` file (epoch ``None``) when there is one,
    else the snapshot with the highest ``test_accuracy`` in ``summary.csv`` (the earliest on ties)."""
    keys = set(keys)
    chosen: dict[int, int | None] = {}
    lacking = [i for i in iterations if (i, None) not in keys]
    accuracy: dict[int, tuple[float, int]] = {}
    if lacking:
        if not layout.summary_file.is_file():
            raise DataError(f"{layout.metric_dir(metric, layer)}: no best file for iteration tag(s) "
                            f"{', '.join(iteration_tag(i) for i in lacking)}, and no summary.csv to pick the best "
                            "checkpoint by test accuracy")
        for row in layout.read_summary():
            it, ep, acc = row.get("iteration"), row.get("epoch"), row.get("test_accuracy")
            if it is None or ep is None or acc is None or not np.isfinite(acc) or (it, ep) not in keys:
                continue
            if it not in accuracy or acc > accuracy[it][0] or (acc == accuracy[it][0] and ep < accuracy[it][1]):
                accuracy[it] = (acc, ep)
    for iteration in iterations:
        if (iteration, None) in keys:
            chosen[iteration] = None
        elif iteration in accuracy:
            chosen[iteration] = accuracy[iteration][1]
        else:
            raise DataError(f"{layout.summary_file}: no test_accuracy for any checkpoint of iteration tag "
                            f"{iteration_tag(iteration)} found in {layout.metric_dir(metric, layer)}, and no best file")
    return chosen


def single_value(values: np.ndarray, path: Path) -> float:
    """The one number of a trace file."""
    if values.size != 1:
        raise DataError(f"{path}: expected one number, found {values.size}")
    return float(values.reshape(-1)[0])


def eigenvalue_rows(values: Sequence[np.ndarray]) -> np.ndarray:
    """Stack top-eigenvalue files (possibly of different lengths) into ``(n, k)``, padding with NaN."""
    width = max(v.size for v in values)
    rows = np.full((len(values), width), np.nan)
    for i, v in enumerate(values):
        rows[i, : v.size] = v.reshape(-1)
    return rows


def spectrum(nodes: np.ndarray, weights: np.ndarray | None, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Flatten an SLQ result of one or more runs (columns) into one measure: nodes and weights summing to 1.

    Each run's weights are normalised to 1 (the seed's sum to ~1.026) and the runs averaged.
    """
    nodes = np.asarray(nodes, dtype=float)
    nodes_2d = nodes.reshape(nodes.shape[0], -1) if nodes.ndim > 1 else nodes[:, None]
    if weights is None:
        weights_2d = np.ones_like(nodes_2d)
    else:
        weights = np.asarray(weights, dtype=float)
        weights_2d = weights.reshape(weights.shape[0], -1) if weights.ndim > 1 else weights[:, None]
        if weights_2d.shape != nodes_2d.shape:
            raise DataError(f"{source}: {weights_2d.shape[0]}x{weights_2d.shape[1]} weights for "
                            f"{nodes_2d.shape[0]}x{nodes_2d.shape[1]} nodes")
    if not np.all(np.isfinite(nodes_2d)) or not np.all(np.isfinite(weights_2d)):
        raise DataError(f"{source}: holds NaN or infinite values")
    if np.any(weights_2d < 0):
        raise DataError(f"{source}: negative weights")
    sums = weights_2d.sum(axis=0)
    if np.any(sums <= 0):
        raise DataError(f"{source}: a run's weights sum to 0")
    weights_2d = weights_2d / sums / weights_2d.shape[1]
    return nodes_2d.reshape(-1), weights_2d.reshape(-1)


def read_table(path: str | Path, columns: Sequence[str], convert: Callable[[str, str], Any],
               row_kind: str) -> list[dict[str, Any]]:
    """The rows of a CSV table written by one of the commands: each of ``columns`` (which the header must hold)
    converted by ``convert(column, text)``; :class:`DataError` naming the file, and the line for a row that does
    not convert (``row_kind`` says what it should have been)."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [k for k in columns if k not in (reader.fieldnames or ())]
            if missing:
                raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
            rows = list(reader)
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror or err})") from None
    out = []
    for number, row in enumerate(rows, start=2):
        try:
            out.append({k: convert(k, row[k]) for k in columns})
        except (TypeError, ValueError):
            raise DataError(f"{path}: line {number}: not {row_kind}") from None
    return out
