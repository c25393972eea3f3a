"""Lanczos tridiagonalisation with full reorthogonalisation, and top-k eigenpairs from it.

For a symmetric ``A`` and a unit start vector ``q₀``, ``m`` Lanczos steps build an orthonormal basis
``Q = [q₀ … q_{m−1}]`` of the Krylov space and the tridiagonal ``T = Qᵀ A Q`` (diagonal ``α``, off-diagonal
``β``). The Ritz values (eigenvalues of ``T``) approximate the extreme eigenvalues of ``A`` after far fewer
products than power iteration needs, and the Ritz pair ``(θ, Q s)`` has residual ``‖A Q s − θ Q s‖ = β_m |s_m|``
(Golub & Van Loan, *Matrix Computations*, §10.1). Every new vector is orthogonalised twice against the whole
basis (classical Gram–Schmidt, repeated when needed: "twice is enough"), so no spurious copies of converged eigenvalues appear.

Several independent runs advance in lockstep, so one batched product ``A @ [v₁ … v_r]`` serves them all
(this is how stochastic Lanczos quadrature uses ``vmap``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Optional, Union

import torch
from torch import Tensor

from prunehess.estimators.results import EigenResult
from prunehess.estimators.sampling import gaussian, make_generator
from prunehess.operators.base import LinearOperator, as_operator
from prunehess.options import check, option

__all__ = ["EigenOptions", "BottomEigenOptions", "Tridiagonal", "lanczos_tridiagonal", "lanczos_top_eigen",
           "lanczos_bottom_eigen", "tridiagonal_matrix", "converged_pairs"]

EIGEN_METHODS = ("lanczos", "power")


@dataclass(frozen=True)
class EigenOptions:
    """How the top eigenvalues are computed: Lanczos (this module; read from the density's Lanczos run when its
    Ritz values meet ``tol``) or PyHessian's power iteration (:mod:`~prunehess.estimators.power`)."""

    k: int = option(1, key="top_n", aliases=("--top_n",), minimum=1, help="How many top eigenvalues.")
    method: str = option("lanczos", choices=EIGEN_METHODS,
                         help="Top eigenvalues by Lanczos (read from the density's Lanczos run when converged), or by "
                              "PyHessian's power iteration.")
    tol: float = option(1e-3, positive=True,
                        help="Eigenvalue tolerance: Lanczos residual ≤ tol·|λ|; power: relative change < tol "
                             "(PyHessian).")
    max_iter: int = option(100, minimum=1, help="Most Lanczos steps / power iterations.")
    vectors: bool = option(False, key="save_eigenvectors",
                           help="Also save the top eigenvectors (eigenvectors/*.npz: one array per parameter, 0 on "
                                "pruned weights): the density run's Ritz vectors when converged, no extra products.")

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class BottomEigenOptions:
    """How the smallest eigenvalues (negative curvature) are computed: read from the density's Lanczos run when its
    smallest Ritz values meet ``tol`` relative to the spectrum's scale (``max |θ|``), else
    :func:`lanczos_bottom_eigen`."""

    k: int = option(1, key="bottom_n", minimum=0,
                    help="How many smallest eigenvalues (negative curvature: saddles); 0 computes none.")
    tol: float = option(1e-3, key="bottom_tol", positive=True,
                        help="Tolerance of the smallest eigenvalues: Lanczos residual ≤ tol·max|λ| (relative to the "
                             "spectrum's scale, since they may be near zero).")
    max_iter: int = option(200, key="bottom_max_iter", minimum=1,
                           help="Most Lanczos steps for the smallest eigenvalues when the density's run did not "
                                "converge them.")

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class Tridiagonal:
    """The result of Lanczos runs: per run ``α`` (length ``m_r``) and ``β`` (length ``m_r``; ``β[-1]`` is the
    residual coupling), the basis (``(m_r, n)`` per run, or ``None``) and the products used."""

    alphas: list[Tensor]
    betas: list[Tensor]
    bases: Optional[list[Tensor]]
    n_hvp: int


def tridiagonal_matrix(alpha: Tensor, beta: Tensor) -> Tensor:
    """The symmetric ``m × m`` tridiagonal matrix from ``α`` (``m``) and the first ``m − 1`` entries of ``β``."""
    m = alpha.shape[0]
    T = torch.diag(alpha)
    if m > 1:
        off = beta[: m - 1]
        T = T + torch.diag(off, 1) + torch.diag(off, -1)
    return T


def _orthogonalise(W: Tensor, Q: Tensor) -> tuple[Tensor, Tensor]:
    """Remove from each row of ``W`` (``r × n``, in place) its components along the rows of ``Q`` (``r × j × n``).

    Classical Gram–Schmidt, repeated once where the first pass cancelled much of the vector
    (‖w_after‖ < 0.7 ‖w_before‖, the Daniel–Gragg–Kaufman–Stewart criterion), which is when roundoff could leave
    it short of orthogonal. Returns ``W`` and its new norms.

    Each pass reads the basis twice (the overlaps, then the update) and nothing else of its size: on a CPU this
    is most of a long run's time besides the products, so the passes are matrix–vector products into ``W``'s own
    storage, without temporaries.
    """
    before = W.norm(dim=1)
    for _ in range(2):
        if W.shape[0] == 1:  # one run: BLAS matrix-vector products
            w = W[0]
            w.addmv_(Q[0].T, torch.mv(Q[0], w), alpha=-1.0)
        else:
            W.unsqueeze(2).baddbmm_(Q.transpose(1, 2), torch.bmm(Q, W.unsqueeze(2)), alpha=-1.0)
        after = W.norm(dim=1)
        if bool((after >= 0.7 * before).all()):
            break
        before = after
    return W, after


def lanczos_tridiagonal(
    A: Union[LinearOperator, Tensor],
    start: Tensor,
    n_steps: int,
    *,
    restart_generator: Optional[torch.Generator] = None,
    keep_basis: bool = True,
    breakdown_tol: Optional[float] = None,
    should_stop: Optional[Callable[[Tensor, Tensor], bool]] = None,
) -> Tridiagonal:
    """Run ``n_steps`` Lanczos steps from each column of ``start`` (``(n,)`` or ``(n, r)``) in lockstep.

    A run whose ``β`` falls below ``breakdown_tol · ‖T‖`` has found an invariant subspace: it stops there
    (its quadrature is then exact), or, when ``restart_generator`` is given, continues with a fresh random
    vector orthogonal to its basis and ``β = 0`` (so eigenvalues of any multiplicity are found).
    ``should_stop(alpha, beta)`` (single run only) is asked after every step.
    """
    op = as_operator(A)
    V = start.unsqueeze(1) if start.dim() == 1 else start
    n, r = V.shape
    n_steps = min(int(n_steps), n)
    if breakdown_tol is None:
        breakdown_tol = 100 * torch.finfo(op.dtype).eps
    Q = torch.empty(r, n_steps + 1, n, dtype=op.dtype, device=op.device)  # rows are written before they are read
    Q[:, 0] = (V / V.norm(dim=0, keepdim=True)).T
    alphas = torch.zeros(r, n_steps, dtype=torch.float64)
    betas = torch.zeros(r, n_steps, dtype=torch.float64)
    lengths = torch.zeros(r, dtype=torch.long)
    active = torch.ones(r, dtype=torch.bool)
    scale = torch.zeros(r, dtype=torch.float64)
    n_hvp = 0
    for j in range(n_steps):
        idx = torch.nonzero(active).reshape(-1)
        if idx.numel() == 0:
            break
        # all runs active (the usual case): views of Q, no copies of the basis
        rows = slice(None) if idx.numel() == r else idx.to(op.device)
        q = Q[rows, j]
        W = op.matmat(q.T.contiguous()).T if idx.numel() > 1 else op.matvec(q[0]).unsqueeze(0)
        if not (op.fresh_products and W.is_contiguous()):  # worked on in place below: the run must own it
            W = W.clone(memory_format=torch.contiguous_format)
        n_hvp += idx.numel()
        a = torch.linalg.vecdot(q, W)
        W.addcmul_(a.unsqueeze(1), q, value=-1.0)
        if j > 0:
            W.addcmul_(betas[idx, j - 1].to(W).unsqueeze(1), Q[rows, j - 1], value=-1.0)
        W, b = _orthogonalise(W, Q[rows, : j + 1])
        alphas[idx, j] = a.double().cpu()
        lengths[idx] = j + 1
        scale[idx] = torch.maximum(scale[idx], a.double().abs().cpu() + b.double().cpu())
        for pos, run in enumerate(idx.tolist()):
            if float(b[pos]) > breakdown_tol * float(scale[run]) and j + 1 < n:
                betas[run, j] = float(b[pos])
                torch.div(W[pos], b[pos], out=Q[run, j + 1])
            elif restart_generator is not None and j + 1 < n:
                w = gaussian((n,), generator=restart_generator, dtype=op.dtype, device=op.device)
                w, norm = _orthogonalise(w.unsqueeze(0), Q[run : run + 1, : j + 1])
                betas[run, j] = 0.0
                torch.div(w[0], norm[0], out=Q[run, j + 1])
            else:
                betas[run, j] = float(b[pos])
                active[run] = False
        if should_stop is not None and should_stop(alphas[0, : j + 1], betas[0, : j + 1]):
            break
    m = lengths.tolist()
    return Tridiagonal(
        alphas=[alphas[i, : m[i]] for i in range(r)],
        betas=[betas[i, : m[i]] for i in range(r)],
        bases=[Q[i, : m[i]] for i in range(r)] if keep_basis else None,
        n_hvp=n_hvp,
    )


def _ritz(alpha: Tensor, beta: Tensor, k: int, which: str) -> tuple[Tensor, Tensor, Tensor]:
    """The ``k`` wanted Ritz values (largest ``LA``, largest in magnitude ``LM``, smallest ``SA``, in that order),
    their ``T`` eigenvectors and residual bounds ``|β_m s_m|``."""
    theta, S = torch.linalg.eigh(tridiagonal_matrix(alpha, beta))
    key = theta.abs() if which == "LM" else (-theta if which == "SA" else theta)
    order = torch.argsort(key, descending=True)[:k]
    return theta[order], S[:, order], (beta[-1] * S[-1, order]).abs()


def converged_pairs(theta: Tensor, residuals: Tensor, tol: float, *, scale: Optional[float] = None,
                    eps: float = torch.finfo(torch.float32).eps) -> bool:
    """Whether every Ritz pair meets ``residual ≤ tol · |θ|`` (``scale=None``: relative to each value, the top
    eigenvalues' criterion) or ``residual ≤ tol · scale`` (relative to the spectrum's scale, e.g. ``max |θ|``: the
    criterion for eigenvalues near zero, such as a pruned network's smallest). Values below ``eps`` times the
    largest count as that floor."""
    floor = eps * float(theta.abs().max())
    if scale is not None:
        return bool((residuals <= tol * max(float(scale), floor)).all())
    return bool((residuals <= tol * torch.clamp(theta.abs(), min=floor)).all())


def lanczos_top_eigen(
    A: Union[LinearOperator, Tensor],
    *,
    k: int = 1,
    which: Literal["LA", "LM", "SA"] = "LA",
    tol: float = 1e-4,
    max_iter: Optional[int] = None,
    seed: int = 0,
    return_eigenvectors: bool = False,
) -> EigenResult:
    """The ``k`` largest eigenvalues (``which="LA"``), largest in magnitude (``"LM"``, power iteration's) or
    smallest (``"SA"``, with the criterion relative to the spectrum's scale: see :func:`lanczos_bottom_eigen`) of
    ``A``.

    Single-vector Lanczos sees one copy of each eigenvalue in its Krylov space; further copies of an exactly
    repeated eigenvalue are found when the space becomes invariant and the run restarts, not while it is still
    growing through the rest of the spectrum. Hessians rarely have exact multiplicities; where they do, power
    iteration with deflation (``method="power"``) lists each copy.

    Stops when every wanted Ritz pair has residual ``≤ tol · |θ|`` (the eigenvalue error is then at most
    ``tol · |θ|``, and typically of order ``(tol · |θ|)² / gap``), or after ``max_iter`` steps
    (default ``min(n, max(100, 10 k))``).

    Example:
        >>> import torch
        >>> from prunehess.estimators import lanczos_top_eigen
        >>> res = lanczos_top_eigen(torch.diag(torch.arange(1.0, 101.0, dtype=torch.float64)), k=2)
        >>> [round(x, 4) for x in res.eigenvalues.tolist()]
        [100.0, 99.0]
    """
    op = as_operator(A)
    if not 1 <= k <= op.size:
        raise ValueError(f"k must be between 1 and the operator size {op.size}, got {k}")
    if which not in ("LA", "LM", "SA"):
        raise ValueError(f"which must be 'LA', 'LM' or 'SA', got {which!r}")
    max_iter = min(op.size, max_iter if max_iter is not None else max(100, 10 * k))
    generator = make_generator(seed)
    start = gaussian((op.size,), generator=generator, dtype=op.dtype, device=op.device)

    def converged(alpha: Tensor, beta: Tensor) -> bool:
        if alpha.shape[0] < k or (beta[-1] == 0 and alpha.shape[0] < op.size):
            return False  # just restarted after an invariant subspace: let the new block grow first
        theta, _, res = _ritz(alpha, beta, k, which)
        floor = torch.finfo(op.dtype).eps * float(theta.abs().max())
        scale = _spectrum_scale(alpha, beta) if which == "SA" else None
        if not converged_pairs(theta, res, tol, scale=scale, eps=torch.finfo(op.dtype).eps):
            return False
        restarts = torch.nonzero(beta[:-1] == 0).reshape(-1)
        if restarts.numel():
            # pairs of earlier (invariant) blocks have zero residuals; the block since the last restart must
            # also have converged its top pair, or a further copy of a repeated eigenvalue may be missed
            start = int(restarts[-1]) + 1
            theta_new, _, res_new = _ritz(alpha[start:], beta[start:], 1, which)
            reference = _spectrum_scale(alpha, beta) if which == "SA" else float(theta_new.abs()[0])
            return bool(res_new[0] <= tol * max(reference, floor))
        return True

    tri = lanczos_tridiagonal(
        op, start, max_iter, restart_generator=generator, keep_basis=return_eigenvectors, should_stop=converged
    )
    alpha, beta = tri.alphas[0], tri.betas[0]
    theta, S, res = _ritz(alpha, beta, k, which)
    exhausted = alpha.shape[0] >= op.size
    ok = exhausted or converged(alpha, beta)
    vectors = None
    if return_eigenvectors:
        vectors = tri.bases[0].T @ S.to(op.dtype)
        vectors = vectors / vectors.norm(dim=0, keepdim=True)
    return EigenResult(
        eigenvalues=theta,
        eigenvectors=vectors,
        residuals=torch.zeros_like(res) if exhausted else res,
        n_hvp=tri.n_hvp,
        n_iter=int(alpha.shape[0]),
        converged=bool(ok),
        method="lanczos",
    )


def _spectrum_scale(alpha: Tensor, beta: Tensor) -> float:
    """``max |θ|`` over the run's Ritz values: an estimate of ``‖A‖₂`` from below."""
    return float(torch.linalg.eigvalsh(tridiagonal_matrix(alpha, beta)).abs().max())


def lanczos_bottom_eigen(
    A: Union[LinearOperator, Tensor],
    *,
    k: int = 1,
    tol: float = 1e-4,
    max_iter: Optional[int] = None,
    seed: int = 0,
    return_eigenvectors: bool = False,
) -> EigenResult:
    """The ``k`` smallest (most negative) eigenvalues of ``A``, smallest first.

    Lanczos from a Gaussian start vector, as :func:`lanczos_top_eigen`, watching the other end of the spectrum:
    negative curvature directions of a Hessian (saddles, Dauphin et al., NeurIPS 2014). The smallest eigenvalues
    of a trained network's Hessian sit near zero, where ``tol · |θ|`` would ask for an absolute accuracy far below
    the products' rounding; so a pair has converged when its residual is ``≤ tol · max |θ|`` (the spectrum's
    scale, an estimate of ``‖A‖₂``): the eigenvalue is then within ``tol · ‖A‖₂`` of an exact one.

    Example:
        >>> import torch
        >>> A = torch.diag(torch.linspace(-2.0, 10.0, 50, dtype=torch.float64))
        >>> [round(x, 4) for x in lanczos_bottom_eigen(A, k=2, tol=1e-8).eigenvalues.tolist()]
        [-2.0, -1.7551]
    """
    return lanczos_top_eigen(A, k=k, which="SA", tol=tol, max_iter=max_iter, seed=seed,
                             return_eigenvectors=return_eigenvectors)
