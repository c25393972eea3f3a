"""Hostile and broken inputs to ``prunehess extract`` (issue 7, the items that live at the command's level).

Each gets a non-zero exit, exactly one ``Error:`` line naming the file and the problem (the only output when the
run stops before any checkpoint), no traceback unless ``--debug``, and nothing written outside the output folder
and the extraction folder. The zip reader's own unit and property tests are in ``tests/checkpoints``.
"""
from __future__ import annotations

import json
import os
import subprocess
import uuid
import zipfile
from pathlib import Path

import pytest
import torch

from prunehess.errors import ArchiveError

OUTSIDE = ("out", "run/mnist")  # the output folder, and the extraction folder <resume>/<zip stem>


@pytest.fixture
def world(kit, tmp_path):
    """``tmp_path/run`` holds the zip (``mnist.zip``); ``world.run(...)`` runs extract and checks that nothing
    appeared outside the output and extraction folders."""

    class World:
        root = tmp_path
        run_dir = tmp_path / "run"
        zip = tmp_path / "run" / "mnist.zip"
        out = tmp_path / "out"
        model = kit.model_file(tmp_path)

        def zip_of(self, entries, **kw):
            return kit.write_zip(self.zip, entries, **kw)

        def run(self, *args, model=True, fast=True, allowed=OUTSIDE):
            before = kit.all_paths(tmp_path)
            cmd = ["extract", "--resume", self.run_dir, "--output", self.out]
            cmd += ["--model", self.model] if model else []
            cmd += list(kit.FAST if fast else ())
            result = kit.invoke(*cmd, *args)
            new = kit.all_paths(tmp_path) - before
            stray = sorted(p for p in new if not any(p == a or p.startswith(a + "/") for a in allowed))
            assert not stray, f"written outside the output and extraction folders: {stray}"
            return result

    World.run_dir.mkdir()
    return World()


def _valid_zip_bytes(kit, tmp_path, compression=zipfile.ZIP_DEFLATED) -> bytes:
    path = kit.write_zip(tmp_path / "valid.zip", [("0_model_lt.pth", kit.tiny_state(0))], compression=compression)
    data = path.read_bytes()
    path.unlink()
    return data


# ----- archives ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, problem", [
    ("../../evil.pth", "'..' part"),
    ("ckpt/../../../evil.pth", "'..' part"),
    ("..\\..\\evil.pth", "'..' part"),
    ("/tmp/prunehess-evil-{}.pth", "absolute path"),
    ("C:/evil.pth", "names a drive"),
])
def test_zip_slip_is_refused(kit, world, name, problem):
    name = name.format(uuid.uuid4().hex)
    world.zip_of([("0_model_lt.pth", kit.tiny_state(0)), (name, b"pwned")])
    result = world.run()
    kit.error_line(result, str(world.zip), repr(name), problem)
    assert not list(world.root.rglob("evil.pth"))
    if name.startswith("/"):
        assert not Path(name).exists()
    assert not (world.run_dir / "mnist").exists()  # nothing unpacked at all


def test_symlink_entry_is_refused(kit, world):
    world.zip_of([("0_model_lt.pth", kit.tiny_state(0)), ("1_model_lt.pth", b"/etc/passwd", 0o120777)])
    kit.error_line(world.run(), str(world.zip), "'1_model_lt.pth' is a symbolic link")
    assert not (world.run_dir / "mnist").exists()


def test_duplicate_entries_are_refused(kit, world):
    world.zip_of([("0_model_lt.pth", kit.tiny_state(0)), ("0_MODEL_lt.pth", kit.tiny_state(1))])
    kit.error_line(world.run(), str(world.zip), "duplicates")


def test_decompression_bomb_by_ratio(kit, world):
    world.zip_of([("0_model_lt.pth", kit.tiny_state(0)), ("padding.bin", b"\0" * (4 << 20))])
    kit.error_line(world.run("--max-ratio", "20"), str(world.zip), "padding.bin", "possible zip bomb", "limit of 20")
    assert not (world.run_dir / "mnist").exists()


def test_decompression_bomb_by_total_size(kit, world):
    world.zip_of([("0_model_lt.pth", kit.tiny_state(0)), ("noise.bin", os.urandom(3 << 19))])  # 1.5 MiB
    kit.error_line(world.run("--max-unpacked-mb", "1"), str(world.zip), "noise.bin", "possible zip bomb", "1048576")
    assert not (world.run_dir / "mnist").exists()


def test_truncated_zip(kit, world, tmp_path):
    data = _valid_zip_bytes(kit, tmp_path)
    world.zip.write_bytes(data[: len(data) // 2])
    kit.error_line(world.run(), str(world.zip), "not a readable zip")


def test_corrupt_zip_data(kit, world, tmp_path):
    data = bytearray(_valid_zip_bytes(kit, tmp_path, compression=zipfile.ZIP_STORED))
    data[len(data) // 3] ^= 0xFF  # inside the stored checkpoint: a CRC error when unpacking
    world.zip.write_bytes(bytes(data))
    kit.error_line(world.run(), str(world.zip), "corrupt")
    assert not (world.run_dir / "mnist").exists()


@pytest.mark.parametrize("content, problem", [
    (b"this is not a zip\n", "not a readable zip"),
    (b"", "not a readable zip"),
])
def test_not_a_zip(kit, world, content, problem):
    world.zip.write_bytes(content)
    kit.error_line(world.run(), str(world.zip), problem)


def test_empty_zip(kit, world):
    with zipfile.ZipFile(world.zip, "w"):
        pass
    kit.error_line(world.run(), str(world.zip), "the zip is empty")


def test_zip_with_no_checkpoints(kit, world):
    world.zip_of([("README.md", b"# results"), ("logs/train.log", b"epoch 1\n")])
    line = kit.error_line(world.run(), str(world.run_dir / "mnist"), "no checkpoints found", "--layout", alone=False)
    assert "lottery-ticket" in line


def test_missing_zip(kit, world):
    kit.error_line(world.run("--zipname", "nope.zip"), str(world.run_dir / "nope.zip"), "no such zip", "--zipname")


# ----- checkpoints ------------------------------------------------------------------------------------------------
def test_pickled_module_is_refused_unless_trusted(kit, world):
    world.zip_of([("0_model_lt.pth", kit.tiny_model(0)), ("1_model_lt.pth", kit.tiny_state(1))])
    result = world.run()
    line = kit.error_line(result, "1 checkpoint(s) failed", "001_best", alone=False)
    assert "--trust-checkpoints" in result.output and "arbitrary code" in result.output
    failed = [ln for ln in result.output.splitlines() if "refused by the safe loader" in ln]
    assert failed and str(world.run_dir / "mnist" / "0_model_lt.pth") in failed[0]
    assert "--trust-checkpoints" in line, "the error line should say what would load the file"
    assert (world.out / "trace" / "trace002_best.txt").is_file()
    assert not (world.out / "trace" / "trace001_best.txt").exists()
    trusted = kit.ok(world.run("--trust-checkpoints"))
    assert "1 computed, 1 already finished, 0 failed" in trusted.output
    assert (world.out / "trace" / "trace001_best.txt").is_file()


def test_checkpoint_that_does_not_fit_the_model_names_the_keys(kit, world):
    bad = kit.tiny_state(1)
    bad["fc1.kernel"] = bad.pop("fc1.weight")
    bad["fc2.weight"] = torch.zeros(10, 9)
    world.zip_of([("0_model_lt.pth", kit.tiny_state(0)), ("1_model_lt.pth", bad)])
    result = world.run()
    line = kit.error_line(result, "1 checkpoint(s) failed", alone=False)
    assert "1_model_lt.pth" in line and "does not fit the model" in line
    for needle in ("missing keys fc1.weight", "unexpected keys fc1.kernel",
                   "shape mismatch fc2.weight: checkpoint (10, 9) vs model (10, 8)"):
        assert needle in result.output
    assert (world.out / "trace" / "trace001_best.txt").is_file()


def _overflowing(kit):
    state = kit.tiny_state(2)
    state["fc2.weight"] = torch.full((10, 8), 3e38)  # finite weights, infinite logits: the loss is not finite
    return state


@pytest.mark.parametrize("bad, problem", [
    (lambda kit: {**kit.tiny_state(2), "fc1.bias": torch.tensor([float("nan")] * 8)}, "non-finite values in fc1.bias"),
    (_overflowing, "the loss on the Hessian batch is"),
], ids=["nan-weights", "infinite-loss"])
def test_one_non_finite_checkpoint_fails_alone(kit, world, bad, problem):
    world.zip_of([("0_model_lt.pth", kit.tiny_state(0)), ("1_model_lt.pth", bad(kit)),
                  ("2_model_lt.pth", kit.tiny_state(3))])
    result = world.run()
    assert result.exit_code == 1
    line = kit.error_line(result, "1 checkpoint(s) failed", "002_best", alone=False)
    assert problem in line and "1_model_lt.pth" in line
    assert "2 computed, 0 already finished, 1 failed" in result.output
    for tag in ("001_best", "003_best"):
        for metric in kit.RESULT_METRICS:
            assert any((world.out / metric).glob(f"{metric}{tag}.*")), (metric, tag)
    assert not list(world.out.glob("*/*002_best*"))
    record = json.loads((world.out / ".prunehess" / "records" / "002_best.json").read_text())
    assert record["status"] == "failed" and problem in record["error"]
    assert [r["iteration"] for r in kit.summary(world.out)] == [0, 2]
    # a rerun retries the failed checkpoint only, and fails the same way
    again = world.run()
    kit.error_line(again, "1 checkpoint(s) failed", alone=False)
    assert "0 computed, 2 already finished, 1 failed" in again.output


# ----- model, dataset, options ------------------------------------------------------------------------------------
@pytest.fixture
def good_zip(kit, world):
    world.zip_of([("0_model_lt.pth", kit.tiny_state(0))])
    return world


def test_unknown_model_lists_the_known_ones(kit, good_zip):
    result = good_zip.run("--model", "resnet9000", model=False)
    kit.error_line(result, "unknown model 'resnet9000'", "fc1, lenet5, resnet20, resnet18, vgg11_bn", "FILE.py:factory",
                   alone=False)


def test_missing_model_file(kit, good_zip):
    result = good_zip.run("--model", f"{good_zip.root / 'nope.py'}:factory", model=False)
    kit.error_line(result, str(good_zip.root / "nope.py"), "model file not found", alone=False)


def test_unknown_dataset_lists_the_known_ones(kit, good_zip):
    result = good_zip.run("--dataset", "imagenet")
    kit.error_line(result, "unknown dataset 'imagenet'", "mnist, fashionmnist, cifar10, svhn, digits", alone=False)


def test_dataset_missing_from_data_root_says_where_it_looked(kit, world, tmp_path):
    world.zip_of([("0_model_lt.pth", kit.fc1_state(0))])
    empty = tmp_path / "empty_data"
    empty.mkdir()
    result = world.run("--dataset", "mnist", "--data-root", empty, "--model", "fc1", "--hessian-batch-size", 64,
                       "--no-cuda", "--no-download", model=False, fast=False)
    line = kit.error_line(result, str(empty / "MNIST" / "raw"), "not found", "train-images-idx3-ubyte",
                          "--no-download", "--data-root", alone=False)
    assert "mnist" in line
    assert not list(empty.iterdir())  # nothing downloaded with --no-download


def test_bad_layout_regex(kit, good_zip):
    kit.error_line(good_zip.run("--layout", "(?P<iteration>\\d+"), "not a valid regular expression", alone=False)
    kit.error_line(good_zip.run("--layout", r"(?P<it>\d+)_model_lt\.pth"), "(?P<iteration>", alone=False)


# ----- output -----------------------------------------------------------------------------------------------------
def test_output_under_a_regular_file(kit, good_zip):
    blocker = good_zip.root / "a_file"
    blocker.write_text("not a folder")
    result = kit.invoke("extract", "--resume", good_zip.run_dir, "--output", blocker / "out", "--model", good_zip.model,
                        *kit.FAST)
    kit.error_line(result, str(blocker / "out"), "cannot create the output folder")
    assert blocker.read_text() == "not a folder"
    assert not (good_zip.run_dir / "mnist").exists()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_output_folder(kit, good_zip):
    good_zip.out.mkdir()
    good_zip.out.chmod(0o500)
    try:
        kit.error_line(good_zip.run(), str(good_zip.out), "not writable")
    finally:
        good_zip.out.chmod(0o700)


def test_output_tree_blocked_by_a_file(kit, good_zip):
    """A metric folder that cannot be created (a file holds its name): one line naming it, no traceback."""
    good_zip.out.mkdir()
    (good_zip.out / "trace").write_text("in the way")
    result = good_zip.run()
    kit.error_line(result, str(good_zip.out / "trace"), alone=False)
    assert (good_zip.out / "trace").read_text() == "in the way"


# ----- --debug ----------------------------------------------------------------------------------------------------
def test_debug_shows_the_traceback(kit, world):
    world.zip.write_bytes(b"not a zip")
    quiet = world.run()
    kit.error_line(quiet, "not a readable zip")
    proc = subprocess.run([*kit.module_cmd(), "--debug", "extract", "--resume", str(world.run_dir),
                           "--output", str(world.out), "--no-cuda"],
                          capture_output=True, text=True, env=kit.subprocess_env(), timeout=120, cwd=world.root)
    assert proc.returncode != 0
    assert "Traceback (most recent call last)" in proc.stderr
    assert "ArchiveError" in proc.stderr and "not a readable zip" in proc.stderr


def test_debug_in_process_raises_the_error(kit, world):
    from click.testing import CliRunner

    from prunehess.cli import main

    world.zip.write_bytes(b"not a zip")
    with pytest.raises(ArchiveError, match="not a readable zip"):
        CliRunner().invoke(main, ["--debug", "extract", "--resume", str(world.run_dir), "--output", str(world.out)],
                           catch_exceptions=False)
