"""``extract``: from a zip of pruning checkpoints to the fixed output tree.

One orchestration function, :func:`extract`, called by ``prunehess extract`` (and usable from Python). It
unpacks the zip safely, finds the checkpoints and orders them by (iteration, epoch), loads the Hessian batch
onto the device once, and for every checkpoint loads the weights into the model, builds a
:class:`~prunehess.operators.HessianOperator` on the surviving weights (or all, with ``params="all"``) and
writes top eigenvalues, trace and spectral density (whole model, and per parameter tensor with
``compute_each_layer``). Each checkpoint's files are written atomically, then its record; a rerun skips
checkpoints finished from the same bytes under the same options, so a killed run resumes to the same numbers.
"""
from __future__ import annotations

import hashlib
import math
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from prunehess.checkpoints.layouts import CheckpointRef, Discovery, discover
from prunehess.checkpoints.loading import LoadedCheckpoint, load_checkpoint, load_into_model
from prunehess.checkpoints.zips import ZipLimits, safe_extract
from prunehess.config import ExtractConfig
from prunehess.errors import CheckpointError, ConfigError, OutputError, PrunehessError
from prunehess.layout import OutputLayout, epoch_tag, iteration_tag
from prunehess.operators import HessianOperator
from prunehess.operators.hessian import PROBES_PER_PRODUCT
from prunehess.operators.hvp import eval_mode
from prunehess.operators.masks import zero_masks
from prunehess.runstate import RunState

__all__ = ["extract", "unpack", "finalize", "ExtractReport", "Interrupted", "resolve_device", "checkpoint_tag",
           "checkpoint_fingerprint"]

Log = Callable[[str], None]


class Interrupted(PrunehessError):
    """SIGINT: the run stopped cleanly after the checkpoint in flight."""

    exit_code = 130


@dataclass
class ExtractReport:
    """What a run did."""

    layout: str
    computed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    strategy: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    retired: list[Path] = field(default_factory=list)  # an earlier run's other results, moved out of the tree
    retired_to: Optional[Path] = None  # ... into this folder

    def retired_line(self) -> str:
        """One line saying what was moved aside, or ``""``."""
        if self.retired_to is None:
            return ""
        return (f"moved {len(self.retired)} result file(s) of an earlier run (other options or other checkpoints) "
                f"out of the tree, with its records, to {self.retired_to}")


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


def checkpoint_tag(ref: CheckpointRef) -> str:
    """``III_EE`` as in the output file names (``000_00`` initial, ``001_best`` ...)."""
    return f"{iteration_tag(ref.iteration)}_{epoch_tag(ref.epoch)}"


def resolve_device(config: ExtractConfig) -> torch.device:
    """``--device`` if given, else CUDA when available and not ``--no-cuda``."""
    if config.device:
        try:
            device = torch.device(config.device)
        except RuntimeError:
            raise ConfigError(f"device: {config.device!r} is not a torch device (e.g. cpu, cuda, cuda:1)") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device: {config.device} requested but CUDA is not available here")
        return device
    if config.cuda is True and not torch.cuda.is_available():
        raise ConfigError("--cuda requested but CUDA is not available here (use --no-cuda)")
    use_cuda = torch.cuda.is_available() if config.cuda is None else config.cuda
    return torch.device("cuda" if use_cuda else "cpu")


# ----- the run ----------------------------------------------------------------------------------------------------
def extract(
    config: ExtractConfig,
    *,
    log: Log = print,
    shard: tuple[int, int] = (0, 1),
    reduce: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
    data_shard: Optional[tuple[int, int]] = None,
    write_results: bool = True,
    write_shared: bool = True,
    lock: bool = True,
    unpacked: Optional[Path] = None,
    progress: Optional[Callable[[str, int, int], None]] = None,
) -> ExtractReport:
    """Run the extraction described by ``config``; returns what was computed, skipped and failed.

    ``shard=(rank, world)`` analyses only every ``world``-th checkpoint starting at ``rank`` (torch.distributed
    checkpoint sharding); ``data_shard`` and ``reduce`` split the Hessian batch across ranks instead.
    ``write_results=False`` computes without writing (the other ranks of a data-parallel run); ``write_shared``
    (rank 0) writes the files shared by all checkpoints: layers, remaining parameters, summary and config.
    ``unpacked`` names a folder already unpacked (by rank 0). ``progress(tag, done, total)`` is called as each
    checkpoint's blocks (whole model, then each layer) finish. A checkpoint that fails (bad weights, NaN loss)
    is recorded and the others go on.
    """
    start_time = time.perf_counter()
    from prunehess.data import dataset_info, hessian_batch, test_loader
    from prunehess.models import build_model

    device = resolve_device(config)
    layout = OutputLayout(config.output)
    state = RunState(config.output)
    state.prepare()
    if lock:
        state.acquire()
    try:
        if lock:
            layout.remove_stale_temporaries()  # what a killed run was writing when it died
        if unpacked is None and config.extract and not config.zipname:  # the resolved config names the zip used
            config = replace(config, zipname=config.zip_path().name)
        folder = unpacked if unpacked is not None else unpack(config, log)
        config = config.with_run_defaults(folder)
        state.key = config.numerics_key()
        found = discover(folder, layout_regex=config.layout)
        _announce(found, folder, log)
        info = dataset_info(config.dataset)
        model = build_model(config.model, input_shape=info.input_shape, num_classes=info.num_classes,
                            batch_norm=config.batch_norm, residual=config.residual, depth=config.depth).to(device)
        forward = _forward(model, config, device, log)
        batches = hessian_batch(config.dataset, root=config.data_root, size=config.hessian_batch_size,
                                mini_batch_size=config.mini_hessian_batch_size, seed=config.seed,
                                device=device if data_shard is None else "cpu", download=config.download)
        total = None
        if data_shard is not None:  # only this rank's share goes to its device: the whole batch need not fit
            total = sum(int(y.shape[0]) for _, y in batches)
            batches = [(x.to(device), y.to(device)) for x, y in batches[data_shard[0] :: data_shard[1]]]
        tests = test_loader(config.dataset, root=config.data_root, download=config.download) if config.test_accuracy else None
        names = [n for n, _ in model.named_parameters()]
        report = ExtractReport(layout=found.layout)
        mine = [ref for i, ref in enumerate(found.checkpoints) if i % shard[1] == shard[0]]
        fingerprints: dict[str, str] = {}
        interrupted: Optional[Interrupted] = None
        with _StopOnSigint() as stopper:
            for position, ref in enumerate(mine, 1):
                tag = checkpoint_tag(ref)
                fingerprints[tag] = checkpoint_fingerprint(ref, found)
                if state.finished(tag, fingerprints[tag]) is not None:
                    report.skipped.append(tag)
                    continue
                if stopper.requested:
                    interrupted = Interrupted(f"interrupted before checkpoint {tag}; rerun the same command to resume")
                    break
                log(f"[{position}/{len(mine)}] {tag} ({ref.path.name}) ...")
                try:
                    record = _analyse(ref, found, model, forward, batches, total, reduce, tests, names, config,
                                      device, layout if write_results else None, state, report, log, progress)
                except CheckpointError as err:
                    report.failed[tag] = str(err)
                    if write_results:
                        state.write_record(tag, {"tag": tag, "status": "failed", "error": str(err),
                                                 "checkpoint": fingerprints[tag]})
                    log(f"  failed: {err}")
                    continue
                record["checkpoint"] = fingerprints[tag]
                if write_results:
                    state.write_record(tag, record)
                report.computed.append(tag)
                done = len(report.computed)
                eta = (time.perf_counter() - start_time) / done * (len(mine) - position)
                log(f"  {tag}: top {record['rows'][0]['top_eigenvalues'][0]:.6g}  trace {record['rows'][0]['trace']:.6g}"
                    f"  test acc {_fmt(record['test_accuracy'])}  ({record['rows'][0]['hvps']} HVPs,"
                    f" {record['seconds']:.1f} s; ETA {_clock(eta)})")
        if write_shared:
            if not report.strategy:  # every checkpoint was finished before: the config still names the strategy
                report.strategy = _known_strategy(config, state, device)
            _write_shared(layout, state, model, config, found, report, fingerprints)
            if report.retired_to is not None:
                log(report.retired_line())
        if interrupted is not None:
            raise interrupted
    finally:
        state.release()
    report.seconds = time.perf_counter() - start_time
    return report


def _fmt(value: Optional[float]) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def unpack(config: ExtractConfig, log: Log = print) -> Path:
    """The folder to search: the zip unpacked into ``<resume>/<zip stem>/``, or ``--resume`` itself with --no-extract."""
    if not config.extract:
        if not config.resume.is_dir():
            raise ConfigError(f"{config.resume}: not a folder (--resume with --no-extract names an unpacked folder)")
        return config.resume
    zip_path = config.zip_path()
    if not zip_path.is_file():
        raise ConfigError(f"{zip_path}: no such zip (set --resume to its folder and --zipname to its name)")
    dest = config.unpacked_folder()
    limits = ZipLimits(max_total_bytes=config.max_unpacked_mb * 2**20, max_ratio=config.max_ratio)
    files = safe_extract(zip_path, dest, limits=limits)
    log(f"unpacked {len(files)} files from {zip_path} into {dest}")
    return dest


def _announce(found: Discovery, folder: Path, log: Log) -> None:
    log(f"found {len(found.checkpoints)} checkpoints in {folder} (layout: {found.layout})")
    if found.unmatched:
        shown = ", ".join(str(p) for p in found.unmatched[:10])
        more = f" and {len(found.unmatched) - 10} more" if len(found.unmatched) > 10 else ""
        log(f"warning: {len(found.unmatched)} files match no checkpoint layout and are not analysed: {shown}{more}")


def _forward(model: nn.Module, config: ExtractConfig, device: torch.device, log: Log):
    if not config.parallel:
        return None
    if device.type != "cuda":
        log("warning: --parallel needs CUDA devices; running on one device")
        return None
    count = torch.cuda.device_count()
    first = device.index if device.index is not None else torch.cuda.current_device()
    ids = [first] + [i for i in range(count) if i != first]  # DataParallel gathers on, and expects the model on, ids[0]
    log(f"DataParallel over {count} GPU(s): {', '.join(f'cuda:{i}' for i in ids)}")
    return nn.DataParallel(model, device_ids=ids, output_device=first)


def _masks(model: nn.Module, ckpt: LoadedCheckpoint, config: ExtractConfig) -> Optional[dict[str, torch.Tensor]]:
    """Masks of the surviving weights: from the checkpoint (prune pairs, mask.pth) or exact zeros; none for 'all'."""
    if config.params == "all":
        return None
    from prunehess.models import is_prunable

    masks = dict(zero_masks(model, is_prunable))
    masks.update({k: v.to(next(model.parameters()).device) for k, v in ckpt.masks.items()})
    return masks


def _remaining_percent(model: nn.Module) -> float:
    total = sum(p.numel() for p in model.parameters())
    alive = sum(int((p != 0).sum()) for p in model.parameters())
    return 100.0 * alive / total


@torch.no_grad()
def _test_accuracy(model: nn.Module, tests, device: torch.device) -> Optional[float]:
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
def _check_loss(model: nn.Module, batches, path: Path, reduce=None) -> float:
    """The mean loss over the Hessian batch (all ranks' shares under ``reduce``); non-finite is a failure."""
    with eval_mode(model):
        total = sum(F.cross_entropy(model(x), y, reduction="sum") for x, y in batches)
    sums = torch.stack([total.double(), torch.tensor(float(sum(int(y.shape[0]) for _, y in batches)),
                                                     dtype=torch.float64, device=total.device)])
    if reduce is not None:
        sums = reduce(sums)
    loss = float(sums[0] / sums[1])
    if not math.isfinite(loss):
        raise CheckpointError(f"{path}: the loss on the Hessian batch is {loss} (non-finite)")
    return loss


def _analyse(ref, found, model, forward, batches, total, reduce, tests, names, config, device, layout, state,
             report, log, progress=None) -> dict[str, Any]:
    """Load one checkpoint, compute every estimate, write its files; return its record."""
    started = time.perf_counter()
    ckpt = load_checkpoint(ref.path, trust=config.trust_checkpoints, mask_path=found.masks.get(ref.iteration),
                           expected_keys=model.state_dict().keys())
    load_into_model(model, ckpt)
    loss = _check_loss(model, batches, ref.path, reduce)
    accuracy = _test_accuracy(model, tests, device)
    masks = _masks(model, ckpt, config)
    op = HessianOperator(model, batches, params=None, masks=masks, forward=forward, total_samples=total, reduce=reduce)
    _choose_strategy(op, config, state, device, report, log)
    remaining = _remaining_percent(model)
    rows = []
    whole = _estimates(op, config)
    _write(layout, ref, None, whole)
    rows.append(_row(ref, None, remaining, accuracy, whole, started))
    steps = 1 + (len(names) if config.compute_each_layer else 0)
    if progress is not None:
        progress(checkpoint_tag(ref), 1, steps)
    if config.compute_each_layer:
        for k, name in enumerate(names):
            layer_start = time.perf_counter()
            block = op.restrict([name])
            if block.size == 0:
                log(f"  warning: {name} has no surviving weights; its layer files are not written")
                continue
            est = _estimates(block, config)
            _write(layout, ref, k, est)
            rows.append(_row(ref, k, remaining, accuracy, est, layer_start))
            if progress is not None:
                progress(checkpoint_tag(ref), k + 2, steps)
    op.release()
    return {"tag": checkpoint_tag(ref), "status": "done", "iteration": ref.iteration, "epoch": ref.epoch,
            "kind": ref.kind, "path": str(ref.path), "loss": loss, "test_accuracy": accuracy,
            "remaining_percent": remaining, "rows": rows, "seconds": time.perf_counter() - started}


def _choose_strategy(op: HessianOperator, config: ExtractConfig, state: RunState, device, report, log) -> None:
    """Measure strategies on the first checkpoint (or reuse the saved choice); check determinism once."""
    if report.strategy:
        _apply_strategy(op, report.strategy)
        return
    if config.strategy != "auto" or op.reduces:
        # under data parallelism every rank must run the same strategy: no timing-based choice
        choice = {"strategy": "graph" if config.strategy == "auto" else config.strategy, "batched_strategy": "loop"}
    else:
        # keyed by device type: the ranks of a torchrun job (cuda:0, cuda:1, ...) share one choice
        choice = state.saved_strategy(device.type)
        if choice is None:
            timings = op.tune()
            mine = {"strategy": op.strategy, "batched_strategy": op.batched_strategy, "cuda_graphs": op.cuda_graphs,
                    "chunk_size": op.chunk_size, "timings": {k: round(v, 6) for k, v in timings.items()}}
            choice = _save_first_strategy(state, device.type, mine)
            log("  HVP strategy: " + ", ".join(f"{k} {1000 * v:.1f} ms" for k, v in timings.items())
                + f" -> {choice['strategy']}{' (CUDA graphs)' if choice.get('cuda_graphs') else ''}"
                + (f", chunks of {choice['chunk_size']}" if choice.get("chunk_size") else "")
                + f" / batched {choice['batched_strategy']}"
                + ("" if choice is mine else " (measured first by another process of this run)"))
        choice = {k: v for k, v in choice.items() if k not in ("key", "device")}
    _apply_strategy(op, choice)
    op.check_deterministic()
    report.strategy = choice


def _apply_strategy(op: HessianOperator, choice: dict[str, Any]) -> None:
    """Set the product strategy, CUDA graphs and chunking that ``choice`` (as saved in strategy.json) names."""
    op.set_chunk_size(choice.get("chunk_size"))
    op.set_strategy(choice["strategy"], choice["batched_strategy"],
                    cuda_graphs=bool(choice.get("cuda_graphs")) and op.supports_cuda_graphs)


def _save_first_strategy(state: RunState, device_key: str, choice: dict[str, Any]) -> dict[str, Any]:
    """Save ``choice`` unless another process saved one first (the ranks of a sharded torchrun job tune at the
    same time): then return that one, so that every checkpoint of a run uses the same strategy and only one
    process writes ``strategy.json``."""
    import fcntl
    import os

    fd = os.open(state.folder, os.O_RDONLY)  # a lock on the state folder itself: no file is written for it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        saved = state.saved_strategy(device_key)
        if saved is not None:
            return saved
        state.save_strategy(device_key, choice)
        return choice
    finally:
        os.close(fd)


def _estimates(op: HessianOperator, config: ExtractConfig) -> dict[str, Any]:
    """Top eigenvalues, trace and SLQ density of one operator (the whole model or one layer's block), sharing
    products: see :func:`prunehess.estimators.curvature_summary`."""
    if config.trace_method == "hutchinson":
        batch = 1 if config.trace_tol is not None or op.batched_strategy == "loop" else PROBES_PER_PRODUCT
    else:
        batch = 1 if op.batched_strategy == "loop" else PROBES_PER_PRODUCT
    s = op.summary(k=min(config.top_n, op.size), method=config.method, tol=config.tol, max_iter=config.max_iter,
                   trace_method=config.trace_method, trace_probes=config.trace_probes, trace_tol=config.trace_tol,
                   trace_min_probes=config.trace_min_probes,
                   trace_batch_size=batch, trace_deflation=config.trace_deflation, slq_runs=config.slq_runs,
                   slq_steps=config.slq_steps, seed=config.seed)
    return {"eigen": s.eigen, "trace": s.trace, "density": s.density}


@contextmanager
def _writing(root: Path):
    """Turn an OS error while writing the output tree into one :class:`OutputError` line naming the path."""
    try:
        yield
    except OSError as err:
        where = err.filename or root
        hint = "; a file has the name of a folder the output tree needs" if isinstance(
            err, (FileExistsError, NotADirectoryError)) else ""
        raise OutputError(f"{where}: cannot write the results ({err.strerror or err}){hint}") from None


def _write(layout: Optional[OutputLayout], ref: CheckpointRef, layer: Optional[int], est: dict[str, Any]) -> None:
    if layout is None:
        return
    with _writing(layout.root):
        _write_files(layout, ref, layer, est)


def _write_files(layout: OutputLayout, ref: CheckpointRef, layer: Optional[int], est: dict[str, Any]) -> None:
    d = est["density"]
    layout.write_top_eigenvalues(ref.iteration, ref.epoch, est["eigen"].eigenvalues.tolist(), layer=layer)
    layout.write_trace(ref.iteration, ref.epoch, est["trace"].estimate, layer=layer)
    # (runs, m): the layout writes one column per run, one node per line (the seed's format)
    layout.write_density(ref.iteration, ref.epoch, d.nodes.numpy(), d.weights.numpy(), layer=layer)
    grid, density = d.broadened()
    layout.write_esd_plot(ref.iteration, ref.epoch, grid.numpy(), density.numpy(), layer=layer)


def _row(ref, layer, remaining, accuracy, est, started) -> dict[str, Any]:
    return {
        "iteration": ref.iteration, "epoch": ref.epoch, "layer": layer, "remaining_percent": round(remaining, 4),
        "test_accuracy": accuracy, "top_eigenvalues": [float(v) for v in est["eigen"].eigenvalues],
        "trace": est["trace"].estimate, "trace_stderr": est["trace"].stderr,
        "hvps": est["eigen"].n_hvp + est["trace"].n_hvp + est["density"].n_hvp,
        "seconds": round(time.perf_counter() - started, 3),
    }


def finalize(config: ExtractConfig, *, unpacked: Path) -> ExtractReport:
    """Write the shared files (layers, remaining parameters, summary, config) from the records of the run's
    checkpoints, and move an earlier run's other results aside: rank 0's last step after a sharded run."""
    from prunehess.data import dataset_info
    from prunehess.models import build_model

    config = config.with_run_defaults(unpacked)
    found = discover(unpacked, layout_regex=config.layout)
    info = dataset_info(config.dataset)
    model = build_model(config.model, input_shape=info.input_shape, num_classes=info.num_classes,
                        batch_norm=config.batch_norm, residual=config.residual, depth=config.depth)
    state = RunState(config.output, config.numerics_key())
    report = ExtractReport(layout=found.layout)
    report.strategy = _known_strategy(config, state, resolve_device(config))
    _write_shared(OutputLayout(config.output), state, model, config, found, report)
    return report


def _known_strategy(config: ExtractConfig, state: RunState, device: torch.device) -> dict[str, Any]:
    """The HVP strategy of this config's finished checkpoints, without measuring (as :func:`_choose_strategy`)."""
    if config.strategy != "auto":
        return {"strategy": config.strategy, "batched_strategy": "loop"}
    strategy = state.saved_strategy(device.type)
    return {k: v for k, v in (strategy or {}).items() if k not in ("key", "device")}


def _write_shared(layout: OutputLayout, state: RunState, model: nn.Module, config: ExtractConfig, found: Discovery,
                  report: ExtractReport, fingerprints: Optional[dict[str, str]] = None) -> None:
    """layers.txt, remain_params.txt, summary.csv and config.yaml, from the records of this run's checkpoints
    (same options, same bytes: ``fingerprints`` holds those already computed); result files no such record
    accounts for (an earlier run's: other options, other checkpoints) move to ``.prunehess/superseded/``."""
    known = dict(fingerprints or {})
    for ref in found.checkpoints:  # this run's checkpoints: their records only (a sharded run's other ranks' too)
        tag = checkpoint_tag(ref)
        if tag not in known:
            known[tag] = checkpoint_fingerprint(ref, found)
    with _writing(layout.root):
        _write_shared_files(layout, state, model, config, found, report, known)


def _write_shared_files(layout: OutputLayout, state: RunState, model: nn.Module, config: ExtractConfig,
                        found: Discovery, report: ExtractReport, fingerprints: dict[str, str]) -> None:
    layout.write_layers([(k, name, p.numel()) for k, (name, p) in enumerate(model.named_parameters())])
    records = state.all_records(fingerprints)
    by_iteration: dict[int, float] = {}
    for rec in sorted(records, key=lambda r: (r["iteration"], r["epoch"] is not None, r["epoch"] or 0)):
        if rec["iteration"] >= 0:
            by_iteration.setdefault(rec["iteration"], rec["remaining_percent"])
    if by_iteration:
        layout.write_remain_params([by_iteration[i] for i in sorted(by_iteration)])
    order = {checkpoint_tag(ref): i for i, ref in enumerate(found.checkpoints)}
    rows = [row for rec in sorted(records, key=lambda r: order.get(r["tag"], len(order))) for row in rec["rows"]]
    layout.write_summary(rows)
    layout.write_config({**config.to_dict(), "layout_detected": found.layout, "hvp_strategy": report.strategy})
    # what an earlier run under other options (or on other checkpoints) left: out of the tree, kept aside
    keep = {(rec["iteration"], rec["epoch"], row["layer"]) for rec in records for row in rec["rows"]}
    into = state.superseded_folder()
    report.retired = layout.retire_results(keep, into)
    records_moved = state.retire_records(fingerprints, into)  # their files are gone: never skip them again
    report.retired_to = into if report.retired or records_moved else None


class _StopOnSigint:
    """First Ctrl-C: finish the checkpoint in flight, then stop. Second: stop at once."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\ninterrupt: finishing the checkpoint in flight, then stopping (Ctrl-C again to abort now)", flush=True)

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread
            self._previous = None
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False
