"""The output tree's writers and readers: :class:`OutputLayout`.

Writers only write bytes or text, atomically (:mod:`prunehess.storage`): rendering a figure is the plots' job
(:func:`prunehess.plots.esd.esd_pdf` makes the ESD PDF that :meth:`OutputLayout.write_esd_plot` stores).
Readers raise :class:`prunehess.errors.DataError` naming the file and the problem.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from prunehess.errors import DataError
from prunehess.layout.formats import (
    load_numbers,
    parse_number,
    plain,
    read_text,
    table_text,
    to_numpy,
    values_text,
)
from prunehess.layout.names import as_int, check_extension, default_extension
from prunehess.layout.paths import TreePaths
from prunehess.layout.summary import Column, parse_summary, summary_text
from prunehess.storage import atomic_write_bytes, atomic_write_text

__all__ = ["OutputLayout"]


def _text_metric(metric: str) -> str:
    """``metric`` if its files are text (``txt``), else :class:`ValueError`."""
    ext = default_extension(metric)
    if ext != "txt":
        raise ValueError(f"{metric}: its results are .{ext} files, not numbers in text")
    return metric


class OutputLayout(TreePaths):
    """The output tree rooted at ``root``: paths (:class:`~prunehess.layout.paths.TreePaths`), atomic writers and
    readers of every file in it.

    Args:
        root: the output folder (``--output``); it need not exist yet (writers create what they need).
    """

    # ------------------------------------------------------------------------------------ generic writers
    def write_values(self, metric: str, iteration: int, epoch: int | None, values: Any,
                     layer: int | None = None) -> None:
        """Numbers of a text metric, one per line (``repr``: full precision), in the order given."""
        array = to_numpy(values).reshape(-1)
        if array.size == 0:
            raise ValueError(f"{metric}: need at least one value")
        path = self.result_path(_text_metric(metric), iteration, epoch, layer)
        atomic_write_text(path, values_text(array))

    def write_table(self, metric: str, iteration: int, epoch: int | None, columns_2d: Any,
                    layer: int | None = None) -> None:
        """A table of a text metric: one line per row of ``columns_2d`` (shape ``(rows, columns)``; a 1-D array
        is one column), numbers separated by single spaces."""
        array = to_numpy(columns_2d)
        if array.ndim == 1:
            array = array[:, None]
        if array.ndim != 2 or array.size == 0:
            raise ValueError(f"{metric}: expected a non-empty table of shape (rows, columns), got {array.shape}")
        path = self.result_path(_text_metric(metric), iteration, epoch, layer)
        atomic_write_text(path, table_text(array))

    def write_bytes(self, metric: str, iteration: int, epoch: int | None, data: bytes, layer: int | None = None,
                    *, ext: str) -> None:
        """A result file of any format (``eigenvectors001_10.npz``...): its bytes, under the extension ``ext``."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"{metric}: expected bytes, got {type(data).__name__}")
        ext = check_extension(metric, ext)
        atomic_write_bytes(self.result_path(metric, iteration, epoch, layer, ext=ext), bytes(data))

    # ------------------------------------------------------------------------------------- seed writers
    def write_top_eigenvalues(self, iteration: int, epoch: int | None, values: Sequence[float],
                              layer: int | None = None) -> None:
        """Top eigenvalues, one per line, in the order given (the estimators return the largest first)."""
        self.write_values("top_eigenvalues", iteration, epoch, values, layer)

    def write_trace(self, iteration: int, epoch: int | None, value: float, layer: int | None = None) -> None:
        """The trace estimate, one number."""
        array = to_numpy(value).reshape(-1)
        if array.size != 1:
            raise ValueError(f"trace: expected one number, got {array.size}")
        self.write_values("trace", iteration, epoch, array, layer)

    def write_density(self, iteration: int, epoch: int | None, nodes: Any, weights: Any,
                      layer: int | None = None) -> None:
        """SLQ nodes and weights, shape ``(m,)`` or ``(runs, m)``; written one column per run."""
        nodes_2d = _density_columns(nodes, "nodes")
        weights_2d = _density_columns(weights, "weights")
        if nodes_2d.shape != weights_2d.shape:
            raise ValueError(f"density: nodes {nodes_2d.T.shape} and weights {weights_2d.T.shape} differ in shape")
        self.write_table("density_eigen", iteration, epoch, nodes_2d, layer)
        self.write_table("density_weight", iteration, epoch, weights_2d, layer)

    def write_esd_plot(self, iteration: int, epoch: int | None, pdf: bytes, layer: int | None = None) -> None:
        """The broadened spectral density's figure: the bytes of a PDF, as :func:`prunehess.plots.esd.esd_pdf`
        renders them."""
        if not isinstance(pdf, (bytes, bytearray, memoryview)):
            raise TypeError(f"esd_plot: expected the bytes of a PDF (render them with prunehess.plots.esd.esd_pdf), "
                            f"got {type(pdf).__name__}")
        if not bytes(pdf[:5]) == b"%PDF-":
            raise ValueError("esd_plot: the bytes given are not a PDF")
        self.write_bytes("esd_plot", iteration, epoch, pdf, layer, ext="pdf")

    # ----------------------------------------------------------------------------------- shared writers
    def write_layers(self, rows: Sequence[tuple[int, str, int]]) -> None:
        """``layers.txt``: one line per parameter tensor, ``k<TAB>name<TAB>size``, under a ``#`` header."""
        lines = ["# k\tname\tsize"]
        for k, name, size in rows:
            name = str(name)
            if not name or any(ch.isspace() for ch in name):
                raise ValueError(f"layers: parameter name {name!r} is empty or holds white space")
            lines.append(f"{as_int(k, 'layer')}\t{name}\t{as_int(size, 'size')}")
        atomic_write_text(self.layers_file, "\n".join(lines) + "\n")

    def write_remain_params(self, percents: Sequence[float]) -> None:
        """``remain_params.txt``: one percent per pruning iteration, rounded to 0.1 (``100.0``, ``80.0``...)."""
        lines = []
        for value in percents:
            value = float(value)
            if not (math.isfinite(value) and 0.0 <= value <= 100.0):
                raise ValueError(f"remain_params: {value!r} is not a percent in [0, 100]")
            lines.append(f"{round(value, 1):.1f}\n")
        atomic_write_text(self.remain_params_file, "".join(lines))

    def write_summary(self, rows: Sequence[Mapping[str, Any]], columns: Sequence[Column]) -> None:
        """``summary.csv``: one row per checkpoint and layer; ``columns`` (a :class:`Column` each, in order), then
        the rows' other keys in the order they first appear.

        Cells follow the columns' kinds: ``epoch`` ``None`` is ``best``; ``None`` (the whole model's ``layer``,
        missing values) an empty cell; floats at full precision; lists of floats space-separated.
        """
        atomic_write_text(self.summary_file, summary_text(rows, columns))

    def write_config(self, config: Mapping[str, Any] | Any) -> None:
        """The resolved configuration (a mapping or a dataclass) as ``config.yaml``.

        Paths are written as strings, tuples as lists, enum members as their values.
        """
        import yaml

        value = plain(config)
        if not isinstance(value, dict):
            raise TypeError(f"config must be a mapping or a dataclass, got {type(config).__name__}")
        atomic_write_text(self.config_file, yaml.safe_dump(value, sort_keys=False, default_flow_style=False))

    # ------------------------------------------------------------------------------------------ readers
    def read_result(self, metric: str, iteration: int, epoch: int | None, layer: int | None = None) -> np.ndarray:
        """The numbers of one result file of a text metric (``numpy.loadtxt``, at least 1-D)."""
        return load_numbers(self.result_path(_text_metric(metric), iteration, epoch, layer))

    def read_metric(self, metric: str, layer: int | None = None) -> dict[tuple[int, int | None], np.ndarray]:
        """``(iteration, epoch) -> values`` for every file of a text metric, in numeric order.

        Values are what ``numpy.loadtxt`` reads (at least 1-D): ``(k,)`` top eigenvalues, ``(1,)`` trace,
        ``(m,)`` or ``(m, runs)`` density nodes and weights. Malformed files raise :class:`DataError`.
        """
        _text_metric(metric)
        return {key: load_numbers(path) for key, path in self.list_results(metric, layer, ext="txt").items()}

    def read_layers(self) -> list[tuple[int, str, int]]:
        """``layers.txt`` as ``[(k, name, size), ...]``."""
        path = self.layers_file
        rows = []
        for number, line in enumerate(read_text(path).splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split()
            if len(parts) != 3:
                raise DataError(f"{path}: line {number}: expected 'k name size', got {line!r}")
            try:
                rows.append((int(parts[0]), parts[1], int(parts[2])))
            except ValueError:
                raise DataError(f"{path}: line {number}: k and size must be integers, got {line!r}") from None
        return rows

    def read_remain_params(self, path: str | Path | None = None) -> list[float]:
        """``remain_params.txt`` (or the file at ``path``, e.g. a hand-written one): one percent per line.

        Blank lines are skipped. A line that is not a number in [0, 100] raises :class:`DataError` naming the
        file and the line.
        """
        path = self.remain_params_file if path is None else Path(path)
        values = []
        for number, line in enumerate(read_text(path).splitlines(), start=1):
            text = line.strip()
            if not text:
                continue
            value = parse_number(text, path, number)
            if not (math.isfinite(value) and 0.0 <= value <= 100.0):
                raise DataError(f"{path}: line {number}: {text!r} is not a percent in [0, 100]")
            values.append(value)
        if not values:
            raise DataError(f"{path}: empty (expected one percent per line)")
        return values

    def read_summary(self) -> list[dict[str, Any]]:
        """``summary.csv`` as a list of dicts, types inferred from the file alone (``None`` for empty cells):
        ``epoch`` an int or ``None`` (``best``); ``iteration``, ``layer``, ``hvps`` ints; a column whose name ends
        in ``eigenvalues`` or any of whose cells holds several numbers, lists of floats; other numbers floats;
        anything else text. See :func:`prunehess.layout.summary.parse_summary`."""
        path = self.summary_file
        return parse_summary(read_text(path), path)

    def read_config(self) -> dict[str, Any]:
        """``config.yaml`` as a dict."""
        import yaml

        path = self.config_file
        try:
            config = yaml.safe_load(read_text(path))
        except yaml.YAMLError as err:
            raise DataError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
        if config is None:
            return {}
        if not isinstance(config, dict):
            raise DataError(f"{path}: expected a mapping of option names to values")
        return config


def _density_columns(values: Any, what: str) -> np.ndarray:
    array = to_numpy(values)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.size == 0:
        raise ValueError(f"density {what}: expected shape (m,) or (runs, m), got {array.shape}")
    return array.T  # (m, runs): one column per run

