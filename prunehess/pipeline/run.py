"""``extract(config)``: the run loop, from a zip of pruning checkpoints to the fixed output tree.

The process that owns the output folder locks it and unpacks the zip (:func:`~prunehess.pipeline.context.start`);
every process then builds its :class:`~prunehess.pipeline.context.RunContext` and goes through its checkpoints in
numeric order. A checkpoint finished before (same bytes, same numbers-changing options) is skipped; the others are
analysed (:mod:`~prunehess.pipeline.checkpoint`), their files written, then their record — so a run killed at any
moment resumes to the same numbers. A checkpoint that fails (bad weights, a non-finite loss) is recorded and the
others go on. Ctrl-C stops after the checkpoint in flight. At the end the shared files are written from the records
(:mod:`~prunehess.pipeline.shared`). Progress reaches the caller as events (:mod:`~prunehess.pipeline.events`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from prunehess.errors import CheckpointError
from prunehess.pipeline.checkpoint import analyse_checkpoint, checkpoint_fingerprint, checkpoint_tag
from prunehess.pipeline.config import ExtractConfig
from prunehess.pipeline.context import RunContext, Share, open_run, start
from prunehess.pipeline.events import (CheckpointFailed, CheckpointSkipped, CheckpointStarted, Listener, Note,
                                       RunPlanned, print_lines)
from prunehess.pipeline.interrupt import Interrupted, StopOnSigint
from prunehess.pipeline.records import FailedRecord
from prunehess.pipeline.shared import Retired, write_shared
from prunehess.pipeline.state import RunState
from prunehess.pipeline.strategy import RunStrategy

__all__ = ["extract", "ExtractReport", "go_through", "finish"]


@dataclass
class ExtractReport:
    """What a run did: the checkpoints computed, skipped (finished before) and failed (tag → why), the HVP
    strategy, the time, and what it moved out of the tree."""

    naming: str
    computed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    strategy: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    retired: Retired = field(default_factory=lambda: Retired([], None))
    fingerprints: dict[str, str] = field(default_factory=dict)
    interrupted: Optional[Interrupted] = None


def extract(config: ExtractConfig, *, on_event: Listener = print_lines) -> ExtractReport:
    """Run the extraction described by ``config`` in this process; returns what was computed, skipped and failed.
    ``on_event`` receives the run's events (default: print their lines)."""
    started = time.perf_counter()
    lock, folder = start(config, on_event)
    try:
        ctx = open_run(config, folder, share=Share(), emit=on_event)
        report = finish(ctx, go_through(ctx))
    finally:
        lock.release()
    report.seconds = time.perf_counter() - started
    return report


def _mine(ctx: RunContext) -> list:
    return [ref for i, ref in enumerate(ctx.found.checkpoints) if ctx.share.mine(i)]


def go_through(ctx: RunContext) -> ExtractReport:
    """This process's checkpoints of the run (``report.interrupted`` is set when Ctrl-C stopped it)."""
    started = time.perf_counter()
    state = RunState(ctx.layout, ctx.config.numerics_key())
    strategy = RunStrategy(ctx.config.engine.strategy, state, ctx.device, ctx.emit)
    report = ExtractReport(naming=ctx.found.naming)
    mine = _mine(ctx)
    layers = len(list(ctx.model.parameters())) if ctx.config.analyses.scope.compute_each_layer else 0
    ctx.emit(RunPlanned(len(mine), 1 + layers))
    with StopOnSigint() as stopper:
        for position, ref in enumerate(mine, 1):
            tag = checkpoint_tag(ref)
            fingerprint = report.fingerprints[tag] = checkpoint_fingerprint(ref, ctx.found)
            if state.finished(tag, fingerprint) is not None:
                report.skipped.append(tag)
                ctx.emit(CheckpointSkipped(tag))
                continue
            if stopper.requested:
                report.interrupted = Interrupted(f"interrupted before checkpoint {tag}; rerun the same command to "
                                                 "resume")
                break
            ctx.emit(CheckpointStarted(tag, position, len(mine), ref.path.name))

            def eta(seconds: float, position: int = position) -> float:
                done = len(report.computed) + 1
                return (time.perf_counter() - started) / done * (len(mine) - position)

            _one(ctx, ref, tag, fingerprint, state, strategy, report, eta)
    report.strategy = strategy.known()
    return report


def finish(ctx: RunContext, report: ExtractReport) -> ExtractReport:
    """Write the shared files (when this process writes them) from every finished record of the run; then raise
    :class:`Interrupted` if Ctrl-C stopped it."""
    if ctx.share.writes_shared:
        state = RunState(ctx.layout, ctx.config.numerics_key())
        report.retired = write_shared(ctx.layout, state, ctx.model, ctx.config, ctx.found, report.strategy,
                                      report.fingerprints)
        if report.retired.folder is not None:
            ctx.emit(Note(report.retired.line()))
    if report.interrupted is not None:
        raise report.interrupted
    return report


def _one(ctx: RunContext, ref, tag: str, fingerprint: str, state: RunState, strategy: RunStrategy,
         report: ExtractReport, eta) -> None:
    """Analyse one checkpoint and save its record (or its failure)."""
    try:
        record = analyse_checkpoint(ctx, ref, strategy, fingerprint, eta)
    except CheckpointError as err:
        report.failed[tag] = str(err)
        if ctx.share.writes_results:
            state.write(FailedRecord(tag=tag, error=str(err), checkpoint=fingerprint))
        ctx.emit(CheckpointFailed(tag, str(err)))
        return
    if ctx.share.writes_results:
        state.write(record)
    report.computed.append(tag)
