"""Named parameters and masks as one flat vector of surviving coordinates.

A :class:`ParameterSpace` fixes an ordered set of parameter names, their shapes, and optional boolean masks
(``True`` = surviving weight). Its flat vectors hold only the surviving coordinates, in ``names`` order and
row-major within each tensor, so an operator on this space acts on the sparse network's parameters alone.
``to_flat`` and ``from_flat`` convert between flat vectors and ``dict[str, Tensor]`` of full shapes
(pruned coordinates are zero); both accept a leading batch dimension.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional

import torch
from torch import Tensor

__all__ = ["ParameterSpace"]


@dataclass(frozen=True)
class ParameterSpace:
    """Ordered parameter names with shapes and optional masks."""

    names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]
    masks: Mapping[str, Tensor] = field(default_factory=dict)

    def __post_init__(self):
        index: dict[str, Optional[Tensor]] = {}
        sizes = []
        for name, shape in zip(self.names, self.shapes):
            mask = self.masks.get(name)
            if mask is not None:
                if tuple(mask.shape) != tuple(shape):
                    raise ValueError(f"mask for {name} has shape {tuple(mask.shape)}, parameter has {tuple(shape)}")
                idx = torch.nonzero(mask.reshape(-1).bool(), as_tuple=False).reshape(-1)
                index[name] = idx
                sizes.append(int(idx.numel()))
            else:
                index[name] = None
                sizes.append(int(torch.Size(shape).numel()))
        object.__setattr__(self, "_index", index)
        object.__setattr__(self, "_on_device", {})
        object.__setattr__(self, "sizes", tuple(sizes))

    def _index_on(self, name: str, device: torch.device) -> Optional[Tensor]:
        """The surviving positions of ``name`` on ``device`` (copied there once: no transfer per product)."""
        idx = self._index[name]
        if idx is None or idx.device == device:
            return idx
        key = (name, device)
        if key not in self._on_device:
            self._on_device[key] = idx.to(device)
        return self._on_device[key]

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, Tensor], masks: Optional[Mapping[str, Tensor]] = None) -> "ParameterSpace":
        names = tuple(tensors)
        masks = {k: v for k, v in (masks or {}).items() if k in tensors}
        return cls(names, tuple(t.shape for t in tensors.values()), masks)

    @property
    def dim(self) -> int:
        """Number of surviving coordinates."""
        return sum(self.sizes)

    @property
    def total(self) -> int:
        """Number of coordinates before masking."""
        return sum(torch.Size(s).numel() for s in self.shapes)

    def slices(self) -> dict[str, slice]:
        """Where each parameter's surviving coordinates sit in a flat vector."""
        out, start = {}, 0
        for name, size in zip(self.names, self.sizes):
            out[name] = slice(start, start + size)
            start += size
        return out

    def subspace(self, names: Iterable[str]) -> "ParameterSpace":
        """The same space restricted to some parameters (order kept as given)."""
        names = tuple(names)
        lookup = dict(zip(self.names, self.shapes))
        missing = [n for n in names if n not in lookup]
        if missing:
            raise KeyError(f"unknown parameters {missing}; known: {list(self.names)}")
        return ParameterSpace(names, tuple(lookup[n] for n in names), {n: self.masks[n] for n in names if n in self.masks})

    def to_flat(self, tensors: Mapping[str, Tensor]) -> Tensor:
        """Concatenate the surviving coordinates of full-shape tensors (leading batch dims allowed)."""
        parts = []
        for name, shape in zip(self.names, self.shapes):
            t = tensors[name]
            lead = t.shape[: t.dim() - len(shape)]
            t = t.reshape(*lead, -1)
            idx = self._index_on(name, t.device)
            if idx is not None:
                t = t.index_select(-1, idx)
            parts.append(t)
        return torch.cat(parts, dim=-1)

    def from_flat(self, flat: Tensor) -> dict[str, Tensor]:
        """Full-shape tensors from a flat vector (pruned coordinates are zero; leading batch dims allowed)."""
        lead = flat.shape[:-1]
        out = {}
        for name, shape, chunk in zip(self.names, self.shapes, flat.split(list(self.sizes), dim=-1)):
            idx = self._index_on(name, chunk.device)
            if idx is None:
                out[name] = chunk.reshape(*lead, *shape)
            else:
                full = chunk.new_zeros(*lead, torch.Size(shape).numel())
                full.index_copy_(full.dim() - 1, idx, chunk)
                out[name] = full.reshape(*lead, *shape)
        return out
