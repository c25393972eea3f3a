"""What an extraction has finished, and who is running it: the hidden state under ``<output>/.prunehess/``.

- ``records/<III>_<EE>.json``: one :mod:`~prunehess.pipeline.records` record per finished checkpoint, written
  after all its result files. It holds the run's numerics key and the checkpoint's fingerprint (a digest of its
  bytes): a rerun skips a checkpoint only if the same file was finished under the same numbers-changing options.
- ``strategy.json``: the HVP strategy measured on the first checkpoint (see :mod:`~prunehess.pipeline.strategy`).
- ``superseded/<UTC time>/``: an earlier run's results (and records) that this run's records do not account for,
  moved out of the tree so that the tree holds one run and nothing is deleted.

Every path comes from :class:`~prunehess.layout.OutputLayout`; every write is atomic (:mod:`prunehess.storage`).
"""
from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Optional

from prunehess.errors import OutputError
from prunehess.layout import OutputLayout
from prunehess.pipeline.records import CheckpointRecord, Record, record_from_json
from prunehess.storage import FolderLock, atomic_write_text, exclusive

__all__ = ["RunState", "lock_output"]


def lock_output(layout: OutputLayout) -> FolderLock:
    """Take the output folder's lock (``.prunehess/lock``; the caller releases it), after creating the state
    folders, then delete what a killed run was writing. Another run holding it is one :class:`OutputError` line;
    the OS releases it when the process dies (even SIGKILL)."""
    try:
        layout.records_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"{layout.root}: cannot create the output folder ({err.strerror or err})") from None
    if not os.access(layout.state_dir, os.W_OK):
        raise OutputError(f"{layout.root}: the output folder is not writable")
    lock = FolderLock(layout.lock_file, busy=lambda holder: (
        f"{layout.root}: another prunehess run (pid {holder}) is writing to this output folder; wait for it to "
        "finish or choose another --output"))
    lock.acquire()
    layout.remove_stale_temporaries()
    return lock


class RunState:
    """The records and saved strategy of one output tree, for the run whose numerics key is ``key``."""

    def __init__(self, layout: OutputLayout, key: str):
        self.layout = layout
        self.key = key

    # ----- records ----------------------------------------------------------------------------------------------
    def _read(self, tag: str) -> Optional[Record]:
        try:
            return record_from_json(self.layout.record_path(tag).read_text(encoding="utf-8"))
        except OSError:
            return None

    def _current(self, record: Optional[Record], fingerprint: Optional[str]) -> bool:
        """Whether ``record`` was written for a checkpoint with this fingerprint under this run's key."""
        return (record is not None and bool(fingerprint) and record.checkpoint == fingerprint
                and record.key == self.key)

    def finished(self, tag: str, fingerprint: str) -> Optional[CheckpointRecord]:
        """The record of checkpoint ``tag`` if it was finished from these bytes under this key."""
        record = self._read(tag)
        return record if isinstance(record, CheckpointRecord) and self._current(record, fingerprint) else None

    def write(self, record: Record) -> None:
        """Save ``record`` (stamped with this run's key)."""
        path = self.layout.record_path(record.tag)
        try:
            atomic_write_text(path, replace(record, key=self.key).to_json())
        except OSError as err:
            raise OutputError(f"{path}: cannot write the run state ({err.strerror or err})") from None

    def records(self, fingerprints: Mapping[str, str]) -> list[CheckpointRecord]:
        """The finished records of this run's checkpoints (``fingerprints``: tag -> fingerprint)."""
        found = (self.finished(tag, fingerprint) for tag, fingerprint in sorted(fingerprints.items()))
        return [record for record in found if record is not None]

    def retire_records(self, fingerprints: Mapping[str, str], into: Path) -> list[Path]:
        """Move every record that is not this run's to ``into/records/`` (the result files it stood for move with
        :meth:`OutputLayout.retire_results`): a later run must not skip a checkpoint whose files left."""
        moved = []
        if not self.layout.records_dir.is_dir():
            return moved
        for path in sorted(self.layout.records_dir.glob("*.json")):
            if not self._current(self._read(path.stem), fingerprints.get(path.stem)):
                target = Path(into) / "records" / path.name
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)
                moved.append(target)
        return moved

    # ----- the HVP strategy ---------------------------------------------------------------------------------------
    def saved_strategy(self, device_type: str) -> Optional[dict[str, Any]]:
        """The strategy saved for this key and device type, without its key and device."""
        try:
            data = json.loads(self.layout.strategy_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("key") != self.key or data.get("device") != device_type:
            return None
        return {k: v for k, v in data.items() if k not in ("key", "device")}

    def save_first_strategy(self, device_type: str, choice: Mapping[str, Any]) -> dict[str, Any]:
        """Save ``choice`` unless another process of the run saved one first (the ranks of a sharded torchrun job
        tune at the same time); returns the saved one, so every checkpoint of a run uses the same strategy."""
        with exclusive(self.layout.state_dir):
            saved = self.saved_strategy(device_type)
            if saved is not None:
                return saved
            path = self.layout.strategy_file
            try:
                atomic_write_text(path, json.dumps({**choice, "key": self.key, "device": device_type}))
            except OSError as err:
                raise OutputError(f"{path}: cannot write the run state ({err.strerror or err})") from None
            return dict(choice)
