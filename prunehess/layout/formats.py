"""Text formats of the output tree's files: numbers at full precision, tables, YAML-safe values, and reading.

Numbers are written as the shortest text that reads back to the same float64 (``repr``). Every reader raises
:class:`prunehess.errors.DataError` whose message names the file and the problem.
"""
from __future__ import annotations

import dataclasses
import enum
import io
import os
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from prunehess.errors import DataError

__all__: list[str] = []


def format_float(value: Any) -> str:
    """Shortest text that reads back to the same float64 (``repr``), e.g. ``0.1``, ``1e-07``, ``nan``."""
    return repr(float(value))


def to_numpy(values: Any) -> np.ndarray:
    """``values`` as a float64 array; a torch tensor (on any device) is detached and copied to the CPU."""
    if hasattr(values, "detach"):  # a torch tensor, without importing torch here
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=float)


def values_text(values: np.ndarray) -> str:
    """One number per line."""
    return "".join(f"{format_float(v)}\n" for v in values)


def table_text(rows: np.ndarray) -> str:
    """One line per row, its numbers separated by single spaces."""
    return "".join(" ".join(format_float(v) for v in row) + "\n" for row in rows)


def read_text(path: Path) -> str:
    if not path.is_file():
        raise DataError(f"{path}: not found")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text file") from None
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror or err})") from None


def parse_number(text: str, path: Path, line: int, what: str = "") -> float:
    try:
        return float(text)
    except ValueError:
        where = f" {what}" if what else ""
        raise DataError(f"{path}: line {line}{where}: {text!r} is not a number") from None


def load_numbers(path: Path) -> np.ndarray:
    """The numbers of a text result file (``numpy.loadtxt``, at least 1-D)."""
    text = read_text(path)
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


def plain(value: Any) -> Any:
    """YAML-safe version of a config value: paths to strings, tuples and sets to lists, numpy to Python, enum
    members to their values, dataclasses to dicts."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, enum.Enum):
        return plain(value.value)
    return value
