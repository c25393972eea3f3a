"""The diagonal of a curvature operator: Hutchinson's estimate, per-output-channel traces, and the exact diagonal.

Hutchinson's diagonal estimator (Bekas, Kokiopoulou & Saad, *Appl. Numer. Math.* 57, 2007): for probes ``z`` with
independent Rademacher entries, ``(z ⊙ A z)_k = A_kk z_k² + Σ_{j≠k} A_kj z_k z_j`` with ``z_k² = 1`` and
``E[z_k z_j] = 0``, so ``E[z ⊙ A z] = diag(A)``, with variance ``Σ_{j≠k} A_kj²`` per coordinate. The estimate is the
mean over ``m`` probes, its standard error per coordinate the probes' sample standard deviation over ``√m``
(Welford's running form). Every product serves all coordinates; probes go ``batch_size`` at a time through
``A.matmat``.

Per-output-channel traces, the criterion of Hessian-aware pruning (Yu et al., "Hessian-Aware Pruning and Optimal
Neural Implant", WACV 2022): for a weight of a linear or convolutional layer, output channel ``c``'s block trace is
the sum of the diagonal over its surviving coordinates. From the same probes, ``Σ_{k∈c} z_k (Az)_k`` per probe, whose
sample standard deviation gives the channel's standard error (the coordinates' errors are correlated).

:func:`exact_diagonal` takes no probes: a :class:`~prunehess.operators.ggn.GGNOperator`'s diagonal is exact from
per-sample vector-Jacobian products; a :class:`~prunehess.operators.hessian.HessianOperator`'s equals it where the
network is piecewise linear in each selected parameter tensor (ReLU / max-pool / eval-mode BatchNorm / linear and
convolution layers, any loss: :mod:`prunehess.operators.linearity` derives and checks the condition) and is refused
otherwise.

Example:
    >>> import torch
    >>> from prunehess.estimators import hutchinson_diagonal
    >>> A = torch.tensor([[2.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
    >>> res = hutchinson_diagonal(A, n_probes=400, batch_size=50, seed=1)
    >>> bool((res.estimate - torch.tensor([2.0, 3.0])).abs().max() < 4 * res.stderr.max()), res.n_hvp
    (True, 400)
    >>> hutchinson_diagonal(torch.diag(torch.tensor([2.0, 3.0])), n_probes=4).estimate.tolist()  # exact on diagonals
    [2.0, 3.0]
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence, Union

import torch
from torch import Tensor

from prunehess.estimators.sampling import make_generator, rademacher
from prunehess.operators.base import LinearOperator, as_operator
from prunehess.operators.ggn import GGNOperator
from prunehess.operators.hessian import HessianOperator
from prunehess.operators.linearity import check_piecewise_linear
from prunehess.operators.params import ParameterSpace

__all__ = ["Channels", "ChannelTraces", "DiagonalResult", "output_channels", "hutchinson_diagonal", "exact_diagonal"]


@dataclass(frozen=True)
class Channels:
    """Which output channel each surviving coordinate of one weight belongs to."""

    coords: slice  # where the weight's surviving coordinates sit in a flat vector
    channel: Tensor  # (len,) int64: the output channel (index along dim 0) of each, in flat order
    count: int  # the weight's output channels


@dataclass(frozen=True)
class ChannelTraces:
    """Per-output-channel traces of one weight: ``estimate`` and ``stderr`` of shape ``(channels,)`` (float64), and
    ``surviving``, the surviving weights of each channel (a channel with none has trace 0 and stderr 0)."""

    estimate: Tensor
    stderr: Tensor
    surviving: Tensor


@dataclass(frozen=True)
class DiagonalResult:
    """A diagonal, flat over the operator's coordinates (float64, on the CPU).

    Attributes:
        estimate: ``(n,)`` the diagonal (estimated or exact).
        stderr: ``(n,)`` standard error per coordinate (zeros when exact).
        n_hvp: operator products used.
        probes: Rademacher probes used (0 when exact).
        method: ``"hutchinson"`` or ``"exact"``.
        channels: per-output-channel traces by weight name (when asked for).
    """

    estimate: Tensor
    stderr: Tensor
    n_hvp: int
    probes: int
    method: str
    channels: Mapping[str, ChannelTraces] = field(default_factory=dict)

    def to_tensors(self, space: ParameterSpace, which: str = "estimate") -> dict[str, Tensor]:
        """``which`` (``"estimate"`` or ``"stderr"``) as name → tensor of the parameter's shape, ``NaN`` at pruned
        coordinates (``space``: the operator's, e.g. ``H.space``)."""
        full = space.from_flat(getattr(self, which))
        return {n: full[n].masked_fill(~space.masks[n].bool().to(full[n].device), math.nan) if n in space.masks
                else full[n] for n in space.names}


def output_channels(A: Union[LinearOperator, ParameterSpace], names: Optional[Sequence[str]] = None) -> dict[str, Channels]:
    """The output channels of the weights ``names`` (default: every selected tensor of two or more dimensions, the
    weights of linear and convolutional layers) of an operator with a ``space`` (or of a space)."""
    space = A if isinstance(A, ParameterSpace) else A.space
    slices = space.slices()
    shapes = dict(zip(space.names, space.shapes))
    names = [n for n in space.names if len(shapes[n]) >= 2] if names is None else list(names)
    out = {}
    for name in names:
        shape = torch.Size(shapes[name])
        per_channel = shape.numel() // shape[0] if shape.numel() else 1
        position = torch.arange(shape.numel())
        mask = space.masks.get(name)
        if mask is not None:
            position = position[mask.reshape(-1).bool().cpu()]
        out[name] = Channels(slices[name], position // per_channel, int(shape[0]))
    return out


def _channel_sums(P: Tensor, channels: Mapping[str, Channels]) -> dict[str, Tensor]:
    """For columns ``P`` (``n × b``), each weight's per-channel sums ``(b, channels)``."""
    out = {}
    for name, ch in channels.items():
        sums = P.new_zeros(ch.count, P.shape[1])
        out[name] = sums.index_add_(0, ch.channel.to(P.device), P[ch.coords]).T
    return out


def hutchinson_diagonal(
    A: Union[LinearOperator, Tensor],
    *,
    n_probes: int = 100,
    batch_size: int = 1,
    seed: int = 0,
    channels: Optional[Mapping[str, Channels]] = None,
) -> DiagonalResult:
    """Hutchinson's estimate of ``diag(A)`` from ``n_probes`` Rademacher probes (CPU generator seeded ``seed``: the
    same on every device), with a standard error per coordinate and, for ``channels`` (from
    :func:`output_channels`), per-output-channel traces from the same probes."""
    op = as_operator(A)
    if n_probes < 2:
        raise ValueError(f"n_probes must be at least 2 (for a standard error), got {n_probes}")
    generator = make_generator(seed)
    channels = dict(channels or {})
    mean = torch.zeros(op.size, dtype=torch.float64, device=op.device)
    m2 = torch.zeros_like(mean)  # Welford: Σ (x − mean_old)(x − mean_new)
    per_channel: dict[str, list[Tensor]] = {name: [] for name in channels}
    count = 0
    while count < n_probes:
        b = min(batch_size, n_probes - count)
        Z = rademacher((op.size, b), generator=generator, dtype=op.dtype, device=op.device)
        AZ = op.matmat(Z) if b > 1 else op.matvec(Z[:, 0]).unsqueeze(1)
        P = (AZ * Z).double()  # z ⊙ Az, one column per probe
        for j in range(b):
            count += 1
            delta = P[:, j] - mean
            mean += delta / count
            m2 += delta * (P[:, j] - mean)
        for name, sums in _channel_sums(P, channels).items():
            per_channel[name].append(sums.cpu())
    stderr = (m2 / (count - 1) / count).clamp_min_(0).sqrt_()
    traces = {}
    for name, parts in per_channel.items():
        samples = torch.cat(parts)  # (probes, channels)
        surviving = torch.bincount(channels[name].channel, minlength=channels[name].count)
        traces[name] = ChannelTraces(samples.mean(0), samples.std(0, unbiased=True) / math.sqrt(count), surviving)
    return DiagonalResult(mean.cpu(), stderr.cpu(), count, count, "hutchinson", traces)


def exact_diagonal(
    A: Union[GGNOperator, HessianOperator],
    *,
    channels: Optional[Mapping[str, Channels]] = None,
    max_bytes: int = 2**28,
) -> DiagonalResult:
    """The exact diagonal of a :class:`~prunehess.operators.ggn.GGNOperator`, or of a
    :class:`~prunehess.operators.hessian.HessianOperator` whose network is piecewise linear in each selected
    parameter tensor (then ``diag(H) = diag(G)``: checked on the model by
    :func:`~prunehess.operators.linearity.check_piecewise_linear`, which raises
    :class:`~prunehess.operators.linearity.NotPiecewiseLinearError` naming the module that breaks it). From
    per-sample vector-Jacobian products (about one backward pass per sample and class; ``max_bytes`` bounds their
    memory), no operator product; summed across processes by the operator's ``reduce``. ``channels``: their traces
    as sums (standard error 0)."""
    if isinstance(A, HessianOperator):
        check_piecewise_linear(A.problem.model, A.problem.minibatches[0][0][:2], A.names)
        ggn = GGNOperator.like(A)
    elif isinstance(A, GGNOperator):
        ggn = A
    else:
        raise TypeError(f"exact_diagonal needs a GGNOperator or a HessianOperator, got {type(A).__name__}")
    diag = ggn.diagonal(max_bytes=max_bytes).double().cpu()
    traces = {}
    for name, sums in _channel_sums(diag.unsqueeze(1), dict(channels or {})).items():
        count = channels[name].count
        traces[name] = ChannelTraces(sums[0], torch.zeros(count, dtype=torch.float64),
                                     torch.bincount(channels[name].channel, minlength=count))
    return DiagonalResult(diag, torch.zeros_like(diag), 0, 0, "exact", traces)
