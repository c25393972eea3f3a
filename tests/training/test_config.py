"""TrainConfig: validation with option names, derived values, mapping input, resume fingerprint."""
from __future__ import annotations

from pathlib import Path

import pytest

from prunehess.errors import ConfigError
from prunehess.training import TrainConfig


def _config(**overrides):
    values = dict(dataset="digits", model="fc1", output="out")
    values.update(overrides)
    return TrainConfig(**values)


def test_defaults_and_derived_values():
    config = _config(epochs=25, save_freq=10, track_eigen=5)
    assert config.output == Path("out") and config.archive_name == "digits.zip"
    assert config.snapshot_epochs == (0, 10, 20)
    assert [e for e in range(26) if config.tracked(e)] == [0, 5, 10, 15, 20, 25]
    assert not _config().tracked(0)
    assert _config(zip_name="mine.zip").archive_name == "mine.zip"


@pytest.mark.parametrize("overrides, message", [
    (dict(prune_type="rewind"), "--prune-type must be one of lt, reinit"),
    (dict(optimizer="rmsprop"), "--optimizer must be one of sgd, adam"),
    (dict(prune_percent=100), "--prune-percent"),
    (dict(prune_percent=-1), "--prune-percent"),
    (dict(epochs=0), "--epochs must be an integer >= 1"),
    (dict(save_freq=True), "--save-freq"),
    (dict(batch_schedule="absa"), "--track-eigen"),
    (dict(absa_threshold=1.5), "--absa-threshold"),
    (dict(zip_name="../x.zip"), "--zipname"),
    (dict(lr=0), "--lr"),
])
def test_bad_values_name_the_option(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        _config(**overrides)


def test_from_mapping_accepts_dashes_and_refuses_unknown_keys():
    config = TrainConfig.from_mapping({"dataset": "digits", "model": "fc1", "output": "o", "prune-percent": 30},
                                      source="run.yaml")
    assert config.prune_percent == 30
    with pytest.raises(ConfigError, match="run.yaml: unknown option 'learning-rate'"):
        TrainConfig.from_mapping({"dataset": "digits", "learning-rate": 1}, source="run.yaml")
    with pytest.raises(ConfigError, match="missing --model, --output"):
        TrainConfig.from_mapping({"dataset": "digits"}, source="run.yaml")


def test_fingerprint_ignores_what_does_not_change_the_numbers():
    a = _config(prune_iterations=3, output="a", zip_name="a.zip")
    b = _config(prune_iterations=9, output="b")
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != _config(seed=1).fingerprint()
    assert a.to_dict()["output"] == "a"
