"""``summary.csv``: one row per checkpoint and layer, written from the caller's columns, read without them.

The writer takes the column list (a :class:`Column` per column: name and kind) from its caller, which defines
it next to the records it summarises; keys of the rows that no column names follow, in the order they first
appear. The reader infers each cell's type from the file alone (see :func:`parse_summary`).
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence, get_args

import numpy as np

from prunehess.errors import DataError
from prunehess.layout.formats import format_float, parse_number, to_numpy
from prunehess.layout.names import as_int, epoch_tag

__all__ = ["Column", "ColumnKind", "summary_text", "parse_summary", "INT_COLUMNS"]

ColumnKind = Literal["int", "float", "floats", "epoch", "text"]
_KINDS: tuple[str, ...] = get_args(ColumnKind)

INT_COLUMNS = ("iteration", "layer", "hvps")
"""The columns :func:`parse_summary` reads as integers."""


@dataclass(frozen=True)
class Column:
    """One column of ``summary.csv``.

    Attributes:
        name: the header cell.
        kind: how cells are written: ``"int"``; ``"float"`` (``repr``, full precision); ``"floats"`` (numbers
            separated by spaces); ``"epoch"`` (the epoch, or ``best`` for ``None``); ``"text"`` (``str``).
            ``None`` is an empty cell, except for ``"epoch"``.

    Example:
        >>> Column("trace", "float").cell(0.1), Column("epoch", "epoch").cell(None)
        ('0.1', 'best')
    """

    name: str
    kind: ColumnKind

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"summary column name must be a non-empty string, got {self.name!r}")
        if self.kind not in _KINDS:
            raise ValueError(f"summary column {self.name}: unknown kind {self.kind!r}; expected one of: "
                             f"{', '.join(_KINDS)}")

    def cell(self, value: Any) -> str:
        """The text of ``value`` in this column."""
        if self.kind == "epoch":
            return epoch_tag(value)  # None: the best checkpoint
        if value is None:
            return ""
        if self.kind == "int":
            return str(as_int(value, self.name))
        if self.kind == "float":
            return format_float(value)
        if self.kind == "floats":
            return " ".join(format_float(v) for v in to_numpy(value).reshape(-1))
        return str(value)


def _extra_cell(value: Any) -> str:
    """The text of a value in a column the caller did not declare: floats at full precision, sequences of
    numbers separated by spaces, anything else as ``str``; ``None`` an empty cell."""
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        return format_float(value)
    if isinstance(value, (list, tuple, np.ndarray)) or hasattr(value, "detach"):
        try:
            return " ".join(format_float(v) for v in to_numpy(value).reshape(-1))
        except (TypeError, ValueError):
            pass
    return str(value)


def summary_text(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column]) -> str:
    """The text of ``summary.csv``: ``columns`` in order, then the rows' other keys in the order they first
    appear (written by value: floats at full precision, sequences of numbers space-separated, others as text)."""
    columns = list(columns)
    for column in columns:
        if not isinstance(column, Column):
            raise TypeError(f"summary: columns must be Column(name, kind), got {column!r}")
    names = [c.name for c in columns]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"summary: columns named more than once: {', '.join(twice)}")
    extras: list[str] = []
    for row in rows:
        extras.extend(key for key in row if key not in names and key not in extras)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(names + extras)
    for row in rows:
        writer.writerow([c.cell(row.get(c.name)) for c in columns] + [_extra_cell(row.get(k)) for k in extras])
    return buffer.getvalue()


def parse_summary(text: str, path: Path) -> list[dict[str, Any]]:
    """The rows of ``summary.csv`` (its ``text``; ``path`` for messages), types inferred from the file alone.

    - an empty cell is ``None``;
    - ``epoch``: an int, or ``None`` for ``best``;
    - ``iteration``, ``layer``, ``hvps`` (:data:`INT_COLUMNS`): ints;
    - a column whose name ends in ``eigenvalues``, or any of whose cells holds several numbers: lists of floats;
    - any other cell that is a number: a float; any other cell: its text.

    So a text cell that reads as a number (``"5"``) comes back as a float. A malformed file raises
    :class:`DataError` naming the file, the line and the column.
    """
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None:
        raise DataError(f"{path}: empty (expected a header line)")
    missing = [c for c in ("iteration", "epoch") if c not in reader.fieldnames]
    if missing:
        raise DataError(f"{path}: header lacks the column(s) {', '.join(missing)}")
    raw: list[tuple[int, dict[str, str]]] = []
    for row in reader:
        if None in row:
            raise DataError(f"{path}: line {reader.line_num}: more cells than the header has columns")
        raw.append((reader.line_num, {key: ("" if value is None else value.strip()) for key, value in row.items()}))
    lists = {key for key in reader.fieldnames if key.endswith("eigenvalues")}
    lists |= {key for _, row in raw for key, value in row.items() if _several_numbers(value)}
    return [{key: _parse_cell(key, value, key in lists, path, line) for key, value in row.items()}
            for line, row in raw]


def _number(text: str) -> float | None:
    """``text`` as a float if it is a number (Python's syntax without digit-grouping underscores, so that a tag
    such as ``001_10`` stays text), else ``None``."""
    if "_" in text:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _several_numbers(value: str) -> bool:
    parts = value.split()
    return len(parts) > 1 and all(_number(v) is not None for v in parts)


def _parse_cell(key: str, value: str, as_list: bool, path: Path, line: int) -> Any:
    if value == "":
        return None
    if key == "epoch":
        if value == "best":
            return None
        if not value.isdigit():
            raise DataError(f"{path}: line {line}: column epoch: {value!r} is neither an epoch nor 'best'")
        return int(value)
    if key in INT_COLUMNS:
        try:
            return int(value)
        except ValueError:
            raise DataError(f"{path}: line {line}: column {key}: {value!r} is not an integer") from None
    if as_list:
        return [parse_number(v, path, line, f"column {key}") for v in value.split()]
    number = _number(value)
    return value if number is None else number
