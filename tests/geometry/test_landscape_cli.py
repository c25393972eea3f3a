"""``prunehess landscape`` end to end on a tiny zip: files and their numbers, resuming, and one-line errors."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from prunehess.plots.landscape import read_curve, read_surface
from prunehess.storage import FolderLock

ALL = ("top1", "top2", "random", "gradient")


def _landscape(kit, output, *args):
    return kit.invoke("landscape", output, "--no-plot", *args)


def _direct_loss(kit, tmp_path, state) -> float:
    """The mean cross-entropy of the checkpoint on the run's Hessian batch (64 digits, seed 1), in float64."""
    model = kit.double_tiny(state).eval()
    batches = kit.hessian_batch(64, 32, 1, tmp_path)
    with torch.no_grad():
        return sum(float(F.cross_entropy(model(x), y, reduction="sum")) for x, y in batches) / 64


def test_every_direction_and_the_surface(kit, output, tmp_path):
    result = kit.ok(kit.invoke("landscape", output, "--directions", ",".join(ALL), "--surface", "--points", "7",
                               "--radius", "0.5"))
    assert re.search(r"done: 15 file\(s\) computed, 0 already finished", result.output), result.output
    for tag in ("001_best", "002_best", "003_best"):
        curves = {d: read_curve(output / "landscape" / f"{d}{tag}.txt") for d in ALL}
        for t, loss in curves.values():
            np.testing.assert_allclose(t, np.linspace(-0.5, 0.5, 7), rtol=0, atol=1e-15)
            assert np.all(np.isfinite(loss))
        centers = {d: loss[3] for d, (_, loss) in curves.items()}
        assert max(centers.values()) - min(centers.values()) < 1e-12  # t = 0 is the checkpoint on every curve
        surface = read_surface(output / "landscape" / f"top1-top2{tag}.txt")
        assert surface.loss.shape == (7, 7)
        np.testing.assert_allclose(surface.loss[:, 3], curves["top1"][1], rtol=1e-6)  # b = 0: the top1 curve
        np.testing.assert_allclose(surface.loss[3, :], curves["top2"][1], rtol=1e-6)
    # the checkpoint's loss: a direct float64 evaluation on the same Hessian batch
    _, loss = read_curve(output / "landscape" / "random001_best.txt")
    assert loss[3] == pytest.approx(_direct_loss(kit, tmp_path, kit.tiny_state(10)), rel=2e-6)
    # figures: a panel figure of the best checkpoints, a contour plot per surface
    figures = sorted(p.name for p in (output / "figures" / "landscape").iterdir())
    assert figures == ["best_model.jpg", "surface001_best.jpg", "surface002_best.jpg", "surface003_best.jpg"]


def test_the_headers_say_what_was_measured(kit, output):
    kit.ok(_landscape(kit, output, "--directions", "top1,random", "--checkpoints", "002_best", "--points", "3"))
    top1 = (output / "landscape" / "top1002_best.txt").read_text().splitlines()
    eigenvalue = np.loadtxt(output / "top_eigenvalues" / "top_eigenvalues002_best.txt")[0]
    assert "64 samples of digits, seed 1" in top1[0]
    assert f"eigenvalue {eigenvalue:.6g}" in top1[1] and "unit norm over the surviving weights" in top1[1]
    assert top1[2] == "# t: distance in parameter space" and top1[3] == "# t loss"
    random = (output / "landscape" / "random002_best.txt").read_text()
    norm = float(re.search(r"\|d\| = ([0-9.e+-]+)", random)[1])
    state = kit.tiny_state(11, prune=0.2)  # filter-normalised: |d| is the norm of the (surviving) weight matrices
    assert norm == pytest.approx(float(torch.sqrt(sum((state[k] ** 2).sum() for k in state if k.endswith("weight")))),
                                 rel=1e-5)
    assert "t: in filter norms" in random and "biases and BatchNorm parameters left out" in random


def test_the_top1_curvature_is_the_saved_top_eigenvalue(kit, output):
    h = 0.02
    kit.ok(_landscape(kit, output, "--directions", "top1", "--radius", h, "--points", "3"))
    for tag in ("001_best", "002_best", "003_best"):
        _, f = read_curve(output / "landscape" / f"top1{tag}.txt")
        lam = np.loadtxt(output / "top_eigenvalues" / f"top_eigenvalues{tag}.txt")[0]
        assert (f[0] - 2 * f[1] + f[2]) / h**2 == pytest.approx(lam, rel=0.01), tag


def test_checkpoints_all_and_tags(kit, output):
    kit.ok(_landscape(kit, output, "--directions", "random", "--checkpoints", "all", "--points", "3"))
    names = sorted(p.name for p in (output / "landscape").iterdir())
    assert names == sorted(f"random{t}.txt" for t in ("000_00", "001_00", "001_best", "002_00", "002_best",
                                                        "003_00", "003_best"))


def test_a_rerun_computes_nothing_and_changed_options_recompute_what_they_change(kit, output):
    kit.ok(_landscape(kit, output, "--directions", "top1,random", "--points", "5"))
    files = sorted((output / "landscape").iterdir())
    stamps = {p.name: p.stat().st_mtime_ns for p in files}
    again = kit.ok(_landscape(kit, output, "--directions", "top1,random", "--points", "5"))
    assert "done: 0 file(s) computed, 6 already finished" in again.output
    assert {p.name: p.stat().st_mtime_ns for p in files} == stamps
    seed = kit.ok(_landscape(kit, output, "--directions", "top1,random", "--points", "5", "--seed", "9"))
    assert "done: 3 file(s) computed, 3 already finished" in seed.output  # only the random direction changed
    changed = {p.name for p in files if p.stat().st_mtime_ns != stamps[p.name]}
    assert changed == {"random001_best.txt", "random002_best.txt", "random003_best.txt"}
    radius = kit.ok(_landscape(kit, output, "--directions", "top1,random", "--points", "5", "--seed", "9",
                               "--radius", "0.3"))
    assert "done: 6 file(s) computed, 0 already finished" in radius.output


def test_no_saved_eigenvectors_is_one_line(kit, output):
    import shutil

    shutil.rmtree(output / "eigenvectors")
    result = _landscape(kit, output, "--directions", "top1,random")
    kit.error_line(result, str(output / "eigenvectors" / "eigenvectors001_best.npz"), "--save-eigenvectors",
                   alone=False)
    assert not (output / "landscape").exists()  # nothing computed before the check


def test_top2_needs_two_saved_vectors(kit, output):
    path = output / "eigenvectors" / "eigenvectors001_best.npz"
    with np.load(path) as data:
        arrays = {k: data[k][:1] for k in data.files}
    np.savez(path, **arrays)
    result = _landscape(kit, output, "--directions", "top2", "--checkpoints", "001_best")
    kit.error_line(result, str(path), "holds 1 eigenvector(s)", "--top-n 2", alone=False)


def test_an_unknown_tag_is_one_line(kit, output, extracted):
    result = _landscape(kit, output, "--checkpoints", "001_best,009_best", "--directions", "random")
    kit.error_line(result, str(extracted.zip), "no checkpoint tagged 009_best", "001_best", alone=False)
    bad = _landscape(kit, output, "--checkpoints", "latest")
    kit.error_line(bad, "checkpoints: 'latest' is neither best, all, nor a checkpoint tag")


def test_a_run_whose_zip_moved(kit, output, extracted, tmp_path):
    config = yaml.safe_load((output / "config.yaml").read_text())
    config["resume"] = str(tmp_path / "gone")
    (output / "config.yaml").write_text(yaml.safe_dump(config))
    result = _landscape(kit, output, "--directions", "random")
    kit.error_line(result, str(tmp_path / "gone" / extracted.zip.name), "is not there", "--resume")
    kit.ok(_landscape(kit, output, "--directions", "random", "--points", "3", "--resume", extracted.base))
    assert (output / "landscape" / "random001_best.txt").is_file()


def test_not_an_output_folder_and_bad_options(kit, tmp_path, output):
    kit.error_line(_landscape(kit, tmp_path), str(tmp_path / "config.yaml"), "not found")
    kit.error_line(_landscape(kit, tmp_path / "nowhere"), "no such folder")
    kit.error_line(_landscape(kit, output, "--directions", "top1,hessian"), "'hessian' is not one of")
    kit.error_line(_landscape(kit, output, "--points", "1"), "points must be at least 2")


def test_a_locked_output_is_refused(kit, output):
    lock = FolderLock(output / ".prunehess" / "lock", busy=str).acquire()
    try:
        result = _landscape(kit, output, "--directions", "random")
    finally:
        lock.release()
    kit.error_line(result, "another prunehess run", "is writing to this output folder")


def test_help(kit):
    result = kit.ok(kit.invoke("landscape", "--help"))
    for option in ("--checkpoints", "--directions", "--radius", "--points", "--surface", "--seed", "--include-biases",
                   "--resume", "--memory-mb", "Examples:"):
        assert option in result.output, option
