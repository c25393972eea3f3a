"""Writers and readers of the tree's files: formats byte for byte, and the round trip between them."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from prunehess.errors import DataError


# ---------------------------------------------------------------------------------------------- round trip
def test_round_trip_every_file(out):
    rng = np.random.default_rng(0)
    written = {}
    for layer in (None, 0, 4):
        for iteration, epoch in [(-1, None), (0, 0), (0, 10), (0, None), (1, 100), (12, 5)]:
            top = np.sort(rng.normal(size=3))[::-1] * 1e3
            trace = float(rng.normal() * 1e-7)
            nodes, weights = rng.normal(size=(2, 7)), rng.uniform(size=(2, 7))
            out.write_top_eigenvalues(iteration, epoch, top, layer)
            out.write_trace(iteration, epoch, trace, layer)
            out.write_density(iteration, epoch, nodes, weights, layer)
            written[(layer, iteration, epoch)] = (top, trace, nodes, weights)
    for layer in (None, 0, 4):
        tops = out.read_metric("top_eigenvalues", layer)
        traces = out.read_metric("trace", layer)
        eig, wts = out.read_metric("density_eigen", layer), out.read_metric("density_weight", layer)
        assert list(tops) == [(-1, None), (0, 0), (0, 10), (0, None), (1, 100), (12, 5)]  # numeric order
        for (lay, iteration, epoch), (top, trace, nodes, weights) in written.items():
            if lay != layer:
                continue
            key = (iteration, epoch)
            np.testing.assert_array_equal(tops[key], top)  # bit for bit
            np.testing.assert_array_equal(traces[key], [trace])
            np.testing.assert_array_equal(eig[key], nodes.T)  # one column per run
            np.testing.assert_array_equal(wts[key], weights.T)
    assert out.layers_present() == [0, 4]


def test_generic_metrics_round_trip(out):
    bottom = np.array([-3.25, -1e-9, 0.1])
    out.write_values("bottom_eigenvalues", 0, 10, bottom)
    out.write_values("bottom_eigenvalues", 0, None, bottom[:1], layer=2)
    table = np.arange(6.0).reshape(3, 2) / 7
    out.write_table("spectrum_moments", 1, 5, table)
    npz = io.BytesIO()
    np.savez(npz, v=np.eye(3))
    out.write_bytes("eigenvectors", 0, 10, npz.getvalue(), ext="npz")

    assert out.result_path("bottom_eigenvalues", 0, 10).read_text() == "-3.25\n-1e-09\n0.1\n"
    assert out.read_metric("bottom_eigenvalues") == {(0, 10): pytest.approx(bottom)}
    np.testing.assert_array_equal(out.read_metric("bottom_eigenvalues", 2)[(0, None)], bottom[:1])
    np.testing.assert_array_equal(out.read_result("spectrum_moments", 1, 5), table)
    assert out.result_path("spectrum_moments", 1, 5).read_text().splitlines()[0] == "0.0 0.14285714285714285"
    path = out.list_results("eigenvectors")[(0, 10)]
    assert path == out.root / "eigenvectors" / "eigenvectors001_10.npz"
    np.testing.assert_array_equal(np.load(path)["v"], np.eye(3))
    assert out.layers_present() == [2]
    assert out.metrics_present() == []  # the seed's metrics only


def test_read_metric_lists_only_text_files(out):
    out.write_values("eigenvectors", 0, 0, [1.0])
    out.write_bytes("eigenvectors", 0, 1, b"\x00binary", ext="npz")
    assert list(out.read_metric("eigenvectors")) == [(0, 0)]


def test_generic_writers_check_their_input(out):
    with pytest.raises(ValueError, match="bottom_eigenvalues: need at least one value"):
        out.write_values("bottom_eigenvalues", 0, 0, [])
    with pytest.raises(ValueError, match="expected a non-empty table"):
        out.write_table("moments", 0, 0, np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="esd_plot: its results are .pdf files"):
        out.write_values("esd_plot", 0, 0, [1.0])
    with pytest.raises(TypeError, match="expected bytes"):
        out.write_bytes("eigenvectors", 0, 0, "text", ext="npz")
    with pytest.raises(ValueError, match="extension"):
        out.write_bytes("eigenvectors", 0, 0, b"x", ext=".npz")
    assert not out.root.exists()


def test_density_one_run_is_one_column(out):
    out.write_density(0, 10, np.array([0.5, -1.0, 2e-9]), np.array([0.2, 0.3, 0.5]))
    text = out.result_path("density_eigen", 0, 10).read_text()
    assert text == "0.5\n-1.0\n2e-09\n"
    assert out.read_result("density_weight", 0, 10).shape == (3,)


def test_density_two_runs_are_two_columns(out):
    out.write_density(0, 10, np.array([[0.5, 1.0], [2.0, 3.0]]), np.ones((2, 2)) / 2)
    assert out.result_path("density_eigen", 0, 10).read_text() == "0.5 2.0\n1.0 3.0\n"


def test_density_accepts_torch(out):
    torch = pytest.importorskip("torch")
    out.write_density(0, 0, torch.tensor([1.0, 2.0]), torch.tensor([0.5, 0.5]))
    np.testing.assert_array_equal(out.read_result("density_eigen", 0, 0), [1.0, 2.0])


def test_density_shape_mismatch(out):
    with pytest.raises(ValueError, match="differ"):
        out.write_density(0, 0, np.zeros(3), np.zeros(4))


def test_trace_file_is_one_number(out):
    out.write_trace(0, 0, 87.30003561739062)
    assert out.result_path("trace", 0, 0).read_text() == "87.30003561739062\n"
    with pytest.raises(ValueError, match="one number"):
        out.write_trace(0, 0, [1.0, 2.0])


def test_top_eigenvalues_file(out):
    out.write_top_eigenvalues(3, None, [1807.968017578125, 0.1, 1e-7], layer=1)
    assert out.result_path("top_eigenvalues", 3, None, 1).read_text() == "1807.968017578125\n0.1\n1e-07\n"
    with pytest.raises(ValueError, match="need at least one value"):
        out.write_top_eigenvalues(0, 0, [])


def test_reads_seed_files_without_newline(out):
    path = out.result_path("trace", 3, 70)
    path.parent.mkdir(parents=True)
    path.write_text("2573.564474487305")  # the seed wrote no newline
    assert out.read_metric("trace") == {(3, 70): pytest.approx(np.array([2573.564474487305]))}


# -------------------------------------------------------------------------------------------- esd plot
def test_write_esd_plot_stores_the_bytes_esd_pdf_renders(out, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")  # the PDF's creation date: reproducible bytes
    from matplotlib.figure import Figure

    from prunehess.plots.esd import esd_pdf, render_esd

    grid = np.linspace(-1, 1, 50)
    density = np.exp(-grid**2 * 20)
    pdf = esd_pdf(grid, density)
    out.write_esd_plot(0, 10, pdf, layer=1)
    path = out.result_path("esd_plot", 0, 10, 1)
    assert path.read_bytes() == pdf and pdf.startswith(b"%PDF-")
    assert out.list_results("esd_plot", 1) == {(0, 10): path}

    # the same bytes as the figure drawn the way the layout drew it before rendering moved to the plots
    for title in (None, "ESD"):
        figure: Figure = render_esd(grid, density, title=title)
        figure.set_layout_engine(None)
        figure.subplots_adjust(left=0.14, right=0.97, bottom=0.12, top=0.9 if title else 0.95)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="pdf")
        assert esd_pdf(grid, density, title=title) == buffer.getvalue()
    import matplotlib.pyplot as plt

    assert plt.get_fignums() == []


def test_write_esd_plot_wants_pdf_bytes(out):
    grid = np.linspace(-1, 1, 5)
    with pytest.raises(TypeError, match="esd_pdf"):
        out.write_esd_plot(0, 10, grid, np.exp(-grid**2))  # the old call: arrays
    with pytest.raises(ValueError, match="not a PDF"):
        out.write_esd_plot(0, 10, b"<svg/>")


def test_read_metric_refuses_pdfs(out):
    with pytest.raises(ValueError, match="esd_plot"):
        out.read_metric("esd_plot")


# ------------------------------------------------------------------------------------- shared files
def test_layers_round_trip(out):
    rows = [(0, "classifier.0.weight", 235200), (1, "classifier.0.bias", 300)]
    out.write_layers(rows)
    assert out.layers_file.read_text() == "# k\tname\tsize\n0\tclassifier.0.weight\t235200\n1\tclassifier.0.bias\t300\n"
    assert out.read_layers() == rows
    with pytest.raises(ValueError, match="white space"):
        out.write_layers([(0, "a name", 3)])


def test_remain_params_round_trip_rounds_to_a_tenth(out):
    out.write_remain_params([100, 80.04, 64.06, 51.2])
    assert out.remain_params_file.read_text() == "100.0\n80.0\n64.1\n51.2\n"
    assert out.read_remain_params() == [100.0, 80.0, 64.1, 51.2]


def test_remain_params_hand_written_file(out, tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("100\n 80.0\n\n64.0\n")
    assert out.read_remain_params(path) == [100.0, 80.0, 64.0]


@pytest.mark.parametrize("text, problem", [("100\n80,0\n", "line 2: '80,0' is not a number"),
                                           ("100\n180\n", "line 2: '180' is not a percent"),
                                           ("\n\n", "empty")])
def test_remain_params_malformed(out, tmp_path, text, problem):
    path = tmp_path / "remain_params.txt"
    path.write_text(text)
    with pytest.raises(DataError) as err:
        out.read_remain_params(path)
    assert str(err.value) == f"{path}: {problem}" or str(err.value).startswith(f"{path}: {problem}")
    assert "\n" not in str(err.value)


def test_remain_params_missing(out):
    with pytest.raises(DataError, match=r"remain_params.txt: not found"):
        out.read_remain_params()


def test_config_round_trip(out, tmp_path):
    config = {"model": "fc1", "output": tmp_path / "o", "top_n": 1, "layers": (0, 1), "nested": {"a": 1.5}}
    out.write_config(config)
    assert out.read_config() == {"model": "fc1", "output": str(tmp_path / "o"), "top_n": 1, "layers": [0, 1],
                                 "nested": {"a": 1.5}}


def test_config_from_a_dataclass_with_enums(out, tmp_path):
    import dataclasses
    import enum

    class Method(enum.Enum):
        LANCZOS = "lanczos"

    @dataclasses.dataclass(frozen=True)
    class Config:
        model: str
        method: Method
        data_root: Path

    out.write_config(Config("fc1", Method.LANCZOS, tmp_path))
    assert out.read_config() == {"model": "fc1", "method": "lanczos", "data_root": str(tmp_path)}


def test_config_malformed(out):
    out.root.mkdir(parents=True)
    out.config_file.write_text("model: [fc1\n")
    with pytest.raises(DataError, match="config.yaml: not valid YAML"):
        out.read_config()


# ---------------------------------------------------------------------------------------------- reading
def test_malformed_result_names_the_file(out):
    path = out.result_path("trace", 0, 10)
    path.parent.mkdir(parents=True)
    path.write_text("12.5 oops\n")
    with pytest.raises(DataError) as err:
        out.read_metric("trace")
    assert str(err.value).startswith(f"{path}: not plain numbers")


def test_empty_result(out):
    path = out.result_path("top_eigenvalues", 0, 0)
    path.parent.mkdir(parents=True)
    path.write_text("")
    with pytest.raises(DataError, match="empty"):
        out.read_metric("top_eigenvalues")


def test_missing_folder(out):
    with pytest.raises(DataError, match=r"trace: no such folder"):
        out.read_metric("trace")
