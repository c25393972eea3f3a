"""``prunehess barrier OUTPUT``: the shell over :func:`prunehess.geometry.run_barrier`."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from prunehess.cli._options import declared_options
from prunehess.cli._root import main
from prunehess.geometry.options import BarrierOptions

__all__ = ["barrier_command"]

EPILOG = """\b
Examples:
  prunehess barrier output                              # each iteration's best -> the next iteration's best
  prunehess barrier output --pairs consecutive,rewind --points 31
  prunehess barrier lt_output --against reinit_output   # lottery ticket vs random re-initialisation
"""


@main.command("barrier", epilog=EPILOG)
@click.argument("output", type=click.Path(path_type=Path), default=Path("output"), required=False)
@declared_options(BarrierOptions)
def barrier_command(output: Path, **options: Any) -> None:
    """Loss and error along straight lines between checkpoints of an extract OUTPUT folder, and their barriers.

    theta(alpha) = (1 - alpha) theta_A + alpha theta_B for alpha from 0 to 1 (the state vectors as stored), on the
    run's Hessian batch and on the test split. The barrier is the largest gap between the path and the straight
    line between its ends. Writes OUTPUT/barrier/<kind>_<tagA>_<tagB>.txt (alpha loss error test_loss
    test_error), OUTPUT/barrier/barrier.csv (one row per pair) and figures in OUTPUT/figures/barrier/. Reruns skip
    finished pairs.
    """
    from prunehess.geometry.barrier import run_barrier  # its figures import matplotlib

    report = run_barrier(output, BarrierOptions.of(**options))
    if report is None:  # a torchrun rank other than 0
        return
    click.echo(f"done: {len(report.computed)} path(s) computed, {len(report.skipped)} already finished -> "
               f"{output}/barrier/barrier.csv" + (f"; figures in {output}/figures/barrier/" if report.figures else ""))
