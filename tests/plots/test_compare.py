"""``compare_runs`` and ``prunehess compare`` on hand-written output trees: what is drawn equals the files, uneven
sparsity levels are paired by nearest remaining percent (and the figures say so), runs of another model are
refused, labels, and the page's sections in order."""
from __future__ import annotations

import re

import numpy as np
import pytest
from click.testing import CliRunner
from matplotlib.collections import PolyCollection

import prunehess.plots as pp
from prunehess.cli import main
from prunehess.errors import ConfigError, DataError
from prunehess.estimators import wasserstein_distance
from prunehess.layout import Column, OutputLayout
from prunehess.plots.compare import (
    compare_runs,
    load_runs,
    match_levels,
    render_distance_matrices,
    render_spectrum_distances,
)

COLUMNS = [Column("iteration", "int"), Column("epoch", "epoch"), Column("layer", "int"),
           Column("remaining_percent", "float"), Column("test_accuracy", "float"),
           Column("top_eigenvalues", "floats"), Column("trace", "float"), Column("trace_stderr", "float"),
           Column("bottom_eigenvalues", "floats"), Column("negative_mass", "float"),
           Column("abs_min_over_max", "float"), Column("hvps", "int"), Column("seconds", "float")]
PANELS = ["Top Hessian eigenvalue", "Hessian trace", "λmin (smallest eigenvalue)", "|λmin / λmax|", "Test accuracy"]


def _values(scale: float, i: int, layer: int | None) -> dict:
    """Distinct numbers for every run (``scale``), iteration and block, so a value drawn from the wrong row fails."""
    block = 1.0 if layer is None else 0.2 * (layer + 1)
    top = scale * block * (10.0 - 2.0 * i)
    bottom = -0.1 * scale * block * (i + 1)
    return dict(top=top, trace=scale * block * (50.0 - 7.0 * i), stderr=0.5 + 0.1 * i + (layer or 0) * 0.05,
                bottom=bottom, ratio=abs(bottom / top), accuracy=0.9 - 0.01 * scale * i)


def write_run(root, percents=(100.0, 80.0, 64.0), *, scale=1.0, layers=(0, 1), model="fc1", dataset="digits",
              bottom=True, best=True, config_extra=None):
    """An extract output with best checkpoints (and one epoch snapshot) per iteration, per-layer results for
    ``layers``, and densities of the whole model."""
    out = OutputLayout(root)
    rows = []
    for i, percent in enumerate(percents):
        for layer in (None, *layers):
            v = _values(scale, i, layer)
            for epoch in ((None, 5) if best else (5,)):
                out.write_top_eigenvalues(i, epoch, [v["top"], v["top"] / 2], layer)
                out.write_trace(i, epoch, v["trace"], layer)
                row = dict(iteration=i, epoch=epoch, layer=layer, remaining_percent=percent,
                           test_accuracy=v["accuracy"] if layer is None else None, top_eigenvalues=[v["top"]],
                           trace=v["trace"], trace_stderr=v["stderr"], hvps=10, seconds=0.1)
                if bottom:
                    out.write_values("bottom_eigenvalues", i, epoch, [v["bottom"]], layer)
                    row.update(bottom_eigenvalues=[v["bottom"]], negative_mass=0.1, abs_min_over_max=v["ratio"])
                rows.append(row)
        rng = np.random.default_rng(int(scale * 100) + i)
        nodes = np.sort(np.concatenate([rng.normal(0, 0.05, 8), [scale * (10.0 - 2.0 * i)]]))
        weights = rng.uniform(0.5, 1.0, 9)
        for epoch in (None, 5):
            out.write_density(i, epoch, nodes, weights / weights.sum())
    out.write_summary(rows, [c for c in COLUMNS if bottom or c.name not in
                             ("bottom_eigenvalues", "negative_mass", "abs_min_over_max")])
    out.write_remain_params(percents)
    out.write_layers([(k, f"classifier.{2 * k}.weight", 100) for k in layers])
    out.write_config({"model": model, "dataset": dataset, "output": str(root), **(config_extra or {})})
    return out


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    base = tmp_path_factory.mktemp("pair")
    return write_run(base / "lt"), write_run(base / "random", scale=1.5)


@pytest.fixture(scope="module")
def compared(pair, tmp_path_factory):
    return compare_runs([pair[0].root, pair[1].root], save_path=tmp_path_factory.mktemp("figs"), dpi=40)


def _lines(ax) -> dict:
    return {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.lines}


def _band_edges(ax) -> list[dict[float, tuple[float, float]]]:
    found = []
    for band in (c for c in ax.collections if isinstance(c, PolyCollection)):
        edges: dict[float, tuple[float, float]] = {}
        for x, y in band.get_paths()[0].vertices:
            lo, hi = edges.get(float(x), (np.inf, -np.inf))
            edges[float(x)] = (min(lo, float(y)), max(hi, float(y)))
        found.append(edges)
    return found


def _expected(out: OutputLayout, layer=None) -> dict:
    """What the overlay must draw, read back from the tree's files (best checkpoints)."""
    percents = out.read_remain_params()
    best = [r for r in out.read_summary() if r["epoch"] is None and r["layer"] == layer]
    its = range(len(percents))
    data = {"Top Hessian eigenvalue": [float(out.read_result("top_eigenvalues", i, None, layer)[0]) for i in its],
            "Hessian trace": [float(out.read_result("trace", i, None, layer)[0]) for i in its],
            "λmin (smallest eigenvalue)": [float(out.read_result("bottom_eigenvalues", i, None, layer)[0])
                                           for i in its],
            "|λmin / λmax|": [r["abs_min_over_max"] for r in best],
            "Test accuracy": [r["test_accuracy"] for r in best]}
    return {"percents": percents, "stderr": [r["trace_stderr"] for r in best], **data}


def test_overlay_draws_the_files(pair, compared):
    figure = compared.figures["overlay"]
    axes = [ax for ax in figure.axes if ax.get_ylabel()]
    assert [ax.get_ylabel() for ax in axes] == PANELS
    for out, label in zip(pair, ("lt", "random")):
        want = _expected(out)
        for ax in axes:
            x, y = _lines(ax)[label]
            assert x == want["percents"]
            np.testing.assert_allclose(y, want[ax.get_ylabel()], rtol=0, atol=0)
    trace = axes[1]
    edges = _band_edges(trace)
    assert len(edges) == 2
    for out, band in zip(pair, edges):
        want = _expected(out)
        for p, v, se in zip(want["percents"], want["Hessian trace"], want["stderr"]):
            np.testing.assert_allclose(band[p], (v - 2 * se, v + 2 * se), rtol=1e-12)
    assert trace.xaxis_inverted() and trace.get_xscale() == "log"


def test_layers_present_in_every_run_are_overlaid(pair, compared, tmp_path):
    figure = compared.figures["layers_trace"]
    panels = [ax for ax in figure.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["layer 0 (classifier.0.weight)", "layer 1 (classifier.2.weight)"]
    for layer, ax in zip((0, 1), panels):
        for out, label in zip(pair, ("lt", "random")):
            assert _lines(ax)[label][1] == _expected(out, layer)["Hessian trace"]
    assert set(compared.figures) >= {"layers_top_eigenvalue", "layers_lambda_min", "layers_abs_min_over_max"}
    third = write_run(tmp_path / "three", layers=(0, 1, 2), scale=2.0)
    result = compare_runs([pair[0].root, third.root])
    panels = [ax for ax in result.figures["layers_top_eigenvalue"].axes if ax.get_title()]
    assert len(panels) == 2
    assert any("three's layer(s) 2 are not in every run" in note for note in result.notes)
    flat = write_run(tmp_path / "flat", layers=(), scale=2.0)
    result = compare_runs([pair[0].root, flat.root])
    assert not [name for name in result.figures if name.startswith("layers_")]
    assert [n for n in result.notes if n.startswith("per-layer")] == [
        "per-layer: flat has no per-layer results (extract --compute-each-layer); no layer compared"]


def test_spectrum_distances_equal_the_files(pair, compared):
    distances = compared.distances
    for i in range(3):
        a, b = ((out.read_result("density_eigen", i, None), out.read_result("density_weight", i, None))
                for out in pair)
        assert distances.distances[i, 0, 1] == pytest.approx(wasserstein_distance(*a, *b), rel=1e-12)
        assert distances.distances[i, 1, 0] == distances.distances[i, 0, 1] and distances.distances[i, 0, 0] == 0
    figure = compared.figures["spectrum_distance"]
    x, y = _lines(figure.axes[0])["random"]
    assert x == [100.0, 80.0, 64.0] and y == list(distances.to_first[1])
    text = (compared.page.parent / "spectrum_distances.csv").read_text().splitlines()
    assert text[0] == "reference_percent,run,run_percent,w1_to_lt" and len(text) == 4
    assert float(text[1].split(",")[3]) == distances.distances[0, 0, 1]


def test_uneven_levels_are_paired_by_nearest_percent(tmp_path):
    a = write_run(tmp_path / "a", (100.0, 80.0, 64.0, 51.2))
    b = write_run(tmp_path / "b", (100.0, 79.0, 50.0), scale=1.5)
    c = write_run(tmp_path / "c", (100.0, 50.0), scale=2.0)
    runs = load_runs([a.root, b.root, c.root])
    matching = match_levels(runs)
    assert matching.index == ((0, 1, 2, 3), (0, 1, None, 2), (0, None, None, 1))  # 80 -> 100 is not mutual
    np.testing.assert_allclose(matching.gaps[1], [0.0, 1.0, np.nan, 1.2], rtol=1e-12)
    assert not matching.exact
    note = matching.note()
    assert "b: 80.0↔79.0 (gap 1.0), 51.2↔50.0 (gap 1.2); none near 64.0 %" in note
    assert "c: 51.2↔50.0 (gap 1.2); none near 80.0, 64.0 %" in note
    result = compare_runs([a.root, b.root, c.root])
    assert result.notes[0] == note
    overlay = result.figures["overlay"]
    assert "79.0 (gap 1.0)" in " ".join(t.get_text() for ax in overlay.axes for t in ax.texts)
    assert _lines(overlay.axes[0])["b"][0] == [100.0, 79.0, 50.0]  # each run at its own levels
    distances = result.distances
    assert np.isnan(distances.distances[2, 0, 1]) and np.isfinite(distances.distances[3, 0, 1])
    nodes = [out.read_result(m, i, None) for out, i in ((a, 3), (b, 2)) for m in ("density_eigen", "density_weight")]
    assert distances.distances[3, 0, 1] == pytest.approx(wasserstein_distance(*nodes), rel=1e-12)
    assert "matched" not in result.figures["overlay"].get_suptitle()
    assert "spectrum_matrices" in result.figures
    supx = result.figures["spectrum_distance"]._supxlabel.get_text()
    assert "none near 64.0" in supx.replace("\n", " ")


def test_same_levels_need_no_note(pair, compared):
    assert compared.matching.exact and compared.matching.note() == ""
    assert compared.notes == ()


def test_runs_of_another_model_are_refused(pair, tmp_path):
    other = write_run(tmp_path / "lenet", model="lenet5")
    with pytest.raises(ConfigError) as refused:
        load_runs([pair[0].root, other.root])
    assert str(refused.value) == (f"{pair[0].config_file} vs {other.config_file}: model fc1 vs lenet5; compare runs "
                                  "of one model and dataset")
    mnist = write_run(tmp_path / "mnist", dataset="mnist")
    result = CliRunner().invoke(main, ["compare", str(pair[0].root), str(mnist.root)])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert result.stderr == (f"Error: {pair[0].config_file} vs {mnist.config_file}: dataset digits vs mnist; "
                             "compare runs of one model and dataset\n")


def test_labels(pair, tmp_path):
    assert [run.label for run in load_runs([pair[0].root, pair[1].root])] == ["lt", "random"]
    assert [run.label for run in load_runs([pair[0].root, pair[1].root], ["LT", "rand"])] == ["LT", "rand"]
    a, b = write_run(tmp_path / "x" / "output"), write_run(tmp_path / "y" / "output")
    assert [run.label for run in load_runs([a.root, b.root])] == ["x/output", "y/output"]
    assert [run.label for run in load_runs([a.root, a.root])] == ["x/output", "x/output #2"]
    ggn = write_run(tmp_path / "ggn_run", config_extra={"curvature": "ggn"})
    runs = load_runs([pair[0].root, ggn.root])
    assert [run.label for run in runs] == ["hessian", "ggn"]
    figure = compare_runs([pair[0].root, ggn.root]).figures["overlay"]
    assert figure.axes[0].get_ylabel() == "Top curvature eigenvalue"
    with pytest.raises(ConfigError, match="labels: 1 given"):
        load_runs([pair[0].root, pair[1].root], ["only"])
    with pytest.raises(ConfigError, match="labels: a given more than once"):
        load_runs([pair[0].root, pair[1].root], ["a", "a"])


def test_a_run_without_bottom_eigenvalues(pair, tmp_path):
    plain = write_run(tmp_path / "plain", bottom=False, scale=2.0)
    result = compare_runs([pair[0].root, plain.root])
    axes = {ax.get_ylabel(): ax for ax in result.figures["overlay"].axes if ax.get_ylabel()}
    assert list(_lines(axes["λmin (smallest eigenvalue)"])) == ["lt"]
    assert [t.get_text() for t in axes["|λmin / λmax|"].texts] == ["no |λmin / λmax| for: plain"]
    assert any(note.startswith("λmin (smallest eigenvalue): drawn for lt only; no bottom_eigenvalues values in "
                               "plain") for note in result.notes)
    out = CliRunner().invoke(main, ["compare", str(pair[0].root), str(plain.root), "--save-path",
                                    str(tmp_path / "figs")])
    assert out.exit_code == 0, out.output
    assert "Note: λmin (smallest eigenvalue): drawn for lt only" in out.output


def test_page_sections_in_order(compared):
    text = compared.page.read_text(encoding="utf-8")
    assert compared.page.name == "compare.html"
    assert re.findall(r'<h2 id="([a-z]+)"', text) == ["differs", "layers", "spectra", "config"]
    assert not re.search(r"""(src|href)=["'](?!data:|#)""", text)
    images = re.findall(r'<img alt="([^"]*)" src="data:image/png;base64,', text)
    assert len(images) == len(compared.figures) == 7
    assert text.index("The top eigenvalue, trace, λmin") < text.index("layer (the layer") < text.index(
        "Wasserstein-1 distance between each run") < text.index("<summary>lt: ")
    assert text.count("<details>") == 2 and "<summary>random: " in text
    story = re.search(r'<div class="story">(.*?)</div>', text).group(1)
    assert "lt and random: 3 pruning iterations each, from 100 % to 64 % of weights remaining." in story
    assert ("Trace, densest → sparsest: lt 50 ± 1 → 36 ± 1.4 (0.72×); random 75 ± 1 → 54 ± 1.4 (0.72×)."
            in story)
    assert "<td class=\"l\">output</td>" in text  # the options that differ


def test_figures_stay_drawn_and_files_are_written(compared):
    assert all(fig.axes for fig in compared.figures.values())
    names = sorted(p.name for p in compared.written)
    assert names == sorted([f"{n}.png" for n in compared.figures] + ["spectrum_distances.csv", "compare.html"])
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in compared.written if p.suffix == ".png")


@pytest.mark.parametrize("case, message", [
    ("one", "compare: 1 output folder given ({a}); compare needs two or more"),
    ("missing", "{b}: no such folder"),
    ("no_summary", "{b}/summary.csv: not found (run prunehess extract into {b} first)"),
    ("no_columns", "{b}/summary.csv: none of the columns abs_min_over_max, bottom_eigenvalues, test_accuracy, "
                   "top_eigenvalues, trace; nothing to compare"),
    ("no_layer", "{b}/summary.csv: header lacks the column layer"),
    ("no_best", "{b}/summary.csv: no best checkpoints (whole-model rows with epoch 'best'); compare reads each "
                "pruning iteration's best checkpoint"),
])
def test_bad_input_is_one_line(pair, tmp_path, case, message):
    a, b = pair[0].root, tmp_path / "b"
    if case == "no_summary":
        b.mkdir()
    elif case == "no_best":
        write_run(b, best=False)
    elif case in ("no_columns", "no_layer"):
        b.mkdir()
        text = {"no_columns": "iteration,epoch,layer,seconds\n0,best,,1.0\n",
                "no_layer": "iteration,epoch,trace\n0,best,1.0\n"}[case]
        (b / "summary.csv").write_text(text)
    args = [str(a)] if case == "one" else [str(a), str(b)]
    result = CliRunner().invoke(main, ["compare", *args, "--save-path", str(tmp_path / "figs")])
    assert result.exit_code == 1
    assert result.stderr == f"Error: {message.format(a=a, b=b)}\n"
    assert not (tmp_path / "figs").exists()
    with pytest.raises((ConfigError, DataError)):
        load_runs([a] if case == "one" else [a, b])


def test_renderers_take_numbers_and_axes(pair):
    from matplotlib.figure import Figure

    runs = load_runs([pair[0].root, pair[1].root])
    figure = Figure()
    axes = figure.subplots(1, 2)
    out = pp.render_compare_overlay([run.whole for run in runs], quantities=["trace", "test_accuracy"], axes=axes)
    assert out is figure and [ax.get_ylabel() for ax in axes] == ["Hessian trace", "Test accuracy"]
    fig = render_spectrum_distances([100.0, 50.0], {"b": [0.0, 0.5]}, reference="a")
    assert _lines(fig.axes[0])["b"] == ([100.0, 50.0], [0.0, 0.5])
    assert fig.axes[0].get_ylabel() == "Wasserstein-1 distance to a"
    matrices = np.array([[[0.0, 1.0], [1.0, 0.0]]])
    fig = render_distance_matrices([80.0], matrices, ["a", "b"])
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), matrices[0])
    with pytest.raises(ValueError, match="none of the runs has"):
        pp.render_compare_overlay([run.whole for run in runs], quantities=["nothing"])


def test_help():
    result = CliRunner().invoke(main, ["compare", "--help"])
    assert result.exit_code == 0 and "--labels" in result.output and "--save-path" in result.output
