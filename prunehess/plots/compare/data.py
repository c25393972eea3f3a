"""The numbers behind ``prunehess compare``: several extract outputs read side by side.

Each run's best checkpoints (the ``best`` rows of ``summary.csv``, one per pruning iteration) give, per block (the
whole model and each layer), the top eigenvalue, the trace and its standard error, λmin (the first of
``bottom_eigenvalues``), ``|λmin/λmax|`` and, for the whole model, the test accuracy, against the percent of
weights remaining. Runs are refused when their ``config.yaml`` names different models or datasets.

Pairing sparsity levels and comparing spectra: :mod:`prunehess.plots.compare.match`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from prunehess.errors import ConfigError, DataError
from prunehess.layout import OutputLayout
from prunehess.plots import _common as c

__all__ = ["RunSeries", "Run", "load_runs", "read_run", "unique_labels", "QUANTITIES", "LAYER_QUANTITIES"]

QUANTITIES = ("top_eigenvalue", "trace", "lambda_min", "abs_min_over_max", "test_accuracy")
"""What the overlays draw, in panel order (``test_accuracy`` for the whole model only)."""
LAYER_QUANTITIES = QUANTITIES[:4]
COLUMNS = {"top_eigenvalue": "top_eigenvalues", "trace": "trace", "lambda_min": "bottom_eigenvalues",
           "abs_min_over_max": "abs_min_over_max", "test_accuracy": "test_accuracy"}
"""The ``summary.csv`` column of each quantity (of a list column, the first number)."""


@dataclass(frozen=True)
class RunSeries:
    """One run's best checkpoints in one block, dense to sparse: the numbers one overlay line is drawn from.

    Attributes:
        label: the run's name in legends.
        percents: percent of weights remaining of each pruning iteration.
        values: quantity (:data:`QUANTITIES`) -> one value per iteration (NaN: none); a quantity the run does
            not have is absent.
        trace_stderr: standard errors of the trace (NaN where unknown), or ``None``: no band.
    """

    label: str
    percents: np.ndarray
    values: Mapping[str, np.ndarray]
    trace_stderr: np.ndarray | None = None

    def __post_init__(self):
        object.__setattr__(self, "percents", np.asarray(self.percents, dtype=float).reshape(-1))
        values = {k: np.asarray(v, dtype=float).reshape(-1) for k, v in self.values.items()}
        for name, array in values.items():
            if name not in QUANTITIES:
                raise ValueError(f"run series {self.label}: unknown quantity {name!r}; expected one of "
                                 f"{', '.join(QUANTITIES)}")
            if array.shape != self.percents.shape:
                raise ValueError(f"run series {self.label}: {self.percents.size} percents but {array.size} {name}")
        object.__setattr__(self, "values", values)
        if self.trace_stderr is not None:
            object.__setattr__(self, "trace_stderr", np.asarray(self.trace_stderr, dtype=float).reshape(-1))


@dataclass(frozen=True)
class Run:
    """One extract output: where it is, what it is, and its best checkpoints per block.

    Attributes:
        label: its name in legends and on the page.
        layout: its output tree.
        config: its ``config.yaml`` (``{}`` without one).
        model, dataset, curvature: from ``config`` (``""`` unknown; curvature ``hessian`` unless it says).
        iterations: the pruning iterations with a best checkpoint, dense to sparse.
        blocks: ``None`` (whole model) or a layer index -> its :class:`RunSeries`.
        layer_names: layer index -> parameter name, from ``layers.txt``.
    """

    label: str
    layout: OutputLayout
    config: Mapping[str, Any]
    model: str
    dataset: str
    curvature: str
    iterations: tuple[int, ...]
    blocks: Mapping[int | None, RunSeries]
    layer_names: Mapping[int, str] = field(default_factory=dict)

    @property
    def whole(self) -> RunSeries:
        return self.blocks[None]

    @property
    def layers(self) -> list[int]:
        return sorted(k for k in self.blocks if k is not None)


# ---------------------------------------------------------------------------------------------- reading
def _first(value: Any) -> float:
    """A cell as one number: a list column's first, an empty cell NaN."""
    if isinstance(value, list):
        value = value[0] if value else None
    if value is None or isinstance(value, str):
        return np.nan
    return float(value)


def _best_rows(layout: OutputLayout) -> tuple[list[dict[str, Any]], set[str]]:
    """The ``best`` rows of ``summary.csv`` (iteration >= 0) and the file's columns; :class:`DataError` when the
    file, a needed column or any best checkpoint is missing."""
    path = layout.summary_file
    if not path.is_file():
        raise DataError(f"{path}: not found (run prunehess extract into {layout.root} first)")
    rows = layout.read_summary()
    if not rows:
        raise DataError(f"{path}: no rows")
    columns = set(rows[0])
    if "layer" not in columns:
        raise DataError(f"{path}: header lacks the column layer")
    wanted = sorted({COLUMNS[q] for q in QUANTITIES})
    if not columns.intersection(wanted):
        raise DataError(f"{path}: none of the columns {', '.join(wanted)}; nothing to compare")
    best = [row for row in rows if row.get("epoch") is None and (row.get("iteration") or 0) >= 0]
    if not any(row.get("layer") is None for row in best):
        raise DataError(f"{path}: no best checkpoints (whole-model rows with epoch 'best'); compare reads each "
                        "pruning iteration's best checkpoint")
    return best, columns


def _percents(layout: OutputLayout, rows: Sequence[Mapping[str, Any]], iterations: Sequence[int]) -> np.ndarray:
    """Each iteration's remaining percent: the summary's ``remaining_percent`` (full precision), else
    ``remain_params.txt``."""
    found = {row["iteration"]: float(row["remaining_percent"]) for row in rows
             if isinstance(row.get("remaining_percent"), float) and row.get("layer") is None}
    if any(i not in found for i in iterations):
        if not layout.remain_params_file.is_file():
            raise DataError(f"{layout.summary_file}: no remaining_percent for every best checkpoint, and no "
                            f"{layout.remain_params_file.name}")
        lines = dict(enumerate(layout.read_remain_params()))
        found = {i: found.get(i, c.percent_of(lines, i, str(layout.remain_params_file))) for i in iterations}
    return np.array([found[i] for i in iterations])


def _series(label: str, rows: Sequence[Mapping[str, Any]], layer: int | None, iterations: Sequence[int],
            percents: np.ndarray, columns: set[str]) -> RunSeries:
    by_iteration = {row["iteration"]: row for row in rows if row.get("layer") == layer}
    values = {}
    for quantity in QUANTITIES if layer is None else LAYER_QUANTITIES:
        if COLUMNS[quantity] not in columns:
            continue
        array = np.array([_first(by_iteration[i].get(COLUMNS[quantity])) if i in by_iteration else np.nan
                          for i in iterations])
        if np.isfinite(array).any():
            values[quantity] = array
    stderr = None
    if "trace" in values and "trace_stderr" in columns:
        stderr = np.array([_first(by_iteration[i].get("trace_stderr")) if i in by_iteration else np.nan
                           for i in iterations])
        stderr = stderr if np.isfinite(stderr).any() else None
    return RunSeries(label, percents, values, stderr)


def read_run(path: str | Path, label: str) -> Run:
    """One extract output as a :class:`Run` labelled ``label``; :class:`DataError` naming the file and the
    problem when it cannot be compared."""
    layout = OutputLayout(path)
    if not layout.root.is_dir():
        raise DataError(f"{layout.root}: no such folder")
    rows, columns = _best_rows(layout)
    config = layout.read_config() if layout.config_file.is_file() else {}
    model, dataset = c.run_names(layout, config)
    iterations = sorted({row["iteration"] for row in rows if row.get("layer") is None})
    percents = _percents(layout, rows, iterations)
    layers = sorted({row["layer"] for row in rows if row.get("layer") is not None})
    blocks = {layer: _series(label, rows, layer, iterations, percents, columns) for layer in (None, *layers)}
    names = {k: n for k, n, _ in layout.read_layers()} if layout.layers_file.is_file() else {}
    return Run(label=label, layout=layout, config=config, model=model, dataset=dataset,
               curvature=str(config.get("curvature") or "hessian").lower(), iterations=tuple(iterations),
               blocks=blocks, layer_names=names)


# ----------------------------------------------------------------------------------------------- labels
def unique_labels(paths: Sequence[Path]) -> list[str]:
    """The folders' names; equal names gain their parent's (``lt/output``), then a number (``output #2``)."""
    paths = [Path(p).resolve() for p in paths]
    labels = [p.name or str(p) for p in paths]
    clash = {label for label in labels if labels.count(label) > 1}
    labels = [f"{p.parent.name}/{label}" if label in clash and p.parent.name else label
              for p, label in zip(paths, labels)]
    seen: dict[str, int] = {}
    result = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        result.append(label if labels.count(label) == 1 or seen[label] == 1 else f"{label} #{seen[label]}")
    return result


def _curvature_labels(labels: list[str], curvatures: list[str]) -> list[str]:
    """When the runs' curvatures differ: a curvature held by one run names it, others add it in brackets."""
    if len(set(curvatures)) < 2:
        return labels
    return [curv if curvatures.count(curv) == 1 else f"{label} ({curv})" for label, curv in zip(labels, curvatures)]


def _check_labels(labels: Sequence[str], count: int) -> list[str]:
    labels = [str(label).strip() for label in labels]
    if len(labels) != count:
        raise ConfigError(f"labels: {len(labels)} given ({', '.join(labels)}) for {count} runs")
    if any(not label for label in labels):
        raise ConfigError("labels: an empty label")
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        raise ConfigError(f"labels: {', '.join(twice)} given more than once")
    return labels


def _check_same(runs: Sequence[Run]) -> None:
    """Refuse runs whose ``config.yaml`` names another model or dataset than the first run that names one."""
    for key in ("model", "dataset"):
        named = [run for run in runs if getattr(run, key)]
        for run in named[1:]:
            first, value = getattr(named[0], key), getattr(run, key)
            if value != first:
                raise ConfigError(f"{named[0].layout.config_file} vs {run.layout.config_file}: {key} {first} vs "
                                  f"{value}; compare runs of one model and dataset")


def load_runs(paths: Sequence[str | Path], labels: Sequence[str] | None = None) -> list[Run]:
    """Read two or more extract outputs for comparison (see the module's docstring).

    Args:
        paths: the output folders; the first is the reference that sparsity levels are matched to.
        labels: one name per run; default the folders' names (made unique), or each run's curvature
            (``hessian``, ``ggn``, ``fisher``, from ``config.yaml``) when those differ.

    Raises:
        ConfigError: fewer than two folders, labels that do not fit, or runs of different models or datasets.
        DataError: a folder, ``summary.csv`` or column missing, or a run without best checkpoints.
    """
    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        raise ConfigError(f"compare: {len(paths)} output folder{'' if len(paths) == 1 else 's'} given "
                          f"({', '.join(map(str, paths)) or 'none'}); compare needs two or more")
    given = _check_labels(labels, len(paths)) if labels is not None else None
    runs = [read_run(path, given[k] if given else str(k)) for k, path in enumerate(paths)]
    _check_same(runs)
    if given is None:
        names = _curvature_labels(unique_labels(paths), [run.curvature for run in runs])
        runs = [_relabel(run, name) for run, name in zip(runs, names)]
    return runs


def _relabel(run: Run, label: str) -> Run:
    blocks = {k: dataclasses.replace(series, label=label) for k, series in run.blocks.items()}
    return dataclasses.replace(run, label=label, blocks=blocks)

