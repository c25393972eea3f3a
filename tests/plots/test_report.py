"""``write_report``: one self-contained HTML page with the config, the summary, every trend and every ESD."""
from __future__ import annotations

import base64
import io
import re

import pytest


@pytest.fixture(scope="module")
def report(known, tmp_path_factory):
    tree = known.build_tree(tmp_path_factory.mktemp("report") / "out", layers=(0,), iterations=(0, 1),
                            epochs=(0, 10))
    import prunehess.plots as pp

    path = pp.write_report(tree.root, dpi=40)
    return tree, path, path.read_text(encoding="utf-8")


def test_written_to_the_default_place(report):
    tree, path, html = report
    assert path == tree.root / "report.html"
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")


def test_self_contained(report):
    _, _, html = report
    assert not re.search(r"""(src|href)=["'](?!data:|#)""", html)  # no external files or links
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    # whole model + 1 layer: (2 trends within + 2 across) + (heat map + ESD curves) each, + 2 layer match
    assert len(images) == 2 * (4 + 2) + 2
    from PIL import Image

    with Image.open(io.BytesIO(base64.b64decode(images[0]))) as image:
        assert image.format == "PNG"


def test_holds_config_summary_and_titles(report, known):
    _, _, html = report
    assert "prunehess report for fc1 on digits" in html  # names from config.yaml
    assert "model: fc1" in html and "slq_runs: 1" in html
    assert f"{known.trace_value(1, 10):.6g}" in html
    assert html.count("<tr>") == 1 + 2 * 3 * 2  # header + (whole, layer 0) × (epochs 0, 10, best) × 2 iterations
    assert "layer 0 (classifier.0.weight)" in html
    assert "001: 100.0%, 002: 80.0%" in html


def test_without_summary_or_config(known, tmp_path):
    import prunehess.plots as pp

    tree = known.build_tree(tmp_path / "o", layers=(), iterations=(0,), epochs=(0,), summary=False)
    tree.layout.config_file.unlink()
    dest = pp.write_report(tree.root, tmp_path / "r.html", model_name="m", dataset_name="d", dpi=30)
    html = dest.read_text()
    assert "No config.yaml in this output." in html and "No summary.csv in this output." in html
    assert "prunehess report for m on d" in html
