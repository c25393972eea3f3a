"""Running ``extract`` under ``torchrun``: checkpoint sharding or a data-parallel Hessian batch.

``torchrun --nproc-per-node N -m prunehess extract ...`` starts N processes with ``RANK``/``WORLD_SIZE`` set. The
process group uses NCCL on GPUs and Gloo on CPUs; each process takes GPU ``LOCAL_RANK`` when GPUs are used.
Rank 0 takes the output folder's lock for the whole job and unpacks the zip; if it cannot (no zip, locked
folder), every rank stops with that error.

- Checkpoint sharding (default): rank ``r`` analyses checkpoints ``r, r + N, r + 2N, …`` of the numerically
  ordered list and writes their files (no two ranks write the same file); after a barrier, rank 0 writes the shared
  files (layers, remaining parameters, summary, config) from every rank's records. Records are per checkpoint, so
  a rerun with any number of ranks resumes.
- ``--data-parallel``: every rank analyses every checkpoint on its share of the Hessian batch (mini-batches dealt
  round-robin, only that share on the rank's device); each Hessian-vector product is all-reduced (each rank's share
  already weighted by ``n_b / N``), so the numbers are those of the whole batch on one device up to rounding.
  Rank 0 writes everything.

Only rank 0 prints progress; its final report counts every rank's checkpoints. ``--parallel`` (DataParallel) is
ignored under torchrun: each process drives one device. Collectives wait up to ``PRUNEHESS_DIST_TIMEOUT`` seconds
(default one day): with sharding, a rank that finishes early waits at the final barrier for the slowest one.
"""
from __future__ import annotations

import os
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Callable, Optional

import torch

from prunehess.config import ExtractConfig
from prunehess.errors import ConfigError, PrunehessError
from prunehess.layout import OutputLayout
from prunehess.pipeline import ExtractReport, extract, finalize, resolve_device, unpack
from prunehess.runstate import RunState

__all__ = ["run_extract", "launched_by_torchrun"]

DEFAULT_TIMEOUT_S = 24 * 3600


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    import torch.distributed as dist

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


def _start(config: ExtractConfig, data_parallel: bool, world: int, log: Callable[[str], None]
           ) -> tuple[RunState, Path]:
    """Rank 0's setup, before any rank writes: check the split, lock the output folder for the whole job, delete
    what a killed run left half-written, unpack the zip."""
    if data_parallel:
        mini_batches = -(-config.hessian_batch_size // config.mini_hessian_batch_size)
        if mini_batches < world:
            raise ConfigError(
                f"--data-parallel over {world} processes needs at least {world} mini-batches, but the Hessian batch "
                f"({config.hessian_batch_size}) makes {mini_batches} of {config.mini_hessian_batch_size}: lower "
                "--mini-hessian-batch-size or use fewer processes")
    state = RunState(config.output)
    state.prepare()
    state.acquire()
    try:
        OutputLayout(config.output).remove_stale_temporaries()  # before any rank writes (as extract's lock does)
        return state, unpack(config, log)
    except BaseException:
        state.release()
        raise


def run_extract(config: ExtractConfig, *, data_parallel: bool = False, log: Callable[[str], None] = print,
                progress: Optional[Callable[[str, int, int], None]] = None) -> Optional[ExtractReport]:
    """``extract`` in one process, or this process's part of a ``torchrun`` job (rank 0 gets the whole job's
    report, the other ranks ``None``)."""
    if not launched_by_torchrun():
        if data_parallel:
            log("note: --data-parallel splits the Hessian batch across torchrun processes; this is one process")
        return extract(config, log=log, progress=progress)
    import torch.distributed as dist

    started = time.perf_counter()
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    quiet = (lambda msg: None) if rank != 0 else log
    device = resolve_device(config)
    use_cuda = device.type == "cuda"
    if use_cuda and device.index is None:  # the usual case: process LOCAL_RANK drives GPU LOCAL_RANK
        device = torch.device("cuda", local_rank)
        config = replace(config, device=str(device))
    if use_cuda:
        torch.cuda.set_device(device)
    if config.parallel:
        quiet("warning: --parallel (DataParallel) is ignored under torchrun: each process uses one device")
        config = replace(config, parallel=False)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo", timeout=_timeout())
    barrier = (lambda: dist.barrier(device_ids=[device.index])) if use_cuda else dist.barrier
    state: Optional[RunState] = None
    try:
        outcome: list = [None, None]
        if rank == 0:
            try:
                state, folder = _start(config, data_parallel, world, log)
                outcome[0] = str(folder)
            except PrunehessError as err:
                outcome[1] = str(err)
                dist.broadcast_object_list(outcome, src=0)
                raise
        dist.broadcast_object_list(outcome, src=0)
        if outcome[1] is not None:
            raise PrunehessError(f"rank {rank} stops: rank 0 could not start the run ({outcome[1]})")
        folder = Path(outcome[0])
        if data_parallel:
            report = extract(config, log=quiet, data_shard=(rank, world), reduce=_all_reduce_sum,
                             write_results=rank == 0, write_shared=rank == 0, lock=False, unpacked=folder,
                             progress=progress if rank == 0 else None)
        else:
            report = extract(config, log=quiet, shard=(rank, world), write_shared=False, lock=False,
                             unpacked=folder, progress=progress if rank == 0 else None)
            barrier()
            if rank == 0:
                final = finalize(config, unpacked=folder)
                report.retired, report.retired_to = final.retired, final.retired_to
                if final.retired_to is not None:
                    log(final.retired_line())
        parts: list = [None] * world
        dist.all_gather_object(parts, (report.computed, report.skipped, report.failed))
        barrier()  # nothing in flight when the group goes
        if rank != 0:
            return None
        if not data_parallel:  # every rank has its own checkpoints: the job's report counts them all
            report.computed = sorted(tag for computed, _, _ in parts for tag in computed)
            report.skipped = sorted(tag for _, skipped, _ in parts for tag in skipped)
            report.failed = {tag: msg for _, _, failed in parts for tag, msg in failed.items()}
        report.seconds = time.perf_counter() - started
        return report
    finally:
        if state is not None:
            state.release()
        _close_process_group()


def _close_process_group() -> None:
    """``destroy_process_group()``, then give the collectives' worker threads time to let go of their last tensors.

    With torch 2.14, once ``torch.func`` has run (the forward-over-reverse and vmap strategies, measured by
    ``--strategy auto``), the process group outlives ``destroy_process_group()`` and its Gloo worker threads keep
    running; one that frees a finished collective (and the Python-owned tensor in it) while the interpreter is
    shutting down aborts the process ("terminate called without an active exception", SIGABRT) after the run has
    finished: a failed job with complete results. Waiting here, without the GIL, while such threads remain (at
    most half a second) lets them finish first.
    """
    import torch.distributed as dist

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
