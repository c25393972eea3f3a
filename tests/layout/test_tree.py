"""The tree's folders: listing results, retiring an earlier run's, sweeping temporaries, what is present."""
from __future__ import annotations

from pathlib import Path

import pytest

from prunehess.errors import DataError


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


def test_list_results_filters_by_extension(out):
    out.write_values("eigenvectors", 0, 0, [1.0])
    out.write_bytes("eigenvectors", 0, 1, b"x", ext="npz")
    assert list(out.list_results("eigenvectors")) == [(0, 0), (0, 1)]
    assert list(out.list_results("eigenvectors", ext="npz")) == [(0, 1)]


def test_metrics_present(out):
    assert out.metrics_present() == []
    out.write_trace(0, 0, 1.0)
    out.write_density(0, 0, [1.0], [1.0], layer=2)
    out.write_values("bottom_eigenvalues", 0, 0, [1.0])
    assert out.metrics_present() == ["trace"]
    assert out.metrics_present(2) == ["density_eigen", "density_weight"]
    assert isinstance(out.root, Path)


def test_layers_present_counts_any_metric_but_not_figures(out):
    assert out.layers_present() == []
    out.write_values("bottom_eigenvalues", 0, 0, [1.0], layer=5)
    out.write_trace(0, 0, 1.0, layer=1)
    (out.root / "figures" / "layer3").mkdir(parents=True)
    (out.root / "figures_layer7").mkdir()
    assert out.layers_present() == [1, 5]


def test_remove_stale_temporaries(out):
    out.write_trace(0, 0, 1.0)
    out.write_values("bottom_eigenvalues", 0, 0, [1.0], layer=2)
    out.records_dir.mkdir(parents=True)
    stale = [out.metric_dir("trace") / ".trace001_10.txt.k2j3.tmp", out.root / ".summary.csv.a1.tmp",
             out.metric_dir("bottom_eigenvalues", 2) / ".bottom_eigenvalues001_00.txt.9f.tmp",
             out.state_dir / ".strategy.json.77.tmp", out.records_dir / ".001_10.json.0a.tmp"]
    for path in stale:
        path.write_text("half")
    out.figures_dir.mkdir()
    plotting = out.figures_dir / ".model1.jpg.3c.tmp"  # a plot being saved, outside the extraction's lock
    plotting.write_text("half")
    assert out.remove_stale_temporaries() == sorted(stale)
    assert not any(p.exists() for p in stale) and out.result_path("trace", 0, 0).is_file()
    assert plotting.is_file()


def test_retire_results_moves_what_keep_does_not_name_and_nothing_else(out, tmp_path):
    out.write_trace(0, 1, 1.0)
    out.write_trace(0, 1, 2.0, layer=3)
    out.write_trace(1, None, 3.0)
    out.write_top_eigenvalues(0, 1, [4.0], layer=3)
    out.write_values("bottom_eigenvalues", 0, 1, [-1.0])
    out.write_values("bottom_eigenvalues", 2, 1, [-2.0])
    out.write_bytes("eigenvectors", 2, 1, b"npz", 1, ext="npz")
    padded = out.metric_dir("trace") / "trace0001_01.txt"  # the same checkpoint under another padding: not ours
    padded.write_text("5\n")
    (out.metric_dir("trace") / "notes.md").write_text("mine")  # not a result: stays
    (out.metric_dir("bottom_eigenvalues") / "trace001_01.txt").write_text("7\n")  # another metric's name: stays
    out.metric_dir("density_eigen", 7).mkdir()  # empty (a run killed after moving its last file): removed
    (out.root / "figures").mkdir()
    (out.root / "figures" / "trace001_01.txt").write_text("6\n")  # not a metric folder: stays
    (out.root / "figures" / "figures001_01.txt").write_text("6\n")
    out.state_dir.mkdir()
    (out.state_dir / "trace001_01.txt").write_text("6\n")  # hidden: stays
    aside = tmp_path / "aside"

    moved = out.retire_results({(0, 1, None), (5, 5, 3)}, aside)

    assert sorted(p.relative_to(aside).as_posix() for p in moved) == [
        "bottom_eigenvalues/bottom_eigenvalues003_01.txt", "eigenvectors_layer1/eigenvectors003_01.npz",
        "top_eigenvalues_layer3/top_eigenvalues001_01.txt", "trace/trace0001_01.txt", "trace/trace002_best.txt",
        "trace_layer3/trace001_01.txt"]
    assert (aside / "trace_layer3" / "trace001_01.txt").read_text().strip() == "2.0"
    assert sorted(p.name for p in out.metric_dir("trace").iterdir()) == ["notes.md", "trace001_01.txt"]
    assert sorted(p.name for p in out.metric_dir("bottom_eigenvalues").iterdir()) == [
        "bottom_eigenvalues001_01.txt", "trace001_01.txt"]
    assert not out.metric_dir("trace", 3).exists() and out.layers_present() == []  # emptied layer folders go
    assert sorted(p.name for p in out.figures_dir.iterdir()) == ["figures001_01.txt", "trace001_01.txt"]
    assert (out.state_dir / "trace001_01.txt").is_file()
    assert out.retire_results({(0, 1, None)}, aside) == []  # nothing left to move


def test_retire_results_of_a_missing_tree(out, tmp_path):
    assert out.retire_results(set(), tmp_path / "aside") == []
    assert out.remove_stale_temporaries() == []
