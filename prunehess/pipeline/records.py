"""What a checkpoint's analysis produced: frozen record types that serialise themselves, and the summary's columns.

A finished checkpoint leaves one :class:`CheckpointRecord` in ``.prunehess/records/<III>_<EE>.json`` (written
after all its result files, so a record means its files are complete) and one :class:`BlockRow` per block (the
whole network, then each layer) in ``summary.csv``. A checkpoint that could not be analysed leaves a
:class:`FailedRecord` saying why. :data:`SUMMARY_COLUMNS` is defined once, here: the record's own columns around
the columns each analysis declares.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Union

from prunehess.analyses import ANALYSES
from prunehess.layout import Column

__all__ = ["BlockRow", "CheckpointRecord", "FailedRecord", "Record", "SUMMARY_COLUMNS", "record_from_json"]

_LEADING = (Column("iteration", "int"), Column("epoch", "epoch"), Column("layer", "int"),
            Column("remaining_percent", "float"), Column("test_accuracy", "float"))
_TRAILING = (Column("hvps", "int"), Column("seconds", "float"))
_OWN = frozenset(c.name for c in _LEADING + _TRAILING)

SUMMARY_COLUMNS: tuple[Column, ...] = _LEADING + tuple(c for unit in ANALYSES for c in unit.columns) + _TRAILING
"""The columns of ``summary.csv``, in order: the checkpoint and block, each analysis's columns in analysis order,
then the products and seconds the block took."""


@dataclass(frozen=True)
class BlockRow:
    """One block's line of ``summary.csv``: ``values`` holds the analyses' cells, by column name."""

    layer: Optional[int]
    values: Mapping[str, Any]
    hvps: int
    seconds: float


@dataclass(frozen=True)
class CheckpointRecord:
    """A finished checkpoint: where it came from (``checkpoint`` is the digest of its bytes), its loss, accuracy
    and remaining percent, and one :class:`BlockRow` per block analysed. ``key`` is the run's numerics key."""

    tag: str
    iteration: int
    epoch: Optional[int]
    kind: str
    path: str
    loss: float
    test_accuracy: Optional[float]
    remaining_percent: float
    rows: tuple[BlockRow, ...]
    seconds: float
    checkpoint: str
    key: str = ""
    status = "done"

    def summary_rows(self) -> list[dict[str, Any]]:
        """The record's lines of ``summary.csv`` as ``{column: value}``."""
        return [{"iteration": self.iteration, "epoch": self.epoch, "layer": row.layer,
                 "remaining_percent": round(self.remaining_percent, 4), "test_accuracy": self.test_accuracy,
                 **row.values, "hvps": row.hvps, "seconds": row.seconds} for row in self.rows]

    def to_json(self) -> str:
        fields = {"tag": self.tag, "status": self.status, "iteration": self.iteration, "epoch": self.epoch,
                  "kind": self.kind, "path": self.path, "loss": self.loss, "test_accuracy": self.test_accuracy,
                  "remaining_percent": self.remaining_percent, "rows": self.summary_rows(), "seconds": self.seconds,
                  "checkpoint": self.checkpoint, "key": self.key}
        return json.dumps(fields, indent=1, sort_keys=True)

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> "CheckpointRecord":
        rows = tuple(BlockRow(layer=row.get("layer"), values={k: v for k, v in row.items() if k not in _OWN},
                              hvps=int(row["hvps"]), seconds=float(row["seconds"])) for row in fields["rows"])
        return cls(tag=fields["tag"], iteration=int(fields["iteration"]), epoch=fields["epoch"], kind=fields["kind"],
                   path=fields["path"], loss=float(fields["loss"]), test_accuracy=fields.get("test_accuracy"),
                   remaining_percent=float(fields["remaining_percent"]), rows=rows, seconds=float(fields["seconds"]),
                   checkpoint=fields.get("checkpoint", ""), key=fields.get("key", ""))


@dataclass(frozen=True)
class FailedRecord:
    """A checkpoint that could not be analysed, and why (a bad file, a non-finite loss)."""

    tag: str
    error: str
    checkpoint: str
    key: str = ""
    status = "failed"

    def to_json(self) -> str:
        return json.dumps({"tag": self.tag, "status": self.status, "error": self.error,
                           "checkpoint": self.checkpoint, "key": self.key}, indent=1, sort_keys=True)


Record = Union[CheckpointRecord, FailedRecord]


def record_from_json(text: str) -> Optional[Record]:
    """The record a ``records/*.json`` file holds, or ``None`` when it is not one (unreadable, of an unknown
    shape): such a file never counts as finished."""
    try:
        fields = json.loads(text)
        if fields.get("status") == "done":
            return CheckpointRecord.from_fields(fields)
        if fields.get("status") == "failed":
            return FailedRecord(tag=fields["tag"], error=fields.get("error", ""),
                                checkpoint=fields.get("checkpoint", ""), key=fields.get("key", ""))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return None
