"""When the Hessian's diagonal is the Gauss–Newton's: networks piecewise linear in each parameter tensor.

For the mean loss ``L = Σ_b (n_b / N) loss_fn(z_b, y_b)``, ``z_b = f(x_b; θ)``, the chain rule gives

    H = G + Σ_b (n_b / N) Σ_j r_bj ∇²_θ z_bj,    r_b = ∂loss_fn/∂z_b,

with ``G`` the generalised Gauss–Newton matrix (:mod:`prunehess.operators.ggn`). The second term's entries inside
one parameter tensor ``W`` are ``∂²z_bj / ∂W_k ∂W_l``: they vanish for every sample, output and loss when every
output is an affine function of ``W`` with the other parameters fixed, up to kinks of measure zero (where autograd
also differentiates piecewise-linear functions as linear). Then every diagonal block ``H_WW = G_WW``, and in
particular ``diag(H) = diag(G)``. ``H = G`` as a whole only when the outputs are affine in all parameters jointly
(one linear layer): between layers the mixed derivatives ``∂²z / ∂W₁ ∂W₂`` remain.

The outputs are piecewise affine in each selected tensor separately when the forward pass is composed of:

- operations linear in their tensor inputs: sums, reshapes and views, indexing, concatenation, padding, average
  pooling, interpolation, dropout; and divisions by tensors that depend on no selected parameter;
- piecewise-linear ones: ReLU, leaky ReLU, ReLU6 / hardtanh, max pooling, max / min, abs, clamp;
- products in which each selected tensor enters at most one factor: linear and convolution layers (``x·W + b``,
  with ``x`` depending on earlier layers only), BatchNorm with running statistics (``x̂·γ + β``), elementwise and
  matrix products.

It fails for smooth nonlinearities (tanh, sigmoid, GELU, SiLU, softplus, ELU, softmax or log-softmax inside the
network), normalisation by statistics of a parameter-dependent input (BatchNorm without running statistics or in
training mode, LayerNorm, GroupNorm, InstanceNorm), powers and divisions by parameter-dependent tensors, and a
tensor that meets itself in a product (the same layer applied twice in a row, weights tied along one path).
Operations on inputs that depend on no selected tensor are unrestricted (a Tanh before the selected layers is fine).

:func:`check_piecewise_linear` runs one forward pass (eval mode, as the operators evaluate, no gradient) under a
:class:`~torch.overrides.TorchFunctionMode` that tracks which selected tensors every intermediate depends on, and
raises :class:`NotPiecewiseLinearError` at the first operation outside the lists above, naming the module that
ran it.

Example:
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    >>> check_piecewise_linear(net, torch.randn(2, 3))
    >>> net[1] = torch.nn.Tanh()
    >>> check_piecewise_linear(net, torch.randn(2, 3))
    Traceback (most recent call last):
    ...
    prunehess.operators.linearity.NotPiecewiseLinearError: module '1' (Tanh) applies tanh to a tensor that depends on
    ['0.bias', '0.weight'], which is not piecewise linear: ...
    >>> check_piecewise_linear(net, torch.randn(2, 3), names=["2.weight", "2.bias"])  # after the Tanh: fine
"""
from __future__ import annotations

from typing import Any, Iterator, Optional, Sequence

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from prunehess.errors import PrunehessError
from prunehess.operators.hvp import eval_mode

__all__ = ["check_piecewise_linear", "NotPiecewiseLinearError"]

_LINEAR = frozenset("""
add sub rsub radd neg sum mean cat concat concatenate stack hstack vstack view view_as reshape reshape_as flatten
unflatten permute transpose t contiguous clone squeeze unsqueeze expand expand_as repeat getitem setitem narrow
select split chunk unbind pad constant_pad_nd avg_pool1d avg_pool2d avg_pool3d adaptive_avg_pool1d
adaptive_avg_pool2d adaptive_avg_pool3d dropout dropout1d dropout2d dropout3d alpha_dropout feature_alpha_dropout
identity to type float double half bfloat16 roll flip index_select gather masked_fill pixel_shuffle pixel_unshuffle
interpolate upsample movedim moveaxis swapaxes diagonal tril triu cumsum diff copy get max_unpool1d max_unpool2d
max_unpool3d embedding index_put index_add index_copy scatter scatter_add masked_scatter masked_select take
take_along_dim unfold fold repeat_interleave tile broadcast_to as_strided channel_shuffle
""".split())
"""Linear (or affine) in all their tensor inputs jointly."""

_PIECEWISE = frozenset("""
relu relu6 leaky_relu hardtanh threshold hardshrink softshrink max_pool1d max_pool2d max_pool3d
max_pool1d_with_indices max_pool2d_with_indices max_pool3d_with_indices adaptive_max_pool1d adaptive_max_pool2d
adaptive_max_pool3d adaptive_max_pool1d_with_indices adaptive_max_pool2d_with_indices
adaptive_max_pool3d_with_indices max min amax amin maximum minimum fmax fmin abs clamp clip clamp_min clamp_max
where sort topk kthvalue median
""".split())
"""Piecewise linear in their tensor inputs jointly (second derivative zero almost everywhere)."""

_PRODUCTS = frozenset("mul rmul matmul rmatmul mm bmm mv dot vdot outer ger inner kron einsum tensordot prelu "
                      "bilinear".split())
"""Linear in each tensor input separately: every tensor argument is a factor."""

_LAYER = (("input", "weight", "bias"), ("input", "weight"))
_LAYERS = {name: _LAYER for name in (
    "linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d")}
_LAYERS.update({"addmm": (("input", "mat1", "mat2"), ("mat1", "mat2")),
                "addmv": (("input", "mat", "vec"), ("mat", "vec")),
                "addr": (("input", "vec1", "vec2"), ("vec1", "vec2")),
                "baddbmm": (("input", "batch1", "batch2"), ("batch1", "batch2")),
                "addbmm": (("input", "batch1", "batch2"), ("batch1", "batch2"))})
"""Layers ``input·weight + bias`` and ``input + a·b`` forms: the arguments named are the factors, the rest added."""

_CONSTANT = frozenset("zero fill zeros_like ones_like empty_like full_like rand_like randn_like randint_like new_zeros "
                      "new_ones new_empty new_full new_tensor detach".split())
"""Their outputs depend on no parameter (as autograd sees them)."""

_NORMS = {"batch_norm": ("input", "running_mean", "running_var", "weight", "bias", "training"),
          "instance_norm": ("input", "running_mean", "running_var", "weight", "bias", "use_input_stats"),
          "layer_norm": ("input", "normalized_shape", "weight", "bias"),
          "group_norm": ("input", "num_groups", "weight", "bias"),
          "local_response_norm": ("input",), "normalize": ("input",)}
_DIVISIONS = {"div": 1, "true_divide": 1, "divide": 1, "truediv": 1, "rtruediv": 0, "rdiv": 0}
"""Divisions, and which argument is the denominator (it must depend on no selected tensor)."""
_ALIASES = {"iadd": "add", "isub": "sub", "imul": "mul", "itruediv": "truediv", "imatmul": "matmul"}


class NotPiecewiseLinearError(PrunehessError, ValueError):
    """The network is not piecewise linear in each selected parameter tensor: its Hessian's diagonal is not the
    Gauss–Newton's."""


def _normalised(func: Any) -> str:
    name = getattr(func, "__name__", str(func))
    if name.startswith("__") and name.endswith("__"):
        name = name[2:-2]
    name = _ALIASES.get(name, name).lstrip("_")
    return name[:-1] if name.endswith("_") else name


def _bind(names: Sequence[str], args: tuple, kwargs: dict) -> dict[str, Any]:
    bound = dict(zip(names, args))
    bound.update({k: v for k, v in kwargs.items() if k in names})
    return bound


class _Tracker(TorchFunctionMode):
    """Tracks which selected tensors each intermediate depends on; raises at a non-piecewise-linear operation."""

    def __init__(self, selected: dict[str, Tensor]):
        super().__init__()
        self._deps: dict[int, tuple[Tensor, frozenset]] = {id(t): (t, frozenset([n])) for n, t in selected.items()}
        self.modules: list[tuple[str, nn.Module]] = []

    def deps(self, value: Any) -> frozenset:
        found: frozenset = frozenset()
        for leaf in tree_flatten(value)[0]:
            entry = self._deps.get(id(leaf)) if isinstance(leaf, Tensor) else None
            if entry is not None and entry[0] is leaf:
                found = found | entry[1]
        return found

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        inputs = self.deps((args, kwargs))
        name = _normalised(func)
        changed = result if name != "setitem" else args[0]  # x[i] = y changes x in place and returns None
        outputs = [leaf for leaf in tree_flatten(changed)[0] if isinstance(leaf, Tensor)]
        if inputs and outputs:
            deps = frozenset() if name in _CONSTANT else self._classify(name, args, kwargs, inputs)
            for leaf in outputs:
                self._deps[id(leaf)] = (leaf, deps)
        return result

    def _classify(self, name: str, args: tuple, kwargs: dict, inputs: frozenset) -> frozenset:
        if name in _LINEAR or name in _PIECEWISE:
            return inputs
        if name in _PRODUCTS:
            return self._factors(name, [a for a in tree_flatten((args, kwargs))[0] if isinstance(a, Tensor)], inputs)
        if name in _LAYERS:
            signature, factors = _LAYERS[name]
            bound = _bind(signature, args, kwargs)
            return self._factors(name, [bound.get(k) for k in factors], inputs)
        if name in _DIVISIONS:
            denominator = args[_DIVISIONS[name]] if len(args) > _DIVISIONS[name] else kwargs.get("other")
            if not self.deps(denominator):
                return inputs
        if name in _NORMS:
            return self._norm(name, _bind(_NORMS[name], args, kwargs), inputs)
        self._refuse(name, inputs, "which is not piecewise linear")

    def _factors(self, name: str, factors: list, inputs: frozenset) -> frozenset:
        seen: set = set()
        for factor in factors:
            mine = self.deps(factor)
            if seen & mine:
                self._refuse(name, inputs, f"multiplying {sorted(seen & mine)} by itself")
            seen |= mine
        return inputs

    def _norm(self, name: str, bound: dict, inputs: frozenset) -> frozenset:
        batch_statistics = bound.get("training") or bound.get("use_input_stats") or bound.get("running_mean") is None
        if not self.deps(bound.get("input")) or (name in ("batch_norm", "instance_norm") and not batch_statistics):
            return self._factors(name, [bound.get("input"), bound.get("weight")], inputs)
        self._refuse(name, inputs, "which normalises by statistics of its input")

    def _refuse(self, name: str, inputs: frozenset, why: str) -> None:
        where = f"module {self.modules[-1][0]!r} ({type(self.modules[-1][1]).__name__})" if self.modules else "the model"
        raise NotPiecewiseLinearError(
            f"{where} applies {name} to a tensor that depends on {sorted(inputs)}, {why}: the outputs are not "
            "piecewise linear in each parameter tensor, so the Hessian's diagonal is not the Gauss–Newton's (estimate "
            "it with hutchinson_diagonal instead)")


def _module_stack(model: nn.Module, tracker: _Tracker) -> Iterator[Any]:
    """Hooks keeping ``tracker.modules`` the stack of modules running (each hook returns ``None``: no change)."""

    def enter(label: str, module: nn.Module) -> None:
        tracker.modules.append((label, module))

    def leave() -> None:
        tracker.modules.pop()

    for name, module in model.named_modules():
        yield module.register_forward_pre_hook(lambda m, a, label=name or "<model>": enter(label, m))
        yield module.register_forward_hook(lambda m, a, out: leave())


def check_piecewise_linear(model: nn.Module, x: Tensor, names: Optional[Sequence[str]] = None) -> None:
    """Raise :class:`NotPiecewiseLinearError` unless ``model``'s outputs on ``x`` are piecewise affine in each of
    the parameter tensors ``names`` (default: every parameter that requires gradients) separately, evaluated in eval
    mode: the condition for ``diag(H) = diag(G)`` (module docstring). Runs one forward pass on ``x``."""
    named = dict(model.named_parameters())
    names = [n for n, p in named.items() if p.requires_grad] if names is None else list(names)
    tracker = _Tracker({n: named[n] for n in names})
    handles = list(_module_stack(model, tracker))
    try:
        with eval_mode(model), torch.no_grad(), tracker:
            model(x)
    finally:
        for handle in handles:
            handle.remove()
