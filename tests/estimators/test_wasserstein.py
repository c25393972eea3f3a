"""Wasserstein-1 between discrete spectral measures: closed forms, metric properties, scipy."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from prunehess.estimators import DensityResult, wasserstein_distance

pytestmark = pytest.mark.usefixtures("float64")


def random_measure(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    return rng.normal(size=size) * rng.uniform(0.5, 3), rng.uniform(0.0, 1.0, size=size)


def test_point_masses():
    assert wasserstein_distance([0.0], [1.0], [3.0], [1.0]) == 3.0
    assert wasserstein_distance([-2.5], [0.3], [1.5], [7.0]) == pytest.approx(4.0, abs=1e-15)  # weights normalised
    # half the mass moves by 2: W1 = 1
    assert wasserstein_distance([0.0, 1.0], [0.5, 0.5], [0.0, 3.0], [0.5, 0.5]) == pytest.approx(1.0, abs=1e-15)
    # mass 1/4 moves from 0 to 4 (the cheapest plan): W1 = 1
    assert wasserstein_distance([0.0, 4.0], [0.25, 0.75], [4.0], [1.0]) == pytest.approx(1.0, abs=1e-15)


@pytest.mark.parametrize("shift", [0.0, 0.37, -2.0, 10.0])
def test_shifted_measure_is_the_shift(shift):
    rng = np.random.default_rng(0)
    x, w = random_measure(rng, 25)
    assert wasserstein_distance(x, w, x + shift, w) == pytest.approx(abs(shift), rel=1e-12, abs=1e-12)


def test_identical_symmetric_and_triangle_inequality():
    rng = np.random.default_rng(1)
    measures = [random_measure(rng, int(rng.integers(1, 30))) for _ in range(12)]
    for a in measures:
        assert wasserstein_distance(*a, *a) == 0.0
    for i, a in enumerate(measures):
        for b in measures[i + 1 :]:
            d_ab = wasserstein_distance(*a, *b)
            assert d_ab > 0
            assert d_ab == pytest.approx(wasserstein_distance(*b, *a), rel=1e-13)
            for c in measures:
                assert d_ab <= wasserstein_distance(*a, *c) + wasserstein_distance(*c, *b) + 1e-12


def test_against_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(2)
    for _ in range(20):
        (xa, wa), (xb, wb) = random_measure(rng, int(rng.integers(1, 40))), random_measure(rng, int(rng.integers(1, 40)))
        ours = wasserstein_distance(xa, wa, xb, wb)
        theirs = stats.wasserstein_distance(xa, xb, wa, wb)
        assert ours == pytest.approx(theirs, rel=1e-11, abs=1e-13)
    xs = np.array([0.0, 0.0, 1.0, 1.0, 2.0])  # repeated support points
    assert wasserstein_distance(xs, np.ones(5), [0.5, 2.0], [1.0, 3.0]) == pytest.approx(
        stats.wasserstein_distance(xs, [0.5, 2.0], np.ones(5), [1.0, 3.0]), rel=1e-12)


def test_accepts_tensors_and_pooled_runs():
    nodes = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    weights = torch.tensor([[0.5, 0.5], [0.5, 0.5]])
    pooled = wasserstein_distance(nodes, weights, torch.tensor([1.5]), torch.tensor([1.0]))
    assert pooled == pytest.approx((1.5 + 0.5 + 0.5 + 1.5) / 4, abs=1e-15)
    d = DensityResult(nodes=nodes, weights=weights, n_hvp=0, dim=2)
    assert wasserstein_distance(*d.flat(), torch.tensor([1.5]), torch.tensor([1.0])) == pytest.approx(pooled, abs=1e-15)


def test_invalid_measures():
    with pytest.raises(ValueError, match="differ in shape"):
        wasserstein_distance([0.0, 1.0], [1.0], [0.0], [1.0])
    for nodes, weights in (([], []), ([0.0], [0.0]), ([0.0, 1.0], [1.0, -0.5])):
        with pytest.raises(ValueError, match="non-negative"):
            wasserstein_distance(nodes, weights, [0.0], [1.0])
