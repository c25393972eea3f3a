"""What a geometry command finished: one record per result file, under ``.prunehess/<command>/``.

A record (``.prunehess/landscape/top1001_best.json``) holds the key its file was computed under: a digest of every
input that changes its numbers (the command's options, the run's data options, the checkpoint's bytes and, for
eigenvector directions, the ``.npz``'s bytes). A rerun skips a file whose record has the same key while the file is
there; a record is written after its file, atomically, so a run killed at any moment recomputes only what it had
not finished. Paths come from :class:`~prunehess.layout.OutputLayout`.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping, Optional

from prunehess.errors import OutputError
from prunehess.layout import OutputLayout
from prunehess.storage import atomic_write_text, sweep_temporaries

__all__ = ["Finished", "digest", "file_digest"]


def digest(items: Mapping[str, Any]) -> str:
    """A short, stable digest of a JSON-able mapping."""
    return hashlib.sha256(json.dumps(items, sort_keys=True, default=str).encode()).hexdigest()[:24]


def file_digest(path: Path) -> str:
    """A digest of a file's bytes."""
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()[:32]


class Finished:
    """The records of ``command`` (``landscape`` or ``barrier``) in the output tree of ``layout``."""

    def __init__(self, layout: OutputLayout, command: str):
        self.layout, self.command = layout, command
        self.folder = layout.geometry_state_dir(command)

    def sweep(self) -> None:
        """Delete what a killed writer left in the records' folder (only the holder of the tree's lock calls it)."""
        sweep_temporaries([self.folder])

    def _read(self, result: Path) -> Optional[dict[str, Any]]:
        try:
            record = json.loads(self.layout.geometry_record_path(self.command, result).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def done(self, result: Path, key: str) -> bool:
        """Whether ``result`` is there and was finished under ``key``."""
        record = self._read(result)
        return record is not None and record.get("key") == key and Path(result).is_file()

    def save(self, result: Path, key: str, values: Optional[Mapping[str, Any]] = None) -> None:
        """Record ``result`` as finished under ``key`` (with ``values`` to rebuild a table from, e.g. barrier.csv)."""
        path = self.layout.geometry_record_path(self.command, result)
        record = {"key": key, "file": Path(result).name, "values": dict(values or {})}
        try:
            atomic_write_text(path, json.dumps(record, sort_keys=True))
        except OSError as err:
            raise OutputError(f"{path}: cannot write the run state ({err.strerror or err})") from None

    def values(self, results: Mapping[Any, Path]) -> dict[Any, dict[str, Any]]:
        """``key -> values`` of the records of the files ``results`` (``key -> path``) that are there."""
        out = {}
        for key, result in results.items():
            record = self._read(result)
            if record is not None and result.is_file():
                out[key] = record.get("values", {})
        return out
