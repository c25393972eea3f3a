"""Test helpers: a self-explaining closeness assertion, and exact references built without the engine.

``autograd_hessian`` computes the dense Hessian row by row with plain double backward on the model's real
parameters, over one big batch: it shares no code with ``prunehess`` (no ``ParameterSpace``, no
``functional_call``, no mini-batch weights), so the engine is checked against an independent computation.
"""
from __future__ import annotations

from typing import Callable, Mapping, Optional, Sequence

import torch
from torch import Tensor, nn


def _fmt(x: float) -> str:
    return f"{x: .6e}"


def assert_close(actual: Tensor, expected: Tensor, *, rtol: float, atol: float, name: str = "", worst: int = 5) -> None:
    """``|actual − expected| ≤ atol + rtol·|expected|`` elementwise; on failure, print the worst entries.

    The message gives the shapes, the tolerances, the largest absolute and relative errors, and the ``worst``
    entries by ``error / allowed`` ratio with their indices, values and ratios.
    """
    __tracebackhide__ = True
    actual = torch.as_tensor(actual)
    expected = torch.as_tensor(expected)
    label = f"{name}: " if name else ""
    if actual.shape != expected.shape:
        raise AssertionError(f"{label}shape {tuple(actual.shape)} != expected {tuple(expected.shape)}")
    a = actual.detach().double().cpu()
    e = expected.detach().double().cpu()
    if not torch.isfinite(a).all():
        bad = torch.nonzero(~torch.isfinite(a))[:worst].tolist()
        raise AssertionError(f"{label}non-finite entries in actual at {bad}")
    err = (a - e).abs()
    allowed = atol + rtol * e.abs()
    ratio = err / allowed.clamp_min(1e-300)
    if bool((err <= allowed).all()):
        return
    flat_ratio = ratio.reshape(-1)
    order = torch.argsort(flat_ratio, descending=True)[:worst]
    n_bad = int((err > allowed).sum())
    lines = [
        f"{label}{n_bad} of {err.numel()} entries out of tolerance (rtol={rtol:g}, atol={atol:g}); "
        f"shape {tuple(a.shape)}; max |err| = {float(err.max()):.3e}, "
        f"max |err|/|expected| = {float((err / e.abs().clamp_min(1e-300)).max()):.3e}, "
        f"max |expected| = {float(e.abs().max()):.3e}",
        "  worst entries: index, actual, expected, |err|, allowed, |err|/allowed",
    ]
    for flat in order.tolist():
        idx = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), a.shape)) if a.dim() else ()
        lines.append(
            f"  {idx}: {_fmt(float(a.reshape(-1)[flat]))} {_fmt(float(e.reshape(-1)[flat]))} "
            f"{float(err.reshape(-1)[flat]):.3e} {float(allowed.reshape(-1)[flat]):.3e} {float(flat_ratio[flat]):.3g}"
        )
    raise AssertionError("\n".join(lines))


def assert_scalar_close(actual: float, expected: float, *, rtol: float, atol: float = 0.0, name: str = "") -> None:
    """Scalar form of :func:`assert_close`."""
    __tracebackhide__ = True
    assert_close(torch.tensor(float(actual)), torch.tensor(float(expected)), rtol=rtol, atol=atol, name=name)


def within_stderr(estimate: float, truth: float, stderr: float, *, n_sigma: float = 3.0, name: str = "") -> None:
    """``|estimate − truth| ≤ n_sigma · stderr``, with a message giving the z-score."""
    __tracebackhide__ = True
    assert stderr == stderr and stderr >= 0, f"{name}: stderr must be a non-negative number, got {stderr}"
    z = abs(estimate - truth) / stderr if stderr > 0 else (0.0 if estimate == truth else float("inf"))
    assert z <= n_sigma, (
        f"{name}: estimate {estimate:.6g} vs truth {truth:.6g}: |diff| = {abs(estimate - truth):.3e} is "
        f"{z:.2f} standard errors (stderr {stderr:.3e}; allowed {n_sigma})"
    )


def overlaps(U: Tensor, V: Tensor) -> Tensor:
    """``|⟨u_i, v_i⟩|`` for matching unit columns."""
    U = U / U.norm(dim=0, keepdim=True)
    V = V / V.norm(dim=0, keepdim=True)
    return (U * V).sum(dim=0).abs()


def autograd_hessian(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    names: Optional[Sequence[str]] = None,
) -> Tensor:
    """Dense Hessian of ``loss_fn(model(x), y)`` over the full tensors of ``names`` (default: every parameter),
    row by row by double backward, in eval mode (each submodule's training flag restored)."""
    named = dict(model.named_parameters())
    names = list(names) if names is not None else list(named)
    params = [named[n] for n in names]
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.enable_grad():
            loss = loss_fn(model(x), y)
            grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
            grads = [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]
            g = torch.cat([gi.reshape(-1) for gi in grads])
            rows = []
            for i in range(g.numel()):
                if not g[i].requires_grad:
                    rows.append(torch.zeros_like(g))
                    continue
                row = torch.autograd.grad(g[i], params, retain_graph=True, allow_unused=True)
                rows.append(torch.cat([(torch.zeros_like(p) if r is None else r).reshape(-1) for r, p in zip(row, params)]))
    finally:
        for module, flag in flags:
            module.training = flag
    return torch.stack(rows).detach()


def coordinate_index(
    shapes: Mapping[str, torch.Size],
    names: Sequence[str],
    masks: Optional[Mapping[str, Tensor]] = None,
) -> Tensor:
    """Positions, in the flat vector over all of ``shapes`` (in its order, full tensors), of the coordinates of
    ``names`` (in the order given) that survive ``masks`` (row-major within each tensor)."""
    offsets, start = {}, 0
    for n, s in shapes.items():
        offsets[n] = start
        start += torch.Size(s).numel()
    parts = []
    for n in names:
        size = torch.Size(shapes[n]).numel()
        local = torch.arange(size)
        if masks is not None and n in masks:
            local = local[masks[n].reshape(-1).bool()]
        parts.append(local + offsets[n])
    return torch.cat(parts)


def restrict(H: Tensor, index: Tensor) -> Tensor:
    """``H[index][:, index]``: the Hessian restricted to some coordinates (index selection only)."""
    return H.index_select(0, index).index_select(1, index)


def random_symmetric(n: int, eigenvalues: Tensor, seed: int) -> tuple[Tensor, Tensor]:
    """``Q Λ Qᵀ`` with a random orthogonal ``Q`` (float64), and ``Q``."""
    g = torch.Generator().manual_seed(seed)
    Q, R = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    Q = Q * torch.sign(torch.diagonal(R)).unsqueeze(0)
    lam = eigenvalues.to(torch.float64)
    A = (Q * lam.unsqueeze(0)) @ Q.T
    return (A + A.T) / 2, Q


# ----- an operator's products against a dense matrix ------------------------------------------------------------
def columns(op) -> Tensor:
    """The matrix of ``op`` by single products ``op.matvec(e_i)`` (exercises ``strategy``, not the batched path)."""
    eye = torch.eye(op.size, dtype=op.dtype)
    return torch.stack([op.matvec(eye[:, i]) for i in range(op.size)], dim=1)


def probes(n: int, k: int = 3, seed: int = 11) -> Tensor:
    """``k`` Gaussian vectors of size ``n`` (float64, seeded)."""
    return torch.randn(n, k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def check_products(op, expected: Tensor, name: str, k: int = 3, *, rtol: float = 1e-9, atol: float = 1e-12) -> None:
    """Random single and batched products against ``expected`` (cheaper than a full dense build)."""
    V = probes(op.size, k)
    assert_close(op.matmat(V), expected @ V, rtol=rtol, atol=atol, name=f"{name} matmat")
    assert_close(op.matvec(V[:, 0]), expected @ V[:, 0], rtol=rtol, atol=atol, name=f"{name} matvec")
