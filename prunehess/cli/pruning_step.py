"""``prunehess pruning-step OUTPUT``: the shell over :func:`prunehess.geometry.run_pruning_step`."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from prunehess.cli._options import declared_options
from prunehess.cli._root import main
from prunehess.geometry.options import PruningStepOptions

__all__ = ["pruning_step_command"]

EPILOG = """\b
Examples:
  prunehess pruning-step output                           # exact diagonal where it applies (ReLU nets)
  prunehess pruning-step output --diagonal hutchinson --probes 200
  torchrun --nproc-per-node 2 -m prunehess pruning-step output   # steps dealt across 2 processes
"""


@main.command("pruning-step", epilog=EPILOG)
@click.argument("output", type=click.Path(path_type=Path), default=Path("output"), required=False)
@declared_options(PruningStepOptions)
def pruning_step_command(output: Path, **options: Any) -> None:
    """Each pruning step of an extract OUTPUT folder against OBD and the quadratic model.

    For each prune iteration i followed by i+1: the weights the step removed (surviving in i, pruned in i+1's mask
    or zeros), compared at i's best weights on the run's Hessian batch with the ones OBD's saliency 1/2 H_kk w_k^2
    would have removed at the same per-layer counts (overlap), the rank correlation of |w| and that saliency, and
    the loss change the quadratic model g.d + 1/2 d.Hd predicts for removing them (d = -w there) against the actual
    one. Writes OUTPUT/pruning_step/pruning_step.csv (one row per step for the whole model, then per layer) and
    figures in OUTPUT/figures/pruning_step/. Reruns skip finished steps.
    """
    from prunehess.geometry.pruning_step import run_pruning_step  # its figures import matplotlib

    report = run_pruning_step(output, PruningStepOptions.of(**options))
    if report is None:  # a torchrun rank other than 0
        return
    diagonal = f" ({', '.join(sorted(report.modes))} diagonal)" if report.modes else ""
    click.echo(f"done: {len(report.computed)} step(s) computed{diagonal}, {len(report.skipped)} already finished -> "
               f"{output}/pruning_step/pruning_step.csv"
               + (f"; figures in {output}/figures/pruning_step/" if report.figures else ""))
