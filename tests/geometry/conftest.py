"""The pipeline tests' ``kit`` (tiny zips on digits, ``prunehess extract`` in-process), and finished extract
outputs shared by the geometry tests.

``tests/pipeline/conftest.py`` is loaded by path (under ``--import-mode=importlib`` a module named ``conftest``
would be ``tests/conftest.py``) and its ``kit`` fixture re-exported here.

``run`` is a lottery-ticket zip of the tiny 64-8-10 tanh MLP (610 parameters): the initial weights and three prune
iterations (0 %, 20 %, 36 % of each weight matrix pruned, exact zeros), each with an epoch-0 snapshot (the initial
weights, pruned) and a best checkpoint (other weights); ``extracted`` is its extract output with the top two
eigenvectors saved. Tests copy it before writing into it.
"""
from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

# the test modules import make_run below from ``geometry_support`` (``import conftest`` would find tests/conftest.py)
sys.modules.setdefault("geometry_support", sys.modules[__name__])

_KIT_PATH = Path(__file__).resolve().parents[1] / "pipeline" / "conftest.py"
if "pipeline_kit" not in sys.modules:
    _spec = importlib.util.spec_from_file_location("pipeline_kit", _KIT_PATH)
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["pipeline_kit"] = _module
    _spec.loader.exec_module(_module)
kit = sys.modules["pipeline_kit"].kit  # the fixture, re-exported

PRUNE = (0.0, 0.2, 0.36)
TAGS_BEST = ("001_best", "002_best", "003_best")


def make_run(kit, folder: Path, seed: int = 0, name: str = "run.zip") -> tuple[Path, str]:
    """A lottery-ticket zip of the tiny MLP in ``folder``; returns the zip and the ``--model`` spec."""
    model = kit.model_file(folder)
    entries = [("initial_state_dict_lt.pth", kit.tiny_state(seed))]
    for iteration, fraction in enumerate(PRUNE):
        entries.append((f"{iteration}_model_lt_epoch0.pth", kit.tiny_state(seed, prune=fraction)))
        entries.append((f"{iteration}_model_lt.pth", kit.tiny_state(seed + 10 + iteration, prune=fraction)))
    return kit.write_zip(folder / name, entries), model


@pytest.fixture(scope="session")
def extracted(kit, tmp_path_factory) -> SimpleNamespace:
    """The extract output of ``run`` (top two eigenvectors saved), and how it was made."""
    base = tmp_path_factory.mktemp("geometry_run")
    zip_path, model = make_run(kit, base)
    out = base / "out"
    kit.extract(base, out, "--zipname", zip_path.name, "--save-eigenvectors", "--top-n", "2", "--bottom-n", "0",
                model=model)
    return SimpleNamespace(base=base, zip=zip_path, model=model, output=out)


@pytest.fixture
def output(extracted, tmp_path) -> Path:
    """A copy of the extracted output, for one test to write into."""
    target = tmp_path / "out"
    shutil.copytree(extracted.output, target)
    return target
