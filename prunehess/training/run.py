"""An iterative-pruning (lottery-ticket) run that writes the zip ``prunehess extract`` reads.

Iteration 0 trains the dense network. Each later iteration ``i`` prunes the *final* weights of iteration ``i-1``
(masks only shrink), restarts the survivors, and trains for ``E`` epochs with a fresh optimizer and the pruned
weights held at exactly zero. What the prune type decides:

* which weights go: ``lt`` and ``reinit`` remove ``P`` % of the survivors by magnitude (per layer, or globally with
  ``global_pruning``; :func:`~prunehess.training.pruning.magnitude_prune`); ``random`` removes exactly as many from
  each layer as that would, chosen at random (seeded; :func:`~prunehess.training.pruning.random_prune`);
  ``hessian`` prunes each layer at a rate set by its Hessian trace (:mod:`prunehess.training.hessian_aware`);
* where the survivors restart: ``lt``, ``random`` and ``hessian`` rewind them — to the initial weights, or with
  ``rewind_epoch = k`` to the weights saved at epoch ``k`` of iteration 0 (late rewinding, Frankle et al. 2020;
  read back from ``0_model_<type>_epoch<k>.pth``, so a resumed run rewinds to the same weights); ``reinit``
  re-initialises them. Biases and norm parameters are never pruned and restart with the rest.

Each iteration trains the full ``E`` epochs from its restart, with the learning rate of
:mod:`prunehess.training.schedule` (warmup and milestones restart every iteration).

Files (the seed trainer's naming, plain state dicts, pruned weights exactly zero), in ``<output>/checkpoints/``:

* ``initial_state_dict_<type>.pth`` — the initial weights;
* ``<ite>_model_<type>_epoch<E>.pth`` — snapshots at ``E = 0, F, 2F, … <= epochs``; epoch ``E`` is the state after
  ``E`` completed epochs, so ``epoch0`` is the (rewound or re-initialised, masked) start of the iteration;
* ``<ite>_model_<type>.pth`` — the state with the best test accuracy of the iteration, over epochs ``0 … E``
  (the earliest on ties).

Beside them: ``remain_params.txt`` (one line per iteration: percent of all parameters — weights, biases, norm
parameters — that survive pruning, one decimal), ``train_log.csv`` (one row per epoch), ``train_config.yaml`` (the
resolved config) and ``<dataset>.zip`` holding the checkpoints, ``remain_params.txt``, ``train_log.csv`` and
``train_config.yaml``.

Determinism: initialisation uses ``torch.manual_seed(seed)``; shuffling, dropout, random masks and
re-initialisation use seeds derived from ``(seed, purpose, iteration, epoch)``; so the same config gives
byte-identical files on CPU, whether the run went through in one go or was resumed, and runs of different prune
types with one seed share their initialisation and data order (:func:`prunehess.training.run_variants`). The
caller's global RNG state is restored afterwards.

Resuming: after each iteration, ``train_state.pt`` (completed iterations, final weights, masks) is replaced
atomically. A rerun into the same output skips the finished iterations (its settings must match; it may ask for
more iterations) and redoes an interrupted one from its start. An advisory lock on ``train.lock`` keeps two runs
out of one folder.

The folder's paths, log and saved progress are :mod:`prunehess.training.folder`'s; the zip is
:mod:`prunehess.training.archive`'s; model and data are :mod:`prunehess.training.components`'.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from prunehess.errors import CheckpointError, ConfigError, OutputError
from prunehess.storage import sweep_temporaries
from prunehess.training.absa import make_batch_schedule
from prunehess.training.archive import write_archive
from prunehess.training.components import RunComponents, default_components, derived_seed, make_loader
from prunehess.training.config import TrainConfig
from prunehess.training.folder import (
    Progress, RunFolder, cpu_state, load_progress, log_cells, log_text, read_log, remain_text, save_progress,
    save_state_dict, write_text,
)
from prunehess.training.hessian_aware import LayerTraces, TraceFn, hessian_prune, needs_trace
from prunehess.training.loop import evaluate, make_optimizer, train_epoch
from prunehess.training.pruning import (
    apply_masks_, full_masks, magnitude_prune, prunable_weights, random_prune, remaining_percent,
)
from prunehess.training.schedule import lr_at, set_lr_
from prunehess.training.track import Curvature, CurvatureTracker

__all__ = ["RunSummary", "TrainEvent", "run_training"]

Measure = Callable[[nn.Module], Curvature]
Emit = Callable[["TrainEvent"], None]


@dataclass(frozen=True)
class TrainEvent:
    """Progress: ``kind`` is ``"skip"`` (a finished iteration), ``"epoch"`` (one epoch logged, 0 included) or
    ``"iteration"`` (an iteration finished); ``row`` is the log row for ``"epoch"``; ``variant`` the run's prune
    type."""

    kind: str
    iteration: int
    epoch: int = 0
    row: Optional[Mapping[str, Any]] = None
    variant: str = ""


@dataclass(frozen=True)
class RunSummary:
    """What a run produced."""

    output: Path
    archive: Path
    remaining_percent: tuple[float, ...]
    best_accuracy: tuple[float, ...]
    iterations_run: tuple[int, ...]
    iterations_skipped: tuple[int, ...]
    prune_type: str = "lt"


@dataclass
class _Run:
    """What the iterations of one run share."""

    config: TrainConfig
    folder: RunFolder
    device: torch.device
    components: RunComponents
    model: nn.Module
    initial: dict[str, Tensor]
    measure: Optional[Measure]
    layer_traces: Optional[TraceFn]
    test_loader: DataLoader
    emit: Callable[..., None]

    def event(self, kind: str, iteration: int, epoch: int = 0, row: Optional[Mapping[str, Any]] = None) -> None:
        self.emit(TrainEvent(kind, iteration, epoch, row, self.config.prune_type))


def _fork_rng(device: torch.device):
    devices = [device.index or 0] if device.type == "cuda" else []
    return torch.random.fork_rng(devices=devices)


# ---------------------------------------------------------------------------------------------- the run
def run_training(
    config: TrainConfig,
    *,
    components: Optional[RunComponents] = None,
    tracker: Optional[Measure] = None,
    layer_traces: Optional[TraceFn] = None,
    on_event: Optional[Emit] = None,
) -> RunSummary:
    """Run (or resume) the iterative pruning described by ``config`` (one prune type); write its files and zip.

    Args:
        config: the run's settings (without ``variants``: :func:`prunehess.training.run_variants` runs those).
        components: model factory and data (default: :func:`~prunehess.training.components.default_components`).
        tracker: ``model -> Curvature`` used every ``config.track_eigen`` epochs (default: a
            :class:`~prunehess.training.track.CurvatureTracker` on ``components.hessian_batches()`` with
            ``config.seed``).
        layer_traces: ``(model, masks, names) -> {name: trace}`` for ``prune_type="hessian"`` (default: a
            :class:`~prunehess.training.hessian_aware.LayerTraces` on the same Hessian batch and seed).
        on_event: called with a :class:`TrainEvent` as the run progresses (progress bars).

    Returns:
        A :class:`RunSummary`.
    """
    if config.variants:
        raise ConfigError(f"--variants {config.variants}: run_variants trains them (run_training trains one type)")
    folder = RunFolder.for_config(config)
    device = torch.device(config.device)
    if folder.root.exists() and not folder.root.is_dir():
        raise OutputError(f"{folder.root}: exists and is not a folder")
    with _fork_rng(device):
        # Data and the initial model first: a bad dataset or model name fails before anything is written.
        components = components or default_components(config)
        torch.manual_seed(config.seed)
        model = components.model_factory().to(device)
        try:
            folder.checkpoints.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputError(f"{folder.root}: cannot create the output folder ({err.strerror or err})") from None
        with folder.locked():
            sweep_temporaries([folder.root, folder.checkpoints])  # what a killed run was writing
            return _run_locked(config, folder, device, components, model, tracker, layer_traces,
                               on_event or (lambda event: None))


def _run_locked(config: TrainConfig, folder: RunFolder, device: torch.device, components: RunComponents,
                model: nn.Module, tracker: Optional[Measure], layer_traces: Optional[TraceFn], emit: Emit
                ) -> RunSummary:
    import yaml

    saved = load_progress(folder, config)
    write_text(folder.config, yaml.safe_dump(config.to_dict(), sort_keys=False))
    progress = saved or Progress()
    initial = _initial_weights(folder, model, resumed=saved is not None)

    # The log keeps the rows of finished iterations only.
    rows = [r for r in read_log(folder.log) if r["iteration"] < progress.completed] \
        if saved is not None and folder.log.exists() else []
    write_text(folder.log, log_text(rows))

    measure, traces = _curvature(config, components, tracker, layer_traces)
    test_loader = make_loader(components.test_set, config.test_batch_size, generator=None,
                              num_workers=config.num_workers)
    run = _Run(config, folder, device, components, model, initial, measure, traces, test_loader, emit)
    skipped = tuple(range(min(progress.completed, config.prune_iterations)))
    for ite in skipped:
        run.event("skip", ite)
    ran = tuple(range(progress.completed, config.prune_iterations))
    for ite in ran:
        _run_iteration(run, progress, ite)

    n = config.prune_iterations
    write_text(folder.remain_params, remain_text(progress.remaining[:n]))
    write_archive(config, folder, n)
    return RunSummary(folder.root, folder.archive, tuple(progress.remaining[:n]), tuple(progress.best_accuracy[:n]),
                      ran, skipped, config.prune_type)


def _load_state(path: Path) -> dict[str, Tensor]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{path}: cannot load ({err})") from None


def _initial_weights(folder: RunFolder, model: nn.Module, *, resumed: bool) -> dict[str, Tensor]:
    """The initial weights: the saved file when resuming, else the fresh model built under the run's seed
    (saved now)."""
    if resumed and folder.initial.exists():
        return _load_state(folder.initial)
    initial = cpu_state(model)
    save_state_dict(initial, folder.initial)
    return initial


def _curvature(config: TrainConfig, components: RunComponents, tracker: Optional[Measure],
               layer_traces: Optional[TraceFn]) -> tuple[Optional[Measure], Optional[TraceFn]]:
    """The curvature tracker and the layer-trace function, on one Hessian batch (loaded once, when needed)."""
    need_tracker = config.track_eigen is not None and tracker is None
    need_traces = config.prune_type == "hessian" and layer_traces is None and config.prune_iterations > 1
    if not (need_tracker or need_traces):
        return tracker, layer_traces
    if components.hessian_batches is None:
        raise ConfigError(f"{'--track-eigen' if need_tracker else '--prune-type hessian'}: these components give "
                          "no Hessian batch")
    batches = list(components.hessian_batches())
    if need_tracker:
        tracker = CurvatureTracker(batches, seed=config.seed, trace_probes=config.trace_probes)
    if need_traces:
        layer_traces = LayerTraces(batches, seed=config.seed, probes=config.trace_probes)
    return tracker, layer_traces


# ---------------------------------------------------------------------------------------------- one iteration
def _run_iteration(run: _Run, progress: Progress, ite: int) -> None:
    """Prune (from the previous iteration's final weights), rewind or re-initialise, train; then save the
    progress."""
    config, model = run.config, run.model
    weights = prunable_weights(model, run.components.is_prunable)
    masks = full_masks(weights) if ite == 0 else _prune(run, progress, ite)
    masks = {k: m.to(run.device) for k, m in masks.items()}
    model.load_state_dict(_start_state(run, ite))
    apply_masks_(model, masks)
    rem = remaining_percent(model, masks)
    best = _train_iteration(run, masks, ite, rem)
    progress.best_accuracy.append(best)
    progress.remaining.append(round(rem, 1))
    write_text(run.folder.remain_params, remain_text(progress.remaining))
    progress.weights = {k: p.detach().to("cpu", copy=True)
                        for k, p in prunable_weights(model, run.components.is_prunable).items()}
    progress.masks = {k: m.to("cpu") for k, m in masks.items()}
    progress.state = cpu_state(model) if config.prune_type == "hessian" else None
    progress.completed = ite + 1
    save_progress(run.folder, config, progress)
    run.event("iteration", ite)


def _prune(run: _Run, progress: Progress, ite: int) -> dict[str, Tensor]:
    """The masks of iteration ``ite`` (>= 1) from the previous iteration's final weights and masks."""
    config = run.config
    if config.prune_type == "random":
        generator = torch.Generator().manual_seed(derived_seed(config.seed, "random", ite))
        return random_prune(progress.weights, progress.masks, config.prune_percent,
                            global_pruning=config.global_pruning, generator=generator)
    if config.prune_type == "hessian":
        if progress.state is not None:  # the previous iteration's end, also after a resume
            run.model.load_state_dict(progress.state)
        masks = {k: m.to(run.device) for k, m in progress.masks.items()}
        total = sum(p.numel() for p in run.model.parameters())
        traces = run.layer_traces(run.model, masks, needs_trace(masks, total))
        return hessian_prune(progress.weights, progress.masks, config.prune_percent, dict(traces), total=total)
    return magnitude_prune(progress.weights, progress.masks, config.prune_percent,
                           global_pruning=config.global_pruning)


def _start_state(run: _Run, ite: int) -> Mapping[str, Tensor]:
    """Where iteration ``ite`` starts (before masking): the initial weights, epoch ``rewind_epoch`` of iteration 0
    (late rewinding), or a fresh initialisation (``reinit``)."""
    config = run.config
    if ite == 0:
        return run.initial
    if config.prune_type == "reinit":
        torch.manual_seed(derived_seed(config.seed, "reinit", ite))
        return cpu_state(run.components.model_factory())
    if config.rewind_epoch == 0:
        return run.initial
    return _load_state(run.folder.snapshot(0, config.rewind_epoch))


def _train_iteration(run: _Run, masks: dict[str, Tensor], ite: int, rem: float) -> float:
    """Epochs ``0 … E`` of one iteration: train, evaluate, track, log, snapshot; returns the best accuracy."""
    config, model = run.config, run.model
    schedule = make_batch_schedule(
        config.batch_schedule, config.batch_size, factor=config.absa_factor, threshold=config.absa_threshold,
        max_batch_size=config.absa_max_batch_size, reference=config.absa_reference,
    )
    optimizer = make_optimizer(config.optimizer, model.parameters(), lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay)
    snapshots = set(config.snapshot_epochs)
    best_acc, best_state = -math.inf, None
    with open(run.folder.log, "a", newline="") as log_fh:
        writer = csv.writer(log_fh, lineterminator="\n")
        for epoch in range(config.epochs + 1):
            row = _epoch(run, masks, ite, epoch, rem, schedule, optimizer)
            writer.writerow(log_cells(row))
            log_fh.flush()
            if epoch in snapshots:
                save_state_dict(cpu_state(model), run.folder.snapshot(ite, epoch))
            if row["test_accuracy"] > best_acc:
                best_acc, best_state = row["test_accuracy"], cpu_state(model)
            run.event("epoch", ite, epoch, row)
    save_state_dict(best_state if best_state is not None else cpu_state(model), run.folder.best(ite))
    return best_acc


def _epoch(run: _Run, masks: dict[str, Tensor], ite: int, epoch: int, rem: float, schedule: Any,
           optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Train epoch ``epoch`` (none for epoch 0), evaluate, track; the log row."""
    config = run.config
    batch_size, train_loss, lr = schedule.batch_size, None, None
    if epoch > 0:
        lr = lr_at(epoch, lr=config.lr, warmup=config.warmup, milestones=config.milestone_epochs,
                   gamma=config.lr_gamma)
        set_lr_(optimizer, lr)
        torch.manual_seed(derived_seed(config.seed, "epoch", ite, epoch))
        shuffle = torch.Generator().manual_seed(derived_seed(config.seed, "shuffle", ite, epoch))
        loader = make_loader(run.components.train_set, batch_size, generator=shuffle, num_workers=config.num_workers)
        train_loss = train_epoch(run.model, loader, optimizer, masks, device=run.device)
    result = evaluate(run.model, run.test_loader, device=run.device)
    curvature = run.measure(run.model) if config.tracked(epoch) and run.measure is not None else None
    if curvature is not None:
        schedule.observe(curvature.top_eigenvalue)
    return {
        "iteration": ite, "epoch": epoch, "train_loss": train_loss, "test_loss": result.loss,
        "test_accuracy": result.accuracy, "remaining_percent": round(rem, 1), "batch_size": batch_size,
        "top_eigenvalue": curvature.top_eigenvalue if curvature else None,
        "trace": curvature.trace if curvature else None, "lr": lr,
    }
