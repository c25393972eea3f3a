"""The seed's five saving functions and the layer match: files where the seed put them, and the plotted data
equal to the numbers in the output tree (captured from the figures before they are saved)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.collections import PolyCollection, QuadMesh

import prunehess.plots as pp
from prunehess.plots import _common
from prunehess.storage import atomic_write_bytes


def band_edges(band: PolyCollection) -> dict[float, tuple[float, float]]:
    """``x -> (lower, upper)`` of a fill_between band, read from its polygon's vertices."""
    edges: dict[float, list[float]] = {}
    for path in band.get_paths():
        for x, y in path.vertices:
            edges.setdefault(float(x), []).append(float(y))
    return {x: (min(ys), max(ys)) for x, ys in edges.items()}


def expected_band(x, values, stderrs) -> dict[float, tuple[float, float]]:
    return {float(xi): (v - 2 * s, v + 2 * s) for xi, v, s in zip(x, values, stderrs)}


@pytest.fixture
def captured(monkeypatch):
    """Every figure the wrappers save, as {relative path: (title, lines, mesh array, offsets, bands, marks …)}."""
    shots: dict[str, dict] = {}

    def capture(figure, path, dpi=100):
        ax = figure.axes[0]
        meshes = [c for c in ax.collections if isinstance(c, QuadMesh)]
        bands = [c for c in ax.collections if isinstance(c, PolyCollection) and not isinstance(c, QuadMesh)]
        scatters = [c for c in ax.collections if c not in meshes and c not in bands]
        shots[Path(path).as_posix()] = dict(
            title=ax.get_title(),
            xlabel=ax.get_xlabel(),
            ylabel=ax.get_ylabel(),
            yscale=ax.get_yscale(),
            ylim=ax.get_ylim(),
            lines=[(np.asarray(l.get_xdata(), float), np.asarray(l.get_ydata(), float)) for l in ax.lines],
            marks={l.get_label(): (np.asarray(l.get_xdata(), float), np.asarray(l.get_ydata(), float))
                   for l in ax.lines if not l.get_label().startswith("_")},
            mesh=np.asarray(meshes[0].get_array()) if meshes else None,
            offsets=np.asarray(scatters[0].get_offsets()) if scatters else None,
            bands=[band_edges(b) for b in bands],
            legend=[t.get_text() for lg in [ax.get_legend(), *figure.legends] if lg for t in lg.get_texts()],
        )
        figure.clear()  # drawing is slow and these tests check data; test_plot_all saves real images
        atomic_write_bytes(path, b"captured")
        return Path(path)

    monkeypatch.setattr(_common, "save_figure", capture)
    return shots


def _relative(paths, base):
    return sorted(Path(p).relative_to(base).as_posix() for p in paths)


@pytest.mark.parametrize("function, metric", [(pp.plot_top_eigenvalues, "top_eigenvalues"),
                                              (pp.plot_trace, "trace")])
def test_within_iteration_trends(tree, known, tmp_path, captured, function, metric):
    value = known.top_value if metric == "top_eigenvalues" else known.trace_value
    ITERATIONS, EPOCHS, PERCENTS = known.ITERATIONS, known.EPOCHS, known.PERCENTS
    save = tmp_path / "figs"
    written = function(tree.root / metric, save, layers=1, models=4, epochs=3, model_name="fc1",
                       dataset_name="digits")
    expected = [f"{folder}/model{i}.jpg" for folder in ("layer0", "whole_model") for i in ITERATIONS]
    assert _relative(written, save) == expected
    assert all((save / name).stat().st_size > 0 for name in expected)
    for layer, folder in ((None, "whole_model"), (0, "layer0")):
        for i in ITERATIONS:
            shot = captured[(save / folder / f"model{i}.jpg").as_posix()]
            x, y = shot["lines"][0]
            np.testing.assert_array_equal(x, EPOCHS)
            np.testing.assert_array_equal(y, [value(i, e, layer) for e in EPOCHS])  # exact: written by repr
            title = "Top eigenvalues plot" if metric == "top_eigenvalues" else "Trace plot"
            assert shot["title"] == f"{title} for fc1 on digits ({PERCENTS[i]:.1f}% params remaining)"
            assert shot["xlabel"] == "Epoch"
    if metric == "top_eigenvalues":
        # the second eigenvalue of each file is drawn too, and the values span decades: log axis
        shot = captured[(save / "whole_model" / "model1.jpg").as_posix()]
        np.testing.assert_allclose(shot["lines"][1][1], [value(1, e) / 3 for e in EPOCHS])
        assert shot["yscale"] == "log"
        assert all(not captured[name]["bands"] for name in captured)  # standard errors are the trace's alone


def test_trace_bands_are_two_standard_errors_of_each_checkpoint(tree, known, tmp_path, captured):
    """Every trace figure, whole model and layers, within and across iterations: the band is the trace file's
    value ± 2 × the trace_stderr of summary.csv's row of the same (iteration, epoch, layer)."""
    ITERATIONS, EPOCHS, PERCENTS = known.ITERATIONS, known.EPOCHS, known.PERCENTS
    trace, stderr = known.trace_value, known.stderr_value
    pp.plot_trace(tree.root, tmp_path / "within", layers=2)
    pp.plot_trace_best(tree.root, tmp_path / "best", layers=2)
    for layer, folder in ((None, "whole_model"), (0, "layer0"), (1, "layer1")):
        for i in ITERATIONS:
            shot = captured[(tmp_path / "within" / folder / f"model{i}.jpg").as_posix()]
            (band,) = shot["bands"]
            expected = expected_band(EPOCHS, [trace(i, e, layer) for e in EPOCHS],
                                     [stderr(i, e, layer) for e in EPOCHS])
            assert band.keys() == expected.keys()
            np.testing.assert_allclose([band[x] for x in EPOCHS], [expected[x] for x in EPOCHS], rtol=1e-12)
            assert "± 2 standard errors" in shot["legend"]
        (band,) = captured[(tmp_path / "best" / folder / "best_model.jpg").as_posix()]["bands"]
        expected = expected_band(PERCENTS, [trace(i, None, layer) for i in ITERATIONS],
                                 [stderr(i, None, layer) for i in ITERATIONS])
        np.testing.assert_allclose([band[x] for x in PERCENTS], [expected[x] for x in PERCENTS], rtol=1e-12)


def test_trace_band_of_the_checkpoint_picked_by_accuracy(tree_without_best, known, tmp_path, captured):
    ACCURACY, ITERATIONS, PERCENTS = known.ACCURACY, known.ITERATIONS, known.PERCENTS
    pp.plot_trace_best(tree_without_best.root, tmp_path, layers=1)
    (band,) = captured[(tmp_path / "layer0" / "best_model.jpg").as_posix()]["bands"]
    expected = expected_band(PERCENTS, [known.trace_value(i, ACCURACY[i], 0) for i in ITERATIONS],
                             [known.stderr_value(i, ACCURACY[i], 0) for i in ITERATIONS])
    np.testing.assert_allclose([band[x] for x in PERCENTS], [expected[x] for x in PERCENTS], rtol=1e-12)


def test_outputs_without_standard_errors_still_plot(known, tmp_path, captured):
    tree = known.build_tree(tmp_path / "old", layers=(), iterations=(0, 1), epochs=(0, 10), stderr=False)
    assert "trace_stderr" not in tree.layout.read_summary()[0]
    written = pp.plot_trace(tree.root, tmp_path / "a") + pp.plot_trace_best(tree.root, tmp_path / "b")
    assert len(written) == 3
    for name in written:
        shot = captured[Path(name).as_posix()]
        assert shot["bands"] == [] and shot["legend"] == [] and len(shot["lines"]) == 1


def test_models_and_epochs_default_to_what_is_there(tree, known, tmp_path, captured):
    ITERATIONS, EPOCHS = known.ITERATIONS, known.EPOCHS
    written = pp.plot_trace(tree.root, tmp_path)  # the output root is accepted too
    assert _relative(written, tmp_path) == [f"whole_model/model{i}.jpg" for i in ITERATIONS]
    written = pp.plot_trace(tree.root / "trace", tmp_path / "b", models=3, epochs=2)  # as the seed: tags 001-002
    assert _relative(written, tmp_path / "b") == ["whole_model/model0.jpg", "whole_model/model1.jpg"]
    x, _ = captured[(tmp_path / "b" / "whole_model" / "model1.jpg").as_posix()]["lines"][0]
    np.testing.assert_array_equal(x, EPOCHS[:2])


@pytest.mark.parametrize("function, metric", [(pp.plot_top_eigenvalues_best, "top_eigenvalues"),
                                              (pp.plot_trace_best, "trace")])
def test_best_trends_use_the_best_files(tree, known, tmp_path, captured, function, metric):
    value = known.top_value if metric == "top_eigenvalues" else known.trace_value
    ITERATIONS, PERCENTS = known.ITERATIONS, known.PERCENTS
    written = function(tree.root / metric, tmp_path, layers=2, model_name="fc1", dataset_name="digits")
    assert _relative(written, tmp_path) == ["layer0/best_model.jpg", "layer1/best_model.jpg",
                                            "whole_model/best_model.jpg"]
    for layer, folder in ((None, "whole_model"), (0, "layer0"), (1, "layer1")):
        shot = captured[(tmp_path / folder / "best_model.jpg").as_posix()]
        x, y = shot["lines"][0]
        np.testing.assert_array_equal(x, PERCENTS)
        np.testing.assert_array_equal(y, [value(i, None, layer) for i in ITERATIONS])
        assert shot["xlabel"] == "Remaining parameters (%)"
        title = "Top eigenvalues plot" if metric == "top_eigenvalues" else "Trace plot"
        assert shot["title"] == f"{title} for fc1 on digits"


def test_best_trends_fall_back_to_summary_accuracy(tree_without_best, known, tmp_path, captured):
    ACCURACY, ITERATIONS, trace_value = known.ACCURACY, known.ITERATIONS, known.trace_value
    pp.plot_trace_best(tree_without_best.root, tmp_path, layers=1)
    for layer, folder in ((None, "whole_model"), (0, "layer0")):
        _, y = captured[(tmp_path / folder / "best_model.jpg").as_posix()]["lines"][0]
        np.testing.assert_array_equal(y, [trace_value(i, ACCURACY[i], layer) for i in ITERATIONS])


def test_density_heatmap_per_iteration(tree, known, tmp_path, captured):
    EPOCHS, spectrum_of = known.EPOCHS, known.spectrum_of
    written = pp.plot_density_eigen(tree.root / "density_eigen", tmp_path, layers=1, models=3, model_name="fc1")
    assert _relative(written, tmp_path) == ["layer0/model0.jpg", "layer0/model1.jpg",
                                            "whole_model/model0.jpg", "whole_model/model1.jpg"]
    shot = captured[(tmp_path / "layer0" / "model1.jpg").as_posix()]
    expected = pp.density_map([spectrum_of(1, e, 0) for e in EPOCHS])
    np.testing.assert_allclose(shot["mesh"].reshape(expected.density.shape), expected.density)
    assert shot["yscale"] == "symlog" and shot["ylabel"] == "Eigenvalue"
    assert shot["title"] == "Spectral density for fc1 (80.0% params remaining)"


def test_density_heatmap_marks_each_epochs_top_eigenvalue(tree, known, tmp_path, captured):
    """λmax of every epoch (the largest value of its top_eigenvalues file) is a marker, inside the value axis,
    even where it lies beyond every SLQ node (epoch 20 here: 100 × … against nodes up to 50 × …)."""
    EPOCHS, ITERATIONS, spectrum_of, top_value = known.EPOCHS, known.ITERATIONS, known.spectrum_of, known.top_value
    pp.plot_density_eigen(tree.root, tmp_path, layers=2)
    for layer, folder in ((None, "whole_model"), (0, "layer0"), (1, "layer1")):
        for i in ITERATIONS:
            shot = captured[(tmp_path / folder / f"model{i}.jpg").as_posix()]
            x, y = shot["marks"]["λmax (top_eigenvalues)"]
            np.testing.assert_array_equal(x, EPOCHS)
            np.testing.assert_array_equal(y, [top_value(i, e, layer) for e in EPOCHS])
            lo, hi = shot["ylim"]
            assert hi > max(y) and lo < min(spectrum_of(i, e, layer)[0].min() for e in EPOCHS)
            assert "λmax (top_eigenvalues)" in shot["legend"]
    # without a top_eigenvalues file, λmax is the largest Ritz node
    import shutil

    from prunehess.layout import OutputLayout

    copy = OutputLayout(shutil.copytree(tree.root, tmp_path / "copy"))
    for e in EPOCHS:
        copy.result_path("top_eigenvalues", 2, e).unlink()
    pp.plot_density_eigen(copy.root, tmp_path / "no_top")
    marks = captured[(tmp_path / "no_top" / "whole_model" / "model2.jpg").as_posix()]["marks"]
    assert "λmax (top_eigenvalues)" not in marks
    np.testing.assert_array_equal(marks["λmax (largest Ritz node)"][1], [spectrum_of(2, e)[0].max() for e in EPOCHS])


def test_density_scatter_is_the_seed_plot(tree, known, tmp_path, captured):
    EPOCHS, spectrum_of = known.EPOCHS, known.spectrum_of
    pp.plot_density_eigen(tree.root, tmp_path, style="scatter")
    offsets = captured[(tmp_path / "whole_model" / "model2.jpg").as_posix()]["offsets"]
    nodes = np.concatenate([spectrum_of(2, e)[0] for e in EPOCHS])
    np.testing.assert_array_equal(offsets[:, 1], nodes)
    np.testing.assert_array_equal(offsets[:, 0], np.repeat(EPOCHS, len(nodes) // len(EPOCHS)))
    marks = captured[(tmp_path / "whole_model" / "model2.jpg").as_posix()]["marks"]
    np.testing.assert_array_equal(marks["λmax (top_eigenvalues)"][1], [known.top_value(2, e) for e in EPOCHS])
    with pytest.raises(ValueError, match="heatmap, scatter"):
        pp.plot_density_eigen(tree.root, tmp_path, style="violin")


def test_layer_match(tree, known, tmp_path, captured):
    EPOCHS, ITERATIONS, PERCENTS, spectrum_of = known.EPOCHS, known.ITERATIONS, known.PERCENTS, known.spectrum_of
    stats = pytest.importorskip("scipy.stats")

    def wasserstein_1(nodes_a, weights_a, nodes_b, weights_b):  # an independent reference
        return stats.wasserstein_distance(nodes_a, nodes_b, weights_a, weights_b)

    written = pp.plot_layer_match(tree.root / "density_eigen", tmp_path)
    assert _relative(written, tmp_path) == ["best_model.jpg", "model0.jpg", "model1.jpg", "model2.jpg"]
    shot = captured[(tmp_path / "model2.jpg").as_posix()]
    for layer in (0, 1):
        x, y = shot["lines"][layer]
        np.testing.assert_array_equal(x, EPOCHS)
        expected = [wasserstein_1(*spectrum_of(2, e, layer), *spectrum_of(2, e)) for e in EPOCHS]
        np.testing.assert_allclose(y, expected, rtol=1e-12)
    x, y = captured[(tmp_path / "best_model.jpg").as_posix()]["lines"][1]
    np.testing.assert_array_equal(x, PERCENTS)
    np.testing.assert_allclose(y, [wasserstein_1(*spectrum_of(i, None, 1), *spectrum_of(i, None)) for i in ITERATIONS])


def test_accuracy_of_the_best_checkpoints(tree, tree_without_best, known, tmp_path, captured):
    ITERATIONS, PERCENTS = known.ITERATIONS, known.PERCENTS
    written = pp.plot_accuracy_best(tree.root / "trace", tmp_path / "a", model_name="fc1", dataset_name="digits")
    assert _relative(written, tmp_path / "a") == ["best_model.jpg"]
    shot = captured[(tmp_path / "a" / "best_model.jpg").as_posix()]
    x, y = shot["lines"][0]
    np.testing.assert_array_equal(x, PERCENTS)
    rows = {(r["iteration"], r["epoch"], r["layer"]): r["test_accuracy"] for r in tree.layout.read_summary()}
    np.testing.assert_array_equal(y, [rows[(i, None, None)] for i in ITERATIONS])  # the best rows of summary.csv
    assert (shot["title"], shot["xlabel"], shot["ylabel"]) == ("Test accuracy plot for fc1 on digits",
                                                               "Remaining parameters (%)", "Test accuracy")
    assert shot["ylim"][1] - shot["ylim"][0] >= 0.05 - 1e-12
    pp.plot_accuracy_best(tree_without_best.root, tmp_path / "b", models=3)  # no best rows: the best snapshot's
    _, y = captured[(tmp_path / "b" / "best_model.jpg").as_posix()]["lines"][0]
    np.testing.assert_array_equal(y, [0.9, 0.9])


def test_plot_all(tree, tmp_path):
    written = pp.plot_all(tree.root, tmp_path, layers=0, models=2, epochs=1)
    assert _relative(written, tmp_path) == [
        "SLQ/whole_model/model0.jpg",
        "accuracy_best/best_model.jpg",
        "top_eigenvalues/whole_model/model0.jpg",
        "top_eigenvalues_best/whole_model/best_model.jpg",
        "trace/whole_model/model0.jpg",
        "trace_best/whole_model/best_model.jpg",
    ]
    from PIL import Image

    with Image.open(written[0]) as image:
        assert image.format == "JPEG" and image.size[0] > 300


def test_large_epochs_and_iterations_sort_numerically(tmp_path, captured):
    from prunehess.layout import OutputLayout

    out = OutputLayout(tmp_path / "out")
    epochs = [150, 0, 100, 50, 5]
    for iteration in (0, 9, 120):
        for epoch in epochs:
            out.write_trace(iteration, epoch, 1000.0 * iteration + epoch)
    out.write_remain_params([100.0 * 0.99**i for i in range(121)])
    written = pp.plot_trace(out.root, tmp_path / "f")
    assert _relative(written, tmp_path / "f") == ["whole_model/model0.jpg", "whole_model/model120.jpg",
                                                  "whole_model/model9.jpg"]
    x, y = captured[(tmp_path / "f" / "whole_model" / "model120.jpg").as_posix()]["lines"][0]
    np.testing.assert_array_equal(x, [0, 5, 50, 100, 150])
    np.testing.assert_array_equal(y, [120000.0, 120005.0, 120050.0, 120100.0, 120150.0])
    assert out.result_path("trace", 120, 150).name == "trace121_150.txt"


def test_iteration_with_only_a_best_file_is_left_out_of_epoch_plots(tmp_path, captured):
    from prunehess.layout import OutputLayout

    out = OutputLayout(tmp_path / "out")
    out.write_trace(0, 0, 1.0)
    out.write_trace(0, None, 1.5)
    out.write_trace(1, None, 2.0)  # no snapshots
    out.write_remain_params([100.0, 80.0])
    assert _relative(pp.plot_trace(out.root, tmp_path / "a"), tmp_path / "a") == ["whole_model/model0.jpg"]
    pp.plot_trace_best(out.root, tmp_path / "b")
    _, y = captured[(tmp_path / "b" / "whole_model" / "best_model.jpg").as_posix()]["lines"][0]
    np.testing.assert_array_equal(y, [1.5, 2.0])


def test_a_tree_written_by_the_seed(tmp_path):
    """The seed's own files: no trailing newline, weights summing to ~1.026, a hand-written remain_params."""
    root = tmp_path / "output_fc1_mnist_lt"
    rng = np.random.default_rng(5)
    for postfix in ("", "_layer0"):
        for tag in ("000_best", "001_00", "001_10", "001_best", "002_00", "002_10", "002_best"):
            for metric, text in (("top_eigenvalues", "22.236249923706055"), ("trace", "87.30003561739062"),
                                 ("density_eigen", "".join(f"{v}\n" for v in rng.normal(size=100))),
                                 ("density_weight", "".join(f"{v}\n" for v in rng.dirichlet(np.ones(100)) * 1.026))):
                folder = root / f"{metric}{postfix}"
                folder.mkdir(parents=True, exist_ok=True)
                (folder / f"{metric}{tag}.txt").write_text(text)
    remain = tmp_path / "remain_params.txt"
    remain.write_text("100.0\n80.0\n")
    figs = tmp_path / "fig_fc1_mnist_lt"
    kwargs = dict(layers=1, models=3, epochs=2, model_name="fc1", dataset_name="mnist",
                  remain_params_file_path=str(remain))
    written = []
    for function, metric, folder in ((pp.plot_top_eigenvalues, "top_eigenvalues", "top_eigenvalues"),
                                     (pp.plot_trace, "trace", "trace"), (pp.plot_density_eigen, "density_eigen", "SLQ"),
                                     (pp.plot_top_eigenvalues_best, "top_eigenvalues", "top_eigenvalues_best"),
                                     (pp.plot_trace_best, "trace", "trace_best")):
        written += function(f"{root}/{metric}/", f"{figs}/{folder}/", **kwargs)  # strings with slashes, as the seed
    assert len(written) == 3 * 2 * 2 + 2 * 2
    assert (figs / "SLQ" / "layer0" / "model1.jpg").is_file()
    assert (figs / "trace_best" / "whole_model" / "best_model.jpg").is_file()


def test_best_accuracy_without_the_best_rows_accuracy(known, tmp_path):
    """A best row without an accuracy: the highest snapshot's (the earliest on ties), as the best trends pick."""
    from prunehess.layout import Column

    tree = known.build_tree(tmp_path / "o", layers=(), iterations=(0, 1), epochs=(0, 10))
    rows = tree.layout.read_summary()
    for row in rows:
        if row["iteration"] == 1 and row["epoch"] is None:
            row["test_accuracy"] = None
    tree.layout.write_summary(rows, [Column("test_accuracy", "float")])
    assert pp.best_accuracy(tree.layout) == {0: (None, known.BEST_ACCURACY[0]), 1: (10, 0.9)}
    for row in rows:
        if row["iteration"] == 1 and row["epoch"] == 0:
            row["test_accuracy"] = 0.9  # ties epoch 10's
    tree.layout.write_summary(rows, [Column("test_accuracy", "float")])
    assert pp.best_accuracy(tree.layout)[1] == (0, 0.9)
