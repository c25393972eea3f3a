"""Spectral densities across epochs: a heat map of density over epoch × eigenvalue, or the bare SLQ nodes.

The eigenvalue axis is symmetric-log (linear within ``±linthresh``, logarithmic beyond): Hessian spectra have a
bulk near zero, a few negative values and outliers decades larger, which no linear axis shows together.

The density is a Gaussian broadening *in the display coordinate* u = symlog(λ): each SLQ node θ_j with weight
w_j contributes w_j · N(u; symlog(θ_j), s²), with s a fixed fraction of the axis. So a column of the heat map
is a probability density per unit of the drawn axis (it integrates to 1 over u), and equal masses look alike
whether they sit in the bulk or among the outliers. (The PDFs in ``esd_plot`` use PyHessian's broadening in
λ itself; this view is for comparing epochs.)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.scale import SymmetricalLogTransform
from matplotlib.ticker import FixedLocator, NullLocator

from prunehess.errors import DataError
from prunehess.layout import OutputLayout
from prunehess.plots import _common as c
from prunehess.plots import _outliers

__all__ = [
    "DensityMap",
    "density_map",
    "render_density_heatmap",
    "render_node_scatter",
    "render_density_curves",
    "load_spectra",
    "plot_density_eigen",
    "DENSITY_STYLES",
]

DENSITY_STYLES = ("heatmap", "scatter")
COLORBAR_LABEL = "Density (log scale)"

Spectrum = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class DensityMap:
    """Densities of several spectra on one symmetric-log eigenvalue grid.

    Attributes:
        eigenvalue_edges: ``(num_points + 1,)`` cell edges in eigenvalue units (uniform in symlog).
        eigenvalues: ``(num_points,)`` cell centres in eigenvalue units.
        density: ``(num_points, n_spectra)``; column j is spectrum j's density per unit of the symlog
            coordinate; each column integrates to 1 (``density[:, j].sum() * du == 1``).
        du: the cell height in the symlog coordinate.
        linthresh: the linear threshold of the symlog axis.
    """

    eigenvalue_edges: np.ndarray
    eigenvalues: np.ndarray
    density: np.ndarray
    du: float
    linthresh: float


def default_linthresh(nodes: np.ndarray, weights: np.ndarray | None = None) -> float:
    """A power of ten below the bulk: 10^floor(log10 q) with q the 25th percentile of the non-zero |λ|,
    never below 1e-6 of the largest |λ|."""
    magnitudes = np.abs(np.asarray(nodes, dtype=float).ravel())
    magnitudes = magnitudes[np.isfinite(magnitudes) & (magnitudes > 0)]
    if magnitudes.size == 0:
        return 1.0
    q = max(np.quantile(magnitudes, 0.25), magnitudes.max() * 1e-6)
    return float(10.0 ** np.floor(np.log10(q)))


def density_map(spectra: Sequence[Spectrum], *, num_points: int = 400, linthresh: float | None = None,
                bandwidth: float = 0.01) -> DensityMap:
    """Broaden each ``(nodes, weights)`` spectrum on a common grid uniform in symlog(λ).

    Args:
        spectra: one ``(nodes, weights)`` per column; weights are normalised to sum to 1.
        num_points: grid cells.
        linthresh: symlog linear threshold; default :func:`default_linthresh` of all nodes.
        bandwidth: Gaussian standard deviation as a fraction of the symlog span of the nodes.

    Example:
        >>> m = density_map([(np.array([-1.0, 0.0, 100.0]), np.array([0.2, 0.5, 0.3]))], linthresh=1.0)
        >>> round(float(m.density[:, 0].sum() * m.du), 6)
        1.0
    """
    if not spectra:
        raise ValueError("density map: no spectra")
    prepared = [c.spectrum(n, w, "density") for n, w in spectra]
    all_nodes = np.concatenate([n for n, _ in prepared])
    if linthresh is None:
        linthresh = default_linthresh(all_nodes)
    transform = SymmetricalLogTransform(10, linthresh, 1)
    u_nodes = [transform.transform_non_affine(n) for n, _ in prepared]
    u_all = np.concatenate(u_nodes)
    lo, hi = float(u_all.min()), float(u_all.max())
    # symlog coordinates scale with linthresh (λ = linthresh ↦ ~linthresh): so must the floor of the span
    span = max(hi - lo, 1e-3 * max(abs(lo), abs(hi), float(linthresh)))
    sigma = bandwidth * span
    lo, hi = lo - 4 * sigma - 0.02 * span, hi + 4 * sigma + 0.02 * span
    u_edges = np.linspace(lo, hi, num_points + 1)
    u_mid = 0.5 * (u_edges[:-1] + u_edges[1:])
    du = float(u_edges[1] - u_edges[0])
    density = np.empty((num_points, len(prepared)))
    for j, ((_, weights), u) in enumerate(zip(prepared, u_nodes)):
        kernel = np.exp(-0.5 * ((u_mid[:, None] - u[None, :]) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))
        column = kernel @ weights
        density[:, j] = column / (column.sum() * du)
    inverse = transform.inverted()
    return DensityMap(
        eigenvalue_edges=inverse.transform_non_affine(u_edges),
        eigenvalues=inverse.transform_non_affine(u_mid),
        density=density,
        du=du,
        linthresh=float(linthresh),
    )


def _epoch_edges(epochs: np.ndarray) -> np.ndarray:
    if epochs.size == 1:
        return np.array([epochs[0] - 5.0, epochs[0] + 5.0])
    mids = 0.5 * (epochs[:-1] + epochs[1:])
    return np.concatenate([[epochs[0] - (mids[0] - epochs[0])], mids, [epochs[-1] + (epochs[-1] - mids[-1])]])


def _symlog_axis(ax: Axes, linthresh: float, lo: float, hi: float, *, axis: str = "y", max_ticks: int = 9) -> None:
    """Symmetric-log eigenvalue axis with decade ticks thinned to stay legible in small panels."""
    target = ax.yaxis if axis == "y" else ax.xaxis
    (ax.set_yscale if axis == "y" else ax.set_xscale)("symlog", linthresh=linthresh, linscale=1, base=10)
    target.set_major_locator(FixedLocator(c.symlog_ticks(lo, hi, linthresh, max_ticks)))
    target.set_minor_locator(NullLocator())
    (ax.set_ylabel if axis == "y" else ax.set_xlabel)("Eigenvalue")


def render_density_heatmap(epochs: Sequence[float], spectra: Sequence[Spectrum], *, title: str = "",
                           ax: Axes | None = None, num_points: int = 400, linthresh: float | None = None,
                           dynamic_range: float = 1e4, vmax: float | None = None, colorbar: bool = True,
                           top_eigenvalues: Sequence[Sequence[float] | None] | None = None,
                           legend: bool = True) -> Figure:
    """Heat map of spectral density over epoch (x) × eigenvalue (y, symmetric-log), colour on a log scale, with
    the outliers the colours cannot show marked.

    Args:
        epochs: the epoch of each spectrum.
        spectra: ``(nodes, weights)`` per epoch (nodes ``(m,)`` or ``(m, runs)``).
        title: the title.
        ax: axes to draw on; a new figure when omitted.
        num_points, linthresh: see :func:`density_map`.
        dynamic_range: colours span ``[vmax / dynamic_range, vmax]``; lower densities take the darkest colour.
        vmax: top of the colour scale; default the largest density drawn (give one to share a scale).
        colorbar: add a colour bar beside ``ax``.
        top_eigenvalues: per epoch, the checkpoint's top eigenvalues (its ``top_eigenvalues`` file) or
            ``None``; their largest is drawn as λmax (default: the spectrum's largest Ritz node).
        legend: add a legend of the markers (under a figure of its own, else inside ``ax``).

    Outliers: the Ritz nodes beyond the coloured span of their column are white dashes, and each epoch's λmax
    an open diamond; the eigenvalue axis reaches every marker. The drawn
    :class:`~matplotlib.collections.QuadMesh` holds :attr:`DensityMap.density` as its array.
    """
    x = np.asarray(epochs, dtype=float).reshape(-1)
    if x.size != len(spectra):
        raise ValueError(f"density heat map: {x.size} epochs but {len(spectra)} spectra")
    if top_eigenvalues is not None and len(top_eigenvalues) != x.size:
        raise ValueError(f"density heat map: {x.size} epochs but {len(top_eigenvalues)} top eigenvalue entries")
    order = np.argsort(x, kind="stable")
    x = x[order]
    ordered = [spectra[i] for i in order]
    dmap = density_map(ordered, num_points=num_points, linthresh=linthresh)
    own_figure = ax is None
    figure, ax = c.new_axes(ax, figsize=(7.0, 5.1))
    vmax = float(dmap.density.max()) if vmax is None else float(vmax)
    norm = LogNorm(vmin=vmax / dynamic_range, vmax=vmax, clip=True)
    edges = dmap.eigenvalue_edges
    mesh = ax.pcolormesh(_epoch_edges(x), edges, dmap.density, norm=norm, cmap="magma", shading="flat")
    ax.set_facecolor(mesh.cmap(0.0))
    nodes = [c.spectrum(n, w, "density")[0] for n, w in ordered]
    beyond = [_outliers.beyond_coloured(n, edges, dmap.density[:, j], norm.vmin) for j, n in enumerate(nodes)]
    top, from_top = _outliers.lambda_max(nodes, None if top_eigenvalues is None else
                                         [top_eigenvalues[i] for i in order])
    _outliers.mark(ax, x, beyond, top, from_top)
    lo, hi = _outliers.covering_limits(edges[0], edges[-1], top, dmap.linthresh)
    _symlog_axis(ax, dmap.linthresh, lo, hi)
    ax.set_ylim(lo, hi)
    c.epoch_axis(ax, x)
    if colorbar:
        figure.colorbar(mesh, ax=ax, label=COLORBAR_LABEL)
    if legend:
        _outliers.legend(ax, below=own_figure)
    if title:
        ax.set_title(title)
    return figure


def render_node_scatter(epochs: Sequence[float], spectra: Sequence[np.ndarray | Spectrum], *, title: str = "",
                        ax: Axes | None = None, linthresh: float | None = None,
                        top_eigenvalues: Sequence[Sequence[float] | None] | None = None) -> Figure:
    """The seed's SLQ plot: every node of every epoch as a point (weights ignored), symmetric-log y axis.

    ``spectra`` holds per epoch either the nodes or a ``(nodes, weights)`` pair. ``top_eigenvalues`` (per epoch,
    the checkpoint's ``top_eigenvalues`` file or ``None``) adds each one's largest as an open diamond, λmax, and
    the axis reaches it.
    """
    x = np.asarray(epochs, dtype=float).reshape(-1)
    if x.size != len(spectra):
        raise ValueError(f"node scatter: {x.size} epochs but {len(spectra)} spectra")
    node_lists = [np.asarray(s[0] if isinstance(s, tuple) else s, dtype=float).reshape(-1) for s in spectra]
    xs = np.concatenate([np.full(n.size, e) for e, n in zip(x, node_lists)]) if node_lists else np.empty(0)
    ys = np.concatenate(node_lists) if node_lists else np.empty(0)
    own_figure = ax is None
    figure, ax = c.new_axes(ax)
    ax.scatter(xs, ys, s=10, alpha=0.7, color="tab:blue", edgecolors="none")
    if top_eigenvalues is not None and ys.size:
        top, from_top = _outliers.lambda_max(node_lists, top_eigenvalues)
        ax.plot(x[from_top], top[from_top], linestyle="none", marker="D", markersize=7, markerfacecolor="none",
                markeredgewidth=1.5, color="tab:red", label=_outliers.TOP_LABEL, zorder=3)
        _outliers.label_values(ax, x[from_top], top[from_top], "tab:red")
        ys = np.concatenate([ys, top[from_top]])
        _outliers.legend(ax, below=own_figure)
    if ys.size:
        _symlog_axis(ax, default_linthresh(ys) if linthresh is None else linthresh, ys.min(), ys.max())
    else:
        ax.set_ylabel("Eigenvalue")
    c.epoch_axis(ax, x)
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    return figure


def render_density_curves(spectra: Sequence[Spectrum], labels: Sequence[str], *, title: str = "",
                          ax: Axes | None = None, num_points: int = 400, linthresh: float | None = None,
                          values: Sequence[float] | None = None, value_range: tuple[float, float] | None = None,
                          legend: bool = True, legend_title: str | None = None) -> Figure:
    """Several spectral densities (see :func:`density_map`) as curves on one symlog eigenvalue axis, log density.

    Used by the report to show every ESD of an iteration at once. Curve j takes the viridis colour of
    ``values[j]`` (default its index) within ``value_range`` (default the range of ``values``); ``labels``
    name the curves in the legend.
    """
    if len(labels) != len(spectra):
        raise ValueError(f"density curves: {len(labels)} labels for {len(spectra)} spectra")
    dmap = density_map(spectra, num_points=num_points, linthresh=linthresh)
    figure, ax = c.new_axes(ax)
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    pos = np.asarray(values if values is not None else range(len(spectra)), dtype=float)
    lo, hi = value_range if value_range is not None else (float(pos.min()), float(pos.max()))
    pos = (pos - lo) / ((hi - lo) or 1.0)
    for j, label in enumerate(labels):
        ax.plot(dmap.eigenvalues, dmap.density[:, j] + 1e-7, color=cmap(0.9 * pos[j]), linewidth=1.0, label=label)
    _symlog_axis(ax, dmap.linthresh, dmap.eigenvalues[0], dmap.eigenvalues[-1], axis="x", max_ticks=5)
    ax.set_yscale("log")
    ax.set_ylabel("Density (Log Scale)")
    ax.set_ylim(bottom=max(dmap.density.max() * 1e-5, 1e-7))
    if legend:
        ax.legend(fontsize="x-small", title=legend_title, title_fontsize="x-small")
    if title:
        ax.set_title(title, fontsize="small")
    ax.grid(True, alpha=0.3)
    return figure


# ------------------------------------------------------------------------------------------------ loaders
def load_spectra(layout: OutputLayout, layer: int | None, keys: Sequence[tuple[int, int | None]], *,
                 weighted: bool = True) -> list[Spectrum]:
    """``(nodes, weights)`` of each checkpoint in ``keys`` (weights all ones when ``weighted`` is False)."""
    spectra = []
    for iteration, epoch in keys:
        nodes = layout.read_result("density_eigen", iteration, epoch, layer)
        weights = layout.read_result("density_weight", iteration, epoch, layer) if weighted else None
        source = str(layout.result_path("density_weight" if weighted else "density_eigen", iteration, epoch, layer))
        spectra.append(c.spectrum(nodes, weights, source))
    return spectra


# ------------------------------------------------------------------------------------- the seed's function
def plot_density_eigen(path, save_path, layers=0, models=None, epochs=None, model_name="", dataset_name="",
                       remain_params_file_path=None, *, style: Literal["heatmap", "scatter"] = "heatmap") -> list[Path]:
    """The SLQ spectrum against epoch, one figure per pruning iteration (the seed's function).

    ``style="heatmap"`` (default) draws the weighted density (:func:`render_density_heatmap`, reading
    ``density_weight`` beside ``density_eigen``) with its outliers marked (λmax from ``top_eigenvalues`` where
    the checkpoint has a file there); ``style="scatter"`` the seed's bare node scatter (and λmax). Files and
    other parameters as :func:`prunehess.plots.plot_top_eigenvalues`, with ``path`` a ``density_eigen`` folder.
    """
    if style not in DENSITY_STYLES:
        raise ValueError(f"unknown style {style!r}; expected one of: {', '.join(DENSITY_STYLES)}")
    metric = "density_eigen"
    layout = c.resolve_layout(path, metric)
    percents, source = c.percents_with_source(layout, remain_params_file_path)
    written = []
    for layer in c.layers_to_plot(layout, metric, layers):
        keys = layout.list_results(metric, layer)
        folder = layout.metric_dir(metric, layer)
        if style == "heatmap":
            weight_keys = layout.list_results("density_weight", layer)
            absent = [k for k in keys if k not in weight_keys]
            if absent:
                i, e = absent[0]
                raise DataError(f"{layout.result_path('density_weight', i, e, layer)}: not found (the heat map "
                                "needs the weights; style='scatter' draws the nodes alone)")
        grouped = c.group_by_iteration(keys)
        for iteration in c.select_iterations(c.snapshot_iterations(grouped), models, folder):
            chosen = c.select_epochs(grouped[iteration], epochs, folder, iteration)
            snapshots = [(iteration, e) for e in chosen]
            spectra = load_spectra(layout, layer, snapshots, weighted=style == "heatmap")
            tops = _outliers.load_top_eigenvalues(layout, layer, snapshots)
            percent = c.percent_of(percents, iteration, source)
            if style == "heatmap":
                title = c.plot_title("Spectral density", model_name, dataset_name, percent)
                figure = render_density_heatmap(chosen, spectra, title=title, top_eigenvalues=tops)
            else:
                title = c.plot_title(c.TITLES[metric], model_name, dataset_name, percent)
                figure = render_node_scatter(chosen, spectra, title=title, top_eigenvalues=tops)
            written.append(c.save_figure(figure, Path(save_path) / c.folder_name(layer) / f"model{iteration}.jpg"))
    return written
