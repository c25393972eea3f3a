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


# Every spelling the previous `prunehess train` accepted, with a value that is not its default.
OLD_FLAGS = [
    "--dataset", "digits", "--model", "resnet20", "--output", "OUT", "--prune-iterations", "3",
    "--prune-percent", "35", "--global-pruning", "--prune-type", "reinit", "--epochs", "7", "--save-freq", "7",
    "--seed", "5", "--optimizer", "sgd", "--lr", "0.05", "--momentum", "0.8", "--weight-decay", "0.001",
    "--batch-size", "32", "--test-batch-size", "64", "--data-root", "DATA", "--download", "--no-cuda",
    "--device", "cpu", "--num-workers", "1", "--track-eigen", "2", "--hessian-batch-size", "100",
    "--hessian-mini-batch-size", "50", "--trace-probes", "7", "--batch-schedule", "absa", "--absa-factor", "3",
    "--absa-threshold", "0.25", "--absa-max-batch-size", "512", "--absa-reference", "previous", "--depth", "8",
    "--no-batch-norm", "--no-residual", "--zipname", "mine.zip",
]


def _captured(monkeypatch, tmp_path, args):
    import prunehess.cli.train as train_module

    seen = {}

    def fake_run(config, **kwargs):
        seen["config"] = config
        return {}

    monkeypatch.setattr(train_module, "run_variants", fake_run)
    args = [str(tmp_path / a) if a in ("OUT", "DATA") else a for a in args]
    result = CliRunner().invoke(main, ["train", *args])
    assert result.exit_code == 0, result.output
    return seen["config"]


def test_every_old_flag_still_works(monkeypatch, tmp_path):
    config = _captured(monkeypatch, tmp_path, OLD_FLAGS)
    assert (config.dataset, config.model, config.output) == ("digits", "resnet20", tmp_path / "OUT")
    assert (config.prune_iterations, config.prune_percent, config.global_pruning, config.prune_type) == (
        3, 35.0, True, "reinit")
    assert (config.epochs, config.save_freq, config.seed, config.optimizer) == (7, 7, 5, "sgd")
    assert (config.lr, config.momentum, config.weight_decay, config.batch_size, config.test_batch_size) == (
        0.05, 0.8, 0.001, 32, 64)
    assert (config.data_root, config.download, config.device, config.num_workers) == (
        tmp_path / "DATA", True, "cpu", 1)
    assert (config.track_eigen, config.hessian_batch_size, config.hessian_mini_batch_size, config.trace_probes) == (
        2, 100, 50, 7)
    assert (config.batch_schedule, config.absa_factor, config.absa_threshold, config.absa_max_batch_size,
            config.absa_reference) == ("absa", 3, 0.25, 512, "previous")
    assert config.model_kwargs == {"depth": 8, "batch_norm": False, "residual": False}
    assert config.zip_name == "mine.zip" and config.archive_name == "mine.zip"


def test_other_spellings_and_the_new_options(monkeypatch, tmp_path):
    base = ["--dataset", "digits", "--model", "fc1", "--output", "OUT", "--no-cuda"]
    config = _captured(monkeypatch, tmp_path, base + ["--global", "--batch-norm", "--residual"])
    assert config.global_pruning and config.model_kwargs == {"batch_norm": True, "residual": True}
    config = _captured(monkeypatch, tmp_path, base + [
        "--variants", "lt,random,hessian", "--rewind-epoch", "10", "--warmup", "3", "--lr-milestones", "15,5",
        "--lr-gamma", "0.5"])
    assert config.variant_types == ("lt", "random", "hessian") and config.rewind_epoch == 10
    assert (config.warmup, config.milestone_epochs, config.lr_gamma) == (3, (5, 15), 0.5)
    config = _captured(monkeypatch, tmp_path, base + ["--prune-type", "random"])
    assert config.prune_type == "random" and not config.global_pruning and config.model_kwargs == {}
    assert config.device == "cpu"


def test_cuda_flag_is_accepted(monkeypatch, tmp_path):
    import torch

    import prunehess.cli.train as train_module

    monkeypatch.setattr(train_module, "run_variants", lambda config, **kw: {})
    result = CliRunner().invoke(main, ["train", "--dataset", "digits", "--model", "fc1", "--output",
                                       str(tmp_path / "o"), "--cuda"])
    if torch.cuda.is_available():
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code == 1 and result.output.startswith("Error: --cuda requested but CUDA is not")


@pytest.mark.parametrize("args, message", [
    (["--variants", "lt,magnitude"], "--variants: 'magnitude' is not one of lt, reinit, random, hessian"),
    (["--rewind-epoch", "3", "--epochs", "4", "--save-freq", "2"],
     "--rewind-epoch 3 is not a saved epoch of iteration 0 (0, 2, 4"),
    (["--prune-type", "reinit", "--rewind-epoch", "2", "--epochs", "4", "--save-freq", "2"],
     "--rewind-epoch 2: reinit re-initialises the survivors, it does not rewind"),
    (["--variants", "lt,reinit", "--rewind-epoch", "10"], "reinit re-initialises the survivors"),
    (["--prune-type", "hessian", "--global"], "hessian sets a pruning rate per layer"),
    (["--lr-milestones", "5,x"], "--lr-milestones: 'x' is not an epoch"),
])
def test_bad_new_options_are_one_line_errors(tmp_path, args, message):
    result = CliRunner().invoke(main, ["train", "--dataset", "digits", "--model", "fc1", "--output",
                                       str(tmp_path / "o"), "--no-cuda", *args])
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], result.output
    assert not (tmp_path / "o").exists()


def test_missing_required_options_are_one_line_errors(tmp_path):
    result = CliRunner().invoke(main, ["train", "--model", "fc1", "--no-cuda"])
    assert result.exit_code == 1 and result.output.strip() == "Error: missing --dataset, --output"


def test_digits_variants_through_the_command_line(tmp_path):
    out = tmp_path / "pairs"
    args = ["train", "--dataset", "digits", "--model", "fc1", "--prune-iterations", "2", "--prune-percent", "50",
            "--epochs", "1", "--save-freq", "1", "--batch-size", "150", "--seed", "2", "--no-cuda",
            "--variants", "lt,random", "--output", str(out)]
    result = _invoke(*args)
    assert result.exit_code == 0, result.output
    assert f"[lt] Wrote {out / 'lt' / 'digits.zip'}" in result.output
    assert f"[random] Wrote {out / 'random' / 'digits.zip'}" in result.output
    for name in ("lt", "random"):
        with zipfile.ZipFile(out / name / "digits.zip") as zf:
            assert f"1_model_{name}_epoch1.pth" in zf.namelist()
            settings = yaml.safe_load(zf.read("train_config.yaml"))
        assert (settings["dataset"], settings["model"], settings["prune_type"]) == ("digits", "fc1", name)
    assert (out / "lt" / "checkpoints" / "initial_state_dict_lt.pth").read_bytes() == \
        (out / "random" / "checkpoints" / "initial_state_dict_random.pth").read_bytes()
    rerun = _invoke(*args)
    assert "[lt] Resumed: skipped finished iterations [0, 1]." in rerun.output
    assert "[random] Resumed: skipped finished iterations [0, 1]." in rerun.output
