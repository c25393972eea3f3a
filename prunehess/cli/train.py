"""``prunehess train``: an iterative-pruning (lottery-ticket) run that writes an analysable zip.

A thin shell: its options are :class:`prunehess.training.TrainConfig`'s declared fields (defaults, help and
spellings included), plus ``--config`` (a YAML file of the same names) → :func:`prunehess.training.run_variants`.
"""
from __future__ import annotations

import sys
from typing import Any

import click

from prunehess.cli._options import config_file_option, declared_options
from prunehess.cli._root import main
from prunehess.training import TrainConfig, run_variants

__all__ = ["train"]

EPILOG = """\b
Examples:
  prunehess train --dataset digits --model fc1 --prune-iterations 5 --prune-percent 20 \\
      --epochs 20 --save-freq 10 --prune-type lt --seed 0 --output run/
  prunehess extract --resume run/ --zipname digits.zip
  prunehess train --dataset digits --model fc1 --variants lt,reinit,random --output pairs/
      # pairs/lt/digits.zip, pairs/reinit/digits.zip, pairs/random/digits.zip from one initialisation
  prunehess train --dataset cifar10 --model resnet20 --optimizer sgd --lr 0.1 --warmup 5 \
      --lr-milestones 80,120 --epochs 160 --save-freq 10 --rewind-epoch 10 --output late/
  prunehess train --config train.yaml --epochs 40   # YAML supplies options, the command line wins
"""


class _Progress:
    """A click progress bar over all training epochs, opened at the first event (so early errors print alone)."""

    def __init__(self, length: int, label: str, epochs: int, *, variants: bool) -> None:
        self.length, self.label, self.epochs, self.variants = length, label, epochs, variants
        self.bar: Any = None

    def __call__(self, event: Any) -> None:
        if self.bar is None:
            self.bar = click.progressbar(length=self.length, label=self.label, file=sys.stderr, show_pos=True,
                                         item_show_func=lambda item: item)
            self.bar.__enter__()
        tag = f"{event.variant} " if self.variants else ""
        if event.kind == "skip":
            self.bar.update(self.epochs, f"{tag}iteration {event.iteration} done before")
        elif event.kind == "epoch" and event.epoch > 0:
            self.bar.update(1, f"{tag}it {event.iteration} ep {event.epoch} acc {event.row['test_accuracy']:.1f}%")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


@main.command("train", epilog=EPILOG)
@config_file_option("train.yaml")
@declared_options(TrainConfig)
def train(**options: Any) -> None:
    """Train, prune and rewind iteratively; write the seed's checkpoint naming and zip it.

    \b
    Iteration 0 trains the dense network; each later iteration prunes the previous one's final weights
    (--prune-type: by magnitude, at random with magnitude's per-layer counts, or at Hessian-aware per-layer
    rates), restarts the survivors (rewound to the initial weights or to --rewind-epoch's, or re-initialised),
    and trains again with the pruned weights held at exactly zero.

    \b
    Files in OUTPUT/checkpoints/ and zipped into OUTPUT/<dataset>.zip (with --variants: OUTPUT/<type>/...):
      initial_state_dict_<type>.pth       initial weights
      <ite>_model_<type>_epoch<E>.pth     after E epochs of iteration ite (E = 0, F, 2F, ...)
      <ite>_model_<type>.pth              best test accuracy of iteration ite
      remain_params.txt                   percent of all parameters remaining, one line per iteration
      train_log.csv                       one row per epoch: losses, accuracy, batch size, eigenvalue, trace, lr
      train_config.yaml                   the run's settings (extract reads dataset and model from it)
    """
    config = TrainConfig.from_mapping(options)
    runs = config.variant_configs()
    progress = _Progress(len(runs) * config.prune_iterations * config.epochs,
                         f"train {config.model} on {config.dataset}", config.epochs, variants=bool(config.variants))
    try:
        summaries = run_variants(config, on_event=progress)
    finally:
        progress.close()
    for name, summary in summaries.items():
        tag = f"[{name}] " if config.variants else ""
        if summary.iterations_skipped:
            click.echo(f"{tag}Resumed: skipped finished iterations {list(summary.iterations_skipped)}.")
        click.echo(f"{tag}Remaining params (%): {' '.join(f'{r:.1f}' for r in summary.remaining_percent)}")
        click.echo(f"{tag}Best test accuracy (%): {' '.join(f'{a:.2f}' for a in summary.best_accuracy)}")
        click.echo(f"{tag}Wrote {summary.archive}")
