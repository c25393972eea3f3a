"""Shared builders for the end-to-end ``prunehess extract`` tests, handed to the tests as the ``kit`` fixture.

The tests build their own zips (every layout, hostile ones too) of checkpoints of two models on the bundled
``digits`` dataset:

- ``tiny``: a user model factory written into the test's folder (``--model FILE.py:factory``), a 64-8-10 tanh MLP
  of 610 parameters, small enough for ``prunehess.reference.dense_hessian``;
- ``fc1``: the built-in 300-100 MLP (~50k parameters on digits), for the default-model paths.

``kit.invoke(...)`` runs the CLI in-process through click's ``CliRunner``; ``kit.subprocess_cmd()`` gives the
command line of a real ``python -m prunehess`` process (one CPU thread, no CUDA).
"""
from __future__ import annotations

import io
import os
import subprocess
import sys
import time
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np
import pytest
import torch
from click.testing import CliRunner, Result
from torch import nn

TINY_SOURCE = '''\
"""A user model factory for prunehess's end-to-end tests: a 64-8-10 tanh MLP (610 parameters)."""
from collections import OrderedDict

from torch import nn


def factory(input_shape, num_classes):
    return nn.Sequential(OrderedDict(flat=nn.Flatten(), fc1=nn.Linear(64, 8), act=nn.Tanh(),
                                     fc2=nn.Linear(8, num_classes)))
'''

TINY_NAMES = ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")
TINY_SIZES = (512, 8, 80, 10)
RESULT_METRICS = ("top_eigenvalues", "trace", "density_eigen", "density_weight", "esd_plot", "bottom_eigenvalues")

# every run is on the CPU, with the strategy fixed (no timing-based choice), small estimator budgets
FAST = ("--dataset", "digits", "--hessian-batch-size", "64", "--mini-hessian-batch-size", "32", "--top-n", "1",
        "--slq-steps", "12", "--trace-probes", "8", "--no-test-accuracy", "--strategy", "graph", "--no-cuda")


def tiny_model(seed: int = 0) -> nn.Module:
    """The same network the factory file builds, with weights from ``seed`` (torch classes only, so a whole
    pickled copy loads anywhere with --trust-checkpoints)."""
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = nn.Sequential(OrderedDict(flat=nn.Flatten(), fc1=nn.Linear(64, 8), act=nn.Tanh(),
                                          fc2=nn.Linear(8, 10)))
        with torch.no_grad():  # larger weights than the default init: a less flat loss, clearer spectra
            model.fc1.weight.mul_(3.0)
            model.fc2.weight.mul_(2.0)
    finally:
        torch.random.set_rng_state(gen_state)
    return model


def _prune_smallest(state: dict[str, torch.Tensor], fraction: float) -> dict[str, torch.Tensor]:
    """Zero the ``fraction`` smallest-magnitude entries of every weight matrix (exact zeros, as the seed's trainer)."""
    out = {}
    for key, value in state.items():
        value = value.clone()
        if fraction > 0 and value.dim() >= 2:
            k = int(round(fraction * value.numel()))
            if k:
                idx = value.abs().reshape(-1).argsort()[:k]
                value.view(-1)[idx] = 0.0
        out[key] = value
    return out


class Kit:
    """Builders and assertions shared by the pipeline tests."""

    FAST = FAST
    TINY_NAMES = TINY_NAMES
    TINY_SIZES = TINY_SIZES
    RESULT_METRICS = RESULT_METRICS
    tiny_model = staticmethod(tiny_model)

    # ----- models and checkpoints ---------------------------------------------------------------------------
    @staticmethod
    def model_file(folder: Path) -> str:
        """Write the tiny factory file into ``folder``; return the ``--model`` spec ``FILE.py:factory``."""
        path = Path(folder) / "tiny_mlp.py"
        path.write_text(TINY_SOURCE)
        return f"{path}:factory"

    @staticmethod
    def tiny_state(seed: int = 0, prune: float = 0.0) -> dict[str, torch.Tensor]:
        return _prune_smallest(tiny_model(seed).state_dict(), prune)

    @staticmethod
    def fc1_state(seed: int = 0, prune: float = 0.0) -> dict[str, torch.Tensor]:
        from prunehess.models import FC1

        torch_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            state = FC1((1, 8, 8), 10).state_dict()
        finally:
            torch.random.set_rng_state(torch_state)
        return _prune_smallest(state, prune)

    @staticmethod
    def saved(obj: Any) -> bytes:
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        return buffer.getvalue()

    @classmethod
    def write_zip(cls, path: Path, entries: Iterable[tuple], compression: int = zipfile.ZIP_DEFLATED) -> Path:
        """A zip of ``(name, payload)`` or ``(name, payload, unix_mode)``; payloads that are not bytes are
        ``torch.save``d. Names are written exactly as given (hostile ones included)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(path, "w", compression) as zf:
            for name, payload, *mode in entries:
                data = payload if isinstance(payload, (bytes, str)) else cls.saved(payload)
                info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
                info.compress_type = compression
                if mode:
                    info.create_system = 3
                    info.external_attr = mode[0] << 16
                zf.writestr(info, data)
        return path

    # ----- running ---------------------------------------------------------------------------------------------
    @staticmethod
    def invoke(*args: Any) -> Result:
        from prunehess.cli import main

        return CliRunner().invoke(main, [str(a) for a in args])

    @classmethod
    def extract(cls, resume: Path, output: Path, *args: Any, model: Optional[str] = None, fast: bool = True) -> Result:
        """``prunehess extract --resume R --output O [--model M] [FAST] args`` in-process, expected to succeed."""
        cmd = ["extract", "--resume", resume, "--output", output]
        if model is not None:
            cmd += ["--model", model]
        cmd += list(FAST if fast else ()) + list(args)
        return cls.ok(cls.invoke(*cmd))

    @staticmethod
    def ok(result: Result) -> Result:
        __tracebackhide__ = True
        if result.exit_code != 0:
            import traceback

            tb = "".join(traceback.format_exception(*result.exc_info)) if result.exc_info else ""
            pytest.fail(f"exit code {result.exit_code}\n--- output ---\n{result.output}\n--- exception ---\n{tb}")
        return result

    @staticmethod
    def error_line(result: Result, *needles: str, alone: bool = True) -> str:
        """The run failed with exactly one ``Error:`` line (the last one; with ``alone``, the only line of output)
        holding every needle, and no traceback."""
        __tracebackhide__ = True
        out = result.output
        assert result.exit_code not in (0, None), f"expected a failure, got exit 0:\n{out}"
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            f"an exception escaped the CLI: {result.exception!r}\n{out}")
        assert "Traceback" not in out, out
        lines = [ln for ln in out.splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("Error:")]
        assert len(errors) == 1, f"expected one 'Error:' line:\n{out}"
        assert lines[-1] == errors[0], f"the error is not the last line:\n{out}"
        if alone:
            assert lines == errors, f"expected the error line alone:\n{out}"
        for needle in needles:
            assert needle in errors[0], f"{needle!r} not in {errors[0]!r}"
        return errors[0]

    @staticmethod
    def subprocess_env() -> dict[str, str]:
        env = dict(os.environ)
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1")
        repo = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = repo + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        return env

    @staticmethod
    def module_cmd() -> list[str]:
        """``python -m prunehess`` with this interpreter."""
        return [sys.executable, "-m", "prunehess"]

    @classmethod
    def popen(cls, args: Sequence[Any], cwd: Path, log: Path) -> subprocess.Popen:
        """Start ``python -m prunehess ARGS`` with stdout and stderr into ``log``."""
        handle = open(log, "wb")
        try:
            return subprocess.Popen([*cls.module_cmd(), *map(str, args)], cwd=cwd, env=cls.subprocess_env(),
                                    stdout=handle, stderr=subprocess.STDOUT)
        finally:
            handle.close()

    @staticmethod
    def wait_for(condition: Callable[[], bool], proc: Optional[subprocess.Popen] = None, timeout: float = 60.0,
                 poll: float = 0.003) -> bool:
        """Poll ``condition`` until it holds (True) or ``proc`` ends or the timeout passes (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            if proc is not None and proc.poll() is not None:
                return condition()
            time.sleep(poll)
        return False

    # ----- reading the tree -----------------------------------------------------------------------------------
    @staticmethod
    def result_files(output: Path) -> list[Path]:
        """Every visible file in the metric folders of an output tree."""
        out = []
        if not Path(output).is_dir():
            return out
        for folder in Path(output).iterdir():
            if folder.is_dir() and folder.name.split("_layer")[0] in RESULT_METRICS:
                out.extend(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        return out

    @staticmethod
    def text_files(output: Path) -> dict[str, bytes]:
        """Relative path -> bytes of every ``.txt`` file of an output tree (hidden state excluded)."""
        root = Path(output)
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.txt"))
                if ".prunehess" not in p.relative_to(root).parts}

    @staticmethod
    def all_paths(root: Path) -> set[str]:
        """Every file and folder under ``root``, relative, without following links."""
        out = set()
        for folder, dirs, files in os.walk(root):
            for name in dirs + files:
                out.add(Path(folder, name).relative_to(root).as_posix())
        return out

    @staticmethod
    def numbers(path: Path) -> np.ndarray:
        return np.loadtxt(path, ndmin=1)

    @staticmethod
    def summary(output: Path) -> list[dict[str, Any]]:
        from prunehess.layout import OutputLayout

        return OutputLayout(output).read_summary()

    # ----- references -------------------------------------------------------------------------------------------
    @staticmethod
    def hessian_batch(size: int, mini: int, seed: int, root: Path) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The pipeline's Hessian batch for digits, in float64."""
        from prunehess.data import hessian_batch

        return hessian_batch("digits", root=root, size=size, mini_batch_size=mini, seed=seed, dtype=torch.float64)

    @staticmethod
    def double_tiny(state: dict[str, torch.Tensor]) -> nn.Module:
        model = tiny_model(0)
        model.load_state_dict(state)
        return model.double()


@pytest.fixture(scope="session")
def kit() -> Kit:
    return Kit()
