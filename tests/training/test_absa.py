"""ABSA changes the batch size when, and only when, its rule says (scripted eigenvalue sequences)."""
from __future__ import annotations

import math

import pytest

from prunehess.training.absa import AdaptiveBatchSize, ConstantBatchSize, make_batch_schedule


def _run(schedule, eigenvalues):
    return [schedule.observe(lam) for lam in eigenvalues]


def test_peak_reference_grows_after_a_drop_from_the_peak():
    s = AdaptiveBatchSize(32, factor=2, threshold=0.5, max_batch_size=1024)
    # rising never triggers; 5.0 is half the peak 10; the peak restarts at 5.0, rises to 5.5, and 2.75 halves it
    lams = [1.0, 4.0, 10.0, 9.0, 6.0, 5.0, 5.5, 3.0, 2.75, 2.5, 2.6]
    expected = [32, 32, 32, 32, 32, 64, 64, 64, 128, 128, 128]
    assert _run(s, lams) == expected
    assert s.history == list(zip(lams, expected))


def test_peak_follows_a_rise_after_a_change():
    s = AdaptiveBatchSize(16, threshold=0.5, max_batch_size=1024)
    assert _run(s, [8.0, 4.0, 20.0, 11.0, 10.0]) == [16, 32, 32, 32, 64]


def test_previous_reference_needs_a_drop_between_consecutive_records():
    s = AdaptiveBatchSize(32, threshold=0.5, max_batch_size=1024, reference="previous")
    # a slow halving never triggers; a sharp one does
    assert _run(s, [10.0, 8.0, 6.4, 5.1, 4.1, 2.0, 1.5, 0.75]) == [32, 32, 32, 32, 32, 64, 64, 128]


def test_threshold_boundary_is_inclusive():
    s = AdaptiveBatchSize(10, threshold=0.25, max_batch_size=100, reference="previous")
    assert _run(s, [4.0, 3.0]) == [10, 20]          # exactly 25 % lower
    s = AdaptiveBatchSize(10, threshold=0.25, max_batch_size=100, reference="previous")
    assert _run(s, [4.0, 3.0001]) == [10, 10]


def test_clipped_at_max_and_factor():
    s = AdaptiveBatchSize(48, factor=3, threshold=0.5, max_batch_size=200)
    assert _run(s, [8.0, 4.0, 2.0, 1.0, 0.5]) == [48, 144, 200, 200, 200]


def test_non_finite_and_non_positive_never_trigger():
    s = AdaptiveBatchSize(8, threshold=0.5, max_batch_size=64)
    assert _run(s, [math.nan, -1.0, -5.0, 0.0]) == [8, 8, 8, 8]
    assert _run(s, [2.0, math.nan, 1.0]) == [8, 8, 16]  # NaN is skipped, the peak 2.0 stays


def test_constant_ignores_eigenvalues():
    s = ConstantBatchSize(60)
    assert _run(s, [10.0, 1.0, 0.1]) == [60, 60, 60]


def test_factory_and_validation():
    assert isinstance(make_batch_schedule("constant", 8), ConstantBatchSize)
    s = make_batch_schedule("absa", 8, factor=4, threshold=0.3, max_batch_size=64, reference="previous")
    assert isinstance(s, AdaptiveBatchSize) and s.factor == 4 and s.reference == "previous"
    with pytest.raises(ValueError):
        make_batch_schedule("linear", 8)
    with pytest.raises(ValueError):
        AdaptiveBatchSize(8, threshold=1.0)
    with pytest.raises(ValueError):
        AdaptiveBatchSize(8, reference="anchor")
