"""What a run holds for its whole length, built once: the frozen :class:`RunContext`.

:func:`start` is the start-up sequence of the process that owns the output folder (the single process, or rank 0 of
a torchrun job): take the folder's lock, delete what a killed run was writing, unpack the zip. :func:`open_run`
builds everything the checkpoints share, in every process alike: the resolved configuration, the checkpoints found,
the model, the Hessian batch (on the device once, for all checkpoints), the test split. Nothing here analyses a
checkpoint (:mod:`~prunehess.pipeline.checkpoint` does).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn

from prunehess.analyses import Plan
from prunehess.checkpoints import Discovery, ZipLimits, discover, safe_extract
from prunehess.data import dataset_info, hessian_batch, test_loader
from prunehess.devices import resolve_device
from prunehess.errors import ConfigError
from prunehess.layout import OutputLayout
from prunehess.models import build_model
from prunehess.pipeline.config import ExtractConfig
from prunehess.pipeline.events import Listener, Note
from prunehess.pipeline.state import lock_output
from prunehess.storage import FolderLock

__all__ = ["Share", "HessianBatch", "RunContext", "start", "unpack", "open_run", "run_device"]


@dataclass(frozen=True)
class Share:
    """This process's part of a job: every ``world``-th checkpoint from ``rank`` (checkpoint sharding), or, with
    ``data``, every checkpoint on this rank's mini-batches, each product summed across ranks by ``reduce``.
    ``writes_results``/``writes_shared``: whether it writes checkpoint files, and the files shared by all."""

    rank: int = 0
    world: int = 1
    data: bool = False
    reduce: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
    writes_results: bool = True
    writes_shared: bool = True

    def mine(self, position: int) -> bool:
        """Whether the checkpoint at ``position`` of the ordered list is this process's."""
        return self.data or position % self.world == self.rank


@dataclass(frozen=True)
class HessianBatch:
    """The mini-batches of this process on its device, and ``total_samples`` ``N`` of the whole batch (all ranks)."""

    batches: list[tuple[torch.Tensor, torch.Tensor]]
    total_samples: int


@dataclass(frozen=True)
class RunContext:
    """Everything the checkpoints of one run share (see the module docstring)."""

    config: ExtractConfig
    layout: OutputLayout
    device: torch.device
    folder: Path
    found: Discovery
    model: nn.Module
    forward: Optional[nn.Module]
    batch: HessianBatch
    tests: Optional[Any]
    plan: Plan
    layer_plan: Plan
    share: Share
    emit: Listener

    def with_share(self, **changes: Any) -> "RunContext":
        """The same run, with this process's share changed (e.g. rank 0 writing the shared files at the end)."""
        return dataclasses.replace(self, share=dataclasses.replace(self.share, **changes))


def run_device(config: ExtractConfig) -> torch.device:
    return resolve_device(config.engine.device, config.engine.cuda)


def unpack(config: ExtractConfig, emit: Listener) -> Path:
    """The folder to search: the zip unpacked beside it into ``<zip stem>/``, or ``--resume`` itself with
    ``--no-extract``."""
    source = config.source
    if not source.extract:
        if not source.resume.is_dir():
            raise ConfigError(f"{source.resume}: not a folder (--resume with --no-extract names an unpacked folder)")
        return source.resume
    zip_path = source.zip_path()
    if not zip_path.is_file():
        raise ConfigError(f"{zip_path}: no such zip (set --resume to its folder and --zipname to its name)")
    dest = source.unpacked_folder()
    limits = ZipLimits(max_total_bytes=source.max_unpacked_mb * 2**20, max_ratio=source.max_ratio)
    files = safe_extract(zip_path, dest, limits=limits)
    emit(Note(f"unpacked {len(files)} files from {zip_path} into {dest}"))
    return dest


def start(config: ExtractConfig, emit: Listener) -> tuple[FolderLock, Path]:
    """The owner's start-up: lock the output folder (the caller releases the lock), clean up after a killed run,
    unpack; returns the lock and the folder of checkpoints."""
    lock = lock_output(OutputLayout(config.output))
    try:
        return lock, unpack(config, emit)
    except BaseException:
        lock.release()
        raise


def resolved(config: ExtractConfig, folder: Path) -> ExtractConfig:
    """``config`` as the run uses and records it: the zip's name, and the dataset and model of a
    ``train_config.yaml`` found in the zip."""
    if config.source.extract and not config.source.zipname:
        source = dataclasses.replace(config.source, zipname=config.source.zip_path().name)
        config = dataclasses.replace(config, source=source)
    return config.with_run_defaults(folder)


def _announce(found: Discovery, folder: Path, emit: Listener) -> None:
    emit(Note(f"found {len(found.checkpoints)} checkpoints in {folder} (layout: {found.naming})"))
    if found.unmatched:
        shown = ", ".join(str(p) for p in found.unmatched[:10])
        more = f" and {len(found.unmatched) - 10} more" if len(found.unmatched) > 10 else ""
        emit(Note(f"warning: {len(found.unmatched)} files match no checkpoint layout and are not analysed: "
                  f"{shown}{more}"))


def _forward(model: nn.Module, config: ExtractConfig, device: torch.device, emit: Listener) -> Optional[nn.Module]:
    """``nn.DataParallel`` over the visible GPUs with ``--parallel`` (its gathering device first), else ``None``."""
    if not config.engine.parallel:
        return None
    if config.analyses.scope.curvature != "hessian":
        emit(Note(f"warning: --parallel (DataParallel) applies to the Hessian; the {config.analyses.scope.curvature} "
                  "operator runs on one device (torchrun --data-parallel splits its batch across processes)"))
        return None
    if device.type != "cuda":
        emit(Note("warning: --parallel needs CUDA devices; running on one device"))
        return None
    count = torch.cuda.device_count()
    first = device.index if device.index is not None else torch.cuda.current_device()
    ids = [first] + [i for i in range(count) if i != first]  # DataParallel gathers on, and expects the model on, ids[0]
    emit(Note(f"DataParallel over {count} GPU(s): {', '.join(f'cuda:{i}' for i in ids)}"))
    return nn.DataParallel(model, device_ids=ids, output_device=first)


def _hessian_batch(config: ExtractConfig, device: torch.device, share: Share) -> HessianBatch:
    data = config.data
    batches = hessian_batch(data.dataset, root=data.data_root, size=data.hessian_batch_size,
                            mini_batch_size=data.mini_hessian_batch_size, seed=data.seed,
                            device=device if not share.data else "cpu", download=data.download)
    total = sum(int(y.shape[0]) for _, y in batches)
    if share.data:  # only this rank's share goes to its device: the whole batch need not fit
        batches = [(x.to(device), y.to(device)) for x, y in batches[share.rank :: share.world]]
    return HessianBatch(batches, total)


def open_run(config: ExtractConfig, folder: Path, *, share: Share, emit: Listener) -> RunContext:
    """Everything the checkpoints of the run share, for this process (``folder``: the checkpoints, unpacked)."""
    config = resolved(config, folder)
    device = run_device(config)
    found = discover(folder, naming_regex=config.source.naming)
    _announce(found, folder, emit)
    data = config.data
    info = dataset_info(data.dataset)
    model = build_model(data.model, input_shape=info.input_shape, num_classes=info.num_classes,
                        batch_norm=data.batch_norm, residual=data.residual, depth=data.depth).to(device)
    forward = _forward(model, config, device, emit)
    batch = _hessian_batch(config, device, share)
    tests = test_loader(data.dataset, root=data.data_root, download=data.download) if data.test_accuracy else None
    return RunContext(config=config, layout=OutputLayout(config.output), device=device, folder=folder, found=found,
                      model=model, forward=forward, batch=batch, tests=tests, plan=Plan.of(config.analyses),
                      layer_plan=Plan.of(config.analyses, layer=True), share=share, emit=emit)
