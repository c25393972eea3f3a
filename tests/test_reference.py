"""The exact references: dense_hessian against an independent row-by-row autograd Hessian, and exact_spectrum."""
from __future__ import annotations

import doctest

import pytest
import torch

import cases
from helpers import assert_close
from prunehess import HessianOperator, reference
from prunehess.reference import dense_hessian, exact_spectrum

pytestmark = pytest.mark.usefixtures("float64")

RTOL, ATOL = 1e-10, 1e-13


def test_dense_hessian_every_coordinate(case):
    H = dense_hessian(case.model, case.data, case.loss_fn, masks=None)
    assert_close(H, case.full_hessian, rtol=RTOL, atol=ATOL, name=f"{case.name} masks=None")
    assert_close(H, H.T, rtol=RTOL, atol=ATOL, name="symmetric")


def test_dense_hessian_surviving_coordinates(case):
    """Default masks ("auto"): the surviving coordinates only, pruned ones held at their values."""
    H = dense_hessian(case.model, case.data, case.loss_fn)
    assert_close(H, case.expected, rtol=RTOL, atol=ATOL, name=f"{case.name} auto masks")
    op = HessianOperator(case.model, case.data, case.loss_fn, batched_strategy="graph_batched")
    assert_close(op.to_dense(), H, rtol=RTOL, atol=ATOL, name=f"{case.name} operator vs dense_hessian")


def test_dense_hessian_subset_and_single_batch(case):
    names = [case.names[-1], case.names[0]]
    H = dense_hessian(case.model, [(case.x, case.y)], case.loss_fn, params=names)
    assert_close(H, case.hessian(names, case.masks), rtol=RTOL, atol=ATOL, name=f"{case.name} subset {names}")


def test_dense_hessian_restores_flags_and_buffers(float64):
    c = cases.build("cnn_batchnorm")
    c.model.train()
    stats = {k: v.clone() for k, v in c.model.named_buffers()}
    H = dense_hessian(c.model, c.data, c.loss_fn)
    assert c.model.training and all(m.training for m in c.model.modules())
    assert all(torch.equal(v, stats[k]) for k, v in c.model.named_buffers())
    assert_close(H, c.expected, rtol=RTOL, atol=ATOL, name="eval-mode Hessian from a train-mode model")


def test_exact_spectrum_descending_pairs():
    A = torch.randn(7, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float32)
    A = A + A.T
    values, vectors = exact_spectrum(A)
    assert values.dtype == vectors.dtype == torch.float64
    assert bool((values[:-1] >= values[1:]).all())
    assert_close(A.double() @ vectors, vectors * values, rtol=0, atol=1e-5, name="A U = U Λ")
    assert_close(vectors.T @ vectors, torch.eye(7), rtol=0, atol=1e-12, name="orthonormal")
    assert_close(values, torch.linalg.eigvalsh(A.double()).flip(0), rtol=0, atol=1e-12, name="values")


def test_reference_docstrings():
    result = doctest.testmod(reference, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0
