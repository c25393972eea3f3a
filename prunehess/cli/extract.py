"""``prunehess extract``: the command-line shell over :func:`prunehess.pipeline.extract`."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import click

from prunehess.cli._root import main
from prunehess.config import METHODS, PARAM_MODES, STRATEGY_CHOICES, TRACE_METHODS, ExtractConfig, load_yaml_config
from prunehess.errors import PrunehessError


def _load_config(ctx: click.Context, param: click.Parameter, value: Optional[str]) -> Optional[str]:
    """``--config FILE.yaml`` supplies defaults for every option; the command line wins."""
    if value:
        from prunehess.errors import ConfigError

        values = load_yaml_config(Path(value))
        params = {p.name: p for p in ctx.command.params}
        unknown = sorted(set(values) - set(params))
        if unknown:
            raise ConfigError(f"{value}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(set(params) - {'config'}))}")
        for key, item in values.items():  # a wrong type is one line naming the file, not a usage error
            try:
                params[key].type_cast_value(ctx, item)
            except click.BadParameter as err:
                raise ConfigError(f"{value}: {key}: {err.message}") from None
        ctx.default_map = {**(ctx.default_map or {}), **values}
    return value


class _BlockBar:
    """A one-line bar on a terminal's stderr for the blocks (whole model, each layer) of the checkpoint in flight;
    log lines are printed above it. Nothing but the log lines when stderr is not a terminal."""

    def __init__(self, width: int = 30):
        self.width = width
        self.live = sys.stderr.isatty()
        self.drawn = False

    def log(self, message: str) -> None:
        if self.drawn:
            click.echo("\r\033[K", nl=False, err=True)
            self.drawn = False
        click.echo(message, err=True)

    def update(self, tag: str, done: int, total: int) -> None:
        if not self.live or total <= 1:
            return
        filled = self.width * done // total
        what = "whole model" if done == 1 else f"layer {done - 2}"
        click.echo(f"\r\033[K  {tag} [{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} ({what} done)",
                   nl=False, err=True)
        self.drawn = True


EPILOG = """\b
Examples:
  prunehess extract --resume runs/ --zipname mnist.zip --compute-each-layer
  prunehess extract --resume runs/ --zipname cifar.zip --dataset cifar10 --model resnet18 --data-root ~/data
  prunehess extract --config extract.yaml --top-n 5          # YAML supplies options, the command line wins
  torchrun --nproc-per-node 2 -m prunehess extract --resume runs/   # shard checkpoints over 2 processes
"""


@main.command("extract", epilog=EPILOG)
@click.option("--config", type=click.Path(dir_okay=False), callback=_load_config, is_eager=True, expose_value=False,
              help="YAML file of options (same names as below); the command line wins. Example: extract.yaml")
@click.option("--resume", type=click.Path(file_okay=False), required=True,
              help="Folder holding the zip (with --no-extract: the unpacked folder). Example: --resume runs/")
@click.option("--zipname", default=None,
              help="Zip of checkpoints inside --resume, unpacked into <resume>/<zip stem>/. "
                   "Default: mnist.zip (the seed's), else the folder's only zip.")
@click.option("--dataset", default=None,
              help="mnist, fashionmnist, cifar10, svhn (torchvision, from --data-root) or digits (bundled). "
                   "Default: the run's train_config.yaml (zips from `prunehess train`), else mnist.")
@click.option("--model", default=None,
              help="fc1, lenet5, resnet20, resnet18, vgg11_bn, or your own as FILE.py:factory / package.module:factory. "
                   "Default: the run's train_config.yaml, else fc1.")
@click.option("--output", default="output", show_default=True, type=click.Path(file_okay=False), help="Output tree root.")
@click.option("--mini-hessian-batch-size", "--mini_hessian_batch_size", "mini_hessian_batch_size", default=200, show_default=True, type=int,
              help="Samples per mini-batch of the Hessian batch (bounds memory).")
@click.option("--hessian-batch-size", "--hessian_batch_size", "hessian_batch_size", default=200, show_default=True, type=int,
              help="Samples in the Hessian batch (a seeded subset of the training split).")
@click.option("--seed", default=1, show_default=True, type=int, help="Seed of the Hessian batch and of every estimator's probes.")
@click.option("--batch-norm/--no-batch-norm", "--batch_norm/--no_batch_norm", "batch_norm", default=True, show_default=True, help="BatchNorm in ResNet models.")
@click.option("--residual/--no-residual", default=True, show_default=True, help="Skip connections in ResNet models.")
@click.option("--depth", default=20, show_default=True, type=int, help="Depth of resnet20-family models (6n+2).")
@click.option("--cuda/--no-cuda", default=None, help="Use a GPU (default: when there is one).")
@click.option("--device", default=None, help="Explicit torch device, e.g. cuda:1 or cpu (overrides --cuda).")
@click.option("--compute-each-layer", "--compute_each_layer", "compute_each_layer", is_flag=True,
              help="Also analyse each parameter tensor's diagonal block (folders *_layer<k>/).")
@click.option("--extract/--no-extract", default=True, show_default=True, help="Unpack the zip, or read an already-unpacked --resume folder.")
@click.option("--parallel", is_flag=True, help="DataParallel over the visible GPUs for the Hessian-vector products.")
@click.option("--data-root", "--data_root", "data_root", default="data", show_default=True, type=click.Path(file_okay=False),
              help="Where torchvision datasets live (e.g. <root>/MNIST/raw).")
@click.option("--download", is_flag=True, help="Let torchvision download a missing dataset into --data-root.")
@click.option("--top-n", "--top_n", "top_n", default=1, show_default=True, type=int, help="How many top eigenvalues.")
@click.option("--method", type=click.Choice(METHODS), default="lanczos", show_default=True,
              help="Top eigenvalues by Lanczos (read from the density's Lanczos run when converged), or by PyHessian's "
                   "power iteration.")
@click.option("--tol", default=1e-3, show_default=True, type=float,
              help="Eigenvalue tolerance: Lanczos residual ≤ tol·|λ|; power: relative change < tol (PyHessian).")
@click.option("--max-iter", "max_iter", default=100, show_default=True, type=int, help="Most Lanczos steps / power iterations.")
@click.option("--trace-method", type=click.Choice(TRACE_METHODS), default="hutchinson", show_default=True,
              help="Hutchinson or Hutch++ (fewer HVPs for the same error); a layer no larger than --slq-steps gets its "
                   "exact trace from its SLQ run instead.")
@click.option("--trace-probes", default=100, show_default=True, type=int, help="Most Hutchinson probes (Hutch++: HVP budget).")
@click.option("--trace-tol", default=1e-3, show_default=True, type=float,
              help="PyHessian's stopping rule for Hutchinson (relative change of the mean); 0 uses every probe.")
@click.option("--trace-min-probes", default=10, show_default=True, type=int,
              help="The stopping rule stops no sooner than this many probes (1: PyHessian's rule exactly, which can "
                   "stop after two probes with a standard error far too small).")
@click.option("--trace-deflation/--no-trace-deflation", default=True, show_default=True,
              help="Hutchinson counts the trace in the density run's Krylov space exactly and probes only the rest: "
                   "fewer probes, a closer trace. --no-trace-deflation: PyHessian's plain Hutchinson.")
@click.option("--slq-steps", default=100, show_default=True, type=int, help="Lanczos steps per SLQ run (nodes per density file).")
@click.option("--slq-runs", default=1, show_default=True, type=int, help="SLQ runs (columns per density file).")
@click.option("--params", type=click.Choice(PARAM_MODES), default="active", show_default=True,
              help="active: the Hessian over surviving weights (pruned ones are not parameters); all: every coordinate (PyHessian).")
@click.option("--strategy", type=click.Choice(STRATEGY_CHOICES), default="auto", show_default=True,
              help="How Hessian-vector products are computed; auto measures on the first checkpoint (also whether "
                   "to merge the mini-batches into one chunk, and on a GPU whether to replay products from CUDA "
                   "graphs: faster, with more memory) and saves the choice for every checkpoint of the run.")
@click.option("--layout", default=None, help=r"Regex for other checkpoint namings, with groups iteration and epoch. Example: 'it(?P<iteration>\d+)/ep(?P<epoch>\d+)\.pt'")
@click.option("--trust-checkpoints", is_flag=True,
              help="Allow checkpoints that are pickled objects (runs code from the file: only for files you trust).")
@click.option("--test-accuracy/--no-test-accuracy", default=True, show_default=True, help="Record each checkpoint's test accuracy.")
@click.option("--max-unpacked-mb", default=8192, show_default=True, type=int, help="Refuse zips that unpack to more than this.")
@click.option("--max-ratio", default=250.0, show_default=True, type=float, help="Refuse zip entries compressed more than this ratio.")
@click.option("--data-parallel", is_flag=True, help="Under torchrun: split the Hessian batch across ranks (all-reduced HVPs) instead of sharding checkpoints.")
def extract_command(data_parallel: bool, **options: Any) -> None:
    """Compute top eigenvalues, trace and spectral density for every checkpoint in a zip.

    Writes OUTPUT/top_eigenvalues, trace, density_eigen, density_weight, esd_plot (and *_layer<k>/ with
    --compute-each-layer), plus layers.txt, remain_params.txt, summary.csv and config.yaml. Reruns skip
    finished checkpoints; Ctrl-C stops after the checkpoint in flight.
    """
    if options.get("trace_tol") == 0:
        options["trace_tol"] = None
    config = ExtractConfig.from_mapping(options)
    from prunehess.distributed import run_extract

    bar = _BlockBar()
    report = run_extract(config, data_parallel=data_parallel, log=bar.log, progress=bar.update)
    if report is None:
        return
    click.echo(f"done: {len(report.computed)} computed, {len(report.skipped)} already finished, "
               f"{len(report.failed)} failed, in {report.seconds:.1f} s -> {config.output}", err=True)
    if report.failed:
        tags = sorted(report.failed)
        others = "; the others are in the messages above" if len(tags) > 1 else ""
        raise PrunehessError(f"{len(tags)} checkpoint(s) failed ({', '.join(tags)}); {tags[0]}: "
                             f"{report.failed[tags[0]]}{others}")
