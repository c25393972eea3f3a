"""Command-line interface: a thin shell over :mod:`prunehess.pipeline` and friends.

Each subcommand lives in its own module and registers itself on :data:`main`.
"""
from prunehess.cli import extract, plot, report, train  # noqa: F401  (each registers its subcommand)
from prunehess.cli import landscape  # noqa: F401
from prunehess.cli import barrier  # noqa: F401
from prunehess.cli import compare  # noqa: F401
from prunehess.cli import pruning_step  # noqa: F401
from prunehess.cli._root import main

__all__ = ["main"]
