"""The empirical spectral density (ESD) figure of one checkpoint, as PyHessian draws it.

The numbers come from :func:`prunehess.estimators.gaussian_density` (PyHessian's Gaussian broadening of
the SLQ nodes and weights); this module only draws them: ``density + 1e-7`` on a log y axis, so that the
empty stretches between the bulk and the outliers show as a floor instead of vanishing.

:func:`esd_pdf`, which ``extract`` calls for every checkpoint and layer, keeps one figure per thread and redraws
only the curve, its limits and the title: building the figure and its ticks anew cost a third of each PDF. Its
pages are the ones a fresh :func:`render_esd` figure gives, byte for byte. matplotlib is imported at the first
drawing, not with this module.
"""
from __future__ import annotations

import io
import threading
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["render_esd", "esd_pdf", "ESD_FLOOR"]

ESD_FLOOR = 1e-7
"""Added to the density before plotting on the log axis (PyHessian's constant)."""

_MARGINS = {"left": 0.14, "right": 0.97, "bottom": 0.12}  # esd_pdf's fixed margins (top: 0.9 with a title)
_kept = threading.local()  # esd_pdf's figure, one per thread


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
    from prunehess.plots._common import new_axes

    grid, density = _checked(grid, density)
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

    The figure of :func:`render_esd`, with fixed margins instead of the constrained layout (which costs as much
    as the drawing itself). The first call of a thread builds it; later calls replace the curve, the limits and
    the title of the same figure, which gives the same page as a fresh one (and the same bytes).

    Args:
        grid, density: as for :func:`render_esd`; arrays or tensors (on any device).
        title: optional title (the top margin leaves room for it).

    Example:
        >>> grid = np.linspace(-1, 1, 5)
        >>> esd_pdf(grid, np.exp(-grid**2))[:5]
        b'%PDF-'
    """
    grid, density = _checked(_as_array(grid), _as_array(density))
    figure = getattr(_kept, "figure", None)
    if figure is None or not grid.size:
        figure = render_esd(grid, density, title=title)
        figure.set_layout_engine(None)
        if grid.size:
            _kept.figure = figure
    else:
        _redraw(figure, grid, density, title)
    figure.subplots_adjust(**_MARGINS, top=0.9 if title else 0.95)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="pdf")
    return buffer.getvalue()


def _redraw(figure: Figure, grid: np.ndarray, density: np.ndarray, title: str | None) -> None:
    """What :func:`render_esd` would draw, on the kept figure: the curve's data, the limits it implies, the title."""
    ax = figure.axes[0]
    (line,) = ax.get_lines()
    line.set_data(grid, density + ESD_FLOOR)
    ax.relim()
    ax.set_autoscaley_on(True)
    ax.autoscale_view(scalex=False)
    ax.set_xlim(grid.min(), grid.max())
    ax.set_title(title or "")


def _checked(grid: Any, density: Any) -> tuple[np.ndarray, np.ndarray]:
    grid = np.asarray(grid, dtype=float).reshape(-1)
    density = np.asarray(density, dtype=float).reshape(-1)
    if grid.shape != density.shape:
        raise ValueError(f"ESD: grid {grid.shape} and density {density.shape} differ in shape")
    return grid, density


def _as_array(values: Any) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor, without importing torch here
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=float)
