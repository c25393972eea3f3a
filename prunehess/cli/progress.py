"""The console side of a run: a tqdm progress bar over checkpoints and blocks on a terminal, and plain log lines.

The bar goes to standard error, and only when standard error is a terminal; it counts blocks (the whole network and,
with ``--compute-each-layer``, each layer) over all checkpoints, so its rate and ETA follow the real work, and
checkpoints finished before move it at once. The plain log lines (what was found, each checkpoint's numbers,
warnings) go to standard output, above the bar, so that ``prunehess extract … > run.log`` keeps them whole.
"""
from __future__ import annotations

import sys
from typing import Any, Optional, TextIO

from prunehess.pipeline.events import (BlockDone, CheckpointFailed, CheckpointSkipped, CheckpointStarted, Event,
                                       RunPlanned)

__all__ = ["ConsoleProgress"]


class ConsoleProgress:
    """A listener of a run's events (call it with each event); :meth:`close` when the run ends."""

    def __init__(self, *, out: Optional[TextIO] = None, bar_to: Optional[TextIO] = None,
                 bar: Optional[bool] = None) -> None:
        self.out = out or sys.stdout
        self.bar_to = bar_to or sys.stderr
        self.live = self.bar_to.isatty() if bar is None else bar
        self.bar: Any = None
        self.blocks = 1
        self.done_in_checkpoint = 0

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunPlanned) and self.live:
            from tqdm import tqdm

            self.blocks = event.blocks
            self.bar = tqdm(total=event.checkpoints * event.blocks, file=self.bar_to, unit="block",
                            dynamic_ncols=True, leave=False)
        if self.bar is not None:
            self._advance(event)
        text = event.line()
        if text:
            self._print(text)

    def _advance(self, event: Event) -> None:
        if isinstance(event, CheckpointSkipped):
            self.bar.update(self.blocks)
        elif isinstance(event, CheckpointStarted):
            self.done_in_checkpoint = 0
            self.bar.set_description(event.tag)
        elif isinstance(event, BlockDone):
            self.bar.update(event.done - self.done_in_checkpoint)
            self.done_in_checkpoint = event.done
            self.bar.set_postfix_str("whole model" if event.block is None else event.block)
        elif isinstance(event, CheckpointFailed):
            self.bar.update(self.blocks - self.done_in_checkpoint)

    def _print(self, text: str) -> None:
        if self.bar is not None:
            with self.bar.external_write_mode(file=self.out):
                print(text, file=self.out, flush=True)
        else:
            print(text, file=self.out, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
