"""``write_report``: one self-contained HTML page that opens with the story (the best checkpoints' headline figure
and numbers), then the trends, the spectra and the per-layer figures, with the configuration and the summary
table folded at its end."""
from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from matplotlib.collections import PolyCollection, QuadMesh

import prunehess.plots as pp

ITERATIONS = (0, 1)
EPOCHS = (0, 10)


@pytest.fixture(scope="module")
def report(known, tmp_path_factory):
    tree = known.build_tree(tmp_path_factory.mktemp("report") / "out", layers=(0,), iterations=ITERATIONS,
                            epochs=EPOCHS)
    path = pp.write_report(tree.root, dpi=40)
    return tree, path, path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def figures(known, tmp_path_factory):
    """``(tree, [(caption-free figure data) …])``: every figure of the report, in page order, read before it is
    encoded (the page's PNG encoder is replaced)."""
    from prunehess.plots.report import page

    tree = known.build_tree(tmp_path_factory.mktemp("figures") / "out", layers=(0,), iterations=ITERATIONS,
                            epochs=EPOCHS)
    shots = []

    def capture(figure, dpi):
        shots.append([_axes_data(ax) for ax in figure.axes if ax.get_visible()])
        shots[-1].append({"suptitle": figure.get_suptitle(),
                          "legend": [t.get_text() for lg in figure.legends for t in lg.get_texts()]})
        figure.clear()
        return ""

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(page, "png_base64", capture)
        pp.render_report(tree.root)
    return tree, shots


def _axes_data(ax) -> dict:
    bands = [c for c in ax.collections if isinstance(c, PolyCollection) and not isinstance(c, QuadMesh)]
    edges: dict[float, tuple[float, float]] = {}
    for band in bands:
        for path in band.get_paths():
            for x, y in path.vertices:
                lo, hi = edges.get(float(x), (np.inf, -np.inf))
                edges[float(x)] = (min(lo, float(y)), max(hi, float(y)))
    return {"title": ax.get_title(), "ylabel": ax.get_ylabel(), "ylim": ax.get_ylim(), "bands": len(bands),
            "edges": edges, "lines": {l.get_label(): (list(l.get_xdata()), list(l.get_ydata())) for l in ax.lines}}


def test_written_to_the_default_place(report):
    tree, path, html = report
    assert path == tree.root / "report.html"
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")


def test_self_contained(report):
    _, _, html = report
    assert not re.search(r"""(src|href)=["'](?!data:|#)""", html)  # no external files or links
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    # headline + whole model (2 trends within + 2 across, heat map + ESD curves) + layer 0 (the same) + 2 layer match
    assert len(images) == 1 + 2 * (4 + 2) + 2
    from PIL import Image

    with Image.open(io.BytesIO(base64.b64decode(images[0]))) as image:
        assert image.format == "PNG"


def test_the_story_comes_first_and_the_reference_last_folded(report):
    _, _, html = report
    anchors = ["headline", "trends", "spectra", "layers", "config", "summary"]
    positions = [html.index(f'<h2 id="{anchor}"') for anchor in anchors]
    assert positions == sorted(positions)
    assert html.index("<img") > positions[0]  # the first figure is the headline's
    assert html.index("<img") < positions[1]
    config, table = html[positions[4]:positions[5]], html[positions[5]:]
    assert re.search(r"<details><summary>config\.yaml \(\d+ lines\)</summary>\s*<pre>", config)
    assert "model: fc1" in config and "slq_runs: 1" in config
    assert re.search(r"<details><summary>summary\.csv: 12 rows, one per checkpoint and block</summary>\s*<div", table)
    assert table.count("<tr>") == 1 + 2 * 3 * 2  # header + (whole, layer 0) × (epochs 0, 10, best) × 2 iterations
    assert "model: fc1" not in html[:positions[4]]  # no configuration dump before the figures


def test_headline_numbers_are_the_files(report):
    tree, _, html = report
    layout = tree.layout
    top = [float(layout.read_result("top_eigenvalues", i, None).max()) for i in ITERATIONS]
    trace = [float(layout.read_result("trace", i, None)[0]) for i in ITERATIONS]
    rows = {(r["iteration"], r["epoch"], r["layer"]): r for r in layout.read_summary()}
    se = [rows[(i, None, None)]["trace_stderr"] for i in ITERATIONS]
    accuracy = [rows[(i, None, None)]["test_accuracy"] for i in ITERATIONS]
    story = re.search(r'<div class="story">(.*?)</div>', html).group(1)
    assert story.startswith("<p>From 100 % to 80 % of weights remaining (2 pruning iterations), the best checkpoint")
    assert (f"top Hessian eigenvalue went from {top[0]:.3g} to {top[1]:.3g} ({top[1] / top[0]:.2g}×)") in story
    assert (f"trace went from {trace[0]:.3g} ± {2 * se[0]:.3g} to {trace[1]:.3g} ± {2 * se[1]:.3g} "
            f"({trace[1] / trace[0]:.2g}×)") in story
    assert f"test accuracy went from {100 * accuracy[0]:.1f} % to {100 * accuracy[1]:.1f} %" in story


def test_headline_figure_draws_the_files(figures, known):
    tree, shots = figures
    top, trace, accuracy, extra = shots[0]
    percents = [known.PERCENTS[i] for i in ITERATIONS]
    assert [top["ylabel"], trace["ylabel"], accuracy["ylabel"]] == ["Top Hessian eigenvalue", "Hessian trace",
                                                                    "Test accuracy"]
    assert extra["suptitle"] == "Best checkpoints for fc1 on digits"
    (x, y), = top["lines"].values()
    assert x == percents and y == [float(tree.layout.read_result("top_eigenvalues", i, None).max()) for i in ITERATIONS]
    (x, y), = trace["lines"].values()
    assert y == [known.trace_value(i, None) for i in ITERATIONS]
    for i, p in zip(ITERATIONS, percents):
        value, se = known.trace_value(i, None), known.stderr_value(i, None)
        np.testing.assert_allclose(trace["edges"][p], (value - 2 * se, value + 2 * se), rtol=1e-12)
    (x, y), = accuracy["lines"].values()
    assert y == [known.BEST_ACCURACY[i] for i in ITERATIONS]


def test_trend_figures_band_the_trace_alone(figures, known):
    _, shots = figures
    by_title = {axes[0]["title"]: axes[0] for axes in shots[1:] if axes[0]["title"]}
    for where, layer in (("whole model", None), ("layer 0 (classifier.0.weight)", 0)):
        for kind in ("every iteration", "best checkpoints"):
            assert by_title[f"Top eigenvalues plot: {where}, {kind}"]["bands"] == 0
        within = by_title[f"Trace plot: {where}, every iteration"]
        assert within["bands"] == len(ITERATIONS)
        best = by_title[f"Trace plot: {where}, best checkpoints"]
        for i in ITERATIONS:
            value, se = known.trace_value(i, None, layer), known.stderr_value(i, None, layer)
            np.testing.assert_allclose(best["edges"][known.PERCENTS[i]], (value - 2 * se, value + 2 * se),
                                       rtol=1e-12)


def test_trend_figures_name_the_quantity_on_the_value_axis(figures):
    """Every trend's value axis names what is drawn (a legend entry, e.g. a remaining percent, once leaked there)."""
    _, shots = figures
    labels = {axes[0]["title"]: axes[0]["ylabel"] for axes in shots[1:] if "plot: " in axes[0]["title"]}
    assert labels, "no trend figure found"
    for title, ylabel in labels.items():
        expected = "Top Hessian eigenvalue" if title.startswith("Top eigenvalues") else "Hessian trace"
        assert ylabel == expected, f"{title}: y label {ylabel!r}"


def test_heat_maps_mark_lambda_max(figures, known):
    _, shots = figures
    heat = next(axes for axes in shots if "λmax (top_eigenvalues)" in axes[-1]["legend"])
    for i, ax in zip(ITERATIONS, heat):
        x, y = ax["lines"]["λmax (top_eigenvalues)"]
        assert x == list(EPOCHS) and y == [known.top_value(i, e) for e in EPOCHS]
        assert ax["ylim"][1] > max(y)


def test_without_summary_or_config(known, tmp_path):
    tree = known.build_tree(tmp_path / "o", layers=(), iterations=(0,), epochs=(0,), summary=False)
    tree.layout.config_file.unlink()
    dest = pp.write_report(tree.root, tmp_path / "r.html", model_name="m", dataset_name="d", dpi=30)
    html = dest.read_text()
    assert "No config.yaml in this output." in html and "No summary.csv in this output." in html
    assert "prunehess report for m on d" in html
    assert "the best checkpoint's top Hessian eigenvalue was " in html  # one iteration, no accuracy
    assert not re.search(r"test accuracy (went|was)", html)


def test_without_standard_errors(known, tmp_path):
    tree = known.build_tree(tmp_path / "o", layers=(), iterations=(0, 1), epochs=(0,), stderr=False)
    html = pp.render_report(tree.root, dpi=30)
    story = re.search(r'<div class="story">(.*?)</div>', html).group(1)
    assert "±" not in story and "trace went from" in story
