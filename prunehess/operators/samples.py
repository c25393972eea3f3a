"""Per-sample quantities by ``torch.func``: loss gradients (empirical Fisher) and the exact Gauss–Newton diagonal.

Both ``vmap`` a function of one sample over a chunk of samples, evaluating the model on a batch of one through
``functional_call`` (in eval mode, so BatchNorm uses its running statistics and samples do not interact). They
assume ``loss_fn`` of a mini-batch is the mean of its per-sample values (mean reduction).

- :func:`sample_gradients`: ``g_i = ∇_θ ℓ(f(x_i; θ), y_i)`` for each sample, as rows of an ``n × d`` matrix over the
  flat (surviving) coordinates: ``vmap(grad(ℓ))`` (Kunstner, Hennig & Balles, NeurIPS 2019, for what the empirical
  Fisher ``(1/N) Σ g_i g_iᵀ`` is and is not).
- :func:`ggn_diagonal`: ``diag(G) = (1/N) Σ_i Σ_r s_ir ((M_i J_i)_r)²`` with ``Λ_i = M_iᵀ diag(s_i) M_i`` the
  factored loss Hessian on sample ``i``'s outputs (:func:`~prunehess.operators.outputs.sample_factors`) and
  ``J_i`` its Jacobian: each row ``(M_i J_i)_r = J_iᵀ m_r`` is one vector–Jacobian product, so a sample costs
  ``R`` (the number of classes) backward passes, batched by ``vmap``, and no Hessian-vector product (the
  "square-root" form of BackPACK's DiagGGN: Dangel, Kunstner & Hennig, ICLR 2020). Exact up to rounding; with
  cross-entropy every term is a square (no cancellation).

Example:
    >>> import torch
    >>> from prunehess.operators import GGNOperator
    >>> from prunehess.operators.samples import ggn_diagonal, sample_gradients
    >>> x, y = torch.randn(5, 3, dtype=torch.float64), torch.randint(0, 2, (5,))
    >>> G = GGNOperator(torch.nn.Linear(3, 2).double(), [(x, y)])
    >>> bool(torch.allclose(ggn_diagonal(G.problem, G.space), torch.diagonal(G.to_dense())))
    True
    >>> rows = sample_gradients(G.problem, G.space, x, y)  # one row per sample
    >>> tuple(rows.shape), bool(torch.allclose(rows.mean(0), G.gradient()))
    ((5, 8), True)
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.func import functional_call, grad, vjp, vmap

from prunehess.operators.curvature import functional_parts
from prunehess.operators.hvp import HVPProblem, eval_mode
from prunehess.operators.outputs import check_mean_of_samples, loss_kind, sample_factors
from prunehess.operators.params import ParameterSpace

__all__ = ["sample_gradients", "ggn_diagonal", "check_loss"]


def check_loss(problem: HVPProblem) -> None:
    """Raise ``ValueError`` unless the loss of the first mini-batch is the mean of its per-sample losses (one
    forward pass; the closed-form losses are by construction)."""
    x, y = problem.minibatches[0]
    with eval_mode(problem.model), torch.no_grad():
        z = problem.forward(x)
    if loss_kind(problem.loss_fn, z, y) == "generic":
        check_mean_of_samples(problem.loss_fn, z, y)


def sample_gradients(problem: HVPProblem, space: ParameterSpace, x: Tensor, y: Tensor) -> Tensor:
    """``(n, d)``: the loss gradient of each sample of ``(x, y)`` on the flat coordinates of ``space``."""
    model, loss_fn = problem.model, problem.loss_fn
    primals, fixed = functional_parts(model, space.names)

    def loss_one(p: dict[str, Tensor], xi: Tensor, yi: Tensor) -> Tensor:
        return loss_fn(functional_call(model, {**fixed, **p}, (xi.unsqueeze(0),)), yi.unsqueeze(0))

    with eval_mode(model):
        per_sample = vmap(grad(loss_one), in_dims=(None, 0, 0))(primals, x, y)
    return space.to_flat(per_sample)


def ggn_diagonal(problem: HVPProblem, space: ParameterSpace, *, max_bytes: int = 2**28) -> Tensor:
    """The exact diagonal of the generalised Gauss–Newton matrix on the flat coordinates of ``space`` (this
    process's share: not reduced). Samples go through ``vmap`` in groups whose rows ``(M_i J_i)`` take at most
    ``max_bytes`` (at least one sample)."""
    model = problem.model
    primals, fixed = functional_parts(model, space.names)
    first = next(iter(primals.values()))
    diag = torch.zeros(space.dim, dtype=first.dtype, device=first.device)

    def rows_of(p: dict[str, Tensor], xi: Tensor, Mi: Tensor) -> dict[str, Tensor]:
        _, pullback = vjp(lambda q: functional_call(model, {**fixed, **q}, (xi.unsqueeze(0),)).reshape(-1), p)
        return vmap(lambda m: pullback(m)[0])(Mi)

    check_loss(problem)
    with eval_mode(model):
        for x, y in problem.batches:
            with torch.no_grad():
                z = problem.forward(x)
            M, signs = sample_factors(problem.loss_fn, z, y)
            group = max(1, int(max_bytes) // max(1, M.shape[1] * space.dim * first.element_size()))
            for s in range(0, x.shape[0], group):
                rows = space.to_flat(vmap(rows_of, in_dims=(None, 0, 0))(primals, x[s : s + group], M[s : s + group]))
                diag += torch.einsum("br,brd->d", signs[s : s + group].to(rows.dtype), rows.square_())
    return diag / problem.total_samples
