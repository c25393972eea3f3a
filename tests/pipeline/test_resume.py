"""Crashes and reruns: skip what is finished, recompute what changed, survive SIGINT and SIGKILL, lock the folder.

The SIGINT, SIGKILL and lock tests run real ``prunehess extract`` processes (``python -m prunehess``, and the
installed ``prunehess`` entry point for the uninterrupted reference run), on one CPU thread with the HVP strategy
fixed (``--strategy graph``), so that a resumed run must reproduce the uninterrupted run's numbers byte for byte.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from prunehess.layout import OutputLayout

# per-layer files spread each checkpoint's writing over its whole computation: kills land between files
RUN_ARGS = ("--dataset", "digits", "--hessian-batch-size", "64", "--mini-hessian-batch-size", "32", "--top-n", "2",
            "--slq-steps", "16", "--slq-runs", "2", "--trace-probes", "8", "--no-test-accuracy", "--strategy", "graph",
            "--no-cuda", "--compute-each-layer")
FILES_PER_CHECKPOINT = 6 * (1 + 4)  # six metrics, whole model and four parameter tensors


def _zip(kit, folder: Path, n: int = 3) -> Path:
    entries = [("initial_state_dict_lt.pth", kit.tiny_state(0))]
    entries += [(f"{i}_model_lt.pth", kit.tiny_state(i + 1, 0.3 * i)) for i in range(n - 1)]
    kit.write_zip(folder / "run" / "mnist.zip", entries)
    return folder / "run"


def _other_experiment(kit, folder: Path) -> Path:
    """A zip with ``_zip``'s first two file names and other weights (another experiment's run)."""
    kit.write_zip(folder / "run" / "mnist.zip", [("initial_state_dict_lt.pth", kit.tiny_state(7)),
                                                 ("0_model_lt.pth", kit.tiny_state(8, 0.3))])
    return folder / "run"


def _mtimes(kit, out: Path) -> dict[str, int]:
    """Modification times of the result files (the shared files are rewritten by every run, to the same bytes)."""
    return {p.relative_to(out).as_posix(): p.stat().st_mtime_ns for p in kit.result_files(out)}


def _stray_temporaries(out: Path) -> list[str]:
    """Temporary or partial files anywhere in the output tree (hidden state included)."""
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*")
                  if p.name.endswith((".tmp", ".partial")) or ".partial-" in p.name)


def _summary_without_timing(kit, out: Path) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in kit.summary(out)]


def test_rerun_skips_finished_checkpoints_and_recomputes_when_the_numbers_change(kit, tmp_path):
    run = _zip(kit, tmp_path)
    model = kit.model_file(tmp_path)
    out = tmp_path / "out"
    first = kit.extract(run, out, model=model)
    assert "3 computed, 0 already finished" in first.output
    numbers, mtimes = kit.text_files(out), _mtimes(kit, out)

    same = kit.extract(run, out, model=model)
    assert "0 computed, 3 already finished" in same.output and "[1/3]" not in same.output
    assert kit.text_files(out) == numbers and _mtimes(kit, out) == mtimes  # nothing rewritten

    # options that do not change the numbers (zip limits, device selection, trust) keep the results
    other = kit.extract(run, out, "--max-ratio", "100", "--trust-checkpoints", "--device", "cpu", model=model)
    assert "0 computed, 3 already finished" in other.output

    reseeded = kit.extract(run, out, "--seed", "2", model=model)
    assert "3 computed, 0 already finished" in reseeded.output
    changed = kit.text_files(out)
    assert changed["trace/trace001_best.txt"] != numbers["trace/trace001_best.txt"]
    assert changed["layers.txt"] == numbers["layers.txt"]
    assert len(kit.summary(out)) == 3  # the summary holds this config's records only

    back = kit.extract(run, out, model=model)  # the first config again: recomputed, to the same numbers
    assert "3 computed, 0 already finished" in back.output
    assert kit.text_files(out) == numbers

    more = kit.extract(run, out, "--top-n", "2", model=model)
    assert "3 computed" in more.output
    assert kit.numbers(out / "top_eigenvalues" / "top_eigenvalues002_best.txt").shape == (2,)


def test_rerun_replaces_what_a_killed_run_left_half_written(kit, tmp_path):
    """A run killed while writing leaves temporaries and, for the checkpoint in flight, results without a record:
    the rerun deletes the temporaries and recomputes that checkpoint."""
    run = _zip(kit, tmp_path)
    model = kit.model_file(tmp_path)
    out = tmp_path / "out"
    kit.extract(run, out, model=model)
    numbers = kit.text_files(out)
    (out / ".prunehess" / "records" / "002_best.json").unlink()  # checkpoint 002_best was in flight
    (out / "top_eigenvalues" / "top_eigenvalues002_best.txt").write_text("0.12")  # half-written (not atomic)
    (out / "density_weight" / "density_weight002_best.txt").unlink()
    stale = [out / "trace" / ".trace002_best.txt.k2j3x9.tmp", out / ".summary.csv.a1b2.tmp",
             out / ".prunehess" / "records" / ".002_best.json.q8w7.tmp", out / ".prunehess" / ".strategy.json.zz.tmp"]
    for path in stale:
        path.write_text("partial")
    result = kit.extract(run, out, model=model)
    assert "1 computed, 2 already finished" in result.output
    assert kit.text_files(out) == numbers
    assert _stray_temporaries(out) == []


def test_sigint_stops_after_the_checkpoint_in_flight(kit, tmp_path):
    run = _zip(kit, tmp_path, n=4)
    model = kit.model_file(tmp_path)
    out = tmp_path / "out"
    args = ["extract", "--resume", run, "--output", out, "--model", model, *kit.FAST]
    proc = kit.popen(args, tmp_path, tmp_path / "sigint.log")
    try:
        assert kit.wait_for(lambda: len(kit.result_files(out)) >= 1, proc), (tmp_path / "sigint.log").read_text()
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = (tmp_path / "sigint.log").read_text()
    assert rc == 130, log
    assert "Traceback" not in log
    assert "finishing the checkpoint in flight" in log
    # the checkpoint in flight (the first, unless this machine is very slow) was finished: its files and record;
    # the run stopped before the next one
    tags = ["000_00", "001_best", "002_best", "003_best"]
    records = sorted(p.stem for p in (out / ".prunehess" / "records").glob("*.json"))
    done = len(records)
    assert 1 <= done < 4 and records == tags[:done], records
    assert len(kit.result_files(out)) == 6 * done
    error = [ln for ln in log.splitlines() if ln.startswith("Error:")]
    assert len(error) == 1 and f"interrupted before checkpoint {tags[done]}" in error[0] and "rerun" in error[0]
    assert [r["iteration"] for r in kit.summary(out)] == [-1, 0, 1][:done]
    assert _stray_temporaries(out) == []
    rerun = kit.ok(kit.invoke(*args))
    assert f"{4 - done} computed, {done} already finished" in rerun.output
    assert len(kit.result_files(out)) == 4 * 6


def _entry_point() -> list[str]:
    """The installed ``prunehess`` console script next to this interpreter (else ``python -m prunehess``)."""
    script = Path(sys.executable).with_name("prunehess")
    return [str(script)] if script.is_file() and os.access(script, os.X_OK) else None


def test_killed_at_several_points_resumes_to_the_uninterrupted_numbers(kit, tmp_path):
    run = _zip(kit, tmp_path, n=3)
    model = kit.model_file(tmp_path)
    common = ["--resume", run, "--model", model, *RUN_ARGS]

    # the uninterrupted reference, through the installed console script
    script = _entry_point()
    if script is None:
        pytest.skip("the prunehess console script is not installed next to this interpreter")
    reference = tmp_path / "reference"
    done = subprocess.run([*script, "extract", "--output", str(reference), *map(str, common)], cwd=tmp_path,
                          env=kit.subprocess_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "3 computed" in done.stdout  # the log lines go to standard output (a bar, on a terminal, to stderr)
    total = len(kit.result_files(reference))
    assert total == 3 * FILES_PER_CHECKPOINT

    # SIGKILL after the 1st result file (the first checkpoint in flight), then in the middle of the second
    # checkpoint (its whole-model files and some of its layers' written, no record); the third run resumes
    out = tmp_path / "out"
    killed = []
    for threshold in (1, FILES_PER_CHECKPOINT + 8):
        log = tmp_path / f"kill{threshold}.log"
        proc = kit.popen(["extract", "--output", out, *common], tmp_path, log)
        try:
            kit.wait_for(lambda: len(kit.result_files(out)) >= threshold, proc)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
        finally:
            rc = proc.wait(timeout=120)
        if rc == -signal.SIGKILL:
            killed.append(threshold)
        else:
            assert rc == 0, log.read_text()
    assert killed, "no run was killed mid-way: the machine is too fast for these thresholds"

    final = subprocess.run([*kit.module_cmd(), "extract", "--output", str(out), *map(str, common)], cwd=tmp_path,
                           env=kit.subprocess_env(), capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    finished = re.search(r"(\d+) already finished", final.stdout)
    assert finished and int(finished[1]) >= 1, final.stdout  # the killed runs' finished checkpoints were kept

    assert kit.text_files(out) == kit.text_files(reference)  # every number, byte for byte
    assert {p.relative_to(out) for p in kit.result_files(out)} == {
        p.relative_to(reference) for p in kit.result_files(reference)}
    assert all(p.read_bytes().startswith(b"%PDF") for p in out.glob("esd_plot*/*.pdf"))
    assert _summary_without_timing(kit, out) == _summary_without_timing(kit, reference)
    assert _stray_temporaries(out) == []
    records = [json.loads(p.read_text()) for p in (out / ".prunehess" / "records").glob("*.json")]
    assert sorted(r["tag"] for r in records) == ["000_00", "001_best", "002_best"]
    assert all(r["status"] == "done" for r in records)


def test_a_second_run_on_the_same_output_folder_is_refused(kit, tmp_path):
    run = _zip(kit, tmp_path, n=2)
    model = kit.model_file(tmp_path)
    out = tmp_path / "out"
    args = ["extract", "--resume", run, "--output", out, "--model", model, *kit.FAST]
    lock = out / ".prunehess" / "lock"
    proc = kit.popen(args, tmp_path, tmp_path / "first.log")
    try:
        held = kit.wait_for(lambda: lock.is_file() and lock.read_text().strip() == str(proc.pid), proc)
        assert held, (tmp_path / "first.log").read_text()
        proc.send_signal(signal.SIGSTOP)  # holds the lock for as long as the test needs
        before = kit.all_paths(tmp_path)
        second = kit.invoke(*args)
        line = kit.error_line(second, str(out), "another prunehess run", f"pid {proc.pid}", "--output")
        assert second.exit_code == 1, line
        assert kit.all_paths(tmp_path) == before  # the second run wrote nothing
    finally:
        proc.kill()  # SIGKILL works on a stopped process; the OS releases its lock
        proc.wait()
    third = kit.ok(kit.invoke(*args))
    assert "2 computed" in third.output


def test_a_rerun_moves_the_earlier_runs_other_results_out_of_the_tree(kit, tmp_path):
    """Per-layer results, or checkpoints the new zip lacks, from a run under other options would be read by the
    plots and the report as this run's: they go to .prunehess/superseded/<time>/, kept, and the tree holds one run."""
    run = _zip(kit, tmp_path, n=3)
    model = kit.model_file(tmp_path)
    out = tmp_path / "out"
    kit.extract(run, out, "--compute-each-layer", model=model)
    layered = kit.text_files(out)
    assert "trace_layer3/trace002_best.txt" in layered

    plain = kit.extract(run, out, model=model)  # no --compute-each-layer: other options, so all recomputed
    assert "3 computed" in plain.output and "moved 72 result file(s) of an earlier run" in plain.output
    files = kit.text_files(out)
    assert not any("_layer" in name for name in files), sorted(files)
    assert OutputLayout(out).layers_present() == []
    assert [row["layer"] for row in kit.summary(out)] == [None] * 3
    (first,) = (out / ".prunehess" / "superseded").iterdir()
    assert (first / "trace_layer3" / "trace002_best.txt").read_bytes() == layered["trace_layer3/trace002_best.txt"]
    assert len([p for p in first.rglob("*.txt")]) == 60 and len(list(first.rglob("*.pdf"))) == 12  # 6 x 4 x 3
    assert files["trace/trace002_best.txt"] == layered["trace/trace002_best.txt"]  # the whole model's numbers stay

    again = kit.extract(run, out, model=model)  # the same options: nothing to move
    assert "0 computed" in again.output and "moved" not in again.output

    fewer = _zip(kit, tmp_path / "fewer", n=2)  # a zip without the last checkpoint, other numbers
    rerun = kit.extract(fewer, out, "--seed", "3", model=model)
    assert "moved 6 result file(s)" in rerun.output  # the third checkpoint's six files
    assert list(OutputLayout(out).list_results("trace")) == [(-1, 0), (0, None)]
    second = [p for p in (out / ".prunehess" / "superseded").iterdir() if p != first]
    assert len(second) == 1 and (second[0] / "trace" / "trace002_best.txt").is_file()
    assert (first / "trace_layer3" / "trace002_best.txt").is_file()  # each run's leftovers in a folder of its own


def test_results_moved_aside_are_recomputed_when_their_checkpoint_comes_back(kit, tmp_path):
    """Zip A (3 checkpoints), then zip B (2, other weights), then A again: the record of A's third checkpoint left
    the records with its files, so the last run computes it instead of skipping a checkpoint whose files are gone."""
    model = kit.model_file(tmp_path)
    a = _zip(kit, tmp_path / "a", n=3)
    b = _other_experiment(kit, tmp_path / "b")
    out = tmp_path / "out"
    kit.extract(a, out, model=model)
    reference = kit.text_files(out)
    assert "moved 6 result file(s)" in kit.extract(b, out, model=model).output
    back = kit.extract(a, out, model=model)
    assert "3 computed, 0 already finished" in back.output
    assert kit.text_files(out) == reference


def test_another_experiments_zip_into_the_same_output_is_computed_not_taken_from_the_first(kit, tmp_path):
    """Same file names, same options, other weights (say the reinit run after the lottery-ticket one, both into the
    default ``output``): finished records are reused only for the same bytes."""
    model = kit.model_file(tmp_path)
    first = _zip(kit, tmp_path / "lt", n=2)
    other = _other_experiment(kit, tmp_path / "reinit")
    out = tmp_path / "out"
    kit.extract(first, out, model=model)
    second = kit.extract(other, out, model=model)
    assert "2 computed, 0 already finished" in second.output
    alone = tmp_path / "alone"
    kit.extract(other, alone, model=model)
    assert kit.text_files(out) == kit.text_files(alone)  # the second experiment's numbers, nothing of the first
    again = kit.extract(other, out, model=model)
    assert "0 computed, 2 already finished" in again.output
