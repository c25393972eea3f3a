"""The loss (and error) at many points of weight space, evaluated in batched passes.

A point is a row ``c`` of coefficients: the model's state there is ``base + Σ_j c_j·d_j`` on the entries the
directions ``d_j`` touch (parameters; for interpolations also floating buffers, BatchNorm's running statistics),
and ``base`` elsewhere. At each point,

    L = (1/N) Σ_b loss(f(x_b), y_b)      (loss summed over mini-batch b; N the samples of all mini-batches)

(cross-entropy: the mean over the batch, as extract's loss check) and, for classification, the error: the
fraction of samples whose arg-max output is not the label. Always in eval mode, without gradients.

**Batched.** ``torch.func.functional_call`` under ``torch.func.vmap`` over the rows of a chunk: one vectorised
forward pass per mini-batch evaluates the whole chunk, instead of loading each point's weights into a model and
running it (what Li et al.'s ``loss-landscape`` does). A chunk holds as many points as fit a memory budget: per
point, its state (the touched entries) and the activations of one mini-batch (counted once by forward hooks), times
3 for temporaries. The varying entries of a chunk's points are formed once and shared by its mini-batches. On a
GPU the budget is half the free memory, on a CPU 128 MiB (``memory_bytes`` overrides): larger chunks stay in no
cache and were slower there (LeNet-300-100 on 1000 MNIST images, 2-core CPU: 4.5 ms a point in chunks of 16, 5.1
in chunks of 208, 5.0 for Li et al.'s loop, 7.6 one point at a time). A CUDA out-of-memory halves the chunk and
retries. A model that ``vmap`` cannot run (data-dependent Python control
flow, ``.item()``…) is evaluated in a loop, one ``functional_call`` per point; ``note`` says so once, naming it.

Example:
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Linear(2, 2).double()
    >>> data = [(torch.randn(8, 2, dtype=torch.float64), torch.randint(0, 2, (8,)))]
    >>> d = {name: torch.ones_like(p) for name, p in model.named_parameters()}
    >>> evaluator = PointEvaluator(model, [d])
    >>> values = evaluator(torch.tensor([[0.0], [0.5]]), data)
    >>> values.loss.shape, evaluator.mode
    (torch.Size([2]), 'vmap')
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, vmap

from prunehess.errors import PrunehessError
from prunehess.operators.hvp import eval_mode

__all__ = ["Objective", "CLASSIFICATION", "PointValues", "PointEvaluator", "model_state", "DEFAULT_CPU_BYTES"]

DEFAULT_CPU_BYTES = 128 << 20
SAFETY = 3
Batches = Sequence[tuple[Tensor, Tensor]]


@dataclass(frozen=True)
class Objective:
    """``loss(output, y)``: the loss summed over a mini-batch; ``errors(output, y)``: the count of errors in it
    (``None``: no error, e.g. a regression)."""

    loss: Callable[[Tensor, Tensor], Tensor]
    errors: Optional[Callable[[Tensor, Tensor], Tensor]] = None


def _cross_entropy_sum(output: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(output, y, reduction="sum")


def _misclassified(output: Tensor, y: Tensor) -> Tensor:
    return (output.argmax(dim=-1) != y).sum()


CLASSIFICATION = Objective(_cross_entropy_sum, _misclassified)
"""Cross-entropy and the fraction misclassified: what extract's loss check and test accuracy use."""


@dataclass(frozen=True)
class PointValues:
    """The mean loss ``(P,)`` and error ``(P,)`` (``None`` without an error count) at ``P`` points, float64."""

    loss: Tensor
    error: Optional[Tensor]


def model_state(model: nn.Module) -> dict[str, Tensor]:
    """Every parameter and buffer of ``model`` by name (detached): the ``base`` of a :class:`PointEvaluator`."""
    state = {name: p.detach() for name, p in model.named_parameters()}
    state.update({name: b.detach() for name, b in model.named_buffers()})
    return state


class PointEvaluator:
    """``evaluator(C, batches)``: the loss and error at the points ``base + C[i] @ directions`` (see the module
    docstring). ``base``: the model's state by default; ``directions``: ``m`` dicts over some of its entries."""

    def __init__(self, model: nn.Module, directions: Sequence[Mapping[str, Tensor]], *,
                 base: Optional[Mapping[str, Tensor]] = None, objective: Objective = CLASSIFICATION,
                 batched: bool = True, memory_bytes: Optional[int] = None,
                 note: Callable[[str], None] = lambda text: None):
        self.model, self.objective, self.note = model, objective, note
        state = dict(model_state(model) if base is None else base)
        varying = [n for n in state if any(n in d for d in directions)]
        unknown = sorted({n for d in directions for n in d} - set(state))
        if unknown:
            raise KeyError(f"directions name entries the model does not have: {unknown[:3]}")
        self.m = len(directions)
        self.shapes = {n: state[n].shape for n in varying}
        self.base_flat = {n: state[n].reshape(-1) for n in varying}
        self.stack = {n: torch.stack([d[n].reshape(-1).to(state[n]) if n in d else torch.zeros_like(self.base_flat[n])
                                      for d in directions]) for n in varying}
        self.fixed = {n: t for n, t in state.items() if n not in self.stack}
        self.mode = "vmap" if batched else "loop"
        self.memory_bytes = memory_bytes
        self.chunk: Optional[int] = None

    # ----- one point, one mini-batch ----------------------------------------------------------------------------
    def _state_at(self, c: Tensor) -> dict[str, Tensor]:
        moved = {n: (self.base_flat[n] + c @ self.stack[n]).view(self.shapes[n]) for n in self.stack}
        return {**self.fixed, **moved}

    def _states(self, C: Tensor) -> dict[str, Tensor]:
        """The varying entries at every row of ``C``, stacked (``(len(C), *shape)`` each): built once per chunk and
        shared by its mini-batches."""
        return {n: (self.base_flat[n] + C @ self.stack[n]).view(len(C), *self.shapes[n]) for n in self.stack}

    def _point(self, moved: Mapping[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        output = functional_call(self.model, {**self.fixed, **moved}, (x,))
        loss = self.objective.loss(output, y)
        errors = self.objective.errors(output, y).to(loss.dtype) if self.objective.errors else torch.zeros_like(loss)
        return torch.stack([loss, errors])

    # ----- chunks -------------------------------------------------------------------------------------------------
    def _budget(self, device: torch.device) -> int:
        if self.memory_bytes is not None:
            return int(self.memory_bytes)
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            return free // 2
        return DEFAULT_CPU_BYTES

    def _chunk_size(self, points: int, batches: Batches) -> int:
        """Points per pass: the memory budget over one point's state and largest mini-batch's activations."""
        x = max(batches, key=lambda b: b[0].shape[0])[0]
        counted = [0]

        def count(module, inputs, output):
            if isinstance(output, Tensor):
                counted[0] += output.numel()

        leaves = [m for m in self.model.modules() if not list(m.children())]
        handles = [m.register_forward_hook(count) for m in leaves]
        try:
            functional_call(self.model, self._state_at(torch.zeros(self.m, dtype=x.dtype, device=x.device)), (x,))
        finally:
            for handle in handles:
                handle.remove()
        state = sum(t.numel() for t in self.base_flat.values())
        per_point = (state + max(counted[0], x.numel())) * x.element_size() * SAFETY
        return max(1, min(points, self._budget(x.device) // per_point))

    def _pass(self, states: Mapping[str, Tensor], points: int, x: Tensor, y: Tensor) -> Tensor:
        """``(points, 2)``: summed loss and error count of the mini-batch ``(x, y)`` at each of the stacked
        ``states`` (:meth:`_states`)."""
        if not states:  # directions that move nothing: the same value at every point
            return self._point({}, x, y).expand(points, 2)
        if self.mode == "vmap":
            try:
                return vmap(self._point, in_dims=(0, None, None))(dict(states), x, y)
            except torch.cuda.OutOfMemoryError:
                raise
            except Exception as err:  # vmap has no rule for something the model does: a loop does it
                self.mode = "loop"
                detail = " ".join(str(err).split())[:160]
                self.note(f"note: torch.func.vmap cannot run {type(self.model).__name__} ({type(err).__name__}: "
                          f"{detail}); evaluating its points one at a time")
        return torch.stack([self._point({n: s[i] for n, s in states.items()}, x, y) for i in range(points)])

    def _chunk(self, C: Tensor, batches: Batches) -> Tensor:
        totals = torch.zeros(len(C), 2, dtype=torch.float64, device=C.device)
        states = self._states(C)
        for x, y in batches:
            totals += self._pass(states, len(C), x, y).double()
        return totals

    @torch.no_grad()
    def __call__(self, coefficients: Tensor, batches: Batches) -> PointValues:
        C = torch.as_tensor(coefficients).reshape(-1, self.m)
        batches = list(batches)
        samples = sum(int(y.shape[0]) for _, y in batches)
        if not batches or samples == 0:
            raise ValueError("point evaluation needs at least one non-empty mini-batch")
        dtype = next(iter(self.base_flat.values())).dtype if self.base_flat else batches[0][0].dtype
        C = C.to(device=batches[0][0].device, dtype=dtype)
        with eval_mode(self.model):
            if self.chunk is None:
                self.chunk = self._chunk_size(len(C), batches)  # a loop holds a chunk's weights too
            parts, start = [], 0
            while start < len(C):
                try:
                    parts.append(self._chunk(C[start:start + self.chunk], batches))
                except torch.cuda.OutOfMemoryError:
                    if self.chunk == 1:
                        raise PrunehessError(f"out of GPU memory evaluating one point of {type(self.model).__name__}: "
                                             "lower --mini-hessian-batch-size or --memory-mb") from None
                    self.chunk = max(1, self.chunk // 2)
                    torch.cuda.empty_cache()
                    continue
                start += len(parts[-1])
        totals = torch.cat(parts) / samples
        return PointValues(totals[:, 0], totals[:, 1] if self.objective.errors else None)
