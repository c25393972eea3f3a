"""Linear operators: the boundary between autograd and linear algebra.

Estimators take a :class:`LinearOperator` (or a plain square tensor) and never a model. An operator is a
square matrix ``A`` known only through products: ``A @ v`` for a vector ``v`` of shape ``(n,)`` and
``A @ V`` for a block ``V`` of shape ``(n, k)``.

Example:
    >>> import torch
    >>> from prunehess.operators import TensorOperator
    >>> A = TensorOperator(torch.diag(torch.tensor([3.0, 1.0])))
    >>> (A @ torch.ones(2)).tolist()
    [3.0, 1.0]
"""
from __future__ import annotations

from typing import Callable, Optional, Union

import torch
from torch import Tensor

__all__ = ["LinearOperator", "LambdaOperator", "TensorOperator", "as_operator"]


class LinearOperator:
    """A square linear operator of size ``n`` on vectors of a given dtype and device.

    Subclasses implement :meth:`_matvec`, and may override :meth:`_matmat` when applying the operator to
    ``k`` vectors at once is cheaper than ``k`` separate products. ``n_matvecs`` counts the vectors applied.
    ``fresh_products``: every product is a new tensor that nothing else holds, so estimators may work in it in
    place (otherwise they copy it first; a function may return its input or a buffer it keeps).
    """

    fresh_products: bool = False

    def __init__(self, size: int, dtype: torch.dtype, device: torch.device | str):
        self.size = int(size)
        self.dtype = dtype
        self.device = torch.device(device)
        self.n_matvecs = 0

    @property
    def shape(self) -> tuple[int, int]:
        return (self.size, self.size)

    def _matvec(self, v: Tensor) -> Tensor:
        raise NotImplementedError

    def _matmat(self, V: Tensor) -> Tensor:
        return torch.stack([self._matvec(V[:, j]) for j in range(V.shape[1])], dim=1)

    def matvec(self, v: Tensor) -> Tensor:
        """``A @ v`` for ``v`` of shape ``(n,)``."""
        self._check(v, 1)
        self.n_matvecs += 1
        return self._matvec(v)

    def matmat(self, V: Tensor) -> Tensor:
        """``A @ V`` for ``V`` of shape ``(n, k)``."""
        self._check(V, 2)
        self.n_matvecs += V.shape[1]
        if V.shape[1] == 1:
            return self._matvec(V[:, 0]).unsqueeze(1)
        return self._matmat(V)

    def __matmul__(self, x: Tensor) -> Tensor:
        return self.matvec(x) if x.dim() == 1 else self.matmat(x)

    def to_dense(self) -> Tensor:
        """The matrix, column by column (``n`` products: tiny operators only)."""
        return self.matmat(torch.eye(self.size, dtype=self.dtype, device=self.device))

    def _check(self, x: Tensor, ndim: int) -> None:
        if x.dim() != ndim or x.shape[0] != self.size:
            raise ValueError(f"expected a tensor of {ndim} dims with leading size {self.size}, got {tuple(x.shape)}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, dtype={self.dtype}, device={self.device})"


class LambdaOperator(LinearOperator):
    """An operator from a function ``v -> A v`` (and optionally a batched ``V -> A V``)."""

    def __init__(
        self,
        matvec: Callable[[Tensor], Tensor],
        size: int,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        matmat: Optional[Callable[[Tensor], Tensor]] = None,
    ):
        super().__init__(size, dtype, device)
        self._fn = matvec
        self._fn_mat = matmat

    def _matvec(self, v: Tensor) -> Tensor:
        return self._fn(v)

    def _matmat(self, V: Tensor) -> Tensor:
        return self._fn_mat(V) if self._fn_mat is not None else super()._matmat(V)


class TensorOperator(LinearOperator):
    """A dense symmetric matrix as an operator (tests, references, small blocks)."""

    fresh_products = True

    def __init__(self, matrix: Tensor):
        if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"expected a square matrix, got shape {tuple(matrix.shape)}")
        super().__init__(matrix.shape[0], matrix.dtype, matrix.device)
        self.matrix = matrix

    def _matvec(self, v: Tensor) -> Tensor:
        return self.matrix @ v

    def _matmat(self, V: Tensor) -> Tensor:
        return self.matrix @ V

    def to_dense(self) -> Tensor:
        return self.matrix


def as_operator(A: Union[LinearOperator, Tensor]) -> LinearOperator:
    """Accept an operator or a square tensor."""
    if isinstance(A, LinearOperator):
        return A
    if isinstance(A, Tensor):
        return TensorOperator(A)
    raise TypeError(f"expected a LinearOperator or a square Tensor, got {type(A).__name__}")
