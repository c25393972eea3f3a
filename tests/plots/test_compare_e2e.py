"""End to end on digits: ``prunehess train --variants lt,random``, ``prunehess extract`` of each variant, then
``prunehess compare``: the figures and the page are written, and what the comparison draws equals the files."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from prunehess.cli import main
from prunehess.estimators import wasserstein_distance
from prunehess.layout import OutputLayout
from prunehess.plots.compare import compare_runs

pytest.importorskip("sklearn", reason="the digits dataset comes with scikit-learn")

VARIANTS = ("lt", "random")
ITERATIONS = 3


def _invoke(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, f"prunehess {' '.join(args)}:\n{result.output}"
    return result.output


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """``(outputs, figures folder, CLI output)``: a small digits run of two variants, extracted and compared (about
    10 s: on models this small one torch thread is several times faster than a few competing for shared cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(tmp_path_factory.mktemp("compare_e2e"))
    finally:
        torch.set_num_threads(threads)


def _run(tmp):
    _invoke("train", "--dataset", "digits", "--model", "fc1", "--variants", ",".join(VARIANTS),
            "--prune-iterations", str(ITERATIONS), "--prune-percent", "50", "--epochs", "2", "--save-freq", "2",
            "--seed", "0", "--output", str(tmp / "run"))
    outputs = []
    for variant in VARIANTS:
        out = tmp / "out" / variant
        _invoke("extract", "--resume", str(tmp / "run" / variant), "--output", str(out), "--strategy", "graph",
                "--slq-steps", "20", "--trace-probes", "10", "--hessian-batch-size", "100",
                "--mini-hessian-batch-size", "50", "--no-cuda")
        outputs.append(OutputLayout(out))
    text = _invoke("compare", *(str(o.root) for o in outputs), "--save-path", str(tmp / "figs"), "--dpi", "50")
    return outputs, tmp / "figs", text


def test_figures_and_page_are_written(compared):
    _, figs, text = compared
    assert "Compared lt, random: wrote 3 figures" in text and f"Page: {figs / 'compare.html'}" in text
    for name in ("overlay.png", "spectrum_distance.png", "spectra_matched.png"):
        assert (figs / name).read_bytes()[:4] == b"\x89PNG", name
    page = (figs / "compare.html").read_text(encoding="utf-8")
    assert re.findall(r'<h2 id="([a-z]+)"', page) == ["differs", "layers", "spectra", "config"]
    assert len(re.findall(r"data:image/png;base64,", page)) == 3
    assert "lt and random: 3 pruning iterations each, from 100 % to 25.6 % of weights remaining." in page
    rows = (figs / "spectrum_distances.csv").read_text().splitlines()
    assert rows[0] == "reference_percent,run,run_percent,w1_to_lt" and len(rows) == 1 + ITERATIONS


def test_plotted_data_equal_the_files(compared):
    outputs, _, _ = compared
    result = compare_runs([o.root for o in outputs])
    assert result.matching.exact and result.notes == ()
    axes = {ax.get_ylabel(): ax for ax in result.figures["overlay"].axes if ax.get_ylabel()}
    assert list(axes) == ["Top Hessian eigenvalue", "Hessian trace", "λmin (smallest eigenvalue)", "|λmin / λmax|",
                          "Test accuracy"]
    for out, label in zip(outputs, VARIANTS):
        percents = out.read_remain_params()
        best = {r["iteration"]: r for r in out.read_summary() if r["epoch"] is None and r["layer"] is None}
        its = range(ITERATIONS)
        want = {"Top Hessian eigenvalue": [out.read_result("top_eigenvalues", i, None)[0] for i in its],
                "Hessian trace": [out.read_result("trace", i, None)[0] for i in its],
                "λmin (smallest eigenvalue)": [out.read_result("bottom_eigenvalues", i, None)[0] for i in its],
                "|λmin / λmax|": [best[i]["abs_min_over_max"] for i in its],
                "Test accuracy": [best[i]["test_accuracy"] for i in its]}
        for name, ax in axes.items():
            (line,) = [line for line in ax.lines if line.get_label() == label]
            np.testing.assert_allclose(line.get_xdata(), percents, atol=0.05)  # remain_params.txt rounds to 0.1
            np.testing.assert_array_equal(line.get_ydata(), want[name], err_msg=f"{label}: {name}")
        band = axes["Hessian trace"].collections[VARIANTS.index(label)].get_paths()[0].vertices
        for i in its:
            x = best[i]["remaining_percent"]
            edge = band[np.isclose(band[:, 0], x), 1]
            se = best[i]["trace_stderr"]
            np.testing.assert_allclose(sorted({edge.min(), edge.max()}),
                                       [want["Hessian trace"][i] - 2 * se, want["Hessian trace"][i] + 2 * se])
    spectra = [[(o.read_result("density_eigen", i, None), o.read_result("density_weight", i, None)) for i in its]
               for o in outputs]
    for i in range(ITERATIONS):
        assert result.distances.distances[i, 0, 1] == pytest.approx(
            wasserstein_distance(*spectra[0][i], *spectra[1][i]), rel=1e-12)
    distance_line = result.figures["spectrum_distance"].axes[0].lines[0]
    np.testing.assert_array_equal(distance_line.get_ydata(), result.distances.distances[:, 0, 1])
