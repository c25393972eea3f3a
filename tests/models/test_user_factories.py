"""User model factories: ``FILE.py:factory`` and ``package.module:factory``, and their one-line errors."""
from __future__ import annotations

import textwrap
import uuid
from pathlib import Path

import pytest
import torch
from torch import nn

from prunehess.errors import ConfigError
from prunehess.models import build_model

FACTORY_FILE = """
import torch
from torch import nn
from helper_{tag} import HIDDEN  # a sibling file: the file's folder is importable while it loads

def make(input_shape, num_classes, depth=0):
    model = nn.Sequential(nn.Flatten(), nn.Linear(int(torch.tensor(input_shape).prod()), HIDDEN),
                          nn.ReLU(), nn.Linear(HIDDEN, num_classes))
    model.depth_seen = depth
    return model

def make_all(**kwargs):
    model = nn.Identity()
    model.kwargs_seen = kwargs
    return model

class Net(nn.Module):
    def __init__(self, num_classes: int, *, batch_norm: bool = True):
        super().__init__()
        self.fc = nn.Linear(4, num_classes)
        self.batch_norm = batch_norm

def not_a_model(num_classes):
    return 42

def broken(num_classes):
    raise RuntimeError("weights\\nmissing")

NOT_CALLABLE = 3
"""


def _one_line(err: pytest.ExceptionInfo[ConfigError]) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


@pytest.fixture()
def factory_file(tmp_path: Path) -> Path:
    tag = uuid.uuid4().hex[:8]
    (tmp_path / f"helper_{tag}.py").write_text("HIDDEN = 5\n")
    path = tmp_path / "my_models.py"
    path.write_text(textwrap.dedent(FACTORY_FILE.format(tag=tag)))
    return path


def test_factory_from_file_gets_only_accepted_kwargs(factory_file: Path) -> None:
    model = build_model(f"{factory_file}:make", input_shape=(1, 8, 8), num_classes=4, depth=32)
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 4)
    assert model.depth_seen == 32
    assert model[1].out_features == 5


def test_factory_with_var_kwargs_gets_everything(factory_file: Path) -> None:
    model = build_model(f"{factory_file}:make_all", input_shape=(3, 32, 32), num_classes=10, residual=False)
    assert model.kwargs_seen == {
        "input_shape": (3, 32, 32),
        "num_classes": 10,
        "batch_norm": True,
        "residual": False,
        "depth": 20,
    }


def test_factory_can_be_a_class(factory_file: Path) -> None:
    model = build_model(f"{factory_file}:Net", input_shape=(1, 2, 2), num_classes=3, batch_norm=False)
    assert isinstance(model, nn.Module) and model.fc.out_features == 3 and model.batch_norm is False


def test_factory_from_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = f"userpkg_{uuid.uuid4().hex[:8]}"
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / package / "nets.py").write_text(
        "import math\nfrom torch import nn\n\ndef tiny(num_classes, input_shape):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    model = build_model(f"{package}.nets:tiny", input_shape=(1, 8, 8), num_classes=10)
    assert model(torch.randn(5, 1, 8, 8)).shape == (5, 10)


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.py"
    with pytest.raises(ConfigError) as err:
        build_model(f"{missing}:make", input_shape=(1, 8, 8), num_classes=10)
    assert _one_line(err) == f"{missing}: model file not found"


def test_file_that_fails_to_import(tmp_path: Path) -> None:
    path = tmp_path / "bad.py"
    path.write_text("import torch\nraise ValueError('no\\ngood')\n")
    with pytest.raises(ConfigError) as err:
        build_model(f"{path}:make", input_shape=(1, 8, 8), num_classes=10)
    assert _one_line(err).startswith(f"{path}: cannot import model file: ValueError: no good")


def test_missing_module() -> None:
    with pytest.raises(ConfigError) as err:
        build_model("no_such_pkg_xyz.models:make", input_shape=(1, 8, 8), num_classes=10)
    assert _one_line(err).startswith("no_such_pkg_xyz.models: cannot import model module: ModuleNotFoundError")


@pytest.mark.parametrize(
    ("attribute", "expected"),
    [
        ("missing", "has no attribute 'missing'"),
        ("NOT_CALLABLE", "'NOT_CALLABLE' is a int, not a callable model factory"),
        ("not_a_model", "model factory 'not_a_model' returned a int, not a torch.nn.Module"),
        ("broken", "model factory 'broken' failed: RuntimeError: weights missing"),
    ],
)
def test_bad_factory_attribute_or_result(factory_file: Path, attribute: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_model(f"{factory_file}:{attribute}", input_shape=(1, 8, 8), num_classes=10)
    message = _one_line(err)
    assert message.startswith(f"{factory_file}: ") and expected in message


def test_spec_without_factory_name(factory_file: Path) -> None:
    with pytest.raises(ConfigError, match="FILE.py:factory") as err:
        build_model(f"{factory_file}:", input_shape=(1, 8, 8), num_classes=10)
    _one_line(err)
