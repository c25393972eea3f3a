"""``prunehess barrier`` end to end on tiny zips: the pairs, the paths against direct evaluations, barrier.csv,
``--against``, resuming and one-line errors."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from prunehess.data import load_split
from prunehess.geometry import barrier_height
from prunehess.plots.barrier import BARRIER_COLUMNS, read_barrier_table, read_path

from geometry_support import make_run


def _barrier(kit, output, *args):
    return kit.invoke("barrier", output, "--no-plot", *args)


@torch.no_grad()
def _direct(kit, tmp_path, state) -> tuple[float, float, float, float]:
    """Loss and error on the run's Hessian batch and on the digits test split, float64, by a plain forward."""
    model = kit.double_tiny(state).eval()
    batch = kit.hessian_batch(64, 32, 1, tmp_path)
    test = load_split("digits", root=tmp_path, split="test")
    x_test, y_test = test.take(torch.arange(len(test)), dtype=torch.float64)
    out = []
    for data in (batch, [(x_test, y_test)]):
        n = sum(len(y) for _, y in data)
        out.append(sum(float(F.cross_entropy(model(x), y, reduction="sum")) for x, y in data) / n)
        out.append(sum(int((model(x).argmax(1) != y).sum()) for x, y in data) / n)
    return tuple(out)


def _mixed(a: dict, b: dict, alpha: float) -> dict:
    return {k: (1 - alpha) * a[k].double() + alpha * b[k].double() for k in a}


def test_consecutive_and_rewind_pairs(kit, output, tmp_path):
    result = kit.ok(kit.invoke("barrier", output, "--pairs", "consecutive,rewind", "--points", "5"))
    assert "done: 5 path(s) computed, 0 already finished" in result.output
    names = sorted(p.name for p in (output / "barrier").iterdir())
    assert names == ["barrier.csv", "consecutive_001_best_002_best.txt", "consecutive_002_best_003_best.txt",
                     "rewind_001_00_001_best.txt", "rewind_002_00_002_best.txt", "rewind_003_00_003_best.txt"]
    rows = read_barrier_table(output / "barrier" / "barrier.csv")
    assert [(r["kind"], r["tag_a"], r["tag_b"]) for r in rows] == [
        ("consecutive", "001_best", "002_best"), ("consecutive", "002_best", "003_best"),
        ("rewind", "001_00", "001_best"), ("rewind", "002_00", "002_best"), ("rewind", "003_00", "003_best")]
    for row in rows:
        path = read_path(output / "barrier" / f"{row['kind']}_{row['tag_a']}_{row['tag_b']}.txt")
        np.testing.assert_allclose(path["alpha"], np.linspace(0, 1, 5), rtol=0, atol=1e-15)
        for column in ("loss", "error", "test_loss", "test_error"):
            assert row[f"{column}_barrier"] == barrier_height(path["alpha"], path[column])
            assert row[f"{column}_barrier"] >= 0.0
        assert row["loss_a"] == path["loss"][0] and row["test_error_b"] == path["test_error"][-1]
    assert sorted(p.name for p in (output / "figures" / "barrier").iterdir()) == ["consecutive.jpg", "rewind.jpg"]


def test_a_path_equals_direct_evaluations_of_the_interpolated_weights(kit, output, tmp_path):
    kit.ok(_barrier(kit, output, "--pairs", "consecutive", "--points", "3"))
    a, b = kit.tiny_state(11, prune=0.2), kit.tiny_state(12, prune=0.36)  # 002_best, 003_best
    path = read_path(output / "barrier" / "consecutive_002_best_003_best.txt")
    for i, alpha in enumerate((0.0, 0.5, 1.0)):
        want = _direct(kit, tmp_path, _mixed(a, b, alpha))
        got = [path[c][i] for c in ("loss", "error", "test_loss", "test_error")]
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-12)


def _other_output(output, folder, zip_path, **changes):
    """An extract output of another run, as barrier reads it: its config.yaml (this run's, with the other zip and
    ``changes``); no result files are needed."""
    config = yaml.safe_load((output / "config.yaml").read_text())
    config.update(resume=str(zip_path.parent), zipname=zip_path.name, output=str(folder), **changes)
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return folder


def test_against_another_run_of_the_same_model(kit, output, tmp_path):
    zip_path, _ = make_run(kit, tmp_path, seed=5, name="reinit.zip")
    other = _other_output(output, tmp_path / "reinit_out", zip_path)
    result = kit.ok(_barrier(kit, output, "--against", other, "--points", "3"))
    assert "done: 3 path(s) computed" in result.output
    rows = read_barrier_table(output / "barrier" / "barrier.csv")
    assert [(r["kind"], r["tag_a"], r["tag_b"], r["other"]) for r in rows] == [
        ("against", t, t, str(other)) for t in ("001_best", "002_best", "003_best")]
    path = read_path(output / "barrier" / "against_001_best_001_best.txt")
    assert path["loss"][0] == pytest.approx(_direct(kit, tmp_path, kit.tiny_state(10))[0], rel=2e-6)
    assert path["loss"][-1] == pytest.approx(_direct(kit, tmp_path, kit.tiny_state(15))[0], rel=2e-6)
    both = kit.ok(_barrier(kit, output, "--pairs", "rewind", "--against", other, "--points", "3"))
    assert "done: 3 path(s) computed, 3 already finished" in both.output  # against: finished before
    assert len(read_barrier_table(output / "barrier" / "barrier.csv")) == 6


def test_against_a_run_of_another_model_is_one_line(kit, output, extracted, tmp_path):
    other = _other_output(output, tmp_path / "fc1_out", extracted.zip, model="fc1")
    result = _barrier(kit, output, "--against", other)
    kit.error_line(result, str(other / "config.yaml"), "a run of fc1 on digits",
                   "barriers need two runs of the same model")


def test_a_rerun_computes_nothing(kit, output):
    kit.ok(_barrier(kit, output, "--points", "3"))
    table = (output / "barrier" / "barrier.csv").read_bytes()
    stamp = (output / "barrier" / "consecutive_001_best_002_best.txt").stat().st_mtime_ns
    again = kit.ok(_barrier(kit, output, "--points", "3"))
    assert "done: 0 path(s) computed, 2 already finished" in again.output
    assert (output / "barrier" / "consecutive_001_best_002_best.txt").stat().st_mtime_ns == stamp
    assert (output / "barrier" / "barrier.csv").read_bytes() == table
    more = kit.ok(_barrier(kit, output, "--points", "5"))
    assert "done: 2 path(s) computed, 0 already finished" in more.output
    rows = read_barrier_table(output / "barrier" / "barrier.csv")
    assert [r["points"] for r in rows] == [5, 5]
    assert list(rows[0]) == list(BARRIER_COLUMNS)


def test_bad_input_is_one_line(kit, output, tmp_path):
    kit.error_line(_barrier(kit, output, "--pairs", "diagonal"), "pairs: 'diagonal' is not one of consecutive, rewind")
    kit.error_line(_barrier(kit, tmp_path), str(tmp_path / "config.yaml"), "not found")
    kit.error_line(_barrier(kit, output, "--against", tmp_path / "missing"), "no such folder")
    shutil.rmtree(output / "barrier", ignore_errors=True)
    kit.error_line(_barrier(kit, output, "--points", "1"), "points must be at least 2")
