"""``extract``: from a zip of pruning checkpoints to the fixed output tree.

- :mod:`~prunehess.pipeline.config`: :class:`ExtractConfig`, the run's options in sections, each declared once.
- :mod:`~prunehess.pipeline.context`: the start-up and the :class:`RunContext` every checkpoint shares.
- :mod:`~prunehess.pipeline.run`: :func:`extract`, the loop.
- :mod:`~prunehess.pipeline.checkpoint`: one checkpoint → files and a record.
- :mod:`~prunehess.pipeline.records`: the record types and ``summary.csv``'s columns.
- :mod:`~prunehess.pipeline.state`, :mod:`~prunehess.pipeline.strategy`, :mod:`~prunehess.pipeline.shared`: what
  a run finished, the HVP strategy it chose, the files all checkpoints share.
- :mod:`~prunehess.pipeline.events`: progress as small event objects.
- :mod:`~prunehess.pipeline.distributed`: the same run under ``torchrun``.
"""
from prunehess.pipeline.config import DataOptions, EngineOptions, ExtractConfig, SourceOptions
from prunehess.pipeline.distributed import launched_by_torchrun, run_extract
from prunehess.pipeline.interrupt import Interrupted
from prunehess.pipeline.records import SUMMARY_COLUMNS, CheckpointRecord
from prunehess.pipeline.run import ExtractReport, extract

__all__ = [
    "extract", "run_extract", "launched_by_torchrun", "ExtractReport", "Interrupted",
    "ExtractConfig", "SourceOptions", "DataOptions", "EngineOptions",
    "CheckpointRecord", "SUMMARY_COLUMNS",
]
