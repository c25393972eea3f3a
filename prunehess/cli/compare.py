"""``prunehess compare OUT_A OUT_B …``: several extract outputs side by side, figures and one HTML page."""
from __future__ import annotations

from pathlib import Path

import click

from prunehess.cli._root import main

__all__ = ["compare"]


def _labels(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [part.strip() for part in value.split(",")]


@main.command()
@click.argument("outputs", nargs=-1, type=click.Path(path_type=Path))
@click.option("--labels", callback=_labels, default=None, metavar="A,B,…",
              help="One name per run, comma-separated, in the order of OUTPUTS. Default: the folders' names "
                   "(or the runs' curvatures, hessian/ggn/fisher, when those differ).")
@click.option("--save-path", "--save_path", "save_path", type=click.Path(file_okay=False, path_type=Path),
              default=Path("comparison"), show_default=True,
              help="Folder for the figures (PNG), spectrum_distances.csv and compare.html.")
@click.option("--dpi", type=click.IntRange(30, 300), default=100, show_default=True,
              help="Resolution of the figures.")
def compare(outputs: tuple[Path, ...], labels: list[str] | None, save_path: Path, dpi: int) -> None:
    """Compare extract OUTPUTS of one model and dataset: lottery ticket against its controls, or a Hessian run
    against a GGN run of the same zip.

    Draws each run's best checkpoints (top eigenvalue, trace ± 2 standard errors, λmin, |λmin/λmax|, test
    accuracy) against the percent of weights remaining, one line per run, for the whole model and each layer
    every run has; the Wasserstein-1 distance between the runs' spectra at matched sparsity (other runs' levels
    are paired with the first run's by nearest remaining percent); and one self-contained page,
    SAVE_PATH/compare.html.

    \b
    Example:
      prunehess train --dataset digits --model fc1 --variants lt,random --output run/
      prunehess extract --resume run/lt --output out_lt
      prunehess extract --resume run/random --output out_random
      prunehess compare out_lt out_random --labels "lottery ticket,random pruning" --save-path figs/
    """
    from prunehess.plots.compare import compare_runs

    comparison = compare_runs(outputs, labels=labels, save_path=save_path, dpi=dpi)
    for note in comparison.notes:
        click.echo(f"Note: {note}")
    figures = [path for path in comparison.written if path.suffix == ".png"]
    click.echo(f"Compared {', '.join(run.label for run in comparison.runs)}: wrote {len(figures)} figures under "
               f"{save_path}")
    click.echo(f"Page: {comparison.page}")
