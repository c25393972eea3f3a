"""``--parallel`` (``nn.DataParallel``) where there is no GPU: what can be checked on a CPU.

On a CPU ``nn.DataParallel(model)`` holds no devices and just calls the module, so a Hessian operator that runs
the model through it must give exactly the plain operator's products; it must refuse the ``torch.func``
strategies (forward-over-reverse, vmap), which bypass a custom forward. ``extract --parallel`` on a CPU warns
and runs on the one device, and reads checkpoints saved from a DataParallel model (``module.`` keys). Splitting
the batch over GPUs (and NCCL) needs GPUs: see docs/cluster.md for where that was run.
"""
from __future__ import annotations

import io
import zipfile

import pytest
import torch
from torch import nn

from prunehess import HessianOperator
from prunehess.estimators import lanczos_top_eigen
from prunehess.operators import tune
from prunehess.operators.hessian import split_batch
from prunehess.pipeline import ExtractConfig, extract

from dist_support import SUBSET, tree_files

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU behaviour of DataParallel")


def _model_and_data():
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    x = torch.randn(40, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (40,), generator=g)
    return model, split_batch(x, y, 15)


def test_dataparallel_forward_gives_the_same_products_on_cpu():
    model, data = _model_and_data()
    plain = HessianOperator(model, data)
    wrapped = HessianOperator(model, data, forward=nn.DataParallel(model))
    g = torch.Generator().manual_seed(1)
    v = torch.randn(plain.size, generator=g, dtype=torch.float64)
    V = torch.randn(plain.size, 4, generator=g, dtype=torch.float64)
    for strategy in ("graph", "double_backward"):
        plain.set_strategy(strategy)
        wrapped.set_strategy(strategy)
        assert torch.equal(wrapped.matvec(v), plain.matvec(v)), strategy
    plain.set_strategy("graph", "graph_batched")
    wrapped.set_strategy("graph", "graph_batched")
    assert torch.equal(wrapped.matmat(V), plain.matmat(V))
    assert torch.equal(wrapped.restrict(["2.weight"]).matvec(v[:21]), plain.restrict(["2.weight"]).matvec(v[:21]))
    assert lanczos_top_eigen(wrapped, k=2, seed=0).eigenvalues.tolist() \
        == lanczos_top_eigen(plain, k=2, seed=0).eigenvalues.tolist()


def test_dataparallel_forward_refuses_functional_strategies():
    model, data = _model_and_data()
    with pytest.raises(ValueError, match="autograd strategy"):
        HessianOperator(model, data, forward=nn.DataParallel(model), strategy="forward_over_reverse")
    op = HessianOperator(model, data, forward=nn.DataParallel(model))
    with pytest.raises(ValueError, match="autograd strategy"):
        op.set_strategy("forward_over_reverse")
    with pytest.raises(ValueError, match="autograd strategy"):
        op.set_strategy("graph", "vmap")
    timings = tune(op, repeats=1, k=2).timings
    assert "forward_over_reverse" not in timings and "batched:vmap" not in timings
    assert op.strategy in ("graph", "double_backward") and op.batched_strategy in ("loop", "graph_batched")


def _module_prefixed_zip(small_zip: bytes, names: list[str]) -> bytes:
    """The checkpoints ``names`` as a DataParallel model saves them (every key prefixed ``module.``)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(small_zip)) as src, zipfile.ZipFile(out, "w") as dst:
        for name in names:
            data = src.read(name)
            if name.endswith(".pth"):
                state = torch.load(io.BytesIO(data), weights_only=True)
                buffer = io.BytesIO()
                torch.save({f"module.{k}": v for k, v in state.items()}, buffer)
                data = buffer.getvalue()
            dst.writestr(name, data)
    return out.getvalue()


def test_parallel_flag_on_cpu_warns_and_runs_on_one_device(tmp_path, small_zip, reference):
    """Two checkpoints saved with ``module.`` keys, ``--parallel`` on a CPU: a warning, then the numbers of the
    plain single-process run (byte for byte)."""
    names = [SUBSET[0], SUBSET[4], "train_config.yaml"]  # tags 000_00 and 004_best
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "small.zip").write_bytes(_module_prefixed_zip(small_zip, names))
    # the options of the reference run (dist_support.COMMON), in Python
    config = ExtractConfig.of(resume=tmp_path / "run", zipname="small.zip", output=tmp_path / "out",
                              dataset="digits", hessian_batch_size=100, mini_hessian_batch_size=25,
                              test_accuracy=False, strategy="graph", slq_steps=50, parallel=True)
    messages: list[str] = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the reference run (OMP_NUM_THREADS=1): the same sums in the same order
    try:
        report = extract(config, on_event=lambda event: messages.append(event.line()))
    finally:
        torch.set_num_threads(threads)
    assert "warning: --parallel needs CUDA devices; running on one device" in messages
    assert sorted(report.computed) == ["000_00", "004_best"] and not report.failed
    got, want = tree_files(tmp_path / "out"), tree_files(reference)
    results = [name for name in got if "/" in name and name.endswith(".txt")]
    assert len(results) == 2 * 5  # top and bottom eigenvalues, trace, density nodes and weights of each checkpoint
    for name in results:
        assert got[name].read_bytes() == want[name].read_bytes(), name
