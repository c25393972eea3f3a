"""Small frozen result objects returned by the estimators, with their diagnostics."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional

import torch
from torch import Tensor

from prunehess.estimators.broadening import gaussian_density

__all__ = ["EigenResult", "TraceResult", "DensityResult", "Deflation"]


@dataclass(frozen=True)
class EigenResult:
    """Top eigenpairs of a symmetric operator.

    Attributes:
        eigenvalues: ``(k,)``, largest first (by value, or by magnitude for ``which="LM"``).
        eigenvectors: ``(n, k)`` unit columns, or ``None`` when not requested.
        residuals: ``(k,)`` residual norms ``‖A x − λ x‖`` (Lanczos: the Ritz bound ``β_m |s_m|``).
        n_hvp: operator products used.
        n_iter: Lanczos steps or power iterations.
        converged: whether every requested pair met the tolerance.
        method: ``"lanczos"`` or ``"power"``.
    """

    eigenvalues: Tensor
    eigenvectors: Optional[Tensor]
    residuals: Tensor
    n_hvp: int
    n_iter: int
    converged: bool
    method: str


@dataclass(frozen=True)
class TraceResult:
    """A stochastic trace estimate.

    Attributes:
        estimate: the trace estimate.
        stderr: its standard error (sample standard deviation of the stochastic part / √samples).
        n_hvp: operator products used.
        samples: the per-probe quadratic forms ``zᵀ A z`` (Hutchinson) or the remainder's samples (Hutch++, and
            Hutchinson with a :class:`Deflation`: ``zᵀ (I − P) A (I − P) z``).
        method: ``"hutchinson"``, ``"hutchinson-deflated"``, ``"hutch++"``, or ``"exact"`` (the sum of the exact
            eigenvalues: stderr 0).
        blocks: per-block estimates from the same probes (Hutchinson with ``blocks=``), keyed by block name.
    """

    estimate: float
    stderr: float
    n_hvp: int
    samples: Tensor
    method: str
    blocks: Mapping[str, "TraceResult"] = field(default_factory=dict)


@dataclass(frozen=True)
class Deflation:
    """Orthonormal rows ``basis`` (``k × n``) and ``trace = tr(basis · A · basisᵀ)``, known without products: the
    basis of a Lanczos run, whose ``qⱼᵀ A qⱼ`` are its ``αⱼ``. With ``P = basisᵀ basis`` a projector,
    ``tr(A) = trace + tr((I − P) A (I − P))``, and probes need only estimate the second term, provided they are
    independent of the basis (not drawn from the ``seed`` its start vector came from)."""

    basis: Tensor  # (k, n), rows orthonormal, on the operator's device
    trace: float
    seed: Optional[int] = None  # the seed the basis's start vector was drawn with: probes must not share it
    ritz_values: Optional[Tensor] = None  # (k,) float64: the eigenvalues θ of the run's tridiagonal T, ascending
    ritz_coefficients: Optional[Tensor] = None  # (k, k) float64: T's eigenvectors S (columns), so Ritz vectors are basisᵀS
    coupling: float = 0.0  # β_k, the run's last off-diagonal: Ritz residuals are |β_k S[k−1, j]|

    def ritz_pairs(self, k: int, *, smallest: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """The ``k`` largest (or ``smallest``) Ritz values, their Ritz vectors ``basisᵀ s_j`` (columns, unit norm,
        on the basis's device) and residual bounds ``‖A x − θ x‖ ≤ |β_k s_{k,j}|`` (Golub & Van Loan §10.1): what
        the run already knows of the extreme eigenpairs, without products."""
        if self.ritz_values is None or self.ritz_coefficients is None:
            raise ValueError("this basis carries no Ritz pairs (made by slq_density(deflation=True) only)")
        order = torch.argsort(self.ritz_values, descending=not smallest)[:k]
        S = self.ritz_coefficients[:, order]
        vectors = self.basis.T @ S.to(self.basis.dtype)
        return self.ritz_values[order], vectors / vectors.norm(dim=0, keepdim=True), (self.coupling * S[-1]).abs()

    def project_out(self, Z: Tensor) -> Tensor:
        """``(I − basisᵀ basis) Z`` for columns ``Z`` (``n × b``), in place (matrix–vector products for one
        column: no workspace beyond two vectors of length ``k``)."""
        if Z.shape[1] == 1:
            z = Z[:, 0]
            z.addmv_(self.basis.T, torch.mv(self.basis, z), alpha=-1.0)
            return Z
        return Z.addmm_(self.basis.T, self.basis @ Z, alpha=-1.0)


@dataclass(frozen=True)
class DensityResult:
    """A spectral density by stochastic Lanczos quadrature.

    ``nodes[r]`` and ``weights[r]`` are run ``r``'s Gauss quadrature: the Ritz values of its Lanczos
    tridiagonal and the squared first components of their eigenvectors (each row of ``weights`` sums to 1).
    The density is the average over runs of ``Σ_j weights[r, j] δ(λ − nodes[r, j])``.
    """

    nodes: Tensor  # (runs, m), float64
    weights: Tensor  # (runs, m), float64
    n_hvp: int
    dim: int  # size of the operator
    residuals: Optional[Tensor] = None  # (runs, m): Ritz residual bounds |β_m s_{m,j}| (0 past a run's end)
    lengths: Optional[Tensor] = None  # (runs,): Lanczos steps each run took (< m: it found an invariant subspace)
    deflation: Optional[Deflation] = None  # run 0's Krylov basis and tr(T), when asked for (slq_density(deflation=True))

    def spans_space(self, run: int = 0) -> bool:
        """Whether run ``run`` took ``dim`` steps: its nodes are then the operator's exact eigenvalues."""
        return self.lengths is not None and int(self.lengths[run]) == self.dim

    def moment(self, p: int) -> float:
        """``∫ λ^p dμ``: an estimate of ``tr(A^p) / n``."""
        return float((self.weights * self.nodes**p).sum(dim=1).mean())

    def broadened(self, *, num_points: int = 10_000, sigma_squared: Optional[float] = None):
        """PyHessian's Gaussian-broadened density on a grid: see :func:`prunehess.estimators.gaussian_density`."""
        return gaussian_density(self.nodes, self.weights, num_points=num_points, sigma_squared=sigma_squared)

    def flat(self) -> tuple[Tensor, Tensor]:
        """All runs as one discrete measure: nodes and weights (weights sum to 1)."""
        runs = self.nodes.shape[0]
        return self.nodes.reshape(-1), self.weights.reshape(-1) / runs
