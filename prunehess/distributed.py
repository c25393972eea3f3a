"""Running ``extract`` under ``torchrun``: checkpoint sharding or a data-parallel Hessian batch.

``torchrun --nproc-per-node N -m prunehess extract ...`` starts N processes with ``RANK``/``WORLD_SIZE`` set. The
process group uses NCCL on GPUs and Gloo on CPUs; each process takes GPU ``LOCAL_RANK`` when GPUs are used.

- Checkpoint sharding (default): rank ``r`` analyses checkpoints ``r, r + N, r + 2N, …`` of the numerically
  ordered list and writes their files (no two ranks write the same file); after a barrier, rank 0 writes the shared
  files (layers, remaining parameters, summary, config) from every rank's records. Records are per checkpoint, so
  a rerun with any number of ranks resumes.
- ``--data-parallel``: every rank analyses every checkpoint on its share of the Hessian batch (mini-batches dealt
  round-robin); each Hessian-vector product is all-reduced (each rank's share already weighted by ``n_b / N``), so
  the numbers are those of the whole batch on one device. Rank 0 writes everything.

Only rank 0 prints progress.
"""
from __future__ import annotations

import os
from dataclasses import replace
from typing import Callable, Optional

import torch

from prunehess.config import ExtractConfig
from prunehess.pipeline import ExtractReport, extract, finalize, unpack

__all__ = ["run_extract", "launched_by_torchrun"]


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    import torch.distributed as dist

    out = tensor.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def run_extract(config: ExtractConfig, *, data_parallel: bool = False, log: Callable[[str], None] = print
                ) -> Optional[ExtractReport]:
    """``extract`` in one process, or this process's part of a ``torchrun`` job."""
    if not launched_by_torchrun():
        return extract(config, log=log)
    import torch.distributed as dist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and config.cuda is not False and (config.device in (None, "cuda"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
        config = replace(config, device=f"cuda:{local_rank}")
    elif config.device is None:
        config = replace(config, device="cpu")
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    quiet = (lambda msg: None) if rank != 0 else log
    try:
        folder = None
        if rank == 0:
            folder = unpack(config, log) if config.extract else config.resume
        dist.barrier()
        if folder is None:
            from pathlib import Path

            folder = (config.resume / Path(config.zipname).stem) if config.extract else config.resume
        if data_parallel:
            report = extract(config, log=quiet, data_shard=(rank, world), reduce=_all_reduce_sum,
                             write_results=rank == 0, write_shared=rank == 0, lock=rank == 0, unpacked=folder)
        else:
            report = extract(config, log=quiet, shard=(rank, world), write_shared=False, lock=rank == 0,
                             unpacked=folder)
            dist.barrier()
            if rank == 0:
                finalize(config, unpacked=folder)
        failed = torch.tensor([len(report.failed)], dtype=torch.float64)
        failed = _all_reduce_sum(failed.to(config.device))
        if rank == 0 and int(failed.item()) > len(report.failed):
            report.failed["other ranks"] = f"{int(failed.item()) - len(report.failed)} checkpoint(s)"
        return report if rank == 0 else None
    finally:
        dist.destroy_process_group()
