"""Putting the report together: the story first (headline figure and numbers), then the trends, the spectra and
the per-layer figures, and last, folded, the run's configuration and the full summary table."""
from __future__ import annotations

import datetime as _dt
import html
from pathlib import Path

from prunehess._version import __version__
from prunehess.errors import DataError
from prunehess.layout import OutputLayout
from prunehess.plots import _common as c
from prunehess.plots import _summary
from prunehess.plots.landscape import geometry_section, has_geometry
from prunehess.plots.report.page import Page, layer_names
from prunehess.plots.report.spectrum_figures import density_figures, layer_match_section
from prunehess.plots.report.story import headline_section
from prunehess.plots.report.tables import config_section, summary_section
from prunehess.plots.report.trend_figures import trend_figures
from prunehess.storage import atomic_write_text

__all__ = ["write_report", "render_report"]

SECTIONS = (("headline", "What pruning did"), ("trends", "Trends"), ("spectra", "Spectra"),
            ("layers", "Per layer"), ("geometry", "Landscape geometry"), ("config", "Configuration"),
            ("summary", "Summary table"))


class _Run:
    """What every section reads: the layout, its layers and their names, percents, standard errors."""

    def __init__(self, layout: OutputLayout):
        self.layout = layout
        self.layers = layout.layers_present()
        self.names = layer_names(layout)
        try:
            self.percents: dict[int, float] | None = c.remaining_percents(layout)
        except DataError:
            self.percents = None
        self.stderrs = _summary.trace_stderrs(layout)

    def where(self, layer: int | None) -> str:
        return c.layer_label(layer, self.names)


def _intro(page: Page, run: _Run, title: str) -> None:
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    page.add(f"<h1>{html.escape(title)}</h1>")
    page.add(f'<p class="meta">Output folder <code>{html.escape(str(run.layout.root.resolve()))}</code>; made by '
             f"prunehess {html.escape(__version__)} on {stamp}.</p>")
    links = [(anchor, text) for anchor, text in SECTIONS if (anchor != "layers" or run.layers)
             and (anchor != "geometry" or has_geometry(run.layout))]
    page.add("<nav>" + "".join(f'<a href="#{anchor}">{text}</a>' for anchor, text in links) + "</nav>")


def _block(page: Page, run: _Run, layer: int | None) -> None:
    """The trends and the spectra of the whole model or of one layer."""
    layout, where = run.layout, run.where(layer)
    for metric in ("top_eigenvalues", "trace"):
        if layout.metric_dir(metric, layer).is_dir():
            trend_figures(page, layout, metric, layer, run.percents, where, run.stderrs)
    if layer is not None and layout.metric_dir("density_eigen", layer).is_dir():
        _spectra(page, run, layer)


def _spectra(page: Page, run: _Run, layer: int | None) -> None:
    where = run.where(layer)
    if not run.layout.metric_dir("density_weight", layer).is_dir():
        page.note(f"Spectral densities ({where}): no density_weight folder.")
    else:
        density_figures(page, run.layout, layer, run.percents, where)


def _per_layer(page: Page, run: _Run) -> None:
    page.heading("layers", "Per layer")
    page.add("<p>How close each layer's spectrum is to the whole network's, then each layer's own trends and "
             "spectra (folded).</p>")
    layer_match_section(page, run.layout, run.layers, run.percents)
    for layer in run.layers:
        page.open_details(run.where(layer))
        _block(page, run, layer)
        page.close_details()


def render_report(output: str | Path, *, model_name: str = "", dataset_name: str = "", dpi: int = 80) -> str:
    """The HTML text of the report of the extract output at ``output`` (see :func:`write_report`)."""
    layout = OutputLayout(output)
    if not layout.root.is_dir():
        raise DataError(f"{layout.root}: no such folder")
    run = _Run(layout)
    if not layout.metrics_present() and not run.layers:
        raise DataError(f"{layout.root}: no results (expected top_eigenvalues/, trace/, density_eigen/ … folders)")
    from_config = c.run_names(layout)
    title = c.plot_title("prunehess report", model_name or from_config[0], dataset_name or from_config[1])
    page = Page(dpi)
    _intro(page, run, title)
    headline_section(page, layout, c.plot_title("Best checkpoints", model_name or from_config[0],
                                                dataset_name or from_config[1]))
    page.heading("trends", "Trends")
    _block(page, run, None)
    page.heading("spectra", "Spectra")
    if layout.metric_dir("density_eigen").is_dir():
        _spectra(page, run, None)
    else:
        page.note("No density_eigen folder in this output.")
    if run.layers:
        _per_layer(page, run)
    geometry_section(page, layout, model_name or from_config[0], dataset_name or from_config[1])  # landscape geometry
    config_section(page, layout)
    summary_section(page, layout)
    return page.document(title)


def write_report(output: str | Path, dest: str | Path | None = None, *, model_name: str = "",
                 dataset_name: str = "", dpi: int = 80) -> Path:
    """Write the self-contained HTML report of an extract output; returns its path.

    The page opens with the story (the best checkpoints' top eigenvalue, trace and test accuracy against the
    percent of weights remaining, in one figure and a few sentences of numbers), then the trends, the spectra
    and the per-layer figures; the run's configuration and the full summary table come last, folded. Images
    are PNGs embedded as base64, so the single file can be attached to a lab notebook or mailed as it is.

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
