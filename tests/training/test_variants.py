"""--variants: one initialisation and one data order for every variant, each in its own folder, zip and resume."""
from __future__ import annotations

import dataclasses
import zipfile

import torch
import yaml
from torch.utils.data import TensorDataset

from prunehess.checkpoints import discover, safe_extract
from prunehess.training import RunFolder, run_variants


class RecordingSet(TensorDataset):
    """A TensorDataset that remembers which samples were asked for, in order (one lookup per batch)."""

    def __init__(self, *tensors):
        super().__init__(*tensors)
        self.requests = []

    def __getitem__(self, index):
        self.requests.append(torch.as_tensor(index).reshape(-1).tolist())
        return super().__getitem__(index)


def _recording(components):
    train = components.train_set
    return dataclasses.replace(components, train_set=RecordingSet(*train.tensors))


def test_variants_share_initialisation_and_data_order(tmp_path, h):
    components = _recording(h.components())
    config = h.config(tmp_path / "out", prune_iterations=3, epochs=2, save_freq=1, variants="lt,reinit,random")
    summaries = run_variants(config, components=components)
    assert list(summaries) == ["lt", "reinit", "random"]
    folders = {name: RunFolder.for_config(c) for name, c in zip(summaries, config.variant_configs())}
    assert {name: f.root for name, f in folders.items()} == {n: tmp_path / "out" / n for n in summaries}

    initial = {name: f.initial.read_bytes() for name, f in folders.items()}
    assert initial["lt"] == initial["reinit"] == initial["random"]
    # iteration 0 is the same dense training in every variant (same start, same batches): identical files
    for epoch in (0, 1, 2):
        snapshots = {f.snapshot(0, epoch).read_bytes() for f in folders.values()}
        assert len(snapshots) == 1, epoch
    # and every later epoch of every iteration saw the same batches in the same order
    requests = components.train_set.requests
    per_variant = len(requests) // 3
    assert len(requests) == 3 * per_variant and per_variant == 2 * 3 * 6  # 6 batches of 16, 2 epochs, 3 iterations
    runs = [requests[i * per_variant:(i + 1) * per_variant] for i in range(3)]
    assert runs[0] == runs[1] == runs[2]
    assert runs[0][0] != runs[0][6]  # reshuffled each epoch
    # the variants differ where they should: which weights survive
    masks = {name: h.load(f.snapshot(1, 0))["body.2.weight"] != 0 for name, f in folders.items()}
    assert torch.equal(masks["lt"], masks["reinit"]) and not torch.equal(masks["lt"], masks["random"])

    for name, summary in summaries.items():
        assert summary.archive == tmp_path / "out" / name / "tiny.zip" and summary.prune_type == name
        with zipfile.ZipFile(summary.archive) as zf:
            names = set(zf.namelist())
            settings = yaml.safe_load(zf.read("train_config.yaml"))
        assert f"initial_state_dict_{name}.pth" in names and f"2_model_{name}_epoch2.pth" in names
        assert settings["prune_type"] == name and settings["variants"] is None
        assert settings["dataset"] == "tiny" and settings["model"] == "tiny"
        safe_extract(summary.archive, tmp_path / "unpacked" / name)
        found = discover(tmp_path / "unpacked" / name)  # what extract sees
        assert found.naming == "lottery-ticket" and found.unmatched == [] and len(found.checkpoints) == 1 + 3 * 4


def test_variants_resume_each_on_its_own(tmp_path, h):
    first = h.config(tmp_path / "out", prune_iterations=2, epochs=1, variants="lt,random")
    run_variants(first, components=h.components())
    lt_zip = (tmp_path / "out" / "lt" / "tiny.zip").read_bytes()
    events = []
    more = h.config(tmp_path / "out", prune_iterations=2, epochs=1, variants="lt,random,reinit")
    summaries = run_variants(more, components=h.components(), on_event=events.append)
    assert {n: (s.iterations_skipped, s.iterations_run) for n, s in summaries.items()} == {
        "lt": ((0, 1), ()), "random": ((0, 1), ()), "reinit": ((), (0, 1))}
    assert {e.variant for e in events if e.kind == "epoch"} == {"reinit"}
    assert {(e.variant, e.iteration) for e in events if e.kind == "skip"} == {
        ("lt", 0), ("lt", 1), ("random", 0), ("random", 1)}
    assert (tmp_path / "out" / "lt" / "tiny.zip").read_bytes() == lt_zip
