"""TrainConfig: declared options, validation naming the option, derived values, mapping input, resume fingerprint."""
from __future__ import annotations

from pathlib import Path

import pytest

from prunehess.errors import ConfigError
from prunehess.options import all_keys
from prunehess.training import TrainConfig


def _config(**overrides):
    values = dict(dataset="digits", model="fc1", output="out", device="cpu")
    values.update(overrides)
    return TrainConfig(**values)


def test_defaults_and_derived_values():
    config = _config(epochs=25, save_freq=10, track_eigen=5)
    assert config.output == Path("out") and config.archive_name == "digits.zip"
    assert config.snapshot_epochs == (0, 10, 20)
    assert [e for e in range(26) if config.tracked(e)] == [0, 5, 10, 15, 20, 25]
    assert not _config().tracked(0)
    assert _config(zip_name="mine.zip").archive_name == "mine.zip"
    assert _config(epochs=5.0).epochs == 5 and isinstance(_config(epochs=5.0).epochs, int)


def test_every_field_but_model_kwargs_is_a_declared_option():
    import dataclasses

    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    keys = all_keys(TrainConfig)
    assert len(keys) == len(fields) - 1 and "model_kwargs" not in keys and "zipname" in keys


@pytest.mark.parametrize("overrides, message", [
    (dict(prune_type="rewind"), "prune_type: 'rewind' is not one of lt, reinit, random, hessian"),
    (dict(optimizer="rmsprop"), "optimizer: 'rmsprop' is not one of sgd, adam"),
    (dict(prune_percent=100), "--prune-percent must be in [0, 100)"),
    (dict(prune_percent=-1), "prune_percent must be at least 0"),
    (dict(epochs=0), "epochs must be at least 1"),
    (dict(save_freq=True), "save_freq must be an integer"),
    (dict(batch_schedule="absa"), "--track-eigen"),
    (dict(absa_threshold=1.5), "--absa-threshold"),
    (dict(zip_name="../x.zip"), "--zipname"),
    (dict(lr=0), "lr must be positive"),
    (dict(warmup=30), "--warmup 30 is longer than --epochs 20"),
    (dict(lr_milestones="5,x"), "--lr-milestones: 'x' is not an epoch"),
    (dict(lr_milestones="5,20"), "--lr-milestones: give distinct epochs in 1..19"),
    (dict(lr_milestones="5,5"), "--lr-milestones: give distinct epochs"),
    (dict(variants="lt,magnitude"), "--variants: 'magnitude' is not one of lt, reinit, random, hessian"),
    (dict(variants="lt,lt"), "--variants: give distinct prune types"),
    (dict(variants="lt,random", prune_type="reinit"), "--variants replaces --prune-type"),
    (dict(prune_type="reinit", rewind_epoch=10), "--rewind-epoch 10: reinit re-initialises the survivors"),
    (dict(variants="lt,reinit", rewind_epoch=10), "--rewind-epoch 10: reinit re-initialises the survivors"),
    (dict(rewind_epoch=5), "--rewind-epoch 5 is not a saved epoch of iteration 0 (0, 10, 20: --save-freq 10"),
    (dict(prune_type="hessian", global_pruning=True), "hessian sets a pruning rate per layer"),
    (dict(dataset=None), "missing --dataset"),
    (dict(device="cuda", cuda=False), "contradicts --no-cuda"),
])
def test_bad_values_name_the_option(overrides, message):
    with pytest.raises(ConfigError) as err:
        _config(**overrides)
    assert message in str(err.value)


def test_lists_accept_commas_python_lists_and_yaml_lists_as_click_passes_them():
    assert _config(lr_milestones="15, 5").lr_milestones == "5,15"
    assert _config(lr_milestones=[15, 5]).milestone_epochs == (5, 15)
    assert _config(lr_milestones="[5, 15]").milestone_epochs == (5, 15)
    assert _config(variants="['random', 'lt']").variant_types == ("random", "lt")
    assert _config(variants=" lt , reinit ").variants == "lt,reinit"


def test_variant_configs_one_per_type_into_subfolders():
    config = _config(variants="lt,random,hessian", rewind_epoch=10, seed=4)
    runs = config.variant_configs()
    assert [(c.prune_type, c.output, c.variants, c.seed, c.rewind_epoch) for c in runs] == [
        ("lt", Path("out/lt"), None, 4, 10), ("random", Path("out/random"), None, 4, 10),
        ("hessian", Path("out/hessian"), None, 4, 10)]
    assert _config().variant_configs() == (_config(),)


def test_from_mapping_accepts_dashes_option_keys_and_refuses_unknown_keys():
    config = TrainConfig.from_mapping({"dataset": "digits", "model": "fc1", "output": "o", "prune-percent": 30,
                                       "zipname": "a.zip", "device": "cpu"}, source="run.yaml")
    assert config.prune_percent == 30 and config.zip_name == "a.zip"
    assert TrainConfig.from_mapping({"dataset": "digits", "model": "fc1", "output": "o", "zip_name": "b.zip",
                                     "device": "cpu"}).zip_name == "b.zip"
    with pytest.raises(ConfigError, match="run.yaml: unknown option 'learning-rate'"):
        TrainConfig.from_mapping({"dataset": "digits", "learning-rate": 1}, source="run.yaml")
    with pytest.raises(ConfigError, match="run.yaml: missing --model, --output"):
        TrainConfig.from_mapping({"dataset": "digits"}, source="run.yaml")


def test_model_switches_fold_into_model_kwargs():
    config = _config(depth=8, batch_norm=False, model_kwargs={"width": 2})
    assert config.model_kwargs == {"width": 2, "depth": 8, "batch_norm": False}
    assert "depth" not in config.to_dict() and config.to_dict()["model_kwargs"] == config.model_kwargs


def test_fingerprint_ignores_what_does_not_change_the_numbers():
    a = _config(prune_iterations=3, output="a", zip_name="a.zip", num_workers=2, download=True, data_root="d")
    b = _config(prune_iterations=9, output="b", variants="lt,random")
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != _config(seed=1).fingerprint()
    assert a.to_dict()["output"] == "a"


# What the previous version's TrainConfig.fingerprint() gave for TrainConfig(dataset="digits", model="fc1",
# output=..., device="cpu"): an interrupted run of that version must still resume.
PREVIOUS_FINGERPRINT = {
    "dataset": "digits", "model": "fc1", "prune_percent": 20.0, "epochs": 20, "save_freq": 10, "prune_type": "lt",
    "global_pruning": False, "seed": 0, "optimizer": "adam", "lr": 1.2e-3, "momentum": 0.9, "weight_decay": 1e-4,
    "batch_size": 60, "test_batch_size": 1000, "device": "cpu", "track_eigen": None, "hessian_batch_size": 200,
    "hessian_mini_batch_size": None, "trace_probes": 20, "batch_schedule": "constant", "absa_factor": 2,
    "absa_threshold": 0.5, "absa_max_batch_size": 4096, "absa_reference": "peak", "model_kwargs": {},
}


def test_fingerprint_of_todays_options_is_the_previous_versions():
    assert _config().fingerprint() == PREVIOUS_FINGERPRINT
    assert _config(depth=8).fingerprint() == {**PREVIOUS_FINGERPRINT, "model_kwargs": {"depth": 8}}


@pytest.mark.parametrize("overrides", [dict(rewind_epoch=10), dict(warmup=2), dict(lr_milestones="5"),
                                       dict(lr_gamma=0.5)])
def test_new_options_enter_the_fingerprint_only_off_their_default(overrides):
    (key, value), = overrides.items()
    assert _config(**overrides).fingerprint() == {**PREVIOUS_FINGERPRINT, key: value}


def test_train_config_yaml_keeps_the_previous_keys():
    previous = set(PREVIOUS_FINGERPRINT) | {"output", "prune_iterations", "data_root", "download", "num_workers",
                                            "zip_name"}
    written = _config().to_dict()
    assert previous <= set(written)
    assert set(written) - previous == {"rewind_epoch", "variants", "warmup", "lr_milestones", "lr_gamma"}
