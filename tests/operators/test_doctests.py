"""The docstring examples of the operator modules run and print what they say (default float32 dtype)."""
from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["base", "hessian", "params", "masks", "hvp", "engine", "tuning", "cudagraph"]
WITH_EXAMPLES = {"base", "hessian", "engine", "tuning"}


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"prunehess.operators.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} doctest examples failed in {module.__name__}"
    if name in WITH_EXAMPLES:
        assert result.attempted > 0
