"""Imports paid only when used: the command line loads no figure code, scikit-learn or torchvision until a command
needs them, and the packages that re-export lazily (``prunehess.plots``, ``prunehess.geometry``) resolve every
name they list."""
from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

HEAVY = ("matplotlib", "sklearn", "torchvision")


def test_the_command_line_imports_no_figures_sklearn_or_torchvision():
    code = ("import sys, prunehess.cli, prunehess.pipeline, prunehess.analyses; "
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"imported at start-up: {out.strip()}"


@pytest.mark.parametrize("package", ["prunehess.plots", "prunehess.geometry"])
def test_every_listed_name_resolves_from_its_module(package):
    module = importlib.import_module(package)
    for name in module.__all__:
        value = getattr(module, name)
        assert value is not None and name in dir(module), name
    with pytest.raises(AttributeError, match="has no attribute 'not_a_name'"):
        getattr(module, "not_a_name")
    submodule = "density" if package == "prunehess.plots" else "curves"  # bound as eager imports bound it
    assert getattr(module, submodule) is importlib.import_module(f"{package}.{submodule}")
