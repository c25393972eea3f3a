"""Output trees with known values, built through OutputLayout, for the plot tests."""
from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pytest

from prunehess.layout import Column, OutputLayout

# Three pruning iterations (tags 001-003), snapshots at epochs 0, 10, 20, best files; two layers.
ITERATIONS = (0, 1, 2)
EPOCHS = (0, 10, 20)
LAYERS = (0, 1)
PERCENTS = (100.0, 80.0, 64.0)
ACCURACY = {0: 20, 1: 10, 2: 20}  # summary.csv's best snapshot per iteration (for layouts without best files)
BEST_ACCURACY = {0: 0.91, 1: 0.95, 2: 0.93}  # the best checkpoints' (rows with epoch "best")
SUMMARY_COLUMNS = [
    Column("iteration", "int"), Column("epoch", "epoch"), Column("layer", "int"),
    Column("remaining_percent", "float"), Column("test_accuracy", "float"), Column("top_eigenvalues", "floats"),
    Column("trace", "float"), Column("trace_stderr", "float"), Column("hvps", "int"), Column("seconds", "float"),
]


def top_value(iteration, epoch, layer=None):
    """Spans decades across epochs so the log axis is exercised."""
    scale = 1.0 if layer is None else 0.1 * (layer + 1)
    e = 5 if epoch is None else epoch
    return scale * (1.0 + iteration) * 10.0 ** (e / 10.0)


def trace_value(iteration, epoch, layer=None):
    e = 25 if epoch is None else epoch
    return (3.0 if layer is None else 1.0 + layer) * (iteration + 1) + 0.5 * e


def stderr_value(iteration, epoch, layer=None):
    """Distinct for every checkpoint and block, so a band drawn from the wrong row fails."""
    e = 25 if epoch is None else epoch
    return 0.05 * (iteration + 1) + 0.01 * e + (0.0 if layer is None else 0.3 * (layer + 1))


def accuracy_of(iteration, epoch):
    if epoch is None:
        return BEST_ACCURACY[iteration]
    return 0.9 if epoch == ACCURACY[iteration] else 0.5


def spectrum_of(iteration, epoch, layer=None, m=12):
    rng = np.random.default_rng(hash((iteration, epoch, layer)) % 2**32)
    shift = 0.0 if layer is None else 0.5 * (layer + 1)
    nodes = np.sort(np.concatenate([rng.normal(0.0, 0.01, m - 2), [-0.5, 50.0 * (1 + iteration)]])) + shift
    weights = rng.uniform(0.5, 1.0, m)
    return nodes, weights / weights.sum()


@dataclass
class Tree:
    layout: OutputLayout
    with_best: bool = True
    layers: tuple = LAYERS
    iterations: tuple = ITERATIONS
    epochs: tuple = EPOCHS
    percents: tuple = PERCENTS
    extra: dict = field(default_factory=dict)

    @property
    def root(self):
        return self.layout.root


def build_tree(root, *, with_best=True, layers=LAYERS, iterations=ITERATIONS, epochs=EPOCHS, initial=True,
               summary=True, remain=True, stderr=True) -> Tree:
    """An output tree of the values above; ``stderr=False``: a summary.csv of before the trace_stderr column."""
    out = OutputLayout(root)
    keys = [(i, e) for i in iterations for e in epochs]
    if with_best:
        keys += [(i, None) for i in iterations]
    if initial:
        keys.append((-1, None))
    rows = []
    for layer in (None, *layers):
        for i, e in keys:
            out.write_top_eigenvalues(i, e, [top_value(i, e, layer), top_value(i, e, layer) / 3], layer)
            out.write_trace(i, e, trace_value(i, e, layer), layer)
            nodes, weights = spectrum_of(i, e, layer)
            out.write_density(i, e, nodes, weights, layer)
            if i >= 0:
                rows.append(dict(iteration=i, epoch=e, layer=layer, remaining_percent=PERCENTS[i],
                                 test_accuracy=accuracy_of(i, e), top_eigenvalues=[top_value(i, e, layer)],
                                 trace=trace_value(i, e, layer), hvps=120, seconds=1.5,
                                 **({"trace_stderr": stderr_value(i, e, layer)} if stderr else {})))
    if remain:
        out.write_remain_params(PERCENTS[: len(iterations)])
    if summary:
        out.write_summary(rows, [col for col in SUMMARY_COLUMNS if stderr or col.name != "trace_stderr"])
    out.write_layers([(k, f"classifier.{2 * k}.weight", 100 * (k + 1)) for k in layers])
    out.write_config({"model": "fc1", "dataset": "digits", "output": root, "slq_runs": 1})
    return Tree(out, with_best=with_best, layers=tuple(layers), iterations=tuple(iterations), epochs=tuple(epochs))


@pytest.fixture(scope="session")
def known() -> SimpleNamespace:
    """The values the trees hold (test modules cannot import this conftest under importlib mode)."""
    return SimpleNamespace(ITERATIONS=ITERATIONS, EPOCHS=EPOCHS, LAYERS=LAYERS, PERCENTS=PERCENTS, ACCURACY=ACCURACY,
                           BEST_ACCURACY=BEST_ACCURACY, top_value=top_value, trace_value=trace_value,
                           stderr_value=stderr_value, accuracy_of=accuracy_of, spectrum_of=spectrum_of,
                           build_tree=build_tree)


@pytest.fixture(scope="session")
def tree(tmp_path_factory) -> Tree:
    return build_tree(tmp_path_factory.mktemp("output"))


@pytest.fixture(scope="session")
def tree_without_best(tmp_path_factory) -> Tree:
    return build_tree(tmp_path_factory.mktemp("output_nobest"), with_best=False, layers=(0,))


@pytest.fixture(autouse=True)
def _no_open_figures():
    import matplotlib.pyplot as plt

    yield
    assert plt.get_fignums() == [], "a figure was left open"
