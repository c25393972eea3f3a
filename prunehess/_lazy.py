"""Re-exports imported at first use: a package's ``__getattr__`` and ``__dir__`` (PEP 562).

A package that re-exports many names from modules with heavy imports (matplotlib's axes, ``torch.func``) lets
``import package`` cost nothing until a name is used: ``extract`` imports the CLI's every command, and should not
pay for the figures of the commands it does not run.

Example:
    >>> import types
    >>> pkg = types.ModuleType("pkg")
    >>> pkg.__getattr__, pkg.__dir__ = lazy_exports("json", {"decoder": ("JSONDecoder",)}, ["JSONDecoder"])
    >>> pkg.JSONDecoder.__name__
    'JSONDecoder'
"""
from __future__ import annotations

import importlib
import importlib.util
from typing import Any, Callable, Iterable, Mapping

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, Iterable[str]],
                 names: Iterable[str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``exports`` maps each of its modules (relative names) to the
    names re-exported from it; a name is imported at its first use and kept in the package's namespace, and a
    submodule's name gives the submodule (as eager imports would have bound it). ``names`` is the package's
    ``__all__``."""
    where = {name: module for module, exported in exports.items() for name in exported}
    listed = sorted(set(names))

    def getattr_(name: str) -> Any:
        module = where.get(name)
        if module is None:
            if importlib.util.find_spec(f"{package}.{name}") is not None:  # a submodule, as eager imports bound it
                return importlib.import_module(f"{package}.{name}")
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(importlib.import_module(package), name, value)
        return value

    def dir_() -> list[str]:
        return sorted(set(listed) | set(vars(importlib.import_module(package))))

    return getattr_, dir_
