"""LinearOperator, LambdaOperator, TensorOperator: products, shapes, counting."""
from __future__ import annotations

import pytest
import torch

from prunehess.operators import LambdaOperator, LinearOperator, TensorOperator, as_operator

pytestmark = pytest.mark.usefixtures("float64")


def matrix(n: int = 5) -> torch.Tensor:
    A = torch.randn(n, n, generator=torch.Generator().manual_seed(0))
    return A + A.T


def test_tensor_operator_products_and_counting():
    A = matrix()
    op = TensorOperator(A)
    assert op.shape == (5, 5) and op.size == 5 and op.dtype == torch.float64 and op.device == torch.device("cpu")
    v, V = torch.randn(5), torch.randn(5, 3)
    assert torch.equal(op.matvec(v), A @ v)
    assert op.n_matvecs == 1
    assert torch.equal(op.matmat(V), A @ V)
    assert op.n_matvecs == 4
    assert torch.equal(op @ v, A @ v) and torch.equal(op @ V, A @ V)
    assert op.n_matvecs == 8
    assert op.to_dense() is A and op.n_matvecs == 8  # free for a dense matrix
    assert "TensorOperator(size=5" in repr(op)


def test_shape_checks():
    op = TensorOperator(matrix())
    for bad in (torch.zeros(4), torch.zeros(5, 2, 1), torch.zeros(4, 2), torch.zeros(())):
        with pytest.raises(ValueError, match="expected a tensor"):
            op @ bad
    with pytest.raises(ValueError, match="expected a tensor of 1 dims"):
        op.matvec(torch.zeros(5, 1))
    with pytest.raises(ValueError, match="expected a tensor of 2 dims"):
        op.matmat(torch.zeros(5))
    assert op.n_matvecs == 0
    with pytest.raises(ValueError, match="square"):
        TensorOperator(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="square"):
        TensorOperator(torch.zeros(3))


def test_lambda_operator_without_matmat_loops_over_columns():
    A = matrix()
    calls = []

    def mv(v):
        calls.append(v.shape)
        return A @ v

    op = LambdaOperator(mv, 5, dtype=torch.float64)
    V = torch.randn(5, 4)
    torch.testing.assert_close(op.matmat(V), A @ V, rtol=1e-14, atol=1e-14)
    assert calls == [torch.Size([5])] * 4 and op.n_matvecs == 4
    torch.testing.assert_close(op.to_dense(), A, rtol=1e-14, atol=1e-14)
    assert op.n_matvecs == 9  # to_dense costs n products on a generic operator


def test_lambda_operator_uses_batched_function():
    A = matrix()
    batched = []
    op = LambdaOperator(lambda v: A @ v, 5, dtype=torch.float64, matmat=lambda V: batched.append(V.shape[1]) or A @ V)
    V = torch.randn(5, 3)
    torch.testing.assert_close(op.matmat(V), A @ V, rtol=1e-14, atol=1e-14)
    assert batched == [3] and op.n_matvecs == 3
    op.matmat(V[:, :1])  # one column: the single-vector path
    assert batched == [3] and op.n_matvecs == 4


def test_base_class_and_as_operator():
    op = LinearOperator(3, torch.float64, "cpu")
    with pytest.raises(NotImplementedError):
        op.matvec(torch.zeros(3))
    A = matrix(3)
    assert isinstance(as_operator(A), TensorOperator)
    assert as_operator(op) is op
    with pytest.raises(TypeError, match="LinearOperator"):
        as_operator([[1.0]])
