"""Checkpoints: safe zip extraction, layout discovery, safe loading.

- :mod:`~prunehess.checkpoints.zips`: :func:`safe_extract` unpacks an untrusted zip (no escapes, links, duplicates
  or bombs; never half-written).
- :mod:`~prunehess.checkpoints.naming`: :func:`discover` maps files to (prune iteration, epoch) by their naming.
- :mod:`~prunehess.checkpoints.loading`: :func:`load_checkpoint` (``weights_only``, wrappers, prefixes, prune
  pairs, masks), :func:`load_into_model`. Masks from exact zeros: :func:`prunehess.operators.zero_masks`.
"""
from prunehess.checkpoints.naming import CheckpointRef, Discovery, discover
from prunehess.checkpoints.loading import LoadedCheckpoint, load_checkpoint, load_into_model
from prunehess.checkpoints.zips import ZipLimits, safe_extract

__all__ = [
    # zips
    "ZipLimits",
    "safe_extract",
    # layouts
    "CheckpointRef",
    "Discovery",
    "discover",
    # loading
    "LoadedCheckpoint",
    "load_checkpoint",
    "load_into_model",
]
