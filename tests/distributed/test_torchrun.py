"""``torchrun --nproc-per-node 2 -m prunehess extract`` on CPU (Gloo) against one process.

- checkpoint sharding: the output tree is the single-process tree (every .txt byte-identical, summary.csv rows
  equal but for ``seconds``, config.yaml equal but for ``output``); each rank writes only its own checkpoints'
  files and records, rank 0 alone the shared ones and the progress lines;
- ``--data-parallel``: the tree equals the single-process one to rounding (see the tolerances below);
- a run killed with SIGKILL between checkpoints resumes with another number of processes to the same tree;
- rank 0's start-up error stops every rank at once with one clear line each.
"""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from dist_support import (TAGS, assert_same_tree, base_env, config_lines, extract_command, kill_group, make_resume,
                      records, run, summary_rows, tree_files)

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
    resume = make_resume(tmp_path / "run", small_zip)
    out = tmp_path / "out"
    # --parallel rides along: under torchrun it is ignored with a warning and changes nothing
    result = run(extract_command(2, resume, out, ["--parallel"], log_dir=tmp_path / "logs"),
                 env=spy.env(tmp_path), log_dir=tmp_path / "logs")

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
    than in one process, so the numbers agree to float32 rounding, not bit for bit: top eigenvalues, traces and
    density nodes to 1e-6 relative; the density as a measure (its moments ``Σ w θ^k``, k ≤ 4) to 1e-6 relative.
    Single weights of the 100-node quadrature move more (a few 1e-6 of the total mass here): they are as
    sensitive to rounding as they are to switching between two exact one-process strategies (graph vs
    double_backward differ just as much), so they are held to 2e-5 of the total mass."""
    resume = make_resume(tmp_path / "run", small_zip)
    out = tmp_path / "out"
    result = run(extract_command(2, resume, out, ["--data-parallel"], log_dir=tmp_path / "logs"),
                 env=spy.env(tmp_path), log_dir=tmp_path / "logs")

    got, want = tree_files(out), tree_files(reference)
    assert sorted(got) == sorted(want)
    assert config_lines(out) == config_lines(reference)
    for name in want:
        if not name.endswith(".txt") or "/" not in name:
            continue
        a, b = np.loadtxt(got[name], ndmin=2), np.loadtxt(want[name], ndmin=2)
        assert a.shape == b.shape, name
        if name.startswith("density_weight"):
            continue  # with the nodes below
        scale = np.abs(b).max() if name.startswith("density_eigen") else np.abs(b)
        np.testing.assert_array_less(np.abs(a - b), 1e-6 * scale + 1e-30, err_msg=name)
    for name in (n for n in want if n.startswith("density_eigen")):
        wname = name.replace("density_eigen", "density_weight")
        # one SLQ run (the default): the weights sum to 1
        nodes_a, nodes_b = np.loadtxt(got[name]).ravel(), np.loadtxt(want[name]).ravel()
        w_a, w_b = np.loadtxt(got[wname]).ravel(), np.loadtxt(want[wname]).ravel()
        assert abs(w_b.sum() - 1) < 1e-9
        for k in range(5):
            ma, mb = _moments(nodes_a, w_a, k), _moments(nodes_b, w_b, k)
            assert abs(ma - mb) <= 1e-6 * abs(mb), f"{name}: moment {k}: {ma} vs {mb}"
        assert np.abs(w_a - w_b).max() <= 2e-5, wname

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


def _start(cmd, env) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


@pytest.mark.parametrize("first, second", [(2, 1), (1, 2)], ids=["killed-2-ranks-resumed-by-1",
                                                                  "killed-1-rank-resumed-by-2"])
def test_killed_run_resumes_with_another_number_of_ranks(tmp_path, small_zip, reference, spy, first, second):
    resume = make_resume(tmp_path / "run", small_zip)
    out = tmp_path / "out"
    # the spy sleeps 2 s after every checkpoint record: the kill lands between checkpoints of a live run
    proc = _start(extract_command(first, resume, out), spy.env(tmp_path, slow=2.0))
    try:
        deadline = time.monotonic() + 180
        while not records(out):
            assert proc.poll() is None, f"the run ended before writing a record: {proc.stderr.read()[-3000:]}"
            assert time.monotonic() < deadline, "no checkpoint record after 180 s"
            time.sleep(0.05)
    finally:
        kill_group(proc)
    done_before = records(out)
    assert 1 <= len(done_before) < len(TAGS), f"not killed mid-way: records {done_before}"

    result = run(extract_command(second, resume, out, log_dir=tmp_path / "logs" if second > 1 else None),
                 env=base_env(), log_dir=tmp_path / "logs" if second > 1 else None)
    assert_same_tree(out, reference)
    assert records(out) == TAGS
    tail = result.rank_log(0) if second > 1 else result.stderr
    assert f"{len(TAGS) - len(done_before)} computed, {len(done_before)} already finished, 0 failed" in tail
    assert not list(out.rglob(".*.tmp")), "half-written temporaries of the killed run are left"


def test_rank0_start_error_stops_every_rank(tmp_path, small_zip):
    """--data-parallel with fewer mini-batches than ranks: rank 0 refuses, rank 1 stops too, no hang."""
    resume = make_resume(tmp_path / "run", small_zip)
    logs = tmp_path / "logs"
    cmd = extract_command(2, resume, tmp_path / "out", ["--data-parallel", "--mini-hessian-batch-size", "100"],
                          log_dir=logs)
    result = run(cmd, log_dir=logs, check=False)
    assert result.returncode != 0
    rank0, rank1 = result.rank_log(0), result.rank_log(1)
    assert "Error: --data-parallel over 2 processes needs at least 2 mini-batches" in rank0, rank0
    assert "Error: rank 1 stops: rank 0 could not start the run (--data-parallel over 2" in rank1, rank1
    assert "Traceback" not in rank0 + rank1
    assert not (tmp_path / "out" / ".prunehess" / "records").exists() or not records(tmp_path / "out")
