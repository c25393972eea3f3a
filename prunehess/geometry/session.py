"""A finished extract output, opened again: its configuration, its zip, its checkpoints.

:func:`run_config` rebuilds the run's :class:`~prunehess.pipeline.ExtractConfig` from ``OUTPUT/config.yaml`` (every
option of the run, flat keys; the keys that record the run rather than set an option, such as ``layout_detected``
and ``hvp_strategy``, are dropped), with the output folder set to ``OUTPUT`` and the few overrides a user may need
(the zip's new folder, the data root, the device). The run then opens exactly as extract's
(:func:`prunehess.pipeline.context.start` and :func:`~prunehess.pipeline.context.open_run`): the output folder's
lock, the zip unpacked, the model, the Hessian batch on the device.

:func:`select_checkpoints` picks the checkpoints a command works on: each iteration's best, all, or named tags.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from prunehess.checkpoints import CheckpointRef, Discovery
from prunehess.errors import ConfigError, DataError
from prunehess.geometry.options import RunOptions
from prunehess.layout import OutputLayout
from prunehess.options import all_keys
from prunehess.pipeline import ExtractConfig
from prunehess.pipeline.checkpoint import checkpoint_tag

__all__ = ["run_config", "select_checkpoints", "best_checkpoints", "describe_run"]


def _recorded(layout: OutputLayout) -> dict:
    if not layout.root.is_dir():
        raise DataError(f"{layout.root}: no such folder")
    if not layout.config_file.is_file():
        raise DataError(f"{layout.config_file}: not found; {layout.root} is not the output folder of a finished "
                        "prunehess extract")
    return layout.read_config()


def run_config(output: str | Path, run: RunOptions = RunOptions(), *, test_split: bool = False) -> ExtractConfig:
    """The configuration of the extract run that wrote ``output``, to reopen it (``test_split``: load the test
    split too). A missing ``config.yaml`` or zip is one line naming the file."""
    layout = OutputLayout(output)
    recorded = _recorded(layout)
    known = set(all_keys(ExtractConfig))
    values = {k: v for k, v in recorded.items() if k in known}
    values.update(output=str(layout.root), test_accuracy=test_split, download=run.download, parallel=False,
                  data_parallel=False)
    for key, value in (("resume", run.resume), ("data_root", run.data_root), ("device", run.device)):
        if value is not None:
            values[key] = str(value)
    try:
        config = ExtractConfig.from_mapping(values)
    except ConfigError as err:
        raise ConfigError(f"{layout.config_file}: {err}") from None
    _check_source(config, layout)
    return config


def _check_source(config: ExtractConfig, layout: OutputLayout) -> None:
    """The run's zip (or unpacked folder) is where ``config.yaml`` says, else one line saying how to point to it."""
    source = config.source
    if not source.extract:
        if not source.resume.is_dir():
            raise ConfigError(f"{source.resume}: the run's checkpoint folder (named in {layout.config_file}) is not "
                              "there; if it moved, pass --resume DIR, the folder that holds it now")
        return
    try:
        zip_path = source.zip_path()
    except ConfigError as err:
        raise ConfigError(f"{layout.config_file}: the run's zip cannot be found again ({err})") from None
    if not zip_path.is_file():
        raise ConfigError(f"{zip_path}: the run's zip (named in {layout.config_file}) is not there; if it moved, "
                          "pass --resume DIR, the folder that holds it now")


def describe_run(config: ExtractConfig) -> str:
    """``"fc1 on digits"``: the model and dataset of a run (for messages)."""
    return f"{config.data.model} on {config.data.dataset}"


def _best_accuracies(layout: OutputLayout) -> dict[int, tuple[float, int]]:
    """``iteration -> (test accuracy, epoch)`` of each iteration's most accurate snapshot in ``summary.csv``."""
    best: dict[int, tuple[float, int]] = {}
    if not layout.summary_file.is_file():
        return best
    for row in layout.read_summary():
        it, ep, acc = row.get("iteration"), row.get("epoch"), row.get("test_accuracy")
        if row.get("layer") is not None or it is None or ep is None or acc is None:
            continue
        if it not in best or acc > best[it][0]:
            best[it] = (acc, ep)
    return best


def best_checkpoints(found: Discovery, layout: OutputLayout) -> list[CheckpointRef]:
    """Each prune iteration's best checkpoint: its ``best`` file; where a naming has none, the snapshot with the
    highest test accuracy in ``summary.csv``, else the last snapshot. The initial weights are not an iteration."""
    by_iteration: dict[int, list[CheckpointRef]] = {}
    for ref in found.checkpoints:
        if ref.iteration >= 0:
            by_iteration.setdefault(ref.iteration, []).append(ref)
    accuracy = _best_accuracies(layout)
    chosen = []
    for iteration, refs in sorted(by_iteration.items()):
        best = [r for r in refs if r.kind == "best"]
        by_epoch = {r.epoch: r for r in refs if r.kind != "best"}
        if best:
            chosen.append(best[0])
        elif iteration in accuracy and accuracy[iteration][1] in by_epoch:
            chosen.append(by_epoch[accuracy[iteration][1]])
        else:
            chosen.append(max(refs))
    return chosen


def select_checkpoints(found: Discovery, spec: str, tags: Optional[Sequence[str]], layout: OutputLayout,
                       where: str) -> list[CheckpointRef]:
    """The checkpoints of ``spec``: ``best`` (:func:`best_checkpoints`), ``all``, or the ``tags`` (an unknown tag
    is one line naming ``where``, the run's zip, and the tags it holds)."""
    if tags is None:
        return list(found.checkpoints) if spec == "all" else best_checkpoints(found, layout)
    by_tag = {checkpoint_tag(ref): ref for ref in found.checkpoints}
    unknown = [tag for tag in tags if tag not in by_tag]
    if unknown:
        shown = ", ".join(list(by_tag)[:12]) + (" …" if len(by_tag) > 12 else "")
        raise ConfigError(f"{where}: no checkpoint tagged {unknown[0]} (it holds {shown})")
    return sorted(by_tag[tag] for tag in tags)
