"""``--config FILE.yaml``: the file supplies options, the command line wins, mistakes are one line naming the file;
the resolved configuration is written to ``<output>/config.yaml``."""
from __future__ import annotations

import pytest
import yaml

from prunehess.options import all_keys
from prunehess.pipeline import ExtractConfig


@pytest.fixture
def zipped(kit, tmp_path):
    kit.write_zip(tmp_path / "run" / "tiny.zip", [("0_model_lt.pth", kit.tiny_state(0)),
                                                  ("1_model_lt.pth", kit.tiny_state(1, 0.5))])
    return tmp_path / "run"


def test_yaml_supplies_options_and_the_command_line_wins(kit, tmp_path, zipped):
    config = tmp_path / "extract.yaml"
    config.write_text(yaml.safe_dump({
        "resume": str(zipped), "zipname": "tiny.zip", "output": str(tmp_path / "out"), "dataset": "digits",
        "model": kit.model_file(tmp_path),
        "hessian-batch-size": 48,  # dashes or underscores, as on the command line
        "mini_hessian_batch_size": 16, "top_n": 2, "seed": 5, "slq-steps": 9, "trace_probes": 4,
        "test-accuracy": False, "strategy": "graph", "cuda": False, "compute_each_layer": True,
    }))
    result = kit.ok(kit.invoke("extract", "--config", config, "--top-n", 3, "--seed", 7, "--slq-steps", 10))
    out = tmp_path / "out"
    assert "2 computed" in result.output
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    # from the command line
    assert resolved["top_n"] == 3 and resolved["seed"] == 7 and resolved["slq_steps"] == 10
    # from the file
    assert resolved["hessian_batch_size"] == 48 and resolved["mini_hessian_batch_size"] == 16
    assert resolved["zipname"] == "tiny.zip" and resolved["resume"] == str(zipped)
    assert resolved["compute_each_layer"] is True and resolved["test_accuracy"] is False
    # defaults, and what the run found
    assert resolved["method"] == "lanczos" and resolved["params"] == "active" and resolved["trace_method"] == "hutchinson"
    assert resolved["layout_detected"] == "lottery-ticket" and resolved["hvp_strategy"]["strategy"] == "graph"
    # the resolved file holds every option and reads back as a config
    fields = {k: v for k, v in resolved.items() if k not in ("layout_detected", "hvp_strategy")}
    assert ExtractConfig.from_mapping(fields).numerics_key() != ""
    assert set(fields) == set(all_keys(ExtractConfig))
    assert kit.numbers(out / "top_eigenvalues" / "top_eigenvalues001_best.txt").shape == (3,)
    assert len((out / "density_eigen" / "density_eigen001_best.txt").read_text().splitlines()) == 10
    assert (out / "top_eigenvalues_layer3" / "top_eigenvalues002_best.txt").is_file()


def test_trace_min_probes_keys_only_the_runs_it_changes(tmp_path):
    """The minimum number of probes is part of the numerics key only where the stopping rule reads it: a rerun
    of a Hutch++ run, or of one with every probe (--trace-tol 0), keeps its finished checkpoints."""
    def key(**options) -> str:
        return ExtractConfig.of(resume=tmp_path, **options).numerics_key()

    assert key(trace_min_probes=1) != key(trace_min_probes=10)
    assert key(trace_method="hutch++", trace_min_probes=1) == key(trace_method="hutch++", trace_min_probes=10)
    assert key(trace_tol=None, trace_min_probes=1) == key(trace_tol=None, trace_min_probes=10)


def test_rerun_with_the_resolved_config_skips_everything(kit, tmp_path, zipped):
    """config.yaml written by a run is a valid --config: the rerun finds every checkpoint finished."""
    out = tmp_path / "out"
    kit.extract(zipped, out, "--zipname", "tiny.zip", model=kit.model_file(tmp_path))
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    again = tmp_path / "again.yaml"
    again.write_text(yaml.safe_dump({k: v for k, v in resolved.items() if k not in ("layout_detected", "hvp_strategy")}))
    result = kit.ok(kit.invoke("extract", "--config", again))
    assert "0 computed, 2 already finished" in result.output
    # the rewritten config still describes how the numbers were computed
    assert yaml.safe_load((out / "config.yaml").read_text()) == resolved
    assert resolved["hvp_strategy"] == {"strategy": "graph", "batched_strategy": "loop"}


def test_the_folders_only_zip_is_found_and_two_zips_need_zipname(kit, tmp_path, zipped):
    model = kit.model_file(tmp_path)
    result = kit.extract(zipped, tmp_path / "out", model=model)  # no --zipname: tiny.zip is the only zip
    assert "tiny.zip" in result.output and "2 computed" in result.output
    kit.write_zip(zipped / "other.zip", [("0_model_lt.pth", kit.tiny_state(0))])
    result = kit.invoke("extract", "--resume", zipped, "--output", tmp_path / "out", "--model", model, *kit.FAST)
    kit.error_line(result, str(zipped), "other.zip, tiny.zip", "--zipname")


@pytest.mark.parametrize("text, needles", [
    ("resume: run\nlearning_rate: 0.1\n", ["unknown option(s) learning_rate", "known:", "hessian_batch_size"]),
    ("resume: run\nseed: 1\n  model: fc1\n", ["malformed YAML at line 3"]),
    ("resume: run\nmodel: [fc1\n", ["malformed YAML at line"]),
    ("- resume\n- run\n", ["expected a mapping"]),
    ("resume: run\nseed: one\n", ["seed", "'one' is not a valid integer"]),
    ("resume: run\nparams: some\n", ["params", "'some' is not one of 'active', 'all'"]),
], ids=["unknown-key", "bad-indent", "unclosed-list", "not-a-mapping", "wrong-type", "bad-choice"])
def test_config_mistakes_are_one_line_naming_the_file(kit, tmp_path, text, needles):
    config = tmp_path / "broken.yaml"
    config.write_text(text)
    result = kit.invoke("extract", "--config", config, "--output", tmp_path / "out")
    line = kit.error_line(result, str(config), *needles)
    assert result.exit_code == 1, line
    assert not (tmp_path / "out").exists()


def test_a_missing_config_file(kit, tmp_path):
    result = kit.invoke("extract", "--config", tmp_path / "nope.yaml")
    kit.error_line(result, str(tmp_path / "nope.yaml"), "cannot read config")


def test_option_values_are_validated_in_one_line(kit, tmp_path, zipped):
    for args, needle in ((("--top-n", "0"), "top_n must be at least 1, got 0"),
                         (("--hessian-batch-size", "-3"), "hessian_batch_size must be at least 1, got -3"),
                         (("--max-ratio", "0"), "max_ratio must be positive"),
                         (("--trace-min-probes", "0"), "trace_min_probes must be at least 1"),
                         (("--max-unpacked-mb", "0"), "max_unpacked_mb must be at least 1")):
        result = kit.invoke("extract", "--resume", zipped, "--output", tmp_path / "out", *args)
        kit.error_line(result, needle)
    assert not (tmp_path / "out").exists()


def test_without_resume_the_zip_is_looked_for_in_the_current_folder(kit, tmp_path, monkeypatch):
    """--resume defaults to the current folder: with no zip there, one line says where it looked and what to name."""
    monkeypatch.chdir(tmp_path)
    kit.error_line(kit.invoke("extract"), ".: which zip? it holds no .zip file", "--zipname")
    assert not (tmp_path / "output" / "summary.csv").exists()


def test_trace_deflation_is_an_option_that_changes_the_numbers(kit, tmp_path, zipped):
    out = tmp_path / "out"
    model = kit.model_file(tmp_path)
    kit.extract(zipped, out, "--zipname", "tiny.zip", model=model)
    traces = lambda: {k: v for k, v in kit.text_files(out).items() if k.startswith("trace/")}  # noqa: E731
    deflated = traces()
    assert yaml.safe_load((out / "config.yaml").read_text())["trace_deflation"] is True
    assert yaml.safe_load((out / "config.yaml").read_text())["trace_min_probes"] == 10
    plain = kit.extract(zipped, out, "--zipname", "tiny.zip", "--no-trace-deflation", model=model)
    assert "2 computed" in plain.output  # another numerics key
    assert traces() != deflated and set(traces()) == set(deflated)
    assert yaml.safe_load((out / "config.yaml").read_text())["trace_deflation"] is False
