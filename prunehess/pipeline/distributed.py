"""Running ``extract`` under ``torchrun``: checkpoint sharding or a data-parallel Hessian batch.

``torchrun --nproc-per-node N -m prunehess extract ...`` starts N processes with ``RANK``/``WORLD_SIZE`` set. The
process group uses NCCL on GPUs and Gloo on CPUs; each process takes GPU ``LOCAL_RANK`` when GPUs are used.
Rank 0 runs the owner's start-up (:func:`~prunehess.pipeline.context.start`: the output folder's lock for the whole
job, the clean-up after a killed run, the zip unpacked); if it cannot (no zip, locked folder), every rank stops with
that error. Then every rank builds the same :class:`~prunehess.pipeline.context.RunContext` as a single process,
with its :class:`~prunehess.pipeline.context.Share` of the job:

- Checkpoint sharding (default): rank ``r`` analyses checkpoints ``r, r + N, r + 2N, …`` of the numerically
  ordered list and writes their files (no two ranks write the same file); after a barrier, rank 0 writes the shared
  files (layers, remaining parameters, summary, config) from every rank's records. Records are per checkpoint, so
  a rerun with any number of ranks resumes.
- ``--data-parallel``: every rank analyses every checkpoint on its share of the Hessian batch (mini-batches dealt
  round-robin, only that share on the rank's device); each Hessian-vector product is all-reduced (each rank's share
  already weighted by ``n_b / N``), so the numbers are those of the whole batch on one device up to rounding.
  Rank 0 writes everything.

Only rank 0 reports events; its final report counts every rank's checkpoints. ``--parallel`` (DataParallel) is
ignored under torchrun: each process drives one device. Collectives wait up to ``PRUNEHESS_DIST_TIMEOUT`` seconds
(default one day): with sharding, a rank that finishes early waits at the final barrier for the slowest one.
"""
from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.distributed as dist

from prunehess.errors import ConfigError, PrunehessError
from prunehess.pipeline.config import ExtractConfig
from prunehess.pipeline.context import Share, open_run, run_device, start
from prunehess.pipeline.events import Listener, Note, print_lines
from prunehess.pipeline.run import ExtractReport, extract, finish, go_through
from prunehess.storage import FolderLock

__all__ = ["run_extract", "launched_by_torchrun", "all_reduce_sum", "close_process_group", "torchrun_device",
           "open_process_group", "start_on_rank0"]

DEFAULT_TIMEOUT_S = 24 * 3600


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of ``tensor`` over the ranks (a new tensor)."""
    out = tensor.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def _timeout() -> timedelta:
    value = os.environ.get("PRUNEHESS_DIST_TIMEOUT", "")
    try:
        seconds = float(value) if value else DEFAULT_TIMEOUT_S
    except ValueError:
        raise ConfigError(f"PRUNEHESS_DIST_TIMEOUT={value!r}: expected a number of seconds") from None
    return timedelta(seconds=seconds)


def _check_split(config: ExtractConfig, world: int) -> None:
    data = config.data
    mini_batches = -(-data.hessian_batch_size // data.mini_hessian_batch_size)
    if mini_batches < world:
        raise ConfigError(
            f"--data-parallel over {world} processes needs at least {world} mini-batches, but the Hessian batch "
            f"({data.hessian_batch_size}) makes {mini_batches} of {data.mini_hessian_batch_size}: lower "
            "--mini-hessian-batch-size or use fewer processes")


def run_extract(config: ExtractConfig, *, on_event: Listener = print_lines) -> Optional[ExtractReport]:
    """``extract`` in one process, or this process's part of a ``torchrun`` job (rank 0 gets the whole job's
    report, the other ranks ``None``)."""
    if not launched_by_torchrun():
        if config.engine.data_parallel:
            on_event(Note("note: --data-parallel splits the Hessian batch across torchrun processes; this is one "
                          "process"))
        return extract(config, on_event=on_event)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    config, device = torchrun_device(config)
    emit = on_event if rank == 0 else (lambda event: None)
    if config.engine.parallel:
        emit(Note("warning: --parallel (DataParallel) is ignored under torchrun: each process uses one device"))
        config = config.replace(parallel=False)
    open_process_group(device)
    try:
        return _job(config, rank, world, device, emit)
    finally:
        close_process_group()


def torchrun_device(config: ExtractConfig) -> tuple[ExtractConfig, torch.device]:
    """This torchrun process's device, made current: the run's, where a GPU without an index means process
    ``LOCAL_RANK``'s GPU (the usual case); ``config`` names it."""
    device = run_device(config)
    if device.type == "cuda" and device.index is None:
        config = config.replace(device=f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}")
        device = run_device(config)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return config, device


def open_process_group(device: torch.device) -> None:
    """The job's process group: NCCL between GPUs, Gloo on CPUs, with the collectives' timeout (see
    :func:`_timeout`). End it with :func:`close_process_group`."""
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", timeout=_timeout())


def start_on_rank0(rank: int, attempt: Callable[[], tuple[Optional[FolderLock], Any]]
                   ) -> tuple[Optional[FolderLock], Any]:
    """Rank 0 runs ``attempt`` (which takes the output folder's lock and returns it with what every rank needs,
    picklable; on a :class:`PrunehessError` it holds no lock) and sends the result, or the error, to every rank.
    Returns ``(lock, result)``: the lock on rank 0 only. The other ranks stop with the error rank 0 met."""
    outcome: list = [None, None]
    lock = None
    if rank == 0:
        try:
            lock, outcome[0] = attempt()
        except PrunehessError as err:
            outcome[1] = str(err)
            dist.broadcast_object_list(outcome, src=0)
            raise
    dist.broadcast_object_list(outcome, src=0)
    if outcome[1] is not None:
        raise PrunehessError(f"rank {rank} stops: rank 0 could not start the run ({outcome[1]})")
    return lock, outcome[0]


def _owner_start(config: ExtractConfig, rank: int, world: int, emit: Listener) -> tuple[Optional[FolderLock], Path]:
    """Rank 0 starts the run and tells the others where the checkpoints are, or why it could not."""

    def attempt() -> tuple[FolderLock, str]:
        if config.engine.data_parallel:
            _check_split(config, world)
        lock, folder = start(config, emit)
        return lock, str(folder)

    lock, folder = start_on_rank0(rank, attempt)
    return lock, Path(folder)


def _job(config: ExtractConfig, rank: int, world: int, device: torch.device, emit: Listener
         ) -> Optional[ExtractReport]:
    started = time.perf_counter()
    barrier = (lambda: dist.barrier(device_ids=[device.index])) if device.type == "cuda" else dist.barrier
    lock, folder = _owner_start(config, rank, world, emit)
    try:
        data = config.engine.data_parallel
        share = Share(rank=rank, world=world, data=data, reduce=all_reduce_sum if data else None,
                      writes_results=rank == 0 or not data, writes_shared=False)
        ctx = open_run(config, folder, share=share, emit=emit)
        report = go_through(ctx)
        barrier()  # every rank's records are written
        parts: list = [None] * world
        dist.all_gather_object(parts, (report.computed, report.skipped, report.failed))
        barrier()  # nothing in flight when the group goes
        if not data:  # every rank has its own checkpoints: the job's report counts them all
            report.computed = sorted(tag for computed, _, _ in parts for tag in computed)
            report.skipped = sorted(tag for _, skipped, _ in parts for tag in skipped)
            report.failed = {tag: msg for _, _, failed in parts for tag, msg in failed.items()}
        if rank != 0:
            if report.interrupted is not None:
                raise report.interrupted
            return None
        finish(ctx.with_share(writes_shared=True), report)
        report.seconds = time.perf_counter() - started
        return report
    finally:
        if lock is not None:
            lock.release()


def close_process_group() -> None:
    """``destroy_process_group()``, then give the collectives' worker threads time to let go of their last tensors.

    With torch 2.14, once ``torch.func`` has run (the forward-over-reverse and vmap strategies, measured by
    ``--strategy auto``), the process group outlives ``destroy_process_group()`` and its Gloo worker threads keep
    running; one that frees a finished collective (and the Python-owned tensor in it) while the interpreter is
    shutting down aborts the process ("terminate called without an active exception", SIGABRT) after the run has
    finished: a failed job with complete results. Waiting here, without the GIL, while such threads remain (at
    most half a second) lets them finish first.
    """
    dist.destroy_process_group()
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline and _threads_named(("pt_gloo", "gloo_", "pt_nccl")):
        time.sleep(0.01)


def _threads_named(prefixes: tuple[str, ...]) -> bool:
    """Whether a thread of this process has a name starting with one of ``prefixes`` (Linux; else False)."""
    for comm in Path("/proc/self/task").glob("*/comm"):
        try:
            if comm.read_text().startswith(prefixes):
                return True
        except OSError:
            continue
    return False
