"""Every path of the output tree, and the operations on its folders (listing, retiring, sweeping).

:class:`TreePaths` is the path half of :class:`prunehess.layout.OutputLayout` (which adds the writers and
readers). It joins every path of the tree: no other module builds one from strings.
"""
from __future__ import annotations

import os
import re
import time
import warnings
from pathlib import Path
from typing import Iterable, Optional

from prunehess.errors import DataError
from prunehess.layout.names import (
    METRICS,
    metric_dir_name,
    parse_metric_dir,
    parse_result,
    result_name,
    sort_key,
)
from prunehess.storage import sweep_temporaries

__all__ = ["TreePaths", "ResultKey", "LANDSCAPE_NAMES", "BARRIER_KINDS"]

ResultKey = tuple[int, Optional[int], Optional[int]]
"""``(iteration, epoch, layer)`` of one checkpoint's results for the whole model (``layer`` ``None``) or a layer."""


class TreePaths:
    """The paths of the output tree rooted at ``root`` (which need not exist yet).

    Iterations are prunehess's: 0 is the dense network, -1 the initial weights. Epochs are ints, ``None`` for the
    best checkpoint of an iteration. ``layer`` is the index ``k`` of a parameter tensor in ``named_parameters()``
    order, ``None`` for the whole model. Metrics are any metric name (:mod:`prunehess.layout.names`).
    """

    LAYERS_FILE = "layers.txt"
    REMAIN_PARAMS_FILE = "remain_params.txt"
    SUMMARY_FILE = "summary.csv"
    CONFIG_FILE = "config.yaml"
    REPORT_FILE = "report.html"
    FIGURES_DIR = "figures"
    STATE_DIR = ".prunehess"

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TreePaths) and other.root == self.root

    def __hash__(self) -> int:
        return hash(self.root)

    # -------------------------------------------------------------------------------------- shared files
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

    @property
    def figures_dir(self) -> Path:
        """``root/figures``: where plots go unless told otherwise (never a metric folder)."""
        return self.root / self.FIGURES_DIR

    # ------------------------------------------------------------------------------------- hidden state
    @property
    def state_dir(self) -> Path:
        """``root/.prunehess``: what a run has finished and who runs it."""
        return self.root / self.STATE_DIR

    @property
    def records_dir(self) -> Path:
        """``.prunehess/records``: one record per finished checkpoint."""
        return self.state_dir / "records"

    def record_path(self, tag: str) -> Path:
        """``.prunehess/records/<tag>.json``, the record of the checkpoint tagged ``tag`` (e.g. ``001_10``)."""
        if not isinstance(tag, str) or tag in ("", ".", "..") or any(c in tag for c in "/\\\0"):
            raise ValueError(f"record tag {tag!r} is not a plain file name")
        return self.records_dir / f"{tag}.json"

    @property
    def strategy_file(self) -> Path:
        """``.prunehess/strategy.json``: the HVP strategy measured on the first checkpoint."""
        return self.state_dir / "strategy.json"

    @property
    def lock_file(self) -> Path:
        """``.prunehess/lock``: held by the process extracting into this tree."""
        return self.state_dir / "lock"

    @property
    def superseded_dir(self) -> Path:
        """``.prunehess/superseded``: earlier runs' results, moved out of the tree, one folder per run."""
        return self.state_dir / "superseded"

    def new_superseded_folder(self) -> Path:
        """A new folder name under :attr:`superseded_dir` (UTC time, then ``-2``, ``-3``... if taken); not created."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        folder, n = self.superseded_dir / stamp, 1
        while folder.exists():
            n += 1
            folder = self.superseded_dir / f"{stamp}-{n}"
        return folder

    # ------------------------------------------------------------------------------------------ results
    def metric_dir(self, metric: str, layer: int | None = None) -> Path:
        """``root/<metric>`` for the whole model, ``root/<metric>_layer<k>`` for parameter tensor ``k``."""
        return self.root / metric_dir_name(metric, layer)

    def result_path(self, metric: str, iteration: int, epoch: int | None, layer: int | None = None, *,
                    ext: str | None = None) -> Path:
        """The file of one result, e.g. ``root/top_eigenvalues/top_eigenvalues001_10.txt``.

        ``ext`` defaults to the metric's (:data:`~prunehess.layout.names.RESULT_EXTENSIONS`: ``pdf`` for
        ``esd_plot``, ``txt`` otherwise).
        """
        return self.metric_dir(metric, layer) / result_name(metric, iteration, epoch, ext)

    def parse_result_name(self, name: str) -> tuple[str, int, int | None]:
        """``(metric, iteration, epoch)`` of a result file name, by pattern.

        ``top_eigenvalues001_10.txt`` -> ``("top_eigenvalues", 0, 10)``; ``trace000_best.txt`` ->
        ``("trace", -1, None)``. A name of another form raises :class:`DataError`.
        """
        metric, iteration, epoch, _ = parse_result(Path(name).name)
        return metric, iteration, epoch

    @staticmethod
    def parse_metric_dir(name: str) -> tuple[str, int | None] | None:
        """``(metric, layer)`` of a metric folder name (``trace`` -> ``("trace", None)``, ``trace_layer3`` ->
        ``("trace", 3)``), or ``None`` for any other name (hidden, ``figures``, not a metric name)."""
        return parse_metric_dir(name)

    @staticmethod
    def parse_metric_folder(path: str | Path) -> tuple[str, int | None] | None:
        """``(metric, layer)`` of ``path`` if it is a metric folder: its name parses and it holds at least one
        result file of its metric (so an output folder named ``output`` is not taken for one); else ``None``."""
        path = Path(path)
        parsed = parse_metric_dir(path.name)
        if parsed is None or not path.is_dir():
            return None
        return parsed if any(_result_of(entry, parsed[0]) for entry in path.iterdir()) else None

    def list_results(self, metric: str, layer: int | None = None, *,
                     ext: str | None = None) -> dict[tuple[int, int | None], Path]:
        """``(iteration, epoch) -> path`` of every result file in a metric folder, in numeric order.

        With ``ext``, only files with that extension. Hidden and temporary files are ignored; other names that are
        not result files of this metric are listed in one warning. Two files naming the same checkpoint
        (``trace001_10.txt`` and ``trace0001_10.txt``) raise :class:`DataError`. A missing folder raises
        :class:`DataError`.
        """
        folder = self.metric_dir(metric, layer)
        if not folder.is_dir():
            raise DataError(f"{folder}: no such folder")
        found: dict[tuple[int, int | None], Path] = {}
        strays: list[str] = []
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith(".") or not entry.is_file():
                continue
            parsed = _result_of(entry, metric)
            if parsed is None:
                strays.append(entry.name)
                continue
            if ext is not None and parsed[2] != ext:
                continue
            key = parsed[:2]
            if key in found:
                raise DataError(f"{entry}: names the same checkpoint as {found[key].name}")
            found[key] = entry
        if strays:
            warnings.warn(f"{folder}: ignoring files that are not {metric} results: {', '.join(strays)}",
                          stacklevel=2)
        return {key: found[key] for key in sorted(found, key=sort_key)}

    def _metric_folders(self, *, links: bool = True) -> list[tuple[Path, str, int | None]]:
        """``(folder, metric, layer)`` of every metric folder in the root, sorted by name; without symlinked
        folders unless ``links``."""
        if not self.root.is_dir():
            return []
        found = []
        for entry in sorted(self.root.iterdir()):
            parsed = parse_metric_dir(entry.name)
            if parsed is not None and entry.is_dir() and (links or not entry.is_symlink()):
                found.append((entry, *parsed))
        return found

    def layers_present(self) -> list[int]:
        """The parameter-tensor indices ``k`` that have at least one ``<metric>_layer<k>`` folder."""
        return sorted({layer for _, _, layer in self._metric_folders() if layer is not None})

    def metrics_present(self, layer: int | None = None) -> list[str]:
        """The seed's metrics (in :data:`~prunehess.layout.names.METRICS` order) whose folder exists for ``layer``."""
        return [m for m in METRICS if self.metric_dir(m, layer).is_dir()]

    def retire_results(self, keep: Iterable[ResultKey], into: str | Path) -> list[Path]:
        """Move every result file that ``keep`` does not name out of the tree, to the same relative path under
        ``into``, then remove empty metric folders. Returns the files' new paths.

        ``keep`` holds ``(iteration, epoch, layer)`` of the results a run stands behind (``layer`` ``None`` for the
        whole model). A rerun under other options, on other checkpoints or without ``--compute-each-layer``
        rewrites only its own results; this takes the earlier run's other files out of the tree, so that plots and
        reports read one run, without deleting them. Only metric folders are visited (never ``figures`` or the
        hidden ``.prunehess``), and in them only files named as results of the folder's metric move: other
        names and hidden files stay.
        """
        keep = set(keep)
        into = Path(into)
        moved: list[Path] = []
        for folder, metric, layer in self._metric_folders(links=False):
            for entry in sorted(folder.iterdir()):
                if self._retired(entry, metric, layer, keep):
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
        parsed = _result_of(entry, metric)
        if parsed is None:
            return False
        iteration, epoch, ext = parsed
        return (iteration, epoch, layer) not in keep or entry != self.result_path(metric, iteration, epoch, layer,
                                                                                   ext=ext)

    def remove_stale_temporaries(self) -> list[Path]:
        """Delete the temporary files a killed writer left behind (``.<name>.<random>.tmp``) in the root, every
        metric folder and the hidden state folders; returns them, sorted. Only the holder of the tree's lock may
        call this (another run's writer could own them otherwise); ``figures`` is left alone, since plots are
        drawn without that lock."""
        folders = [self.root, *(folder for folder, _, _ in self._metric_folders()), self.state_dir,
                   self.records_dir]
        return sweep_temporaries(folders)

    # ------------------------------------------------------------------ landscape geometry (landscape, barrier)
    LANDSCAPE_DIR = "landscape"
    BARRIER_DIR = "barrier"

    @property
    def landscape_dir(self) -> Path:
        """``root/landscape``: ``prunehess landscape``'s loss curves and surfaces."""
        return self.root / self.LANDSCAPE_DIR

    def landscape_path(self, direction: str, tag: str) -> Path:
        """``landscape/<direction><III>_<EE>.txt``, e.g. ``landscape/top1001_best.txt`` (a curve) or
        ``landscape/top1-top2001_best.txt`` (the surface); ``direction`` is one of :data:`LANDSCAPE_NAMES`."""
        if direction not in LANDSCAPE_NAMES:
            raise ValueError(f"landscape direction {direction!r} is not one of {', '.join(LANDSCAPE_NAMES)}")
        return self.landscape_dir / f"{direction}{_checked_tag(tag)}.txt"

    def list_landscapes(self) -> dict[tuple[str, str], Path]:
        """``(direction, tag) -> path`` of every landscape file (empty without the folder), sorted by name."""
        return _listed(self.landscape_dir, _LANDSCAPE_FILE, lambda m: (m["direction"], m["tag"]))

    @property
    def barrier_dir(self) -> Path:
        """``root/barrier``: ``prunehess barrier``'s interpolation paths and their table."""
        return self.root / self.BARRIER_DIR

    @property
    def barrier_table_file(self) -> Path:
        """``barrier/barrier.csv``: one row per interpolated pair of checkpoints."""
        return self.barrier_dir / "barrier.csv"

    def barrier_path(self, kind: str, tag_a: str, tag_b: str) -> Path:
        """``barrier/<kind>_<tagA>_<tagB>.txt``, e.g. ``barrier/consecutive_001_best_002_best.txt``; ``kind`` is
        one of :data:`BARRIER_KINDS`."""
        if kind not in BARRIER_KINDS:
            raise ValueError(f"barrier kind {kind!r} is not one of {', '.join(BARRIER_KINDS)}")
        return self.barrier_dir / f"{kind}_{_checked_tag(tag_a)}_{_checked_tag(tag_b)}.txt"

    def list_barrier_paths(self) -> dict[tuple[str, str, str], Path]:
        """``(kind, tag_a, tag_b) -> path`` of every interpolation path file (empty without the folder)."""
        return _listed(self.barrier_dir, _BARRIER_FILE, lambda m: (m["kind"], m["a"], m["b"]))

    def geometry_state_dir(self, command: str) -> Path:
        """``.prunehess/landscape``, ``.prunehess/barrier`` or ``.prunehess/pruning_step``: the records of finished
        files of that command."""
        commands = (self.LANDSCAPE_DIR, self.BARRIER_DIR, self.PRUNING_STEP_DIR)
        if command not in commands:
            raise ValueError(f"{command!r} is not one of {', '.join(map(repr, commands))}")
        return self.state_dir / command

    def geometry_record_path(self, command: str, result: Path) -> Path:
        """``.prunehess/<command>/<stem of result>.json``: the record of one landscape, barrier or pruning-step
        file."""
        result, records = Path(result), self.geometry_state_dir(command)  # (an unknown command is refused)
        if result.parent != self.root / command:
            raise ValueError(f"{result}: not a file of {self.root / command}")
        return records / f"{result.stem}.json"

    # ------------------------------------------------------------------ the pruning step (prunehess pruning-step)
    PRUNING_STEP_DIR = "pruning_step"

    @property
    def pruning_step_dir(self) -> Path:
        """``root/pruning_step``: ``prunehess pruning-step``'s tables."""
        return self.root / self.PRUNING_STEP_DIR

    @property
    def pruning_step_table_file(self) -> Path:
        """``pruning_step/pruning_step.csv``: one row per step and per layer, and one for the whole model."""
        return self.pruning_step_dir / "pruning_step.csv"

    def pruning_step_path(self, tag_a: str, tag_b: str) -> Path:
        """``pruning_step/step_<tagA>_<tagB>.csv``: the rows of the step from checkpoint ``tag_a`` to ``tag_b``,
        e.g. ``pruning_step/step_001_best_002_best.csv``."""
        return self.pruning_step_dir / f"step_{_checked_tag(tag_a)}_{_checked_tag(tag_b)}.csv"

    def list_pruning_steps(self) -> dict[tuple[str, str], Path]:
        """``(tag_a, tag_b) -> path`` of every step file (empty without the folder), sorted by name."""
        return _listed(self.pruning_step_dir, _STEP_FILE, lambda m: (m["a"], m["b"]))


def _result_of(entry: Path, metric: str) -> tuple[int, int | None, str] | None:
    """``(iteration, epoch, ext)`` if ``entry``'s name is a result file name of ``metric``, else ``None``."""
    try:
        file_metric, iteration, epoch, ext = parse_result(entry.name)
    except DataError:
        return None
    return (iteration, epoch, ext) if file_metric == metric else None


# ----------------------------------------------------------------------- landscape geometry's file names
LANDSCAPE_NAMES = ("top1", "top2", "random", "gradient", "top1-top2")
"""The file-name prefixes of ``landscape/``: the four directions of a curve, and ``top1-top2``, the surface."""

BARRIER_KINDS = ("consecutive", "rewind", "against")
"""The pair kinds of ``barrier/``."""

_TAG = r"\d{3,}_(?:\d{2,}|best)"
_LANDSCAPE_FILE = re.compile(rf"^(?P<direction>top1-top2|top1|top2|random|gradient)(?P<tag>{_TAG})\.txt$")
_BARRIER_FILE = re.compile(rf"^(?P<kind>consecutive|rewind|against)_(?P<a>{_TAG})_(?P<b>{_TAG})\.txt$")
_STEP_FILE = re.compile(rf"^step_(?P<a>{_TAG})_(?P<b>{_TAG})\.csv$")


def _checked_tag(tag: str) -> str:
    """``tag`` if it is a checkpoint tag ``III_EE`` (``001_10``, ``000_00``, ``002_best``), else ValueError."""
    if not isinstance(tag, str) or not re.fullmatch(_TAG, tag):
        raise ValueError(f"{tag!r} is not a checkpoint tag III_EE (e.g. 001_best, 002_10)")
    return tag


def _listed(folder: Path, pattern: re.Pattern, key) -> dict:
    """``key(match) -> path`` of the files in ``folder`` whose names match ``pattern``, sorted by name."""
    if not folder.is_dir():
        return {}
    found = {}
    for entry in sorted(folder.iterdir()):
        match = pattern.match(entry.name)
        if match is not None and entry.is_file():
            found[key(match)] = entry
    return found
