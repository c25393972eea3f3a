"""digits + fc1 through the registries: masks through Adam, determinism, and tracking against the engine."""
from __future__ import annotations

import pytest
import torch

from prunehess import data, models
from prunehess.training import RunFolder, engine_curvature, read_log, run_training


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    """A 2-iteration digits/fc1 run with Adam, tracking every epoch."""
    from prunehess.training import TrainConfig

    out = tmp_path_factory.mktemp("digits") / "run"
    config = TrainConfig(dataset="digits", model="fc1", output=out, prune_iterations=2, prune_percent=30.0,
                         epochs=2, save_freq=1, batch_size=100, optimizer="adam", lr=3e-3, seed=11, device="cpu",
                         track_eigen=1, hessian_batch_size=120, hessian_mini_batch_size=60, trace_probes=4)
    return config, run_training(config)


def test_fc1_adam_run_keeps_pruned_weights_zero_and_names_files(tracked_run):
    config, summary = tracked_run
    folder = RunFolder.for_config(config)
    assert summary.archive.name == "digits.zip"
    assert folder.remain_params.read_text().splitlines()[0] == "100.0"
    end0 = torch.load(folder.snapshot(0, 2), weights_only=True)
    start1 = torch.load(folder.snapshot(1, 0), weights_only=True)
    end1 = torch.load(folder.snapshot(1, 2), weights_only=True)
    assert list(end1) == ["classifier.0.weight", "classifier.0.bias", "classifier.2.weight", "classifier.2.bias",
                          "classifier.4.weight", "classifier.4.bias"]
    for name, w in end1.items():
        if name.endswith("weight"):
            pruned = start1[name] == 0
            assert int(pruned.sum()) == round(0.3 * w.numel())
            assert torch.count_nonzero(w[pruned]) == 0 and bool((w[~pruned] != 0).all())
            # the pruned ones were the smallest of the previous iteration's final weights
            assert end0[name][pruned].abs().max() <= end0[name][~pruned].abs().min()


def test_tracking_agrees_with_a_direct_engine_call_on_the_checkpoint(tracked_run):
    config, _ = tracked_run
    folder = RunFolder.for_config(config)
    rows = {(r["iteration"], r["epoch"]): r for r in read_log(folder.log)}
    assert all(r["top_eigenvalue"] is not None and r["trace"] is not None for r in rows.values())
    batches = data.hessian_batch("digits", root="unused", size=120, mini_batch_size=60, seed=config.seed,
                                 device="cpu")
    model = models.build_model("fc1", input_shape=(1, 8, 8), num_classes=10)
    for ite, epoch in [(0, 0), (0, 2), (1, 1)]:
        model.load_state_dict(torch.load(folder.snapshot(ite, epoch), weights_only=True))
        direct = engine_curvature(model, batches, seed=config.seed, trace_probes=config.trace_probes)
        row = rows[(ite, epoch)]
        assert row["top_eigenvalue"] == pytest.approx(direct.top_eigenvalue, rel=1e-6, abs=1e-9)
        assert row["trace"] == pytest.approx(direct.trace, rel=1e-6, abs=1e-9)
        assert direct.top_eigenvalue > 0


def test_digits_run_is_deterministic(tracked_run, tmp_path, h):
    config, _ = tracked_run
    from dataclasses import replace

    again = replace(config, output=tmp_path / "again")
    run_training(again)
    assert h.digests(config.output / "checkpoints") == h.digests(again.output / "checkpoints")
    assert (config.output / "train_log.csv").read_bytes() == (again.output / "train_log.csv").read_bytes()


def test_zip_round_trips_through_the_extract_side(tracked_run, tmp_path):
    from prunehess.checkpoints import discover, load_checkpoint, load_into_model, safe_extract
    from prunehess.operators import zero_masks as masks_from_zeros

    config, summary = tracked_run
    safe_extract(summary.archive, tmp_path / "unpacked")
    found = discover(tmp_path / "unpacked")
    assert found.naming == "lottery-ticket" and found.unmatched == []
    refs = [(r.iteration, r.epoch, r.kind) for r in found.checkpoints]
    expected = [(-1, 0, "initial")]
    for ite in range(2):
        expected += [(ite, epoch, "snapshot") for epoch in range(3)] + [(ite, None, "best")]
    assert refs == expected
    model = models.build_model("fc1", input_shape=(1, 8, 8), num_classes=10)
    for ref in found.checkpoints:
        ckpt = load_checkpoint(ref.path, expected_keys=model.state_dict().keys())
        load_into_model(model, ckpt)
        masks = masks_from_zeros(model, models.is_prunable)
        assert (masks == {}) == (ref.iteration < 1), ref
        if ref.iteration == 1:
            assert all(int((~m).sum()) == round(0.3 * m.numel()) for m in masks.values())
