"""``prunehess landscape OUTPUT``: the loss around each chosen checkpoint, along directions and over a plane.

For each checkpoint (each iteration's best by default), loaded into the run's model on the run's device, the mean
cross-entropy on the run's Hessian batch (eval mode) at ``θ + t·d`` for ``t`` from ``-radius`` to ``radius``, along
each direction of ``--directions`` (:mod:`~prunehess.geometry.directions`: the saved top eigenvectors and the
gradient as unit directions, so that ``t`` is a distance in parameter space; a filter-normalised random direction,
``t`` in filter norms), and with ``--surface`` over the plane of the top two eigenvectors. Every direction is zero on
pruned weights. All the points of a checkpoint are evaluated in the same batched passes
(:mod:`~prunehess.geometry.evaluate`).

Files: ``landscape/<direction><III>_<EE>.txt`` (``t loss``) and ``landscape/top1-top2<III>_<EE>.txt`` (the grid), in
the formats of :mod:`prunehess.plots.landscape`; records under ``.prunehess/landscape/``, so a rerun computes only
what changed (other options, other checkpoint or eigenvector bytes); figures under ``figures/landscape/``.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from prunehess.checkpoints import CheckpointRef, load_checkpoint, load_into_model
from prunehess.errors import CheckpointError, DataError
from prunehess.geometry.curves import loss_landscape, steps
from prunehess.geometry.directions import (direction_norm, eigen_direction, filter_normalized_direction,
                                           gradient_direction, surviving_masks)
from prunehess.geometry.options import LandscapeOptions
from prunehess.geometry.records import Finished, digest, file_digest
from prunehess.geometry.runner import JobReport, run_job
from prunehess.geometry.session import run_config, select_checkpoints
from prunehess.layout import OutputLayout
from prunehess.options import numerics_items
from prunehess.pipeline.checkpoint import checkpoint_fingerprint, checkpoint_tag
from prunehess.pipeline.context import RunContext
from prunehess.pipeline.events import Listener, Note, print_lines
from prunehess.pipeline.shared import writing
from prunehess.plots._common import run_names
from prunehess.plots.landscape import curve_text, plot_landscape, surface_text
from prunehess.plots.overlap import read_eigenvectors
from prunehess.storage import atomic_write_text

__all__ = ["run_landscape", "landscape_job", "SURFACE"]

SURFACE = "top1-top2"
EIGEN = {"top1": 0, "top2": 1}
FORMAT_VERSION = 1


@dataclass(frozen=True)
class _File:
    name: str  # a direction, or SURFACE
    path: Path
    key: str


def run_landscape(output: str | Path, options: LandscapeOptions, *, on_event: Listener = print_lines
                  ) -> Optional[JobReport]:
    """Compute the landscapes of the extract output ``output`` (see the module docstring); in one process or as
    this process's part of a ``torchrun`` job (rank 0 gets the whole job's report, the others ``None``)."""
    config = run_config(output, options.run)
    finished = Finished(OutputLayout(config.output), "landscape")
    return run_job(config, lambda ctx, _: landscape_job(ctx, options), lambda ctx, _, report: _finish(
        ctx, options, report), emit=on_event, sweep=finished.sweep)


def _eigen_file(ctx: RunContext, ref: CheckpointRef) -> Path:
    return ctx.layout.result_path("eigenvectors", ref.iteration, ref.epoch, ext="npz")


def _check_eigenvectors(ctx: RunContext, refs: list[CheckpointRef], options: LandscapeOptions) -> None:
    """Before any work: every chosen checkpoint has its saved eigenvectors, if a direction needs them."""
    needs = [d for d in options.direction_list if d in EIGEN] + (["top1", "top2"] if options.surface else [])
    for ref in refs if needs else []:
        path = _eigen_file(ctx, ref)
        if not path.is_file():
            raise DataError(f"{path}: not found; the {needs[0]} direction is a saved eigenvector: run extract with "
                            "--save-eigenvectors")


def _plan(ctx: RunContext, ref: CheckpointRef, options: LandscapeOptions) -> list[_File]:
    tag = checkpoint_tag(ref)
    common = {"version": FORMAT_VERSION, "data": numerics_items(ctx.config.data),
              "params": ctx.config.analyses.scope.params, "checkpoint": checkpoint_fingerprint(ref, ctx.found),
              "radius": options.radius, "points": options.points}
    eigen = file_digest(_eigen_file(ctx, ref)) if any(
        d in EIGEN for d in options.direction_list) or options.surface else None
    files = []
    for name in options.direction_list + ((SURFACE,) if options.surface else ()):
        items = {**common, "direction": name}
        if name == "random":
            items.update(seed=_seed(ctx, options), include_biases=options.include_biases)
        if name in EIGEN or name == SURFACE:
            items["eigenvectors"] = eigen
        files.append(_File(name, ctx.layout.landscape_path(name, tag), digest(items)))
    return files


def _seed(ctx: RunContext, options: LandscapeOptions) -> int:
    return ctx.config.data.seed if options.seed is None else options.seed


def landscape_job(ctx: RunContext, options: LandscapeOptions) -> JobReport:
    """This process's checkpoints: the files not finished before, computed, written and recorded."""
    refs = select_checkpoints(ctx.found, options.checkpoints, options.tags, ctx.layout,
                              str(ctx.config.source.zip_path() if ctx.config.source.extract else ctx.folder))
    _check_eigenvectors(ctx, refs, options)
    finished = Finished(ctx.layout, "landscape")
    report = JobReport()
    mine = [ref for i, ref in enumerate(refs) if ctx.share.mine(i)]
    for position, ref in enumerate(mine, 1):
        tag = checkpoint_tag(ref)
        files = _plan(ctx, ref, options)
        todo = [f for f in files if not finished.done(f.path, f.key)]
        report.skipped += [f.path.name for f in files if f not in todo]
        if not todo:
            ctx.emit(Note(f"[{position}/{len(mine)}] {tag}: finished before (same options, same checkpoint)"))
            continue
        started = time.perf_counter()
        result, notes = _compute(ctx, ref, options, [f.name for f in todo])
        with writing(ctx.layout.root):
            for f in todo:
                atomic_write_text(f.path, _text(result, f.name, tag, notes, ctx))
                finished.save(f.path, f.key, {"center": result.center})
        report.computed += [f.path.name for f in todo]
        report.modes.add(result.mode)
        ctx.emit(Note(f"[{position}/{len(mine)}] {tag}: {', '.join(f.name for f in todo)}: loss {result.center:.6g} "
                      f"at the checkpoint; {result.points} points ({result.mode}, {result.chunk} per pass) in "
                      f"{time.perf_counter() - started:.1f} s"))
    return report


def _directions(ctx: RunContext, ref: CheckpointRef, options: LandscapeOptions, wanted: set[str], masks
                ) -> tuple[dict, dict[str, str]]:
    """The directions ``wanted`` for the loaded checkpoint, and a line describing each (for the files' header)."""
    out, notes = {}, {}
    if wanted & set(EIGEN):
        path = _eigen_file(ctx, ref)
        saved = read_eigenvectors(path)
        for name in sorted(wanted & set(EIGEN)):
            index = EIGEN[name]
            if saved.k <= index:
                raise DataError(f"{path}: holds {saved.k} eigenvector(s); {name} needs extract --top-n "
                                f"{index + 1} or more with --save-eigenvectors")
            out[name] = eigen_direction(saved.vectors, index, ctx.model, masks, source=str(path))
            value = saved.eigenvalues[index]
            notes[name] = (f"{name}: eigenvector {index + 1} of the Hessian (eigenvalue {value:.6g}, from {path.name}), "
                           "unit norm over the surviving weights")
    if "gradient" in wanted:
        out["gradient"] = gradient_direction(ctx.model, ctx.batch.batches, masks, what=f"{ref.path}: gradient")
        notes["gradient"] = ("gradient: of the loss on the Hessian batch, unit norm over the surviving weights "
                             "(t > 0 climbs)")
    if "random" in wanted:
        seed = _seed(ctx, options)
        out["random"] = filter_normalized_direction(dict(ctx.model.named_parameters()), masks, seed=seed,
                                                    include_biases=options.include_biases)
        kept = "kept (as themselves)" if options.include_biases else "left out"
        notes["random"] = (f"random: Gaussian (seed {seed}), filter-normalised as Li et al. 2018, zero on pruned "
                           f"weights, biases and BatchNorm parameters {kept} (|d| = "
                           f"{direction_norm(out['random']):.6g})")
    return out, notes


def _compute(ctx: RunContext, ref: CheckpointRef, options: LandscapeOptions, names: list[str]):
    """Load the checkpoint, build the directions, evaluate every point of ``names`` in shared passes."""
    ckpt = load_checkpoint(ref.path, trust=ctx.config.source.trust_checkpoints,
                           mask_path=ctx.found.masks.get(ref.iteration), expected_keys=ctx.model.state_dict().keys())
    load_into_model(ctx.model, ckpt)
    masks = surviving_masks(ctx.model, ckpt.masks, ctx.config.analyses.scope.params)
    curves = [n for n in names if n != SURFACE]
    wanted = set(curves) | ({"top1", "top2"} if SURFACE in names else set())
    directions, notes = _directions(ctx, ref, options, wanted, masks)
    t = steps(options.radius, options.points)
    surface = ("top1", "top2", t, t) if SURFACE in names else None
    note = lambda text: ctx.emit(Note(text))  # noqa: E731
    result = loss_landscape(ctx.model, directions, t, ctx.batch.batches, curves=curves, surface=surface,
                            memory_bytes=options.run.memory_bytes, note=note)
    if not math.isfinite(result.center):
        raise CheckpointError(f"{ref.path}: the loss on the Hessian batch is {result.center} (non-finite)")
    return result, notes


def _text(result, name: str, tag: str, notes: dict[str, str], ctx: RunContext) -> str:
    """A result file's text: header lines saying what was measured along what, then the numbers."""
    data = ctx.config.data
    where = f"the Hessian batch ({ctx.batch.total_samples} samples of {data.dataset}, seed {data.seed}, eval mode)"
    if name == SURFACE:
        head = [f"prunehess landscape {tag}: mean loss on {where} at theta + a * top1 + b * top2", notes["top1"],
                notes["top2"], "rows: a (top1 coefficient); columns: b (top2 coefficient); a, b: distances in "
                "parameter space"]
        return surface_text(result.t, result.t, result.surface, head)
    unit = "t: in filter norms" if name == "random" else "t: distance in parameter space"
    head = [f"prunehess landscape {tag}: mean loss on {where} at theta + t * d", f"d = {notes[name]}", unit]
    return curve_text(result.t, np.asarray(result.curves[name]), head)


def _finish(ctx: RunContext, options: LandscapeOptions, report: JobReport) -> None:
    if options.run.plot and ctx.layout.list_landscapes():
        model, dataset = run_names(ctx.layout)
        report.figures = plot_landscape(ctx.layout.root, ctx.layout.figures_dir / "landscape", model_name=model,
                                        dataset_name=dataset)

