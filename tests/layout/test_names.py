"""Names in the tree: tags, metric names, result file and metric folder names, every path of the tree."""
from __future__ import annotations

import doctest
import importlib
import re
import time

import pytest

from prunehess.errors import DataError
from prunehess.layout import METRICS, OutputLayout, epoch_tag, iteration_tag


@pytest.mark.parametrize("iteration, tag", [(-1, "000"), (0, "001"), (9, "010"), (98, "099"), (99, "100"),
                                            (998, "999"), (999, "1000")])
def test_iteration_tag(iteration, tag):
    assert iteration_tag(iteration) == tag


@pytest.mark.parametrize("epoch, tag", [(None, "best"), (0, "00"), (5, "05"), (80, "80"), (100, "100"),
                                        (1234, "1234")])
def test_epoch_tag(epoch, tag):
    assert epoch_tag(epoch) == tag


@pytest.mark.parametrize("bad", [-2, 1.0, "1", True])
def test_iteration_tag_rejects(bad):
    with pytest.raises((ValueError, TypeError)):
        iteration_tag(bad)


def test_epoch_tag_rejects_negative():
    with pytest.raises(ValueError, match="epoch"):
        epoch_tag(-1)


def test_paths(out):
    root = out.root
    assert out.metric_dir("trace") == root / "trace"
    assert out.metric_dir("trace", 3) == root / "trace_layer3"
    assert out.result_path("top_eigenvalues", 0, 10) == root / "top_eigenvalues" / "top_eigenvalues001_10.txt"
    assert out.result_path("esd_plot", -1, None, 2) == root / "esd_plot_layer2" / "esd_plot000_best.pdf"
    assert out.result_path("density_weight", 120, 150).name == "density_weight121_150.txt"
    assert out.remain_params_file == root / "remain_params.txt"
    assert out.summary_file == root / "summary.csv"
    assert out.layers_file == root / "layers.txt"
    assert out.config_file == root / "config.yaml"
    assert out.report_file == root / "report.html"
    assert out.figures_dir == root / "figures"


def test_state_paths(out):
    state = out.root / ".prunehess"
    assert out.state_dir == state
    assert out.records_dir == state / "records"
    assert out.record_path("001_10") == state / "records" / "001_10.json"
    assert out.strategy_file == state / "strategy.json"
    assert out.lock_file == state / "lock"
    assert out.superseded_dir == state / "superseded"
    for bad in ["", "..", "a/b", "a\\b"]:
        with pytest.raises(ValueError, match="plain file name"):
            out.record_path(bad)


def test_new_superseded_folder_is_utc_time_then_a_counter(out):
    first = out.new_superseded_folder()
    assert first.parent == out.superseded_dir and not first.exists()
    assert re.fullmatch(r"\d{8}T\d{6}Z", first.name)
    assert abs(time.mktime(time.strptime(first.name, "%Y%m%dT%H%M%SZ")) - time.mktime(time.gmtime())) < 5
    first.mkdir(parents=True)
    second = out.new_superseded_folder()
    if second.name.startswith(first.name):  # the same second
        assert second.name == f"{first.name}-2"
        second.mkdir()
        assert out.new_superseded_folder().name == f"{first.name}-3"


def test_generic_metric_names(out):
    root = out.root
    assert out.result_path("bottom_eigenvalues", 0, 10) == root / "bottom_eigenvalues" / "bottom_eigenvalues001_10.txt"
    assert out.result_path("eigenvectors", 0, 10, ext="npz") == root / "eigenvectors" / "eigenvectors001_10.npz"
    assert out.result_path("eigenvectors", 0, None, 2, ext="npz").relative_to(root).as_posix() == \
        "eigenvectors_layer2/eigenvectors001_best.npz"
    assert out.parse_result_name("bottom_eigenvalues014_70.txt") == ("bottom_eigenvalues", 13, 70)
    assert out.parse_result_name("eigenvectors001_best.npz") == ("eigenvectors", 0, None)
    assert OutputLayout.parse_metric_dir("eigenvectors_layer12") == ("eigenvectors", 12)
    assert OutputLayout.parse_metric_dir("hessian_l2_norm") == ("hessian_l2_norm", None)


@pytest.mark.parametrize("bad", ["Trace", "1trace", "trace2", "trace_", "a-b", "", "figures", "_x"])
def test_bad_metric_names_state_the_rule(out, bad):
    with pytest.raises(ValueError, match="not a metric name: expected lower-case letters"):
        out.metric_dir(bad)


@pytest.mark.parametrize("metric, ext", [("trace", "pdf"), ("esd_plot", "txt"), ("trace", "npz")])
def test_seed_metrics_keep_their_extension(out, metric, ext):
    with pytest.raises(ValueError, match=f"{metric}: its results are"):
        out.result_path(metric, 0, 0, ext=ext)


@pytest.mark.parametrize("metric", [*METRICS, "bottom_eigenvalues", "x"])
@pytest.mark.parametrize("iteration", [-1, 0, 7, 99, 1500])
@pytest.mark.parametrize("epoch", [None, 0, 5, 10, 100, 120])
def test_parse_inverts_result_path(out, metric, iteration, epoch):
    name = out.result_path(metric, iteration, epoch).name
    assert out.parse_result_name(name) == (metric, iteration, epoch)


def test_parse_seed_names(out):
    # the seed's own names, as its committed outputs have them
    assert out.parse_result_name("top_eigenvalues000_best.txt") == ("top_eigenvalues", -1, None)
    assert out.parse_result_name("density_eigen014_70.txt") == ("density_eigen", 13, 70)
    assert out.parse_result_name("esd_plot001_00.pdf") == ("esd_plot", 0, 0)
    assert out.parse_result_name("trace0001_10.txt") == ("trace", 0, 10)  # the tag takes every digit


@pytest.mark.parametrize("name", ["trace1_10.txt", "trace001_1.txt", "trace001-10.txt", "trace001_10.csv",
                                  "notes.txt", "trace001_10.pdf", "esd_plot001_10.txt", "trace001_beste.txt",
                                  "trace_001_10.txt", "figures001_10.txt", "Trace001_10.txt", "trace001_10.TXT"])
def test_parse_rejects(out, name):
    with pytest.raises(DataError, match="trace001_10|pdf|txt"):
        out.parse_result_name(name)


def test_parse_metric_dir():
    assert OutputLayout.parse_metric_dir("trace") == ("trace", None)
    assert OutputLayout.parse_metric_dir("density_weight_layer12") == ("density_weight", 12)
    for other in ("whole_model_", ".prunehess", "figures", "figures_layer1", "Trace", "layer1"):
        assert OutputLayout.parse_metric_dir(other) is None, other


def test_parse_metric_folder_needs_results_of_its_metric(out):
    assert OutputLayout.parse_metric_folder(out.root) is None  # missing
    out.write_trace(0, 0, 1.0)
    assert OutputLayout.parse_metric_folder(out.metric_dir("trace")) == ("trace", None)
    output = out.root.parent / "output"
    assert output == out.root and OutputLayout.parse_metric_folder(output) is None  # a root named like a metric
    out.metric_dir("eigenvectors", 1).mkdir()
    assert OutputLayout.parse_metric_folder(out.metric_dir("eigenvectors", 1)) is None  # empty
    out.write_bytes("eigenvectors", 0, 0, b"npz", 1, ext="npz")
    assert OutputLayout.parse_metric_folder(out.metric_dir("eigenvectors", 1)) == ("eigenvectors", 1)


def test_equality_and_repr(out):
    assert out == OutputLayout(out.root) and hash(out) == hash(OutputLayout(out.root))
    assert out != OutputLayout(out.root / "x")
    assert repr(out) == f"OutputLayout({str(out.root)!r})"


@pytest.mark.parametrize("name", ["prunehess.layout", "prunehess.layout.names", "prunehess.layout.summary"])
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), verbose=False)
    assert result.failed == 0 and result.attempted > 0


def test_layout_imports_neither_plots_nor_torch():
    import ast
    from pathlib import Path

    import prunehess.layout

    imported = set()
    for path in Path(prunehess.layout.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                imported.add(node.module or "")
    assert not [m for m in imported if m.startswith(("prunehess.plots", "torch", "matplotlib", "prunehess.pipeline"))]
