"""Late rewinding restores iteration 0's epoch-E weights under the new masks; warmup and milestones set each
epoch's learning rate, again in every iteration."""
from __future__ import annotations

import pytest
import torch

import prunehess.training.run as run_module
from prunehess.training import RunFolder, lr_at, read_log, run_training
from prunehess.training.pruning import default_is_prunable


@pytest.mark.parametrize("prune_type", ["lt", "random"])
def test_rewinding_restores_epoch_e_weights_under_the_new_mask(tmp_path, h, prune_type):
    config = h.config(tmp_path / "run", prune_iterations=3, epochs=4, save_freq=2, rewind_epoch=2,
                      prune_type=prune_type)
    run_training(config, components=h.components())
    folder = RunFolder.for_config(config)
    rewind, initial = h.load(folder.snapshot(0, 2)), h.load(folder.initial)
    for ite in (1, 2):
        start = h.load(folder.snapshot(ite, 0))
        for name, value in start.items():
            if default_is_prunable(name, value):
                survives = value != 0
                assert 0 < int(survives.sum()) < value.numel()
                assert torch.count_nonzero(value[~survives]) == 0
            else:
                survives = torch.ones_like(value, dtype=torch.bool)
            assert torch.equal(value[survives], rewind[name][survives]), (ite, name)  # biases too
            assert not torch.equal(value[survives], initial[name][survives]), (ite, name)


def test_rewinding_resumes_to_the_same_files(tmp_path, h):
    common = dict(epochs=2, save_freq=1, rewind_epoch=1)
    run_training(h.config(tmp_path / "fresh", prune_iterations=3, **common), components=h.components())
    run_training(h.config(tmp_path / "resumed", prune_iterations=2, **common), components=h.components())
    summary = run_training(h.config(tmp_path / "resumed", prune_iterations=3, **common), components=h.components())
    assert summary.iterations_skipped == (0, 1)
    assert h.digests(tmp_path / "fresh" / "checkpoints") == h.digests(tmp_path / "resumed" / "checkpoints")


def test_rewind_zero_is_todays_behaviour(tmp_path, h):
    run_training(h.config(tmp_path / "a", prune_iterations=2, epochs=1), components=h.components())
    run_training(h.config(tmp_path / "b", prune_iterations=2, epochs=1, rewind_epoch=0), components=h.components())
    assert h.digests(tmp_path / "a" / "checkpoints") == h.digests(tmp_path / "b" / "checkpoints")


@pytest.mark.parametrize("kwargs, expected", [
    (dict(), [0.1] * 6),
    (dict(warmup=3), [0.1 / 3, 0.2 / 3, 0.1, 0.1, 0.1, 0.1]),
    (dict(milestones=(2, 4)), [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]),
    (dict(milestones=(4,), gamma=0.5), [0.1, 0.1, 0.1, 0.1, 0.05, 0.05]),
    (dict(warmup=2, milestones=(1,), gamma=0.5), [0.05, 0.05, 0.05, 0.05, 0.05, 0.05]),
])
def test_lr_at_each_epoch(kwargs, expected):
    assert [lr_at(e, lr=0.1, **kwargs) for e in range(1, 7)] == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError):
        lr_at(0, lr=0.1)


def test_run_trains_each_epoch_at_the_scheduled_lr_every_iteration(tmp_path, h, monkeypatch):
    used = []
    original = run_module.train_epoch

    def recording(model, loader, optimizer, masks, **kwargs):
        used.append(optimizer.param_groups[0]["lr"])
        return original(model, loader, optimizer, masks, **kwargs)

    monkeypatch.setattr(run_module, "train_epoch", recording)
    config = h.config(tmp_path / "run", prune_iterations=2, epochs=5, lr=0.05, warmup=2, lr_milestones="3,4",
                      lr_gamma=0.1)
    run_training(config, components=h.components())
    per_iteration = [0.025, 0.05, 0.05, 0.005, 0.0005]
    assert used == pytest.approx(per_iteration * 2, rel=1e-12)
    rows = read_log(RunFolder.for_config(config).log)
    assert [r["lr"] for r in rows if r["epoch"] == 0] == [None, None]
    assert [r["lr"] for r in rows if r["epoch"] > 0] == pytest.approx(per_iteration * 2, rel=1e-12)
