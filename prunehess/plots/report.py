"""``prunehess report``: one self-contained HTML page of an extract output.

The page holds the run's configuration, the summary table, every trend (top eigenvalue and trace within and
across pruning iterations, whole model and each layer), every spectral density (a heat map and the ESD curves
of each iteration) and, with per-layer results, the layer-vs-full-spectrum distances. Images are PNGs
embedded as base64, so the file can be attached to a lab notebook or mailed as it is.
"""
from __future__ import annotations

import base64
import datetime as _dt
import html
import io
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import ListedColormap, Normalize
from matplotlib.figure import Figure

from prunehess._version import __version__
from prunehess.errors import DataError
from prunehess.layout import OutputLayout, iteration_tag
from prunehess.plots import _common as c
from prunehess.plots.density import (
    COLORBAR_LABEL,
    default_linthresh,
    density_map,
    load_spectra,
    render_density_curves,
    render_density_heatmap,
)
from prunehess.plots.layer_match import layer_match_distances, render_layer_match
from prunehess.plots.trends import render_best_trend
from prunehess.storage import atomic_write_text

__all__ = ["write_report", "render_report"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1200px;color:#222;
padding:0 1em;line-height:1.45}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}h3{margin-top:1.5em}
pre{background:#f6f8fa;padding:1em;overflow:auto;font-size:.85em}
table{border-collapse:collapse;font-size:.8em}th,td{border:1px solid #ddd;padding:.25em .5em;text-align:right}
th{background:#f0f0f0;position:sticky;top:0}td.l,th.l{text-align:left}
.scroll{max-height:28em;overflow:auto;border:1px solid #ddd;display:inline-block;max-width:100%}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.85em;color:#555}.note{color:#777;font-style:italic}nav a{margin-right:1em}
details{margin:.5em 0}summary{cursor:pointer;font-weight:600}
"""


def _png(figure: Figure, dpi: int) -> str:
    """The figure as a base64 PNG with a 256-colour palette (a third of the size, no visible loss)."""
    from PIL import Image

    with Image.open(io.BytesIO(c.figure_bytes(figure, "png", dpi))) as image:
        buffer = io.BytesIO()
        image.convert("RGB").quantize(256).save(buffer, format="PNG", optimize=True)
    figure.clear()
    return base64.b64encode(buffer.getvalue()).decode("ascii")


class _Page:
    def __init__(self, dpi: int):
        self.parts: list[str] = []
        self.dpi = dpi
        self.images = 0

    def add(self, text: str) -> None:
        self.parts.append(text)

    def note(self, text: str) -> None:
        self.add(f'<p class="note">{html.escape(text)}</p>')

    def figure(self, figure: Figure, caption: str) -> None:
        self.images += 1
        alt = html.escape(caption, quote=True)
        self.add(f'<figure><img alt="{alt}" src="data:image/png;base64,{_png(figure, self.dpi)}">'
                 f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _grid(n: int, ncols: int = 4, panel: tuple[float, float] = (3.6, 2.9), right: float = 0.25) -> tuple[Figure, list]:
    """A figure of ``n`` panels with fixed margins (constrained layout is slow on many symlog panels)."""
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    width, height = panel[0] * ncols + right, panel[1] * nrows
    figure = Figure(figsize=(width, height))
    axes = figure.subplots(nrows, ncols, squeeze=False).ravel()
    figure.subplots_adjust(left=0.85 / width, right=1 - (0.15 + right) / width, bottom=0.55 / height,
                           top=1 - 0.35 / height, wspace=0.45, hspace=0.55)
    for ax in axes[n:]:
        ax.set_visible(False)
    return figure, list(axes[:n])


def _iteration_name(iteration: int, percents: dict[int, float] | None) -> str:
    if percents and iteration in percents:
        return f"iteration {iteration} ({percents[iteration]:.1f}% remaining)"
    return f"iteration {iteration} (tag {iteration_tag(iteration)})"


# ----------------------------------------------------------------------------------------------- sections
def _config_section(page: _Page, layout: OutputLayout) -> dict[str, Any]:
    page.add('<h2 id="config">Run configuration</h2>')
    if not layout.config_file.is_file():
        page.note(f"No {layout.CONFIG_FILE} in this output.")
        return {}
    config = layout.read_config()
    page.add(f"<pre>{html.escape(layout.config_file.read_text(encoding='utf-8'))}</pre>")
    return config


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return " ".join(f"{v:.6g}" for v in value)
    return html.escape(str(value))


def _summary_section(page: _Page, layout: OutputLayout) -> None:
    page.add('<h2 id="summary">Summary</h2>')
    if not layout.summary_file.is_file():
        page.note(f"No {layout.SUMMARY_FILE} in this output.")
        return
    rows = layout.read_summary()
    if not rows:
        page.note(f"{layout.SUMMARY_FILE} has no rows.")
        return
    columns = list(rows[0].keys())
    head = "".join(f"<th>{html.escape(col)}</th>" for col in columns)
    body = []
    for row in rows:
        cells = []
        for col in columns:
            value = row.get(col)
            if col == "epoch":
                value = "best" if value is None else value
            elif col == "layer" and value is None:
                value = "whole"
            cells.append(f"<td>{_cell(value)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    page.add(f'<p>{len(rows)} rows.</p><div class="scroll"><table><thead><tr>{head}</tr></thead>'
             f"<tbody>{''.join(body)}</tbody></table></div>")


def _scalar_series(layout: OutputLayout, metric: str, layer: int | None) -> dict[int, tuple[list[int], np.ndarray]]:
    results = layout.read_metric(metric, layer)
    series: dict[int, tuple[list[int], list[float]]] = {}
    for (iteration, epoch), values in results.items():
        if iteration < 0 or epoch is None:
            continue
        path = layout.result_path(metric, iteration, epoch, layer)
        value = c.single_value(values, path) if metric == "trace" else float(values.reshape(-1)[0])
        series.setdefault(iteration, ([], []))
        series[iteration][0].append(epoch)
        series[iteration][1].append(value)
    return {i: (e, np.asarray(v)) for i, (e, v) in sorted(series.items())}


def _trend_figures(page: _Page, layout: OutputLayout, metric: str, layer: int | None,
                   percents: dict[int, float] | None, where: str) -> None:
    series = _scalar_series(layout, metric, layer)
    if series:
        figure = Figure(figsize=(7.0, 4.4), layout="constrained")
        ax = figure.add_subplot()
        cmap = colormaps["viridis"]
        n = len(series)
        for idx, (iteration, (epochs, values)) in enumerate(series.items()):
            label = f"{percents[iteration]:.1f}%" if percents and iteration in percents else iteration_tag(iteration)
            ax.plot(epochs, values, marker="o", markersize=3, linewidth=1.2, color=cmap(0.9 * idx / max(n - 1, 1)),
                    label=label)
        c.auto_value_scale(ax, np.concatenate([v for _, v in series.values()]))
        c.epoch_axis(ax, [e for epochs, _ in series.values() for e in epochs])
        ax.set_ylabel(c.LABELS[metric])
        ax.set_title(f"{c.TITLES[metric]}: {where}, every iteration", fontsize="medium")
        ax.legend(fontsize="x-small", ncol=2 if n > 8 else 1, title="params remaining", title_fontsize="x-small")
        ax.grid(True, alpha=0.3)
        page.figure(figure, f"{c.LABELS[metric]} against epoch, one line per pruning iteration ({where}).")
    keys = layout.list_results(metric, layer)
    iterations = sorted({i for i, _ in keys if i >= 0})
    if not iterations or not percents or any(i not in percents for i in iterations):
        page.note(f"{c.LABELS[metric]} across iterations ({where}): skipped, no remaining percents.")
        return
    try:
        best = c.best_epochs(layout, metric, layer, iterations, keys)
    except DataError as err:
        page.note(f"{c.LABELS[metric]} across iterations ({where}): skipped, {err}")
        return
    values = []
    for iteration in iterations:
        raw = layout.read_result(metric, iteration, best[iteration], layer)
        path = layout.result_path(metric, iteration, best[iteration], layer)
        values.append(c.single_value(raw, path) if metric == "trace" else float(raw.reshape(-1)[0]))
    figure = render_best_trend([percents[i] for i in iterations], values, ylabel=c.LABELS[metric],
                               title=f"{c.TITLES[metric]}: {where}, best checkpoints")
    figure.axes[0].title.set_fontsize("medium")
    page.figure(figure, f"{c.LABELS[metric]} of each iteration's best checkpoint ({where}).")


def _density_figures(page: _Page, layout: OutputLayout, layer: int | None, percents: dict[int, float] | None,
                     where: str) -> None:
    nodes = layout.list_results("density_eigen", layer)
    weights = layout.list_results("density_weight", layer)
    grouped = c.group_by_iteration(k for k in nodes if k in weights and k[0] >= 0 and k[1] is not None)
    if not grouped:
        page.note(f"Spectral densities ({where}): no snapshot has both density_eigen and density_weight.")
        return
    spectra = {i: load_spectra(layout, layer, [(i, e) for e in sorted(eps)]) for i, eps in sorted(grouped.items())}
    all_nodes = np.concatenate([n for group in spectra.values() for n, _ in group])
    linthresh = default_linthresh(all_nodes)
    figure, axes = _grid(len(spectra), right=1.0)
    vmax = max(float(density_map(group, num_points=200, linthresh=linthresh).density.max())
               for group in spectra.values())
    for ax, (iteration, group) in zip(axes, spectra.items()):
        epochs = sorted(grouped[iteration])
        render_density_heatmap(epochs, group, ax=ax, linthresh=linthresh, num_points=200, vmax=vmax, colorbar=False)
        ax.set_title(_iteration_name(iteration, percents), fontsize="small")
    cax = figure.add_axes((1 - 0.85 / figure.get_figwidth(), 0.15, 0.14 / figure.get_figwidth(), 0.7))
    figure.colorbar(axes[0].collections[0], cax=cax, label=COLORBAR_LABEL)
    page.figure(figure, f"Spectral density over epoch × eigenvalue (symmetric-log axis; density per unit of "
                        f"that axis, colours on a log scale), one panel per pruning iteration ({where}).")
    figure, axes = _grid(len(spectra), right=1.0)
    all_epochs = [e for eps in grouped.values() for e in eps]
    epoch_range = (float(min(all_epochs)), float(max(all_epochs)))
    for ax, (iteration, group) in zip(axes, spectra.items()):
        epochs = sorted(grouped[iteration])
        render_density_curves(group, [f"epoch {e}" for e in epochs], ax=ax, linthresh=linthresh, values=epochs,
                              value_range=epoch_range, legend=False, num_points=250)
        ax.set_title(_iteration_name(iteration, percents), fontsize="small")
    cax = figure.add_axes((1 - 0.85 / figure.get_figwidth(), 0.15, 0.14 / figure.get_figwidth(), 0.7))
    colours = ListedColormap(colormaps["viridis"](np.linspace(0.0, 0.9, 256)))  # the curves' colours
    figure.colorbar(ScalarMappable(Normalize(*epoch_range), colours), cax=cax, label="Epoch")
    page.figure(figure, f"Every ESD, one curve per epoch snapshot (colour: epoch), one panel per pruning "
                        f"iteration ({where}).")


def _layer_match_section(page: _Page, layout: OutputLayout, layers: Sequence[int],
                         percents: dict[int, float] | None) -> None:
    page.add('<h2 id="layer-match">Layer-wise against full spectrum</h2>')
    usable = [k for k in layers if layout.metric_dir("density_eigen", k).is_dir()
              and layout.metric_dir("density_weight", k).is_dir()]
    if not usable or not layout.metric_dir("density_weight").is_dir():
        page.note("No per-layer spectral densities in this output.")
        return
    names = {k: n for k, n, _ in layout.read_layers()} if layout.layers_file.is_file() else {}
    labels = [c.layer_label(k, names) for k in usable]
    keys = [k for k in layout.list_results("density_eigen") if k[0] >= 0 and k[1] is not None]
    grouped = c.group_by_iteration(keys)
    figure, axes = _grid(len(grouped), ncols=3, panel=(4.4, 3.2))
    for ax, (iteration, epochs) in zip(axes, sorted(grouped.items())):
        epochs = sorted(epochs)
        distances = layer_match_distances(layout, usable, [(iteration, e) for e in epochs])
        render_layer_match(epochs, distances, labels, ax=ax)
        ax.set_ylabel("W1 to the full spectrum", fontsize="small")
        ax.set_title(_iteration_name(iteration, percents), fontsize="small")
        if ax is not axes[0]:
            ax.get_legend().remove()
    page.figure(figure, "Wasserstein-1 distance of each layer's spectral density to the whole model's, "
                        "against epoch, one panel per pruning iteration.")
    iterations = sorted(grouped)
    if not percents or any(i not in percents for i in iterations):
        page.note("Layer match across iterations: skipped, no remaining percents.")
        return
    all_keys = layout.list_results("density_eigen")
    try:
        best = c.best_epochs(layout, "density_eigen", None, iterations, all_keys)
    except DataError as err:
        page.note(f"Layer match across iterations: skipped, {err}")
        return
    distances = layer_match_distances(layout, usable, [(i, best[i]) for i in iterations])
    figure = render_layer_match([percents[i] for i in iterations], distances, labels, percent_axis=True,
                                title="Best checkpoint of each iteration")
    page.figure(figure, "Wasserstein-1 distance of each layer's spectral density to the whole model's, best "
                        "checkpoint of each pruning iteration.")


# ------------------------------------------------------------------------------------------------- entry
def render_report(output: str | Path, *, model_name: str = "", dataset_name: str = "", dpi: int = 80) -> str:
    """The HTML text of the report of the extract output at ``output`` (see :func:`write_report`)."""
    layout = OutputLayout(output)
    if not layout.root.is_dir():
        raise DataError(f"{layout.root}: no such folder")
    layers = layout.layers_present()
    if not layout.metrics_present() and not layers:
        raise DataError(f"{layout.root}: no results (expected top_eigenvalues/, trace/, density_eigen/ … folders)")
    page = _Page(dpi)
    config_page = _Page(dpi)
    config = _config_section(config_page, layout)
    from_config = c.run_names(layout, config)
    model_name = model_name or from_config[0]
    dataset_name = dataset_name or from_config[1]
    try:
        percents = c.remaining_percents(layout)
    except DataError:
        percents = None
    title = c.plot_title("prunehess report", model_name, dataset_name)
    page.add(f"<h1>{html.escape(title)}</h1>")

    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    page.add(f"<p>Output folder <code>{html.escape(str(layout.root.resolve()))}</code>; made by prunehess "
             f"{html.escape(__version__)} on {stamp}.")
    if percents:
        listing = ", ".join(f"{iteration_tag(i)}: {p:.1f}%" for i, p in sorted(percents.items()))
        page.add(f" Parameters remaining per iteration tag: {html.escape(listing)}.")
    page.add("</p>")
    page.add('<nav><a href="#config">Configuration</a><a href="#summary">Summary</a><a href="#trends">Trends</a>'
             '<a href="#densities">Spectral densities</a>'
             + ('<a href="#layer-match">Layer match</a>' if layers else "") + "</nav>")
    page.parts.extend(config_page.parts)
    _summary_section(page, layout)

    page.add('<h2 id="trends">Trends</h2>')
    for layer in [None, *layers]:
        metrics = [m for m in ("top_eigenvalues", "trace") if layout.metric_dir(m, layer).is_dir()]
        if not metrics:
            continue
        where = c.layer_label(layer, _names(layout))
        page.add(f"<details{' open' if layer is None else ''}><summary>{html.escape(where)}</summary>")
        for metric in metrics:
            _trend_figures(page, layout, metric, layer, percents, where)
        page.add("</details>")

    page.add('<h2 id="densities">Spectral densities</h2>')
    for layer in [None, *layers]:
        if not layout.metric_dir("density_eigen", layer).is_dir():
            continue
        where = c.layer_label(layer, _names(layout))
        page.add(f"<details{' open' if layer is None else ''}><summary>{html.escape(where)}</summary>")
        if not layout.metric_dir("density_weight", layer).is_dir():
            page.note(f"Spectral densities ({where}): no density_weight folder.")
        else:
            _density_figures(page, layout, layer, percents, where)
        page.add("</details>")
    if layers:
        _layer_match_section(page, layout, layers, percents)

    body = "\n".join(page.parts)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_CSS}</style></head><body>\n{body}\n</body></html>\n")


def _names(layout: OutputLayout) -> dict[int, str]:
    return {k: n for k, n, _ in layout.read_layers()} if layout.layers_file.is_file() else {}


def write_report(output: str | Path, dest: str | Path | None = None, *, model_name: str = "",
                 dataset_name: str = "", dpi: int = 80) -> Path:
    """Write the self-contained HTML report of an extract output; returns its path.

    Args:
        output: the extract output folder.
        dest: the HTML file; default ``<output>/report.html``.
        model_name, dataset_name: words of the titles; default the ``model`` and ``dataset`` of the run's
            ``config.yaml``.
        dpi: resolution of the embedded PNGs.
    """
    text = render_report(output, model_name=model_name, dataset_name=dataset_name, dpi=dpi)
    dest = OutputLayout(output).report_file if dest is None else Path(dest)
    atomic_write_text(dest, text)
    return dest
