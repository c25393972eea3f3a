"""A training run's output folder: its paths, atomic writes, lock, per-epoch log and saved progress.

::

    <output>/
      checkpoints/initial_state_dict_<type>.pth, <ite>_model_<type>_epoch<E>.pth, <ite>_model_<type>.pth
      remain_params.txt  train_log.csv  train_config.yaml  <dataset>.zip
      train_state.pt     what the finished iterations left (for resuming)
      train.lock         held by the run writing here

Every file but the log (appended row by row as epochs finish) is written atomically (:mod:`prunehess.storage`);
a write that fails raises :class:`~prunehess.errors.OutputError` naming the file.
"""
from __future__ import annotations

import csv
import io
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Mapping, Optional, Sequence

import torch
from torch import Tensor, nn

from prunehess.errors import CheckpointError, ConfigError, OutputError
from prunehess.storage import FolderLock, atomic_write_with
from prunehess.training.config import TrainConfig

__all__ = ["RunFolder", "LOG_COLUMNS", "read_log", "Progress"]

LOG_COLUMNS = (
    "iteration", "epoch", "train_loss", "test_loss", "test_accuracy", "remaining_percent", "batch_size",
    "top_eigenvalue", "trace", "lr",
)
STATE_FORMAT = 1


@dataclass(frozen=True)
class RunFolder:
    """Every path of a training run's output folder (the only place that names them)."""

    root: Path
    prune_type: str
    archive_name: str

    @classmethod
    def for_config(cls, config: TrainConfig) -> "RunFolder":
        return cls(Path(config.output), config.prune_type, config.archive_name)

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def initial(self) -> Path:
        return self.checkpoints / f"initial_state_dict_{self.prune_type}.pth"

    def snapshot(self, iteration: int, epoch: int) -> Path:
        return self.checkpoints / f"{iteration}_model_{self.prune_type}_epoch{epoch}.pth"

    def best(self, iteration: int) -> Path:
        return self.checkpoints / f"{iteration}_model_{self.prune_type}.pth"

    @property
    def remain_params(self) -> Path:
        return self.root / "remain_params.txt"

    @property
    def log(self) -> Path:
        return self.root / "train_log.csv"

    @property
    def config(self) -> Path:
        return self.root / "train_config.yaml"

    @property
    def state(self) -> Path:
        return self.root / "train_state.pt"

    @property
    def lock(self) -> Path:
        return self.root / "train.lock"

    @property
    def archive(self) -> Path:
        return self.root / self.archive_name

    def locked(self) -> FolderLock:
        """The run's lock on ``train.lock`` (not yet taken): a second run into the folder is refused."""
        return FolderLock(self.lock, busy=lambda holder: (
            f"{self.root}: locked by another training run (pid {holder}); wait for it or choose another --output"))


# ---------------------------------------------------------------------------------------------- writes
def write_with(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write ``path`` atomically through ``write(handle)``; an OS error is an :class:`OutputError` naming it."""
    try:
        atomic_write_with(path, write)
    except OSError as err:
        raise OutputError(f"{path}: cannot write ({err.strerror or err})") from None


def write_text(path: Path, text: str) -> None:
    write_with(path, lambda handle: handle.write(text.encode("utf-8")))


def save_state_dict(state: Mapping[str, Tensor], path: Path) -> None:
    write_with(path, lambda handle: torch.save(state, handle))


def remain_text(percents: Sequence[float]) -> str:
    """``remain_params.txt``: one percent per iteration, one decimal."""
    return "".join(f"{r:.1f}\n" for r in percents)


def cpu_state(model: nn.Module) -> "OrderedDict[str, Tensor]":
    """A detached CPU copy of ``model.state_dict()`` (keeps the version metadata torch stores with it)."""
    state = model.state_dict()
    out = OrderedDict((k, v.detach().to("cpu", copy=True)) for k, v in state.items())
    metadata = getattr(state, "_metadata", None)
    if metadata is not None:
        out._metadata = metadata  # type: ignore[attr-defined]
    return out


# ------------------------------------------------------------------------------------------------- log
def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    return str(value)


def _parse(value: str) -> Any:
    if value == "":
        return None
    try:
        return int(value)
    except ValueError:
        return float(value)


def read_log(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``train_log.csv`` (numbers parsed; empty cells are ``None``)."""
    with open(path, newline="") as fh:
        return [{k: _parse(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def log_cells(row: Mapping[str, Any]) -> list[str]:
    """The cells of one log row, in :data:`LOG_COLUMNS` order (missing values empty)."""
    return [_fmt(row.get(c)) for c in LOG_COLUMNS]


def log_text(rows: Sequence[Mapping[str, Any]]) -> str:
    """A whole ``train_log.csv``: the header, then ``rows``."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(LOG_COLUMNS)
    for row in rows:
        writer.writerow(log_cells(row))
    return buf.getvalue()


# ------------------------------------------------------------------------------------------ progress
@dataclass
class Progress:
    """What the finished iterations left: how many, their remaining percent and best accuracy, and the final
    weights and masks of the last one (what the next iteration prunes); ``state`` is its whole final state dict,
    kept only for the Hessian-aware rule (which takes the Hessian there)."""

    completed: int = 0
    remaining: list[float] = field(default_factory=list)
    best_accuracy: list[float] = field(default_factory=list)
    weights: Optional[dict[str, Tensor]] = None
    masks: Optional[dict[str, Tensor]] = None
    state: Optional[dict[str, Tensor]] = None


def load_progress(folder: RunFolder, config: TrainConfig) -> Optional[Progress]:
    """The progress saved in ``train_state.pt``, or ``None`` for a fresh folder.

    A file that is not a training state raises :class:`CheckpointError`; one saved under other settings raises
    :class:`ConfigError` naming the options that differ.
    """
    if not folder.state.exists():
        return None
    try:
        state = torch.load(folder.state, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file
        raise CheckpointError(f"{folder.state}: cannot read the saved training state ({err})") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{folder.state}: not a prunehess training state (format {STATE_FORMAT})")
    saved, now = state["fingerprint"], config.fingerprint()
    differ = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    if differ:
        names = ", ".join("--" + k.replace("_", "-") for k in differ)
        raise ConfigError(f"{folder.state}: {folder.root} holds a run with other settings ({names}); "
                          "use another --output or the same settings to resume")
    completed = int(state["completed"])
    return Progress(
        completed=completed, remaining=list(state["remaining"]), best_accuracy=list(state["best_accuracy"]),
        weights=dict(state["final_weights"]) if completed else None,
        masks={k: v.bool() for k, v in state["masks"].items()} if completed else None,
        state=state["final_state"] if completed and state.get("final_state") is not None else None,
    )


def save_progress(folder: RunFolder, config: TrainConfig, progress: Progress) -> None:
    """Replace ``train_state.pt`` atomically with ``progress``."""
    state = {
        "format": STATE_FORMAT, "fingerprint": config.fingerprint(), "completed": progress.completed,
        "remaining": progress.remaining, "best_accuracy": progress.best_accuracy,
        "final_weights": progress.weights, "masks": progress.masks,
    }
    if progress.state is not None:
        state["final_state"] = progress.state
    write_with(folder.state, lambda handle: torch.save(state, handle))
