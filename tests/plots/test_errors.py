"""Missing or malformed inputs: one clear DataError line naming the file and the problem."""
from __future__ import annotations

import re

import pytest

import prunehess.plots as pp
from prunehess.errors import DataError


@pytest.fixture
def small(known, tmp_path):
    """Two iterations, epochs 0 and 10, best files, no layers."""
    return known.build_tree(tmp_path / "out", layers=(), iterations=(0, 1), epochs=(0, 10))


def _raises(match, function, *args, **kwargs) -> str:
    with pytest.raises(DataError) as err:
        function(*args, **kwargs)
    message = str(err.value)
    assert "\n" not in message
    assert re.search(match, message), message
    return message


def test_missing_path(tmp_path):
    _raises(r"nope: no such folder", pp.plot_trace, tmp_path / "nope", tmp_path / "figs")


def test_folder_of_another_metric(small, tmp_path):
    _raises(r"trace: a trace folder; this plot reads top_eigenvalues", pp.plot_top_eigenvalues,
            small.root / "trace", tmp_path)


def test_folder_without_results(tmp_path):
    (tmp_path / "empty").mkdir()
    _raises(r"empty: neither a trace folder nor an output folder", pp.plot_trace_best, tmp_path / "empty", tmp_path)


def test_malformed_remain_params(small, tmp_path):
    path = tmp_path / "remain.txt"
    path.write_text("100.0\neighty\n")
    message = _raises(r"line 2: 'eighty' is not a number", pp.plot_trace, small.root, tmp_path / "f",
                      remain_params_file_path=path)
    assert message.startswith(str(path))


def test_remain_params_too_short(small, tmp_path):
    path = tmp_path / "remain.txt"
    path.write_text("100.0\n")
    _raises(r"remain.txt: no remaining percent for iteration 1 \(tag 002; line 2 of remain_params.txt\)",
            pp.plot_trace_best, small.root, tmp_path / "f", remain_params_file_path=path)


def test_no_percents_anywhere(known, tmp_path):
    tree = known.build_tree(tmp_path / "o", layers=(), iterations=(0,), epochs=(0,), summary=False, remain=False)
    _raises(r"remain_params.txt: not found .*pass remain_params_file_path", pp.plot_trace, tree.root, tmp_path / "f")


def test_percents_from_summary_when_no_remain_params(known, tmp_path):
    tree = known.build_tree(tmp_path / "o", layers=(), iterations=(0, 1), epochs=(0,), remain=False)
    assert len(pp.plot_trace_best(tree.root, tmp_path / "f")) == 1


def test_models_beyond_the_results(small, tmp_path):
    _raises(r"trace: no results for iteration tag\(s\) 003, 004 \(models=5 asks for tags 001 to 004\)",
            pp.plot_trace, small.root, tmp_path, models=5)


def test_epochs_beyond_the_results(small, tmp_path):
    _raises(r"iteration tag 001 has 2 epoch snapshot\(s\), epochs=3 asks for 3", pp.plot_top_eigenvalues,
            small.root, tmp_path, epochs=3)


def test_layers_beyond_the_results(small, tmp_path):
    _raises(r"trace_layer0: no such folder \(layers=1", pp.plot_trace, small.root, tmp_path, layers=1)


def test_malformed_result_file(small, tmp_path):
    path = small.layout.result_path("trace", 1, 10)
    path.write_text("12.5\nnot a number\n")
    _raises(rf"{re.escape(str(path))}: not plain numbers", pp.plot_trace, small.root, tmp_path)
    path.write_text("12.5\n13.5\n")
    _raises(rf"{re.escape(str(path))}: expected one number, found 2", pp.plot_trace, small.root, tmp_path)


def test_heatmap_needs_the_weights(small, tmp_path):
    small.layout.result_path("density_weight", 1, 10).unlink()
    _raises(r"density_weight002_10.txt: not found .*style='scatter'", pp.plot_density_eigen, small.root, tmp_path)
    assert len(pp.plot_density_eigen(small.root, tmp_path, style="scatter")) == 2


def test_weights_that_do_not_fit_the_nodes(small, tmp_path):
    small.layout.result_path("density_weight", 0, 0).write_text("0.5\n0.5\n")
    _raises(r"density_weight001_00.txt: 2x1 weights for 12x1 nodes", pp.plot_density_eigen, small.root, tmp_path)


def test_best_without_best_files_or_summary(known, tmp_path):
    tree = known.build_tree(tmp_path / "o", layers=(), iterations=(0,), epochs=(0,), with_best=False, summary=False)
    _raises(r"no best file for iteration tag\(s\) 001, and no summary.csv", pp.plot_top_eigenvalues_best,
            tree.root, tmp_path / "f")


def test_layer_match_needs_layers(small, tmp_path):
    _raises(r"no per-layer results .*--compute-each-layer", pp.plot_layer_match, small.root, tmp_path)


def test_report_of_an_empty_folder(tmp_path):
    _raises(r"no results", pp.write_report, tmp_path)
    _raises(r"no such folder", pp.write_report, tmp_path / "absent")


def test_bad_counts_are_value_errors(small, tmp_path):
    with pytest.raises(ValueError, match="models must be >= 2"):
        pp.plot_trace(small.root, tmp_path, models=1)
    with pytest.raises(ValueError, match="layers must be a count"):
        pp.plot_trace(small.root, tmp_path, layers=-1)


def test_accuracy_needs_the_summary(known, tmp_path):
    tree = known.build_tree(tmp_path / "o", layers=(), iterations=(0,), epochs=(0,), summary=False)
    _raises(r"summary.csv: not found \(test accuracies are read from it\)", pp.plot_accuracy_best, tree.root,
            tmp_path / "f")


def test_accuracy_absent_from_the_summary(small, tmp_path):
    from prunehess.layout import Column

    rows = [{k: v for k, v in row.items() if k != "test_accuracy"} for row in small.layout.read_summary()]
    small.layout.write_summary(rows, [Column("iteration", "int"), Column("epoch", "epoch"), Column("layer", "int")])
    _raises(r"summary.csv: no test_accuracy of any pruning iteration .*--no-test-accuracy", pp.plot_accuracy_best,
            small.root, tmp_path / "f")
    assert not any(p.parent.name == "accuracy_best" for p in pp.plot_all(small.root, tmp_path / "all", epochs=1))


def test_accuracy_of_an_iteration_beyond_the_summary(small, tmp_path):
    _raises(r"summary.csv: no results for iteration tag\(s\) 003 \(models=4", pp.plot_accuracy_best, small.root,
            tmp_path / "f", models=4)
