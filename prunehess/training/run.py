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
"""
from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

import torch
from torch import Tensor, nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler, TensorDataset

from prunehess.errors import CheckpointError, ConfigError, OutputError
from prunehess.training.absa import make_batch_schedule
from prunehess.training.config import TrainConfig
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
    "RunLayout",
    "RunComponents",
    "RunSummary",
    "TrainEvent",
    "LOG_COLUMNS",
    "default_components",
    "run_training",
    "read_log",
]

LOG_COLUMNS = (
    "iteration", "epoch", "train_loss", "test_loss", "test_accuracy", "remaining_percent", "batch_size",
    "top_eigenvalue", "trace",
)
DEFAULT_DATA_ROOT = Path("data")  # relative to the working directory, when no --data-root is given
_STATE_FORMAT = 1
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


# ---------------------------------------------------------------------------------------------- output tree
@dataclass(frozen=True)
class RunLayout:
    """Every path of a training run's output folder (the only place that names them)."""

    root: Path
    prune_type: str
    archive_name: str

    @classmethod
    def for_config(cls, config: TrainConfig) -> "RunLayout":
        return cls(Path(config.output), config.prune_type, config.archive_name)

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def initial(self) -> Path:
        return self.checkpoints / f"initial_state_dict_{self.prune_type}.pth"

    def snapshot(self, iteration: int, epoch: int) -> Path:
        return self.checkpoints / f"{iteration}_model_{self.prune_type}_epoch{epoch}.pth"

    def best(self, iteration: int) -> Path:
        return self.checkpoints / f"{iteration}_model_{self.prune_type}.pth"

    @property
    def remain_params(self) -> Path:
        return self.root / "remain_params.txt"

    @property
    def log(self) -> Path:
        return self.root / "train_log.csv"

    @property
    def config(self) -> Path:
        return self.root / "train_config.yaml"

    @property
    def state(self) -> Path:
        return self.root / "train_state.pt"

    @property
    def lock(self) -> Path:
        return self.root / "train.lock"

    @property
    def archive(self) -> Path:
        return self.root / self.archive_name


def _atomic_write(path: Path, write: Callable[[io.BufferedWriter], None]) -> None:
    """Write through a temporary sibling and ``os.replace`` it into place."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise OutputError(f"{path}: cannot write ({err.strerror or err})") from None
        raise


def _save_state_dict(state: Mapping[str, Tensor], path: Path) -> None:
    _atomic_write(path, lambda fh: torch.save(state, fh))


def _write_text(path: Path, text: str) -> None:
    _atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def _cpu_state(model: nn.Module) -> "OrderedDict[str, Tensor]":
    """A detached CPU copy of ``model.state_dict()`` (keeps the version metadata torch stores with it)."""
    state = model.state_dict()
    out = OrderedDict((k, v.detach().to("cpu", copy=True)) for k, v in state.items())
    metadata = getattr(state, "_metadata", None)
    if metadata is not None:
        out._metadata = metadata  # type: ignore[attr-defined]
    return out


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


# ---------------------------------------------------------------------------------------------- log
def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    return str(value)


def _parse(value: str) -> Any:
    if value == "":
        return None
    try:
        return int(value)
    except ValueError:
        return float(value)


def read_log(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``train_log.csv`` (numbers parsed; empty cells are ``None``)."""
    with open(path, newline="") as fh:
        return [{k: _parse(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def _log_text(rows: Sequence[Mapping[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(LOG_COLUMNS)
    for row in rows:
        writer.writerow([_fmt(row.get(c)) for c in LOG_COLUMNS])
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------- lock & state
class _Lock:
    """An exclusive advisory lock (``fcntl.flock``) on ``train.lock``; the OS drops it when the process dies."""

    def __init__(self, path: Path):
        self.path = path
        self.fd: Optional[int] = None

    def __enter__(self) -> "_Lock":
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise OutputError(f"{self.path}: cannot create the lock ({err.strerror or err})") from None
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no locking
            self.fd = fd
            return self
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise OutputError(f"{self.path.parent}: locked by another training run (pid {holder}); wait for it or "
                              "choose another --output") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _load_state(layout: RunLayout, config: TrainConfig) -> Optional[dict[str, Any]]:
    if not layout.state.exists():
        return None
    try:
        state = torch.load(layout.state, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file
        raise CheckpointError(f"{layout.state}: cannot read the saved training state ({err})") from None
    if not isinstance(state, dict) or state.get("format") != _STATE_FORMAT:
        raise CheckpointError(f"{layout.state}: not a prunehess training state (format {_STATE_FORMAT})")
    saved, now = state["fingerprint"], config.fingerprint()
    differ = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    if differ:
        names = ", ".join("--" + k.replace("_", "-") for k in differ)
        raise ConfigError(f"{layout.state}: {layout.root} holds a run with other settings ({names}); "
                          "use another --output or the same settings to resume")
    return state


# ---------------------------------------------------------------------------------------------- the run
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


def run_training(
    config: TrainConfig,
    *,
    components: Optional[RunComponents] = None,
    tracker: Optional[Callable[[nn.Module], Curvature]] = None,
    on_event: Optional[Callable[[TrainEvent], None]] = None,
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
    layout = RunLayout.for_config(config)
    device = _resolve_device(config)
    if layout.root.exists() and not layout.root.is_dir():
        raise OutputError(f"{layout.root}: exists and is not a folder")
    emit = on_event or (lambda event: None)
    with _fork_rng(device):
        # Data and the initial model first: a bad dataset or model name fails before anything is written.
        components = components or default_components(config)
        torch.manual_seed(config.seed)
        model = components.model_factory().to(device)
        try:
            layout.checkpoints.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputError(f"{layout.root}: cannot create the output folder ({err.strerror or err})") from None
        with _Lock(layout.lock):
            return _run_locked(config, layout, device, components, model, tracker, emit)


def _run_locked(config, layout, device, components, model, tracker, emit) -> RunSummary:
    import yaml

    state = _load_state(layout, config)
    _write_text(layout.config, yaml.safe_dump(config.to_dict(), sort_keys=False))
    completed = int(state["completed"]) if state else 0
    remaining: list[float] = list(state["remaining"]) if state else []
    best_acc: list[float] = list(state["best_accuracy"]) if state else []

    # The initial weights: the saved file when resuming, else the fresh model built under the run's seed.
    if state and layout.initial.exists():
        try:
            initial = torch.load(layout.initial, map_location="cpu", weights_only=True)
        except Exception as err:
            raise CheckpointError(f"{layout.initial}: cannot load ({err})") from None
    else:
        initial = _cpu_state(model)
        _save_state_dict(initial, layout.initial)

    # The log keeps the rows of finished iterations only.
    rows = [r for r in read_log(layout.log) if r["iteration"] < completed] if state and layout.log.exists() else []
    _write_text(layout.log, _log_text(rows))

    measure = tracker
    if config.track_eigen is not None and measure is None:
        if components.hessian_batches is None:
            raise ConfigError("--track-eigen: these components give no Hessian batch")
        measure = CurvatureTracker(list(components.hessian_batches()), seed=config.seed,
                                   trace_probes=config.trace_probes)

    test_loader = _loader(components.test_set, config.test_batch_size, generator=None, num_workers=config.num_workers)
    prev_weights: Optional[dict[str, Tensor]] = None
    prev_masks: Optional[dict[str, Tensor]] = None
    if state and completed:
        prev_weights = {k: v for k, v in state["final_weights"].items()}
        prev_masks = {k: v.bool() for k, v in state["masks"].items()}

    skipped = tuple(range(min(completed, config.prune_iterations)))
    for ite in skipped:
        emit(TrainEvent("skip", ite))
    ran = []
    for ite in range(completed, config.prune_iterations):
        ran.append(ite)
        weights = prunable_weights(model, components.is_prunable)
        if ite == 0:
            masks = {k: m.to(device) for k, m in full_masks(weights).items()}
        else:
            masks = magnitude_prune(prev_weights, prev_masks, config.prune_percent,
                                    global_pruning=config.global_pruning)
            masks = {k: m.to(device) for k, m in masks.items()}
        if ite == 0 or config.prune_type == "lt":
            model.load_state_dict(initial)
        else:
            torch.manual_seed(_derived_seed(config.seed, "reinit", ite))
            model.load_state_dict(_cpu_state(components.model_factory()))
        apply_masks_(model, masks)
        rem = remaining_percent(model, masks)
        best = _train_iteration(config, layout, device, components, model, masks, ite, rem, measure,
                                test_loader, emit)
        best_acc.append(best)
        remaining.append(round(rem, 1))
        _write_text(layout.remain_params, "".join(f"{r:.1f}\n" for r in remaining))
        prev_weights = {k: p.detach().to("cpu", copy=True)
                        for k, p in prunable_weights(model, components.is_prunable).items()}
        prev_masks = {k: m.to("cpu") for k, m in masks.items()}
        new_state = {
            "format": _STATE_FORMAT, "fingerprint": config.fingerprint(), "completed": ite + 1,
            "remaining": remaining, "best_accuracy": best_acc, "final_weights": prev_weights, "masks": prev_masks,
        }
        _atomic_write(layout.state, lambda fh: torch.save(new_state, fh))
        emit(TrainEvent("iteration", ite))

    n = config.prune_iterations
    _write_text(layout.remain_params, "".join(f"{r:.1f}\n" for r in remaining[:n]))
    _write_archive(config, layout, n)
    return RunSummary(layout.root, layout.archive, tuple(remaining[:n]), tuple(best_acc[:n]), tuple(ran), skipped)


def _train_iteration(config, layout, device, components, model, masks, ite, rem, measure, test_loader, emit):
    """Epochs ``0 … E`` of one iteration: train, evaluate, track, log, snapshot; returns the best accuracy."""
    schedule = make_batch_schedule(
        config.batch_schedule, config.batch_size, factor=config.absa_factor, threshold=config.absa_threshold,
        max_batch_size=config.absa_max_batch_size, reference=config.absa_reference,
    )
    optimizer = make_optimizer(config.optimizer, model.parameters(), lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay)
    snapshots = set(config.snapshot_epochs)
    best_acc, best_state = -math.inf, None
    with open(layout.log, "a", newline="") as log_fh:
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
            writer.writerow([_fmt(row[c]) for c in LOG_COLUMNS])
            log_fh.flush()
            if epoch in snapshots:
                _save_state_dict(_cpu_state(model), layout.snapshot(ite, epoch))
            if result.accuracy > best_acc:
                best_acc, best_state = result.accuracy, _cpu_state(model)
            emit(TrainEvent("epoch", ite, epoch, row))
    _save_state_dict(best_state if best_state is not None else _cpu_state(model), layout.best(ite))
    return best_acc


def _archive_members(layout: RunLayout, config: TrainConfig, n: int) -> Iterator[Path]:
    yield layout.initial
    for ite in range(n):
        for epoch in config.snapshot_epochs:
            yield layout.snapshot(ite, epoch)
        yield layout.best(ite)
    yield layout.remain_params
    yield layout.log
    yield layout.config  # lets `prunehess extract` pick the dataset and model with no options


def _write_archive(config: TrainConfig, layout: RunLayout, n: int) -> None:
    """Zip the run (deterministic bytes: fixed order and timestamps; the log only up to iteration ``n-1``)."""
    import yaml

    log_rows = [r for r in read_log(layout.log) if r["iteration"] < n]

    def write(fh) -> None:
        with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for path in _archive_members(layout, config, n):
                if path == layout.log:
                    data = _log_text(log_rows).encode("utf-8")
                elif path == layout.config:  # the run's settings, without this machine's paths
                    settings = {k: v for k, v in config.to_dict().items() if k not in ("output", "data_root")}
                    data = yaml.safe_dump(settings, sort_keys=False).encode("utf-8")
                else:
                    try:
                        data = path.read_bytes()
                    except OSError:
                        raise OutputError(f"{path}: missing, cannot build {layout.archive}") from None
                info = zipfile.ZipInfo(path.name, date_time=_ZIP_DATE)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, data)

    _atomic_write(layout.archive, write)
