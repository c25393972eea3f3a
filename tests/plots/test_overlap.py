"""Top-k eigenspace overlaps and layer shares: known cases, the common-support rule, the figures, the CLI."""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from prunehess.cli import main
from prunehess.layout import OutputLayout
from prunehess.plots.overlap import (Eigenvectors, eigenvector_overlap, layer_shares, overlap_matrix, plot_overlap,
                                     read_eigenvectors, render_layer_shares, render_overlap_matrix, subspace_overlap)


def _rotation(n: int, i: int, j: int, phi: float) -> np.ndarray:
    R = np.eye(n)
    R[[i, j], [i, j]] = np.cos(phi)
    R[i, j], R[j, i] = -np.sin(phi), np.sin(phi)
    return R


def test_a_subspace_overlaps_itself_fully():
    rng = np.random.default_rng(0)
    U, _ = np.linalg.qr(rng.normal(size=(30, 4)))
    assert subspace_overlap(U, U) == pytest.approx(1.0, abs=1e-13)
    mixed = U @ np.linalg.qr(rng.normal(size=(4, 4)))[0]  # another basis of the same span
    assert subspace_overlap(U, mixed) == pytest.approx(1.0, abs=1e-13)


@pytest.mark.parametrize("phi", [0.0, 0.3, np.pi / 4, 1.2, np.pi / 2])
def test_a_vector_rotated_by_phi_overlaps_by_cos_squared(phi):
    u = np.eye(6)[:, :1]
    v = _rotation(6, 0, 3, phi) @ u
    assert subspace_overlap(u, v) == pytest.approx(np.cos(phi) ** 2, abs=1e-14)


@pytest.mark.parametrize("phi", [0.2, 0.9])
def test_two_dimensions_one_rotated_out_of_the_plane(phi):
    """U = [e0, e1]; V = [cos φ e0 + sin φ e2, e1]: principal angles φ and 0, overlap (cos²φ + 1) / 2."""
    U = np.eye(5)[:, :2]
    V = _rotation(5, 0, 2, phi) @ U
    assert subspace_overlap(U, V) == pytest.approx((np.cos(phi) ** 2 + 1) / 2, abs=1e-14)
    # both vectors rotated out of the plane, by φ and 2φ into different dimensions
    W = _rotation(5, 1, 4, 2 * phi) @ V
    assert subspace_overlap(U, W) == pytest.approx((np.cos(phi) ** 2 + np.cos(2 * phi) ** 2) / 2, abs=1e-14)


def test_random_subspaces_overlap_by_about_k_over_n():
    """E‖UᵀV‖²_F = k²/n for independent uniform k-subspaces of R^n: the mean of 200 draws within 4 standard
    errors of k/n."""
    rng = np.random.default_rng(1)
    n, k, draws = 200, 4, 200
    values = np.array([subspace_overlap(np.linalg.qr(rng.normal(size=(n, k)))[0],
                                        np.linalg.qr(rng.normal(size=(n, k)))[0]) for _ in range(draws)])
    stderr = values.std(ddof=1) / np.sqrt(draws)
    assert abs(values.mean() - k / n) < 4 * stderr, (values.mean(), k / n, stderr)
    assert values.max() < 0.15  # far from 1: unrelated


def test_common_support_drops_what_either_pruned_and_reorthonormalises():
    # A survives on coordinates 0-4, B on 1-5; common support 1-4
    a1 = np.array([3.0, 0.6, 0.8, 0.0, 0.0, 0.0])  # restricted: (0.6, 0.8, 0, 0), norm 1 once normalised
    b1 = np.array([0.0, 0.6, 0.8, 0.0, 0.0, 5.0])
    A = Eigenvectors(np.array([2.0]), {"w": (a1 / np.linalg.norm(a1))[None, :]})
    B = Eigenvectors(np.array([1.0]), {"w": (b1 / np.linalg.norm(b1))[None, :]})
    assert eigenvector_overlap(A, B) == pytest.approx(1.0, abs=1e-14)  # the same direction on the shared weights
    # k = 2: A survives on 0, 1 and B on 0, 2; on the common coordinate 0 each pair of vectors collapses onto one
    a = np.array([[1.0, 1.0, 0.0], [1.0, -1.0, 0.0]]) / np.sqrt(2)
    b = np.array([[1.0, 0.0, 1.0], [1.0, 0.0, -1.0]]) / np.sqrt(2)
    A2, B2 = (Eigenvectors(np.array([2.0, 1.0]), {"w": v}) for v in (a, b))
    assert eigenvector_overlap(A2, B2) == pytest.approx(0.5, abs=1e-14)  # one shared direction out of k = 2
    # merely normalising each restricted vector would count that direction four times: an "overlap" of 2
    naive_a, naive_b = (v[:, :1] / np.abs(v[:, :1]) for v in (a, b))
    assert np.sum((naive_a @ naive_b.T) ** 2) / 2 == pytest.approx(2.0)


def test_overlap_with_different_counts_uses_the_leading_vectors():
    U = np.eye(4)[:, :3]
    V = np.eye(4)[:, [0, 3]]
    assert subspace_overlap(U, V) == pytest.approx(0.5)  # k = 2: U's first two (e0, e1) against (e0, e3)


def test_layer_shares_sum_to_one():
    rng = np.random.default_rng(2)
    vectors = {"a": rng.normal(size=(2, 3, 4)), "b": rng.normal(size=(2, 5)), "c": np.zeros((2, 2))}
    shares = layer_shares(vectors)
    assert sum(shares.values()) == pytest.approx(1.0, abs=1e-15) and shares["c"] == 0.0
    assert shares["a"] == pytest.approx(np.sum(vectors["a"][0] ** 2) / (np.sum(vectors["a"][0] ** 2)
                                                                       + np.sum(vectors["b"][0] ** 2)))
    assert sum(layer_shares(vectors, index=1).values()) == pytest.approx(1.0, abs=1e-15)


# ------------------------------------------------------------------------------------------ files and figures
def _tree(root, k: int = 2) -> OutputLayout:
    """An output with eigenvectors for iterations 0-1 (epochs 0, 10 and best), masks differing between them."""
    out = OutputLayout(root)
    rng = np.random.default_rng(3)
    for iteration in (0, 1):
        mask = np.ones((4, 5), bool)
        mask[:, : iteration * 2] = False
        for epoch in (0, 10, None):
            Q, _ = np.linalg.qr(rng.normal(size=(23, k)) * np.concatenate([mask.ravel(), np.ones(3, bool)])[:, None])
            vectors = {"w": (Q[:20].T.reshape(k, 4, 5) * mask).astype(np.float32), "b": Q[20:].T.astype(np.float32)}
            import io

            buffer = io.BytesIO()
            np.savez(buffer, eigenvalues=np.arange(k, 0, -1.0), **vectors)
            out.write_bytes("eigenvectors", iteration, epoch, buffer.getvalue(), ext="npz")
    out.write_remain_params([100.0, 80.0])
    out.write_layers([(0, "w", 20), (1, "b", 3)])
    return out


def test_overlap_matrix_is_symmetric_with_ones_on_the_diagonal(tmp_path):
    out = _tree(tmp_path)
    keys = [(0, 0), (0, 10), (0, None), (1, None)]
    M = overlap_matrix(out, keys)
    np.testing.assert_allclose(M, M.T, atol=0)
    np.testing.assert_allclose(np.diag(M), 1.0, atol=1e-6)  # float32 vectors
    assert np.all((M >= 0) & (M <= 1 + 1e-6))
    direct = eigenvector_overlap(read_eigenvectors(out.result_path("eigenvectors", 0, 10, ext="npz")),
                                 read_eigenvectors(out.result_path("eigenvectors", 1, None, ext="npz")))
    assert M[1, 3] == direct


def test_plot_overlap_writes_the_figures(tmp_path):
    out = _tree(tmp_path / "out")
    written = plot_overlap(out.root, tmp_path / "figs", model_name="m", dataset_name="d")
    assert sorted(p.relative_to(tmp_path / "figs").as_posix() for p in written) == [
        "whole_model/best_model.jpg", "whole_model/layer_share.jpg", "whole_model/model0.jpg",
        "whole_model/model1.jpg"]
    assert all(p.stat().st_size > 1000 for p in written)


def test_renderers_draw_the_numbers():
    fig = render_overlap_matrix(["a", "b"], [[1.0, 0.25], [0.25, 1.0]], title="t")
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), [[1.0, 0.25], [0.25, 1.0]])
    assert [t.get_text() for t in fig.axes[0].texts] == ["1.00", "0.25", "0.25", "1.00"]
    fig = render_layer_shares(["001_00", "001_best"], ["w", "b"], [[0.7, 0.4], [0.3, 0.6]])
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), [[0.7, 0.4], [0.3, 0.6]])
    with pytest.raises(ValueError):
        render_layer_shares(["x"], ["w", "b"], [[1.0, 0.0]])


def test_no_eigenvectors_is_one_line(tmp_path):
    out = OutputLayout(tmp_path / "out")
    out.write_trace(0, 10, 1.0)
    result = CliRunner().invoke(main, ["plot", "overlap", "--path", str(out.root)])
    assert result.exit_code == 1
    assert result.output.strip() == (f"Error: {out.root / 'eigenvectors'}: no saved eigenvectors; run extract with "
                                     "--save-eigenvectors")


def test_the_cli_writes_under_figures_overlap(tmp_path):
    out = _tree(tmp_path / "out")
    result = CliRunner().invoke(main, ["plot", "overlap", "--path", str(out.root)])
    assert result.exit_code == 0, result.output
    assert (out.figures_dir / "overlap" / "whole_model" / "layer_share.jpg").is_file()
    assert "Wrote 4 figures" in result.output
