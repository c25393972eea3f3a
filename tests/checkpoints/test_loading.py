"""load_checkpoint / load_into_model / masks_from_zeros: wrappers, prefixes, prune pairs, refusals, clear errors."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from prunehess.checkpoints.loading import load_checkpoint, load_into_model
from prunehess.operators import zero_masks as masks_from_zeros
from prunehess.errors import CheckpointError


class MakesAFile:
    """A pickle payload that creates a folder when unpickled (the harmless stand-in for arbitrary code)."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.makedirs, (str(self.target),))


def save(obj, path: Path, **kw) -> Path:
    torch.save(obj, path, **kw)
    return path


def assert_same(state: dict, expected: dict) -> None:
    assert list(state) == list(expected)
    for k in expected:
        torch.testing.assert_close(state[k], expected[k], rtol=0, atol=0)


def one_line_naming(exc: Exception, path: Path) -> str:
    message = str(exc)
    assert "\n" not in message and str(path) in message
    return message


def pruned(model: nn.Module) -> nn.Module:
    prune.l1_unstructured(model.fc1, "weight", amount=0.5)
    prune.random_unstructured(model.fc2, "weight", amount=0.3)
    return model


# --- plain and wrapped state dicts ------------------------------------------------------------------------------


def test_plain_state_dict_roundtrip(tmp_path, new_model):
    src, dst = new_model(), new_model()
    ckpt = load_checkpoint(save(src.state_dict(), tmp_path / "c.pth"))
    assert_same(ckpt.state_dict, src.state_dict())
    assert ckpt.masks == {} and ckpt.meta == {} and ckpt.path == tmp_path / "c.pth"
    load_into_model(dst, ckpt)
    assert_same(dst.state_dict(), src.state_dict())


@pytest.mark.parametrize(
    "wrap, meta",
    [
        (lambda sd: {"state_dict": {f"model.{k}": v for k, v in sd.items()}, "epoch": 5, "global_step": 10,
                     "pytorch-lightning_version": "2.2.0", "optimizer_states": [{"state": {}}]},
         {"epoch": 5, "global_step": 10, "pytorch-lightning_version": "2.2.0", "wrapper": "state_dict",
          "prefix": "model."}),
        (lambda sd: {"model_state_dict": sd, "optimizer_state_dict": {"state": {}, "param_groups": []}, "ep": 2,
                     "it": 0}, {"ep": 2, "it": 0, "wrapper": "model_state_dict"}),
        (lambda sd: {"model": sd, "best_acc": 98.2}, {"best_acc": 98.2, "wrapper": "model"}),
        (lambda sd: {"net": sd, "acc": 91.5, "epoch": 199}, {"acc": 91.5, "epoch": 199, "wrapper": "net"}),
        (lambda sd: {"weights": sd, "note": "custom"}, {"note": "custom", "wrapper": "weights"}),
        (lambda sd: {"checkpoint": {"state_dict": sd, "epoch": 1}}, {"epoch": 1, "wrapper": "checkpoint/state_dict"}),
    ],
    ids=["lightning", "openlth", "model", "net", "single-dict", "nested"],
)
def test_wrappers(tmp_path, new_model, wrap, meta):
    sd = new_model().state_dict()
    ckpt = load_checkpoint(save(wrap(sd), tmp_path / "c.ckpt"))
    assert_same(ckpt.state_dict, sd)
    assert ckpt.meta == meta


@pytest.mark.parametrize("prefix", ["module.", "module.module.", "model.", "model.module.", "_orig_mod."])
def test_known_prefixes_are_stripped(tmp_path, new_model, prefix):
    sd = new_model().state_dict()
    ckpt = load_checkpoint(save({prefix + k: v for k, v in sd.items()}, tmp_path / "c.pth"))
    assert_same(ckpt.state_dict, sd)
    assert ckpt.meta["prefix"] == prefix


def test_expected_keys_choose_any_prefix_and_drop_the_rest(tmp_path, new_model):
    model = new_model()
    sd = model.state_dict()
    stored = {"criterion.weight": torch.ones(2), **{f"backbone.{k}": v for k, v in sd.items()}}
    ckpt = load_checkpoint(save({"state_dict": stored}, tmp_path / "c.ckpt"), expected_keys=sd.keys())
    assert_same(ckpt.state_dict, sd)
    assert ckpt.meta["prefix"] == "backbone." and ckpt.meta["dropped_keys"] == ["criterion.weight"]
    load_into_model(model, ckpt)


def test_expected_keys_keep_a_model_prefix_that_belongs_to_the_model(tmp_path, new_model):
    model = nn.Sequential()
    model.add_module("model", new_model())  # keys "model.fc1.weight", ...: nothing to strip
    path = save(model.state_dict(), tmp_path / "c.pth")
    assert list(load_checkpoint(path).state_dict)[0] == "fc1.weight"  # without the model's keys: stripped
    ckpt = load_checkpoint(path, expected_keys=model.state_dict().keys())
    assert_same(ckpt.state_dict, model.state_dict())
    load_into_model(model, ckpt)


# --- prune pairs and masks --------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "module."])
def test_prune_pairs_are_folded_and_masks_kept(tmp_path, new_model, prefix):
    model = pruned(new_model())
    stored = {prefix + k: v for k, v in model.state_dict().items()}
    assert "fc1.weight_orig" in model.state_dict() and "fc1.weight" not in model.state_dict()
    ckpt = load_checkpoint(save(stored, tmp_path / "c.pth"))
    assert list(ckpt.state_dict) == ["fc1.bias", "fc1.weight", "fc2.bias", "fc2.weight"]
    torch.testing.assert_close(ckpt.state_dict["fc1.weight"], model.fc1.weight, rtol=0, atol=0)
    torch.testing.assert_close(ckpt.state_dict["fc2.weight"], model.fc2.weight, rtol=0, atol=0)
    assert sorted(ckpt.masks) == ["fc1.weight", "fc2.weight"]
    assert ckpt.masks["fc1.weight"].dtype == torch.bool
    assert torch.equal(ckpt.masks["fc1.weight"], model.fc1.weight_mask.bool())
    assert int(ckpt.masks["fc1.weight"].sum()) == 6  # 50 % of 12 survive
    fresh = new_model()
    load_into_model(fresh, ckpt)
    x = torch.randn(5, 4)
    torch.testing.assert_close(fresh(x), model(x))


def test_mask_file_adds_masks(tmp_path, new_model):
    sd = new_model().state_dict()
    mask = (torch.rand(3, 4) > 0.5).int()
    ckpt = load_checkpoint(save(sd, tmp_path / "m.pth"), mask_path=save({"fc1.weight": mask}, tmp_path / "mask.pth"))
    assert list(ckpt.masks) == ["fc1.weight"] and torch.equal(ckpt.masks["fc1.weight"], mask.bool())


def test_mask_file_is_combined_with_prune_masks(tmp_path, new_model):
    model = pruned(new_model())
    extra = torch.zeros(3, 4, dtype=torch.int32)
    extra[0] = 1
    ckpt = load_checkpoint(save(model.state_dict(), tmp_path / "m.pth"),
                           mask_path=save({"fc1.weight": extra}, tmp_path / "mask.pth"))
    assert torch.equal(ckpt.masks["fc1.weight"], model.fc1.weight_mask.bool() & extra.bool())


@pytest.mark.parametrize(
    "masks, words",
    [
        ({"fc1.weight": torch.ones(4, 3)}, "has shape (4, 3), the weight (3, 4)"),
        ({"fc9.weight": torch.ones(3, 4)}, "mask for 'fc9.weight'"),
        ({"fc1.weight": torch.full((3, 4), 2.0)}, "other than 0 and 1"),
    ],
    ids=["shape", "unknown", "values"],
)
def test_bad_mask_file(tmp_path, new_model, masks, words):
    mask_path = save(masks, tmp_path / "mask.pth")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(save(new_model().state_dict(), tmp_path / "m.pth"), mask_path=mask_path)
    assert words in one_line_naming(info.value, mask_path)


def test_masks_from_zeros(new_model):
    model = new_model()
    with torch.no_grad():
        model.fc1.weight[0, :2] = 0.0
        model.fc1.bias[0] = 0.0
    masks = masks_from_zeros(model, lambda name, p: p.dim() > 1)
    assert list(masks) == ["fc1.weight"]  # fc2.weight has no zeros, biases are not prunable
    assert masks["fc1.weight"].dtype == torch.bool and int((~masks["fc1.weight"]).sum()) == 2
    assert list(masks_from_zeros(model, lambda name, p: True)) == ["fc1.weight", "fc1.bias"]


# --- refusals: code in the pickle -------------------------------------------------------------------------------


def test_a_pickled_module_is_refused_unless_trusted(tmp_path, new_model):
    model = pruned(new_model())
    path = save(model, tmp_path / "0_model_lt.pth.tar")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = one_line_naming(info.value, path)
    assert "refused by the safe loader" in message and "torch.nn" in message
    assert "--trust-checkpoints" in message and "arbitrary code" in message
    ckpt = load_checkpoint(path, trust=True)
    assert ckpt.meta["wrapper"] == "<module>"
    torch.testing.assert_close(ckpt.state_dict["fc1.weight"], model.fc1.weight, rtol=0, atol=0)
    assert sorted(ckpt.masks) == ["fc1.weight", "fc2.weight"]
    load_into_model(new_model(), ckpt)


def test_a_trusted_module_inside_a_wrapper(tmp_path, new_model):
    model = new_model()
    ckpt = load_checkpoint(save({"model": nn.DataParallel(model), "epoch": 4}, tmp_path / "c.pth"), trust=True)
    assert_same(ckpt.state_dict, model.state_dict())
    assert ckpt.meta["epoch"] == 4 and ckpt.meta["prefix"] == "module."


@pytest.mark.parametrize("how", ["torch.save", "legacy torch.save", "pickle.dump"])
def test_a_malicious_reduce_payload_never_runs(tmp_path, how):
    target = tmp_path / "pwned"
    payload = {"fc1.weight": torch.ones(2, 2), "x": MakesAFile(target)}
    path = tmp_path / "evil.pth"
    if how == "pickle.dump":
        with open(path, "wb") as f:
            pickle.dump(payload, f)
    else:
        save(payload, path, _use_new_zipfile_serialization=how == "torch.save")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert not target.exists()
    message = one_line_naming(info.value, path)
    if how != "pickle.dump":  # a bare pickle lacks torch's header: refused as unreadable before unpickling
        assert "refused by the safe loader" in message and "makedirs" in message and "--trust-checkpoints" in message


def test_the_payload_is_real(tmp_path):
    """The stand-in does run under full pickle, so the test above proves a refusal, not a dud."""
    target = tmp_path / "pwned"
    path = save({"fc1.weight": torch.ones(2, 2), "x": MakesAFile(target)}, tmp_path / "evil.pth")
    load_checkpoint(path, trust=True)
    assert target.is_dir()


# --- broken files -----------------------------------------------------------------------------------------------


def test_non_finite_values(tmp_path, new_model):
    for bad in (float("nan"), float("inf")):
        sd = new_model().state_dict()
        sd["fc2.bias"][1] = bad
        path = save({"state_dict": sd}, tmp_path / "c.pth")
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(path)
        assert one_line_naming(info.value, path).endswith("non-finite values in fc2.bias")


def test_non_finite_values_behind_a_prune_pair(tmp_path, new_model):
    model = pruned(new_model())
    sd = model.state_dict()
    keep = sd["fc1.weight_mask"].nonzero()[0]
    sd["fc1.weight_orig"][tuple(keep)] = float("inf")
    with pytest.raises(CheckpointError, match="non-finite values in fc1.weight$"):
        load_checkpoint(save(sd, tmp_path / "c.pth"))


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda p, sd: write(p, save(sd, p).read_bytes()[:400]), "truncated or corrupt"),
        (lambda p, sd: write(p, save(sd, p, _use_new_zipfile_serialization=False).read_bytes()[:400]),
         "truncated or corrupt"),
        (lambda p, sd: write(p, b"hello, not a checkpoint\n"), "truncated or corrupt"),
        (lambda p, sd: write(p, b""), "truncated or corrupt"),
        (lambda p, sd: save([1, 2, 3], p), "holds a list, not a state dict"),
        (lambda p, sd: save({"epoch": 3, "lr": 0.1}, p), "holds no tensors (keys: epoch, lr)"),
        (lambda p, sd: save({0: torch.ones(1)}, p), "non-string key"),
        (lambda p, sd: p, "no such file"),
    ],
    ids=["truncated", "truncated-legacy", "text", "empty", "list", "no-tensors", "int-keys", "missing"],
)
def test_unreadable_files(tmp_path, new_model, make, words):
    path = make(tmp_path / "c.pth", new_model().state_dict())
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert words in one_line_naming(info.value, path)


# --- load_into_model --------------------------------------------------------------------------------------------


def test_mismatch_names_keys_and_shapes(tmp_path, new_model):
    model = new_model()
    sd = {k: v for k, v in model.state_dict().items() if k != "fc2.bias"}
    sd["fc1.weight"] = torch.zeros(3, 5)
    sd["extra.weight"] = torch.zeros(1)
    ckpt = load_checkpoint(save(sd, tmp_path / "c.pth"))
    with pytest.raises(CheckpointError) as info:
        load_into_model(model, ckpt)
    message = one_line_naming(info.value, tmp_path / "c.pth")
    assert "missing keys fc2.bias" in message
    assert "unexpected keys extra.weight" in message
    assert "fc1.weight: checkpoint (3, 5) vs model (3, 4)" in message


def test_mismatch_lists_the_first_few(tmp_path, new_model):
    sd = {f"layer{i}.weight": torch.zeros(1) for i in range(7)}
    ckpt = load_checkpoint(save(sd, tmp_path / "c.pth"))
    with pytest.raises(CheckpointError) as info:
        load_into_model(new_model(), ckpt)
    assert "unexpected keys layer0.weight, layer1.weight, layer2.weight (and 4 more)" in str(info.value)
    assert "missing keys fc1.weight, fc1.bias, fc2.weight (and 1 more)" in str(info.value)


def test_old_batchnorm_checkpoints_without_num_batches_tracked_load(tmp_path):
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    sd = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    load_into_model(nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)), load_checkpoint(save(sd, tmp_path / "c.pth")))
