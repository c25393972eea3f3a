"""Shared fixtures: float64 for the engine tests, and the tiny cases of ``tests/cases.py`` as parametrized fixtures.

``tests/`` is put on ``sys.path`` so that test modules (imported with ``--import-mode=importlib``, no packages)
can ``import cases`` and ``import helpers``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

import cases as _cases  # noqa: E402


@pytest.fixture
def float64():
    """Make float64 the default dtype for one test (engine tests: ``pytestmark = usefixtures("float64")``)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield torch.float64
    finally:
        torch.set_default_dtype(previous)


@pytest.fixture(params=list(_cases.MODEL_CASES), ids=list(_cases.MODEL_CASES))
def case(request, float64) -> _cases.Case:
    """Every tiny model case (MLPs, CNN with BatchNorm, masked MLPs), built fresh in float64."""
    return _cases.build(request.param)


@pytest.fixture(params=list(_cases.MASKED_CASES), ids=list(_cases.MASKED_CASES))
def masked_case(request, float64) -> _cases.Case:
    """The pruned cases only (exact zeros, and ``torch.nn.utils.prune`` pairs)."""
    return _cases.build(request.param)
