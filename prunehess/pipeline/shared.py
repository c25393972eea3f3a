"""The files every checkpoint shares, written from the records when a run ends: ``layers.txt``,
``remain_params.txt``, ``summary.csv``, ``config.yaml``; and an earlier run's other results moved aside.

The tree then holds this run alone: result files that none of its records stands behind (an earlier run's
per-layer files after a rerun without ``--compute-each-layer``, checkpoints the new zip lacks) move, with their
records, to ``.prunehess/superseded/<UTC time>/``.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

from torch import nn

from prunehess.checkpoints import Discovery
from prunehess.errors import OutputError
from prunehess.layout import OutputLayout
from prunehess.pipeline.checkpoint import checkpoint_fingerprint, checkpoint_tag
from prunehess.pipeline.config import ExtractConfig
from prunehess.pipeline.records import SUMMARY_COLUMNS, CheckpointRecord
from prunehess.pipeline.state import RunState

__all__ = ["write_shared", "writing", "Retired"]


@contextmanager
def writing(root: Path) -> Iterator[None]:
    """Turn an OS error while writing the output tree into one :class:`OutputError` line naming the path."""
    try:
        yield
    except OSError as err:
        where = err.filename or root
        hint = "; a file has the name of a folder the output tree needs" if isinstance(
            err, (FileExistsError, NotADirectoryError)) else ""
        raise OutputError(f"{where}: cannot write the results ({err.strerror or err}){hint}") from None


class Retired:
    """What :func:`write_shared` moved out of the tree: the files' new paths, and their folder (``None``:
    nothing moved)."""

    def __init__(self, files: list[Path], folder: Optional[Path]):
        self.files, self.folder = files, folder

    def line(self) -> str:
        """One line saying what was moved aside, or ``""``."""
        if self.folder is None:
            return ""
        return (f"moved {len(self.files)} result file(s) of an earlier run (other options or other checkpoints) "
                f"out of the tree, with its records, to {self.folder}")


def _remain_params(records: list[CheckpointRecord]) -> list[float]:
    """One percent per iteration: that of its first checkpoint (the initial weights excluded)."""
    by_iteration: dict[int, float] = {}
    for rec in sorted(records, key=lambda r: (r.iteration, r.epoch is not None, r.epoch or 0)):
        if rec.iteration >= 0:
            by_iteration.setdefault(rec.iteration, rec.remaining_percent)
    return [by_iteration[i] for i in sorted(by_iteration)]


def write_shared(layout: OutputLayout, state: RunState, model: nn.Module, config: ExtractConfig, found: Discovery,
                 strategy: Mapping[str, Any], fingerprints: Optional[Mapping[str, str]] = None) -> Retired:
    """Write the shared files from the records of this run's checkpoints (same options, same bytes:
    ``fingerprints`` holds those already computed; the others' are read now), then move what none of them stands
    behind to ``superseded/``."""
    known = dict(fingerprints or {})
    for ref in found.checkpoints:  # this run's checkpoints: their records only (a sharded run's other ranks' too)
        known.setdefault(checkpoint_tag(ref), checkpoint_fingerprint(ref, found))
    with writing(layout.root):
        layout.write_layers([(k, name, p.numel()) for k, (name, p) in enumerate(model.named_parameters())])
        records = state.records(known)
        percents = _remain_params(records)
        if percents:
            layout.write_remain_params(percents)
        order = {checkpoint_tag(ref): i for i, ref in enumerate(found.checkpoints)}
        ordered = sorted(records, key=lambda r: order.get(r.tag, len(order)))
        layout.write_summary([row for rec in ordered for row in rec.summary_rows()], SUMMARY_COLUMNS)
        layout.write_config({**config.to_dict(), "layout_detected": found.naming, "hvp_strategy": dict(strategy)})
        keep = {(rec.iteration, rec.epoch, row.layer) for rec in records for row in rec.rows}
        into = layout.new_superseded_folder()
        moved = layout.retire_results(keep, into)
        records_moved = state.retire_records(known, into)  # their files are gone: never skip them again
    return Retired(moved, into if moved or records_moved else None)
