"""Pairing the sparsity levels of compared runs, and comparing their spectra at paired levels.

Levels are paired with the first run's by nearest remaining percent: a level of the first run and a level of
another run form a pair when each is the other's nearest (mutual nearest neighbours), so a run that stops at 25 %
is not paired with the first run's 6 %. The spectra of paired levels (the best checkpoints' SLQ densities, whole
model) are compared by their Wasserstein-1 distance (:func:`prunehess.estimators.wasserstein_distance`): the area
between their cumulative distributions, in eigenvalue units.

Example:
    >>> import numpy as np
    >>> _nearest(np.array([100.0, 50.0, 25.0]), np.array([49.0, 30.0]))
    array([1, 2])
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from prunehess.estimators import wasserstein_distance
from prunehess.plots import _common as c
from prunehess.plots.compare.data import Run

__all__ = ["Matching", "SpectrumDistances", "match_levels", "spectrum_distances", "EXACT_GAP"]

EXACT_GAP = 0.05
"""Levels closer than this (percentage points; ``remain_params.txt`` rounds to 0.1) count as the same level."""


@dataclass(frozen=True)
class Matching:
    """The sparsity levels of every run paired with the first run's.

    Attributes:
        reference: the first run's percents remaining (its levels), dense to sparse.
        index: ``index[j][l]``: the position in run ``j``'s iterations paired with level ``l``, ``None`` when
            run ``j`` has no level whose nearest is ``l`` and back (``index[0][l] == l``).
        percents: ``(runs, levels)`` the paired levels' percents, NaN where unpaired.
        unpaired: for each run, its percents paired with no level of the first run.
    """

    labels: tuple[str, ...]
    reference: np.ndarray
    index: tuple[tuple[int | None, ...], ...]
    percents: np.ndarray
    unpaired: tuple[tuple[float, ...], ...]

    @property
    def gaps(self) -> np.ndarray:
        """``(runs, levels)``: how far each paired level is from the first run's (percentage points)."""
        return np.abs(self.percents - self.reference[None, :])

    @property
    def exact(self) -> bool:
        """Whether every run has the first run's levels (within :data:`EXACT_GAP`) and no others."""
        gaps = self.gaps
        return bool(np.all(np.isfinite(gaps)) and np.all(gaps <= EXACT_GAP) and not any(self.unpaired))

    def note(self) -> str:
        """One line saying how levels were paired, listing the pairs that are not the same level; ``""`` when
        every run has the first run's levels."""
        if self.exact:
            return ""
        parts = []
        for j, label in enumerate(self.labels[1:], start=1):
            pairs = [f"{p:.1f}↔{q:.1f} (gap {abs(q - p):.1f})" for p, q in zip(self.reference, self.percents[j])
                     if np.isfinite(q) and abs(q - p) > EXACT_GAP]
            lone = [f"{p:.1f}" for p, q in zip(self.reference, self.percents[j]) if not np.isfinite(q)]
            text = ", ".join(pairs)
            if lone:
                text += f"{'; ' if text else ''}none near {', '.join(lone)} %"
            if self.unpaired[j]:
                text += f"{'; ' if text else ''}its {', '.join(f'{p:.1f}' for p in self.unpaired[j])} % unpaired"
            if text:
                parts.append(f"{label}: {text}")
        return (f"Sparsity levels differ; paired with {self.labels[0]}'s by nearest remaining percent "
                f"(% remaining, {self.labels[0]}↔other) — " + "; ".join(parts))


def _nearest(values: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """For each target, the index of the nearest value (the denser on ties)."""
    return np.array([int(np.argmin(np.abs(values - t))) for t in targets], dtype=int)


def match_levels(runs: Sequence[Run]) -> Matching:
    """Pair each run's levels with the first run's: mutual nearest remaining percents (see the module)."""
    reference = runs[0].whole.percents
    index, percents, unpaired = [], [], []
    for run in runs:
        own = run.whole.percents
        forward, back = _nearest(own, reference), _nearest(reference, own)
        row = tuple(int(k) if back[k] == level else None for level, k in enumerate(forward))
        index.append(row)
        percents.append([own[k] if k is not None else np.nan for k in row])
        unpaired.append(tuple(float(p) for k, p in enumerate(own) if k not in row))
    return Matching(labels=tuple(run.label for run in runs), reference=reference, index=tuple(index),
                    percents=np.array(percents, dtype=float), unpaired=tuple(unpaired))


# ---------------------------------------------------------------------------------------------- spectra
@dataclass(frozen=True)
class SpectrumDistances:
    """Wasserstein-1 distances between the runs' SLQ densities (whole model, best checkpoints) at each level
    of the first run.

    Attributes:
        labels: the runs.
        matching: how levels were paired.
        distances: ``(levels, runs, runs)``, symmetric, NaN where a run is unpaired or has no density.
        spectra: ``spectra[l][j]``: run ``j``'s ``(nodes, weights)`` at level ``l`` (one measure, weights summing
            to 1), or ``None``.
        notes: what could not be compared, one line each.
    """

    labels: tuple[str, ...]
    matching: Matching
    distances: np.ndarray
    spectra: tuple[tuple[tuple[np.ndarray, np.ndarray] | None, ...], ...]
    notes: tuple[str, ...] = ()

    @property
    def to_first(self) -> np.ndarray:
        """``(runs, levels)``: each run's distance to the first run (row 0 is 0 where it has a density)."""
        return self.distances[:, 0, :].T


def _spectrum(run: Run, position: int | None, notes: list[str]) -> tuple[np.ndarray, np.ndarray] | None:
    if position is None:
        return None
    iteration, layout = run.iterations[position], run.layout
    paths = [layout.result_path(m, iteration, None) for m in ("density_eigen", "density_weight")]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        notes.append(f"{run.label}: no {missing[0].relative_to(layout.root).as_posix()}: its spectrum at "
                     f"{run.whole.percents[position]:.1f} % is not compared")
        return None
    nodes, weights = (layout.read_result(m, iteration, None) for m in ("density_eigen", "density_weight"))
    return c.spectrum(nodes, weights, str(paths[0]))


def spectrum_distances(runs: Sequence[Run], matching: Matching | None = None) -> SpectrumDistances:
    """The :class:`SpectrumDistances` of ``runs`` at the first run's levels (paired by :func:`match_levels`
    unless ``matching`` is given)."""
    matching = match_levels(runs) if matching is None else matching
    notes: list[str] = []
    levels, n = len(matching.reference), len(runs)
    spectra = tuple(tuple(_spectrum(run, matching.index[j][level], notes) for j, run in enumerate(runs))
                    for level in range(levels))
    distances = np.full((levels, n, n), np.nan)
    for level, measures in enumerate(spectra):
        for a in range(n):
            for b in range(a, n):
                if measures[a] is not None and measures[b] is not None:
                    distances[level, a, b] = distances[level, b, a] = wasserstein_distance(*measures[a], *measures[b])
    return SpectrumDistances(labels=matching.labels, matching=matching, distances=distances, spectra=spectra,
                             notes=tuple(notes))
