"""``prunehess barrier OUTPUT``: the loss and error along straight lines between checkpoints, and their barriers.

For each pair ``(A, B)`` the state ``θ(α) = (1−α)·θ_A + α·θ_B`` at ``--points`` values of ``α`` from 0 to 1, with the
full state vectors as stored (weights pruned in one end are 0 there; BatchNorm's running statistics interpolated
too), evaluated in batched passes (:mod:`~prunehess.geometry.evaluate`) on the Hessian batch and on the test split,
in eval mode. The barrier of a path ``f`` is ``max_α f(α) − ((1−α)·f(0) + α·f(1))``: the largest gap between the
path and the straight line between its ends (:func:`~prunehess.geometry.curves.barrier_height`).

Pairs: ``consecutive`` (each prune iteration's best checkpoint and the next iteration's best), ``rewind`` (the
epoch-0 checkpoint of an iteration and its best; for the first iteration without an epoch-0 checkpoint, the initial
weights), ``against`` (with ``--against OTHER``: each iteration's best here and the same iteration's best in another
extract output of the same model on the same data, e.g. a lottery ticket against its random re-initialisation).

Files: ``barrier/<kind>_<tagA>_<tagB>.txt`` (``alpha loss error test_loss test_error``) and ``barrier/barrier.csv``
(one row per path file present), in the formats of :mod:`prunehess.plots.barrier`; records under
``.prunehess/barrier/``; figures under ``figures/barrier/``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from prunehess.checkpoints import CheckpointRef, Discovery, discover, load_checkpoint, load_into_model
from prunehess.errors import ConfigError
from prunehess.geometry.curves import barrier_height, interpolation
from prunehess.geometry.evaluate import model_state
from prunehess.geometry.options import BarrierOptions, RunOptions
from prunehess.geometry.records import Finished, digest
from prunehess.geometry.runner import JobReport, run_job
from prunehess.geometry.session import best_checkpoints, describe_run, run_config
from prunehess.layout import OutputLayout
from prunehess.layout.paths import BARRIER_KINDS
from prunehess.options import numerics_items
from prunehess.pipeline import ExtractConfig
from prunehess.pipeline.checkpoint import checkpoint_fingerprint, checkpoint_tag
from prunehess.pipeline.context import RunContext, unpack
from prunehess.pipeline.events import Listener, Note, print_lines
from prunehess.pipeline.shared import writing
from prunehess.plots._common import run_names
from prunehess.plots.barrier import barrier_table_text, path_text, plot_barrier
from prunehess.storage import atomic_write_text

__all__ = ["run_barrier", "barrier_job", "Pair"]

FORMAT_VERSION = 1
SAME_RUN_KEYS = ("model", "dataset", "depth", "batch_norm", "residual")


@dataclass(frozen=True)
class Pair:
    """Two checkpoints to interpolate between: ``b`` found in ``b_found`` (another run's, for ``against``)."""

    kind: str
    a: CheckpointRef
    b: CheckpointRef
    b_found: Discovery
    other: str = ""


@dataclass(frozen=True)
class _Other:
    config: ExtractConfig
    layout: OutputLayout


def _same_model(config: ExtractConfig, other: ExtractConfig, other_layout: OutputLayout) -> None:
    mine, theirs = numerics_items(config.data), numerics_items(other.data)
    differ = [k for k in SAME_RUN_KEYS if mine.get(k) != theirs.get(k)]
    if differ:
        raise ConfigError(f"{other_layout.config_file}: a run of {describe_run(other)} ({differ[0]} "
                          f"{theirs.get(differ[0])!r}), this one is {describe_run(config)} ({mine.get(differ[0])!r}): "
                          "barriers need two runs of the same model on the same data")


def run_barrier(output: str | Path, options: BarrierOptions, *, on_event: Listener = print_lines
                ) -> Optional[JobReport]:
    """Compute the barriers of the extract output ``output`` (see the module docstring); one process or this
    process's part of a ``torchrun`` job (rank 0 gets the whole job's report, the others ``None``)."""
    config = run_config(output, options.run, test_split=True)
    other = None
    if options.against is not None:
        other_config = run_config(options.against, RunOptions(data_root=options.run.data_root))
        other = _Other(other_config, OutputLayout(options.against))
        _same_model(config, other_config, other.layout)

    def prepare(config: ExtractConfig, emit: Listener) -> Optional[str]:
        return None if other is None else str(unpack(other.config, emit))

    finished = Finished(OutputLayout(config.output), "barrier")
    return run_job(config, lambda ctx, folder: barrier_job(ctx, options, other, folder),
                   lambda ctx, folder, report: _finish(ctx, options, report), emit=on_event, prepare=prepare,
                   sweep=finished.sweep)


# ------------------------------------------------------------------------------------------------------ pairs
def _consecutive(found: Discovery, best: list[CheckpointRef]) -> list[Pair]:
    return [Pair("consecutive", a, b, found) for a, b in zip(best, best[1:])]


def _rewind(ctx: RunContext, best: list[CheckpointRef]) -> list[Pair]:
    refs = ctx.found.checkpoints
    initial = [r for r in refs if r.kind == "initial"]
    pairs = []
    for end in best:
        start = [r for r in refs if r.iteration == end.iteration and r.kind == "snapshot" and r.epoch == 0]
        if not start and end.iteration == min(b.iteration for b in best) and initial:
            start = initial
        if start:
            pairs.append(Pair("rewind", start[0], end, ctx.found))
        else:
            ctx.emit(Note(f"note: iteration {checkpoint_tag(end)[:3]} has no epoch-0 checkpoint; no rewind pair"))
    return pairs


def _against(ctx: RunContext, best: list[CheckpointRef], other: _Other, folder: str) -> list[Pair]:
    found = discover(Path(folder), naming_regex=other.config.source.naming)
    theirs = {r.iteration: r for r in best_checkpoints(found, other.layout)}
    return [Pair("against", a, theirs[a.iteration], found, str(other.layout.root)) for a in best
            if a.iteration in theirs]


def _pairs(ctx: RunContext, options: BarrierOptions, other: Optional[_Other], folder: Optional[str]) -> list[Pair]:
    best = best_checkpoints(ctx.found, ctx.layout)
    where = ctx.config.source.zip_path() if ctx.config.source.extract else ctx.folder
    pairs = []
    for kind in options.kinds:
        found = (_consecutive(ctx.found, best) if kind == "consecutive" else _rewind(ctx, best) if kind == "rewind"
                 else _against(ctx, best, other, folder))
        if not found:
            why = {"consecutive": "needs two prune iterations or more", "rewind": "no iteration has an epoch-0 "
                   "checkpoint", "against": f"{other.layout.root if other else ''} shares no prune iteration"}[kind]
            raise ConfigError(f"{where}: no {kind} pairs ({why})")
        pairs += found
    return pairs


# ------------------------------------------------------------------------------------------------ the work
def _state(ctx: RunContext, ref: CheckpointRef, found: Discovery, trust: bool) -> dict:
    ckpt = load_checkpoint(ref.path, trust=trust, mask_path=found.masks.get(ref.iteration),
                           expected_keys=ctx.model.state_dict().keys())
    load_into_model(ctx.model, ckpt)
    return {name: t.clone() for name, t in model_state(ctx.model).items()}


def _key(ctx: RunContext, pair: Pair, options: BarrierOptions) -> str:
    return digest({"version": FORMAT_VERSION, "data": numerics_items(ctx.config.data), "points": options.points,
                   "kind": pair.kind, "other": pair.other, "a": checkpoint_fingerprint(pair.a, ctx.found),
                   "b": checkpoint_fingerprint(pair.b, pair.b_found)})


def _row(pair: Pair, alpha: np.ndarray, columns: np.ndarray) -> dict:
    names = ("loss", "error", "test_loss", "test_error")
    row = {"kind": pair.kind, "tag_a": checkpoint_tag(pair.a), "tag_b": checkpoint_tag(pair.b), "other": pair.other,
           "points": int(alpha.size)}
    row.update({f"{n}_barrier": barrier_height(alpha, columns[:, j]) for j, n in enumerate(names)})
    row.update(loss_a=columns[0, 0], loss_b=columns[-1, 0], test_error_a=columns[0, 3], test_error_b=columns[-1, 3])
    return {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in row.items()}


def _comments(ctx: RunContext, pair: Pair, row: dict, tests: int) -> list[str]:
    data = ctx.config.data
    other = f" of {pair.other}" if pair.other else ""
    return [f"prunehess barrier {pair.kind}: theta(alpha) = (1 - alpha) * theta_A + alpha * theta_B; A = "
            f"{row['tag_a']} ({pair.a.path.name}), B = {row['tag_b']} ({pair.b.path.name}{other})",
            "every floating entry of the state is interpolated as stored (pruned weights 0; BatchNorm statistics)",
            f"loss, error: mean cross-entropy and fraction misclassified on the Hessian batch "
            f"({ctx.batch.total_samples} samples of {data.dataset}, seed {data.seed}); test_loss, test_error: on the "
            f"test split ({tests} samples); eval mode",
            "barriers (largest gap above the straight line between the ends): " + ", ".join(
                f"{n} {row[f'{n}_barrier']:.6g}" for n in ("loss", "error", "test_loss", "test_error"))]


def barrier_job(ctx: RunContext, options: BarrierOptions, other: Optional[_Other] = None, folder: Optional[str] = None
                ) -> JobReport:
    """This process's pairs: the paths not finished before, computed, written and recorded."""
    pairs = _pairs(ctx, options, other, folder)
    finished = Finished(ctx.layout, "barrier")
    tests = [(x.to(ctx.device), y.to(ctx.device)) for x, y in ctx.tests]
    alpha = np.linspace(0.0, 1.0, options.points)
    report = JobReport()
    mine = [pair for i, pair in enumerate(pairs) if ctx.share.mine(i)]
    trust = ctx.config.source.trust_checkpoints
    for position, pair in enumerate(mine, 1):
        path = ctx.layout.barrier_path(pair.kind, checkpoint_tag(pair.a), checkpoint_tag(pair.b))
        key = _key(ctx, pair, options)
        head = f"[{position}/{len(mine)}] {path.stem}"
        if finished.done(path, key):
            report.skipped.append(path.name)
            ctx.emit(Note(f"{head}: finished before (same options, same checkpoints)"))
            continue
        started = time.perf_counter()
        state_a, state_b = _state(ctx, pair.a, ctx.found, trust), _state(ctx, pair.b, pair.b_found, trust)
        path_values = interpolation(ctx.model, state_a, state_b, alpha, [ctx.batch.batches, tests],
                               memory_bytes=options.run.memory_bytes, note=lambda text: ctx.emit(Note(text)))
        batch, test = path_values.values
        columns = np.stack([v.cpu().numpy() for v in (batch.loss, batch.error, test.loss, test.error)], axis=1)
        row = _row(pair, alpha, columns)
        with writing(ctx.layout.root):
            atomic_write_text(path, path_text(alpha, columns, _comments(ctx, pair, row, sum(len(y) for _, y in tests))))
            finished.save(path, key, row)
        report.computed.append(path.name)
        report.modes.add(path_values.mode)
        ctx.emit(Note(f"{head}: loss barrier {row['loss_barrier']:.4g}, test error barrier "
                      f"{row['test_error_barrier']:.4g} ({time.perf_counter() - started:.1f} s)"))
    return report


def _finish(ctx: RunContext, options: BarrierOptions, report: JobReport) -> None:
    """barrier.csv from the records of every path file present, then the figures."""
    files = ctx.layout.list_barrier_paths()
    rows = Finished(ctx.layout, "barrier").values(files)
    order = {kind: i for i, kind in enumerate(BARRIER_KINDS)}
    ordered = [rows[key] for key in sorted(rows, key=lambda k: (order[k[0]], k[1], k[2]))]
    with writing(ctx.layout.root):
        atomic_write_text(ctx.layout.barrier_table_file, barrier_table_text(ordered))
    if options.run.plot and files:
        model, dataset = run_names(ctx.layout)
        report.figures = plot_barrier(ctx.layout.root, ctx.layout.figures_dir / "barrier", model_name=model,
                                      dataset_name=dataset)
