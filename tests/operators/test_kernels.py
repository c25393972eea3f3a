"""The second-order-friendly convolution and eval-mode BatchNorm (prunehess.operators.kernels).

Hessians through them must equal the dense Hessian computed with PyTorch's own kernels (float64, to rounding),
for every convolution shape the replacement claims to handle; what it does not handle must pass through.
"""
from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import assert_close, autograd_hessian
from prunehess import HessianOperator
from prunehess.operators.kernels import batch_norm_affine, conv, fast_second_order

pytestmark = pytest.mark.usefixtures("float64")

RTOL, ATOL = 1e-9, 1e-12


def _init(model: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.5)
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g, dtype=torch.float64) * 0.3)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g, dtype=torch.float64) + 0.5)
    return model.double()


# (name, dims, Conv kwargs, spatial input size): strides that leave a remainder (output_padding matters),
# padding, dilation, groups, no bias, non-square kernels
CONVS = [
    ("2d_plain", 2, dict(in_channels=2, out_channels=3, kernel_size=3), (6, 6)),
    ("2d_stride2_odd", 2, dict(in_channels=2, out_channels=2, kernel_size=3, stride=2, padding=1), (7, 6)),
    ("2d_dilated_nobias", 2, dict(in_channels=2, out_channels=2, kernel_size=(2, 3), dilation=2, bias=False), (7, 8)),
    ("2d_groups", 2, dict(in_channels=4, out_channels=4, kernel_size=3, groups=2, padding=(1, 0)), (5, 6)),
    ("2d_depthwise_stride3", 2, dict(in_channels=3, out_channels=3, kernel_size=2, groups=3, stride=3), (8, 7)),
    ("1d", 1, dict(in_channels=2, out_channels=3, kernel_size=3, stride=2, padding=2), (9,)),
    ("3d", 3, dict(in_channels=1, out_channels=2, kernel_size=2, padding=1), (3, 4, 3)),
]


def conv_net(dims: int, conv_kwargs: dict, size: tuple, batch_norm: bool) -> nn.Module:
    Conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dims]
    Norm = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[dims]
    first = Conv(**conv_kwargs)
    with torch.no_grad():
        out = first(torch.zeros(1, conv_kwargs["in_channels"], *size))
    channels = out.shape[1]
    layers = [first]
    if batch_norm:
        layers.append(Norm(channels))
    # tanh keeps second derivatives of the activation in play; a second convolution makes the input gradient
    # of the first layer's output part of the Hessian
    layers += [nn.Tanh(), Conv(channels, 2, kernel_size=1), nn.Flatten(), nn.LazyLinear(3)]
    model = nn.Sequential(*layers).double()
    model(torch.zeros(1, conv_kwargs["in_channels"], *size, dtype=torch.float64))  # materialise LazyLinear
    return _init(model, seed=len(size) + channels)


def data_for(model: nn.Module, in_channels: int, size: tuple, n: int = 5, seed: int = 3):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, in_channels, *size, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (n,), generator=g)
    return x, y


def operator_matrix(op: HessianOperator) -> torch.Tensor:
    return op.matmat(torch.eye(op.size, dtype=op.dtype))


@pytest.mark.parametrize("batch_norm", [False, True], ids=["conv", "conv_bn"])
@pytest.mark.parametrize("name,dims,kwargs,size", CONVS, ids=[c[0] for c in CONVS])
@pytest.mark.parametrize("strategy", ["graph", "double_backward"])
def test_hessian_through_fast_kernels_equals_dense(name, dims, kwargs, size, batch_norm, strategy):
    model = conv_net(dims, kwargs, size, batch_norm)
    x, y = data_for(model, kwargs["in_channels"], size)
    expected = autograd_hessian(model, x, y, F.cross_entropy)  # PyTorch's own kernels
    op = HessianOperator(model, [(x[:3], y[:3]), (x[3:], y[3:])], masks=None, strategy=strategy)
    assert op.problem.fast_second_order
    assert_close(operator_matrix(op), expected, rtol=RTOL, atol=ATOL, name=f"{name}/{strategy}")


@pytest.mark.parametrize("batched", ["graph_batched", "loop"])
def test_batched_products_through_fast_kernels(batched):
    name, dims, kwargs, size = CONVS[1]
    model = conv_net(dims, kwargs, size, batch_norm=True)
    x, y = data_for(model, kwargs["in_channels"], size)
    expected = autograd_hessian(model, x, y, F.cross_entropy)
    op = HessianOperator(model, [(x, y)], masks=None, batched_strategy=batched)
    V = torch.randn(op.size, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert_close(op.matmat(V), expected @ V, rtol=RTOL, atol=ATOL, name=batched)


def test_switched_off_gives_the_same_operator():
    name, dims, kwargs, size = CONVS[3]
    model = conv_net(dims, kwargs, size, batch_norm=True)
    x, y = data_for(model, kwargs["in_channels"], size)
    fast = operator_matrix(HessianOperator(model, [(x, y)], masks=None))
    native = HessianOperator(model, [(x, y)], masks=None, fast_second_order=False)
    assert not native.problem.fast_second_order
    assert_close(operator_matrix(native), fast, rtol=RTOL, atol=ATOL, name="native vs fast")


def _graph_names(tensors) -> set[str]:
    """Names of every autograd node reachable from ``tensors``."""
    seen, names, stack = set(), set(), [t.grad_fn for t in tensors if t.grad_fn is not None]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(type(node).__name__)
        stack.extend(fn for fn, _ in node.next_functions)
    return names


def _first_order_graph(model, x, y, enabled: bool, fold_batch_norm: bool = True) -> set[str]:
    model.eval()
    params = list(model.parameters())
    with fast_second_order(enabled, fold_batch_norm=fold_batch_norm):
        grads = torch.autograd.grad(F.cross_entropy(model(x), y), params, create_graph=True)
    return _graph_names(grads)


def test_the_replacement_is_what_the_graph_records():
    name, dims, kwargs, size = CONVS[0]
    model = conv_net(dims, kwargs, size, batch_norm=True)
    x, y = data_for(model, kwargs["in_channels"], size)
    fast = _first_order_graph(model, x, y, True)
    unfolded = _first_order_graph(model, x, y, True, fold_batch_norm=False)
    native = _first_order_graph(model, x, y, False)
    assert "_WeightGradBackward" in fast and "_ConvolutionBackward" in fast
    # conv → BN is folded into one convolution: no BatchNorm node at all
    assert not any("BatchNorm" in n for n in fast)
    assert "_EvalBatchNormBackward" in unfolded and not any("NativeBatchNorm" in n for n in unfolded)
    assert "ConvolutionBackwardBackward0" in native and "NativeBatchNormBackwardBackward0" in native
    assert not any(n.startswith("_WeightGrad") for n in native)


@pytest.mark.parametrize("affine", [True, False], ids=["affine", "no_affine"])
@pytest.mark.parametrize("conv_bias", [True, False], ids=["bias", "no_bias"])
def test_folded_batch_norm_equals_pytorch(affine, conv_bias):
    g = torch.Generator().manual_seed(7)
    x = torch.randn(3, 4, 7, 6, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 2, 3, 2, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, generator=g, dtype=torch.float64, requires_grad=True) if conv_bias else None
    mean, var = torch.randn(6, generator=g, dtype=torch.float64), torch.rand(6, generator=g, dtype=torch.float64) + 0.1
    gamma = torch.randn(6, generator=g, dtype=torch.float64, requires_grad=True) if affine else None
    beta = torch.randn(6, generator=g, dtype=torch.float64, requires_grad=True) if affine else None
    kw = dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2)
    with fast_second_order():
        ours = F.batch_norm(F.conv2d(x, w, b, **kw), mean, var, gamma, beta, eps=1e-3)
    theirs = F.batch_norm(F.conv2d(x, w, b, **kw), mean, var, gamma, beta, eps=1e-3)
    assert type(ours.grad_fn).__name__ == "_ConvolutionBackward"
    assert_close(ours, theirs, rtol=1e-12, atol=1e-12, name="folded forward")
    inputs = [t for t in (x, w, b, gamma, beta) if t is not None]
    gy = torch.randn(theirs.shape, generator=g, dtype=torch.float64)
    for a, c in zip(torch.autograd.grad(ours, inputs, gy), torch.autograd.grad(theirs, inputs, gy)):
        assert_close(a, c, rtol=1e-10, atol=1e-12, name="folded gradient")


def test_batch_norm_folds_only_the_untouched_convolution_output():
    g = torch.Generator().manual_seed(8)
    x = torch.randn(2, 2, 5, 5, generator=g, dtype=torch.float64)
    w = torch.randn(3, 2, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    mean, var = torch.randn(3, generator=g, dtype=torch.float64), torch.rand(3, generator=g, dtype=torch.float64) + 0.5
    with fast_second_order():
        changed = F.conv2d(x, w)
        changed.add_(1.0)  # modified in place after the convolution: folding would drop the change
        after_changed = F.batch_norm(changed, mean, var)
        other = F.conv2d(x, w)
        after_other = F.batch_norm(torch.tanh(other), mean, var)  # not the convolution's output
    with fast_second_order(fold_batch_norm=False):
        unfolded = F.batch_norm(F.conv2d(x, w), mean, var)
    assert type(after_changed.grad_fn).__name__ == "_EvalBatchNormBackward"
    assert type(after_other.grad_fn).__name__ == "_EvalBatchNormBackward"
    assert type(unfolded.grad_fn).__name__ == "_EvalBatchNormBackward"
    assert_close(after_changed, F.batch_norm(F.conv2d(x, w) + 1.0, mean, var), rtol=1e-12, atol=1e-12, name="in place")
    assert_close(after_other, F.batch_norm(torch.tanh(F.conv2d(x, w)), mean, var), rtol=1e-12, atol=1e-12,
                 name="tanh between")


def test_batch_norm_is_not_folded_across_changed_inputs_or_a_cut_graph():
    """Folding recomputes the convolution from its arguments: not when they changed in place since, when the output
    was detached in place, or when the convolution ran without a graph (values and gradients as PyTorch's)."""
    g = torch.Generator().manual_seed(11)
    mean, var = torch.randn(3, generator=g, dtype=torch.float64), torch.rand(3, generator=g, dtype=torch.float64) + 0.5
    gamma = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)

    def fresh():
        x = torch.randn(2, 2, 5, 5, generator=torch.Generator().manual_seed(12), dtype=torch.float64)
        w = torch.randn(3, 2, 3, 3, generator=torch.Generator().manual_seed(13), dtype=torch.float64)
        return x, w.requires_grad_()

    cases = {}
    with fast_second_order():
        x, w = fresh()
        y = F.conv2d(x, w)
        x.mul_(2.0)  # the convolution's input changed after it ran
        cases["input changed"] = (F.batch_norm(y, mean, var, gamma), (x / 2, w, False))
        x, w = fresh()
        y = F.conv2d(x, w)
        with torch.no_grad():
            w.mul_(3.0)  # its weight changed after it ran
        cases["weight changed"] = (F.batch_norm(y, mean, var, gamma), (x, w / 3, False))
        x, w = fresh()
        y = F.conv2d(x, w).detach_()
        cases["detached"] = (F.batch_norm(y, mean, var, gamma), (x, w, True))
        x, w = fresh()
        with torch.no_grad():  # a frozen stem
            y = F.conv2d(x, w)
        cases["no_grad"] = (F.batch_norm(y, mean, var, gamma), (x, w, True))
    for name, (ours, (x, w, cut)) in cases.items():
        theirs = F.batch_norm(F.conv2d(x, w.detach() if cut else w), mean, var, gamma)
        assert type(ours.grad_fn).__name__ == "_EvalBatchNormBackward", name
        assert_close(ours, theirs, rtol=1e-12, atol=1e-12, name=name)
        if cut:  # the cut graph stays cut: the convolution's weight gets no gradient, γ its own
            assert torch.autograd.grad(ours, w, torch.ones_like(ours), allow_unused=True)[0] is None, name
            assert_close(torch.autograd.grad(ours, gamma, torch.ones_like(ours))[0],
                         torch.autograd.grad(theirs, gamma, torch.ones_like(theirs))[0], rtol=1e-10, atol=1e-12,
                         name=f"{name} gradient")


def test_batch_norm_in_another_dtype_is_not_folded_and_keeps_the_input_dtype():
    g = torch.Generator().manual_seed(16)
    f32 = dict(dtype=torch.float32)
    x = torch.randn(2, 2, 5, 5, generator=g, **f32).to(torch.bfloat16)
    w = torch.randn(3, 2, 3, 3, generator=g, **f32).to(torch.bfloat16).requires_grad_()
    mean, var = torch.zeros(3, **f32), torch.ones(3, **f32) + torch.rand(3, generator=g, **f32)  # float32 statistics
    gamma = torch.randn(3, generator=g, requires_grad=True, **f32)
    with fast_second_order():
        ours = F.batch_norm(F.conv2d(x, w), mean, var, gamma)
    theirs = F.batch_norm(F.conv2d(x, w), mean, var, gamma)
    assert type(ours.grad_fn).__name__ == "_EvalBatchNormBackward"
    assert ours.dtype == theirs.dtype == torch.bfloat16
    assert_close(ours.float(), theirs.float(), rtol=2e-2, atol=2e-2, name="bfloat16")


class _ConvBatchNorm(nn.Module):
    """Convolution → BatchNorm → head, in one of two shapes the fold must respect: ``"shared"``, the convolution's
    output also feeds a second path (the unfolded output stays in use); ``"frozen"``, the convolution runs under
    ``no_grad`` (a frozen stem: its weights have zero curvature, and folding must not reconnect them)."""

    def __init__(self, variant: str):
        super().__init__()
        self.variant = variant
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.head = nn.Linear(3 * 4 * 4, 3)

    def forward(self, x):
        with torch.no_grad() if self.variant == "frozen" else contextlib.nullcontext():
            y = self.conv(x)
        h = torch.tanh(self.bn(y))
        return self.head((h + 0.5 * y.sin() if self.variant == "shared" else h).flatten(1))


@pytest.mark.parametrize("variant", ["shared", "frozen"])
def test_convolution_then_batch_norm_hessian_equals_dense(variant):
    model = _init(_ConvBatchNorm(variant), seed=9)
    g = torch.Generator().manual_seed(10)
    x = torch.randn(6, 2, 4, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (6,), generator=g)
    expected = autograd_hessian(model, x, y, F.cross_entropy)  # PyTorch's own kernels (frozen: zero stem block)
    for strategy in ("graph", "double_backward"):
        op = HessianOperator(model, [(x[:4], y[:4]), (x[4:], y[4:])], masks=None, strategy=strategy)
        assert_close(operator_matrix(op), expected, rtol=RTOL, atol=ATOL, name=f"{variant}/{strategy}")


def test_what_is_not_handled_passes_through():
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64)
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    with fast_second_order():
        same = F.conv2d(x, w, padding="same")  # string padding
        unbatched = F.conv2d(x[0], w)  # no batch dimension
        bn = F.batch_norm(x, None, None, training=True)  # batch statistics
    assert type(same.grad_fn).__name__ == "ConvolutionBackward0"
    assert type(unbatched.grad_fn).__name__ != "_ConvolutionBackward"
    assert_close(same, F.conv2d(x, w, padding="same"), rtol=0, atol=0, name="same")
    assert_close(bn, F.batch_norm(x, None, None, training=True), rtol=0, atol=0, name="batch stats")


def test_keyword_calls_are_replaced_too():
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64)
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    mean, var = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    with fast_second_order():
        y = F.conv2d(input=x, weight=w, stride=2, padding=1)
        z = F.batch_norm(input=y, running_mean=mean, running_var=var, eps=1e-3)
    assert type(y.grad_fn).__name__ == "_ConvolutionBackward"
    assert type(z.grad_fn).__name__ == "_ConvolutionBackward"  # folded into a convolution of its own
    assert_close(z, F.batch_norm(F.conv2d(x, w, stride=2, padding=1), mean, var, eps=1e-3), rtol=1e-12, atol=1e-12,
                 name="keywords")


def test_forward_values_and_gradients_match_pytorch():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 4, 9, 8, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 2, 3, 2, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, generator=g, dtype=torch.float64, requires_grad=True)
    kw = dict(stride=(2, 3), padding=(1, 2), dilation=(2, 1), groups=2)
    ours, theirs = conv(x, w, b, **kw), F.conv2d(x, w, b, **kw)
    assert_close(ours, theirs, rtol=1e-12, atol=1e-12, name="conv forward")
    gy = torch.randn(theirs.shape, generator=g, dtype=torch.float64)
    for a, c in zip(torch.autograd.grad(ours, (x, w, b), gy), torch.autograd.grad(theirs, (x, w, b), gy)):
        assert_close(a, c, rtol=1e-10, atol=1e-12, name="conv gradient")
    mean, var = torch.randn(4, generator=g, dtype=torch.float64), torch.rand(4, generator=g, dtype=torch.float64) + 0.2
    gamma, beta = torch.randn(4, generator=g, dtype=torch.float64), torch.randn(4, generator=g, dtype=torch.float64)
    assert_close(batch_norm_affine(x, mean, var, gamma, beta, eps=1e-3),
                 F.batch_norm(x, mean, var, gamma, beta, training=False, eps=1e-3), rtol=1e-12, atol=1e-12, name="bn")
    assert_close(batch_norm_affine(x, mean, var), F.batch_norm(x, mean, var), rtol=1e-12, atol=1e-12, name="bn plain")


def test_third_order_through_the_weight_gradient():
    """The weight gradient's own backward is differentiable (products of products, e.g. for Hessian-of-HVP)."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 2, 6, 6, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)

    def scalar(fn):
        y = fn(x, w, stride=2, padding=1)
        (gw,) = torch.autograd.grad(y.tanh().sum(), w, create_graph=True)
        (hw,) = torch.autograd.grad((gw * gw).sum(), w, create_graph=True)
        return hw.pow(2).sum()

    ours = torch.autograd.grad(scalar(conv), (x, w))
    theirs = torch.autograd.grad(scalar(F.conv2d), (x, w))
    for a, c in zip(ours, theirs):
        assert_close(a, c, rtol=1e-9, atol=1e-12, name="third order")


class _ReLUForms(nn.Module):
    """Every out-of-place spelling of ReLU the replacement handles, around a convolution with BatchNorm."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.act = nn.ReLU()
        self.fc1 = nn.Linear(3 * 4 * 4, 6)
        self.fc2 = nn.Linear(6, 5)
        self.fc3 = nn.Linear(5, 3)

    def forward(self, x):
        h = self.act(self.bn(self.conv(x))).flatten(1)  # nn.ReLU -> F.relu
        h = torch.relu(self.fc1(h))
        return self.fc3(self.fc2(h).relu())  # Tensor.relu


def test_relu_networks_hessian_equals_dense():
    model = _init(_ReLUForms(), seed=5)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(7, 2, 4, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (7,), generator=g)
    expected = autograd_hessian(model, x, y, F.cross_entropy)  # PyTorch's own ReLU derivatives
    assert expected.abs().max() > 0
    for strategy in ("graph", "double_backward"):
        op = HessianOperator(model, [(x[:4], y[:4]), (x[4:], y[4:])], masks=None, strategy=strategy)
        assert_close(operator_matrix(op), expected, rtol=RTOL, atol=ATOL, name=f"relu/{strategy}")
    op = HessianOperator(model, [(x, y)], masks=None, batched_strategy="graph_batched")
    V = torch.randn(op.size, 3, generator=g, dtype=torch.float64)
    assert_close(op.matmat(V), expected @ V, rtol=RTOL, atol=ATOL, name="relu/graph_batched")


def test_relu_replacement_is_recorded_and_in_place_passes_through():
    model = _init(_ReLUForms(), seed=5)
    x = torch.randn(3, 2, 4, 4, dtype=torch.float64)
    y = torch.tensor([0, 1, 2])
    fast = _first_order_graph(model, x, y, True)
    native = _first_order_graph(model, x, y, False)
    assert "_ReLUMaskBackward" in fast and "ThresholdBackwardBackward0" not in fast
    assert "ThresholdBackwardBackward0" in native
    z = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    with fast_second_order():
        out = F.relu(z)
        keyword = torch.relu(input=z)
        inplace = F.relu(z.clone(), inplace=True)
        positional_inplace = F.relu(z.clone(), True)
    assert type(out.grad_fn).__name__ == "_ReLUBackward" and type(keyword.grad_fn).__name__ == "_ReLUBackward"
    assert type(inplace.grad_fn).__name__ != "_ReLUBackward"
    assert type(positional_inplace.grad_fn).__name__ != "_ReLUBackward"
    assert_close(keyword, torch.relu(z), rtol=0, atol=0, name="relu by keyword")
    assert_close(out, torch.relu(z), rtol=0, atol=0, name="relu forward")
    assert_close(inplace, torch.relu(z), rtol=0, atol=0, name="relu in place")
    gy = torch.randn(4, 5, dtype=torch.float64)
    assert_close(torch.autograd.grad(out, z, gy)[0], torch.autograd.grad(torch.relu(z), z, gy)[0], rtol=0, atol=0,
                 name="relu gradient")


def test_relu_mask_is_differentiable_again():
    """Third order through the ReLU's recorded backward: the mask is linear in the gradient it masks."""
    g = torch.Generator().manual_seed(6)
    x = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 4, generator=g, dtype=torch.float64, requires_grad=True)

    def scalar(act):
        out = act(x @ w)
        (gw,) = torch.autograd.grad(out.pow(3).sum(), w, create_graph=True)
        (hw,) = torch.autograd.grad((gw * gw).sum(), w, create_graph=True)
        return hw.pow(2).sum()

    with fast_second_order():
        ours = torch.autograd.grad(scalar(F.relu), (x, w))
    theirs = torch.autograd.grad(scalar(F.relu), (x, w))
    for a, c in zip(ours, theirs):
        assert_close(a, c, rtol=1e-10, atol=1e-12, name="relu third order")
