"""The landscape and barrier files (round trips through their readers) and their figures."""
from __future__ import annotations

import numpy as np
import pytest

from prunehess.errors import DataError
from prunehess.layout import OutputLayout
from prunehess.plots.barrier import (BARRIER_COLUMNS, barrier_table_text, path_text, plot_barrier, read_barrier_table,
                                     read_path, render_barrier_paths)
from prunehess.plots.landscape import (curve_text, plot_landscape, read_curve, read_surface, render_landscape_curves,
                                       render_landscape_panels, render_surface, surface_text)
from prunehess.storage import atomic_write_text


def test_curve_and_surface_round_trip(tmp_path):
    t = np.linspace(-1, 1, 5)
    loss = np.array([2.0, 1.0 / 3.0, 0.1, np.pi, 7.0])
    (tmp_path / "c.txt").write_text(curve_text(t, loss, ["what", "direction"]))
    got_t, got_loss = read_curve(tmp_path / "c.txt")
    assert np.array_equal(got_t, t) and np.array_equal(got_loss, loss)  # full precision
    assert np.loadtxt(tmp_path / "c.txt").shape == (5, 2)  # plain numpy reads it
    a, b = np.array([-0.5, 0.0, 0.5]), np.array([-1.0, 1.0])
    grid = np.arange(6.0).reshape(3, 2) / 7
    (tmp_path / "s.txt").write_text(surface_text(a, b, grid, ["header"]))
    surface = read_surface(tmp_path / "s.txt")
    assert np.array_equal(surface.a, a) and np.array_equal(surface.b, b) and np.array_equal(surface.loss, grid)
    with pytest.raises(ValueError):
        surface_text(a, b, grid.T)


def test_malformed_files_are_one_line_naming_them(tmp_path):
    bad = tmp_path / "top1001_best.txt"
    bad.write_text("# t loss\n1 2 3\n")
    with pytest.raises(DataError, match="top1001_best.txt: expected two columns"):
        read_curve(bad)
    bad.write_text("1 2\n3 4\n")
    with pytest.raises(DataError, match="no readable '# a: …' line"):
        read_surface(bad)
    bad.write_text("1 x\n")
    with pytest.raises(DataError, match="not a table of numbers"):
        read_curve(bad)


def test_path_and_table_round_trip(tmp_path):
    alpha = np.linspace(0, 1, 3)
    values = np.array([[1.0, 0.1, 1.1, 0.2], [1.5, 0.3, 1.6, 0.4], [0.9, 0.05, 1.0, 0.1]])
    (tmp_path / "p.txt").write_text(path_text(alpha, values, ["pair"]))
    columns = read_path(tmp_path / "p.txt")
    assert np.array_equal(columns["alpha"], alpha) and np.array_equal(columns["test_error"], values[:, 3])
    row = {"kind": "rewind", "tag_a": "001_00", "tag_b": "001_best", "other": "", "points": 3,
           **{k: 0.1 * i for i, k in enumerate(BARRIER_COLUMNS[5:])}}
    (tmp_path / "barrier.csv").write_text(barrier_table_text([row]))
    assert read_barrier_table(tmp_path / "barrier.csv") == [row]


def test_renderers_draw_the_numbers():
    fig = render_landscape_curves({"random": ([-1, 0, 1], [3.0, 1.0, 2.0]), "top1": ([-1, 0, 1], [5.0, 1.0, 5.0])})
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.lines[:2]] == ["top-1 eigenvector", "random, filter-normalised (t in "
                                                                                 "filter norms)"]
    assert ax.lines[0].get_ydata().tolist() == [5.0, 1.0, 5.0]
    panels = render_landscape_panels([("001_best", {"top1": ([0, 1], [1.0, 2.0])})] * 5, title="T")
    assert sum(ax.get_visible() for ax in panels.axes) == 5 and len(panels.axes) == 8  # 4 columns, 2 rows
    surface = render_surface([-1, 0, 1], [-1, 1], np.array([[2.0, 3.0], [1.0, 1.5], [2.5, 4.0]]))
    assert surface.axes[0].get_xlabel() == "a (top-1 eigenvector)"
    paths = render_barrier_paths([("001_best → 002_best", {"alpha": np.array([0.0, 1.0]), "loss": np.array([1.0, 2.0]),
                                                          "error": np.array([0.1, 0.2]),
                                                          "test_loss": np.array([1.1, 2.1]),
                                                          "test_error": np.array([0.2, 0.3])})])
    assert len(paths.axes) == 2 and paths.axes[0].lines[0].get_ydata().tolist() == [1.0, 2.0]


def _outputs(root):
    out = OutputLayout(root)
    t = np.linspace(-1, 1, 5)
    for tag in ("001_best", "002_best", "001_10"):
        for direction in ("top1", "random"):
            atomic_write_text(out.landscape_path(direction, tag), curve_text(t, 1 + t**2, ["x"]))
    atomic_write_text(out.landscape_path("top1-top2", "001_best"), surface_text(t, t, np.add.outer(t**2, t**2)))
    alpha = np.linspace(0, 1, 3)
    for kind, a, b in (("consecutive", "001_best", "002_best"), ("rewind", "001_00", "001_best")):
        atomic_write_text(out.barrier_path(kind, a, b), path_text(alpha, np.ones((3, 4)), ["x"]))
    out.write_remain_params([100.0, 80.0])
    return out


def test_plot_landscape_and_plot_barrier_write_their_figures(tmp_path):
    out = _outputs(tmp_path / "out")
    written = plot_landscape(out.root, tmp_path / "land", model_name="m", dataset_name="d")
    assert sorted(p.name for p in written) == ["best_model.jpg", "epoch10.jpg", "surface001_best.jpg"]
    assert len(plot_landscape(out.root, tmp_path / "one", models=2)) == 3  # tag 001 only: still 3 figures
    written = plot_barrier(out.root, tmp_path / "bar")
    assert sorted(p.name for p in written) == ["consecutive.jpg", "rewind.jpg"]
    assert all(p.stat().st_size > 1000 for p in written)


def test_no_files_is_one_line(tmp_path):
    out = OutputLayout(tmp_path)
    with pytest.raises(DataError, match="no landscape files; run prunehess landscape"):
        plot_landscape(out.root, tmp_path / "figs")
    with pytest.raises(DataError, match="no barrier paths; run prunehess barrier"):
        plot_barrier(out.root, tmp_path / "figs")


def test_the_tree_lists_only_its_own_names(tmp_path):
    out = _outputs(tmp_path / "out")
    (out.landscape_dir / "notes.txt").write_text("x")
    assert sorted(out.list_landscapes()) == sorted([(d, t) for t in ("001_best", "002_best", "001_10")
                                                    for d in ("top1", "random")] + [("top1-top2", "001_best")])
    assert sorted(out.list_barrier_paths()) == [("consecutive", "001_best", "002_best"),
                                                ("rewind", "001_00", "001_best")]
    with pytest.raises(ValueError):
        out.landscape_path("hessian", "001_best")
    with pytest.raises(ValueError):
        out.barrier_path("rewind", "1_best", "001_best")
