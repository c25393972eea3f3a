"""The user's card, exactly as typed, in a folder holding a seed-named ``mnist.zip`` and MNIST in torchvision's
layout under ``data/``: ``prunehess extract --zipname mnist.zip --compute-each-layer``, then
``prunehess plot trace-best`` — the output tree and the figures appear, with no other option given."""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from prunehess.models import FC1


def _write_mnist(root: Path, n_train: int = 240, n_test: int = 60) -> None:
    """MNIST's four uncompressed IDX files under ``root/MNIST/raw`` (what torchvision reads), random digits."""
    rng = np.random.default_rng(0)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        for kind, array in (("images-idx3", rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)),
                            ("labels-idx1", rng.integers(0, 10, size=n, dtype=np.uint8))):
            header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
            (raw / f"{prefix}-{kind}-ubyte").write_bytes(header + array.tobytes())


def _fc1_state(seed: int, prune: float) -> dict:
    torch.manual_seed(seed)
    state = FC1((1, 28, 28), 10).state_dict()
    for key, value in state.items():
        if prune and value.dim() == 2:
            value.view(-1)[value.abs().reshape(-1).argsort()[: int(prune * value.numel())]] = 0.0
    return state


@pytest.fixture
def folder(kit, tmp_path, monkeypatch):
    _write_mnist(tmp_path / "data")
    kit.write_zip(tmp_path / "mnist.zip", [("0_model_lt.pth", _fc1_state(0, 0.0)), ("1_model_lt.pth", _fc1_state(1, 0.8))])
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_cards_two_commands_as_typed(kit, folder):
    extracted = kit.ok(kit.invoke("extract", "--zipname", "mnist.zip", "--compute-each-layer"))
    assert "2 computed" in extracted.output
    assert "next: prunehess plot all" in extracted.output and "prunehess report" in extracted.output
    out = folder / "output"
    for metric in ("top_eigenvalues", "trace", "density_eigen", "density_weight", "esd_plot"):
        assert sorted(p.name for p in (out / metric).iterdir())[:1], metric
        assert (out / f"{metric}_layer5").is_dir(), metric  # FC1: six parameter tensors
    assert (out / "trace" / "trace002_best.txt").is_file() and (out / "summary.csv").is_file()

    plotted = kit.ok(kit.invoke("plot", "trace-best"))
    figures = sorted(p.relative_to(out).as_posix() for p in (out / "figures").rglob("*.jpg"))
    assert figures == ["figures/trace_best/whole_model/best_model.jpg"], figures
    assert "Wrote 1 figure" in plotted.output

    reported = kit.ok(kit.invoke("report"))
    assert (out / "report.html").is_file() and "output/report.html" in reported.output

    everything = kit.ok(kit.invoke("plot", "all"))  # the next command extract suggests; best checkpoints only
    assert (out / "figures" / "layer_match" / "best_model.jpg").is_file() and "Wrote" in everything.output


def test_zipname_takes_a_path(kit, folder):
    (folder / "runs").mkdir()
    (folder / "mnist.zip").rename(folder / "runs" / "mnist.zip")
    result = kit.ok(kit.invoke("extract", "--zipname", "runs/mnist.zip", "--top-n", 1, "--slq-steps", 10,
                               "--trace-probes", 10))
    assert "2 computed" in result.output and (folder / "runs" / "mnist").is_dir()  # unpacked beside the zip
    assert (folder / "output" / "trace" / "trace001_best.txt").is_file()
