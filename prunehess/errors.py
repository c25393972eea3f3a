"""Errors that prunehess reports to its users as one clear line.

Every error a user can cause (a bad zip, a checkpoint that does not fit, a malformed config, missing data)
is raised as a :class:`PrunehessError` whose message names the file and the problem. The command line
prints that message alone (no traceback unless ``--debug``) and exits non-zero.
"""
from __future__ import annotations

__all__ = [
    "PrunehessError",
    "ArchiveError",
    "UnsafeArchiveError",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "NonDeterministicError",
    "OutputError",
]


class PrunehessError(Exception):
    """Base class: a problem with the user's input or environment, explained in one line."""

    exit_code = 1


class ArchiveError(PrunehessError):
    """A zip that cannot be read: not a zip, truncated, corrupt, empty, or holding no checkpoints."""


class UnsafeArchiveError(ArchiveError):
    """A zip that would write outside its folder, holds links, repeats names, or decompresses too far."""


class CheckpointError(PrunehessError):
    """A checkpoint that cannot be loaded safely or does not fit the model."""


class ConfigError(PrunehessError):
    """A malformed or contradictory configuration (YAML file or options)."""


class DataError(PrunehessError):
    """A dataset that is missing, malformed, or unknown."""


class NonDeterministicError(PrunehessError):
    """Two Hessian-vector products of the same vector differ: the model is not a fixed function."""


class OutputError(PrunehessError):
    """An output folder that cannot be written, or is locked by another run."""
