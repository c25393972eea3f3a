"""Checkpoints and pairs dealt across processes: in-process shares, and a real ``torchrun`` job of 2 Gloo ranks."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from prunehess.geometry import BarrierOptions, LandscapeOptions
from prunehess.geometry.barrier import barrier_job
from prunehess.geometry.landscape import landscape_job
from prunehess.geometry.session import run_config
from prunehess.pipeline.context import Share, open_run, start

REPO = Path(__file__).resolve().parents[2]


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _shares(output: Path, options, job, world: int = 2):
    config = run_config(output, options.run, test_split=isinstance(options, BarrierOptions))
    lock, folder = start(config, lambda event: None)
    try:
        reports = []
        for rank in range(world):
            ctx = open_run(config, folder, share=Share(rank=rank, world=world, writes_shared=rank == 0),
                           emit=lambda event: None)
            reports.append(job(ctx, options))
        return reports
    finally:
        lock.release()


def test_landscape_shares_split_the_checkpoints_and_give_the_same_files(kit, output, extracted, tmp_path):
    single = tmp_path / "single"
    shutil.copytree(extracted.output, single)
    args = ("--directions", "top1,random", "--points", "5", "--checkpoints", "all", "--no-plot")
    kit.ok(kit.invoke("landscape", single, *args))
    options = LandscapeOptions.of(directions="top1,random", points=5, checkpoints="all", plot=False)
    # the initial weights and epoch-0 snapshots have eigenvectors too (extract saved them for every checkpoint)
    first, second = _shares(output, options, landscape_job)
    assert not set(first.computed) & set(second.computed)
    assert len(first.computed) == 8 and len(second.computed) == 6  # 7 checkpoints: ranks take 4 and 3
    assert _files(output / "landscape") == _files(single / "landscape")


def test_barrier_shares_split_the_pairs(kit, output):
    options = BarrierOptions.of(pairs="consecutive,rewind", points=3, plot=False)
    first, second = _shares(output, options, barrier_job)
    assert first.computed == ["consecutive_001_best_002_best.txt", "rewind_001_00_001_best.txt",
                              "rewind_003_00_003_best.txt"]
    assert second.computed == ["consecutive_002_best_003_best.txt", "rewind_002_00_002_best.txt"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_torchrun_two_gloo_ranks_equal_one_process(kit, output, extracted, tmp_path):
    single = tmp_path / "single"
    shutil.copytree(extracted.output, single)
    args = ["--directions", "top1,random", "--points", "5", "--checkpoints", "all"]
    kit.ok(kit.invoke("landscape", single, *args, "--no-plot"))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(_free_port()), "-m", "prunehess", "landscape", str(output), *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "done: 14 file(s) computed, 0 already finished" in proc.stdout
    assert proc.stdout.count("done:") == 1  # rank 0 alone reports
    assert _files(output / "landscape") == _files(single / "landscape")
    assert (output / "figures" / "landscape" / "best_model.jpg").is_file()
