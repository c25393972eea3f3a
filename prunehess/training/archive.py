"""The zip of a training run, as ``prunehess extract`` reads it, in deterministic bytes.

Members in a fixed order (initial weights; per iteration its snapshots then its best checkpoint;
``remain_params.txt``, ``train_log.csv``, ``train_config.yaml``), each with the same timestamp and mode, so that
the same run gives the same zip byte for byte, whether it went through in one go or was resumed.
"""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import BinaryIO, Iterator

from prunehess.errors import OutputError
from prunehess.training.config import TrainConfig
from prunehess.training.folder import RunFolder, log_text, read_log, write_with

__all__ = ["write_archive"]

_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def _members(folder: RunFolder, config: TrainConfig, n: int) -> Iterator[Path]:
    yield folder.initial
    for ite in range(n):
        for epoch in config.snapshot_epochs:
            yield folder.snapshot(ite, epoch)
        yield folder.best(ite)
    yield folder.remain_params
    yield folder.log
    yield folder.config  # lets `prunehess extract` pick the dataset and model with no options


def _member_bytes(path: Path, folder: RunFolder, config: TrainConfig, log: bytes) -> bytes:
    import yaml

    if path == folder.log:
        return log
    if path == folder.config:  # the run's settings, without this machine's paths
        settings = {k: v for k, v in config.to_dict().items() if k not in ("output", "data_root")}
        return yaml.safe_dump(settings, sort_keys=False).encode("utf-8")
    try:
        return path.read_bytes()
    except OSError:
        raise OutputError(f"{path}: missing, cannot build {folder.archive}") from None


def write_archive(config: TrainConfig, folder: RunFolder, n: int) -> None:
    """Zip the run's first ``n`` iterations into ``folder.archive`` (the log only up to iteration ``n-1``)."""
    log = log_text([r for r in read_log(folder.log) if r["iteration"] < n]).encode("utf-8")

    def write(handle: BinaryIO) -> None:
        with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for path in _members(folder, config, n):
                info = zipfile.ZipInfo(path.name, date_time=_ZIP_DATE)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, _member_bytes(path, folder, config, log))

    write_with(folder.archive, write)
