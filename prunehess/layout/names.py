"""Names in the output tree: metric names, the iteration and epoch tags, result file and metric folder names.

A metric is any name of lower-case letters, digits and underscores that starts and ends with a letter
(``trace``, ``bottom_eigenvalues``); it must end with a letter because the iteration tag follows it directly in
a file name (``trace0001_10.txt`` is ``trace`` at tag ``0001``, never ``trace0`` at ``001``). Its results live in
the folder ``<metric>`` (whole model) or ``<metric>_layer<k>`` (parameter tensor ``k``) as files
``<metric><III>_<EE|best>.<ext>``. The names in :data:`RESERVED` are folders of the tree that hold no results.
"""
from __future__ import annotations

import re
from typing import Any, Optional

import numpy as np

from prunehess.errors import DataError

__all__ = ["METRICS", "TEXT_METRICS", "RESULT_EXTENSIONS", "RESERVED", "iteration_tag", "epoch_tag"]

METRICS = ("top_eigenvalues", "trace", "density_eigen", "density_weight", "esd_plot")
"""The five metric folders of the seed's tree, in its order."""

TEXT_METRICS = ("top_eigenvalues", "trace", "density_eigen", "density_weight")
"""The seed metrics stored as plain numbers (``numpy.loadtxt``); ``esd_plot`` holds PDFs."""

RESULT_EXTENSIONS = {"esd_plot": "pdf"}
"""The seed tree's metrics whose files are not text, with their extension. Every other metric defaults to
``txt``; a new metric stored otherwise (``eigenvectors/eigenvectors001_10.npz``) names its extension when writing.
The seed's metrics (:data:`METRICS`) only ever have their default extension."""

RESERVED = frozenset({"figures"})
"""Folder names of the tree that are never metric folders (hidden folders, such as ``.prunehess``, never are)."""

ResultName = tuple[str, int, Optional[int], str]
"""``(metric, iteration, epoch, ext)`` of a result file name."""

_METRIC = r"[a-z](?:[a-z0-9_]*[a-z])?"
_METRIC_NAME = re.compile(rf"^{_METRIC}$")
_METRIC_DIR = re.compile(rf"^(?P<metric>{_METRIC})(?:_layer(?P<layer>\d+))?$")
_RESULT_NAME = re.compile(r"^(?P<metric>[a-z][a-z0-9_]*?)(?P<tag>\d{3,})_(?P<epoch>\d{2,}|best)\.(?P<ext>[a-z0-9]+)$")
_EXTENSION = re.compile(r"^[a-z0-9]+$")


def iteration_tag(iteration: int) -> str:
    """The file-name tag of a pruning iteration: ``ite + 1`` padded to at least 3 digits.

    Iteration 0 is the dense network (tag ``001``); iteration -1 stands for the initial weights (``000``).

    Example:
        >>> iteration_tag(0), iteration_tag(-1), iteration_tag(99), iteration_tag(1234)
        ('001', '000', '100', '1235')
    """
    iteration = as_int(iteration, "iteration")
    if iteration < -1:
        raise ValueError(f"iteration must be >= -1 (-1 = initial weights), got {iteration}")
    return f"{iteration + 1:03d}"


def epoch_tag(epoch: int | None) -> str:
    """The file-name tag of an epoch: ``best`` for ``None``, else the epoch padded to at least 2 digits.

    Example:
        >>> epoch_tag(None), epoch_tag(0), epoch_tag(5), epoch_tag(120)
        ('best', '00', '05', '120')
    """
    if epoch is None:
        return "best"
    epoch = as_int(epoch, "epoch")
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0 or None (best), got {epoch}")
    return f"{epoch:02d}"


def as_int(value: Any, what: str) -> int:
    """``value`` as an int; bools, floats and strings raise :class:`TypeError` naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{what} must be an int, got {value!r}")
    return int(value)


def check_metric(metric: str) -> str:
    """``metric`` if it is a metric name, else :class:`ValueError` stating the rule."""
    if not isinstance(metric, str) or not _METRIC_NAME.match(metric) or metric in RESERVED:
        raise ValueError(f"{metric!r} is not a metric name: expected lower-case letters, digits and underscores, "
                         f"starting and ending with a letter (e.g. {', '.join(METRICS)}), other than "
                         f"{', '.join(sorted(RESERVED))}")
    return metric


def default_extension(metric: str) -> str:
    """The extension of ``metric``'s files unless told otherwise: :data:`RESULT_EXTENSIONS`, else ``txt``."""
    return RESULT_EXTENSIONS.get(check_metric(metric), "txt")


def check_extension(metric: str, ext: str | None) -> str:
    """The extension of a result file of ``metric``: ``ext``, or the metric's default when ``None``.

    The seed's metrics only have their default extension; others take any of lower-case letters and digits.
    """
    default = default_extension(metric)
    if ext is None:
        return default
    if not isinstance(ext, str) or not _EXTENSION.match(ext):
        raise ValueError(f"{metric}: extension {ext!r} is not lower-case letters and digits (e.g. 'txt', 'npz')")
    if metric in METRICS and ext != default:
        raise ValueError(f"{metric}: its results are .{default} files, not .{ext}")
    return ext


def check_layer(layer: int) -> int:
    layer = as_int(layer, "layer")
    if layer < 0:
        raise ValueError(f"layer must be >= 0, got {layer}")
    return layer


def result_name(metric: str, iteration: int, epoch: int | None, ext: str | None = None) -> str:
    """``<metric><III>_<EE|best>.<ext>``, e.g. ``trace001_10.txt``."""
    ext = check_extension(metric, ext)
    return f"{metric}{iteration_tag(iteration)}_{epoch_tag(epoch)}.{ext}"


def metric_dir_name(metric: str, layer: int | None) -> str:
    """``<metric>`` for the whole model, ``<metric>_layer<k>`` for parameter tensor ``k``."""
    check_metric(metric)
    return metric if layer is None else f"{metric}_layer{check_layer(layer)}"


def parse_result(name: str) -> ResultName:
    """``(metric, iteration, epoch, ext)`` of a result file name, by pattern; :class:`DataError` otherwise."""
    match = _RESULT_NAME.match(name)
    if match is None or not _METRIC_NAME.match(match["metric"]) or match["metric"] in RESERVED:
        raise DataError(
            f"{name}: not a result file name (expected <metric><III>_<EE|best>.txt, e.g. trace001_10.txt)"
        )
    metric, ext = match["metric"], match["ext"]
    if metric in METRICS and ext != default_extension(metric):
        raise DataError(f"{name}: {metric} results are .{default_extension(metric)} files")
    epoch = None if match["epoch"] == "best" else int(match["epoch"])
    return metric, int(match["tag"]) - 1, epoch, ext


def parse_metric_dir(name: str) -> tuple[str, int | None] | None:
    """``(metric, layer)`` of a metric folder name, or ``None`` for any other name (hidden, reserved, other)."""
    match = _METRIC_DIR.match(name)
    if match is None or match["metric"] in RESERVED:
        return None
    return match["metric"], None if match["layer"] is None else int(match["layer"])


def sort_key(key: tuple[int, int | None]) -> tuple[int, int, int]:
    """Numeric order of ``(iteration, epoch)``: epochs ascending, then ``best``."""
    iteration, epoch = key
    return (iteration, 1 if epoch is None else 0, -1 if epoch is None else epoch)
