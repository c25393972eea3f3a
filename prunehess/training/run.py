"""An iterative magnitude-pruning (lottery-ticket) run that writes the zip ``prunehess extract`` reads.

Iteration 0 trains the dense network. Each later iteration ``i`` prunes ``P`` % of the surviving weights of the
*final* weights of iteration ``i-1`` (per layer, or globally), then starts again from the initial weights (``lt``:
rewinding, Frankle & Carbin 2019) or from a fresh random initialisation (``reinit``) with the pruned weights held at
zero, and trains for ``E`` epochs with a fresh optimizer. Biases and norm parameters are never pruned; with
``lt`` they are rewound too, with ``reinit`` re-initialised.

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

Determinism: initialisation uses ``torch.manual_seed(seed)``; shuffling, dropout and re-initialisation use seeds
derived from ``(seed, iteration, epoch)``; so the same config gives byte-identical files on CPU, whether the run
went through in one go or was resumed. The caller's global RNG state is restored afterwards.

Resuming: after each iteration, ``train_state.pt`` (completed iterations, final weights, masks) is replaced
atomically. A rerun into the same output skips the finished iterations (its settings must match; it may ask for
more iterations) and redoes an interrupted one from its start. An advisory lock on ``train.lock`` keeps two runs
out of one folder.

The folder's paths, log and saved progress are :mod:`prunehess.training.folder`'s; the zip is
:mod:`prunehess.training.archive`'s.
"""
from __future__ import annotations

import csv
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import torch
from torch import Tensor, nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler, TensorDataset

from prunehess.errors import CheckpointError, ConfigError, OutputError
from prunehess.storage import sweep_temporaries
from prunehess.training.absa import make_batch_schedule
from prunehess.training.archive import write_archive
from prunehess.training.config import TrainConfig
from prunehess.training.folder import (
    LOG_COLUMNS,
    Progress,
    RunFolder,
    cpu_state,
    load_progress,
    log_cells,
    log_text,
    read_log,
    remain_text,
    save_progress,
    save_state_dict,
    write_text,
)
from prunehess.training.loop import evaluate, make_optimizer, train_epoch
from prunehess.training.pruning import (
    apply_masks_,
    default_is_prunable,
    full_masks,
    magnitude_prune,
    prunable_weights,
    remaining_percent,
)
from prunehess.training.track import Curvature, CurvatureTracker

__all__ = [
    "RunFolder",
    "RunComponents",
    "RunSummary",
    "TrainEvent",
    "LOG_COLUMNS",
    "default_components",
    "run_training",
    "read_log",
]

DEFAULT_DATA_ROOT = Path("data")  # relative to the working directory, when no --data-root is given

Measure = Callable[[nn.Module], Curvature]
Emit = Callable[["TrainEvent"], None]


# ---------------------------------------------------------------------------------------------- pieces
@dataclass
class RunComponents:
    """What a run trains on. :func:`default_components` builds them from the registries.

    Attributes:
        model_factory: returns a freshly initialised model, drawing from the global torch RNG.
        train_set, test_set: map-style datasets of ``(x, y)``.
        hessian_batches: returns the fixed Hessian batch ``[(x, y), …]`` for curvature tracking (called once,
            only when tracking).
        is_prunable: ``(name, param) -> bool``.
    """

    model_factory: Callable[[], nn.Module]
    train_set: Dataset
    test_set: Dataset
    hessian_batches: Optional[Callable[[], Sequence[tuple[Tensor, Tensor]]]] = None
    is_prunable: Callable[[str, Tensor], bool] = default_is_prunable


def default_components(config: TrainConfig) -> RunComponents:
    """Model, data and Hessian batch from :mod:`prunehess.models` and :mod:`prunehess.data`."""
    from prunehess import data, models

    info = data.dataset_info(config.dataset)
    root = config.data_root if config.data_root is not None else DEFAULT_DATA_ROOT

    def factory() -> nn.Module:
        return models.build_model(config.model, input_shape=tuple(info.input_shape), num_classes=info.num_classes,
                                  **dict(config.model_kwargs))

    def hessian_batches():
        return data.hessian_batch(
            config.dataset, size=config.hessian_batch_size,
            mini_batch_size=config.hessian_mini_batch_size or config.hessian_batch_size,
            seed=config.seed, device=torch.device(config.device), root=root, download=config.download,
        )

    train_set = data.load_split(config.dataset, root=root, split="train", download=config.download)
    test_set = data.load_split(config.dataset, root=root, split="test", download=config.download)
    return RunComponents(factory, train_set, test_set, hessian_batches, models.is_prunable)


@dataclass(frozen=True)
class TrainEvent:
    """Progress: ``kind`` is ``"skip"`` (a finished iteration), ``"epoch"`` (one epoch logged, 0 included) or
    ``"iteration"`` (an iteration finished); ``row`` is the log row for ``"epoch"``."""

    kind: str
    iteration: int
    epoch: int = 0
    row: Optional[Mapping[str, Any]] = None


@dataclass(frozen=True)
class RunSummary:
    """What a run produced."""

    output: Path
    archive: Path
    remaining_percent: tuple[float, ...]
    best_accuracy: tuple[float, ...]
    iterations_run: tuple[int, ...]
    iterations_skipped: tuple[int, ...]


def _whole_batches(batch: Any) -> Any:
    return batch


def _loader(dataset: Dataset, batch_size: int, *, generator: Optional[torch.Generator], num_workers: int = 0
            ) -> DataLoader:
    """Batches of ``dataset`` (shuffled by ``generator`` when given). Datasets that index a batch at once
    (``prunehess.data``'s image sets, ``TensorDataset``) are read one batch per lookup, others sample by sample;
    the order is the same either way."""
    sampler = RandomSampler(dataset, generator=generator) if generator is not None else SequentialSampler(dataset)
    if hasattr(dataset, "take") or isinstance(dataset, TensorDataset):
        batches = BatchSampler(sampler, batch_size=batch_size, drop_last=False)
        return DataLoader(dataset, batch_size=None, sampler=batches, collate_fn=_whole_batches,
                          num_workers=num_workers)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers)


def _derived_seed(seed: int, *keys: Any) -> int:
    digest = hashlib.sha256(repr((int(seed),) + keys).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _resolve_device(config: TrainConfig) -> torch.device:
    try:
        device = torch.device(config.device)
    except RuntimeError as err:
        raise ConfigError(f"--device {config.device!r}: {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {config.device}: CUDA is not available")
    return device


def _fork_rng(device: torch.device):
    devices = [device.index or 0] if device.type == "cuda" else []
    return torch.random.fork_rng(devices=devices)


# ---------------------------------------------------------------------------------------------- the run
def run_training(
    config: TrainConfig,
    *,
    components: Optional[RunComponents] = None,
    tracker: Optional[Measure] = None,
    on_event: Optional[Emit] = None,
) -> RunSummary:
    """Run (or resume) the iterative pruning described by ``config``; write its files and zip.

    Args:
        config: the run's settings.
        components: model factory and data (default: :func:`default_components`).
        tracker: ``model -> Curvature`` used every ``config.track_eigen`` epochs (default: a
            :class:`~prunehess.training.track.CurvatureTracker` on ``components.hessian_batches()`` with
            ``config.seed``).
        on_event: called with a :class:`TrainEvent` as the run progresses (progress bars).

    Returns:
        A :class:`RunSummary`.
    """
    folder = RunFolder.for_config(config)
    device = _resolve_device(config)
    if folder.root.exists() and not folder.root.is_dir():
        raise OutputError(f"{folder.root}: exists and is not a folder")
    emit = on_event or (lambda event: None)
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
            return _run_locked(config, folder, device, components, model, tracker, emit)


def _run_locked(config: TrainConfig, folder: RunFolder, device: torch.device, components: RunComponents,
                model: nn.Module, tracker: Optional[Measure], emit: Emit) -> RunSummary:
    import yaml

    saved = load_progress(folder, config)
    write_text(folder.config, yaml.safe_dump(config.to_dict(), sort_keys=False))
    progress = saved or Progress()
    initial = _initial_weights(folder, model, resumed=saved is not None)

    # The log keeps the rows of finished iterations only.
    rows = [r for r in read_log(folder.log) if r["iteration"] < progress.completed] \
        if saved is not None and folder.log.exists() else []
    write_text(folder.log, log_text(rows))

    measure = _measure(config, components, tracker)
    test_loader = _loader(components.test_set, config.test_batch_size, generator=None, num_workers=config.num_workers)
    skipped = tuple(range(min(progress.completed, config.prune_iterations)))
    for ite in skipped:
        emit(TrainEvent("skip", ite))
    ran = tuple(range(progress.completed, config.prune_iterations))
    for ite in ran:
        _run_iteration(config, folder, device, components, model, initial, progress, ite, measure, test_loader,
                       emit)

    n = config.prune_iterations
    write_text(folder.remain_params, remain_text(progress.remaining[:n]))
    write_archive(config, folder, n)
    return RunSummary(folder.root, folder.archive, tuple(progress.remaining[:n]), tuple(progress.best_accuracy[:n]),
                      ran, skipped)


def _initial_weights(folder: RunFolder, model: nn.Module, *, resumed: bool) -> dict[str, Tensor]:
    """The initial weights: the saved file when resuming, else the fresh model built under the run's seed
    (saved now)."""
    if resumed and folder.initial.exists():
        try:
            return torch.load(folder.initial, map_location="cpu", weights_only=True)
        except Exception as err:
            raise CheckpointError(f"{folder.initial}: cannot load ({err})") from None
    initial = cpu_state(model)
    save_state_dict(initial, folder.initial)
    return initial


def _measure(config: TrainConfig, components: RunComponents, tracker: Optional[Measure]) -> Optional[Measure]:
    """The curvature tracker: ``tracker``, else one on the components' Hessian batch when tracking."""
    if config.track_eigen is None or tracker is not None:
        return tracker
    if components.hessian_batches is None:
        raise ConfigError("--track-eigen: these components give no Hessian batch")
    return CurvatureTracker(list(components.hessian_batches()), seed=config.seed, trace_probes=config.trace_probes)


def _run_iteration(config: TrainConfig, folder: RunFolder, device: torch.device, components: RunComponents,
                   model: nn.Module, initial: dict[str, Tensor], progress: Progress, ite: int,
                   measure: Optional[Measure], test_loader: DataLoader, emit: Emit) -> None:
    """Prune (from the previous iteration's final weights), rewind or re-initialise, train; then save the
    progress."""
    weights = prunable_weights(model, components.is_prunable)
    if ite == 0:
        masks = full_masks(weights)
    else:
        masks = magnitude_prune(progress.weights, progress.masks, config.prune_percent,
                                global_pruning=config.global_pruning)
    masks = {k: m.to(device) for k, m in masks.items()}
    if ite == 0 or config.prune_type == "lt":
        model.load_state_dict(initial)
    else:
        torch.manual_seed(_derived_seed(config.seed, "reinit", ite))
        model.load_state_dict(cpu_state(components.model_factory()))
    apply_masks_(model, masks)
    rem = remaining_percent(model, masks)
    best = _train_iteration(config, folder, device, components, model, masks, ite, rem, measure, test_loader, emit)
    progress.best_accuracy.append(best)
    progress.remaining.append(round(rem, 1))
    write_text(folder.remain_params, remain_text(progress.remaining))
    progress.weights = {k: p.detach().to("cpu", copy=True)
                        for k, p in prunable_weights(model, components.is_prunable).items()}
    progress.masks = {k: m.to("cpu") for k, m in masks.items()}
    progress.completed = ite + 1
    save_progress(folder, config, progress)
    emit(TrainEvent("iteration", ite))


def _train_iteration(config: TrainConfig, folder: RunFolder, device: torch.device, components: RunComponents,
                     model: nn.Module, masks: dict[str, Tensor], ite: int, rem: float, measure: Optional[Measure],
                     test_loader: DataLoader, emit: Emit) -> float:
    """Epochs ``0 … E`` of one iteration: train, evaluate, track, log, snapshot; returns the best accuracy."""
    schedule = make_batch_schedule(
        config.batch_schedule, config.batch_size, factor=config.absa_factor, threshold=config.absa_threshold,
        max_batch_size=config.absa_max_batch_size, reference=config.absa_reference,
    )
    optimizer = make_optimizer(config.optimizer, model.parameters(), lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay)
    snapshots = set(config.snapshot_epochs)
    best_acc, best_state = -math.inf, None
    with open(folder.log, "a", newline="") as log_fh:
        writer = csv.writer(log_fh, lineterminator="\n")
        for epoch in range(config.epochs + 1):
            batch_size = schedule.batch_size
            train_loss = None
            if epoch > 0:
                torch.manual_seed(_derived_seed(config.seed, "epoch", ite, epoch))
                shuffle = torch.Generator().manual_seed(_derived_seed(config.seed, "shuffle", ite, epoch))
                loader = _loader(components.train_set, batch_size, generator=shuffle, num_workers=config.num_workers)
                train_loss = train_epoch(model, loader, optimizer, masks, device=device)
            result = evaluate(model, test_loader, device=device)
            curvature = measure(model) if config.tracked(epoch) and measure is not None else None
            if curvature is not None:
                schedule.observe(curvature.top_eigenvalue)
            row = {
                "iteration": ite, "epoch": epoch, "train_loss": train_loss, "test_loss": result.loss,
                "test_accuracy": result.accuracy, "remaining_percent": round(rem, 1), "batch_size": batch_size,
                "top_eigenvalue": curvature.top_eigenvalue if curvature else None,
                "trace": curvature.trace if curvature else None,
            }
            writer.writerow(log_cells(row))
            log_fh.flush()
            if epoch in snapshots:
                save_state_dict(cpu_state(model), folder.snapshot(ite, epoch))
            if result.accuracy > best_acc:
                best_acc, best_state = result.accuracy, cpu_state(model)
            emit(TrainEvent("epoch", ite, epoch, row))
    save_state_dict(best_state if best_state is not None else cpu_state(model), folder.best(ite))
    return best_acc
