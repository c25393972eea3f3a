"""User model factories: ``path/to/file.py:factory`` or ``package.module:factory``.

The factory (any callable, a class included; ``attr.sub`` paths allowed) is called with those keyword arguments
among ``input_shape, num_classes, batch_norm, residual, depth`` that its signature accepts (all of them if it
takes ``**kwargs``) and must return a ``torch.nn.Module``. A file is executed as a fresh module each time, with
its folder on ``sys.path`` while it runs, so it may import its sibling files. Every problem is one
:class:`~prunehess.errors.ConfigError` line naming the file or module.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from torch import nn

from prunehess.errors import ConfigError

__all__ = ["is_factory_spec", "build_from_factory"]


def _one_line(err: BaseException) -> str:
    return " ".join(f"{type(err).__name__}: {err}".split())


def is_factory_spec(name: str) -> bool:
    """True when ``name`` looks like ``FILE.py:factory`` or ``package.module:factory``."""
    return ":" in name


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise ConfigError(f"{path}: model file not found")
    resolved = path.resolve()
    digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:12]
    module_name = f"prunehess_user_model_{resolved.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, resolved)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{path}: cannot be imported as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look the module up here
    folder = str(resolved.parent)
    sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # a user's file can raise anything; report it in one line
        sys.modules.pop(module_name, None)
        raise ConfigError(f"{path}: cannot import model file: {_one_line(err)}") from err
    finally:
        if folder in sys.path:
            sys.path.remove(folder)
    return module


def _import_module(dotted: str) -> ModuleType:
    try:
        return importlib.import_module(dotted)
    except Exception as err:
        raise ConfigError(f"{dotted}: cannot import model module: {_one_line(err)}") from err


def _accepted_kwargs(factory: Callable[..., Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # no introspectable signature: call it bare
        return {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return dict(kwargs)
    keyword_kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    names = {p.name for p in parameters if p.kind in keyword_kinds}
    return {key: value for key, value in kwargs.items() if key in names}


def build_from_factory(spec: str, **kwargs: Any) -> nn.Module:
    """Import ``spec`` (``FILE.py:factory`` or ``package.module:factory``) and build the model it returns."""
    source, _, attribute = spec.rpartition(":")
    if not source or not attribute:
        raise ConfigError(f"{spec}: a model factory is written FILE.py:factory or package.module:factory")
    is_file = source.endswith(".py") or "/" in source or "\\" in source
    module = _import_file(Path(source).expanduser()) if is_file else _import_module(source)
    factory: Any = module
    for part in attribute.split("."):
        if not part.isidentifier() or not hasattr(factory, part):
            raise ConfigError(f"{source}: has no attribute '{attribute}' (the model factory named in '{spec}')")
        factory = getattr(factory, part)
    if not callable(factory):
        raise ConfigError(f"{source}: '{attribute}' is a {type(factory).__name__}, not a callable model factory")
    try:
        model = factory(**_accepted_kwargs(factory, kwargs))
    except Exception as err:
        raise ConfigError(f"{source}: model factory '{attribute}' failed: {_one_line(err)}") from err
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"{source}: model factory '{attribute}' returned a {type(model).__name__}, not a torch.nn.Module"
        )
    return model
