"""Load checkpoints safely into plain state dicts with masks.

:func:`load_checkpoint` reads a file with ``torch.load(weights_only=True)`` (no code from the file runs) and
normalises what the common trainers write into ``{name: tensor}`` keyed like the model's ``state_dict()``:

- wrappers are unwrapped: ``state_dict`` (Lightning), ``model_state_dict`` (OpenLTH ``checkpoint.pth``),
  ``model`` and ``net`` (pytorch-cifar); also any dict whose only tensor-holding value is one dict of tensors.
  Scalars beside the wrapped dict (``epoch``, ``acc``, ``global_step``, ...) go to ``meta``;
- prefixes are stripped: ``module.`` (DataParallel), ``model.`` (Lightning), ``_orig_mod.`` (``torch.compile``),
  while every key carries them; with ``expected_keys`` (the model's keys), whichever prefix (any attribute name)
  makes the most keys fit, and keys outside that prefix are dropped (listed in ``meta["dropped_keys"]``);
- ``torch.nn.utils.prune`` pairs ``<name>_orig``, ``<name>_mask`` become ``<name> = orig * mask`` with the mask
  kept in ``masks``; ``mask_path`` (OpenLTH ``mask.pth``: name -> 0/1 tensor) adds masks (combined by AND).

A file that needs code to unpickle (a whole pickled ``nn.Module``, a malicious ``__reduce__``) is refused; with
``trust=True`` it is loaded with full pickle, which runs whatever code the file holds.
"""
from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import Tensor, nn

from prunehess.errors import CheckpointError

__all__ = ["LoadedCheckpoint", "load_checkpoint", "load_into_model"]

WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net")
KNOWN_PREFIXES = ("module.", "model.", "_orig_mod.")
_SCALARS = (bool, int, float, str, type(None))


@dataclass
class LoadedCheckpoint:
    """A checkpoint as plain tensors.

    Attributes:
        state_dict: plain keys (wrappers and prefixes removed, prune pairs folded: weight = orig * mask).
        masks: parameter name -> bool mask (True = surviving), from prune pairs or ``mask.pth``; may be empty.
        path: the file it came from.
        meta: scalars stored beside the weights (e.g. ``epoch``, ``acc``), and ``wrapper`` (the keys unwrapped),
            ``prefix`` (the prefix stripped), ``dropped_keys`` when they apply.
    """

    state_dict: dict[str, Tensor]
    masks: dict[str, Tensor]
    path: Path
    meta: dict[str, Any] = field(default_factory=dict)


def load_checkpoint(
    path: Path,
    *,
    trust: bool = False,
    mask_path: Path | None = None,
    expected_keys: Iterable[str] | None = None,
) -> LoadedCheckpoint:
    """Load one checkpoint file on the CPU.

    Args:
        path: the checkpoint.
        trust: load with full pickle (runs code from the file); only for files you trust.
        mask_path: an OpenLTH-style ``mask.pth`` whose masks are added.
        expected_keys: the model's ``state_dict()`` keys, to choose the prefix to strip.

    Raises:
        CheckpointError: unreadable, refused by the safe loader, not a state dict, malformed masks, or NaN/Inf.

    Example:
        >>> import tempfile
        >>> f = Path(tempfile.mkdtemp()) / "c.pth"
        >>> torch.save({"epoch": 3, "state_dict": {"model.fc.weight": torch.ones(2, 2)}}, f)
        >>> ckpt = load_checkpoint(f)
        >>> list(ckpt.state_dict), ckpt.meta["epoch"]
        (['fc.weight'], 3)
    """
    path = Path(path)
    expected = set(expected_keys) if expected_keys is not None else None
    meta: dict[str, Any] = {}
    raw = _unwrap(path, _torch_load(path, trust), meta)
    state, masks = _fold_prune_pairs(path, raw)
    prefix, state = _strip_prefix(state, expected, meta)
    masks = {name: m for name, m in ((_renamed(k, prefix), m) for k, m in masks.items()) if name in state}
    if mask_path is not None:
        _add_mask_file(Path(mask_path), path, state, masks)
    _check_finite(path, state)
    return LoadedCheckpoint(state_dict=state, masks=masks, path=path, meta=meta)


def load_into_model(model: nn.Module, ckpt: LoadedCheckpoint) -> None:
    """Copy ``ckpt`` into ``model`` strictly, or explain in one line what does not fit.

    Raises:
        CheckpointError: names the file and the first few missing and unexpected keys and shape mismatches.
    """
    own = model.state_dict()
    theirs = ckpt.state_dict
    missing = [k for k in own if k not in theirs and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in theirs if k not in own]
    shapes = [
        f"{k}: checkpoint {tuple(theirs[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in theirs and theirs[k].shape != own[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {_first(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_first(unexpected)}")
    if shapes:
        problems.append(f"shape mismatch {_first(shapes, sep='; ')}")
    if problems:
        raise CheckpointError(f"{ckpt.path}: does not fit the model: {'; '.join(problems)}")
    try:
        model.load_state_dict(theirs, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{ckpt.path}: does not fit the model ({_one_line(str(exc))})") from None


# --- reading ----------------------------------------------------------------------------------------------------


def _torch_load(path: Path, trust: bool) -> Any:
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=not trust)
    except Exception as exc:  # torch raises many kinds for a broken file
        message = str(exc)
        if not trust and message.startswith("Weights only load failed"):
            raise CheckpointError(
                f"{path}: refused by the safe loader (weights_only=True): {_refusal_reason(message)}; "
                "--trust-checkpoints would load it with full pickle, which runs arbitrary code from the file "
                "(use it only for files you trust)"
            ) from None
        raise CheckpointError(
            f"{path}: cannot be read as a PyTorch checkpoint, is it truncated or corrupt? "
            f"({type(exc).__name__}{': ' + _one_line(message) if message.strip() else ''})"
        ) from None


def _refusal_reason(message: str) -> str:
    if m := re.search(r"GLOBAL (\S+)", message):
        return f"it needs code ({m[1]}) to unpickle"
    if m := re.search(r"(\S+) must be (\S+) to load", message):
        return f"it needs code ({m[1]}) to unpickle"
    lines = [ln for ln in message.splitlines() if ln.strip() and "documentation" not in ln]
    return f"it holds more than tensors ({_one_line(lines[-1] if lines else message)})"


def _unwrap(path: Path, obj: Any, meta: dict[str, Any]) -> dict[str, Tensor]:
    """Peel wrappers off ``obj`` down to a dict of tensors; scalars met on the way go to ``meta``."""
    chain = []
    for _ in range(4):
        if isinstance(obj, nn.Module):
            chain.append("<module>")
            obj = obj.state_dict()
            continue
        if not isinstance(obj, Mapping):
            raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state dict")
        inner = _wrapped(obj)
        if inner is None:
            break
        for k, v in obj.items():
            if isinstance(v, _SCALARS) and isinstance(k, str):
                meta.setdefault(k, v)
        chain.append(inner)
        obj = obj[inner]
    if chain:
        meta["wrapper"] = "/".join(chain)
    tensors: dict[str, Tensor] = {}
    for k, v in obj.items():
        if not isinstance(k, str):
            raise CheckpointError(f"{path}: holds a dict with a non-string key {k!r}, not a state dict")
        if isinstance(v, Tensor):
            tensors[k] = v.detach()
        elif isinstance(v, _SCALARS):
            meta.setdefault(k, v)
    if not tensors:
        keys = ", ".join(map(str, list(obj)[:5])) or "none"
        raise CheckpointError(f"{path}: holds no tensors (keys: {keys})")
    return tensors


def _wrapped(obj: Mapping) -> Any:
    """The key of the dict (or module) that ``obj`` wraps, or None if ``obj`` is itself the state dict."""
    for key in WRAPPER_KEYS:
        if isinstance(obj.get(key), (Mapping, nn.Module)):
            return key
    if any(isinstance(v, Tensor) for v in obj.values()):
        return None
    holders = [k for k, v in obj.items() if _holds_tensors(v)]
    return holders[0] if len(holders) == 1 else None


def _holds_tensors(obj: Any, depth: int = 3) -> bool:
    """Whether ``obj`` is a dict with tensors among its values, or (a few levels down) in a dict it holds."""
    if not isinstance(obj, Mapping) or depth == 0:
        return False
    return any(isinstance(v, Tensor) or _holds_tensors(v, depth - 1) for v in obj.values())


# --- normalising ------------------------------------------------------------------------------------------------


def _fold_prune_pairs(path: Path, raw: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Replace ``<name>_orig`` and ``<name>_mask`` by ``<name> = orig * mask``; return the state and the masks."""
    state: dict[str, Tensor] = {}
    masks: dict[str, Tensor] = {}
    pairs = {k[: -len("_orig")] for k in raw if k.endswith("_orig") and k[: -len("_orig")] + "_mask" in raw}
    for key, value in raw.items():
        base = key[: -len("_orig")]
        if key.endswith("_mask") and base in pairs:
            continue
        if not (key.endswith("_orig") and base in pairs):
            state[key] = value
            continue
        mask = raw[base + "_mask"]
        if base in raw:
            raise CheckpointError(f"{path}: holds both {base} and the prune pair {base}_orig/{base}_mask")
        if mask.shape != value.shape:
            raise CheckpointError(
                f"{path}: {base}_mask has shape {tuple(mask.shape)} but {base}_orig has {tuple(value.shape)}"
            )
        masks[base] = _as_bool_mask(path, f"{base}_mask", mask)
        state[base] = value * masks[base].to(value.dtype)
    return state, masks


def _as_bool_mask(path: Path, key: str, mask: Tensor) -> Tensor:
    if mask.dtype != torch.bool and not bool(((mask == 0) | (mask == 1)).all()):
        raise CheckpointError(f"{path}: mask {key} holds values other than 0 and 1")
    return mask != 0


def _strip_prefix(
    state: dict[str, Tensor], expected: set[str] | None, meta: dict[str, Any]
) -> tuple[str, dict[str, Tensor]]:
    """Remove the wrapper prefix of the keys; return it and the renamed state."""
    prefix = _best_prefix(list(state), expected)
    if not prefix:
        return "", state
    meta["prefix"] = prefix
    out, dropped = {}, []
    for k, v in state.items():
        if k.startswith(prefix):
            out[k[len(prefix) :]] = v
        elif expected is not None and k in expected:
            out.setdefault(k, v)
        else:
            dropped.append(k)
    if dropped:
        meta["dropped_keys"] = dropped
    return prefix, out


def _renamed(key: str, prefix: str) -> str:
    return key[len(prefix) :] if prefix and key.startswith(prefix) else key


def _best_prefix(keys: list[str], expected: set[str] | None) -> str:
    if expected is None:
        prefix = ""
        while True:
            rest = [k[len(prefix) :] for k in keys]
            nxt = next((p for p in KNOWN_PREFIXES if all(r.startswith(p) for r in rest)), None)
            if nxt is None:
                return prefix
            prefix += nxt
    counts: dict[str, int] = {"": sum(k in expected for k in keys)}
    for k in keys:
        for i, ch in enumerate(k):
            if ch == "." and k[i + 1 :] in expected:
                counts[k[: i + 1]] = counts.get(k[: i + 1], 0) + 1
    return max(counts, key=lambda p: (counts[p], -len(p)))


def _add_mask_file(mask_path: Path, path: Path, state: dict[str, Tensor], masks: dict[str, Tensor]) -> None:
    """Add the masks of an OpenLTH ``mask.pth`` (name -> 0/1 tensor), combined with existing ones by AND."""
    raw = _unwrap(mask_path, _torch_load(mask_path, trust=False), {})
    prefix = _best_prefix(list(raw), set(state))
    for key, value in raw.items():
        name = _renamed(key, prefix)
        if name not in state:
            raise CheckpointError(f"{mask_path}: mask for {name!r}, which {path} does not hold")
        if value.shape != state[name].shape:
            raise CheckpointError(
                f"{mask_path}: mask for {name!r} has shape {tuple(value.shape)}, the weight {tuple(state[name].shape)}"
            )
        mask = _as_bool_mask(mask_path, name, value)
        masks[name] = masks[name] & mask if name in masks else mask


def _check_finite(path: Path, state: dict[str, Tensor]) -> None:
    for key, t in state.items():
        numeric = (t.is_floating_point() or t.is_complex()) and t.layout == torch.strided
        if numeric and not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"{path}: non-finite values in {key}")


def _first(items: list[str], n: int = 3, sep: str = ", ") -> str:
    shown = sep.join(items[:n])
    return shown + (f" (and {len(items) - n} more)" if len(items) > n else "")


def _one_line(text: str, limit: int = 200) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."
