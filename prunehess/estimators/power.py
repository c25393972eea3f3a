"""Power iteration with deflation, with PyHessian's semantics (for comparison with its numbers).

For each of the ``k`` wanted eigenvalues: start from a Gaussian vector, and repeat ``v ← A v / ‖A v‖``
(``v`` kept orthogonal to the eigenvectors already found) until the Rayleigh quotient changes by less than
``tol`` relative (``|λ_new − λ_old| / (|λ_old| + 1e-6) < tol``) or ``max_iter`` products were used. It
converges to the eigenvalue largest in magnitude, at a rate set by the gap ``|λ₂ / λ₁|``; Lanczos
(:func:`prunehess.estimators.lanczos_top_eigen`) reaches the same accuracy with far fewer products.
"""
from __future__ import annotations

from typing import Union

import torch
from torch import Tensor

from prunehess.estimators.results import EigenResult
from prunehess.estimators.sampling import gaussian, make_generator
from prunehess.operators.base import LinearOperator, as_operator

__all__ = ["power_iteration"]


def power_iteration(
    A: Union[LinearOperator, Tensor],
    *,
    k: int = 1,
    max_iter: int = 100,
    tol: float = 1e-3,
    seed: int = 0,
    return_eigenvectors: bool = False,
) -> EigenResult:
    """Top-``k`` eigenpairs (by magnitude) by deflated power iteration, as PyHessian computes them.

    Example:
        >>> import torch
        >>> from prunehess.estimators import power_iteration
        >>> res = power_iteration(torch.diag(torch.tensor([5.0, 1.0, 0.5], dtype=torch.float64)), tol=1e-8)
        >>> round(float(res.eigenvalues[0]), 4)
        5.0
    """
    op = as_operator(A)
    if not 1 <= k <= op.size:
        raise ValueError(f"k must be between 1 and the operator size {op.size}, got {k}")
    generator = make_generator(seed)
    values, vectors, residuals = [], [], []
    n_hvp, n_iter, all_converged = 0, 0, True
    for _ in range(k):
        v = gaussian((op.size,), generator=generator, dtype=op.dtype, device=op.device)
        v = v / v.norm()
        eigenvalue, converged = None, False
        Av = None
        for _ in range(max_iter):
            for u in vectors:
                v = v - (u @ v) * u
            v = v / v.norm()
            Av = op.matvec(v)
            n_hvp += 1
            n_iter += 1
            estimate = float(v @ Av)
            previous, eigenvalue = eigenvalue, estimate
            v_next = Av / Av.norm()
            if previous is not None and abs(estimate - previous) / (abs(previous) + 1e-6) < tol:
                converged = True
                break
            v = v_next
        residuals.append(float((Av - eigenvalue * v).norm()))
        values.append(eigenvalue)
        vectors.append(v)
        all_converged &= converged
    return EigenResult(
        eigenvalues=torch.tensor(values, dtype=torch.float64),
        eigenvectors=torch.stack(vectors, dim=1) if return_eigenvectors else None,
        residuals=torch.tensor(residuals, dtype=torch.float64),
        n_hvp=n_hvp,
        n_iter=n_iter,
        converged=all_converged,
        method="power",
    )
