"""Hessian-aware pruning: the fork's rule on hand-computed traces (mean, <1 % layers, 30 % cap), in a run with
injected traces, and with the engine's own traces."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from prunehess.training import RunComponents, RunFolder, run_training
from prunehess.training.hessian_aware import LayerTraces, hessian_prune, hessian_rates, needs_trace
from prunehess.training.pruning import default_is_prunable, full_masks, prune_count

NAMES = ("body.0.weight", "body.2.weight", "body.4.weight", "body.6.weight")
SIZES = (6 * 40, 40 * 30, 30 * 3, 3 * 3)  # 240, 1200, 90, 9 weights
TOTAL = sum(SIZES) + 40 + 30 + 3 + 3  # 1615 parameters: 1 % is 16.15, so the last layer (9) is never pruned


class WithTinyHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, 40), nn.ReLU(), nn.Linear(40, 30), nn.ReLU(), nn.Linear(30, 3),
                                  nn.ReLU(), nn.Linear(3, 3))

    def forward(self, x):
        return self.body(x)


def _components() -> RunComponents:
    g = torch.Generator().manual_seed(5)
    x, xt = torch.randn(96, 6, generator=g), torch.randn(40, 6, generator=g)
    y, yt = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long(), (xt[:, 0] > 0).long() + (xt[:, 1] > 0.5).long()
    return RunComponents(WithTinyHead, TensorDataset(x, y), TensorDataset(xt, yt), lambda: [(x[:48], y[:48])])


def test_rule_on_hand_computed_traces():
    sizes = {"a": 500, "b": 300, "c": 150, "d": 5}
    # the mean over the rated layers a, b, c is (10 + 2 + 6) / 3 = 6; d (5 of 1000 < 1 %) is not rated, whatever its
    # trace; c sits exactly at the mean: "at or above" prunes it gently
    traces = {"a": 10.0, "b": 2.0, "c": 6.0, "d": 100.0}
    assert hessian_rates(traces, sizes, total=1000, percent=20.0) == {"a": 10.0, "b": 30.0, "c": 10.0, "d": 0.0}
    assert hessian_rates(traces, sizes, total=1000, percent=10.0) == {"a": 5.0, "b": 20.0, "c": 5.0, "d": 0.0}
    assert hessian_rates(traces, sizes, total=1000, percent=14.0) == {"a": 7.0, "b": 28.0, "c": 7.0, "d": 0.0}
    # with d rated (total 400: 5 is 1.25 %) its huge trace moves the mean to 29.5: only d is pruned gently
    assert hessian_rates(traces, sizes, total=400, percent=10.0) == {"a": 20.0, "b": 20.0, "c": 20.0, "d": 5.0}


def test_hessian_prune_counts_follow_the_rates_and_want_every_trace():
    g = torch.Generator().manual_seed(0)
    weights = {n: torch.randn(s, generator=g) for n, s in zip(NAMES, SIZES)}
    masks = full_masks(weights)
    traces = {NAMES[0]: 3.0, NAMES[1]: 1.0, NAMES[2]: 0.5}  # mean 1.5: layer 0 gentle, layers 1 and 2 hard
    assert needs_trace(masks, TOTAL) == list(NAMES[:3])
    new = hessian_prune(weights, masks, 20.0, traces, total=TOTAL)
    expected = {NAMES[0]: prune_count(240, 10.0), NAMES[1]: prune_count(1200, 30.0), NAMES[2]: prune_count(90, 30.0),
                NAMES[3]: 0}
    assert {n: int((~m).sum()) for n, m in new.items()} == expected
    for name in NAMES[:3]:
        assert weights[name][~new[name]].abs().max() <= weights[name][new[name]].abs().min()  # by magnitude
    with pytest.raises(ValueError, match="body.2.weight"):
        hessian_prune(weights, masks, 20.0, {NAMES[0]: 1.0, NAMES[2]: 1.0}, total=TOTAL)


def _survivors(h, folder, ite):
    return {n: int(torch.count_nonzero(w)) for n, w in h.load(folder.snapshot(ite, 0)).items() if n in NAMES}


def test_run_with_injected_traces_follows_the_rule(tmp_path, h):
    calls = []
    script = iter([{NAMES[0]: 5.0, NAMES[1]: 1.0, NAMES[2]: 3.0},    # mean 3: layers 0, 2 gentle
                   {NAMES[0]: 1.0, NAMES[1]: 9.0, NAMES[2]: 2.0}])   # mean 4: layer 1 gentle

    def traces(model, masks, names):
        calls.append((list(names), {n: int(m.sum()) for n, m in masks.items()}))
        return next(script)

    config = h.config(tmp_path / "run", prune_iterations=3, epochs=1, prune_type="hessian", prune_percent=20.0)
    run_training(config, components=_components(), layer_traces=traces)
    folder = RunFolder.for_config(config)
    n0 = dict(zip(NAMES, SIZES))
    n1 = {NAMES[0]: 240 - prune_count(240, 10), NAMES[1]: 1200 - prune_count(1200, 30),
          NAMES[2]: 90 - prune_count(90, 10), NAMES[3]: 9}
    n2 = {NAMES[0]: n1[NAMES[0]] - prune_count(n1[NAMES[0]], 30), NAMES[1]: n1[NAMES[1]] -
          prune_count(n1[NAMES[1]], 10), NAMES[2]: n1[NAMES[2]] - prune_count(n1[NAMES[2]], 30), NAMES[3]: 9}
    assert [_survivors(h, folder, ite) for ite in range(3)] == [n0, n1, n2]
    assert calls == [(list(NAMES[:3]), n0), (list(NAMES[:3]), n1)]  # the tiny head is never asked about
    assert folder.archive.exists() and folder.best(2).name == "2_model_hessian.pth"


def test_engine_traces_drive_the_run_and_resume_to_the_same_files(tmp_path, h):
    config = h.config(tmp_path / "fresh", prune_iterations=3, epochs=2, save_freq=1, prune_type="hessian",
                      trace_probes=5)
    run_training(config, components=_components())
    folder = RunFolder.for_config(config)
    # the rates of iteration 1, from a direct call on iteration 0's final weights with the same batch and seed
    model = WithTinyHead()
    model.load_state_dict(h.load(folder.snapshot(0, 2)))
    masks = full_masks({n: p for n, p in model.named_parameters() if default_is_prunable(n, p)})
    batches = _components().hessian_batches()
    traces = LayerTraces(batches, seed=config.seed, probes=5)(model, masks, NAMES[:3])
    rates = hessian_rates(traces, dict(zip(NAMES, SIZES)), total=TOTAL, percent=20.0)
    assert sorted(set(rates.values())) == [0.0, 10.0, 30.0]
    assert _survivors(h, folder, 1) == {n: s - prune_count(s, rates[n]) for n, s in zip(NAMES, SIZES)}

    half = h.config(tmp_path / "resumed", prune_iterations=2, epochs=2, save_freq=1, prune_type="hessian",
                    trace_probes=5)
    run_training(half, components=_components())
    resumed = h.config(tmp_path / "resumed", prune_iterations=3, epochs=2, save_freq=1, prune_type="hessian",
                       trace_probes=5)
    summary = run_training(resumed, components=_components())
    assert summary.iterations_skipped == (0, 1)
    assert h.digests(tmp_path / "fresh" / "checkpoints") == h.digests(tmp_path / "resumed" / "checkpoints")
