"""The fixed output tree of ``prunehess extract``: one object owns every path, every writer, every reader.

The tree is the seed tool's (a pruning fork of PyHessian), kept readable by its users' notebooks::

    <root>/
      top_eigenvalues/top_eigenvalues<III>_<EE>.txt    one eigenvalue per line, largest first
      trace/trace<III>_<EE>.txt                        one number: the Hutchinson estimate
      density_eigen/density_eigen<III>_<EE>.txt        SLQ nodes, one column per run
      density_weight/density_weight<III>_<EE>.txt      matching weights (each column sums to 1)
      esd_plot/esd_plot<III>_<EE>.pdf                  Gaussian-broadened density, log y axis
      <metric>_layer<k>/<metric><III>_<EE>.<ext>       the same for parameter tensor k alone
      layers.txt  remain_params.txt  summary.csv  config.yaml

``III`` is the pruning iteration + 1, zero-padded to at least three digits (``000`` = the initial weights),
``EE`` the epoch padded to at least two digits, or ``best``. Names are built by :func:`iteration_tag` and
:func:`epoch_tag` and parsed by pattern (never by character position), so epochs >= 100 and iterations
>= 999 round-trip.

Every writer is atomic (a temporary file in the same folder, then :func:`os.replace`): a run killed at any
moment leaves either the old file or the new one, never half of one. Every reader raises
:class:`prunehess.errors.DataError` whose message names the file and the problem.

Example:
    >>> import tempfile
    >>> out = OutputLayout(tempfile.mkdtemp())
    >>> out.result_path("trace", 0, 10).relative_to(out.root).as_posix()
    'trace/trace001_10.txt'
    >>> out.write_trace(0, 10, 12.5)
    >>> out.read_metric("trace")
    {(0, 10): array([12.5])}
    >>> out.parse_result_name("top_eigenvalues000_best.txt")
    ('top_eigenvalues', -1, None)
"""
from __future__ import annotations

import csv
import dataclasses
import enum
import io
import math
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from prunehess.errors import DataError

__all__ = [
    "METRICS",
    "TEXT_METRICS",
    "SUMMARY_COLUMNS",
    "OutputLayout",
    "iteration_tag",
    "epoch_tag",
    "atomic_write_text",
    "atomic_write_bytes",
]

ResultKey = tuple[int, "int | None", "int | None"]
"""``(iteration, epoch, layer)`` of one checkpoint's results for the whole model (``layer`` ``None``) or a layer."""

METRICS = ("top_eigenvalues", "trace", "density_eigen", "density_weight", "esd_plot")
"""The five metric folders of the seed's tree, in its order."""

TEXT_METRICS = ("top_eigenvalues", "trace", "density_eigen", "density_weight")
"""The metrics stored as plain numbers (``numpy.loadtxt``); ``esd_plot`` holds PDFs."""

SUMMARY_COLUMNS = (
    "iteration",
    "epoch",
    "layer",
    "remaining_percent",
    "test_accuracy",
    "top_eigenvalues",
    "trace",
    "trace_stderr",
    "hvps",
    "seconds",
)
"""The columns of ``summary.csv``, in order (extra keys given to the writer follow them)."""

_INT_COLUMNS = ("iteration", "layer", "hvps")
_FLOAT_COLUMNS = ("remaining_percent", "test_accuracy", "trace", "trace_stderr", "seconds")

_METRIC_ALTERNATION = "|".join(sorted(METRICS, key=len, reverse=True))
_RESULT_NAME = re.compile(
    rf"^(?P<metric>{_METRIC_ALTERNATION})(?P<tag>\d{{3,}})_(?P<epoch>\d{{2,}}|best)\.(?P<ext>txt|pdf)$"
)
_METRIC_DIR = re.compile(rf"^(?P<metric>{_METRIC_ALTERNATION})(?:_layer(?P<layer>\d+))?$")


# --------------------------------------------------------------------------------------------------- naming
def iteration_tag(iteration: int) -> str:
    """The file-name tag of a pruning iteration: ``ite + 1`` padded to at least 3 digits.

    Iteration 0 is the dense network (tag ``001``); iteration -1 stands for the initial weights (``000``).

    Example:
        >>> iteration_tag(0), iteration_tag(-1), iteration_tag(99), iteration_tag(1234)
        ('001', '000', '100', '1235')
    """
    iteration = _as_int(iteration, "iteration")
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
    epoch = _as_int(epoch, "epoch")
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0 or None (best), got {epoch}")
    return f"{epoch:02d}"


def _as_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{what} must be an int, got {value!r}")
    return int(value)


def _check_metric(metric: str, allowed: Sequence[str] = METRICS) -> str:
    if metric not in allowed:
        raise ValueError(f"unknown metric {metric!r}; expected one of: {', '.join(allowed)}")
    return metric


def _sort_key(key: tuple[int, int | None]) -> tuple[int, int, int]:
    iteration, epoch = key
    return (iteration, 1 if epoch is None else 0, -1 if epoch is None else epoch)


# -------------------------------------------------------------------------------------------- atomic writes
def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file in the same folder, then :func:`os.replace`.

    Parent folders are created. Readers see either the old content or the new, never a partial file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions of a new file
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8, ``\\n`` line ends) to ``path`` atomically; see :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _format_float(value: Any) -> str:
    """Shortest text that reads back to the same float64 (``repr``), e.g. ``0.1``, ``1e-07``, ``nan``."""
    return repr(float(value))


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise DataError(f"{path}: not found")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text file") from None
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror or err})") from None


def _parse_number(text: str, path: Path, line: int, what: str = "") -> float:
    try:
        return float(text)
    except ValueError:
        where = f" {what}" if what else ""
        raise DataError(f"{path}: line {line}{where}: {text!r} is not a number") from None


# ------------------------------------------------------------------------------------------------- layout
class OutputLayout:
    """The output tree rooted at ``root``: paths, atomic writers and readers of every file in it.

    Args:
        root: the output folder (``--output``); it need not exist yet (writers create what they need).

    Iterations are prunehess's: 0 is the dense network, -1 the initial weights. Epochs are ints, ``None``
    for the best checkpoint of an iteration. ``layer`` is the index ``k`` of a parameter tensor in
    ``named_parameters()`` order, ``None`` for the whole model.
    """

    LAYERS_FILE = "layers.txt"
    REMAIN_PARAMS_FILE = "remain_params.txt"
    SUMMARY_FILE = "summary.csv"
    CONFIG_FILE = "config.yaml"
    REPORT_FILE = "report.html"

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"OutputLayout({str(self.root)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OutputLayout) and other.root == self.root

    def __hash__(self) -> int:
        return hash(self.root)

    # ---------------------------------------------------------------------------------------------- paths
    def metric_dir(self, metric: str, layer: int | None = None) -> Path:
        """``root/<metric>`` for the whole model, ``root/<metric>_layer<k>`` for parameter tensor ``k``."""
        _check_metric(metric)
        if layer is None:
            return self.root / metric
        layer = _as_int(layer, "layer")
        if layer < 0:
            raise ValueError(f"layer must be >= 0, got {layer}")
        return self.root / f"{metric}_layer{layer}"

    def result_path(self, metric: str, iteration: int, epoch: int | None, layer: int | None = None) -> Path:
        """The file of one result, e.g. ``root/top_eigenvalues/top_eigenvalues001_10.txt``."""
        ext = "pdf" if metric == "esd_plot" else "txt"
        name = f"{metric}{iteration_tag(iteration)}_{epoch_tag(epoch)}.{ext}"
        return self.metric_dir(metric, layer) / name

    @property
    def layers_file(self) -> Path:
        return self.root / self.LAYERS_FILE

    @property
    def remain_params_file(self) -> Path:
        return self.root / self.REMAIN_PARAMS_FILE

    @property
    def summary_file(self) -> Path:
        return self.root / self.SUMMARY_FILE

    @property
    def config_file(self) -> Path:
        return self.root / self.CONFIG_FILE

    @property
    def report_file(self) -> Path:
        return self.root / self.REPORT_FILE

    # ------------------------------------------------------------------------------------------- parsing
    def parse_result_name(self, name: str) -> tuple[str, int, int | None]:
        """``(metric, iteration, epoch)`` of a result file name, by pattern.

        ``top_eigenvalues001_10.txt`` -> ``("top_eigenvalues", 0, 10)``; ``trace000_best.txt`` ->
        ``("trace", -1, None)``. A name of another form raises :class:`DataError`.
        """
        match = _RESULT_NAME.match(Path(name).name)
        if match is None:
            raise DataError(
                f"{name}: not a result file name (expected <metric><III>_<EE|best>.txt, e.g. trace001_10.txt)"
            )
        metric = match["metric"]
        if (match["ext"] == "pdf") != (metric == "esd_plot"):
            raise DataError(f"{name}: {metric} results are .{'pdf' if metric == 'esd_plot' else 'txt'} files")
        epoch = None if match["epoch"] == "best" else int(match["epoch"])
        return metric, int(match["tag"]) - 1, epoch

    @staticmethod
    def parse_metric_dir(name: str) -> tuple[str, int | None] | None:
        """``(metric, layer)`` of a metric folder name (``trace`` -> ``("trace", None)``, ``trace_layer3`` ->
        ``("trace", 3)``), or ``None`` for any other name."""
        match = _METRIC_DIR.match(name)
        if match is None:
            return None
        return match["metric"], None if match["layer"] is None else int(match["layer"])

    def list_results(self, metric: str, layer: int | None = None) -> dict[tuple[int, int | None], Path]:
        """``(iteration, epoch) -> path`` of every result file in a metric folder, in numeric order.

        Hidden and temporary files are ignored; other names that are not result files of this metric are
        listed in one warning. Two files naming the same checkpoint (``trace001_10.txt`` and
        ``trace0001_10.txt``) raise :class:`DataError`. A missing folder raises :class:`DataError`.
        """
        folder = self.metric_dir(metric, layer)
        if not folder.is_dir():
            raise DataError(f"{folder}: no such folder")
        found: dict[tuple[int, int | None], Path] = {}
        strays: list[str] = []
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith(".") or not entry.is_file():
                continue
            try:
                file_metric, iteration, epoch = self.parse_result_name(entry.name)
            except DataError:
                strays.append(entry.name)
                continue
            if file_metric != metric:
                strays.append(entry.name)
                continue
            key = (iteration, epoch)
            if key in found:
                raise DataError(f"{entry}: names the same checkpoint as {found[key].name}")
            found[key] = entry
        if strays:
            warnings.warn(f"{folder}: ignoring files that are not {metric} results: {', '.join(strays)}",
                          stacklevel=2)
        return {key: found[key] for key in sorted(found, key=_sort_key)}

    def layers_present(self) -> list[int]:
        """The parameter-tensor indices ``k`` that have at least one ``<metric>_layer<k>`` folder."""
        if not self.root.is_dir():
            return []
        layers = set()
        for entry in self.root.iterdir():
            match = _METRIC_DIR.match(entry.name)
            if match and match["layer"] is not None and entry.is_dir():
                layers.add(int(match["layer"]))
        return sorted(layers)

    def metrics_present(self, layer: int | None = None) -> list[str]:
        """The metrics (in :data:`METRICS` order) whose folder exists for ``layer``."""
        return [m for m in METRICS if self.metric_dir(m, layer).is_dir()]

    def retire_results(self, keep: Iterable[ResultKey], into: str | Path) -> list[Path]:
        """Move every result file that ``keep`` does not name out of the tree, to the same relative path under
        ``into``, then remove empty metric folders. Returns the files' new paths.

        ``keep`` holds ``(iteration, epoch, layer)`` of the results a run stands behind (``layer`` ``None`` for the
        whole model). A rerun under other options, on other checkpoints or without ``--compute-each-layer``
        rewrites only its own results; this takes the earlier run's other files out of the tree, so that plots and
        reports read one run, without deleting them. Files that are not results (other names, hidden files) stay.
        """
        if not self.root.is_dir():
            return []
        keep = set(keep)
        into = Path(into)
        moved: list[Path] = []
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.is_symlink()):
            parsed = self.parse_metric_dir(folder.name)
            if parsed is None:
                continue
            for entry in sorted(folder.iterdir()):
                if self._retired(entry, *parsed, keep):
                    target = into / folder.name / entry.name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(entry, target)
                    moved.append(target)
            if not any(folder.iterdir()):  # also one a run killed mid-move left empty
                folder.rmdir()
        return moved

    def _retired(self, entry: Path, metric: str, layer: int | None, keep: set[ResultKey]) -> bool:
        """Whether ``entry`` (in the folder of ``metric``, ``layer``) is a result file that ``keep`` does not name
        at its canonical path."""
        if entry.name.startswith(".") or not (entry.is_file() or entry.is_symlink()):
            return False
        try:
            file_metric, iteration, epoch = self.parse_result_name(entry.name)
        except DataError:
            return False
        if file_metric != metric:
            return False
        return (iteration, epoch, layer) not in keep or entry != self.result_path(metric, iteration, epoch, layer)

    def remove_stale_temporaries(self) -> list[Path]:
        """Delete the temporary files a killed writer left behind (``.<name>.<random>.tmp``); returns them."""
        if not self.root.is_dir():
            return []
        removed = []
        for folder in [self.root, *(p for p in self.root.iterdir() if p.is_dir() and _METRIC_DIR.match(p.name))]:
            for entry in folder.glob(".*.tmp"):
                if entry.is_file():
                    entry.unlink()
                    removed.append(entry)
        return sorted(removed)

    # ------------------------------------------------------------------------------------------- writers
    def write_top_eigenvalues(self, iteration: int, epoch: int | None, values: Sequence[float],
                              layer: int | None = None) -> None:
        """Top eigenvalues, one per line, in the order given (the estimators return the largest first)."""
        array = np.asarray(values, dtype=float).reshape(-1)
        if array.size == 0:
            raise ValueError("top eigenvalues: need at least one value")
        text = "".join(f"{_format_float(v)}\n" for v in array)
        atomic_write_text(self.result_path("top_eigenvalues", iteration, epoch, layer), text)

    def write_trace(self, iteration: int, epoch: int | None, value: float, layer: int | None = None) -> None:
        """The trace estimate, one number."""
        array = np.asarray(value, dtype=float).reshape(-1)
        if array.size != 1:
            raise ValueError(f"trace: expected one number, got {array.size}")
        atomic_write_text(self.result_path("trace", iteration, epoch, layer), f"{_format_float(array[0])}\n")

    def write_density(self, iteration: int, epoch: int | None, nodes: np.ndarray, weights: np.ndarray,
                      layer: int | None = None) -> None:
        """SLQ nodes and weights, shape ``(m,)`` or ``(runs, m)``; written one column per run."""
        nodes_2d = self._density_columns(nodes, "nodes")
        weights_2d = self._density_columns(weights, "weights")
        if nodes_2d.shape != weights_2d.shape:
            raise ValueError(f"density: nodes {nodes_2d.T.shape} and weights {weights_2d.T.shape} differ in shape")
        atomic_write_text(self.result_path("density_eigen", iteration, epoch, layer), _table_text(nodes_2d))
        atomic_write_text(self.result_path("density_weight", iteration, epoch, layer), _table_text(weights_2d))

    @staticmethod
    def _density_columns(values: Any, what: str) -> np.ndarray:
        array = _to_numpy(values)
        if array.ndim == 1:
            array = array[None, :]
        if array.ndim != 2 or array.size == 0:
            raise ValueError(f"density {what}: expected shape (m,) or (runs, m), got {array.shape}")
        return array.T  # (m, runs): one column per run

    def write_esd_plot(self, iteration: int, epoch: int | None, grid: np.ndarray, density: np.ndarray,
                       layer: int | None = None, *, title: str | None = None) -> None:
        """The broadened spectral density as a PDF (log y axis), rendered by :func:`prunehess.plots.render_esd`.

        ``grid`` and ``density`` are arrays or tensors (any device), e.g. from
        :func:`prunehess.estimators.gaussian_density`.
        """
        from prunehess.plots.esd import render_esd  # plots import layout; import lazily to avoid a cycle

        figure = render_esd(_to_numpy(grid), _to_numpy(density), title=title)
        # fixed margins: the constrained layout costs as much as drawing, for every checkpoint and layer
        figure.set_layout_engine(None)
        figure.subplots_adjust(left=0.14, right=0.97, bottom=0.12, top=0.9 if title else 0.95)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="pdf")
        atomic_write_bytes(self.result_path("esd_plot", iteration, epoch, layer), buffer.getvalue())

    def write_layers(self, rows: Sequence[tuple[int, str, int]]) -> None:
        """``layers.txt``: one line per parameter tensor, ``k<TAB>name<TAB>size``, under a ``#`` header."""
        lines = ["# k\tname\tsize"]
        for k, name, size in rows:
            name = str(name)
            if not name or any(ch.isspace() for ch in name):
                raise ValueError(f"layers: parameter name {name!r} is empty or holds white space")
            lines.append(f"{_as_int(k, 'layer')}\t{name}\t{_as_int(size, 'size')}")
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

    def write_summary(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """``summary.csv``: one row per checkpoint and layer; columns :data:`SUMMARY_COLUMNS` then any extras.

        ``epoch`` ``None`` is written ``best``, ``layer`` ``None`` (whole model) and missing values as empty
        cells, ``top_eigenvalues`` as space-separated numbers, floats at full precision.
        """
        columns = list(SUMMARY_COLUMNS)
        for row in rows:
            columns.extend(key for key in row if key not in columns)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: _summary_cell(key, row.get(key)) for key in columns})
        atomic_write_text(self.summary_file, buffer.getvalue())

    def write_config(self, config: Mapping[str, Any] | Any) -> None:
        """The resolved configuration (a mapping or a dataclass) as ``config.yaml``.

        Paths are written as strings, tuples as lists, enum members as their values.
        """
        import yaml

        plain = _plain(config)
        if not isinstance(plain, dict):
            raise TypeError(f"config must be a mapping or a dataclass, got {type(config).__name__}")
        text = yaml.safe_dump(plain, sort_keys=False, default_flow_style=False)
        atomic_write_text(self.config_file, text)

    # ------------------------------------------------------------------------------------------- readers
    def read_result(self, metric: str, iteration: int, epoch: int | None, layer: int | None = None) -> np.ndarray:
        """The numbers of one result file (``numpy.loadtxt``, at least 1-D)."""
        _check_metric(metric, TEXT_METRICS)
        return _load_numbers(self.result_path(metric, iteration, epoch, layer))

    def read_metric(self, metric: str, layer: int | None = None) -> dict[tuple[int, int | None], np.ndarray]:
        """``(iteration, epoch) -> values`` for every file of a text metric, in numeric order.

        Values are what ``numpy.loadtxt`` reads (at least 1-D): ``(k,)`` top eigenvalues, ``(1,)`` trace,
        ``(m,)`` or ``(m, runs)`` density nodes and weights. Malformed files raise :class:`DataError`.
        """
        _check_metric(metric, TEXT_METRICS)
        return {key: _load_numbers(path) for key, path in self.list_results(metric, layer).items()}

    def read_layers(self) -> list[tuple[int, str, int]]:
        """``layers.txt`` as ``[(k, name, size), ...]``."""
        path = self.layers_file
        rows = []
        for number, line in enumerate(_read_text(path).splitlines(), start=1):
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
        for number, line in enumerate(_read_text(path).splitlines(), start=1):
            text = line.strip()
            if not text:
                continue
            value = _parse_number(text, path, number)
            if not (math.isfinite(value) and 0.0 <= value <= 100.0):
                raise DataError(f"{path}: line {number}: {text!r} is not a percent in [0, 100]")
            values.append(value)
        if not values:
            raise DataError(f"{path}: empty (expected one percent per line)")
        return values

    def read_summary(self) -> list[dict[str, Any]]:
        """``summary.csv`` as a list of dicts with the types the writer took (``None`` for empty cells)."""
        path = self.summary_file
        reader = csv.DictReader(io.StringIO(_read_text(path)))
        if reader.fieldnames is None:
            raise DataError(f"{path}: empty (expected a header line)")
        missing = [c for c in ("iteration", "epoch") if c not in reader.fieldnames]
        if missing:
            raise DataError(f"{path}: header lacks the column(s) {', '.join(missing)}")
        rows = []
        for row in reader:
            line = reader.line_num
            if None in row:
                raise DataError(f"{path}: line {line}: more cells than the header has columns")
            rows.append({key: _parse_summary_cell(key, value, path, line) for key, value in row.items()})
        return rows

    def read_config(self) -> dict[str, Any]:
        """``config.yaml`` as a dict."""
        import yaml

        path = self.config_file
        try:
            config = yaml.safe_load(_read_text(path))
        except yaml.YAMLError as err:
            raise DataError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
        if config is None:
            return {}
        if not isinstance(config, dict):
            raise DataError(f"{path}: expected a mapping of option names to values")
        return config


# --------------------------------------------------------------------------------------------- internals
def _to_numpy(values: Any) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor, without importing torch here
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=float)


def _table_text(columns: np.ndarray) -> str:
    return "".join(" ".join(_format_float(v) for v in row) + "\n" for row in columns)


def _load_numbers(path: Path) -> np.ndarray:
    text = _read_text(path)
    if not text.strip():
        raise DataError(f"{path}: empty (expected numbers)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = np.loadtxt(io.StringIO(text), dtype=float, ndmin=1)
    except ValueError as err:
        problem = str(err).splitlines()[0] if str(err) else "not plain numbers"
        raise DataError(f"{path}: not plain numbers ({problem})") from None
    return values


def _summary_cell(key: str, value: Any) -> str:
    if key == "epoch":
        return epoch_tag(value)  # None: the best checkpoint
    if value is None:
        return ""
    if key == "top_eigenvalues":
        return " ".join(_format_float(v) for v in np.asarray(_to_numpy(value)).reshape(-1))
    if key in _INT_COLUMNS:
        return str(_as_int(value, key))
    if key in _FLOAT_COLUMNS or isinstance(value, (float, np.floating)):
        return _format_float(value)
    return str(value)


def _parse_summary_cell(key: str, value: str | None, path: Path, line: int) -> Any:
    value = "" if value is None else value.strip()
    if value == "":
        return None
    if key == "epoch":
        if value == "best":
            return None
        if not value.isdigit():
            raise DataError(f"{path}: line {line}: column epoch: {value!r} is neither an epoch nor 'best'")
        return int(value)
    if key in _INT_COLUMNS:
        try:
            return int(value)
        except ValueError:
            raise DataError(f"{path}: line {line}: column {key}: {value!r} is not an integer") from None
    if key in _FLOAT_COLUMNS:
        return _parse_number(value, path, line, f"column {key}")
    if key == "top_eigenvalues":
        return [_parse_number(v, path, line, "column top_eigenvalues") for v in value.split()]
    return value


def _plain(value: Any) -> Any:
    """YAML-safe version of a config value: paths to strings, tuples and sets to lists, numpy to Python."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    return value
