"""The HTML page of the report: its style, embedded PNG figures, notes, folded parts and figure grids."""
from __future__ import annotations

import base64
import html
import io
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from prunehess.layout import OutputLayout, iteration_tag
from prunehess.plots import _common as c

__all__: list[str] = []

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1200px;color:#222;
padding:0 1em;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
h3{margin-top:1.5em}.meta{color:#555;font-size:.9em;margin-top:0}
.story{font-size:1.05em;max-width:60em}.story p{margin:.5em 0}
pre{background:#f6f8fa;padding:1em;overflow:auto;font-size:.85em}
table{border-collapse:collapse;font-size:.8em}th,td{border:1px solid #ddd;padding:.25em .5em;text-align:right}
th{background:#f0f0f0;position:sticky;top:0}td.l,th.l{text-align:left}
.scroll{max-height:28em;overflow:auto;border:1px solid #ddd;display:inline-block;max-width:100%}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.85em;color:#555;max-width:60em}.note{color:#777;font-style:italic}
nav{margin:.8em 0}nav a{margin-right:1em}
details{margin:.5em 0}summary{cursor:pointer;font-weight:600}
"""


def png_base64(figure: Figure, dpi: int) -> str:
    """The figure as a base64 PNG with a 256-colour palette (a third of the size, no visible loss)."""
    from PIL import Image

    with Image.open(io.BytesIO(c.figure_bytes(figure, "png", dpi))) as image:
        buffer = io.BytesIO()
        image.convert("RGB").quantize(256).save(buffer, format="PNG", optimize=True)
    figure.clear()
    return base64.b64encode(buffer.getvalue()).decode("ascii")


class Page:
    """The parts of the page's body, in order."""

    def __init__(self, dpi: int):
        self.parts: list[str] = []
        self.dpi = dpi
        self.images = 0

    def add(self, text: str) -> None:
        self.parts.append(text)

    def heading(self, anchor: str, text: str) -> None:
        self.add(f'<h2 id="{anchor}">{html.escape(text)}</h2>')

    def note(self, text: str) -> None:
        self.add(f'<p class="note">{html.escape(text, quote=False)}</p>')

    def figure(self, figure: Figure, caption: str) -> None:
        self.images += 1
        alt = html.escape(caption, quote=True)
        self.add(f'<figure><img alt="{alt}" src="data:image/png;base64,{png_base64(figure, self.dpi)}">'
                 f"<figcaption>{html.escape(caption, quote=False)}</figcaption></figure>")

    def open_details(self, summary: str, *, open_: bool = False) -> None:
        self.add(f"<details{' open' if open_ else ''}><summary>{html.escape(summary, quote=False)}</summary>")

    def close_details(self) -> None:
        self.add("</details>")

    def document(self, title: str) -> str:
        body = "\n".join(self.parts)
        return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
                f"<style>{CSS}</style></head><body>\n{body}\n</body></html>\n")


def grid(n: int, ncols: int = 4, panel: tuple[float, float] = (3.6, 2.9), right: float = 0.25,
         bottom: float = 0.55) -> tuple[Figure, list]:
    """A figure of ``n`` panels with fixed margins (constrained layout is slow on many symlog panels)."""
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    width, height = panel[0] * ncols + right, panel[1] * nrows + bottom - 0.55
    figure = Figure(figsize=(width, height))
    axes = figure.subplots(nrows, ncols, squeeze=False).ravel()
    figure.subplots_adjust(left=0.85 / width, right=1 - (0.15 + right) / width, bottom=bottom / height,
                           top=1 - 0.35 / height, wspace=0.45, hspace=0.55)
    for ax in axes[n:]:
        ax.set_visible(False)
    return figure, list(axes[:n])


def iteration_name(iteration: int, percents: dict[int, float] | None) -> str:
    if percents and iteration in percents:
        return f"iteration {iteration} ({percents[iteration]:.1f}% remaining)"
    return f"iteration {iteration} (tag {iteration_tag(iteration)})"


def layer_names(layout: OutputLayout) -> dict[int, str]:
    return {k: n for k, n, _ in layout.read_layers()} if layout.layers_file.is_file() else {}


def cell(value: Any) -> str:
    """A summary value as table text."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return " ".join(f"{v:.6g}" for v in value)
    return html.escape(str(value))
