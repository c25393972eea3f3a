"""The examples in the docstrings of prunehess.checkpoints run and stay true."""
from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize("name", ["zips", "naming", "loading"])
def test_docstring_examples(name):
    module = importlib.import_module(f"prunehess.checkpoints.{name}")
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0
