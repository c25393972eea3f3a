"""What an extraction has finished, and who is running it: resumability and mutual exclusion.

Under ``<output>/.prunehess/``:

- ``lock``: held (``fcntl`` advisory lock) by the process running an extraction into this folder; a second run
  refuses with a clear message instead of interleaving. The OS releases it when the process dies (even SIGKILL).
- ``records/<III>_<EE>.json``: one per finished checkpoint, written atomically after all its result files. It
  stores the config's numerics key and the checkpoint's fingerprint (a digest of its bytes), so a rerun skips a
  checkpoint only if the same file was finished under the same numbers-affecting options, and recomputes it
  otherwise (another zip with the same names, into the same output folder, is another experiment).
- ``strategy.json``: the HVP strategy measured on the first checkpoint, reused on resume so that resumed numbers
  are identical to an uninterrupted run.
- ``superseded/<UTC time>/``: result files (and their records) of an earlier run into the same folder that a
  finished run's records do not account for (other options, other checkpoints, no per-layer results), moved out
  of the tree with their relative paths, one folder per run, so that the tree holds one run and nothing is
  deleted.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Mapping, Optional

from prunehess.errors import OutputError
from prunehess.layout import atomic_write_text

__all__ = ["RunState"]


class RunState:
    """The hidden state folder of one output tree."""

    def __init__(self, output: Path, numerics_key: str = ""):
        self.folder = Path(output) / ".prunehess"
        self.records = self.folder / "records"
        self.superseded = self.folder / "superseded"
        self.key = numerics_key
        self._lock_fd: Optional[int] = None

    def prepare(self) -> None:
        try:
            self.records.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputError(f"{self.folder.parent}: cannot create the output folder ({err.strerror or err})") from None
        if not os.access(self.folder, os.W_OK):
            raise OutputError(f"{self.folder.parent}: the output folder is not writable")

    # ----- lock -------------------------------------------------------------------------------------------------
    def acquire(self, name: str = "lock") -> None:
        """Take the folder's lock or raise :class:`OutputError` if another run holds it."""
        import fcntl

        self.prepare()
        path = self.folder / name
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise OutputError(
                f"{self.folder.parent}: another prunehess run (pid {holder}) is writing to this output folder; "
                "wait for it to finish or choose another --output"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd = fd
        self._remove_stale_temporaries()

    def _remove_stale_temporaries(self) -> None:
        """Delete the temporaries (``.<name>.<random>.tmp``) a killed run left in the state folder; only the lock's
        holder may, since another run's writer could own them otherwise."""
        for folder in (self.folder, self.records):
            for entry in folder.glob(".*.tmp"):
                try:
                    entry.unlink()
                except OSError:  # gone already, or not ours to delete: harmless, never read
                    pass

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # ----- records ----------------------------------------------------------------------------------------------
    def _record_path(self, tag: str) -> Path:
        return self.records / f"{tag}.json"

    def _read(self, tag: str) -> Optional[dict[str, Any]]:
        try:
            return json.loads(self._record_path(tag).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def _current(self, record: Optional[dict[str, Any]], fingerprint: Optional[str]) -> bool:
        """Whether ``record`` was written for a checkpoint with this fingerprint under the current key (records
        written before fingerprints existed never are)."""
        return (record is not None and fingerprint is not None and record.get("checkpoint") == fingerprint
                and record.get("key") == self.key)

    def finished(self, tag: str, fingerprint: str) -> Optional[dict[str, Any]]:
        """The record of checkpoint ``tag`` if it was finished from a checkpoint with this ``fingerprint`` under the
        same numerics key."""
        record = self._read(tag)
        return record if self._current(record, fingerprint) and record.get("status") == "done" else None

    def write_record(self, tag: str, record: dict[str, Any]) -> None:
        record = {**record, "key": self.key}
        self._write(self._record_path(tag), json.dumps(record, indent=1, sort_keys=True))

    def _write(self, path: Path, text: str) -> None:
        try:
            atomic_write_text(path, text)
        except OSError as err:
            raise OutputError(f"{path}: cannot write the run state ({err.strerror or err})") from None

    def all_records(self, fingerprints: Mapping[str, str]) -> list[dict[str, Any]]:
        """The finished records of this run's checkpoints (``fingerprints``: tag -> fingerprint)."""
        out = []
        for path in sorted(self.records.glob("*.json")):
            if path.stem in fingerprints:
                rec = self.finished(path.stem, fingerprints[path.stem])
                if rec is not None:
                    out.append(rec)
        return out

    def retire_records(self, fingerprints: Mapping[str, str], into: Path) -> list[Path]:
        """Move every record that is not this run's (``fingerprints``: tag -> fingerprint of its checkpoints) to
        ``into/records/``, with the result files it stood for (which :meth:`OutputLayout.retire_results` moves): a
        later run must not skip a checkpoint whose files left. This run's failed records stay (they say why)."""
        moved = []
        for path in sorted(self.records.glob("*.json")):
            if not self._current(self._read(path.stem), fingerprints.get(path.stem)):
                target = Path(into) / "records" / path.name
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)
                moved.append(target)
        return moved

    def superseded_folder(self) -> Path:
        """A new folder name under ``superseded/`` for what this run moves aside (UTC time, then a counter)."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        folder, n = self.superseded / stamp, 1
        while folder.exists():
            n += 1
            folder = self.superseded / f"{stamp}-{n}"
        return folder

    # ----- strategy -------------------------------------------------------------------------------------------
    def saved_strategy(self, device: str) -> Optional[dict[str, Any]]:
        try:
            data = json.loads((self.folder / "strategy.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if data.get("key") == self.key and data.get("device") == device else None

    def save_strategy(self, device: str, choice: dict[str, Any]) -> None:
        self._write(self.folder / "strategy.json", json.dumps({**choice, "key": self.key, "device": device}))
