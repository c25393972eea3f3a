"""Renderers: numbers in, figure out; the drawn data are the numbers given."""
from __future__ import annotations

import numpy as np
import pytest
from matplotlib.collections import PolyCollection, QuadMesh
from matplotlib.figure import Figure

import prunehess.plots as pp
from prunehess.plots.density import default_linthresh


def test_epoch_trend_draws_the_values():
    fig = pp.render_epoch_trend([0, 10, 20], [[3.0, 1.0], [2.0, 0.5], [1.0, np.nan]], ylabel="Top Hessian eigenvalue",
                                title="t")
    ax = fig.axes[0]
    assert [list(line.get_xdata()) for line in ax.lines] == [[0, 10, 20]] * 2
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), [3.0, 2.0, 1.0])
    np.testing.assert_array_equal(ax.lines[1].get_ydata(), [1.0, 0.5, np.nan])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["λ1", "λ2"]
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("Epoch", "Top Hessian eigenvalue", "t")
    assert ax.get_yscale() == "linear"


def test_epoch_trend_log_scale_when_values_span_decades():
    fig = pp.render_epoch_trend([0, 10, 20], [1.0, 30.0, 2000.0])
    assert fig.axes[0].get_yscale() == "log"
    fig = pp.render_epoch_trend([0, 10, 20], [-1.0, 30.0, 2000.0])  # a negative value: stays linear
    assert fig.axes[0].get_yscale() == "linear"


def test_renderers_draw_on_a_given_axes():
    fig = Figure()
    ax1, ax2 = fig.subplots(1, 2)
    assert pp.render_epoch_trend([0, 1], [1.0, 2.0], ax=ax2) is fig
    assert pp.render_best_trend([100.0, 80.0], [1.0, 2.0], ax=ax1) is fig
    assert len(ax1.lines) == len(ax2.lines) == 1


def test_best_trend_axis_is_the_percent_remaining():
    fig = pp.render_best_trend([100.0, 80.0, 64.0, 51.2], [5.0, 6.0, 8.0, 7.5], ylabel="Hessian trace")
    ax = fig.axes[0]
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [100.0, 80.0, 64.0, 51.2])
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), [5.0, 6.0, 8.0, 7.5])
    assert ax.get_xscale() == "log" and ax.xaxis_inverted()
    assert ax.get_xlabel() == "Remaining parameters (%)"
    assert sorted(ax.get_xticks()) == [51.2, 64.0, 80.0, 100.0]
    assert ax.xaxis.get_major_formatter()(51.2, 0) == "51.2"


def test_esd_renderer():
    grid = np.linspace(-2, 5, 100)
    density = np.exp(-grid**2)
    ax = pp.render_esd(grid, density, title="ESD").axes[0]
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), grid)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), density + 1e-7)
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_yscale()) == ("Eigenvalue", "Density (Log Scale)", "log")


def test_density_map_columns_are_densities_peaking_at_the_nodes():
    spectra = [(np.array([-2.0, 0.001, 300.0]), np.array([0.25, 0.5, 0.25])),
               (np.array([[5.0, 5.0]]), np.array([[1.0, 3.0]]))]  # one node, two runs
    dmap = pp.density_map(spectra, num_points=500, linthresh=0.01)
    assert dmap.density.shape == (500, 2)
    np.testing.assert_allclose(dmap.density.sum(axis=0) * dmap.du, 1.0)
    centre = dmap.eigenvalues[np.argmax(dmap.density[:, 1])]
    assert centre == pytest.approx(5.0, rel=0.05)
    # equal masses get equal peaks however far apart on the eigenvalue axis: it is a symlog-axis density
    peaks = [dmap.density[np.argmin(abs(dmap.eigenvalues - x)), 0] for x in (-2.0, 300.0)]
    assert peaks[0] == pytest.approx(peaks[1], rel=0.05)
    assert np.all(np.diff(dmap.eigenvalue_edges) > 0)


@pytest.mark.parametrize("scale", [1e-6, 0.03, 1e4])
def test_density_map_of_small_spectra_with_exact_zeros(scale):
    """Exact spectra of small layers: rounding-level zeros next to eigenvalues of any scale (a tiny linthresh:
    symlog coordinates are then tiny too, and the grid must follow them)."""
    nodes = np.concatenate([np.full(40, 1e-12 * scale), [-2e-10 * scale], np.linspace(0.1, 1.0, 59) * scale])
    weights = np.full(nodes.size, 1.0 / nodes.size)
    dmap = pp.density_map([(nodes, weights), (nodes * 0.5, weights)], num_points=200)
    assert np.all(np.isfinite(dmap.eigenvalue_edges)) and np.all(np.diff(dmap.eigenvalue_edges) > 0)
    assert dmap.eigenvalue_edges[0] < nodes.min() and dmap.eigenvalue_edges[-1] > nodes.max()
    assert dmap.eigenvalue_edges[-1] < 10 * nodes.max()  # the grid spans the nodes, not decades beyond them
    np.testing.assert_allclose(dmap.density.sum(axis=0) * dmap.du, 1.0)
    fig = pp.render_density_heatmap([0, 10], [(nodes, weights), (nodes * 0.5, weights)], num_points=64)
    assert isinstance(fig, Figure)


def test_default_linthresh_sits_below_the_bulk():
    nodes = np.concatenate([np.full(80, 3e-3), [200.0]])
    assert default_linthresh(nodes) == pytest.approx(1e-3)
    assert default_linthresh(np.zeros(3)) == 1.0


def test_heatmap_draws_the_density_map():
    spectra = [(np.array([0.01, 10.0]), np.array([0.5, 0.5])), (np.array([-1.0, 100.0]), np.array([0.9, 0.1]))]
    fig = pp.render_density_heatmap([10, 0], spectra, title="SLQ", num_points=64, linthresh=0.1)
    ax = fig.axes[0]
    mesh = next(a for a in ax.collections if isinstance(a, QuadMesh))
    expected = pp.density_map([spectra[1], spectra[0]], num_points=64, linthresh=0.1)  # sorted by epoch
    np.testing.assert_allclose(np.asarray(mesh.get_array()).reshape(64, 2), expected.density)
    assert ax.get_yscale() == "symlog" and ax.get_ylabel() == "Eigenvalue" and ax.get_xlabel() == "Epoch"
    assert list(ax.get_xticks()) == [0, 10]
    assert len(fig.axes) == 2  # the colour bar


def test_node_scatter_draws_every_node():
    fig = pp.render_node_scatter([0, 10], [np.array([1.0, 2.0]), (np.array([[3.0], [4.0]]), np.ones((2, 1)))])
    offsets = fig.axes[0].collections[0].get_offsets()
    np.testing.assert_array_equal(offsets, [[0, 1.0], [0, 2.0], [10, 3.0], [10, 4.0]])


def test_layer_match_renderer():
    fig = pp.render_layer_match([100.0, 80.0], [[0.1, 2.0], [0.2, 3.0]], ["layer 0", "layer 1"], percent_axis=True)
    ax = fig.axes[0]
    np.testing.assert_array_equal(ax.lines[1].get_ydata(), [2.0, 3.0])
    assert ax.get_xlabel() == "Remaining parameters (%)"
    assert ax.get_ylabel() == "Wasserstein-1 distance to the full spectrum"


def _band_edges(ax) -> dict[float, tuple[float, float]]:
    (band,) = [c for c in ax.collections if isinstance(c, PolyCollection)]
    edges: dict[float, list[float]] = {}
    for path in band.get_paths():
        for x, y in path.vertices:
            edges.setdefault(float(x), []).append(float(y))
    return {x: (min(ys), max(ys)) for x, ys in edges.items()}


def test_epoch_trend_band_is_two_standard_errors():
    fig = pp.render_epoch_trend([0, 10, 20], [5.0, 4.0, 4.5], stderr=[0.5, 0.25, 0.0], ylabel="Hessian trace")
    ax = fig.axes[0]
    assert _band_edges(ax) == {0.0: (4.0, 6.0), 10.0: (3.5, 4.5), 20.0: (4.5, 4.5)}
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["± 2 standard errors"]
    with pytest.raises(ValueError, match="one line"):
        pp.render_epoch_trend([0, 10], [[1.0, 2.0], [3.0, 4.0]], stderr=[0.1, 0.1])


def test_best_trend_band_and_its_absence():
    fig = pp.render_best_trend([100.0, 80.0], [5.0, 8.0], stderr=[1.0, 0.5])
    assert _band_edges(fig.axes[0]) == {100.0: (3.0, 7.0), 80.0: (7.0, 9.0)}
    for stderr in (None, [np.nan, np.nan], [0.0, 0.0]):  # unknown, or exact traces: nothing to draw
        ax = pp.render_best_trend([100.0, 80.0], [5.0, 8.0], stderr=stderr).axes[0]
        assert not ax.collections and ax.get_legend() is None


def test_band_decides_the_log_scale():
    """Values spanning decades whose band reaches 0 or below stay on a linear axis (a log axis would cut it)."""
    assert pp.render_best_trend([100.0, 80.0, 64.0], [1.0, 30.0, 2000.0]).axes[0].get_yscale() == "log"
    fig = pp.render_best_trend([100.0, 80.0, 64.0], [1.0, 30.0, 2000.0], stderr=[1.0, 1.0, 1.0])
    assert fig.axes[0].get_yscale() == "linear"


def test_heatmap_marks_the_outliers_under_the_colour_floor():
    """A bulk near 0 and outliers of weight 1e-7: their colour is under the floor, so they are marked, and λmax
    (a given top eigenvalue beyond every node, or the largest node) is inside the value axis."""
    bulk = np.linspace(-0.05, 0.3, 40)
    nodes = np.concatenate([bulk, [6.0, 9.5]])
    weights = np.concatenate([np.full(40, (1 - 2e-7) / 40), [1e-7, 1e-7]])
    spectra = [(nodes, weights), (nodes * 0.5, weights)]
    fig = pp.render_density_heatmap([10, 0], spectra, num_points=200, top_eigenvalues=[[12.0, 3.0], None])
    ax = fig.axes[0]
    marks = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.lines}
    assert marks["λmax (top_eigenvalues)"] == ([10.0], [12.0])
    assert marks["λmax (largest Ritz node)"] == ([0.0], [4.75])  # epochs sorted: epoch 0 is the halved spectrum
    assert marks["Ritz nodes beyond the colour scale"] == ([0.0, 0.0, 10.0, 10.0], [3.0, 4.75, 6.0, 9.5])
    lo, hi = ax.get_ylim()
    assert hi > 12.0 and lo < -0.05
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["Ritz nodes beyond the colour scale", "λmax (top_eigenvalues)", "λmax (largest Ritz node)"]


def test_heatmap_without_outliers_marks_lambda_max_only():
    spectra = [(np.array([0.01, 10.0]), np.array([0.5, 0.5]))]
    ax = pp.render_density_heatmap([0], spectra, num_points=64, linthresh=0.1).axes[0]
    assert [line.get_label() for line in ax.lines] == ["λmax (largest Ritz node)"]
    assert list(ax.lines[0].get_ydata()) == [10.0]


def test_accuracy_renderer():
    fig = pp.render_accuracy_best([100.0, 80.0, 64.0], [0.91, 0.93, 0.92], title="t")
    ax = fig.axes[0]
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [100.0, 80.0, 64.0])
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), [0.91, 0.93, 0.92])
    assert ax.get_ylabel() == "Test accuracy" and ax.get_xlabel() == "Remaining parameters (%)"
    assert ax.yaxis.get_major_formatter()(0.925, 0) == "92.5%"
    lo, hi = ax.get_ylim()
    assert hi - lo == pytest.approx(0.05) and lo < 0.91 and hi > 0.93  # two points of accuracy do not fill the panel
    lo, hi = pp.render_accuracy_best([100.0, 10.0], [0.9, 0.2]).axes[0].get_ylim()
    assert lo < 0.2 and hi > 0.9


def test_best_summary_panels_share_the_percent_axis():
    fig = pp.render_best_summary([100.0, 80.0, 64.0], top_eigenvalue=[12.0, 6.0, 8.0], trace=[50.0, 27.0, 39.0],
                                 trace_stderr=[0.5, 1.0, np.nan], test_accuracy=[0.9, 0.92, 0.93], title="best")
    top, trace, accuracy = fig.axes
    assert [ax.get_ylabel() for ax in fig.axes] == ["Top Hessian eigenvalue", "Hessian trace", "Test accuracy"]
    for ax, values in ((top, [12.0, 6.0, 8.0]), (trace, [50.0, 27.0, 39.0]), (accuracy, [0.9, 0.92, 0.93])):
        np.testing.assert_array_equal(ax.lines[0].get_xdata(), [100.0, 80.0, 64.0])
        np.testing.assert_array_equal(ax.lines[0].get_ydata(), values)
        assert ax.get_xlim() == accuracy.get_xlim() and ax.xaxis_inverted()
    edges = _band_edges(trace)
    assert edges[100.0] == (49.0, 51.0) and edges[80.0] == (25.0, 29.0) and 64.0 not in edges
    assert not top.collections and not accuracy.collections
    assert top.get_xlabel() == "" and accuracy.get_xlabel() == "Remaining parameters (%)"
    assert fig.get_suptitle() == "best"
    only = pp.render_best_summary([100.0], test_accuracy=[0.9])
    assert [ax.get_ylabel() for ax in only.axes] == ["Test accuracy"]
    with pytest.raises(ValueError, match="nothing|no top"):
        pp.render_best_summary([100.0])
