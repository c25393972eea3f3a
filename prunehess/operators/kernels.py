"""Convolution and eval-mode BatchNorm with cheap second derivatives, for the autograd HVP strategies.

A Hessian-vector product by double backward differentiates every layer's backward pass. PyTorch's own
derivative of a convolution's backward (``aten::_convolution_double_backward``) computes the weight part as a
convolution with batch and channels swapped, whose kernel is the whole feature map: on ResNet-20 it is most of
a product's time (CPU oneDNN and cuDNN alike). The derivative of eval-mode BatchNorm's backward goes through the
general training-mode formula (``batchnorm_double_backward``), many full-size multiplications for what is a
per-channel affine map. Both make a product cost 3–4 gradients where 2 suffice.

Inside :func:`fast_second_order`, ``conv1d/2d/3d`` and ``batch_norm`` with fixed statistics are replaced by
numerically equal forms whose backward passes are made of ordinary differentiable operations, each with an
efficient derivative:

- convolution ``y = conv(x, W)``: ``∂x = conv_transpose(∂y, W)`` and ``∂W = convolution_backward(∂y, x)``,
  where the latter is a :class:`torch.autograd.Function` whose own derivatives are the adjoint identities
  ``∂/∂(∂y) ⟨G, ∂W⟩ = conv(x, G)`` and ``∂/∂x ⟨G, ∂W⟩ = conv_transpose(∂y, G)``;
- BatchNorm with running statistics: ``y = x · s + t`` with per-channel ``s = γ / √(σ² + ε)``,
  ``t = β − μ s``, whose backward is two full-size products and two channel sums;
- BatchNorm with running statistics applied directly to such a convolution's output (the untouched tensor the
  convolution returned, as in every conv → BN block): folded into the convolution,
  ``BN(conv(x, W) + b) = conv(x, W·s) + (b − μ)·s + β``, so scale and shift act on parameter-sized tensors. The
  first-order graph then keeps no BatchNorm activation and its derivative has no full-size operation: on
  ResNet-20 (200 samples, CPU) the graph held for products is half the size and a product ~10% faster. The
  unfolded output is computed before the BatchNorm is seen, so the forward pass runs one convolution more per
  folded pair (once per first-order graph under the ``graph`` strategy). Not folded: an output (or the
  convolution's input, weight or bias) changed in place in between, a detached output, a convolution run in
  another grad mode (a frozen stem under ``no_grad``), BatchNorm tensors of another dtype. A change made through
  ``.data`` bypasses PyTorch's version counters and cannot be seen;
- ReLU (out of place): its backward ``g ⊙ [y > 0]`` is recorded as a function of ``g`` alone. PyTorch's own
  derivative of that backward also returns a zero tensor for ``y`` (the step function's derivative), which is
  allocated, filled and added into the activation's gradient on every product.

The first derivatives are PyTorch's own kernels (folding reorders a BatchNorm's arithmetic), so values and
gradients are unchanged up to rounding; only how the second derivative is taken differs. Everything else passes
through untouched.
"""
from __future__ import annotations

import contextlib
import weakref
from typing import Iterator, NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode

__all__ = ["fast_second_order", "conv", "batch_norm_affine", "conv_batch_norm", "relu"]


def _tuple(value, dims: int) -> list[int]:
    return [int(v) for v in value] if isinstance(value, (tuple, list)) else [int(value)] * dims


def _output_padding(x_shape: Sequence[int], y_shape: Sequence[int], w_shape: Sequence[int], stride, padding, dilation) -> list[int]:
    """The transposed convolution's ``output_padding`` that maps ``y`` back to exactly ``x``'s spatial size."""
    out = []
    for i in range(len(stride)):
        full = (y_shape[2 + i] - 1) * stride[i] - 2 * padding[i] + dilation[i] * (w_shape[2 + i] - 1) + 1
        out.append(x_shape[2 + i] - full)
    return out


class _WeightGrad(torch.autograd.Function):
    """``∂W = convolution_backward(g, x)`` (weight part only) with derivatives in forward/transposed convolutions."""

    @staticmethod
    def forward(ctx, x: Tensor, g: Tensor, w: Tensor, stride, padding, dilation, groups):
        ctx.save_for_backward(x, g)
        ctx.conf = (stride, padding, dilation, groups, tuple(w.shape))
        _, grad_w, _ = torch.ops.aten.convolution_backward(
            g, x, w, None, stride, padding, dilation, False, [0] * len(stride), groups, [False, True, False]
        )
        return grad_w

    @staticmethod
    def backward(ctx, G: Tensor):
        x, g = ctx.saved_tensors
        stride, padding, dilation, groups, w_shape = ctx.conf
        d_x = d_g = None
        if ctx.needs_input_grad[0]:  # ∂/∂x ⟨G, ∂W⟩ = conv_transpose(g, G)
            pad_out = _output_padding(x.shape, g.shape, w_shape, stride, padding, dilation)
            d_x = torch.ops.aten.convolution(g, G, None, stride, padding, dilation, True, pad_out, groups)
        if ctx.needs_input_grad[1]:  # ∂/∂g ⟨G, ∂W⟩ = conv(x, G)
            d_g = torch.ops.aten.convolution(x, G, None, stride, padding, dilation, False, [0] * len(stride), groups)
        return d_x, d_g, None, None, None, None, None


class _Convolution(torch.autograd.Function):
    """A convolution whose backward pass is built from differentiable operations with efficient derivatives."""

    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor, b, stride, padding, dilation, groups):
        ctx.save_for_backward(x, w)
        ctx.conf = (stride, padding, dilation, groups)
        ctx.has_bias = b is not None
        return torch.ops.aten.convolution(x, w, b, stride, padding, dilation, False, [0] * len(stride), groups)

    @staticmethod
    def backward(ctx, g: Tensor):
        x, w = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conf
        d_x = d_w = d_b = None
        if ctx.needs_input_grad[0]:
            pad_out = _output_padding(x.shape, g.shape, w.shape, stride, padding, dilation)
            d_x = torch.ops.aten.convolution(g, w, None, stride, padding, dilation, True, pad_out, groups)
        if ctx.needs_input_grad[1]:
            d_w = _WeightGrad.apply(x, g, w, stride, padding, dilation, groups)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            d_b = g.sum(dim=[0, *range(2, g.dim())])
        return d_x, d_w, d_b, None, None, None, None


def conv(x: Tensor, weight: Tensor, bias=None, stride=1, padding=0, dilation=1, groups: int = 1) -> Tensor:
    """``F.conv{1,2,3}d`` (numeric padding, batched input) with the efficient second derivative."""
    dims = weight.dim() - 2
    return _Convolution.apply(
        x, weight, bias, _tuple(stride, dims), _tuple(padding, dims), _tuple(dilation, dims), int(groups)
    )


class _EvalBatchNorm(torch.autograd.Function):
    """``y = x · s + t`` per channel, ``s = γ/√(σ²+ε)``, ``t = β − μ s``, with a backward of few operations:
    ``∂x = g s``, ``∂γ = (Σ g x − μ Σ g) / √(σ²+ε)``, ``∂β = Σ g`` (sums over all but the channel axis)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight, bias, running_mean: Tensor, running_var: Tensor, eps: float):
        rinv = torch.rsqrt(running_var + eps)
        scale = rinv * weight if weight is not None else rinv
        shift = -running_mean * scale
        if bias is not None:
            shift = shift + bias
        shape = [1, -1] + [1] * (x.dim() - 2)
        ctx.save_for_backward(x, weight, running_mean, rinv)
        ctx.shape = shape
        # in the parameters' precision, returned in the input's (as PyTorch's own, e.g. bfloat16 activations
        # normalised by float32 statistics)
        return torch.addcmul(shift.reshape(shape), x, scale.reshape(shape)).to(x.dtype)

    @staticmethod
    def backward(ctx, g: Tensor):
        x, weight, mean, rinv = ctx.saved_tensors
        dims = [0, *range(2, g.dim())]
        d_x = d_w = d_b = None
        if ctx.needs_input_grad[0]:
            scale = rinv * weight if weight is not None else rinv
            d_x = g * scale.reshape(ctx.shape)
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            g_sum = g.sum(dim=dims)
            if ctx.needs_input_grad[1]:
                d_w = ((g * x).sum(dim=dims) - mean * g_sum) * rinv
            if ctx.needs_input_grad[2]:
                d_b = g_sum
        return d_x, d_w, d_b, None, None, None


def batch_norm_affine(x: Tensor, running_mean: Tensor, running_var: Tensor, weight=None, bias=None, eps: float = 1e-5) -> Tensor:
    """Eval-mode BatchNorm as the per-channel affine map ``x · s + t`` with a lean, twice-differentiable backward."""
    return _EvalBatchNorm.apply(x, weight, bias, running_mean, running_var, float(eps))


def conv_batch_norm(x: Tensor, weight: Tensor, bias, running_mean: Tensor, running_var: Tensor, bn_weight=None,
                    bn_bias=None, eps: float = 1e-5, stride=1, padding=0, dilation=1, groups: int = 1) -> Tensor:
    """``batch_norm(conv(x, W, b))`` with fixed statistics, as one convolution with the per-channel scale folded in.

    ``BN(conv(x, W) + b) = conv(x, W·s) + (b − μ)·s + β`` with ``s = γ/√(σ²+ε)``: the scale and shift act on
    the parameters, so the first-order graph holds no BatchNorm activation and its derivatives are
    parameter-sized.
    """
    s = torch.rsqrt(running_var + eps)
    if bn_weight is not None:
        s = s * bn_weight
    shift = -running_mean * s if bias is None else (bias - running_mean) * s
    if bn_bias is not None:
        shift = shift + bn_bias
    folded = weight * s.reshape([-1] + [1] * (weight.dim() - 1))
    return conv(x, folded, shift, stride, padding, dilation, groups)


class _ReLUMask(torch.autograd.Function):
    """``g ⊙ [y > 0]`` for a fixed ReLU output ``y``: linear in ``g``, so its derivative is itself."""

    @staticmethod
    def forward(ctx, g: Tensor, y: Tensor):
        ctx.save_for_backward(y)
        return torch.ops.aten.threshold_backward(g, y, 0)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (y,) = ctx.saved_tensors
        return _relu_mask(grad, y), None


def _relu_mask(g: Tensor, y: Tensor) -> Tensor:
    """``g ⊙ [y > 0]``, recorded as :class:`_ReLUMask` only when a graph is being built (``create_graph``)."""
    if torch.is_grad_enabled():
        return _ReLUMask.apply(g, y)
    return torch.ops.aten.threshold_backward(g, y, 0)


class _ReLU(torch.autograd.Function):
    """``max(x, 0)``, saving its output (as PyTorch's does) for a backward recorded as :class:`_ReLUMask`."""

    @staticmethod
    def forward(ctx, x: Tensor):
        y = torch.relu(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g: Tensor):
        (y,) = ctx.saved_tensors
        return _relu_mask(g, y.detach())


def relu(x: Tensor) -> Tensor:
    """``torch.relu`` whose backward is recorded without the zero derivative of the step function."""
    return _ReLU.apply(x)


_RELUS = (F.relu, torch.relu, Tensor.relu)

_CONVS = {torch.conv1d: 1, torch.conv2d: 2, torch.conv3d: 3, F.conv1d: 1, F.conv2d: 2, F.conv3d: 3}


def _versions(*tensors) -> tuple[int, ...]:
    return tuple(t._version if isinstance(t, Tensor) else -1 for t in tensors)


class _ConvRecord(NamedTuple):
    """The latest replaced convolution, for a BatchNorm applied to its output next."""

    output: weakref.ref  # the output tensor (weakly: the record must not keep it alive)
    grad_fn: object  # the output's autograd node (None when recorded without a graph)
    grad_enabled: bool  # the grad mode the convolution ran in
    versions: tuple[int, ...]  # version counters of the output, input, weight and bias
    arguments: tuple  # (input, weight, bias, stride, padding, dilation, groups)

    def folds_into(self, bn_input: Tensor, *bn_tensors) -> bool:
        """Whether ``bn_input`` is this convolution's output, unchanged since (no in-place change to it or to the
        convolution's input, weight or bias; not detached; the same grad mode), and every BatchNorm tensor has
        the convolution weight's dtype."""
        x, w, b = self.arguments[:3]
        return (self.output() is bn_input and bn_input.grad_fn is self.grad_fn
                and torch.is_grad_enabled() == self.grad_enabled
                and _versions(bn_input, x, w, b) == self.versions
                and all(t is None or t.dtype == w.dtype for t in (b, *bn_tensors)))


class _FastSecondOrder(TorchFunctionMode):
    def __init__(self, fold_batch_norm: bool = True):
        super().__init__()
        self.fold_batch_norm = fold_batch_norm
        self._last_conv: Optional[_ConvRecord] = None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _CONVS:
            replaced = self._conv(_CONVS[func], *args, **kwargs)
            if replaced is not None:
                out, arguments = replaced
                if self.fold_batch_norm:
                    self._last_conv = _ConvRecord(weakref.ref(out), out.grad_fn, torch.is_grad_enabled(),
                                                  _versions(out, *arguments[:3]), arguments)
                return out
        elif func is F.batch_norm:
            replaced = self._batch_norm(*args, **kwargs)
            if replaced is not None:
                return replaced
        elif func in _RELUS:
            x = kwargs.get("input", args[0] if args else None)
            inplace = kwargs.get("inplace", args[1] if len(args) > 1 else False)
            if isinstance(x, Tensor) and not inplace:  # in-place ReLU passes through: its input must change
                return relu(x)
        return func(*args, **kwargs)

    # the parameter names are torch.nn.functional's, so calls by keyword (input=..., weight=...) work too
    @staticmethod
    def _conv(dims: int, input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):  # noqa: A002
        if isinstance(padding, str) or input.dim() != dims + 2:  # 'same'/'valid' or unbatched: PyTorch's own
            return None
        return conv(input, weight, bias, stride, padding, dilation, groups), (input, weight, bias, stride, padding,
                                                                              dilation, groups)

    def _batch_norm(self, input, running_mean, running_var, weight=None, bias=None, training=False,  # noqa: A002
                    momentum=0.1, eps=1e-5):
        if training or running_mean is None or running_var is None:
            return None  # batch statistics: PyTorch's own
        last = self._last_conv
        if last is not None and last.folds_into(input, running_mean, running_var, weight, bias):
            # the untouched output of the convolution just replaced: recompute it with the BatchNorm folded in
            # (the unfolded output is left to the caller; nothing downstream of this BatchNorm records it)
            x, w, b, stride, padding, dilation, groups = last.arguments
            return conv_batch_norm(x, w, b, running_mean, running_var, weight, bias, eps, stride, padding, dilation,
                                   groups)
        return batch_norm_affine(input, running_mean, running_var, weight, bias, eps)


@contextlib.contextmanager
def fast_second_order(enabled: bool = True, *, fold_batch_norm: bool = True) -> Iterator[None]:
    """Within this context, convolutions, eval-mode BatchNorm and ReLU record graphs with cheap second derivatives.

    ``fold_batch_norm``: an eval-mode BatchNorm applied directly to a convolution's output is recorded as one
    convolution with the BatchNorm folded into its weight and bias (:func:`conv_batch_norm`).
    """
    if not enabled:
        yield
        return
    with _FastSecondOrder(fold_batch_norm):
        yield
