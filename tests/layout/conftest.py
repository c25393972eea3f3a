"""An empty output tree per test."""
from __future__ import annotations

import pytest

from prunehess.layout import OutputLayout


@pytest.fixture
def out(tmp_path) -> OutputLayout:
    return OutputLayout(tmp_path / "output")
