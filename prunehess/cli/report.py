"""``prunehess report OUTPUT``: one self-contained HTML page of an extract output."""
from __future__ import annotations

from pathlib import Path

import click

from prunehess.cli._root import main

__all__ = ["report"]


@main.command()
@click.argument("output", type=click.Path(path_type=Path), default=Path("output"), required=False)
@click.option("-o", "--out", "dest", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The HTML file to write. Default: OUTPUT/report.html.")
@click.option("--model-name", "--model_name", "model_name", default="",
              help="Model name for titles. Default: the model in OUTPUT/config.yaml.")
@click.option("--dataset-name", "--dataset_name", "dataset_name", default="",
              help="Dataset name for titles. Default: the dataset in OUTPUT/config.yaml.")
@click.option("--dpi", type=click.IntRange(30, 300), default=80, show_default=True,
              help="Resolution of the embedded images.")
def report(output: Path, dest: Path | None, model_name: str, dataset_name: str, dpi: int) -> None:
    """Write a self-contained HTML report of an extract OUTPUT folder.

    The page opens with what pruning did: the best checkpoints' top eigenvalue, trace (± 2 standard errors) and
    test accuracy against the percent of weights remaining, in numbers and one figure; then every trend, every
    spectral density and, with per-layer results, each layer; the configuration and the full summary table come
    last, folded. Images are embedded, so the single file can be attached or mailed.

    \b
    Example:
      prunehess report                   # extract's default output folder: writes output/report.html
      prunehess report output -o run3.html --model-name fc1 --dataset-name mnist
    """
    from prunehess.plots.report import write_report

    path = write_report(output, dest, model_name=model_name, dataset_name=dataset_name, dpi=dpi)
    click.echo(f"Wrote {path}")
