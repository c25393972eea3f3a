"""``prunehess train``: options, YAML config (command line wins), one-line errors, and a digits run."""
from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest
import yaml
from click.testing import CliRunner

import prunehess.cli.train  # noqa: F401  (registers the command on the group)
from prunehess.cli import main


def _invoke(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_help_documents_the_options():
    result = _invoke("train", "--help")
    assert result.exit_code == 0
    for option in ("--prune-iterations", "--prune-percent", "--save-freq", "--prune-type", "--global-pruning",
                   "--track-eigen", "--batch-schedule", "--absa-threshold", "--absa-factor", "--config", "--zipname"):
        assert option in result.output
    assert "Yao et al. 2018" in result.output


def test_digits_run_with_yaml_config_where_the_command_line_wins(tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({
        "dataset": "digits", "model": "fc1", "prune-iterations": 2, "prune_percent": 50, "epochs": 5,
        "save-freq": 1, "seed": 4, "batch-size": 150, "optimizer": "sgd", "lr": 0.05, "zipname": "tiny.zip",
    }))
    out = tmp_path / "run"
    result = _invoke("train", "--config", str(config), "--epochs", "1", "--output", str(out), "--no-cuda")
    assert result.exit_code == 0, result.output
    assert "Remaining params (%): 100.0 " in result.output
    resolved = yaml.safe_load((out / "train_config.yaml").read_text())
    assert resolved["epochs"] == 1 and resolved["prune_percent"] == 50 and resolved["seed"] == 4
    assert resolved["optimizer"] == "sgd" and resolved["device"] == "cpu"
    with zipfile.ZipFile(out / "tiny.zip") as zf:
        names = set(zf.namelist())
        remain = zf.read("remain_params.txt").decode().split()
    assert {"initial_state_dict_lt.pth", "0_model_lt_epoch0.pth", "0_model_lt_epoch1.pth", "0_model_lt.pth",
            "1_model_lt_epoch0.pth", "1_model_lt_epoch1.pth", "1_model_lt.pth", "remain_params.txt",
            "train_log.csv", "train_config.yaml"} == names
    # fc1 on digits: 64·300 + 300·100 + 100·10 weights, 410 biases; half of each layer's weights pruned once
    weights, biases = 64 * 300 + 300 * 100 + 100 * 10, 300 + 100 + 10
    assert remain == ["100.0", f"{100 * (weights // 2 + biases) / (weights + biases):.1f}"]

    rerun = _invoke("train", "--config", str(config), "--epochs", "1", "--output", str(out), "--no-cuda")
    assert rerun.exit_code == 0 and "skipped finished iterations [0, 1]" in rerun.output


@pytest.mark.parametrize("content, message", [
    ("dataset: digits\nlearning_rate: 0.1\n", "unknown option(s) learning_rate; known:"),
    ("dataset: [digits\n", "malformed YAML at line"),
    ("- digits\n", "expected a mapping"),
])
def test_bad_config_files_are_one_line_errors(tmp_path, content, message):
    config = tmp_path / "bad.yaml"
    config.write_text(content)
    result = CliRunner().invoke(main, ["train", "--config", str(config), "--model", "fc1", "--output",
                                       str(tmp_path / "o")])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {config}: ") and message in lines[0]


@pytest.mark.parametrize("args, message", [
    (["--batch-schedule", "absa"], "--track-eigen"),
    (["--device", "cuda", "--no-cuda"], "contradicts --no-cuda"),
    (["--track-eigen", "1", "--batch-schedule", "absa", "--absa-max-batch-size", "10"], "below --batch-size"),
])
def test_contradictory_options_are_one_line_errors(tmp_path, args, message):
    result = CliRunner().invoke(main, ["train", "--dataset", "digits", "--model", "fc1", "--output",
                                       str(tmp_path / "o"), *args])
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and message in result.output and len(result.output.splitlines()) == 1


def test_unknown_model_is_a_one_line_error(tmp_path):
    result = CliRunner().invoke(main, ["train", "--dataset", "digits", "--model", "fc9", "--output",
                                       str(tmp_path / "o"), "--no-cuda"])
    assert result.exit_code == 1 and result.output.startswith("Error: ") and "fc9" in result.output


def test_installed_entry_point_has_the_command():
    result = subprocess.run([sys.executable, "-m", "prunehess", "train", "--help"], capture_output=True, text=True)
    if "No such command 'train'" in result.stderr:
        pytest.skip("prunehess.cli does not import prunehess.cli.train yet (the lead registers it)")
    assert result.returncode == 0 and "--prune-iterations" in result.stdout
