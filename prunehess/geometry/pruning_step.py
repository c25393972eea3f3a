"""``prunehess pruning-step OUTPUT``: did the pruning step remove low-curvature weights, and does the quadratic model
predict what it cost?

For each prune iteration ``i`` whose next iteration ``i+1`` is in the zip, with both iterations' best checkpoints
(:func:`~prunehess.geometry.session.best_checkpoints`): the mask iteration ``i+1`` used, over the prunable weights
(:func:`prunehess.models.is_prunable`), from its checkpoint's masks (prune pairs, OpenLTH ``mask.pth``) or else from
its zeros (a weight is pruned in ``i+1`` if it is exactly 0 in ``i+1``'s best checkpoint); the surviving weights of
``i`` the same way; the weights the step removed, surviving in ``i`` and pruned in ``i+1``. Then, at iteration
``i``'s best weights, on the run's Hessian batch, in eval mode (:func:`~prunehess.geometry.step.analyse_step`): the
overlap of the removed set with the one OBD's saliency ``½ H_kk w_k²`` (LeCun et al. 1990) would have chosen at the
same per-layer counts, the Spearman correlation of ``|w|`` and that saliency over the surviving weights, and the loss
change the quadratic model ``gᵀδ + ½ δᵀHδ`` predicts for removing exactly those weights against the actual one. The
Hessian is the one on iteration ``i``'s surviving weights; its diagonal is exact where the network is piecewise
linear in each weight (ReLU nets such as fc1 and lenet5), else Hutchinson's estimate (``--diagonal``, ``--probes``).

Files: ``pruning_step/step_<tagA>_<tagB>.csv`` (one step's rows) and ``pruning_step/pruning_step.csv`` (every step
present), in the format of :mod:`prunehess.plots.pruning_step`; records under ``.prunehess/pruning_step/`` (a rerun
computes only steps whose checkpoints or options changed); figures under ``figures/pruning_step/``. Under
``torchrun`` the steps are dealt across the processes.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from prunehess.checkpoints import CheckpointRef, load_checkpoint, load_into_model
from prunehess.errors import CheckpointError, ConfigError
from prunehess.geometry.options import PruningStepOptions
from prunehess.geometry.ranking import chance_hits
from prunehess.geometry.records import Finished, digest
from prunehess.geometry.runner import JobReport, run_job
from prunehess.geometry.session import best_checkpoints, run_config
from prunehess.geometry.step import StepResult, StepRow, analyse_step
from prunehess.layout import OutputLayout
from prunehess.models import is_prunable
from prunehess.options import numerics_items
from prunehess.pipeline.checkpoint import checkpoint_fingerprint, checkpoint_tag
from prunehess.pipeline.context import RunContext
from prunehess.pipeline.events import Listener, Note, print_lines
from prunehess.pipeline.shared import writing
from prunehess.plots._common import run_names
from prunehess.plots.pruning_step import NOISY, plot_pruning_step, read_step_table, step_table_text
from prunehess.storage import atomic_write_text, sweep_temporaries

__all__ = ["run_pruning_step", "pruning_step_job", "Step"]

FORMAT_VERSION = 1
COMMAND = "pruning_step"


@dataclass(frozen=True)
class Step:
    """The step from iteration ``before``'s best checkpoint to the next iteration's, ``after``."""

    before: CheckpointRef
    after: CheckpointRef

    @property
    def tags(self) -> tuple[str, str]:
        return checkpoint_tag(self.before), checkpoint_tag(self.after)


def run_pruning_step(output: str | Path, options: PruningStepOptions, *, on_event: Listener = print_lines
                     ) -> Optional[JobReport]:
    """Measure the pruning steps of the extract output ``output`` (see the module docstring); one process or this
    process's part of a ``torchrun`` job (rank 0 gets the whole job's report, the others ``None``)."""
    config = run_config(output, options.run)
    layout = OutputLayout(config.output)
    finished = Finished(layout, COMMAND)

    def sweep() -> None:
        finished.sweep()
        sweep_temporaries([layout.pruning_step_dir])

    return run_job(config, lambda ctx, _: pruning_step_job(ctx, options), lambda ctx, _, report: _finish(
        ctx, options, report), emit=on_event, sweep=sweep)


def _steps(ctx: RunContext) -> list[Step]:
    best = best_checkpoints(ctx.found, ctx.layout)
    steps = [Step(a, b) for a, b in zip(best, best[1:]) if b.iteration == a.iteration + 1]
    if not steps:
        where = ctx.config.source.zip_path() if ctx.config.source.extract else ctx.folder
        held = ", ".join(checkpoint_tag(ref) for ref in best) or "none"
        raise ConfigError(f"{where}: no pruning step to measure: it needs the best checkpoints of two consecutive "
                          f"prune iterations (the run's best checkpoints: {held})")
    return steps


def _key(ctx: RunContext, step: Step, options: PruningStepOptions) -> str:
    return digest({"version": FORMAT_VERSION, "data": numerics_items(ctx.config.data), "diagonal": options.diagonal,
                   "probes": None if options.diagonal == "exact" else options.probes, "seed": ctx.config.data.seed,
                   "before": checkpoint_fingerprint(step.before, ctx.found),
                   "after": checkpoint_fingerprint(step.after, ctx.found)})


def _surviving(ctx: RunContext, ref: CheckpointRef, names: list[str]) -> tuple[dict, dict[str, str]]:
    """Load ``ref`` into the run's model; its surviving prunable weights (from its masks, else its exact zeros)
    and where each mask came from (``prune_pairs``, ``mask.pth`` or ``zeros``)."""
    mask_path = ctx.found.masks.get(ref.iteration)
    ckpt = load_checkpoint(ref.path, trust=ctx.config.source.trust_checkpoints, mask_path=mask_path,
                           expected_keys=ctx.model.state_dict().keys())
    load_into_model(ctx.model, ckpt)
    params = dict(ctx.model.named_parameters())
    kind = "mask.pth" if mask_path is not None else "prune_pairs"
    masks, sources = {}, {}
    for name in names:
        if name in ckpt.masks:
            masks[name], sources[name] = ckpt.masks[name].bool().cpu(), kind
        else:
            masks[name], sources[name] = (params[name].detach() != 0).cpu(), "zeros"
    return masks, sources


def _compute(ctx: RunContext, step: Step, names: list[str], options: PruningStepOptions
             ) -> tuple[StepResult, dict[str, str]]:
    after, sources = _surviving(ctx, step.after, names)
    before, _ = _surviving(ctx, step.before, names)  # loaded last: the model holds iteration i's weights
    result = analyse_step(ctx.model, ctx.batch.batches, before, after, diagonal=options.diagonal,
                          probes=options.probes, seed=ctx.config.data.seed, total_samples=ctx.batch.total_samples,
                          max_bytes=options.run.memory_bytes or 2**28)
    if not math.isfinite(result.loss):
        raise CheckpointError(f"{step.before.path}: the loss on the Hessian batch is {result.loss} (non-finite)")
    return result, sources


def _table_rows(ctx: RunContext, step: Step, result: StepResult, sources: dict[str, str]) -> list[dict[str, Any]]:
    """The step's rows of the table: the whole model first, then each prunable weight (``layer``: its index among
    the model's parameters, as in ``layers.txt``)."""
    index = {name: k for k, (name, _) in enumerate(ctx.model.named_parameters())}
    layers = result.rows[1:]
    chosen = sum(row.removed for row in layers)
    chance = {row.name: (row.removed / row.surviving if row.removed else math.nan) for row in layers}
    chance[result.rows[0].name] = (sum(chance_hits(r.removed, r.surviving) for r in layers) / chosen if chosen
                                   else math.nan)
    out = []
    for row in result.rows:
        whole = row is result.rows[0]
        out.append({"iteration": step.before.iteration, "next_iteration": step.after.iteration, "tag": step.tags[0],
                    "next_tag": step.tags[1], "layer": None if whole else index[row.name], "name": row.name,
                    "weights": row.weights, "remaining_percent_before": row.remaining_percent_before,
                    "remaining_percent_after": row.remaining_percent_after, "surviving": row.surviving,
                    "removed": row.removed, "overlap": row.overlap, "chance_overlap": chance[row.name],
                    "spearman": row.spearman, "predicted_loss_change": row.change.predicted,
                    "actual_loss_change": row.actual, "first_order": row.change.first_order,
                    "second_order": row.change.second_order, "loss": result.loss, "diagonal": result.diagonal,
                    "probes": result.probes, "diagonal_rel_stderr": row.diagonal_rel_stderr,
                    "mask_source": "+".join(sorted(set(sources.values()))) if whole else sources[row.name]})
    return out


def _summary(step: Step, result: StepResult, seconds: float) -> str:
    row: StepRow = result.rows[0]
    regrown = f"; {result.regrown} weight(s) pruned before are alive after (not counted)" if result.regrown else ""
    return (f"{step.tags[0]} -> {step.tags[1]}: {row.removed} weights removed ({row.remaining_percent_before:.1f} "
            f"-> {row.remaining_percent_after:.1f} % remaining); overlap with OBD {row.overlap:.3f}, Spearman "
            f"{row.spearman:.3f}; loss change predicted {row.change.predicted:.4g}, actual {row.actual:.4g} "
            f"({result.diagonal} diagonal, {seconds:.1f} s){regrown}")


def pruning_step_job(ctx: RunContext, options: PruningStepOptions) -> JobReport:
    """This process's steps: those not finished before, computed, written and recorded."""
    steps = _steps(ctx)
    finished = Finished(ctx.layout, COMMAND)
    names = [name for name, p in ctx.model.named_parameters() if is_prunable(name, p)]
    report = JobReport()
    mine = [step for i, step in enumerate(steps) if ctx.share.mine(i)]
    for position, step in enumerate(mine, 1):
        path = ctx.layout.pruning_step_path(*step.tags)
        key = _key(ctx, step, options)
        head = f"[{position}/{len(mine)}]"
        if finished.done(path, key):
            report.skipped.append(path.name)
            ctx.emit(Note(f"{head} {step.tags[0]} -> {step.tags[1]}: finished before (same options, same "
                          "checkpoints)"))
            continue
        started = time.perf_counter()
        result, sources = _compute(ctx, step, names, options)
        with writing(ctx.layout.root):
            atomic_write_text(path, step_table_text(_table_rows(ctx, step, result, sources)))
            finished.save(path, key, {"diagonal": result.diagonal, "n_hvp": result.n_hvp})
        report.computed.append(path.name)
        report.modes.add(result.diagonal)
        ctx.emit(Note(f"{head} {_summary(step, result, time.perf_counter() - started)}"))
        noise = result.rows[0].diagonal_rel_stderr
        if noise > NOISY:
            ctx.emit(Note(f"  warning: Hutchinson's diagonal from {result.probes} probes is noisy (‖stderr‖/‖diag‖ = "
                          f"{noise:.2f}): OBD's ranking follows the noise; use more --probes (the error falls as "
                          "1/√probes)"))
    return report


def _finish(ctx: RunContext, options: PruningStepOptions, report: JobReport) -> None:
    """pruning_step.csv from every step file present with its record, then the figures."""
    files = ctx.layout.list_pruning_steps()
    recorded = Finished(ctx.layout, COMMAND).values(files)
    rows = [row for key in recorded for row in read_step_table(files[key])]
    rows.sort(key=lambda row: (row["iteration"], -1 if row["layer"] is None else row["layer"]))
    with writing(ctx.layout.root):
        atomic_write_text(ctx.layout.pruning_step_table_file, step_table_text(rows))
    if options.run.plot and rows:
        model, dataset = run_names(ctx.layout)
        report.figures = plot_pruning_step(ctx.layout.root, ctx.layout.figures_dir / "pruning_step",
                                           model_name=model, dataset_name=dataset)
