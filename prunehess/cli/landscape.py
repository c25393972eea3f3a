"""``prunehess landscape OUTPUT``: the shell over :func:`prunehess.geometry.run_landscape`."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from prunehess.cli._options import declared_options
from prunehess.cli._root import main
from prunehess.geometry.options import LandscapeOptions

__all__ = ["landscape_command"]

EPILOG = """\b
Examples:
  prunehess landscape output                                  # top-1 eigenvector and a random direction
  prunehess landscape output --directions top1,top2,gradient,random --radius 0.5 --points 61
  prunehess landscape output --surface --checkpoints 001_best,004_best   # the top1 x top2 plane too
  torchrun --nproc-per-node 2 -m prunehess landscape output   # checkpoints dealt across 2 processes
"""


@main.command("landscape", epilog=EPILOG)
@click.argument("output", type=click.Path(path_type=Path), default=Path("output"), required=False)
@declared_options(LandscapeOptions)
def landscape_command(output: Path, **options: Any) -> None:
    """Loss curves (and surfaces) around the checkpoints of an extract OUTPUT folder.

    For each chosen checkpoint, the mean loss on the run's Hessian batch at theta + t*d along each direction
    (zero on pruned weights), t from -radius to radius; with --surface also over the plane of the top two
    eigenvectors. Writes OUTPUT/landscape/<direction>III_EE.txt (columns t loss) and top1-top2III_EE.txt (the
    grid), and figures in OUTPUT/figures/landscape/. Reruns skip finished files. The run (zip, model, data, seed)
    is read from OUTPUT/config.yaml.
    """
    from prunehess.geometry.landscape import run_landscape  # its figures import matplotlib

    report = run_landscape(output, LandscapeOptions.of(**options))
    if report is None:  # a torchrun rank other than 0
        return
    click.echo(f"done: {len(report.computed)} file(s) computed, {len(report.skipped)} already finished -> "
               f"{output}/landscape/" + (f"; figures in {output}/figures/landscape/" if report.figures else ""))
