"""``prunehess plot …`` and ``prunehess report`` through click's CliRunner."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

import prunehess.cli.plot  # noqa: F401  (registers the subcommands until the lead imports them in cli/__init__)
import prunehess.cli.report  # noqa: F401
from prunehess.cli import main

SUBCOMMANDS = ["top-eigenvalues", "trace", "density-eigen", "top-eigenvalues-best", "trace-best", "layer-match",
               "all"]


@pytest.fixture(autouse=True)
def _fast_saving(monkeypatch):
    """The CLI tests check wiring and files; drawing real JPEGs is the plot tests' job."""
    from prunehess.plots import _common
    from prunehess.storage import atomic_write_bytes

    def save(figure, path, dpi=100):
        figure.clear()
        atomic_write_bytes(path, b"jpg")
        return path

    monkeypatch.setattr(_common, "save_figure", save)


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize("args", [["plot", "--help"], ["report", "--help"],
                                  *[["plot", name, "--help"] for name in SUBCOMMANDS]])
def test_help(args):
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_help_lists_subcommands():
    output = run("plot", "--help").output
    assert all(name in output for name in SUBCOMMANDS)
    assert "report" in run("--help").output


def test_trace_best(tree, tmp_path):
    result = run("plot", "trace-best", "--path", tree.root, "--save-path", tmp_path / "figs")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "figs" / "whole_model" / "best_model.jpg").is_file()
    assert result.output.strip() == f"Wrote 1 figure under {tmp_path / 'figs'}"


def test_seed_spellings_and_all_options(tree, tmp_path, known):
    remain = tmp_path / "remain.txt"
    remain.write_text("100.0\n80.0\n64.0\n")
    result = run("plot", "top-eigenvalues", "--path", tree.root / "top_eigenvalues", "--save_path", tmp_path,
                 "--layers", 2, "--models", 3, "--epochs", 2, "--model_name", "fc1", "--dataset_name", "mnist",
                 "--remain_params_file_path", remain)
    assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.jpg")) == [
        f"{folder}/model{i}.jpg" for folder in ("layer0", "layer1", "whole_model") for i in (0, 1)]


def test_density_eigen_style(tree, tmp_path):
    result = run("plot", "density-eigen", "--path", tree.root, "--save-path", tmp_path, "--style", "scatter")
    assert result.exit_code == 0, result.output
    assert "Wrote 3 figures" in result.output
    result = run("plot", "density-eigen", "--path", tree.root, "--save-path", tmp_path, "--style", "violin")
    assert result.exit_code == 2 and "heatmap" in result.output


def test_layer_match_draws_every_layer_by_default(tree, tmp_path):
    result = run("plot", "layer-match", "--path", tree.root, "--save-path", tmp_path)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best_model.jpg", "model0.jpg", "model1.jpg", "model2.jpg"]


def test_plot_all(tree, tmp_path):
    result = run("plot", "all", "--path", tree.root, "--save-path", tmp_path, "--layers", "all", "--models", 2)
    assert result.exit_code == 0, result.output
    folders = sorted(p.name for p in tmp_path.iterdir())
    assert folders == ["SLQ", "accuracy_best", "layer_match", "top_eigenvalues", "top_eigenvalues_best", "trace",
                       "trace_best"]
    assert (tmp_path / "trace" / "layer1" / "model0.jpg").is_file()


def test_errors_are_one_line(tmp_path):
    result = run("plot", "trace", "--path", tmp_path / "nope", "--save-path", tmp_path)
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: {tmp_path / 'nope'}: no such folder"


def test_a_bug_is_one_line_too_and_debug_shows_it(tree, tmp_path, monkeypatch):
    import prunehess.plots

    def broken(**kwargs):
        raise ValueError("x and y must be finite\nsecond line")

    monkeypatch.setattr(prunehess.plots, "plot_all", broken)
    result = run("plot", "all", "--path", tree.root, "--save-path", tmp_path)
    assert result.exit_code == 70
    assert result.output.strip() == ("Error: internal error (ValueError: x and y must be finite); rerun with --debug "
                                     "for the traceback, and please report it")
    with pytest.raises(ValueError, match="must be finite"):
        run("--debug", "plot", "all", "--path", tree.root, "--save-path", tmp_path)


def test_bad_layers_value(tree, tmp_path):
    result = run("plot", "trace", "--path", tree.root, "--save-path", tmp_path, "--layers", "many")
    assert result.exit_code == 2 and "neither a count nor 'all'" in result.output


def test_report(known, tmp_path, monkeypatch):
    from prunehess.plots.report import page

    monkeypatch.setattr(page, "png_base64", lambda figure, dpi: (figure.clear(), "")[1])  # wiring only: no drawing
    tree = known.build_tree(tmp_path / "out", layers=(0,), iterations=(0,), epochs=(0, 10))
    result = run("report", tree.root)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"Wrote {tree.root / 'report.html'}"
    result = run("report", tree.root, "-o", tmp_path / "r.html", "--model-name", "lenet5")
    assert result.exit_code == 0 and "prunehess report for lenet5 on digits" in (tmp_path / "r.html").read_text()
    result = run("report", tmp_path / "absent")
    assert result.exit_code == 1 and result.output.startswith("Error: ")


def test_titles_name_the_runs_model_and_dataset_from_its_config(tree, tmp_path, monkeypatch):
    import shutil

    from prunehess.layout import OutputLayout
    from prunehess.plots import _common

    titles = []

    def save(figure, path, dpi=100):
        titles.extend(ax.get_title() for ax in figure.axes if ax.get_title())
        figure.clear()
        return path

    monkeypatch.setattr(_common, "save_figure", save)
    out = tmp_path / "out"
    shutil.copytree(tree.root, out)
    OutputLayout(out).write_config({"model": "/home/me/nets/small.py:factory", "dataset": "digits"})
    assert run("plot", "trace-best", "--path", out / "trace", "--save-path", tmp_path / "a").exit_code == 0
    assert titles == ["Trace plot for small.py:factory on digits"]
    titles.clear()
    assert run("plot", "trace-best", "--path", out, "--save-path", tmp_path / "b", "--model-name", "mine").exit_code == 0
    assert titles == ["Trace plot for mine on digits"]  # what the user gives wins
    titles.clear()
    (out / "config.yaml").write_text("model: [unclosed\n")  # unreadable: titles without names, the plot still drawn
    assert run("plot", "trace-best", "--path", out, "--save-path", tmp_path / "c").exit_code == 0
    assert titles == ["Trace plot"]
