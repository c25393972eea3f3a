"""The options of ``prunehess landscape``, ``prunehess barrier`` and ``prunehess pruning-step``, each declared once
(:func:`prunehess.options.option`): the command line is generated from them (:mod:`prunehess.cli._options`).

Example:
    >>> LandscapeOptions.of(directions="top1, gradient", points=5).direction_list
    ('top1', 'gradient')
    >>> BarrierOptions.of(pairs="rewind,consecutive").kinds
    ('rewind', 'consecutive')
    >>> PruningStepOptions.of(diagonal="hutchinson", probes=50).probes
    50
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from prunehess.errors import ConfigError
from prunehess.options import all_keys, check, from_flat, option

__all__ = ["RunOptions", "LandscapeOptions", "BarrierOptions", "PruningStepOptions", "DIRECTIONS", "PAIR_KINDS",
           "DIAGONALS"]

DIRECTIONS = ("top1", "top2", "random", "gradient")
PAIR_KINDS = ("consecutive", "rewind")
DIAGONALS = ("auto", "exact", "hutchinson")
_TAG = re.compile(r"\d{3,}_(?:\d{2,}|best)")


def _listed(value: str, known: tuple[str, ...], key: str) -> tuple[str, ...]:
    """The comma-separated names of ``value``, in order, each once; an unknown one is a :class:`ConfigError`."""
    names = tuple(dict.fromkeys(part.strip() for part in str(value).split(",") if part.strip()))
    if not names:
        raise ConfigError(f"{key}: empty; choose from {', '.join(known)}")
    for name in names:
        if name not in known:
            raise ConfigError(f"{key}: {name!r} is not one of {', '.join(known)}")
    return names


def _build(cls: type, values: dict[str, Any]) -> Any:
    known = set(all_keys(cls))
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return from_flat(cls, values)


@dataclass(frozen=True)
class RunOptions:
    """How the finished run is found again and where its points are evaluated (never the numbers)."""

    resume: Optional[Path] = option(None, numerics=False, show_default=False,
                                    help="The folder that holds the run's zip now, if it moved since extract "
                                         "(default: the folder OUTPUT/config.yaml names).")
    data_root: Optional[Path] = option(None, numerics=False, show_default=False,
                                       help="Where the dataset is now (default: the run's --data-root).")
    download: bool = option(False, off=("--no-download",), numerics=False,
                            help="Download a missing torchvision dataset into the data root.")
    device: Optional[str] = option(None, numerics=False, show_default=False,
                                   help="Torch device, e.g. cuda:1 or cpu (default: the run's: a GPU when there is "
                                        "one).")
    memory_mb: Optional[int] = option(None, minimum=1, numerics=False, show_default=False,
                                      help="Memory budget in MiB: for one batched pass of points (landscape, barrier; "
                                           "default: half the free GPU memory, 128 on a CPU), or for the exact "
                                           "diagonal (pruning-step; default 256).")
    plot: bool = option(True, off=("--no-plot",), numerics=False,
                        help="Draw the figures into OUTPUT/figures/<command>/ when done.")

    def __post_init__(self) -> None:
        check(self)

    @property
    def memory_bytes(self) -> Optional[int]:
        return None if self.memory_mb is None else int(self.memory_mb) * 2**20


@dataclass(frozen=True)
class LandscapeOptions:
    """``prunehess landscape``: which checkpoints, along which directions, how far and how finely."""

    checkpoints: str = option("best", help="best (each prune iteration's best checkpoint), all, or checkpoint tags "
                                           "separated by commas, e.g. 001_best,002_10.")
    directions: str = option("top1,random",
                             help="Directions of the curves, separated by commas: top1, top2 (the saved top "
                                  "eigenvectors: extract --save-eigenvectors), random (filter-normalised, Li et al. "
                                  "2018), gradient (of the loss on the Hessian batch).")
    radius: float = option(1.0, positive=True,
                           help="Steps t from -radius to radius: a distance in parameter space along unit "
                                "directions (top1, top2, gradient); in filter norms along random.")
    points: int = option(41, minimum=2, help="Steps per curve (and per side of the surface).")
    surface: bool = option(False, help="Also the loss surface over top1 x top2 (points x points; needs extract "
                                       "--top-n 2 or more with --save-eigenvectors).")
    seed: Optional[int] = option(None, show_default=False,
                                 help="Seed of the random direction (default: the run's seed); the same draw for "
                                      "every checkpoint.")
    include_biases: bool = option(False, help="Keep biases and BatchNorm parameters in the random direction (as the "
                                              "parameters themselves, as Li et al.); default: left out.")
    run: RunOptions = field(default_factory=RunOptions)

    def __post_init__(self) -> None:
        check(self)
        self.direction_list  # noqa: B018  (validated now: one clear line before anything runs)
        self.tags

    @classmethod
    def of(cls, **values: Any) -> "LandscapeOptions":
        """From flat option keys, as on the command line: ``LandscapeOptions.of(points=21, surface=True)``."""
        return _build(cls, values)

    @property
    def direction_list(self) -> tuple[str, ...]:
        return _listed(self.directions, DIRECTIONS, "directions")

    @property
    def tags(self) -> Optional[tuple[str, ...]]:
        """The checkpoint tags asked for, or ``None`` for ``best``/``all``."""
        if self.checkpoints in ("best", "all"):
            return None
        tags = tuple(dict.fromkeys(part.strip() for part in re.split(r"[,\s]+", self.checkpoints) if part.strip()))
        bad = [tag for tag in tags if not _TAG.fullmatch(tag)]
        if not tags or bad:
            raise ConfigError(f"checkpoints: {(bad or [self.checkpoints])[0]!r} is neither best, all, nor a "
                              "checkpoint tag III_EE (e.g. 001_best, 002_10)")
        return tags


@dataclass(frozen=True)
class BarrierOptions:
    """``prunehess barrier``: which pairs of checkpoints, and how many points on each path."""

    pairs: Optional[str] = option(None, show_default=False,
                                  help="Pair kinds, separated by commas: consecutive (each iteration's best and the "
                                       "next iteration's best), rewind (epoch 0 and the best of each iteration). "
                                       "Default: consecutive, or none with --against.")
    against: Optional[Path] = option(None, show_default=False,
                                     help="Another extract output of the same model: each iteration's best here "
                                          "against the same iteration's best there.")
    points: int = option(21, minimum=2, help="Points on each path, alpha from 0 to 1.")
    run: RunOptions = field(default_factory=RunOptions)

    def __post_init__(self) -> None:
        check(self)
        self.kinds  # noqa: B018

    @classmethod
    def of(cls, **values: Any) -> "BarrierOptions":
        return _build(cls, values)

    @property
    def kinds(self) -> tuple[str, ...]:
        """The pair kinds to compute, in order (``against`` last, with ``--against``)."""
        chosen = () if self.pairs is None and self.against is not None else _listed(
            self.pairs or "consecutive", PAIR_KINDS, "pairs")
        return chosen + (("against",) if self.against is not None else ())


@dataclass(frozen=True)
class PruningStepOptions:
    """``prunehess pruning-step``: how the Hessian's diagonal behind OBD's saliency is obtained."""

    diagonal: str = option("auto", choices=DIAGONALS,
                           help="The Hessian's diagonal: exact (per-sample products; networks piecewise linear in "
                                "each weight, e.g. ReLU nets), hutchinson (an estimate from --probes probes, with "
                                "its standard error), or auto (exact where it applies, else hutchinson).")
    probes: int = option(100, minimum=2, help="Rademacher probes of Hutchinson's diagonal (seeded by the run's "
                                              "seed).")
    run: RunOptions = field(default_factory=RunOptions)

    def __post_init__(self) -> None:
        check(self)

    @classmethod
    def of(cls, **values: Any) -> "PruningStepOptions":
        return _build(cls, values)
