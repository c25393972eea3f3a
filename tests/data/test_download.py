"""A missing torchvision dataset is downloaded by default (``--no-download`` forbids it), and offline the error is
one line saying what is missing, where it looked and how to fix it. The fetch is mocked: no test touches the
network."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torchvision.datasets.mnist as tv_mnist

from prunehess.data import load_split
from prunehess.errors import DataError


def _idx(array: np.ndarray) -> bytes:
    return struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def _fake_fetch(calls: list[str]):
    """What torchvision's ``download_and_extract_archive`` would leave: the archive and its uncompressed IDX file."""
    rng = np.random.default_rng(0)

    def fetch(url, download_root, filename=None, md5=None, **kwargs):
        calls.append(url)
        n = 20 if filename.startswith("train") else 7
        array = (rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8) if "images" in filename
                 else rng.integers(0, 10, size=n, dtype=np.uint8))
        raw = Path(download_root)
        (raw / filename).write_bytes(gzip.compress(_idx(array)))
        (raw / filename.removesuffix(".gz")).write_bytes(_idx(array))

    return fetch


def test_a_missing_dataset_is_fetched_by_default(tmp_path, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(tv_mnist, "download_and_extract_archive", _fake_fetch(calls))
    train = load_split("mnist", root=tmp_path, split="train", download=True)
    assert len(train) == 20 and len(calls) == 4  # images and labels of both splits, first mirror each
    assert (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file()
    assert len(load_split("mnist", root=tmp_path, split="test", download=True)) == 7 and len(calls) == 4  # cached


def test_offline_the_error_is_one_line_that_says_how_to_fix_it(tmp_path, monkeypatch):
    def offline(url, *args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(tv_mnist, "download_and_extract_archive", offline)
    with pytest.raises(DataError) as err:
        load_split("mnist", root=tmp_path, split="train", download=True)
    message = str(err.value)
    assert "\n" not in message and message.startswith(str(tmp_path / "MNIST" / "raw"))
    assert "train-images-idx3-ubyte" in message and "download failed" in message
    assert "connect to the internet" in message and "--data-root" in message


def test_no_download_never_fetches(tmp_path, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(tv_mnist, "download_and_extract_archive", _fake_fetch(calls))
    with pytest.raises(DataError, match="--no-download"):
        load_split("mnist", root=tmp_path, split="train", download=False)
    assert calls == []
