"""Whole runs: naming, schedule to the weight, rewinding, determinism, resuming, ABSA and tracking."""
from __future__ import annotations

import zipfile

import pytest
import torch

from prunehess.errors import ConfigError, OutputError
from prunehess.training import Curvature, RunFolder, prune_count, read_log, run_training
from prunehess.training.pruning import default_is_prunable

K, E = 3, 3


def _expected_survivors(n: int, percent: float, iteration: int) -> int:
    for _ in range(iteration):
        n -= prune_count(n, percent)
    return n


def _prunable(state):
    return {k: v for k, v in state.items() if default_is_prunable(k, v)}


def _run(h, path, **overrides):
    config = h.config(path, **overrides)
    return config, run_training(config, components=h.components())


def test_files_schedule_remaining_and_zip(tmp_path, h):
    config, summary = _run(h, tmp_path / "run", prune_iterations=K, epochs=E)
    folder = RunFolder.for_config(config)
    names = {p.name for p in folder.checkpoints.iterdir()}
    expected = {"initial_state_dict_lt.pth"}
    for ite in range(K):
        expected |= {f"{ite}_model_lt_epoch{e}.pth" for e in range(E + 1)} | {f"{ite}_model_lt.pth"}
    assert names == expected
    with zipfile.ZipFile(summary.archive) as zf:
        assert set(zf.namelist()) == expected | {"remain_params.txt", "train_log.csv", "train_config.yaml"}
        remain_lines = zf.read("remain_params.txt").decode().splitlines()
    assert summary.archive.name == "tiny.zip"
    assert remain_lines == folder.remain_params.read_text().splitlines()

    initial = h.load(folder.initial)
    previous = None
    for ite in range(K):
        for path in [folder.snapshot(ite, e) for e in range(E + 1)] + [folder.best(ite)]:
            state = h.load(path)
            for name, w in _prunable(state).items():
                n = initial[name].numel()
                assert int(torch.count_nonzero(w)) == _expected_survivors(n, config.prune_percent, ite), (path, name)
            if previous is not None:  # masks only shrink
                for name, w in _prunable(state).items():
                    assert not bool(((w != 0) & (previous[name] == 0)).any())
        final = h.load(folder.snapshot(ite, E))
        total = sum(v.numel() for v in final.values())
        nonzero = sum(int(torch.count_nonzero(v)) for v in final.values())
        assert remain_lines[ite] == f"{100.0 * nonzero / total:.1f}"
        previous = final
    assert remain_lines[0] == "100.0" and len(remain_lines) == K
    assert summary.remaining_percent == tuple(float(x) for x in remain_lines)

    rows = read_log(folder.log)
    assert [(r["iteration"], r["epoch"]) for r in rows] == [(i, e) for i in range(K) for e in range(E + 1)]
    assert all(r["train_loss"] is None for r in rows if r["epoch"] == 0)
    assert all(r["train_loss"] > 0 and r["batch_size"] == 16 for r in rows if r["epoch"] > 0)
    assert all(r["top_eigenvalue"] is None for r in rows)
    # the best checkpoint is the epoch with the best test accuracy (the earliest on ties)
    for ite in range(K):
        accs = [r["test_accuracy"] for r in rows if r["iteration"] == ite]
        best_epoch = accs.index(max(accs))
        assert summary.best_accuracy[ite] == max(accs)
        assert folder.best(ite).read_bytes() == folder.snapshot(ite, best_epoch).read_bytes()


def test_global_pruning_schedule_to_the_weight(tmp_path, h):
    config, _ = _run(h, tmp_path / "run", prune_iterations=3, epochs=1, prune_percent=30.0, global_pruning=True)
    folder = RunFolder.for_config(config)
    initial = _prunable(h.load(folder.initial))
    total = sum(w.numel() for w in initial.values())
    fractions = set()
    for ite in range(3):
        state = _prunable(h.load(folder.snapshot(ite, 1)))
        assert sum(int(torch.count_nonzero(w)) for w in state.values()) == _expected_survivors(total, 30.0, ite)
        fractions |= {round(int(torch.count_nonzero(w)) / w.numel(), 6) for w in state.values()}
    assert len(fractions) > 2  # layers lose different fractions


def test_lt_rewinds_exactly_to_the_initial_values(tmp_path, h):
    config, _ = _run(h, tmp_path / "run", prune_iterations=3, epochs=1)
    folder = RunFolder.for_config(config)
    initial = h.load(folder.initial)
    for ite in range(3):
        start = h.load(folder.snapshot(ite, 0))
        for name, value in start.items():
            survives = value != 0 if default_is_prunable(name, value) else torch.ones_like(value, dtype=torch.bool)
            assert torch.equal(value[survives], initial[name][survives]), (ite, name)
            assert torch.count_nonzero(value[~survives]) == 0


def test_reinit_does_not_rewind(tmp_path, h):
    config, _ = _run(h, tmp_path / "run", prune_iterations=3, epochs=1, prune_type="reinit")
    folder = RunFolder.for_config(config)
    assert folder.initial.name == "initial_state_dict_reinit.pth"
    assert folder.snapshot(1, 0).name == "1_model_reinit_epoch0.pth"
    initial = h.load(folder.initial)
    assert all(torch.equal(v, initial[k]) for k, v in h.load(folder.snapshot(0, 0)).items())
    starts = []
    for ite in (1, 2):
        start = h.load(folder.snapshot(ite, 0))
        starts.append(start)
        for name, value in _prunable(start).items():
            survives = value != 0
            assert int(survives.sum()) == _expected_survivors(initial[name].numel(), 20.0, ite)
            same = (value[survives] == initial[name][survives]).float().mean().item()
            assert same < 0.05, (ite, name)
    assert not torch.equal(starts[0]["body.0.bias"], starts[1]["body.0.bias"])


def test_same_seed_gives_identical_files_other_seed_does_not(tmp_path, h):
    _run(h, tmp_path / "a", prune_iterations=2, epochs=2)
    _run(h, tmp_path / "b", prune_iterations=2, epochs=2)
    _run(h, tmp_path / "c", prune_iterations=2, epochs=2, seed=8)
    a = h.digests(tmp_path / "a" / "checkpoints")
    assert a == h.digests(tmp_path / "b" / "checkpoints")
    assert (tmp_path / "a" / "tiny.zip").read_bytes() == (tmp_path / "b" / "tiny.zip").read_bytes()
    c = h.digests(tmp_path / "c" / "checkpoints")
    assert a.keys() == c.keys() and all(a[k] != c[k] for k in a)


def test_resume_skips_finished_iterations_and_ends_identical(tmp_path, h):
    _run(h, tmp_path / "fresh", prune_iterations=3, epochs=2)

    _run(h, tmp_path / "resumed", prune_iterations=2, epochs=2)
    first_best = (tmp_path / "resumed" / "checkpoints" / "0_model_lt.pth").stat().st_mtime_ns
    events = []
    config = h.config(tmp_path / "resumed", prune_iterations=3, epochs=2)
    summary = run_training(config, components=h.components(), on_event=events.append)
    assert summary.iterations_skipped == (0, 1) and summary.iterations_run == (2,)
    assert [e.iteration for e in events if e.kind == "skip"] == [0, 1]
    assert {e.iteration for e in events if e.kind == "epoch"} == {2}
    assert (tmp_path / "resumed" / "checkpoints" / "0_model_lt.pth").stat().st_mtime_ns == first_best
    assert h.digests(tmp_path / "fresh" / "checkpoints") == h.digests(tmp_path / "resumed" / "checkpoints")
    for name in ("tiny.zip", "remain_params.txt", "train_log.csv"):
        assert (tmp_path / "fresh" / name).read_bytes() == (tmp_path / "resumed" / name).read_bytes(), name

    # a rerun with nothing left to do only rebuilds the zip
    again = run_training(config, components=h.components())
    assert again.iterations_run == () and again.iterations_skipped == (0, 1, 2)
    assert (tmp_path / "fresh" / "tiny.zip").read_bytes() == (tmp_path / "resumed" / "tiny.zip").read_bytes()


def test_interrupted_iteration_is_redone(tmp_path, h):
    _run(h, tmp_path / "fresh", prune_iterations=3, epochs=2)

    class Stop(Exception):
        pass

    def crash(event):
        if event.kind == "epoch" and event.iteration == 1 and event.epoch == 1:
            raise Stop

    config = h.config(tmp_path / "crashed", prune_iterations=3, epochs=2)
    with pytest.raises(Stop):
        run_training(config, components=h.components(), on_event=crash)
    summary = run_training(config, components=h.components())
    assert summary.iterations_skipped == (0,) and summary.iterations_run == (1, 2)
    assert h.digests(tmp_path / "fresh" / "checkpoints") == h.digests(tmp_path / "crashed" / "checkpoints")
    assert (tmp_path / "fresh" / "train_log.csv").read_bytes() == (tmp_path / "crashed" / "train_log.csv").read_bytes()


def test_resume_refuses_other_settings_and_a_locked_folder(tmp_path, h):
    _run(h, tmp_path / "run", prune_iterations=1, epochs=1)
    with pytest.raises(ConfigError, match="--prune-percent"):
        _run(h, tmp_path / "run", prune_iterations=2, epochs=1, prune_percent=50.0)
    fcntl = pytest.importorskip("fcntl")
    with open(tmp_path / "run" / "train.lock", "r+") as held:  # another run holds the lock
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(OutputError, match="locked by another training run"):
            _run(h, tmp_path / "run", prune_iterations=2, epochs=1)
    _run(h, tmp_path / "run", prune_iterations=2, epochs=1)  # released: the run resumes
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="not a folder"):
        _run(h, tmp_path / "file", prune_iterations=1, epochs=1)


def test_absa_in_a_run_follows_the_scripted_eigenvalues(tmp_path, h):
    script = iter([1.0, 5.0, 2.4, 2.6, 1.0] + [3.0, 1.0, 1.0, 1.0, 1.0])

    def tracker(model):
        return Curvature(top_eigenvalue=next(script), trace=0.0, trace_stderr=0.0, n_hvp=0)

    config = h.config(tmp_path / "run", prune_iterations=2, epochs=4, track_eigen=1, batch_schedule="absa",
                      batch_size=8, absa_threshold=0.5, absa_max_batch_size=64)
    run_training(config, components=h.components(), tracker=tracker)
    rows = read_log(RunFolder.for_config(config).log)
    # peak 5.0 → 2.4 halves it: the next epoch trains with 16; the peak restarts at 2.4 and 1.0 halves it again.
    # Iteration 1 starts again from 8.
    assert [r["batch_size"] for r in rows] == [8, 8, 8, 16, 16] + [8, 8, 16, 16, 16]
    assert [r["top_eigenvalue"] for r in rows] == [1.0, 5.0, 2.4, 2.6, 1.0, 3.0, 1.0, 1.0, 1.0, 1.0]


def test_constant_schedule_with_tracking_every_other_epoch(tmp_path, h):
    calls = []

    def tracker(model):
        calls.append(1)
        return Curvature(top_eigenvalue=1.0 / len(calls), trace=2.0, trace_stderr=0.1, n_hvp=3)

    config = h.config(tmp_path / "run", prune_iterations=1, epochs=4, track_eigen=2)
    run_training(config, components=h.components(), tracker=tracker)
    rows = read_log(RunFolder.for_config(config).log)
    assert [r["top_eigenvalue"] is not None for r in rows] == [True, False, True, False, True]
    assert {r["batch_size"] for r in rows} == {16}
    assert [r["trace"] for r in rows if r["trace"] is not None] == [2.0, 2.0, 2.0]


def test_a_run_of_the_previous_version_resumes(tmp_path, h):
    """The previous version's folder: a log without the lr column, a state without the final state dict, and its
    fingerprint (the same dict for today's options: see test_config)."""
    import csv

    _run(h, tmp_path / "run", prune_iterations=2, epochs=1)
    log = tmp_path / "run" / "train_log.csv"
    with open(log, newline="") as fh:
        rows = [r[:-1] for r in csv.reader(fh)]
    assert rows[0][-1] == "trace"
    log.write_text("".join(",".join(r) + "\n" for r in rows))
    state = torch.load(tmp_path / "run" / "train_state.pt", weights_only=True)
    assert "final_state" not in state and set(state) == {"format", "fingerprint", "completed", "remaining",
                                                         "best_accuracy", "final_weights", "masks"}
    config, summary = _run(h, tmp_path / "run", prune_iterations=3, epochs=1)
    assert summary.iterations_skipped == (0, 1) and summary.iterations_run == (2,)
    logged = read_log(RunFolder.for_config(config).log)
    assert [r["lr"] for r in logged] == [None, None, None, None, None, 0.05]
