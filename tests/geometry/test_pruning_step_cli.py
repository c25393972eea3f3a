"""``prunehess pruning-step`` end to end on tiny digits runs: a ReLU MLP run with nested masks (exact diagonal; one
iteration's masks as prune pairs) against the dense float64 Hessian, the tanh run of ``geometry_support``
(Hutchinson's diagonal, figures, ``plot all`` and the report), resuming, the steps dealt across processes, and
one-line errors."""
from __future__ import annotations

import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
import yaml
from scipy.stats import spearmanr

from prunehess.geometry import PruningStepOptions
from prunehess.geometry.pruning_step import pruning_step_job
from prunehess.geometry.ranking import expected_hits
from prunehess.geometry.session import run_config
from prunehess.pipeline.context import Share, open_run, start
from prunehess.plots.pruning_step import STEP_COLUMNS, read_step_table
from prunehess.reference import dense_hessian

RELU_SOURCE = '''\
"""A 64-12-10 ReLU MLP for prunehess's pruning-step tests."""
from collections import OrderedDict

from torch import nn


def factory(input_shape, num_classes):
    return nn.Sequential(OrderedDict(flat=nn.Flatten(), fc1=nn.Linear(64, 12), act=nn.ReLU(),
                                     fc2=nn.Linear(12, num_classes)))
'''
WEIGHTS = ("fc1.weight", "fc2.weight")
FRACTION = 0.25  # of each weight's survivors, per iteration


def _relu_model(state=None) -> torch.nn.Module:
    namespace: dict = {}
    exec(RELU_SOURCE, namespace)  # noqa: S102  (the factory the run names, built here for the references)
    model = namespace["factory"]((1, 8, 8), 10)
    if state is not None:
        model.load_state_dict(state)
    return model


def _prune(state: dict, masks: dict) -> dict:
    """Magnitude pruning of FRACTION of each weight's survivors."""
    out = {}
    for name in WEIGHTS:
        k = int(round(FRACTION * int(masks[name].sum())))
        score = state[name].abs().masked_fill(~masks[name], math.inf).reshape(-1)
        mask = masks[name].clone().reshape(-1)
        mask[torch.argsort(score)[:k]] = False
        out[name] = mask.reshape(masks[name].shape)
    return out


def _relu_states(seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Three iterations' best states of an iterative magnitude pruning run (each "trained": the last weights
    moved by noise, pruned weights 0) and their masks."""
    torch.manual_seed(seed)
    weights = _relu_model().state_dict()
    with torch.no_grad():
        weights["fc1.weight"].mul_(3.0)
        weights["fc2.weight"].mul_(2.0)
    masks = {name: torch.ones_like(weights[name], dtype=torch.bool) for name in WEIGHTS}
    states, all_masks = [], []
    generator = torch.Generator().manual_seed(seed + 100)
    for _ in range(3):
        weights = {k: v + 0.1 * torch.randn(v.shape, generator=generator) for k, v in weights.items()}
        weights.update({name: weights[name] * masks[name] for name in WEIGHTS})
        states.append(weights)
        all_masks.append(masks)
        masks = _prune(weights, masks)
    return states, all_masks


def _prune_pairs(state: dict, masks: dict) -> dict:
    """``state`` as torch.nn.utils.prune saves it: ``<name>_orig`` (non-zero where pruned, so only the mask says
    so) and ``<name>_mask``."""
    out = {k: v for k, v in state.items() if k not in WEIGHTS}
    for name in WEIGHTS:
        out[f"{name}_orig"] = torch.where(masks[name], state[name], torch.full_like(state[name], 0.7))
        out[f"{name}_mask"] = masks[name].float()
    return out


def _output_for(extracted, folder: Path, zip_path: Path, **changes) -> Path:
    """An extract output of another zip, as pruning-step reads it: the geometry run's config.yaml pointed at it."""
    config = yaml.safe_load((extracted.output / "config.yaml").read_text())
    config.update(resume=str(zip_path.parent), zipname=zip_path.name, output=str(folder), **changes)
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return folder


@pytest.fixture
def relu(kit, extracted, tmp_path) -> SimpleNamespace:
    """A ReLU run of three iterations; iteration 2's best (002_best) holds its masks as prune pairs, with one
    surviving weight exactly 0 (zeros alone would call it pruned)."""
    states, masks = _relu_states()
    states[1]["fc2.weight"][tuple(torch.nonzero(masks[1]["fc2.weight"])[0])] = 0.0
    model_file = tmp_path / "relu_mlp.py"
    model_file.write_text(RELU_SOURCE)
    entries = [("initial_state_dict_lt.pth", states[0]), ("0_model_lt.pth", states[0]),
               ("1_model_lt.pth", _prune_pairs(states[1], masks[1])), ("2_model_lt.pth", states[2])]
    zip_path = kit.write_zip(tmp_path / "relu" / "relu.zip", entries)
    output = _output_for(extracted, tmp_path / "relu_out", zip_path, model=f"{model_file}:factory")
    return SimpleNamespace(output=output, states=states, masks=masks)


def _batches(kit, output: Path, root: Path) -> list:
    config = yaml.safe_load((output / "config.yaml").read_text())
    return kit.hessian_batch(config["hessian_batch_size"], config["mini_hessian_batch_size"], config["seed"], root)


def _reference(model: torch.nn.Module, batches, before: dict, after: dict) -> dict:
    """Per weight, from the dense float64 Hessian over the survivors before the step: the overlap, ρ, both terms
    of the quadratic model and the actual change of removing that weight's removed entries."""
    H = dense_hessian(model, batches, masks=before)
    params = dict(model.named_parameters())
    names = list(params)
    sizes = [int(before[n].sum()) if n in before else params[n].numel() for n in names]
    blocks = dict(zip(names, torch.split(torch.arange(H.shape[0]), sizes)))
    total = sum(len(y) for _, y in batches)

    def loss(state=None) -> torch.Tensor:
        state = state or params
        return sum(F.cross_entropy(torch.func.functional_call(model, state, (x,)), y) * len(y)
                   for x, y in batches) / total

    grads = torch.autograd.grad(loss(), [params[n] for n in names])
    g = torch.cat([gr[before[n]] if n in before else gr.reshape(-1) for n, gr in zip(names, grads)])
    out = {}
    for name in before:
        w = params[name].detach()[before[name]]
        saliency = (0.5 * torch.diagonal(H)[blocks[name]] * w.square()).numpy()
        removed = (~after[name])[before[name]]
        delta = torch.zeros(H.shape[0], dtype=H.dtype)
        delta[blocks[name][removed]] = -w[removed]
        pruned = {**params, name: params[name].detach() * after[name]}
        out[name] = dict(removed=int(removed.sum()), hits=expected_hits(removed.numpy(), saliency),
                         spearman=spearmanr(w.abs().numpy(), saliency).statistic, first=float(g @ delta),
                         second=float(0.5 * delta @ H @ delta), actual=float((loss(pruned) - loss()).detach()))
    return out


def _run(kit, output, *args):
    return kit.invoke("pruning-step", output, *args)


def test_relu_run_against_the_dense_hessian(kit, relu, tmp_path):
    result = kit.ok(_run(kit, relu.output, "--no-plot"))
    assert "done: 2 step(s) computed (exact diagonal), 0 already finished" in result.output
    table = relu.output / "pruning_step" / "pruning_step.csv"
    assert table.read_text().splitlines()[0].split(",") == list(STEP_COLUMNS)
    rows = read_step_table(table)
    assert [(r["iteration"], r["next_iteration"], r["layer"], r["name"]) for r in rows] == [
        (i, i + 1, layer, name) for i in (0, 1) for layer, name in ((None, "all"), (0, "fc1.weight"),
                                                                   (2, "fc2.weight"))]
    assert sorted(p.name for p in (relu.output / "pruning_step").iterdir()) == [
        "pruning_step.csv", "step_001_best_002_best.csv", "step_002_best_003_best.csv"]
    batches = _batches(kit, relu.output, tmp_path)
    for i in (0, 1):
        model = _relu_model(relu.states[i]).double()
        expected = _reference(model, batches, relu.masks[i], relu.masks[i + 1])
        mine = {r["name"]: r for r in rows if r["iteration"] == i}
        assert mine["all"]["mask_source"] == ("prune_pairs" if i == 0 else "zeros")
        for name, ref in expected.items():
            row = mine[name]
            assert row["removed"] == ref["removed"] > 0, name
            assert row["diagonal"] == "exact" and row["probes"] == 0 and row["diagonal_rel_stderr"] == 0.0
            assert row["overlap"] == pytest.approx(ref["hits"] / ref["removed"], abs=1.01 / ref["removed"]), name
            assert row["spearman"] == pytest.approx(ref["spearman"], abs=2e-3), name
            assert row["first_order"] == pytest.approx(ref["first"], rel=1e-4, abs=1e-7), name
            assert row["second_order"] == pytest.approx(ref["second"], rel=1e-4, abs=1e-7), name
            assert row["predicted_loss_change"] == pytest.approx(ref["first"] + ref["second"], rel=1e-4, abs=1e-7)
            assert row["actual_loss_change"] == pytest.approx(ref["actual"], rel=1e-3, abs=2e-6), name
            survivors = int(relu.masks[i][name].sum())
            assert row["chance_overlap"] == pytest.approx(ref["removed"] / survivors)
            assert row["remaining_percent_before"] == pytest.approx(100 * survivors / relu.masks[i][name].numel())
        whole = mine["all"]
        assert whole["removed"] == sum(ref["removed"] for ref in expected.values())
        assert whole["weights"] == 64 * 12 + 12 * 10


def test_a_rerun_computes_nothing(kit, relu):
    kit.ok(_run(kit, relu.output, "--no-plot"))
    folder = relu.output / "pruning_step"
    table = (folder / "pruning_step.csv").read_bytes()
    stamp = (folder / "step_001_best_002_best.csv").stat().st_mtime_ns
    again = kit.ok(_run(kit, relu.output, "--no-plot"))
    assert "done: 0 step(s) computed, 2 already finished" in again.output
    assert (folder / "pruning_step.csv").read_bytes() == table
    assert (folder / "step_001_best_002_best.csv").stat().st_mtime_ns == stamp
    other = kit.ok(_run(kit, relu.output, "--no-plot", "--diagonal", "hutchinson", "--probes", "6"))
    assert "done: 2 step(s) computed (hutchinson diagonal), 0 already finished" in other.output
    rows = read_step_table(folder / "pruning_step.csv")
    assert {(r["diagonal"], r["probes"]) for r in rows} == {("hutchinson", 6)}
    assert all(r["diagonal_rel_stderr"] > 0 for r in rows)


def test_tanh_run_hutchinson_figures_plot_all_and_report(kit, output, tmp_path):
    result = kit.ok(_run(kit, output, "--probes", "12"))
    assert "done: 2 step(s) computed (hutchinson diagonal), 0 already finished" in result.output
    rows = read_step_table(output / "pruning_step" / "pruning_step.csv")
    assert len(rows) == 6 and {(r["diagonal"], r["probes"], r["mask_source"]) for r in rows} == {
        ("hutchinson", 12, "zeros")}
    assert all(r["diagonal_rel_stderr"] > 0 and -1 <= r["spearman"] <= 1 for r in rows)
    batches = _batches(kit, output, tmp_path)
    for i, (seed, prune, next_prune) in enumerate(((10, 0.0, 0.2), (11, 0.2, 0.36))):
        before_state, after_state = kit.tiny_state(seed, prune), kit.tiny_state(seed + 1, next_prune)
        before = {n: before_state[n] != 0 for n in ("fc1.weight", "fc2.weight")}
        after = {n: after_state[n] != 0 for n in before}
        expected = _reference(kit.double_tiny(before_state), batches, before, after)
        mine = {r["name"]: r for r in rows if r["iteration"] == i}
        for name, ref in expected.items():
            assert mine[name]["removed"] == ref["removed"], name
            assert mine[name]["predicted_loss_change"] == pytest.approx(ref["first"] + ref["second"], rel=1e-4)
            assert mine[name]["actual_loss_change"] == pytest.approx(ref["actual"], rel=1e-3, abs=2e-6)
    figures = sorted(p.name for p in (output / "figures" / "pruning_step").iterdir())
    assert figures == ["loss_change.jpg", "saliency_agreement.jpg"]
    plots = kit.ok(kit.invoke("plot", "all", "--path", output, "--save-path", tmp_path / "figs"))
    assert sorted(p.name for p in (tmp_path / "figs" / "pruning_step").iterdir()) == figures, plots.output
    kit.ok(kit.invoke("report", output))
    page = (output / "report.html").read_text()
    assert "The pruning step (prunehess pruning-step)" in page
    assert page.count("<figcaption>Each pruning step") == 1 and "removed at the same per-layer counts" in page


def test_the_steps_are_dealt_across_processes(kit, relu, tmp_path):
    single = tmp_path / "single"
    shutil.copytree(relu.output, single)
    kit.ok(_run(kit, single, "--no-plot"))
    options = PruningStepOptions.of(plot=False)
    config = run_config(relu.output, options.run)
    lock, folder = start(config, lambda event: None)
    try:
        reports = [pruning_step_job(open_run(config, folder, share=Share(rank=rank, world=2, writes_shared=rank == 0),
                                             emit=lambda event: None), options) for rank in (0, 1)]
    finally:
        lock.release()
    assert [r.computed for r in reports] == [["step_001_best_002_best.csv"], ["step_002_best_003_best.csv"]]
    for name in ("step_001_best_002_best.csv", "step_002_best_003_best.csv"):
        assert (relu.output / "pruning_step" / name).read_bytes() == (single / "pruning_step" / name).read_bytes()


def test_bad_input_is_one_line(kit, extracted, output, tmp_path):
    kit.error_line(_run(kit, tmp_path), str(tmp_path / "config.yaml"), "not found")
    kit.error_line(_run(kit, output, "--probes", "1"), "probes must be at least 2")
    state = kit.tiny_state(3)
    zip_path = kit.write_zip(tmp_path / "one" / "one.zip", [("initial_state_dict_lt.pth", state),
                                                            ("0_model_lt.pth", state)])
    single = _output_for(extracted, tmp_path / "one_out", zip_path)
    kit.error_line(_run(kit, single), str(zip_path), "no pruning step to measure", "001_best", alone=False)
    refused = _run(kit, output, "--diagonal", "exact", "--no-plot")
    kit.error_line(refused, "diagonal 'exact'", "Tanh", alone=False)
    assert not (output / "pruning_step" / "pruning_step.csv").exists()
