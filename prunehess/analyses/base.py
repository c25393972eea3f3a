"""What an analysis is: one quantity ``extract`` computes for each operator, with its options, files and columns.

An :class:`Analysis` is a frozen declaration plus three small functions:

- ``compute(op, options, work) -> result``: the numbers, from the operator (the whole network's Hessian on its
  surviving weights, or one layer's diagonal block). ``work`` (:class:`Workspace`) holds the results of the
  analyses that ran before on the same operator, so that products are shared: the density's Lanczos run already
  holds the top eigenvalues, and its Krylov basis deflates the trace.
- ``write(out, result)``: the result files of one checkpoint and block, through :class:`BlockWriter` (which
  knows the checkpoint and the layer; the output tree's :class:`~prunehess.layout.OutputLayout` writes the bytes).
- ``row(result) -> {column: value}``: its cells of ``summary.csv`` (the columns it declares).

The run loop, the resume key, ``summary.csv``, the command line and the report learn about analyses from these
declarations (:mod:`prunehess.analyses` finds them); none of them lists an analysis's options or columns.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

import numpy as np

from prunehess.layout import Column, OutputLayout

__all__ = ["Analysis", "Workspace", "BlockWriter"]


@dataclass
class Workspace:
    """What the analyses of one operator share while they run, in their order.

    Attributes:
        seed: the run's seed (probes and start vectors are drawn from it, as PyHessian's ``seed``).
        batched_products: whether the product engine computes several products at once faster than one by one
            (a batched strategy was chosen), so that probes are worth batching.
        requested: how many of the run's analyses asked earlier ones to hand on each by-product (e.g.
            ``"krylov_basis"``: the density run's basis, which deflates the trace and holds the top eigenvectors).
        results: ``name -> result`` of the analyses that already ran.
    """

    seed: int
    batched_products: bool = False
    requested: Mapping[str, int] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    _handed: dict[str, Any] = field(default_factory=dict)
    _takers: dict[str, int] = field(default_factory=dict)

    def hand_on(self, name: str, value: Any) -> None:
        """Keep ``value`` for the later analyses that asked for ``name`` (dropped at once if none did)."""
        if self.requested.get(name, 0) > 0:
            self._handed[name] = value
            self._takers[name] = self.requested[name]

    def take(self, name: str) -> Any:
        """The by-product ``name`` (``None`` if nobody made it). After its last taker took it, the workspace
        forgets it, so its memory goes with that taker's last reference."""
        value = self._handed.get(name)
        self._takers[name] = self._takers.get(name, 1) - 1
        if self._takers[name] <= 0:
            self._handed.pop(name, None)
        return value


@dataclass(frozen=True)
class BlockWriter:
    """Writes the result files of one checkpoint and block (``layer`` ``None``: the whole network)."""

    layout: OutputLayout
    iteration: int
    epoch: Optional[int]
    layer: Optional[int]

    def values(self, metric: str, values: Any) -> None:
        """``<metric>/<metric>III_EE.txt``: one number per line."""
        self.layout.write_values(metric, self.iteration, self.epoch, np.asarray(values, dtype=float).reshape(-1),
                                 layer=self.layer)

    def table(self, metric: str, columns: Any) -> None:
        """``<metric>/<metric>III_EE.txt``: rows of space-separated numbers (``columns`` is ``(rows, cols)``)."""
        self.layout.write_table(metric, self.iteration, self.epoch, np.asarray(columns, dtype=float),
                                layer=self.layer)

    def raw(self, metric: str, data: bytes, *, ext: str) -> None:
        """``<metric>/<metric>III_EE.<ext>``: bytes (a PDF, an ``.npz``)."""
        self.layout.write_bytes(metric, self.iteration, self.epoch, data, layer=self.layer, ext=ext)


def _always(options: Any) -> bool:
    return True


def _nothing(options: Any) -> frozenset[str]:
    return frozenset()


@dataclass(frozen=True)
class Analysis:
    """The declaration of one analysis.

    Attributes:
        name: its name (``trace``); also the attribute of the run's analysis options that holds its options.
        options: its frozen options dataclass (fields declared with :func:`prunehess.options.option`), which
            lives next to its estimator; the command line, YAML files and the resume key read it.
        compute, write, row: see the module docstring.
        n_hvp: ``result -> products used`` (a part taken from an earlier analysis counts none).
        position: the order of its files, columns and report sections among analyses.
        after: analyses whose results ``compute`` reads from the workspace (they run first).
        metrics: the result folders it writes (``<metric>/`` and ``<metric>_layer<k>/``).
        columns: its ``summary.csv`` columns.
        enabled: ``options -> bool``; a disabled analysis computes and writes nothing.
        requests: ``options -> by-products`` it will :meth:`Workspace.take` from earlier analyses.
        layers: whether it also runs on each layer's block with ``--compute-each-layer``.
        headline: ``(label, column)`` pairs shown in the console line of a finished checkpoint (the first number of
            the whole network's cell).
    """

    name: str
    options: type
    compute: Callable[[Any, Any, Workspace], Any]
    write: Callable[[BlockWriter, Any], None]
    row: Callable[[Any], Mapping[str, Any]]
    n_hvp: Callable[[Any], int]
    position: int
    after: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()
    columns: tuple[Column, ...] = ()
    enabled: Callable[[Any], bool] = _always
    requests: Callable[[Any], frozenset[str]] = _nothing
    layers: bool = True
    headline: tuple[tuple[str, str], ...] = ()
