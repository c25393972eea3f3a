"""The outliers of a spectrum, which a density's colour scale hides: marked on the spectrum figures.

A Hessian's top eigenvalues are a few Ritz nodes of tiny SLQ weight (1e-5 of the mass, say) decades above the
bulk. Broadened into a density, their colour falls under any readable colour scale's floor, and a heat map
would suggest a spectrum far narrower than ``top_eigenvalues/`` says. So the figures mark, for each epoch,

- every Ritz node beyond the coloured span of its column (the cells at or above the colour floor), and
- λmax: the largest of the checkpoint's ``top_eigenvalues`` file when there is one, else its largest Ritz node,

and stretch the eigenvalue axis to hold λmax with room for its marker.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib import patheffects
from matplotlib.axes import Axes
from matplotlib.scale import SymmetricalLogTransform

from prunehess.layout import OutputLayout

__all__: list[str] = []

NODE_LABEL = "Ritz nodes beyond the colour scale"
TOP_LABEL = "λmax (top_eigenvalues)"
RITZ_TOP_LABEL = "λmax (largest Ritz node)"


def load_top_eigenvalues(layout: OutputLayout, layer: int | None,
                         keys: Sequence[tuple[int, int | None]]) -> list[np.ndarray | None]:
    """The ``top_eigenvalues`` file of each checkpoint in ``keys``; ``None`` where it has none."""
    tops: list[np.ndarray | None] = []
    for iteration, epoch in keys:
        path = layout.result_path("top_eigenvalues", iteration, epoch, layer)
        tops.append(layout.read_result("top_eigenvalues", iteration, epoch, layer).reshape(-1)
                    if path.is_file() else None)
    return tops


def beyond_coloured(nodes: np.ndarray, edges: np.ndarray, density: np.ndarray, floor: float) -> np.ndarray:
    """The ``nodes`` outside the span of the cells (``edges``, ``density``) whose density reaches ``floor``
    (all of them when no cell does)."""
    nodes = np.asarray(nodes, dtype=float).reshape(-1)
    seen = np.flatnonzero(np.asarray(density) >= floor)
    if seen.size == 0:
        return np.sort(nodes)
    lo, hi = edges[seen[0]], edges[seen[-1] + 1]
    return np.sort(nodes[(nodes < lo) | (nodes > hi)])


def lambda_max(nodes: Sequence[np.ndarray], tops: Sequence[np.ndarray | None] | None) -> tuple[np.ndarray, np.ndarray]:
    """``(λmax per spectrum, whether it came from top_eigenvalues)``: the largest finite value of the
    spectrum's ``tops`` entry when it has one, else its largest node."""
    tops = [None] * len(nodes) if tops is None else list(tops)
    if len(tops) != len(nodes):
        raise ValueError(f"top eigenvalues: {len(tops)} entries for {len(nodes)} spectra")
    values, from_top = [], []
    for spectrum_nodes, top in zip(nodes, tops):
        top = None if top is None else np.asarray(top, dtype=float).reshape(-1)
        top = None if top is None or not np.isfinite(top).any() else top
        values.append(float(np.nanmax(top)) if top is not None else float(np.max(spectrum_nodes)))
        from_top.append(top is not None)
    return np.array(values), np.array(from_top, dtype=bool)


def mark(ax: Axes, x: np.ndarray, beyond: Sequence[np.ndarray], top: np.ndarray, from_top: np.ndarray) -> None:
    """Draw the markers: a white dash (grey rim) per node in ``beyond`` (at its epoch ``x``), an open diamond at
    each λmax (cyan from ``top_eigenvalues``, pale green otherwise) with its value. Each kind is one line,
    labelled for a legend."""
    xs = np.concatenate([np.full(b.size, xi) for xi, b in zip(x, beyond)]) if beyond else np.empty(0)
    ys = np.concatenate(list(beyond)) if beyond else np.empty(0)
    if ys.size:
        ax.plot(xs, ys, linestyle="none", marker="_", markersize=10, markeredgewidth=1.4, color="white",
                label=NODE_LABEL, zorder=3, path_effects=[patheffects.withStroke(linewidth=2.6, foreground="0.25")])
    for chosen, label, color in ((from_top, TOP_LABEL, "#33d6ff"), (~from_top, RITZ_TOP_LABEL, "#c8f060")):
        if chosen.any():
            ax.plot(x[chosen], top[chosen], linestyle="none", marker="D", markersize=7, markerfacecolor="none",
                    markeredgewidth=1.6, color=color, label=label, zorder=4)
    label_values(ax, x, top, "#33d6ff")


def label_values(ax: Axes, x: np.ndarray, values: np.ndarray, color: str, most: int = 8) -> None:
    """Write each λmax beside its marker (three significant digits), when there are at most ``most``."""
    if len(x) > most:
        return
    for xi, value in zip(x, values):
        ax.annotate(f"{value:.3g}", (xi, value), xytext=(7, 0), textcoords="offset points", va="center",
                    fontsize="x-small", color=color, zorder=5)


def covering_limits(lo: float, hi: float, values: np.ndarray, linthresh: float,
                    margin: float = 0.06) -> tuple[float, float]:
    """``(lo, hi)`` widened, in the symmetric-log coordinate, so that ``values`` sit at least ``margin`` of the
    axis inside it (a marker at the edge would be cut in half)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return lo, hi
    transform = SymmetricalLogTransform(10, linthresh, 1)
    u_lo, u_hi, v_lo, v_hi = transform.transform_non_affine(np.array([lo, hi, values.min(), values.max()]))
    pad = margin * (max(u_hi, v_hi) - min(u_lo, v_lo))
    inverse = transform.inverted()
    new_lo, new_hi = inverse.transform_non_affine(np.array([min(u_lo, v_lo - pad), max(u_hi, v_hi + pad)]))
    return float(new_lo), float(new_hi)


def legend(ax: Axes, *, below: bool) -> None:
    """The markers' legend: under the figure (``below``, for a figure of its own), else inside ``ax``."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return
    if below:
        ax.figure.legend(handles, labels, loc="outside lower center", ncol=len(handles), fontsize="small",
                         frameon=False)
    else:
        ax.legend(handles, labels, loc="upper left", fontsize="x-small", framealpha=0.85)
