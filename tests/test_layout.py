"""OutputLayout: names, atomic writers, readers, and the round trip between them."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from prunehess.errors import DataError
from prunehess.layout import (
    METRICS,
    SUMMARY_COLUMNS,
    OutputLayout,
    atomic_write_bytes,
    atomic_write_text,
    epoch_tag,
    iteration_tag,
)


@pytest.fixture
def out(tmp_path) -> OutputLayout:
    return OutputLayout(tmp_path / "output")


# ------------------------------------------------------------------------------------------------- names
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


def test_unknown_metric_names_the_allowed_ones(out):
    with pytest.raises(ValueError, match="top_eigenvalues, trace"):
        out.metric_dir("eigenvalues")


@pytest.mark.parametrize("metric", METRICS)
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


@pytest.mark.parametrize("name", ["trace1_10.txt", "trace001_1.txt", "trace001-10.txt", "trace001_10.csv",
                                  "notes.txt", "trace001_10.pdf", "esd_plot001_10.txt", "trace001_beste.txt"])
def test_parse_rejects(out, name):
    with pytest.raises(DataError, match="trace001_10|pdf|txt"):
        out.parse_result_name(name)


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


def test_density_one_run_is_one_column(out):
    out.write_density(0, 10, np.array([0.5, -1.0, 2e-9]), np.array([0.2, 0.3, 0.5]))
    text = out.result_path("density_eigen", 0, 10).read_text()
    assert text == "0.5\n-1.0\n2e-09\n"
    assert out.read_result("density_weight", 0, 10).shape == (3,)


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


def test_reads_seed_files_without_newline(out):
    path = out.result_path("trace", 3, 70)
    path.parent.mkdir(parents=True)
    path.write_text("2573.564474487305")  # the seed wrote no newline
    assert out.read_metric("trace") == {(3, 70): pytest.approx(np.array([2573.564474487305]))}


def test_layers_round_trip(out):
    rows = [(0, "classifier.0.weight", 235200), (1, "classifier.0.bias", 300)]
    out.write_layers(rows)
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


def test_summary_round_trip(out):
    rows = [
        dict(iteration=0, epoch=10, layer=None, remaining_percent=100.0, test_accuracy=0.9812,
             top_eigenvalues=[1807.968017578125, 3.5], trace=13903.346422697368, trace_stderr=12.5, hvps=600,
             seconds=1.25),
        dict(iteration=0, epoch=None, layer=3, remaining_percent=100.0, test_accuracy=None,
             top_eigenvalues=[0.001460271654650569], trace=0.0035, trace_stderr=None, hvps=10, seconds=0.1,
             note="extra column"),
    ]
    out.write_summary(rows)
    header = out.summary_file.read_text().splitlines()[0].split(",")
    assert header == [*SUMMARY_COLUMNS, "note"]
    back = out.read_summary()
    assert back[0] == {**rows[0], "note": None}
    assert back[1] == rows[1]


def test_summary_malformed(out):
    out.write_summary([dict(iteration=0, epoch=0, trace=1.0)])
    text = out.summary_file.read_text().replace(",1.0,", ",1.0x,")
    out.summary_file.write_text(text)
    with pytest.raises(DataError, match=r"summary.csv: line 2 column trace: '1.0x' is not a number"):
        out.read_summary()


def test_config_round_trip(out, tmp_path):
    config = {"model": "fc1", "output": tmp_path / "o", "top_n": 1, "layers": (0, 1), "nested": {"a": 1.5}}
    out.write_config(config)
    assert out.read_config() == {"model": "fc1", "output": str(tmp_path / "o"), "top_n": 1, "layers": [0, 1],
                                 "nested": {"a": 1.5}}


def test_config_malformed(out):
    out.root.mkdir(parents=True)
    out.config_file.write_text("model: [fc1\n")
    with pytest.raises(DataError, match="config.yaml: not valid YAML"):
        out.read_config()


# ------------------------------------------------------------------------------------------------ reading
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


def test_stray_files_warn_once_and_hidden_files_are_ignored(out):
    out.write_trace(0, 0, 1.0)
    folder = out.metric_dir("trace")
    (folder / "notes.txt").write_text("hello")
    (folder / "top_eigenvalues001_00.txt").write_text("1")
    (folder / ".trace001_10.txt.abc.tmp").write_text("half")
    with pytest.warns(UserWarning, match="notes.txt, top_eigenvalues001_00.txt"):
        assert list(out.read_metric("trace")) == [(0, 0)]


def test_two_files_for_one_checkpoint(out):
    out.write_trace(0, 10, 1.0)
    (out.metric_dir("trace") / "trace0001_10.txt").write_text("2\n")
    with pytest.raises(DataError, match="same checkpoint"):
        out.read_metric("trace")


def test_read_metric_refuses_pdfs(out):
    with pytest.raises(ValueError, match="esd_plot"):
        out.read_metric("esd_plot")


# ------------------------------------------------------------------------------------------------- atomic
def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    path = tmp_path / "a" / "b" / "f.txt"
    atomic_write_text(path, "one\n")
    atomic_write_text(path, "two\n")
    assert path.read_text() == "two\n"
    assert os.listdir(path.parent) == ["f.txt"]


def test_atomic_write_gives_ordinary_permissions(tmp_path):
    path = tmp_path / "f.txt"
    atomic_write_text(path, "x")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_atomic_write_failure_keeps_old_content(tmp_path, monkeypatch):
    path = tmp_path / "f.txt"
    atomic_write_text(path, "old\n")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(path, b"new\n")
    monkeypatch.undo()
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["f.txt"]


def test_write_esd_plot_is_a_pdf(out):
    grid = np.linspace(-1, 1, 50)
    out.write_esd_plot(0, 10, grid, np.exp(-grid**2 * 20), layer=1)
    path = out.result_path("esd_plot", 0, 10, 1)
    assert path.read_bytes().startswith(b"%PDF")
    assert out.list_results("esd_plot", 1) == {(0, 10): path}
    import matplotlib.pyplot as plt

    assert plt.get_fignums() == []


def test_metrics_present(out):
    assert out.metrics_present() == []
    out.write_trace(0, 0, 1.0)
    out.write_density(0, 0, [1.0], [1.0], layer=2)
    assert out.metrics_present() == ["trace"]
    assert out.metrics_present(2) == ["density_eigen", "density_weight"]
    assert isinstance(out.root, Path)


def test_remove_stale_temporaries(out):
    out.write_trace(0, 0, 1.0)
    stale = [out.metric_dir("trace") / ".trace001_10.txt.k2j3.tmp", out.root / ".summary.csv.a1.tmp"]
    for path in stale:
        path.write_text("half")
    assert out.remove_stale_temporaries() == sorted(stale)
    assert not any(p.exists() for p in stale) and out.result_path("trace", 0, 0).is_file()


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


def test_parse_metric_dir():
    assert OutputLayout.parse_metric_dir("trace") == ("trace", None)
    assert OutputLayout.parse_metric_dir("density_weight_layer12") == ("density_weight", 12)
    assert OutputLayout.parse_metric_dir("whole_model") is None


def test_retire_results_moves_what_keep_does_not_name_and_nothing_else(out, tmp_path):
    out.write_trace(0, 1, 1.0)
    out.write_trace(0, 1, 2.0, layer=3)
    out.write_trace(1, None, 3.0)
    out.write_top_eigenvalues(0, 1, [4.0], layer=3)
    padded = out.metric_dir("trace") / "trace0001_01.txt"  # the same checkpoint under another padding: not ours
    padded.write_text("5\n")
    (out.metric_dir("trace") / "notes.md").write_text("mine")  # not a result: stays
    out.metric_dir("density_eigen", 7).mkdir()  # empty (a run killed after moving its last file): removed
    (out.root / "figures").mkdir()
    (out.root / "figures" / "trace001_01.txt").write_text("6\n")  # not a metric folder: stays
    aside = tmp_path / "aside"

    moved = out.retire_results({(0, 1, None), (5, 5, 3)}, aside)

    assert sorted(p.relative_to(aside).as_posix() for p in moved) == [
        "top_eigenvalues_layer3/top_eigenvalues001_01.txt", "trace/trace0001_01.txt", "trace/trace002_best.txt",
        "trace_layer3/trace001_01.txt"]
    assert (aside / "trace_layer3" / "trace001_01.txt").read_text().strip() == "2.0"
    assert sorted(p.name for p in out.metric_dir("trace").iterdir()) == ["notes.md", "trace001_01.txt"]
    assert not out.metric_dir("trace", 3).exists() and out.layers_present() == []  # emptied layer folders go
    assert (out.root / "figures" / "trace001_01.txt").is_file()
    assert out.retire_results({(0, 1, None)}, aside) == []  # nothing left to move
