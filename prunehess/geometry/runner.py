"""Running a geometry command in one process or under ``torchrun``, as extract runs.

The process that owns the output folder (the single process, or rank 0) takes its lock, sweeps what a killed run
was writing and unpacks the zip (:func:`prunehess.pipeline.context.start`), then runs the command's ``prepare``
(e.g. unpacking another run's zip); every process then opens the run (:func:`~prunehess.pipeline.context.open_run`)
and does its share of the work: under ``torchrun --nproc-per-node N``, rank ``r`` takes the units (checkpoints,
pairs) ``r, r + N, …`` (:class:`~prunehess.pipeline.context.Share`), so no two ranks write the same file. After a
barrier rank 0 alone writes what the units share (a table, the figures) and reports for all. Records are per file,
so a rerun with any number of processes resumes. Gloo on CPUs, NCCL on GPUs (process ``LOCAL_RANK`` drives GPU
``LOCAL_RANK``); if rank 0 cannot start, every rank stops with its one line.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch.distributed as dist

from prunehess.errors import PrunehessError
from prunehess.pipeline import ExtractConfig, launched_by_torchrun
from prunehess.pipeline.context import RunContext, Share, open_run, start
from prunehess.pipeline.distributed import close_process_group, open_process_group, start_on_rank0, torchrun_device
from prunehess.pipeline.events import Listener

__all__ = ["JobReport", "run_job"]


@dataclass
class JobReport:
    """What a command did: the files computed and skipped (finished before), the evaluation modes used, the
    figures drawn."""

    computed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    modes: set[str] = field(default_factory=set)
    figures: list[Path] = field(default_factory=list)

    def merge(self, other: "JobReport") -> None:
        self.computed += other.computed
        self.skipped += other.skipped
        self.modes |= other.modes


Job = Callable[[RunContext, Any], JobReport]
Finish = Callable[[RunContext, Any, JobReport], None]
Prepare = Callable[[ExtractConfig, Listener], Any]


def _no_preparation(config: ExtractConfig, emit: Listener) -> None:
    return None


def run_job(config: ExtractConfig, job: Job, finish: Finish, *, emit: Listener,
            prepare: Prepare = _no_preparation, sweep: Callable[[], None] = lambda: None) -> Optional[JobReport]:
    """Run ``job(ctx, prepared)`` on this process's share, then (on the owner) ``finish(ctx, prepared, report)``
    with every rank's report merged. Returns the report (``None`` on ranks other than 0)."""
    if not launched_by_torchrun():
        lock, folder = start(config, emit)
        try:
            sweep()
            prepared = prepare(config, emit)
            ctx = open_run(config, folder, share=Share(), emit=emit)
            report = job(ctx, prepared)
            finish(ctx, prepared, report)
            return report
        finally:
            lock.release()
    return _distributed(config, job, finish, emit, prepare, sweep)


def _owner_start(config, rank, emit, prepare, sweep):
    """Rank 0 starts; every rank learns the folder and the preparation, or why rank 0 could not start."""

    def attempt():
        lock, folder = start(config, emit)
        try:
            sweep()
            return lock, (str(folder), prepare(config, emit))
        except PrunehessError:
            lock.release()
            raise

    lock, (folder, prepared) = start_on_rank0(rank, attempt)
    return lock, Path(folder), prepared


def _distributed(config: ExtractConfig, job: Job, finish: Finish, emit: Listener, prepare: Prepare,
                 sweep: Callable[[], None]) -> Optional[JobReport]:
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    config, device = torchrun_device(config)
    emit = emit if rank == 0 else (lambda event: None)
    open_process_group(device)
    barrier = (lambda: dist.barrier(device_ids=[device.index])) if device.type == "cuda" else dist.barrier
    try:
        lock, folder, prepared = _owner_start(config, rank, emit, prepare, sweep)
        try:
            share = Share(rank=rank, world=world, writes_shared=rank == 0)
            ctx = open_run(config, folder, share=share, emit=emit)
            report = job(ctx, prepared)
            barrier()  # every rank's files and records are written
            parts: list = [None] * world
            dist.all_gather_object(parts, report)
            barrier()
            if rank != 0:
                return None
            merged = JobReport()
            for part in parts:
                merged.merge(part)
            finish(ctx, prepared, merged)
            return merged
        finally:
            if lock is not None:
                lock.release()
    finally:
        close_process_group()
