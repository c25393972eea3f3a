"""Choosing the torch device: the one resolver of ``extract``, ``train`` and the library."""
from __future__ import annotations

from typing import Optional

import torch

from prunehess.errors import ConfigError

__all__ = ["resolve_device"]


def resolve_device(device: Optional[str] = None, cuda: Optional[bool] = None) -> torch.device:
    """``device`` when given (``--device cuda:1``), else a GPU when there is one unless ``cuda`` is ``False``
    (``--no-cuda``); ``cuda=True`` insists on one. A device that is not there is one :class:`ConfigError` line.

    Example:
        >>> resolve_device("cpu"), resolve_device(cuda=False)
        (device(type='cpu'), device(type='cpu'))
    """
    if device:
        try:
            chosen = torch.device(device)
        except RuntimeError:
            raise ConfigError(f"device: {device!r} is not a torch device (e.g. cpu, cuda, cuda:1)") from None
        if chosen.type == "cuda" and cuda is False:
            raise ConfigError(f"--device {device} contradicts --no-cuda")
        if chosen.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device: {device} requested but CUDA is not available here")
        return chosen
    if cuda is True and not torch.cuda.is_available():
        raise ConfigError("--cuda requested but CUDA is not available here (use --no-cuda)")
    use_cuda = torch.cuda.is_available() if cuda is None else cuda
    return torch.device("cuda" if use_cuda else "cpu")
