"""``torchrun --nproc-per-node 2 -m prunehess extract`` on CPU (Gloo) against one process.

- checkpoint sharding: the output tree is the single-process tree (every .txt byte-identical, summary.csv rows
  equal but for ``seconds``, config.yaml equal but for ``output``); each rank writes only its own checkpoints'
  files and records, rank 0 alone the shared ones and the progress lines;
- ``--data-parallel``: the tree equals the single-process one to rounding (see the tolerances below);
- a run killed with SIGKILL between checkpoints resumes with another number of processes to the same tree;
- rank 0's start-up error stops every rank at once with one clear line each.
"""
from __future__ import annotations

import io
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from dist_support import (TAGS, assert_same_tree, base_env, extract_command, kill_run, make_resume, records, run,
                          summary_rows, tree_files)

RUN, OUT = Path("run"), Path("out")  # relative to the test's folder, the runs' working directory

pytestmark = pytest.mark.slow

PROGRESS = ("[1/", "found ", "unpacked ", "done:")


def _tag_of(path: str) -> str:
    """The checkpoint tag in a result file or record name (``…/trace002_10.txt`` → ``002_10``)."""
    name = Path(path).name
    for tag in TAGS:
        if tag in name:
            return tag
    return ""


def test_sharded_run_equals_single_process(tmp_path, small_zip, reference, spy):
    make_resume(tmp_path / RUN, small_zip)
    out = tmp_path / OUT
    # --parallel rides along: under torchrun it is ignored with a warning and changes nothing
    result = run(extract_command(2, RUN, OUT, ["--parallel"], log_dir=tmp_path / "logs"), cwd=tmp_path,
                 env=spy.env(tmp_path / RUN, tmp_path / OUT), log_dir=tmp_path / "logs")

    assert_same_tree(out, reference)
    assert records(out) == TAGS

    # who wrote what: ranks never write the same file; each rank its own checkpoints (r, r + 2, ...)
    writes = spy.writes()
    assert set(writes) == {"0", "1"}, f"writers: {sorted(writes)} (the torchrun agent must write nothing)"
    both = writes["0"] & writes["1"]
    assert not both, f"files written by both ranks: {sorted(both)}"
    final = {label: {p for p in paths if not p.endswith(".tmp")} for label, paths in writes.items()}
    for rank in (0, 1):
        mine = {TAGS[i] for i in range(rank, len(TAGS), 2)}
        tagged = {_tag_of(p) for p in final[str(rank)]} - {""}
        assert tagged == mine, f"rank {rank} wrote files of checkpoints {sorted(tagged)}, expected {sorted(mine)}"
        recs = {Path(p).stem for p in final[str(rank)] if "/.prunehess/records/" in p}
        assert recs == mine
    shared = {"summary.csv", "config.yaml", "layers.txt", "remain_params.txt"}
    assert {Path(p).name for p in final["0"]} >= shared
    assert not {Path(p).name for p in final["1"]} & shared
    assert not any("/run/small/" in p for p in final["1"]), "only rank 0 unpacks the zip"
    every = {str(out / name) for name in tree_files(out)}
    assert every <= final["0"] | final["1"]

    # rank 0 alone prints progress; its report counts both ranks' checkpoints
    rank0, rank1 = result.rank_log(0), result.rank_log(1)
    assert "[1/3] 000_00" in rank0 and "[3/3] 004_best" in rank0
    assert "done: 5 computed, 0 already finished, 0 failed" in rank0
    assert "--parallel (DataParallel) is ignored under torchrun" in rank0
    assert not [line for line in rank1.splitlines() if line.strip().startswith(PROGRESS) or "top " in line], rank1
    assert result.rank_log(1, "stdout") == ""


def _moments(nodes: np.ndarray, weights: np.ndarray, k: int) -> float:
    return float((weights * nodes**k).sum())


def test_data_parallel_run_equals_single_process(tmp_path, small_zip, reference, spy):
    """Each rank holds 2 of the 4 mini-batches; every product is all-reduced. The sums run in another order
    than in one process, so the numbers agree to float32 rounding, not bit for bit:

    - top eigenvalues and traces (converged quantities): 1e-6 relative (measured: 2e-7);
    - the spectral density as a measure, its moments ``Σ w θ^k`` for k = 1..4: 1e-6 relative (measured: 2e-7);
    - single nodes and weights of the 50-step quadrature: 5e-5 of the largest |node| and of the total mass. A
      Ritz value that has not converged moves with every rounding of the products (measured: 4e-6 nodes, 5e-6
      weights); two exact one-process strategies, graph and double_backward, differ by as much (7e-6, 8e-6).
    """
    make_resume(tmp_path / RUN, small_zip)
    out = tmp_path / OUT
    result = run(extract_command(2, RUN, OUT, ["--data-parallel"], log_dir=tmp_path / "logs"), cwd=tmp_path,
                 env=spy.env(tmp_path / RUN, tmp_path / OUT), log_dir=tmp_path / "logs")

    got, want = tree_files(out), tree_files(reference)
    assert sorted(got) == sorted(want)
    config, reference_config = (yaml.safe_load((root / "config.yaml").read_text()) for root in (out, reference))
    assert config.pop("data_parallel") is True and reference_config.pop("data_parallel") is False
    assert config == reference_config  # the same run otherwise, strategy included
    for name in want:
        if not name.endswith(".txt") or "/" not in name:
            continue
        a, b = np.loadtxt(got[name]).ravel(), np.loadtxt(want[name]).ravel()
        assert a.shape == b.shape, name
        if name.startswith(("top_eigenvalues", "trace")):
            np.testing.assert_array_less(np.abs(a - b), 1e-6 * np.abs(b), err_msg=name)
        elif name.startswith("density_eigen"):
            np.testing.assert_array_less(np.abs(a - b), 5e-5 * np.abs(b).max(), err_msg=name)
            w_a = np.loadtxt(got[name.replace("density_eigen", "density_weight")]).ravel()
            w_b = np.loadtxt(want[name.replace("density_eigen", "density_weight")]).ravel()
            assert abs(w_b.sum() - 1) < 1e-9  # one SLQ run (the default): the weights sum to 1
            np.testing.assert_array_less(np.abs(w_a - w_b), 5e-5, err_msg=name.replace("eigen", "weight"))
            for k in range(1, 5):
                ma, mb = _moments(a, w_a, k), _moments(b, w_b, k)
                assert abs(ma - mb) <= 1e-6 * abs(mb), f"{name}: moment {k}: {ma} vs {mb}"

    rows, expected = summary_rows(out), summary_rows(reference)
    assert len(rows) == len(expected)
    for row, want_row in zip(rows, expected):
        for key in ("iteration", "epoch", "layer", "remaining_percent", "test_accuracy"):
            assert row[key] == want_row[key]
        for key in ("top_eigenvalues", "trace"):
            a, b = float(row[key].strip("[]")), float(want_row[key].strip("[]"))
            assert abs(a - b) <= 1e-6 * abs(b), (key, row, want_row)

    writes = spy.writes()
    assert set(writes) == {"0"}, f"only rank 0 writes under --data-parallel; writers: {sorted(writes)}"
    rank1 = result.rank_log(1)
    assert not [line for line in rank1.splitlines() if line.strip().startswith(PROGRESS)], rank1
    assert "done: 5 computed" in result.rank_log(0)


def _start(cmd, cwd, env) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _run_until_killed(nproc: int, cwd: Path, spy) -> list[str]:
    """Start ``nproc`` processes on the output folder; SIGKILL them all as soon as one more checkpoint record
    appears (the spy then sleeps 2 s after each record, so the kill lands between checkpoints of a live run)."""
    out = cwd / OUT
    before = records(out)
    proc = _start(extract_command(nproc, RUN, OUT), cwd, spy.env(cwd / RUN, out, slow=2.0))
    try:
        deadline = time.monotonic() + 180
        while len(records(out)) <= len(before):
            assert proc.poll() is None, f"the run ended before writing a record: {proc.stderr.read()[-3000:]}"
            assert time.monotonic() < deadline, "no new checkpoint record after 180 s"
            time.sleep(0.05)
    finally:
        kill_run(proc)
    after = records(out)
    assert set(before) < set(after), (before, after)
    assert len(after) < len(TAGS), f"not killed mid-way: records {after}"
    return after


def test_killed_runs_resume_with_another_number_of_ranks(tmp_path, small_zip, reference, spy):
    """2 ranks killed after their first checkpoint(s) → 1 process resumes, killed after one more → 2 ranks
    finish: the tree is the uninterrupted single-process one, byte for byte."""
    make_resume(tmp_path / RUN, small_zip)
    out = tmp_path / OUT
    after_two = _run_until_killed(2, tmp_path, spy)
    after_one = _run_until_killed(1, tmp_path, spy)
    assert len(after_one) == len(after_two) + 1

    logs = tmp_path / "logs"
    result = run(extract_command(2, RUN, OUT, log_dir=logs), cwd=tmp_path, env=base_env(), log_dir=logs)
    assert_same_tree(out, reference)
    assert records(out) == TAGS
    done = f"{len(TAGS) - len(after_one)} computed, {len(after_one)} already finished, 0 failed"
    assert done in result.rank_log(0), result.rank_log(0)
    assert not list(out.rglob(".*.tmp")), "half-written temporaries of the killed runs are left"


def test_rank0_start_error_stops_every_rank(tmp_path, small_zip):
    """--data-parallel with fewer mini-batches than ranks: rank 0 refuses, rank 1 stops too, no hang."""
    make_resume(tmp_path / RUN, small_zip)
    logs = tmp_path / "logs"
    cmd = extract_command(2, RUN, OUT, ["--data-parallel", "--mini-hessian-batch-size", "100"], log_dir=logs)
    result = run(cmd, cwd=tmp_path, log_dir=logs, check=False)
    assert result.returncode != 0
    rank0, rank1 = result.rank_log(0), result.rank_log(1)
    assert "Error: --data-parallel over 2 processes needs at least 2 mini-batches" in rank0, rank0
    assert "Error: rank 1 stops: rank 0 could not start the run (--data-parallel over 2" in rank1, rank1
    assert "Traceback" not in rank0 + rank1
    assert not (tmp_path / "out" / ".prunehess" / "records").exists() or not records(tmp_path / "out")


def test_sharded_ranks_agree_on_the_measured_strategy(tmp_path, small_zip, spy):
    """``--strategy tune``: both ranks time the strategies on their first checkpoint at the same moment; the first
    to save its choice wins, the other adopts it, and strategy.json is written by one process only."""
    import json
    import zipfile

    with zipfile.ZipFile(io.BytesIO(small_zip)) as src, zipfile.ZipFile(tmp_path / "small.zip", "w") as dst:
        for name in ("initial_state_dict_lt.pth", "3_model_lt.pth", "train_config.yaml"):  # one checkpoint a rank
            dst.writestr(name, src.read(name))
    make_resume(tmp_path / RUN, (tmp_path / "small.zip").read_bytes())
    logs = tmp_path / "logs"
    result = run(extract_command(2, RUN, OUT, ["--strategy", "tune"], log_dir=logs), cwd=tmp_path,
                 env=spy.env(tmp_path / RUN, tmp_path / OUT), log_dir=logs)
    saved = json.loads((tmp_path / OUT / ".prunehess" / "strategy.json").read_text())
    writers = [label for label, paths in spy.writes().items()
               if any(p.endswith("/.prunehess/strategy.json") for p in paths)]
    assert len(writers) == 1, f"strategy.json written by {writers}"
    config = (tmp_path / OUT / "config.yaml").read_text()
    assert f"strategy: {saved['strategy']}\n  batched_strategy: {saved['batched_strategy']}" in config, config
    assert "HVP strategy:" in result.rank_log(0)
    assert "HVP strategy:" not in result.rank_log(1) and "[1/1]" not in result.rank_log(1)
