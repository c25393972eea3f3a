"""Stochastic trace estimators: Hutchinson and Hutch++.

Hutchinson (1990): for Rademacher probes ``z`` (entries ±1), ``E[zᵀ A z] = tr(A)``; the estimate is the mean of
``zᵀ A z`` over probes, its standard error the sample standard deviation over √probes. The same probes give
every diagonal block's trace at no extra cost: for a block of coordinates ``B``, ``E[z_Bᵀ (A z)_B] = tr(A_BB)``
since the off-diagonal terms have mean zero.

With a :class:`~prunehess.estimators.results.Deflation` (orthonormal ``Q`` with ``tr(Qᵀ A Q)`` known: the basis of
the density's Lanczos run, whose diagonal ``qⱼᵀ A qⱼ`` are its ``αⱼ``), ``tr(A) = tr(Qᵀ A Q) + tr((I − QQᵀ) A
(I − QQᵀ))`` and the probes, projected off ``Q``, estimate only the second term: the Krylov space holds the
outlying eigenvalues that dominate a Hessian's Hutchinson variance, so they are counted exactly, at no product
(Krylov-aware trace estimation: Chen & Hallman, SIMAX 2023). The probes must be independent of ``Q``.

Hutch++ (Meyer, Musco, Musco & Woodruff, SOSA 2021): spend a third of the products on a sketch ``Q`` of the
dominant range (``Q = orth(A S)``), take ``tr(Qᵀ A Q)`` exactly, and apply Hutchinson to the deflated
remainder ``(I − QQᵀ) A (I − QQᵀ)``. For matrices with decaying spectra (Hessians) its error falls like
``1/m`` in the number of products ``m`` instead of ``1/√m``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Optional, Union

import torch
from torch import Tensor

from prunehess.estimators.results import Deflation, TraceResult
from prunehess.estimators.sampling import make_generator, rademacher
from prunehess.errors import ConfigError
from prunehess.operators.base import LinearOperator, as_operator
from prunehess.options import check, option

__all__ = ["TraceOptions", "hutchinson_trace", "hutchpp_trace"]

TRACE_METHODS = ("hutchinson", "hutch++")


@dataclass(frozen=True)
class TraceOptions:
    """How the trace is estimated: :func:`hutchinson_trace` (PyHessian's stopping rule, from ``min_probes``
    probes on; deflated by the density run's Krylov space with ``deflation``) or :func:`hutchpp_trace` with
    ``probes`` products."""

    method: str = option("hutchinson", key="trace_method", choices=TRACE_METHODS,
                         help="Hutchinson or Hutch++ (fewer HVPs for the same error); a layer no larger than "
                              "--slq-steps gets its exact trace from its SLQ run instead.")
    probes: int = option(100, key="trace_probes", minimum=1, help="Most Hutchinson probes (Hutch++: HVP budget).")
    tol: Optional[float] = option(1e-3, key="trace_tol", zero_is_none=True,
                                  help="PyHessian's stopping rule for Hutchinson (relative change of the mean); "
                                       "0 uses every probe.")
    min_probes: int = option(10, key="trace_min_probes", minimum=1,
                             help="The stopping rule stops no sooner than this many probes (1: PyHessian's rule "
                                  "exactly, which can stop after two probes with a standard error far too small).")
    deflation: bool = option(True, key="trace_deflation", off=("--no-trace-deflation",),
                             help="Hutchinson counts the trace in the density run's Krylov space exactly and probes "
                                  "only the rest: fewer probes, a closer trace. --no-trace-deflation: PyHessian's "
                                  "plain Hutchinson.")

    def __post_init__(self) -> None:
        check(self)
        if self.method == "hutch++" and self.probes < 3:
            raise ConfigError("trace_probes must be at least 3 for hutch++")

    def numerics_items(self) -> dict:
        """The options that change this trace's numbers: ``trace_min_probes`` only where a stopping rule reads it."""
        items = {"trace_method": self.method, "trace_probes": self.probes, "trace_tol": self.tol,
                 "trace_min_probes": self.min_probes, "trace_deflation": self.deflation}
        if self.method != "hutchinson" or self.tol is None:
            items.pop("trace_min_probes")
        return items


def _stderr(samples: Tensor) -> float:
    if samples.numel() < 2:
        return float("nan")
    return float(samples.std(unbiased=True) / math.sqrt(samples.numel()))


def hutchinson_trace(
    A: Union[LinearOperator, Tensor],
    *,
    n_probes: int = 100,
    tol: Optional[float] = None,
    min_probes: int = 1,
    batch_size: int = 1,
    seed: int = 0,
    blocks: Optional[Mapping[str, slice]] = None,
    deflate: Optional[Deflation] = None,
) -> TraceResult:
    """Hutchinson's trace estimate from up to ``n_probes`` Rademacher probes.

    Args:
        n_probes: number of probes (PyHessian's ``maxIter``).
        tol: PyHessian's stopping rule: stop after the first probe at which the running mean changed by less
            than ``tol`` relative (``|mean − previous| / (|previous| + 1e-6) < tol``). ``None``: use all probes.
        min_probes: the rule stops no sooner than this many probes. ``1`` is PyHessian's rule exactly; it can stop
            after two probes whose values happen to agree, and a standard error from so few probes (and chosen
            by their agreement) is far too small: ``extract`` uses 10.
        batch_size: probes applied at once through ``A.matmat`` (``vmap`` where the operator supports it).
        seed: probes are drawn from a CPU generator with this seed (same numbers on every device).
        blocks: name → slice of coordinates; each block's trace is estimated from the same probes.
        deflate: count ``deflate.trace`` exactly and probe only the complement of ``deflate.basis`` (the stopping
            rule watches the whole estimate); not with ``blocks``.

    Example:
        >>> import torch
        >>> from prunehess.estimators import hutchinson_trace
        >>> res = hutchinson_trace(torch.diag(torch.tensor([1.0, 2.0, 3.0])), n_probes=10)
        >>> res.estimate  # Rademacher probes are exact on diagonal matrices
        6.0
    """
    op = as_operator(A)
    if min_probes < 1:
        raise ValueError(f"min_probes must be at least 1, got {min_probes}")
    if deflate is not None and blocks:
        raise ValueError("per-block traces need plain probes: pass blocks or deflate, not both")
    if deflate is not None and deflate.seed is not None and int(deflate.seed) == int(seed):
        raise ValueError(f"seed {seed} drew the deflation basis's start vector: probes from it would not be "
                         "independent of the basis (a biased trace); use another seed")
    generator = make_generator(seed)
    exact = deflate.trace if deflate is not None else 0.0
    samples: list[Tensor] = []
    block_samples: dict[str, list[Tensor]] = {name: [] for name in (blocks or {})}
    n_hvp, total, previous = 0, 0.0, None
    stop = False
    while len(samples) < n_probes and not stop:
        b = min(batch_size, n_probes - len(samples))
        Z = rademacher((op.size, b), generator=generator, dtype=op.dtype, device=op.device)
        if deflate is not None:
            Z = deflate.project_out(Z)
        AZ = op.matmat(Z) if b > 1 else op.matvec(Z[:, 0]).unsqueeze(1)
        n_hvp += b
        products = AZ.mul_(Z) if op.fresh_products and AZ.is_contiguous() else Z * AZ  # z ⊙ Az
        for j in range(b):
            samples.append(products[:, j].sum().double().cpu())
            for name, sl in (blocks or {}).items():
                block_samples[name].append(products[sl, j].sum().double().cpu())
            total += float(samples[-1])
            mean = exact + total / len(samples)
            if (tol is not None and previous is not None and len(samples) >= min_probes
                    and abs(mean - previous) / (abs(previous) + 1e-6) < tol):
                stop = True
                break
            previous = mean
    values = torch.stack(samples)
    block_results = {}
    for name, vals in block_samples.items():
        bv = torch.stack(vals[: len(samples)])
        block_results[name] = TraceResult(float(bv.mean()), _stderr(bv), 0, bv, "hutchinson")
    method = "hutchinson" if deflate is None else "hutchinson-deflated"
    return TraceResult(exact + float(values.mean()), _stderr(values), n_hvp, values, method, block_results)


def hutchpp_trace(
    A: Union[LinearOperator, Tensor],
    *,
    n_hvp: int = 99,
    batch_size: int = 1,
    seed: int = 0,
) -> TraceResult:
    """Hutch++ trace estimate with a budget of ``n_hvp`` products (a third sketch, a third exact, a third probes).

    Example:
        >>> import torch
        >>> from prunehess.estimators import hutchpp_trace
        >>> A = torch.diag(torch.tensor([100.0, 10.0, 1.0, 1.0], dtype=torch.float64))
        >>> round(hutchpp_trace(A, n_hvp=12).estimate, 6)  # a 4-column sketch spans the whole space: exact
        112.0
    """
    op = as_operator(A)
    if n_hvp < 3:
        raise ValueError(f"Hutch++ needs at least 3 products, got n_hvp={n_hvp}")
    generator = make_generator(seed)
    s = min(n_hvp // 3, op.size)
    g = n_hvp - 2 * s

    def apply(V: Tensor) -> Tensor:
        cols = [V[:, i : i + batch_size] for i in range(0, V.shape[1], batch_size)]
        return torch.cat([op.matmat(c) if c.shape[1] > 1 else op.matvec(c[:, 0]).unsqueeze(1) for c in cols], dim=1)

    S = rademacher((op.size, s), generator=generator, dtype=op.dtype, device=op.device)
    Q, _ = torch.linalg.qr(apply(S))
    exact = float(torch.einsum("ij,ij->", Q.double(), apply(Q).double()))
    used = 2 * s
    residual = torch.zeros(0, dtype=torch.float64)
    if g > 0 and s < op.size:
        G = rademacher((op.size, g), generator=generator, dtype=op.dtype, device=op.device)
        G = G - Q @ (Q.T @ G)
        residual = (G * apply(G)).sum(dim=0).double().cpu()
        used += g
    estimate = exact + (float(residual.mean()) if residual.numel() else 0.0)
    stderr = _stderr(residual) if residual.numel() else 0.0
    return TraceResult(estimate, stderr, used, residual, "hutch++")
