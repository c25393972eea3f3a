"""The console: a tqdm bar over checkpoints × blocks on the bar's stream (a terminal's stderr), the log lines on
standard output, and nothing of the bar when the stream is not a terminal."""
from __future__ import annotations

import io

from prunehess.cli.progress import ConsoleProgress
from prunehess.pipeline.events import (BlockDone, CheckpointDone, CheckpointFailed, CheckpointSkipped,
                                       CheckpointStarted, Note, RunPlanned)


def _run(console: ConsoleProgress) -> list[int]:
    counts = []
    console(RunPlanned(checkpoints=3, blocks=4))
    console(CheckpointSkipped("000_00"))
    counts.append(console.bar.n if console.bar else 0)
    console(CheckpointStarted("001_best", 2, 3, "0_model_lt.pth"))
    for done, block in ((1, None), (2, "fc1.weight"), (3, "fc1.bias"), (4, "fc2.weight")):
        console(BlockDone("001_best", done, 4, block))
    counts.append(console.bar.n if console.bar else 0)
    console(CheckpointDone("001_best", (("top", 3.5), ("trace", 20.0)), 0.9, 117, 1.5, 2.0))
    console(CheckpointStarted("002_best", 3, 3, "1_model_lt.pth"))
    console(BlockDone("002_best", 1, 4, None))
    console(CheckpointFailed("002_best", "1_model_lt.pth: not a checkpoint"))
    counts.append(console.bar.n if console.bar else 0)
    console(Note("moved 2 result file(s)"))
    console.close()
    return counts


def test_the_bar_counts_blocks_and_the_lines_go_to_standard_output():
    out, bar = io.StringIO(), io.StringIO()
    counts = _run(ConsoleProgress(out=out, bar_to=bar, bar=True))
    assert counts == [4, 8, 12]  # a skipped checkpoint moves it by its blocks; a failed one by what was left
    lines = out.getvalue().splitlines()
    assert lines == ["[2/3] 001_best (0_model_lt.pth) ...",
                     "  001_best: top 3.5  trace 20  test acc 90.00%  (117 HVPs, 1.5 s; ETA 0:00:02)",
                     "[3/3] 002_best (1_model_lt.pth) ...", "  failed: 1_model_lt.pth: not a checkpoint",
                     "moved 2 result file(s)"]
    assert "4/12" in bar.getvalue() and "block/s" in bar.getvalue()  # the bar was drawn on its own stream
    assert "%|" not in out.getvalue()


def test_no_bar_when_the_stream_is_not_a_terminal():
    out, bar = io.StringIO(), io.StringIO()
    console = ConsoleProgress(out=out, bar_to=bar)  # StringIO is not a terminal
    _run(console)
    assert bar.getvalue() == "" and "[2/3] 001_best" in out.getvalue()
