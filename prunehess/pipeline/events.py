"""What a run tells its listener as it goes: small frozen event objects.

``extract`` calls its listener with one event at a time. Each event carries what happened in fields (a progress
bar reads ``done``/``total``) and, through :meth:`Event.line`, the plain log line it stands for (empty for events
that only move a bar). :func:`print_lines` is the listener of a plain run: it prints the lines.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

__all__ = ["Event", "Note", "RunPlanned", "CheckpointStarted", "BlockDone", "CheckpointDone", "CheckpointSkipped",
           "CheckpointFailed", "Listener", "print_lines", "clock"]


def clock(seconds: float) -> str:
    """``H:MM:SS``."""
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Event:
    """Base class of the events."""

    def line(self) -> str:
        """The plain log line this event stands for (``""``: none)."""
        return ""


@dataclass(frozen=True)
class Note(Event):
    """A message: what was unpacked and found, a warning, the strategy chosen, what was moved aside."""

    text: str

    def line(self) -> str:
        return self.text


@dataclass(frozen=True)
class RunPlanned(Event):
    """The checkpoints this process will go through (``blocks`` each: the whole network, then each layer)."""

    checkpoints: int
    blocks: int


@dataclass(frozen=True)
class CheckpointStarted(Event):
    """Checkpoint ``tag`` (the ``position``-th of ``total``) is being analysed, from the file ``name``."""

    tag: str
    position: int
    total: int
    name: str

    def line(self) -> str:
        return f"[{self.position}/{self.total}] {self.tag} ({self.name}) ..."


@dataclass(frozen=True)
class BlockDone(Event):
    """Block ``done`` of ``total`` of checkpoint ``tag`` is finished (``block``: ``None`` the whole network, else
    the parameter's name)."""

    tag: str
    done: int
    total: int
    block: Optional[str]


@dataclass(frozen=True)
class CheckpointDone(Event):
    """Checkpoint ``tag`` is finished: its whole network's headline numbers (``(label, value)`` pairs from the
    analyses), test accuracy, products, seconds, and the time the rest of the run should take."""

    tag: str
    headline: tuple[tuple[str, float], ...]
    test_accuracy: Optional[float]
    hvps: int
    seconds: float
    eta_seconds: float

    def line(self) -> str:
        numbers = "  ".join(f"{label} {value:.6g}" for label, value in self.headline)
        accuracy = "-" if self.test_accuracy is None else f"{100 * self.test_accuracy:.2f}%"
        return (f"  {self.tag}: {numbers}  test acc {accuracy}  ({self.hvps} HVPs, {self.seconds:.1f} s; "
                f"ETA {clock(self.eta_seconds)})")


@dataclass(frozen=True)
class CheckpointSkipped(Event):
    """Checkpoint ``tag`` was finished before, from the same bytes under the same options."""

    tag: str


@dataclass(frozen=True)
class CheckpointFailed(Event):
    """Checkpoint ``tag`` could not be analysed; the others go on."""

    tag: str
    error: str

    def line(self) -> str:
        return f"  failed: {self.error}"


Listener = Callable[[Event], None]


def print_lines(event: Event) -> None:
    """The listener of a plain run: print each event's line."""
    text = event.line()
    if text:
        print(text, flush=True)
