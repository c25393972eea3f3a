"""Shared builders for the checkpoint tests: zips written entry by entry, and a tiny model."""
from __future__ import annotations

import os
import warnings
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import pytest
from torch import nn


def write_zip(path: Path, entries: list, compression: int = zipfile.ZIP_DEFLATED) -> Path:
    """Write ``entries`` — ``(name, data)`` or ``(name, data, unix_mode)`` — into a zip at ``path``.

    Names are kept exactly as given (``..``, backslashes, drive letters), so hostile archives can be built.
    """
    with zipfile.ZipFile(path, "w", compression) as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name": wanted here
        for entry in entries:
            name, data, *mode = entry
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = compression
            if mode:
                info.create_system = 3
                info.external_attr = mode[0] << 16
            zf.writestr(info, data)
    return path


@pytest.fixture
def make_zip(tmp_path: Path) -> Callable[..., Path]:
    """``make_zip(entries, name="in.zip")`` writes a zip into ``tmp_path``."""

    def make(entries: list, name: str = "in.zip", compression: int = zipfile.ZIP_DEFLATED) -> Path:
        return write_zip(tmp_path / name, entries, compression)

    return make


@pytest.fixture
def tree(tmp_path: Path) -> Callable[..., Path]:
    """``tree(names, root="run")`` creates empty files at the given relative paths and returns the root."""

    def make(names: list[str], root: str = "run") -> Path:
        base = tmp_path / root
        base.mkdir(exist_ok=True)
        for name in names:
            f = base / name
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(b"")
        return base

    return make


def tiny_model() -> nn.Module:
    """A 4-3-2 MLP built from torch classes only, so a whole pickled copy loads without this test module."""
    return nn.Sequential(OrderedDict(fc1=nn.Linear(4, 3), relu=nn.ReLU(), fc2=nn.Linear(3, 2)))


@pytest.fixture
def new_model() -> Callable[[], nn.Module]:
    """A factory of fresh :func:`tiny_model` instances."""
    return tiny_model


def files_under(root: Path) -> list[str]:
    """Every path under ``root`` (files, folders, links), relative, posix, without following links."""
    out = []
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            out.append(Path(folder, name).relative_to(root).as_posix())
    return sorted(out)


@pytest.fixture
def listing() -> Callable[[Path], list[str]]:
    return files_under
