"""``prunehess extract``: the command-line shell over :func:`prunehess.pipeline.run_extract`.

Its options are :class:`~prunehess.pipeline.ExtractConfig`'s declared fields (defaults and help included), plus
``--config``; the run's events go to a :class:`~prunehess.cli.progress.ConsoleProgress`.
"""
from __future__ import annotations

from typing import Any

import click

from prunehess.cli._options import config_file_option, declared_options
from prunehess.cli._root import main
from prunehess.cli.progress import ConsoleProgress
from prunehess.errors import PrunehessError
from prunehess.pipeline import ExtractConfig, ExtractReport, run_extract

__all__ = ["extract_command"]

EPILOG = """\b
Examples:
  prunehess extract --zipname mnist.zip --compute-each-layer   # the zip in the current folder
  prunehess extract --resume runs/ --zipname cifar.zip --dataset cifar10 --model resnet18 --data-root ~/data
  prunehess extract --config extract.yaml --top-n 5          # YAML supplies options, the command line wins
  torchrun --nproc-per-node 2 -m prunehess extract --resume runs/   # shard checkpoints over 2 processes
"""


def _closing_lines(config: ExtractConfig, report: ExtractReport) -> list[str]:
    out = config.output
    lines = [f"done: {len(report.computed)} computed, {len(report.skipped)} already finished, "
             f"{len(report.failed)} failed, in {report.seconds:.1f} s -> {out}"]
    if report.computed or report.skipped:
        lines += [f"results: {out}/summary.csv (one row per checkpoint and block), {out}/top_eigenvalues/, "
                  f"{out}/trace/, {out}/density_eigen/, {out}/density_weight/, {out}/esd_plot/",
                  f"next: prunehess plot all --path {out}   (figures in {out}/figures/), "
                  f"prunehess report {out}   ({out}/report.html)"]
    return lines


@main.command("extract", epilog=EPILOG)
@config_file_option("extract.yaml")
@declared_options(ExtractConfig)
def extract_command(**options: Any) -> None:
    """Compute top eigenvalues, trace and spectral density for every checkpoint in a zip.

    Writes OUTPUT/top_eigenvalues, trace, density_eigen, density_weight, esd_plot (and *_layer<k>/ with
    --compute-each-layer), plus layers.txt, remain_params.txt, summary.csv and config.yaml. Reruns skip
    finished checkpoints; Ctrl-C stops after the checkpoint in flight.
    """
    config = ExtractConfig.from_mapping(options)
    console = ConsoleProgress()
    try:
        report = run_extract(config, on_event=console)
    finally:
        console.close()
    if report is None:  # a torchrun rank other than 0
        return
    for line in _closing_lines(config, report):
        click.echo(line)
    if report.failed:
        tags = sorted(report.failed)
        others = "; the others are in the messages above" if len(tags) > 1 else ""
        raise PrunehessError(f"{len(tags)} checkpoint(s) failed ({', '.join(tags)}); {tags[0]}: "
                             f"{report.failed[tags[0]]}{others}")
