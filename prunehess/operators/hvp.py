"""Hessian-vector product strategies, each a small closure ``v -> H v`` over named tensors.

All strategies compute the Hessian of the mean loss over the Hessian batch,
``L(θ) = Σ_b (n_b / N) · loss_fn(f(x_b; θ), y_b)`` (``loss_fn`` returns the mean over its mini-batch),
with respect to the selected parameters, everything else held fixed. Vectors are ``dict[str, Tensor]`` keyed
by parameter name; the batched forms take a leading dimension ``k`` (``k`` vectors at once).

- ``graph``: double backward over a first-order graph built once (``create_graph=True``) and kept, so each
  product is one backward pass through the gradient graph. Fastest per product when the graph fits in memory.
- ``double_backward``: PyHessian's way: rebuild the gradient graph for every product (least memory).
- ``forward_over_reverse``: ``torch.func.jvp`` of ``torch.func.grad`` over ``functional_call``; its batched
  form is ``vmap`` over tangents.

The autograd strategies record convolutions, eval-mode BatchNorm and ReLU in forms with cheap second derivatives
(:mod:`prunehess.operators.kernels`; ``fast_second_order=False`` keeps PyTorch's own). The model is evaluated in
``eval()`` mode (BatchNorm running statistics, dropout off) and its training flags
are restored afterwards.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator, NamedTuple, Optional, Sequence

import torch
from torch import Tensor, nn

from prunehess.operators.kernels import fast_second_order

__all__ = ["HVPProblem", "HVP", "eval_mode", "make_hvp", "STRATEGIES", "BATCHED_STRATEGIES", "ReusedGradient"]

STRATEGIES = ("graph", "double_backward", "forward_over_reverse")
BATCHED_STRATEGIES = ("loop", "vmap", "graph_batched")
"""How ``k`` products at once are computed: one at a time, ``vmap`` over forward-over-reverse, or one batched
backward over the reused graph."""
TensorDict = dict[str, Tensor]


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode; restore each one's training flag afterwards."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, flag in flags:
            module.training = flag


@dataclass
class HVPProblem:
    """What a Hessian-vector product needs: the model, its loss, the Hessian batch and the parameters."""

    model: nn.Module
    loss_fn: Callable[[Tensor, Tensor], Tensor]
    batches: Sequence[tuple[Tensor, Tensor]]
    weights: Sequence[float]  # n_b / N for each mini-batch
    forward: Optional[Callable[[Tensor], Tensor]] = None  # e.g. nn.DataParallel(model); default: model
    fast_second_order: bool = True  # convolutions/BatchNorm/ReLU with cheap second derivatives (operators.kernels)
    total_samples: Optional[int] = None  # N (the global batch size under data parallelism); default: this batch's
    chunk_size: Optional[int] = None  # consecutive mini-batches processed together (None: as given)
    minibatches: Sequence[tuple[Tensor, Tensor]] = ()  # the mini-batches as given (``batches`` may merge them)

    def __post_init__(self):
        if self.forward is None:
            self.forward = self.model
        if not self.minibatches:
            self.minibatches = list(self.batches)
        if self.total_samples is None:
            self.total_samples = sum(int(y.shape[0]) for _, y in self.minibatches)

    def parameters(self, names: Sequence[str]) -> list[nn.Parameter]:
        named = dict(self.model.named_parameters())
        return [named[n] for n in names]


class HVP(NamedTuple):
    """A strategy: ``apply(v)`` for one vector and ``apply_batched(V)`` for ``k`` stacked vectors."""

    apply: Callable[[TensorDict], TensorDict]
    apply_batched: Callable[[TensorDict], TensorDict]


def _grad_or_zeros(outputs: Sequence[Tensor], inputs: Sequence[Tensor], grad_outputs: Sequence[Tensor], **kw) -> list[Tensor]:
    """``torch.autograd.grad`` that treats outputs without a graph (constant gradients) as zero curvature."""
    keep = [i for i, out in enumerate(outputs) if out.requires_grad]
    if not keep:
        return [torch.zeros_like(g) for g in grad_outputs]
    grads = torch.autograd.grad(
        [outputs[i] for i in keep], inputs, grad_outputs=[grad_outputs[i] for i in keep], allow_unused=True, **kw
    )
    out = []
    for inp, g, go in zip(inputs, grads, grad_outputs):
        if g is None:
            g = torch.zeros_like(go) if kw.get("is_grads_batched") else torch.zeros_like(inp)
        out.append(g)
    return out


class ReusedGradient:
    """The first-order gradient ``∇L`` with its graph, built once on first use and shared by blocks."""

    def __init__(self, problem: HVPProblem, names: Sequence[str]):
        self.problem = problem
        self.names = tuple(names)
        self._grads: Optional[dict[str, Tensor]] = None
        self._stream: Optional[torch.cuda.Stream] = None  # where the graph is built (None: the current stream)

    @property
    def built(self) -> bool:
        """Whether the graph is held (built since the last release)."""
        return self._grads is not None

    @property
    def stream(self) -> Optional[torch.cuda.Stream]:
        """The CUDA stream the graph is built on (``None``: the current one)."""
        return self._stream

    def build_on(self, stream: Optional[torch.cuda.Stream]) -> None:
        """Build the graph on ``stream`` from now on (products captured in CUDA graphs run their backward passes
        there); drops the current graph."""
        self.release()
        self._stream = stream

    def grads(self) -> dict[str, Tensor]:
        if self._grads is None:
            if self.stream is not None:
                self.stream.wait_stream(torch.cuda.current_stream(self.stream.device))
            on_stream = torch.cuda.stream(self.stream) if self.stream is not None else contextlib.nullcontext()
            params = self.problem.parameters(self.names)
            total: Optional[list[Tensor]] = None
            with on_stream, eval_mode(self.problem.model), torch.enable_grad(), \
                    fast_second_order(self.problem.fast_second_order):
                for (x, y), w in zip(self.problem.batches, self.problem.weights):
                    loss = self.problem.loss_fn(self.problem.forward(x), y) * w
                    g = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
                    g = [torch.zeros_like(p) if gi is None else gi for gi, p in zip(g, params)]
                    total = g if total is None else [a + b for a, b in zip(total, g)]
            self._grads = dict(zip(self.names, total))
            if self.stream is not None:
                torch.cuda.current_stream(self.stream.device).wait_stream(self.stream)
        return self._grads

    def release(self) -> None:
        """Drop the graph (frees the activations it holds)."""
        self._grads = None


def _graph_hvp(problem: HVPProblem, names: Sequence[str], shared: Optional[ReusedGradient]) -> HVP:
    holder = shared if shared is not None else ReusedGradient(problem, names)
    params = problem.parameters(names)

    def apply(v: TensorDict) -> TensorDict:
        g = holder.grads()
        hv = _grad_or_zeros([g[n] for n in names], params, [v[n] for n in names], retain_graph=True)
        return dict(zip(names, hv))

    def apply_batched(V: TensorDict) -> TensorDict:
        g = holder.grads()
        hv = _grad_or_zeros([g[n] for n in names], params, [V[n] for n in names], retain_graph=True, is_grads_batched=True)
        return dict(zip(names, hv))

    return HVP(apply, apply_batched)


def _double_backward_hvp(problem: HVPProblem, names: Sequence[str]) -> HVP:
    params = problem.parameters(names)

    def apply(v: TensorDict) -> TensorDict:
        out = [torch.zeros_like(p) for p in params]
        with eval_mode(problem.model), torch.enable_grad(), fast_second_order(problem.fast_second_order):
            for (x, y), w in zip(problem.batches, problem.weights):
                loss = problem.loss_fn(problem.forward(x), y) * w
                g = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
                g = [torch.zeros_like(p) if gi is None else gi for gi, p in zip(g, params)]
                hv = _grad_or_zeros(g, params, [v[n] for n in names])
                out = [a + b for a, b in zip(out, hv)]
        return dict(zip(names, out))

    def apply_batched(V: TensorDict) -> TensorDict:
        k = next(iter(V.values())).shape[0]
        cols = [apply({n: V[n][j] for n in names}) for j in range(k)]
        return {n: torch.stack([c[n] for c in cols]) for n in names}

    return HVP(apply, apply_batched)


def _forward_over_reverse_hvp(problem: HVPProblem, names: Sequence[str]) -> HVP:
    from torch.func import functional_call, grad, jvp, vjp, vmap

    model = problem.model
    selected = set(names)
    fixed = {n: p.detach() for n, p in model.named_parameters() if n not in selected}
    fixed.update({n: b for n, b in model.named_buffers()})
    named = dict(model.named_parameters())
    primals = {n: named[n].detach() for n in names}  # the same order as the tangents

    def loss_of(p: TensorDict, x: Tensor, y: Tensor) -> Tensor:
        return problem.loss_fn(functional_call(model, {**fixed, **p}, (x,)), y)

    grad_of = grad(loss_of)

    def apply(v: TensorDict) -> TensorDict:
        out: Optional[TensorDict] = None
        with eval_mode(model):
            for (x, y), w in zip(problem.batches, problem.weights):
                tangent = {n: v[n] for n in names}
                try:
                    _, hv = jvp(lambda p: grad_of(p, x, y), (primals,), (tangent,))
                except RuntimeError as err:
                    if "ZeroTensor" not in str(err):
                        raise
                    # some losses (F.mse_loss in torch 2.14) fail under jvp-of-grad; H is symmetric, so the
                    # reverse-over-reverse product vjp(grad)(v) = Hᵀv = Hv is the same vector
                    _, pullback = vjp(lambda p: grad_of(p, x, y), primals)
                    (hv,) = pullback(tangent)
                hv = {n: h * w for n, h in hv.items()}
                out = hv if out is None else {n: out[n] + hv[n] for n in names}
        return {n: out[n] for n in names}

    def apply_batched(V: TensorDict) -> TensorDict:
        return vmap(apply)({n: V[n] for n in names})

    return HVP(apply, apply_batched)


def make_hvp(strategy: str, problem: HVPProblem, names: Sequence[str], shared: Optional[ReusedGradient] = None) -> HVP:
    """The HVP closure for ``strategy`` (one of :data:`STRATEGIES`) over the parameters ``names``."""
    if strategy == "graph":
        return _graph_hvp(problem, names, shared)
    if strategy == "double_backward":
        return _double_backward_hvp(problem, names)
    if strategy == "forward_over_reverse":
        return _forward_over_reverse_hvp(problem, names)
    raise ValueError(f"unknown HVP strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
