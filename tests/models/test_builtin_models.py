"""The built-in models: shapes, the seed's state-dict layouts, and the BatchNorm/residual switches."""
from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from prunehess.errors import ConfigError
from prunehess.models import MODEL_NAMES, build_model, is_prunable

SHAPES = {"mnist": (1, 28, 28), "digits": (1, 8, 8), "cifar10": (3, 32, 32)}
SMALL_MODELS = ("fc1", "lenet5", "resnet20", "resnet18")


def _shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("name", SMALL_MODELS)
def test_small_models_forward(name: str, shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    model = build_model(name, input_shape=shape, num_classes=7).eval()
    out = model(torch.randn(3, *shape))
    assert out.shape == (3, 7)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_vgg11_bn_shapes_on_meta(shape: tuple[int, int, int]) -> None:
    with torch.device("meta"):
        model = build_model("vgg11_bn", input_shape=shape, num_classes=10).eval()
        out = model(torch.empty(2, *shape))
    assert out.shape == (2, 10)
    assert model.features[0].in_channels == shape[0]


def test_vgg11_bn_real_forward_on_8x8() -> None:
    """8x8 inputs: the last two MaxPools would shrink below one pixel and become Identity (keys unchanged)."""
    torch.manual_seed(0)
    model = build_model("vgg11_bn", input_shape=(1, 8, 8), num_classes=10).eval()
    assert isinstance(model.features[21], nn.Identity) and isinstance(model.features[28], nn.Identity)
    assert isinstance(model.features[14], nn.MaxPool2d)
    out = model(torch.randn(2, 1, 8, 8))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


@pytest.mark.parametrize(("batch_norm", "reference"), [(True, "vgg11_bn"), (False, "vgg11")])
def test_vgg_layout_matches_torchvision(batch_norm: bool, reference: str) -> None:
    with torch.device("meta"):
        ours = build_model("vgg11_bn", input_shape=(3, 32, 32), num_classes=10, batch_norm=batch_norm)
        theirs = getattr(torchvision.models, reference)(num_classes=10)
    assert _shapes(ours) == _shapes(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())


def test_fc1_layout_is_the_seeds() -> None:
    model = build_model("fc1", input_shape=(1, 28, 28), num_classes=10)
    assert _shapes(model) == {
        "classifier.0.weight": (300, 784),
        "classifier.0.bias": (300,),
        "classifier.2.weight": (100, 300),
        "classifier.2.bias": (100,),
        "classifier.4.weight": (10, 100),
        "classifier.4.bias": (10,),
    }
    assert len(list(model.parameters())) == 6  # the seed's layers=6
    cifar = build_model("fc1", input_shape=(3, 32, 32), num_classes=10)
    assert cifar.classifier[0].in_features == 3 * 32 * 32


def test_lenet5_layout_is_the_seeds() -> None:
    model = build_model("lenet5", input_shape=(1, 28, 28), num_classes=10)
    assert _shapes(model) == {
        "features.0.weight": (64, 1, 3, 3),
        "features.0.bias": (64,),
        "features.2.weight": (64, 64, 3, 3),
        "features.2.bias": (64,),
        "classifier.0.weight": (256, 64 * 14 * 14),
        "classifier.0.bias": (256,),
        "classifier.2.weight": (256, 256),
        "classifier.2.bias": (256,),
        "classifier.4.weight": (10, 256),
        "classifier.4.bias": (10,),
    }
    assert isinstance(model.features[4], nn.MaxPool2d)
    cifar = build_model("lenet5", input_shape=(3, 32, 32), num_classes=10)
    assert cifar.classifier[0].in_features == 64 * 16 * 16


def _pyhessian_resnet_keys(depth: int, batch_norm: bool, residual: bool) -> list[str]:
    """Parameter names of PyHessian's ``models/resnet.py`` ResNet, written out from its structure."""
    bn = ["weight", "bias"] if batch_norm else []
    names = ["conv1.weight"] + [f"bn1.{p}" for p in bn]
    for stage in (1, 2, 3):
        for block in range((depth - 2) // 6):
            prefix = f"layer{stage}.{block}"
            names += [f"{prefix}.conv1.weight"] + [f"{prefix}.bn1.{p}" for p in bn]
            names += [f"{prefix}.conv2.weight"] + [f"{prefix}.bn2.{p}" for p in bn]
            if residual and stage > 1 and block == 0:
                names += [f"{prefix}.downsample.0.weight"] + [f"{prefix}.downsample.1.{p}" for p in bn]
    return names + ["fc.weight", "fc.bias"]


@pytest.mark.parametrize("residual", [True, False])
@pytest.mark.parametrize("batch_norm", [True, False])
@pytest.mark.parametrize("depth", [20, 32])
def test_resnet20_keys_are_pyhessians(depth: int, batch_norm: bool, residual: bool) -> None:
    model = build_model(
        "resnet20", input_shape=(3, 32, 32), num_classes=10, depth=depth, batch_norm=batch_norm, residual=residual
    )
    assert [name for name, _ in model.named_parameters()] == _pyhessian_resnet_keys(depth, batch_norm, residual)
    if batch_norm:
        assert "layer1.0.bn1.running_mean" in model.state_dict()


def test_resnet20_size_and_shapes() -> None:
    model = build_model("resnet20", input_shape=(3, 32, 32), num_classes=10)
    assert sum(p.numel() for p in model.parameters()) == 272_474  # ResNet-20: 0.27M
    shapes = _shapes(model)
    assert shapes["conv1.weight"] == (16, 3, 3, 3)
    assert shapes["layer2.0.downsample.0.weight"] == (32, 16, 1, 1)
    assert shapes["layer3.2.conv2.weight"] == (64, 64, 3, 3)
    assert shapes["fc.weight"] == (10, 64)
    assert build_model("resnet20", input_shape=(1, 28, 28), num_classes=10).conv1.in_channels == 1


def test_resnet18_layout_is_pytorch_cifars() -> None:
    model = build_model("resnet18", input_shape=(3, 32, 32), num_classes=10)
    shapes = _shapes(model)
    assert sum(p.numel() for p in model.parameters()) == 11_173_962
    assert shapes["conv1.weight"] == (64, 3, 3, 3)
    assert shapes["layer1.1.conv2.weight"] == (64, 64, 3, 3)
    assert shapes["layer2.0.shortcut.0.weight"] == (128, 64, 1, 1)
    assert shapes["layer4.0.shortcut.1.running_var"] == (512,)
    assert shapes["linear.weight"] == (10, 512)
    assert not any(k.startswith("layer1.0.shortcut") for k in shapes)
    assert {k.split(".")[0] for k in shapes} == {"conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "linear"}


@pytest.mark.parametrize("name", ["resnet20", "resnet18"])
def test_batch_norm_off_removes_every_batchnorm(name: str) -> None:
    model = build_model(name, input_shape=(3, 32, 32), num_classes=10, batch_norm=False)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert not any(".bn" in f".{k}" or "running_" in k for k in model.state_dict())
    model.train()(torch.randn(2, 3, 32, 32))  # no batch statistics anywhere


@pytest.mark.parametrize("name", ["resnet20", "resnet18"])
def test_residual_off_changes_the_function(name: str) -> None:
    torch.manual_seed(0)
    with_skip = build_model(name, input_shape=(3, 32, 32), num_classes=10).eval()
    without = build_model(name, input_shape=(3, 32, 32), num_classes=10, residual=False).eval()
    skip_keys = {k for k in with_skip.state_dict() if "downsample" in k or "shortcut" in k}
    assert skip_keys and skip_keys.isdisjoint(without.state_dict())
    without.load_state_dict({k: v for k, v in with_skip.state_dict().items() if k not in skip_keys}, strict=True)
    x = torch.randn(2, 3, 32, 32)
    assert not torch.allclose(with_skip(x), without(x))


@pytest.mark.parametrize("name", SMALL_MODELS)
def test_models_work_under_torch_func(name: str) -> None:
    """No in-place operations: forward-over-reverse HVPs (jvp of grad) run on every model."""
    torch.manual_seed(0)
    model = build_model(name, input_shape=(1, 8, 8), num_classes=3).eval()
    params = {k: p.detach() for k, p in model.named_parameters()}
    x, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 0])

    def loss(p: dict[str, torch.Tensor]) -> torch.Tensor:
        return nn.functional.cross_entropy(torch.func.functional_call(model, p, (x,)), y)

    v = {k: torch.randn_like(p) for k, p in params.items()}
    _, hv = torch.func.jvp(torch.func.grad(loss), (params,), (v,))
    assert hv.keys() == params.keys()
    assert all(torch.isfinite(t).all() for t in hv.values())


def test_names_are_case_insensitive_and_listed() -> None:
    assert MODEL_NAMES == ("fc1", "lenet5", "resnet20", "resnet18", "vgg11_bn")
    assert isinstance(build_model("FC1", input_shape=(1, 8, 8), num_classes=10), nn.Module)


def test_unknown_model_is_one_line_config_error() -> None:
    expected = r"^unknown model 'alexnet'; known: fc1, lenet5, resnet20, resnet18, vgg11_bn"
    with pytest.raises(ConfigError, match=expected):
        build_model("alexnet", input_shape=(1, 28, 28), num_classes=10)


@pytest.mark.parametrize("depth", [21, 2, 0])
def test_bad_resnet_depth_is_config_error(depth: int) -> None:
    with pytest.raises(ConfigError, match="6n\\+2") as info:
        build_model("resnet20", input_shape=(3, 32, 32), num_classes=10, depth=depth)
    assert "\n" not in str(info.value)


def test_is_prunable() -> None:
    model = build_model("resnet20", input_shape=(3, 32, 32), num_classes=10)
    prunable = {name for name, p in model.named_parameters() if is_prunable(name, p)}
    assert "conv1.weight" in prunable and "fc.weight" in prunable and "layer2.0.downsample.0.weight" in prunable
    assert "fc.bias" not in prunable and not any(".bn" in n or n.startswith("bn") for n in prunable)
    fc1 = build_model("fc1", input_shape=(1, 28, 28), num_classes=10)
    assert [n for n, p in fc1.named_parameters() if is_prunable(n, p)] == [
        "classifier.0.weight",
        "classifier.2.weight",
        "classifier.4.weight",
    ]
