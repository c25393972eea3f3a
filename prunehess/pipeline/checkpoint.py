"""One checkpoint → its result files and a :class:`~prunehess.pipeline.records.CheckpointRecord`.

Load the weights (safely), check the loss on the Hessian batch, measure the test accuracy, build the Hessian
operator on the surviving weights (or all of them with ``--params all``), run the analyses on the whole network
and, with ``--compute-each-layer``, on each parameter tensor's diagonal block, writing each block's files as soon
as it is done. The record is the caller's to save, after every file is written.
"""
from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from prunehess.analyses import BlockWriter, Plan
from prunehess.checkpoints import CheckpointRef, Discovery, LoadedCheckpoint, load_checkpoint, load_into_model
from prunehess.errors import CheckpointError
from prunehess.layout import epoch_tag, iteration_tag
from prunehess.models import is_prunable
from prunehess.operators import EmpiricalFisherOperator, GGNOperator, HessianOperator
from prunehess.operators.hvp import eval_mode
from prunehess.operators.masks import zero_masks
from prunehess.pipeline.context import HessianBatch, RunContext
from prunehess.pipeline.events import BlockDone, CheckpointDone, Note
from prunehess.pipeline.records import BlockRow, CheckpointRecord
from prunehess.pipeline.strategy import RunStrategy

__all__ = ["analyse_checkpoint", "checkpoint_tag", "checkpoint_fingerprint", "OPERATORS"]

OPERATORS = {"hessian": HessianOperator, "ggn": GGNOperator, "fisher": EmpiricalFisherOperator}
"""``--curvature`` → the operator class (same constructor, same interface; see :mod:`prunehess.operators`)."""


def checkpoint_tag(ref: CheckpointRef) -> str:
    """``III_EE`` as in the output file names (``000_00`` initial, ``001_best`` ...)."""
    return f"{iteration_tag(ref.iteration)}_{epoch_tag(ref.epoch)}"


def checkpoint_fingerprint(ref: CheckpointRef, found: Discovery) -> str:
    """A digest of the bytes a checkpoint's numbers come from (its file, and its mask file where there is one):
    a finished record is reused only for the same bytes, not for another experiment's file of the same name."""
    digest = hashlib.sha256()
    for path in (ref.path, found.masks.get(ref.iteration)):
        if path is None:
            continue
        try:
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
        except OSError as err:  # loading it will fail with its own message; never matches a record
            return f"unreadable: {err.strerror or err}"
        digest.update(b"\0")
    return digest.hexdigest()[:32]


def _active_masks(model: nn.Module, ckpt: LoadedCheckpoint, params: str) -> Optional[dict[str, torch.Tensor]]:
    """Masks of the surviving weights: the checkpoint's (prune pairs, mask.pth), else exact zeros; none for 'all'."""
    if params == "all":
        return None
    masks = dict(zero_masks(model, is_prunable))
    device = next(model.parameters()).device
    masks.update({k: v.to(device) for k, v in ckpt.masks.items()})
    return masks


def _remaining_percent(model: nn.Module) -> float:
    total = sum(p.numel() for p in model.parameters())
    alive = sum(int((p != 0).sum()) for p in model.parameters())
    return 100.0 * alive / total


@torch.no_grad()
def _test_accuracy(model: nn.Module, tests: Any, device: torch.device) -> Optional[float]:
    if tests is None:
        return None
    correct = count = 0
    with eval_mode(model):
        for x, y in tests:
            pred = model(x.to(device)).argmax(dim=1)
            correct += int((pred.cpu() == y).sum())
            count += int(y.shape[0])
    return correct / max(count, 1)


@torch.no_grad()
def _check_loss(model: nn.Module, batch: HessianBatch, path: Path, reduce=None) -> float:
    """The mean loss over the Hessian batch (all ranks' shares under ``reduce``); non-finite is a failure."""
    with eval_mode(model):
        total = sum(F.cross_entropy(model(x), y, reduction="sum") for x, y in batch.batches)
    sums = torch.stack([total.double(), torch.tensor(float(sum(int(y.shape[0]) for _, y in batch.batches)),
                                                     dtype=torch.float64, device=total.device)])
    if reduce is not None:
        sums = reduce(sums)
    loss = float(sums[0] / sums[1])
    if not math.isfinite(loss):
        raise CheckpointError(f"{path}: the loss on the Hessian batch is {loss} (non-finite)")
    return loss


def _block(ctx: RunContext, op: HessianOperator, plan: Plan, ref: CheckpointRef, layer: Optional[int]) -> BlockRow:
    """Run ``plan`` on one block and write its files; its summary row."""
    started = time.perf_counter()
    results = plan.run(op, seed=ctx.config.data.seed, batched_products=op.batched_strategy != "loop")
    values: dict[str, Any] = {}
    for unit, _ in plan.steps:
        if ctx.share.writes_results:
            unit.write(BlockWriter(ctx.layout, ref.iteration, ref.epoch, layer), results[unit.name])
        values.update(unit.row(results[unit.name]))
    return BlockRow(layer=layer, values=values, hvps=plan.n_hvp(results),
                    seconds=round(time.perf_counter() - started, 3))


def _blocks(ctx: RunContext, op: HessianOperator, ref: CheckpointRef, tag: str) -> list[BlockRow]:
    names = [n for n, _ in ctx.model.named_parameters()]
    total = 1 + (len(names) if ctx.config.analyses.scope.compute_each_layer else 0)
    rows = [_block(ctx, op, ctx.plan, ref, None)]
    ctx.emit(BlockDone(tag, 1, total, None))
    for k, name in enumerate(names if total > 1 else []):
        block = op.restrict([name])
        if block.size == 0:
            ctx.emit(Note(f"  warning: {name} has no surviving weights; its layer files are not written"))
        else:
            rows.append(_block(ctx, block, ctx.layer_plan, ref, k))
        ctx.emit(BlockDone(tag, k + 2, total, name))
    return rows


def analyse_checkpoint(ctx: RunContext, ref: CheckpointRef, strategy: RunStrategy, fingerprint: str,
                       eta: Any) -> CheckpointRecord:
    """Analyse checkpoint ``ref``, write its files (when this process writes results) and return its record.
    ``eta(seconds_of_this_checkpoint)`` gives the time the rest of the run should take."""
    started = time.perf_counter()
    tag = checkpoint_tag(ref)
    ckpt = load_checkpoint(ref.path, trust=ctx.config.source.trust_checkpoints,
                           mask_path=ctx.found.masks.get(ref.iteration), expected_keys=ctx.model.state_dict().keys())
    load_into_model(ctx.model, ckpt)
    loss = _check_loss(ctx.model, ctx.batch, ref.path, ctx.share.reduce)
    accuracy = _test_accuracy(ctx.model, ctx.tests, ctx.device)
    scope = ctx.config.analyses.scope
    op = OPERATORS[scope.curvature](ctx.model, ctx.batch.batches, masks=_active_masks(ctx.model, ckpt, scope.params),
                                    forward=ctx.forward, total_samples=ctx.batch.total_samples,
                                    reduce=ctx.share.reduce)
    strategy.settle(op)
    remaining = _remaining_percent(ctx.model)
    rows = _blocks(ctx, op, ref, tag)
    op.release()
    seconds = time.perf_counter() - started
    record = CheckpointRecord(tag=tag, iteration=ref.iteration, epoch=ref.epoch, kind=ref.kind, path=str(ref.path),
                              loss=loss, test_accuracy=accuracy, remaining_percent=remaining, rows=tuple(rows),
                              seconds=seconds, checkpoint=fingerprint)
    units = sorted((unit for unit, _ in ctx.plan.steps), key=lambda unit: unit.position)
    headline = tuple((label, _first(rows[0].values[column])) for unit in units for label, column in unit.headline)
    ctx.emit(CheckpointDone(tag, headline, accuracy, rows[0].hvps, seconds, eta(seconds)))
    return record


def _first(value: Any) -> float:
    return float(value[0] if isinstance(value, (list, tuple)) else value)
