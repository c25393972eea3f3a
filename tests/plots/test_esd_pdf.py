"""esd_pdf keeps one figure per thread and redraws only the curve, its limits and the title: the pages (and the
bytes) are those of a fresh figure, checkpoint after checkpoint, whatever came before."""
from __future__ import annotations

import io
import threading

import numpy as np
import pytest
import torch

from prunehess.plots import esd as esd_module
from prunehess.plots.esd import esd_pdf, render_esd


@pytest.fixture(autouse=True)
def _reproducible(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")  # the PDF's creation date
    monkeypatch.setattr(esd_module, "_kept", threading.local())  # each test starts without a kept figure


def fresh(grid: np.ndarray, density: np.ndarray, title=None) -> bytes:
    """The page as the figure was drawn before it was kept: a new figure per call."""
    figure = render_esd(grid, density, title=title)
    figure.set_layout_engine(None)
    figure.subplots_adjust(left=0.14, right=0.97, bottom=0.12, top=0.9 if title else 0.95)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="pdf")
    return buffer.getvalue()


def spectrum(seed: int, n: int = 10_000) -> tuple[np.ndarray, np.ndarray]:
    """PyHessian's broadening of a bulk near zero and outliers (negative ones for some seeds), on its grid."""
    rng = np.random.default_rng(seed)
    nodes = np.concatenate([rng.normal(0, 0.05, 90), rng.uniform(0.5, 10 * (seed + 1), 10)])
    nodes = nodes * (-3 if seed % 3 == 2 else 1)
    weights = rng.dirichlet(np.ones(nodes.size))
    lo, hi = nodes.min() - 0.01, nodes.max() + 0.01
    grid = np.linspace(lo, hi, n)
    var = 1e-5 * max(1.0, hi - lo)
    density = (weights * np.exp(-(grid[:, None] - nodes) ** 2 / (2 * var)) / np.sqrt(2 * np.pi * var)).sum(1)
    return grid, density


def test_checkpoint_after_checkpoint_the_bytes_of_a_fresh_figure():
    small = np.linspace(-1, 1, 50)
    calls = [(*spectrum(0), None), (*spectrum(1), "ESD"), (*spectrum(2), None), (*spectrum(3), "layer 3"),
             (small, np.exp(-small**2 * 20), None), (small, np.exp(-small**2 * 20), "ESD"),
             (np.array([0.5]), np.array([2.0]), None), (*spectrum(4, n=300), None)]
    for grid, density, title in calls:
        assert esd_pdf(grid, density, title=title) == fresh(grid, density, title), (grid.size, title)
    assert esd_module._kept.figure is not None


def test_tensors_on_any_device_and_empty_grids():
    grid, density = spectrum(5)
    assert esd_pdf(torch.from_numpy(grid), torch.from_numpy(density).float()) \
        == fresh(grid, density.astype(np.float32).astype(float))
    empty = esd_pdf(np.array([]), np.array([]))  # drawn on a figure of its own; the kept one is unchanged
    assert empty.startswith(b"%PDF-") and empty == fresh(np.array([]), np.array([]))
    assert esd_pdf(grid, density) == fresh(grid, density)
    with pytest.raises(ValueError, match="differ in shape"):
        esd_pdf(grid, density[:-1])


def test_each_thread_draws_on_its_own_figure():
    inputs = [spectrum(seed, n=2_000) for seed in range(4)]
    expected = [fresh(g, d) for g, d in inputs]
    found: dict[int, list[bytes]] = {}

    def draw(k: int) -> None:
        found[k] = [esd_pdf(g, d) for g, d in inputs[k:] + inputs[:k]]

    threads = [threading.Thread(target=draw, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k, pages in found.items():
        assert pages == expected[k:] + expected[:k]


def test_no_figure_is_registered_with_pyplot():
    import matplotlib.pyplot as plt

    for seed in range(3):
        esd_pdf(*spectrum(seed, n=500))
    assert plt.get_fignums() == []
