"""The empirical spectral density (ESD) figure of one checkpoint, as PyHessian draws it.

The numbers come from :func:`prunehess.estimators.gaussian_density` (PyHessian's Gaussian broadening of
the SLQ nodes and weights); this module only draws them: ``density + 1e-7`` on a log y axis, so that the
empty stretches between the bulk and the outliers show as a floor instead of vanishing.
"""
from __future__ import annotations

import io
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from prunehess.plots._common import new_axes

__all__ = ["render_esd", "esd_pdf", "ESD_FLOOR"]

ESD_FLOOR = 1e-7
"""Added to the density before plotting on the log axis (PyHessian's constant)."""


def render_esd(grid: np.ndarray, density: np.ndarray, *, ax: Axes | None = None, title: str | None = None) -> Figure:
    """Draw a broadened spectral density: ``density + 1e-7`` against ``grid`` on a log y axis.

    Args:
        grid: eigenvalue grid, shape ``(n,)``.
        density: density on the grid, shape ``(n,)``.
        ax: axes to draw on; a new figure (not registered with pyplot) when omitted.
        title: optional title.

    Returns:
        The figure holding the plot. Nothing is left open; save it with ``figure.savefig``.

    Example:
        >>> grid = np.linspace(-1, 1, 5)
        >>> figure = render_esd(grid, np.exp(-grid**2))
        >>> figure.axes[0].get_ylabel(), figure.axes[0].get_yscale()
        ('Density (Log Scale)', 'log')
    """
    grid = np.asarray(grid, dtype=float).reshape(-1)
    density = np.asarray(density, dtype=float).reshape(-1)
    if grid.shape != density.shape:
        raise ValueError(f"ESD: grid {grid.shape} and density {density.shape} differ in shape")
    figure, ax = new_axes(ax)
    ax.semilogy(grid, density + ESD_FLOOR, color="tab:blue", linewidth=1.2)
    ax.set_ylabel("Density (Log Scale)")
    ax.set_xlabel("Eigenvalue")
    if grid.size:
        ax.set_xlim(grid.min(), grid.max())
    if title:
        ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    return figure


def esd_pdf(grid: Any, density: Any, *, title: str | None = None) -> bytes:
    """The ESD figure of one checkpoint as PDF bytes, for :meth:`prunehess.layout.OutputLayout.write_esd_plot`.

    Drawn by :func:`render_esd` with fixed margins instead of the constrained layout, which costs as much as the
    drawing itself, for every checkpoint and layer.

    Args:
        grid, density: as for :func:`render_esd`; arrays or tensors (on any device).
        title: optional title (the top margin leaves room for it).

    Example:
        >>> grid = np.linspace(-1, 1, 5)
        >>> esd_pdf(grid, np.exp(-grid**2))[:5]
        b'%PDF-'
    """
    figure = render_esd(_as_array(grid), _as_array(density), title=title)
    figure.set_layout_engine(None)
    figure.subplots_adjust(left=0.14, right=0.97, bottom=0.12, top=0.9 if title else 0.95)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="pdf")
    figure.clear()
    return buffer.getvalue()


def _as_array(values: Any) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor, without importing torch here
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=float)
