"""``prunehess plot``: the seed's five plots (and the layer match) from the command line.

Each subcommand takes the options of its function in :mod:`prunehess.plots` (underscore spellings accepted
too) and writes the same files::

    prunehess plot trace-best                      # reads output/, writes output/figures/trace_best/
    prunehess plot density-eigen --path output/density_eigen --save-path figs/SLQ --layers 6 --style scatter
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import click

from prunehess.cli._root import main

__all__ = ["plot"]


class _LayersType(click.ParamType):
    """A count of per-layer folders (``0`` = whole model only) or ``all``."""

    name = "COUNT|all"

    def convert(self, value, param, ctx):
        if value is None or isinstance(value, int):
            return value
        if str(value).strip().lower() == "all":
            return None
        try:
            count = int(value)
        except ValueError:
            self.fail(f"{value!r} is neither a count nor 'all'", param, ctx)
        if count < 0:
            self.fail(f"{count} is negative", param, ctx)
        return count


def _options(default_layers: str) -> Callable:
    def decorate(function: Callable) -> Callable:
        options = [
            click.option("--path", default=Path("output"), show_default=True, type=click.Path(path_type=Path),
                         help="An extract output folder (extract's default: output), or one of its metric folders "
                              "(e.g. output/trace) as the seed took."),
            click.option("--save-path", "--save_path", "save_path", default=None, type=click.Path(path_type=Path),
                         help="Folder for the figures (whole_model/, layer<k>/ inside). Default: the output's "
                              "figures/ folder (figures/<plot>/ for one plot)."),
            click.option("--layers", type=_LayersType(), default=default_layers, show_default=True,
                         help="How many per-layer folders to draw too (0 = whole model only), or 'all'."),
            click.option("--models", type=click.IntRange(min=2), default=None,
                         help="As the seed: draw iteration tags 001 to MODELS-1 (e.g. 21 for 20 iterations). "
                              "Default: every iteration found."),
            click.option("--epochs", type=click.IntRange(min=1), default=None,
                         help="Draw the first EPOCHS snapshots of each iteration. Default: all."),
            click.option("--model-name", "--model_name", "model_name", default="",
                         help="Model name for titles. Default: the run's, from the output's config.yaml."),
            click.option("--dataset-name", "--dataset_name", "dataset_name", default="",
                         help="Dataset name for titles. Default: the run's, from the output's config.yaml."),
            click.option("--remain-params-file-path", "--remain_params_file_path", "remain_params_file_path",
                         type=click.Path(path_type=Path), default=None,
                         help="Percent of parameters remaining per iteration, one per line. Default: the "
                              "output's remain_params.txt."),
        ]
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


def _completed(kwargs: dict, folder: str) -> dict:
    """Fill what the user left out: the save path (the output's ``figures/<folder>``, where ``plot all`` puts the
    same plot) and the titles' model and dataset names (from the output's ``config.yaml``)."""
    from prunehess.plots._common import resolve_root, run_names

    root = resolve_root(kwargs["path"])  # no such folder: one line saying so
    if kwargs["save_path"] is None:
        kwargs = {**kwargs, "save_path": root.figures_dir / folder if folder else root.figures_dir}
    if not (kwargs["model_name"] and kwargs["dataset_name"]):
        model, dataset = run_names(root)
        kwargs = {**kwargs, "model_name": kwargs["model_name"] or model,
                  "dataset_name": kwargs["dataset_name"] or dataset}
    return kwargs


def _report(written: list[Path], save_path: Path) -> None:
    click.echo(f"Wrote {len(written)} figure{'s' if len(written) != 1 else ''} under {save_path}")


@main.group()
def plot() -> None:
    """Draw the trends of an extract output: the seed's five plots, the layer match, or all of them.

    \b
    Examples:
      prunehess plot trace-best                      # output/ -> output/figures/trace_best/
      prunehess plot all                             # every plot, under output/figures/
      prunehess plot top-eigenvalues --path output/top_eigenvalues --save-path figs/top --layers 6
    """


def _seed_command(name: str, function_name: str, folder: str, doc: str) -> None:
    @plot.command(name, help=doc)
    @_options("0")
    def command(**kwargs) -> None:
        import prunehess.plots as plots

        kwargs = _completed(kwargs, folder)
        written = getattr(plots, function_name)(**kwargs)
        _report(written, kwargs["save_path"])

    command.__name__ = function_name


_seed_command("top-eigenvalues", "plot_top_eigenvalues", "top_eigenvalues",
              "Top eigenvalue against epoch, one figure per pruning iteration (model<i>.jpg).")
_seed_command("trace", "plot_trace", "trace",
              "Hessian trace (± 2 standard errors) against epoch, one figure per pruning iteration (model<i>.jpg).")
_seed_command("top-eigenvalues-best", "plot_top_eigenvalues_best", "top_eigenvalues_best",
              "Top eigenvalue of each iteration's best checkpoint against the percent remaining (best_model.jpg).")
_seed_command("accuracy-best", "plot_accuracy_best", "accuracy_best",
              "Test accuracy of each iteration's best checkpoint against the percent remaining (best_model.jpg).")
_seed_command("trace-best", "plot_trace_best", "trace_best",
              "Trace (± 2 standard errors) of each iteration's best checkpoint against the percent remaining "
              "(best_model.jpg).")


@plot.command("density-eigen")
@_options("0")
@click.option("--style", type=click.Choice(["heatmap", "scatter"]), default="heatmap", show_default=True,
              help="heatmap: weighted spectral density over epoch x eigenvalue; scatter: the seed's bare SLQ nodes.")
def density_eigen(style: str, **kwargs) -> None:
    """SLQ spectrum against epoch, one figure per pruning iteration (model<i>.jpg)."""
    from prunehess.plots import plot_density_eigen

    kwargs = _completed(kwargs, "SLQ")
    _report(plot_density_eigen(**kwargs, style=style), kwargs["save_path"])


@plot.command("layer-match")
@_options("all")
def layer_match(**kwargs) -> None:
    """Wasserstein-1 distance of each layer's spectrum to the whole model's (model<i>.jpg, best_model.jpg)."""
    from prunehess.plots import plot_layer_match

    kwargs = _completed(kwargs, "layer_match")
    _report(plot_layer_match(**kwargs), kwargs["save_path"])


@plot.command("overlap")
@_options("0")
def overlap(**kwargs) -> None:
    """Top-k eigenspace overlaps (epoch x epoch per iteration: model<i>.jpg; best x best across iterations:
    best_model.jpg) and each layer's share of the top eigenvector (layer_share.jpg), from the eigenvectors that
    extract --save-eigenvectors wrote."""
    from prunehess.plots import plot_overlap

    kwargs = _completed(kwargs, "overlap")
    _report(plot_overlap(**kwargs), kwargs["save_path"])


@plot.command("all")
@_options("all")
def plot_all(**kwargs) -> None:
    """Every plot, in top_eigenvalues/, trace/, SLQ/, top_eigenvalues_best/, trace_best/, accuracy_best/,
    layer_match/ (and the landscape and overlap figures when their results exist)."""
    from prunehess.plots import plot_all as run

    kwargs = _completed(kwargs, "")
    _report(run(**kwargs), kwargs["save_path"])
