"""Batch-size schedules driven by the tracked top Hessian eigenvalue.

ABSA (adaptive batch size, Yao, Gholami, Keutzer & Mahoney 2018, "Large batch size training of neural networks
with adversarial training and second-order information", arXiv:1810.01021; implemented in HessianFlow) grows the
batch when training reaches a flatter region of the loss, where a larger batch (less gradient noise) no longer
pulls the iterate into a sharp minimum. Flatness is read off the top eigenvalue ``λ`` of the loss Hessian.

The rule, applied each time an eigenvalue ``λ_t`` is recorded (every ``--track-eigen N`` epochs)::

    if λ_ref is set and λ_t <= (1 - threshold) · λ_ref:      # dropped by at least `threshold`, relatively
        batch_size = min(factor · batch_size, max_batch_size)
    update λ_ref                                              # see `reference`

``reference="peak"`` (default): ``λ_ref`` is the largest eigenvalue recorded since the batch size last changed
(the record at the change included), so the batch grows once the curvature has fallen to ``1 - threshold`` of its
peak — early training, where ``λ`` first rises, never triggers it, and a slow decline accumulates.
``reference="previous"``: ``λ_ref`` is the previous recorded value, so only a drop between two consecutive
records counts. A non-positive reference never triggers growth. The defaults ``factor=2, threshold=0.5``
double the batch each time ``λ`` has halved. The new size applies from the next epoch. A schedule belongs to one
pruning iteration: each iteration starts again from the initial batch size. The paper's adversarial-training half
is not part of this schedule.

Example:
    >>> s = AdaptiveBatchSize(32, factor=2, threshold=0.5, max_batch_size=100)
    >>> [s.observe(lam) for lam in (1.0, 10.0, 8.0, 5.0, 4.0, 2.0, 0.5)]
    [32, 32, 32, 64, 64, 100, 100]
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Protocol

__all__ = ["BatchSizeSchedule", "ConstantBatchSize", "AdaptiveBatchSize", "make_batch_schedule"]


class BatchSizeSchedule(Protocol):
    """Anything with a current ``batch_size`` and an ``observe(eigenvalue) -> batch_size`` step."""

    batch_size: int

    def observe(self, eigenvalue: float) -> int: ...


@dataclass
class ConstantBatchSize:
    """The batch size never changes; eigenvalues are ignored."""

    batch_size: int

    def observe(self, eigenvalue: float) -> int:
        return self.batch_size


@dataclass
class AdaptiveBatchSize:
    """ABSA: multiply the batch size by ``factor`` (up to ``max_batch_size``) when ``λ`` drops by ``threshold``.

    Attributes:
        batch_size: the current batch size (starts at the initial one).
        factor: growth factor β ≥ 2.
        threshold: relative drop in ``(0, 1)`` that triggers growth: ``λ_t <= (1 - threshold) · λ_ref``.
        max_batch_size: the batch size never exceeds this.
        reference: ``"peak"`` (the largest λ since the last change) or ``"previous"`` (the previous record).
        history: ``(eigenvalue, batch size after the step)`` for every observation.
    """

    batch_size: int
    factor: int = 2
    threshold: float = 0.5
    max_batch_size: int = 4096
    reference: str = "peak"
    history: list = field(default_factory=list)
    _ref: Optional[float] = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.reference not in ("peak", "previous"):
            raise ValueError(f"reference must be 'peak' or 'previous', got {self.reference!r}")
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}")
        if self.factor < 2:
            raise ValueError(f"factor must be >= 2, got {self.factor}")

    def should_grow(self, eigenvalue: float) -> bool:
        """Whether ``eigenvalue`` is a drop of at least ``threshold`` from the reference (no side effects)."""
        if self._ref is None or self._ref <= 0.0 or not math.isfinite(eigenvalue):
            return False
        return eigenvalue <= (1.0 - self.threshold) * self._ref

    def observe(self, eigenvalue: float) -> int:
        """Record one top eigenvalue; return the batch size to use from now on."""
        eigenvalue = float(eigenvalue)
        grow = self.should_grow(eigenvalue) and self.batch_size < self.max_batch_size
        if grow:
            self.batch_size = min(self.batch_size * self.factor, self.max_batch_size)
        if math.isfinite(eigenvalue):
            if self._ref is None or grow or self.reference == "previous":
                self._ref = eigenvalue
            else:
                self._ref = max(self._ref, eigenvalue)
        self.history.append((eigenvalue, self.batch_size))
        return self.batch_size


def make_batch_schedule(
    kind: str, batch_size: int, *, factor: int = 2, threshold: float = 0.5, max_batch_size: int = 4096,
    reference: str = "peak",
) -> BatchSizeSchedule:
    """A fresh schedule: ``kind`` is ``"constant"`` or ``"absa"``."""
    if kind == "constant":
        return ConstantBatchSize(batch_size)
    if kind == "absa":
        return AdaptiveBatchSize(batch_size, factor=factor, threshold=threshold, max_batch_size=max_batch_size,
                                 reference=reference)
    raise ValueError(f"batch schedule must be 'constant' or 'absa', got {kind!r}")
