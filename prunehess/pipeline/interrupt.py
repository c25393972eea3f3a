"""Ctrl-C during a run: the first finishes the checkpoint in flight, then stops; the second stops at once."""
from __future__ import annotations

import signal

from prunehess.errors import PrunehessError

__all__ = ["Interrupted", "StopOnSigint"]


class Interrupted(PrunehessError):
    """SIGINT: the run stopped cleanly after the checkpoint in flight."""

    exit_code = 130


class StopOnSigint:
    """A context manager; ``requested`` turns true at the first SIGINT (the main thread only)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\ninterrupt: finishing the checkpoint in flight, then stopping (Ctrl-C again to abort now)", flush=True)

    def __enter__(self) -> "StopOnSigint":
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread
            self._previous = None
        return self

    def __exit__(self, *exc) -> bool:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False
