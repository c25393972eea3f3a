"""The numbers ``prunehess extract`` writes equal the dense Hessian's, restricted to the surviving weights.

A 610-parameter user model (``--model FILE.py:factory``) on digits, a dense and a pruned checkpoint, and
``prunehess.reference.dense_hessian`` in float64 on the very Hessian batch the pipeline draws
(``prunehess.data.hessian_batch`` with the same size, mini-batch size and seed). The pipeline computes in
float32, so eigenvalues agree to ~1e-5 relative; traces are stochastic and are compared within 4 standard errors
(the ``trace_stderr`` column of summary.csv); SLQ nodes must lie in the exact spectrum's range and, with as many
Lanczos steps as coordinates, number exactly the surviving coordinates (one per line, one column per run).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from helpers import coordinate_index, restrict
from prunehess.pipeline import SUMMARY_COLUMNS
from prunehess.models import is_prunable
from prunehess.operators.masks import zero_masks
from prunehess.reference import dense_hessian, exact_spectrum

SIZE, MINI, SEED = 120, 50, 3  # three mini-batches, the last one smaller (50, 50, 20)
PRUNE = 0.4
STEPS = 60  # SLQ steps: more than the small blocks' sizes (8, 10, 48), so their densities have one node each
CHECKPOINTS = {"001_best": (0, 11, 0.0), "002_best": (1, 12, PRUNE)}  # tag -> (iteration, state seed, pruned)


@dataclass
class Run:
    out: Path
    states: dict
    references: dict
    output: str


@dataclass
class Reference:
    H: torch.Tensor  # dense Hessian over the surviving coordinates
    H_full: torch.Tensor  # over every coordinate
    masks: dict
    spectrum: torch.Tensor  # eigenvalues of H, descending


def _reference(kit, state, root) -> Reference:
    model = kit.double_tiny(state)
    batches = kit.hessian_batch(SIZE, MINI, SEED, root)
    masks = zero_masks(model, is_prunable)
    H = dense_hessian(model, batches, masks=masks)
    H_full = dense_hessian(model, batches, masks=None)
    return Reference(H, H_full, masks, exact_spectrum(H)[0])


@pytest.fixture(scope="module")
def run(kit, tmp_path_factory) -> Run:
    tmp = tmp_path_factory.mktemp("numbers")
    model = kit.model_file(tmp)
    states = {tag: kit.tiny_state(seed, prune) for tag, (_, seed, prune) in CHECKPOINTS.items()}
    kit.write_zip(tmp / "run" / "mnist.zip", [(f"{it}_model_lt.pth", states[tag])
                                              for tag, (it, _, _) in CHECKPOINTS.items()])
    out = tmp / "out"
    result = kit.extract(tmp / "run", out, "--dataset", "digits", "--model", model,
                         "--hessian-batch-size", SIZE, "--mini-hessian-batch-size", MINI, "--seed", SEED,
                         "--top-n", 3, "--tol", "1e-6", "--trace-probes", 150, "--trace-tol", 0,
                         "--slq-steps", STEPS, "--slq-runs", 2, "--compute-each-layer", "--test-accuracy",
                         "--bottom-n", 2, "--bottom-tol", "1e-6", "--save-eigenvectors",
                         "--strategy", "graph", "--no-cuda", fast=False)
    references = {tag: _reference(kit, states[tag], tmp) for tag in states}
    return Run(out, states, references, result.output)


def _row(kit, run, tag, layer=None):
    it = CHECKPOINTS[tag][0]
    rows = [r for r in kit.summary(run.out) if r["iteration"] == it and r["layer"] == layer]
    assert len(rows) == 1
    return rows[0]


def _files(out: Path, metric: str, tag: str, layer=None) -> Path:
    folder = metric if layer is None else f"{metric}_layer{layer}"
    return out / folder / f"{metric}{tag}.txt"


@pytest.mark.parametrize("tag", list(CHECKPOINTS))
def test_bottom_eigenvalues_and_their_columns_equal_the_dense_hessians(kit, run, tag):
    """The two smallest eigenvalues (ascending) to 1e-4 of λmax; |λmin/λmax| and the mass below zero agree."""
    written = kit.numbers(_files(run.out, "bottom_eigenvalues", tag))
    spectrum = run.references[tag].spectrum.numpy()
    assert written.shape == (2,) and written[0] <= written[1]
    np.testing.assert_allclose(written, spectrum[::-1][:2], rtol=0, atol=1e-4 * abs(spectrum[0]))
    row = _row(kit, run, tag)
    assert row["bottom_eigenvalues"] == pytest.approx(list(written), rel=0, abs=1e-12)
    assert row["abs_min_over_max"] == pytest.approx(abs(spectrum[-1] / spectrum[0]), rel=1e-4)
    assert 0.0 <= row["negative_mass"] <= 1.0
    if spectrum[-1] >= 0:
        assert row["negative_mass"] == 0.0


@pytest.mark.parametrize("tag", list(CHECKPOINTS))
def test_saved_eigenvectors_are_eigenvectors_of_the_dense_hessian_and_zero_where_pruned(kit, run, tag):
    ref = run.references[tag]
    saved = np.load(run.out / "eigenvectors" / f"eigenvectors{tag}.npz")
    names = list(run.states[tag])
    assert sorted(saved.files) == sorted(["eigenvalues", *names])
    assert np.allclose(saved["eigenvalues"], kit.numbers(_files(run.out, "top_eigenvalues", tag)), rtol=0, atol=0)
    flat = []
    for name in names:
        block = torch.from_numpy(saved[name]).double().reshape(3, -1)
        if name in ref.masks:
            assert torch.all(block[:, ~ref.masks[name].reshape(-1).cpu()] == 0), name
            block = block[:, ref.masks[name].reshape(-1).cpu()]
        flat.append(block)
    V = torch.cat(flat, dim=1).T  # surviving coordinates, in the operator's order
    lam = torch.from_numpy(saved["eigenvalues"]).double()
    residual = (ref.H @ V - V * lam).norm(dim=0)
    assert float(residual.max()) <= 1e-4 * float(ref.spectrum[0])  # float32 vectors: well within


def test_the_reference_restricts_the_full_hessian(run):
    """Sanity of the reference itself: the masked Hessian is the full one's surviving rows and columns."""
    ref = run.references["002_best"]
    shapes = {n: run.states["002_best"][n].shape for n in run.states["002_best"]}
    index = coordinate_index(shapes, list(shapes), ref.masks)
    assert ref.masks and torch.allclose(restrict(ref.H_full, index), ref.H, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("tag", list(CHECKPOINTS))
def test_top_eigenvalues_equal_the_dense_hessians(kit, run, tag):
    written = kit.numbers(_files(run.out, "top_eigenvalues", tag))
    exact = run.references[tag].spectrum[:3].numpy()
    assert written.shape == (3,)
    assert np.all(np.diff(written) <= 0), "largest first"
    np.testing.assert_allclose(written, exact, rtol=2e-5, atol=2e-6 * abs(exact[0]))
    assert _row(kit, run, tag)["top_eigenvalues"] == pytest.approx(list(written), rel=1e-12)


@pytest.mark.parametrize("tag", list(CHECKPOINTS))
def test_trace_within_four_standard_errors(kit, run, tag):
    written = float(kit.numbers(_files(run.out, "trace", tag))[0])
    row = _row(kit, run, tag)
    exact = float(torch.trace(run.references[tag].H))
    assert row["trace"] == pytest.approx(written, rel=1e-12)
    assert 0 < row["trace_stderr"] < 0.2 * abs(exact)
    assert abs(written - exact) <= 4 * row["trace_stderr"], (written, exact, row["trace_stderr"])


@pytest.mark.parametrize("tag", list(CHECKPOINTS))
def test_density_nodes_in_the_exact_spectrum_and_weights_sum_to_one(kit, run, tag):
    ref = run.references[tag]
    nodes = np.loadtxt(_files(run.out, "density_eigen", tag), ndmin=2)
    weights = np.loadtxt(_files(run.out, "density_weight", tag), ndmin=2)
    assert nodes.shape == weights.shape == (STEPS, 2)  # one node per line, one column per run
    np.testing.assert_allclose(weights.sum(axis=0), [1.0, 1.0], atol=1e-9)
    assert (weights >= 0).all()
    lam_max, lam_min = float(ref.spectrum[0]), float(ref.spectrum[-1])
    slack = 1e-4 * max(abs(lam_max), abs(lam_min))
    assert nodes.min() >= lam_min - slack and nodes.max() <= lam_max + slack
    # the largest Ritz value converges first
    assert nodes.max() == pytest.approx(lam_max, rel=1e-4)
    assert (run.out / "esd_plot" / f"esd_plot{tag}.pdf").read_bytes().startswith(b"%PDF")


def test_pruned_weights_are_not_coordinates(run):
    ref = run.references["002_best"]
    pruned = sum(int((~m).sum()) for m in ref.masks.values())
    assert pruned > 0 and ref.H.shape[0] == 610 - pruned
    assert run.references["001_best"].H.shape[0] == 610


@pytest.mark.parametrize("tag", list(CHECKPOINTS))
def test_each_layer_files_are_the_diagonal_blocks(kit, run, tag):
    ref = run.references[tag]
    state = run.states[tag]
    shapes = {n: state[n].shape for n in state}
    for k, name in enumerate(kit.TINY_NAMES):
        block = restrict(ref.H_full, coordinate_index(shapes, [name], ref.masks))
        exact = exact_spectrum(block)[0].numpy()
        top = kit.numbers(_files(run.out, "top_eigenvalues", tag, k))
        np.testing.assert_allclose(top, exact[: min(3, len(exact))], rtol=2e-5, atol=2e-6 * abs(exact[0]),
                                   err_msg=f"layer {k} ({name})")
        row = _row(kit, run, tag, k)
        trace = float(kit.numbers(_files(run.out, "trace", tag, k))[0])
        assert row["trace"] == pytest.approx(trace, rel=1e-12)
        assert abs(trace - float(torch.trace(block))) <= 4 * row["trace_stderr"] + 1e-6, (name, trace)
        if block.shape[0] <= STEPS:  # the block's SLQ run spans it: the exact trace, no probes of its own
            assert row["trace_stderr"] == 0, name
            assert trace == pytest.approx(float(torch.trace(block)), rel=1e-4, abs=1e-7), name
        else:
            assert row["trace_stderr"] > 0, name
        nodes = np.loadtxt(_files(run.out, "density_eigen", tag, k), ndmin=2)
        weights = np.loadtxt(_files(run.out, "density_weight", tag, k), ndmin=2)
        assert nodes.shape == weights.shape == (min(STEPS, block.shape[0]), 2), name
        np.testing.assert_allclose(weights.sum(axis=0), 1.0, atol=1e-9)
        slack = 1e-4 * np.abs(exact).max() + 1e-7
        assert exact[-1] - slack <= nodes.min() and nodes.max() <= exact[0] + slack, name
        assert (run.out / f"esd_plot_layer{k}" / f"esd_plot{tag}.pdf").is_file()
    assert not (run.out / "top_eigenvalues_layer4").exists()


def test_layers_txt(run):
    assert (run.out / "layers.txt").read_text() == (
        "# k\tname\tsize\n0\tfc1.weight\t512\n1\tfc1.bias\t8\n2\tfc2.weight\t80\n3\tfc2.bias\t10\n")


def test_remain_params_is_the_percent_of_all_parameters_non_zero(run):
    pruned = run.states["002_best"]
    alive = sum(int((v != 0).sum()) for v in pruned.values())
    assert (run.out / "remain_params.txt").read_text() == f"100.0\n{round(100 * alive / 610, 1):.1f}\n"
    assert alive < 610


def test_summary_csv_columns_and_rows(kit, run):
    header = (run.out / "summary.csv").read_text().splitlines()[0]
    assert header.split(",") == [column.name for column in SUMMARY_COLUMNS] == [
        "iteration", "epoch", "layer", "remaining_percent", "test_accuracy", "top_eigenvalues", "trace", "trace_stderr",
        "bottom_eigenvalues", "negative_mass", "abs_min_over_max", "hvps", "seconds"]
    rows = kit.summary(run.out)
    assert [(r["iteration"], r["layer"]) for r in rows] == [(i, layer) for i in (0, 1) for layer in (None, 0, 1, 2, 3)]
    from prunehess.data import test_loader

    for tag, (it, _, _) in CHECKPOINTS.items():
        model = kit.tiny_model(0)
        model.load_state_dict(run.states[tag])
        model.eval()
        with torch.no_grad():
            correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in test_loader("digits", root="."))
        for row in (r for r in rows if r["iteration"] == it):
            assert row["epoch"] is None  # the best checkpoint of the iteration
            assert row["test_accuracy"] == pytest.approx(correct / 297)
            alive = sum(int((v != 0).sum()) for v in run.states[tag].values())
            assert row["remaining_percent"] == pytest.approx(100 * alive / 610, abs=1e-4)
            assert row["hvps"] > 0 and row["seconds"] >= 0 and len(row["top_eigenvalues"]) >= 1


def test_summary_csv_names_the_best_checkpoint_best(run):
    lines = (run.out / "summary.csv").read_text().splitlines()[1:]
    assert all(line.split(",")[1] == "best" for line in lines)


def test_params_all_is_the_unmasked_hessian(kit, run, tmp_path):
    """--params all: every coordinate, pruned ones included (PyHessian's behaviour)."""
    model = kit.model_file(tmp_path)
    kit.write_zip(tmp_path / "run" / "mnist.zip", [("1_model_lt.pth", run.states["002_best"])])
    out = tmp_path / "out"
    kit.extract(tmp_path / "run", out, "--model", model, "--dataset", "digits", "--hessian-batch-size", SIZE,
                "--mini-hessian-batch-size", MINI, "--seed", SEED, "--top-n", 3, "--tol", "1e-6", "--slq-steps", 1000,
                "--params", "all", "--trace-probes", 5, "--no-test-accuracy", "--strategy", "graph", "--no-cuda",
                fast=False)
    ref = run.references["002_best"]
    exact = exact_spectrum(ref.H_full)[0].numpy()
    written = kit.numbers(_files(out, "top_eigenvalues", "002_best"))
    np.testing.assert_allclose(written, exact[:3], rtol=2e-5, atol=2e-6 * abs(exact[0]))
    assert np.loadtxt(_files(out, "density_eigen", "002_best"), ndmin=2).shape == (610, 1)
    assert yaml.safe_load((out / "config.yaml").read_text())["params"] == "all"


def test_seed_spellings_of_the_options(kit, tmp_path):
    """The seed's underscore spellings are aliases: --compute_each_layer, --mini_hessian_batch_size, ..."""
    model = kit.model_file(tmp_path)
    kit.write_zip(tmp_path / "run" / "mnist.zip", [("0_model_lt.pth", kit.tiny_state(0))])
    out = tmp_path / "out"
    kit.ok(kit.invoke("extract", "--resume", tmp_path / "run", "--output", out, "--model", model, "--dataset", "digits",
                      "--compute_each_layer", "--mini_hessian_batch_size", 16, "--hessian_batch_size", 48,
                      "--top_n", 2, "--data_root", tmp_path / "data", "--no_batch_norm", "--slq-steps", 8,
                      "--trace-probes", 4, "--no-test-accuracy", "--strategy", "graph", "--no-cuda"))
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["compute_each_layer"] is True and config["mini_hessian_batch_size"] == 16
    assert config["hessian_batch_size"] == 48 and config["top_n"] == 2 and config["batch_norm"] is False
    assert config["data_root"] == str(tmp_path / "data")
    for k in range(4):
        assert (out / f"top_eigenvalues_layer{k}" / "top_eigenvalues001_best.txt").is_file()
    assert kit.numbers(out / "top_eigenvalues" / "top_eigenvalues001_best.txt").shape == (2,)


def test_power_iteration_and_hutchpp_per_layer(kit, run, tmp_path):
    """--method power (PyHessian's, with deflation) and --trace-method hutch++, whole model and per layer."""
    model = kit.model_file(tmp_path)
    kit.write_zip(tmp_path / "run" / "mnist.zip", [("1_model_lt.pth", run.states["002_best"])])
    out = tmp_path / "out"
    kit.extract(tmp_path / "run", out, "--model", model, "--dataset", "digits", "--hessian-batch-size", SIZE,
                "--mini-hessian-batch-size", MINI, "--seed", SEED, "--method", "power", "--top-n", 2, "--tol", "1e-7",
                "--max-iter", 1000, "--trace-method", "hutch++", "--trace-probes", 60, "--slq-steps", 10,
                "--compute-each-layer", "--no-test-accuracy", "--strategy", "graph", "--no-cuda", fast=False)
    ref = run.references["002_best"]
    state = run.states["002_best"]
    shapes = {n: state[n].shape for n in state}
    rows = {r["layer"]: r for r in kit.summary(out)}
    for k, name in [(None, None), *enumerate(kit.TINY_NAMES)]:
        H = ref.H if k is None else restrict(ref.H_full, coordinate_index(shapes, [name], ref.masks))
        exact = exact_spectrum(H)[0].numpy()
        top = kit.numbers(_files(out, "top_eigenvalues", "002_best", k))
        np.testing.assert_allclose(top, exact[:2], rtol=1e-4, atol=1e-5 * abs(exact[0]), err_msg=str(name))
        trace = float(kit.numbers(_files(out, "trace", "002_best", k))[0])
        row = rows[k]
        assert abs(trace - float(torch.trace(H))) <= 4 * row["trace_stderr"] + 1e-5 * abs(float(torch.trace(H))), name


def test_auto_strategy_saves_its_chunking_and_later_checkpoints_use_it(kit, tmp_path, monkeypatch):
    """``--strategy auto`` chooses by rule on the first checkpoint, without timing (graph reuse over the 4
    mini-batches of 16 merged into one chunk of 64: the merge fits its memory budget), saves the choice in
    strategy.json, and every later checkpoint (and a resumed run) applies it."""
    import json

    from prunehess.operators.hessian import HessianOperator

    model = kit.model_file(tmp_path)
    kit.write_zip(tmp_path / "run" / "mnist.zip", [("0_model_lt.pth", kit.tiny_state(0)),
                                                  ("1_model_lt.pth", kit.tiny_state(1, prune=0.4))])
    args = ("--model", model, "--dataset", "digits", "--hessian-batch-size", 64, "--mini-hessian-batch-size", 16,
            "--top-n", 1, "--slq-steps", 12, "--trace-probes", 8, "--no-test-accuracy", "--strategy", "auto",
            "--no-cuda")
    out = tmp_path / "out"
    kit.ok(kit.invoke("extract", "--resume", tmp_path / "run", "--output", out, *args))
    state = out / ".prunehess" / "strategy.json"
    saved = json.loads(state.read_text())
    assert (saved["strategy"], saved["batched_strategy"], saved["chunk_size"], saved["timings"]) == \
        ("graph", "loop", 64, {})
    first = {tag: kit.numbers(out / "top_eigenvalues" / f"top_eigenvalues{tag}.txt") for tag in ("001_best", "002_best")}

    # another choice in strategy.json, the records gone: the rerun must apply the saved chunking to every checkpoint
    json.dump({**saved, "strategy": "graph", "chunk_size": 64}, state.open("w"))
    for record in (out / ".prunehess" / "records").iterdir():
        record.unlink()
    used = []
    original = HessianOperator.set_chunk_size

    def spy(self, chunk_size):
        used.append(chunk_size)
        return original(self, chunk_size)

    monkeypatch.setattr(HessianOperator, "set_chunk_size", spy)
    kit.ok(kit.invoke("extract", "--resume", tmp_path / "run", "--output", out, *args))
    assert used.count(64) == 2  # once per checkpoint
    for tag, values in first.items():  # chunking changes rounding only
        np.testing.assert_allclose(kit.numbers(out / "top_eigenvalues" / f"top_eigenvalues{tag}.txt"), values,
                                   rtol=1e-4)
