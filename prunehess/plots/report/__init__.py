"""``prunehess report``: one self-contained HTML page of an extract output.

It opens with the story — one figure of the best checkpoints' top eigenvalue, trace (± 2 standard errors) and
test accuracy against the percent of weights remaining, and a few sentences of numbers — then the trends (top
eigenvalue and trace within and across pruning iterations), the spectra (a heat map with the outliers marked and
the ESD curves of each iteration) and the per-layer figures (layer-vs-full-spectrum distances, each layer's
trends and spectra); the run's configuration and the summary table come last, folded. Images are PNGs embedded
as base64.
"""
from prunehess.plots.report.build import render_report, write_report

__all__ = ["write_report", "render_report"]
