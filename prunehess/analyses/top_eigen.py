"""The top eigenvalues (and, with ``--save-eigenvectors``, their eigenvectors).

The values are the density run's Ritz values when they meet the tolerance, else Lanczos (or power iteration):
see :func:`~prunehess.estimators.summary.top_eigen_after_density`. Writes ``top_eigenvalues/`` (largest first, one
per line) and the ``summary.csv`` column ``top_eigenvalues``. With ``--save-eigenvectors`` it also writes
``eigenvectors/eigenvectorsIII_EE.npz``: ``eigenvalues`` (k,) and, for each parameter of the block, its name →
an array (k, *shape) of float32 unit eigenvectors, exactly 0 on pruned weights (they are not coordinates); the
vectors are the density run's Ritz vectors when they converged (no products), else Lanczos's.

It runs after the trace, so that the density's Krylov basis, which deflates the trace, is freed before a Lanczos
run of its own allocates another.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Mapping, Optional

import numpy as np
from torch import Tensor

from prunehess.analyses.base import Analysis, BlockWriter, Workspace
from prunehess.analyses.density import KRYLOV_BASIS
from prunehess.estimators import EigenOptions, EigenResult, lanczos_top_eigen, power_iteration
from prunehess.estimators.summary import top_eigen_after_density, top_eigenpairs_from_basis
from prunehess.layout import Column

__all__ = ["ANALYSIS", "TopEigen", "eigenvectors_npz"]


@dataclass(frozen=True)
class TopEigen:
    """The top eigenvalues (``eigen``) and, when saved, the eigenvectors as parameter name → ``(k, *shape)``."""

    eigen: EigenResult
    vectors: Optional[Mapping[str, Tensor]] = None

    @property
    def eigenvalues(self) -> Tensor:
        return self.eigen.eigenvalues


def compute(op, options: EigenOptions, work: Workspace) -> TopEigen:
    density = work.results["density"]
    if not options.vectors:
        return TopEigen(top_eigen_after_density(op, density, options, seed=work.seed))
    k = min(options.k, op.size)
    if options.method == "power":
        eigen = power_iteration(op, k=k, tol=options.tol, max_iter=options.max_iter, seed=work.seed,
                                return_eigenvectors=True)
    else:
        basis = work.take(KRYLOV_BASIS)
        eigen = top_eigenpairs_from_basis(density, basis, k, tol=options.tol)
        basis = None  # the last reference to the run's basis: freed before a Lanczos run allocates its own
        if eigen is None:
            eigen = lanczos_top_eigen(op, k=k, tol=options.tol, max_iter=max(options.max_iter, 2 * k),
                                      seed=work.seed, return_eigenvectors=True)
    rows = eigen.eigenvectors.T.contiguous()
    space = getattr(op, "space", None)  # a model's operator: named parameters; any other: one flat array
    return TopEigen(eigen, space.from_flat(rows) if space is not None else {"vectors": rows})


def eigenvectors_npz(result: TopEigen) -> bytes:
    """The ``.npz`` bytes of :class:`TopEigen`'s eigenvalues and named eigenvectors (float32)."""
    arrays = {"eigenvalues": result.eigenvalues.double().cpu().numpy()}
    arrays.update({name: v.detach().float().cpu().numpy() for name, v in result.vectors.items()})
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def write(out: BlockWriter, result: TopEigen) -> None:
    out.values("top_eigenvalues", result.eigenvalues)
    if result.vectors is not None:
        out.raw("eigenvectors", eigenvectors_npz(result), ext="npz")


ANALYSIS = Analysis(
    name="top_eigen",
    options=EigenOptions,
    compute=compute,
    write=write,
    row=lambda result: {"top_eigenvalues": [float(v) for v in result.eigenvalues]},
    n_hvp=lambda result: result.eigen.n_hvp,
    position=10,
    after=("density", "trace"),
    metrics=("top_eigenvalues", "eigenvectors"),
    columns=(Column("top_eigenvalues", "floats"),),
    requests=lambda options: frozenset({KRYLOV_BASIS}) if options.vectors and options.method == "lanczos"
    else frozenset(),
    headline=(("top", "top_eigenvalues"),),
)
