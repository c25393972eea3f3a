"""``prunehess train``: an iterative magnitude-pruning (lottery-ticket) run that writes an analysable zip.

A thin shell: options (or a YAML file of the same names) → :class:`prunehess.training.TrainConfig` →
:func:`prunehess.training.run_training`.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import click

from prunehess.cli._options import config_file_option
from prunehess.cli._root import main
from prunehess.devices import resolve_device
from prunehess.training.config import ABSA_REFERENCES, BATCH_SCHEDULES, OPTIMIZERS, PRUNE_TYPES, TrainConfig

__all__ = ["train"]

_DEFAULTS = TrainConfig(dataset="-", model="-", output=Path("-"))


class _Progress:
    """A click progress bar over all training epochs, opened at the first event (so early errors print alone)."""

    def __init__(self, length: int, label: str, epochs: int) -> None:
        self.length, self.label, self.epochs = length, label, epochs
        self.bar: Any = None

    def __call__(self, event: Any) -> None:
        if self.bar is None:
            self.bar = click.progressbar(length=self.length, label=self.label, file=sys.stderr, show_pos=True,
                                         item_show_func=lambda item: item)
            self.bar.__enter__()
        if event.kind == "skip":
            self.bar.update(self.epochs, f"iteration {event.iteration} done before")
        elif event.kind == "epoch" and event.epoch > 0:
            self.bar.update(1, f"it {event.iteration} ep {event.epoch} acc {event.row['test_accuracy']:.1f}%")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


_ABSA_HELP = (
    "Batch-size schedule. 'absa' (Yao et al. 2018, HessianFlow) multiplies the batch size by --absa-factor, up to "
    "--absa-max-batch-size, whenever a tracked top eigenvalue is at most (1 - --absa-threshold) times the reference "
    "eigenvalue (a flatter region); the reference is the largest value since the last batch-size change ('peak') "
    "or the previous record ('previous'), see --absa-reference. Needs --track-eigen; restarts each iteration; the "
    "new size applies from the next epoch."
)


@main.command("train")
@config_file_option("train.yaml")
@click.option("--dataset", required=True, help="Dataset name (e.g. digits, mnist, cifar10).")
@click.option("--model", required=True, help="Model name (fc1, lenet5, resnet20, resnet18, vgg11_bn).")
@click.option("--output", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (checkpoints, zip, remain_params.txt, train_log.csv). Rerun to resume.")
@click.option("--prune-iterations", type=click.IntRange(min=1), default=_DEFAULTS.prune_iterations,
              show_default=True, help="Iterations 0..K-1, the dense iteration 0 included (K-1 pruning rounds).")
@click.option("--prune-percent", type=click.FloatRange(0, 100, max_open=True), default=_DEFAULTS.prune_percent,
              show_default=True, help="Percent of the remaining prunable weights removed per round, by magnitude.")
@click.option("--global-pruning", is_flag=True, default=False,
              help="Rank weights across all prunable layers instead of per layer.")
@click.option("--prune-type", type=click.Choice(PRUNE_TYPES), default=_DEFAULTS.prune_type, show_default=True,
              help="lt: rewind survivors to the initial weights; reinit: re-initialise them.")
@click.option("--epochs", type=click.IntRange(min=1), default=_DEFAULTS.epochs, show_default=True,
              help="Training epochs per iteration.")
@click.option("--save-freq", type=click.IntRange(min=1), default=_DEFAULTS.save_freq, show_default=True,
              help="Snapshot every F epochs: epoch0 (before training), F, 2F, ... <= --epochs.")
@click.option("--seed", type=int, default=_DEFAULTS.seed, show_default=True, help="Seed of everything random.")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default=_DEFAULTS.optimizer, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=_DEFAULTS.lr, show_default=True,
              help="Learning rate.")
@click.option("--momentum", type=click.FloatRange(min=0), default=_DEFAULTS.momentum, show_default=True,
              help="SGD momentum.")
@click.option("--weight-decay", type=click.FloatRange(min=0), default=_DEFAULTS.weight_decay, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=_DEFAULTS.batch_size, show_default=True,
              help="Training batch size (the initial one under --batch-schedule absa).")
@click.option("--test-batch-size", type=click.IntRange(min=1), default=_DEFAULTS.test_batch_size,
              show_default=True)
@click.option("--data-root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Dataset folder (default: the data registry's).")
@click.option("--download", is_flag=True, default=False, help="Download the dataset if missing.")
@click.option("--cuda/--no-cuda", default=None, help="Train on CUDA (default: when available).")
@click.option("--device", default=None, help="Explicit torch device (e.g. cpu, cuda:1); wins over --cuda.")
@click.option("--num-workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="DataLoader worker processes.")
@click.option("--track-eigen", type=click.IntRange(min=1), default=None, metavar="N",
              help="Every N epochs (0 included) log the top Hessian eigenvalue and trace (engine, surviving weights).")
@click.option("--hessian-batch-size", type=click.IntRange(min=1), default=_DEFAULTS.hessian_batch_size,
              show_default=True, help="Training samples in the fixed Hessian batch used for tracking.")
@click.option("--hessian-mini-batch-size", type=click.IntRange(min=1), default=None,
              help="Split the Hessian batch into mini-batches of this size (default: one batch).")
@click.option("--trace-probes", type=click.IntRange(min=1), default=_DEFAULTS.trace_probes, show_default=True,
              help="Hutchinson probes per tracked trace.")
@click.option("--batch-schedule", type=click.Choice(BATCH_SCHEDULES), default=_DEFAULTS.batch_schedule,
              show_default=True, help=_ABSA_HELP)
@click.option("--absa-factor", type=click.IntRange(min=2), default=_DEFAULTS.absa_factor, show_default=True,
              help="ABSA: batch-size growth factor.")
@click.option("--absa-threshold", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=_DEFAULTS.absa_threshold, show_default=True,
              help="ABSA: relative eigenvalue drop that grows the batch (0.5: λ halved).")
@click.option("--absa-max-batch-size", type=click.IntRange(min=1), default=_DEFAULTS.absa_max_batch_size,
              show_default=True, help="ABSA: the largest batch size.")
@click.option("--absa-reference", type=click.Choice(ABSA_REFERENCES), default=_DEFAULTS.absa_reference,
              show_default=True,
              help="ABSA: compare with the largest eigenvalue since the last change, or with the previous one.")
@click.option("--depth", type=click.IntRange(min=1), default=None, help="Model depth (resnet20 family).")
@click.option("--batch-norm/--no-batch-norm", default=None, help="Model with or without BatchNorm (where it has it).")
@click.option("--residual/--no-residual", default=None, help="Residual connections on or off (resnet20 family).")
@click.option("--zipname", default=None, help="Name of the zip (default: <dataset>.zip).")
def train(**options: Any) -> None:
    """Train, prune and rewind iteratively; write the seed's checkpoint naming and zip it.

    \b
    Iteration 0 trains the dense network; each later iteration prunes --prune-percent of the remaining weights
    of each prunable layer (or globally) by magnitude, rewinds (lt) or re-initialises (reinit) the survivors,
    and trains again with the pruned weights held at exactly zero.

    \b
    Files in OUTPUT/checkpoints/ and zipped into OUTPUT/<dataset>.zip:
      initial_state_dict_<type>.pth       initial weights
      <ite>_model_<type>_epoch<E>.pth     after E epochs of iteration ite (E = 0, F, 2F, ...)
      <ite>_model_<type>.pth              best test accuracy of iteration ite
      remain_params.txt                   percent of all parameters remaining, one line per iteration
      train_log.csv                       one row per epoch: losses, accuracy, batch size, eigenvalue, trace

    \b
    Example:
      prunehess train --dataset digits --model fc1 --prune-iterations 5 --prune-percent 20 \\
          --epochs 20 --save-freq 10 --prune-type lt --seed 0 --output run/
      prunehess extract --resume run/ --zipname digits.zip
    """
    from prunehess.training.run import run_training

    cuda, device = options.pop("cuda"), options.pop("device")
    model_kwargs = {k: options.pop(k) for k in ("depth", "batch_norm", "residual")}
    options["zip_name"] = options.pop("zipname")
    config = TrainConfig(
        **options,
        device=str(resolve_device(device, cuda)),
        model_kwargs={k: v for k, v in model_kwargs.items() if v is not None},
    )
    progress = _Progress(config.prune_iterations * config.epochs, f"train {config.model} on {config.dataset}",
                         config.epochs)
    try:
        summary = run_training(config, on_event=progress)
    finally:
        progress.close()

    if summary.iterations_skipped:
        click.echo(f"Resumed: skipped finished iterations {list(summary.iterations_skipped)}.")
    click.echo(f"Remaining params (%): {' '.join(f'{r:.1f}' for r in summary.remaining_percent)}")
    click.echo(f"Best test accuracy (%): {' '.join(f'{a:.2f}' for a in summary.best_accuracy)}")
    click.echo(f"Wrote {summary.archive}")
