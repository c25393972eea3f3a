"""``extract --curvature ggn|fisher`` write the numbers of the dense GGN and empirical Fisher matrices.

As ``test_numbers.py`` for the Hessian: the 610-parameter tanh user model on digits, a dense and a pruned
checkpoint, and the float64 references of :mod:`prunehess.reference` (``dense_ggn``, ``dense_empirical_fisher``) on
the very Hessian batch the pipeline draws, over the surviving weights. Both matrices are positive semi-definite, so
no bottom eigenvalue may fall below rounding (−1e-6·λmax); the empirical Fisher of 120 samples has rank ≤ 120 < 610,
so its bottom eigenvalues are zeros. The product strategy is the default (``--strategy auto``, chosen by rule).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from prunehess.models import is_prunable
from prunehess.operators.masks import zero_masks
from prunehess.reference import dense_empirical_fisher, dense_ggn, exact_spectrum

SIZE, MINI, SEED = 120, 50, 3  # three mini-batches, the last one smaller (50, 50, 20)
CHECKPOINTS = {"001_best": (0, 11, 0.0), "002_best": (1, 12, 0.4)}  # tag -> (iteration, state seed, pruned)
CURVATURES = ("ggn", "fisher")
REFERENCES = {"ggn": dense_ggn, "fisher": dense_empirical_fisher}


@dataclass
class Runs:
    root: Path
    model: str
    outputs: dict  # curvature -> output folder
    spectra: dict  # (curvature, tag) -> exact eigenvalues, descending
    traces: dict  # (curvature, tag) -> exact trace


def _args(model: str) -> list:
    return ["--model", model, "--dataset", "digits", "--hessian-batch-size", SIZE, "--mini-hessian-batch-size", MINI,
            "--seed", SEED, "--top-n", 3, "--tol", "1e-6", "--trace-probes", 150, "--trace-tol", 0,
            "--slq-steps", 12, "--bottom-n", 2, "--bottom-tol", "1e-6", "--no-test-accuracy", "--no-cuda"]


@pytest.fixture(scope="module")
def runs(kit, tmp_path_factory) -> Runs:
    root = tmp_path_factory.mktemp("curvature")
    model = kit.model_file(root)
    states = {tag: kit.tiny_state(seed, prune) for tag, (_, seed, prune) in CHECKPOINTS.items()}
    kit.write_zip(root / "run" / "mnist.zip", [(f"{it}_model_lt.pth", states[tag])
                                               for tag, (it, _, _) in CHECKPOINTS.items()])
    outputs = {}
    for curvature in ("hessian",) + CURVATURES:
        outputs[curvature] = root / f"out_{curvature}"
        kit.extract(root / "run", outputs[curvature], *_args(model), "--curvature", curvature, fast=False)
    batches = kit.hessian_batch(SIZE, MINI, SEED, root)
    spectra, traces = {}, {}
    for tag, state in states.items():
        net = kit.double_tiny(state)
        masks = zero_masks(net, is_prunable)
        for curvature in CURVATURES:
            matrix = REFERENCES[curvature](net, batches, masks=masks)
            spectra[curvature, tag] = exact_spectrum(matrix)[0].numpy()
            traces[curvature, tag] = float(torch.trace(matrix))
    return Runs(root, model, outputs, spectra, traces)


def _values(kit, out: Path, metric: str, tag: str) -> np.ndarray:
    return kit.numbers(out / metric / f"{metric}{tag}.txt")


def _row(kit, out: Path, tag: str) -> dict:
    rows = [r for r in kit.summary(out) if r["iteration"] == CHECKPOINTS[tag][0] and r["layer"] is None]
    assert len(rows) == 1
    return rows[0]


@pytest.mark.parametrize("tag", list(CHECKPOINTS))
@pytest.mark.parametrize("curvature", CURVATURES)
def test_top_eigenvalues_equal_the_dense_matrix(kit, runs, curvature, tag):
    written = _values(kit, runs.outputs[curvature], "top_eigenvalues", tag)
    exact = runs.spectra[curvature, tag]
    assert written.shape == (3,) and np.all(np.diff(written) <= 0)
    np.testing.assert_allclose(written, exact[:3], rtol=2e-5, atol=2e-6 * abs(exact[0]),
                               err_msg=f"{curvature} {tag}")


@pytest.mark.parametrize("tag", list(CHECKPOINTS))
@pytest.mark.parametrize("curvature", CURVATURES)
def test_trace_within_four_standard_errors(kit, runs, curvature, tag):
    written = float(_values(kit, runs.outputs[curvature], "trace", tag)[0])
    row = _row(kit, runs.outputs[curvature], tag)
    exact = runs.traces[curvature, tag]
    assert row["trace"] == pytest.approx(written, rel=1e-12)
    assert 0 < row["trace_stderr"] < 0.2 * exact
    assert abs(written - exact) <= 4 * row["trace_stderr"], (curvature, tag, written, exact, row["trace_stderr"])


@pytest.mark.parametrize("tag", list(CHECKPOINTS))
@pytest.mark.parametrize("curvature", CURVATURES)
def test_no_negative_eigenvalues(kit, runs, curvature, tag):
    """Positive semi-definite: the bottom eigenvalues are ≥ 0 up to rounding, and agree with the exact ones."""
    bottom = _values(kit, runs.outputs[curvature], "bottom_eigenvalues", tag)
    exact = runs.spectra[curvature, tag]
    assert exact[-1] >= -1e-10 * exact[0]  # the references themselves
    assert bottom.shape == (2,) and np.all(bottom >= -1e-6 * exact[0]), (curvature, tag, bottom, exact[0])
    np.testing.assert_allclose(bottom, exact[::-1][:2], rtol=0, atol=1e-4 * exact[0])
    if curvature == "fisher":  # rank ≤ SIZE < 610: zeros at the bottom
        assert np.all(np.abs(bottom) <= 1e-5 * exact[0])
    assert _row(kit, runs.outputs[curvature], tag)["negative_mass"] <= 1e-3


@pytest.mark.parametrize("curvature", ("hessian",) + CURVATURES)
def test_config_yaml_records_the_curvature(runs, curvature):
    config = yaml.safe_load((runs.outputs[curvature] / "config.yaml").read_text())
    assert config["curvature"] == curvature


def test_a_hessian_run_and_a_ggn_run_of_the_same_zip_differ(kit, runs):
    """The tanh network is not piecewise linear: H ≠ G, and the two outputs say so."""
    for tag in CHECKPOINTS:
        hessian = _values(kit, runs.outputs["hessian"], "top_eigenvalues", tag)
        ggn = _values(kit, runs.outputs["ggn"], "top_eigenvalues", tag)
        assert not np.allclose(hessian, ggn, rtol=1e-3), (tag, hessian, ggn)
        assert np.allclose(ggn, runs.spectra["ggn", tag][:3], rtol=2e-5, atol=2e-6 * ggn[0])
        assert _row(kit, runs.outputs["hessian"], tag)["trace"] != _row(kit, runs.outputs["ggn"], tag)["trace"]
    hessian_files, ggn_files = kit.text_files(runs.outputs["hessian"]), kit.text_files(runs.outputs["ggn"])
    assert set(hessian_files) == set(ggn_files)
    assert hessian_files["top_eigenvalues/top_eigenvalues001_best.txt"] != ggn_files[
        "top_eigenvalues/top_eigenvalues001_best.txt"]


@pytest.mark.parametrize("curvature", CURVATURES)
def test_strategy_tune_with_another_curvature(kit, runs, curvature, tmp_path):
    """--strategy tune times the Hessian's product strategies; the GGN and Fisher operators take the rule's."""
    out = tmp_path / "out"
    result = kit.invoke("extract", "--resume", runs.root / "run", "--output", out, *_args(runs.model), "--curvature",
                        curvature, "--strategy", "tune")
    assert result.exit_code == 0, result.output
    written = _values(kit, out, "top_eigenvalues", "001_best")
    np.testing.assert_allclose(written, runs.spectra[curvature, "001_best"][:3], rtol=2e-5)
