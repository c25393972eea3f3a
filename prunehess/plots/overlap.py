"""Where the sharp directions live: overlaps of the saved top-k eigenspaces, and each layer's share of the top one.

From the ``eigenvectors/eigenvectors<III>_<EE>.npz`` files that ``extract --save-eigenvectors`` writes (``eigenvalues``
``(k,)`` and, per parameter, its ``(k, *shape)`` unit eigenvectors, exactly 0 on pruned weights).

**Overlap.** For orthonormal bases ``U``, ``V`` (``n × k``) of two top-k eigenspaces, ``‖UᵀV‖²_F / k`` is the mean
squared cosine of their principal angles: 1 for the same subspace, 0 for orthogonal ones, about ``k/n`` for
unrelated (random) ones. Two checkpoints of different prune iterations have different surviving weights, so they
are compared on the coordinates that survive in both (a weight pruned in either is dropped from both; a checkpoint's
surviving coordinates are those where any of its saved vectors is non-zero). Restricted to that common support,
the vectors are no longer unit nor orthogonal, so each restricted set is **re-orthonormalised** (an orthonormal
basis of its span, from its SVD; directions whose restriction has a singular value below ``rank_tol`` have
vanished and count as 0) and the overlap is ``‖Q_UᵀQ_V‖²_F / k``. Merely normalising each restricted vector would
not do for ``k > 1``: two restricted vectors that became nearly parallel would both count against the same
direction of the other set, and the "overlap" could exceed 1. For ``k = 1`` both rules agree: the squared cosine of
the angle between the two restricted vectors. When the supports coincide (the epochs of one iteration), this is
exactly ``‖UᵀV‖²_F / k``. ``k`` is the smaller of the two files' counts (the leading vectors of each).

**Layer shares.** The share of parameter tensor ``p`` in the top eigenvector ``v``: ``‖v_p‖² / ‖v‖²`` (they sum
to 1 over the tensors): where the sharpest direction lives.

Example:
    >>> import numpy as np
    >>> U = np.eye(4)[:, :1]
    >>> V = np.array([[np.cos(0.3)], [np.sin(0.3)], [0.0], [0.0]])
    >>> bool(abs(subspace_overlap(U, V) - np.cos(0.3) ** 2) < 1e-12)
    True
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from prunehess.errors import DataError
from prunehess.layout import OutputLayout, epoch_tag
from prunehess.plots import _common as c

__all__ = ["Eigenvectors", "read_eigenvectors", "subspace_overlap", "eigenvector_overlap", "layer_shares",
           "overlap_matrix", "render_overlap_matrix", "render_layer_shares", "overlap_figures", "plot_overlap",
           "NO_EIGENVECTORS"]

METRIC = "eigenvectors"
NO_EIGENVECTORS = "no saved eigenvectors; run extract with --save-eigenvectors"


@dataclass(frozen=True)
class Eigenvectors:
    """A saved top-k eigenbasis: ``eigenvalues`` ``(k,)`` and parameter name → ``(k, *shape)`` (float64)."""

    eigenvalues: np.ndarray
    vectors: Mapping[str, np.ndarray]

    @property
    def k(self) -> int:
        return int(self.eigenvalues.size)


def read_eigenvectors(path: str | Path) -> Eigenvectors:
    """One ``.npz`` of ``extract --save-eigenvectors`` (no pickles); :class:`DataError` naming the file when it
    is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: not found ({NO_EIGENVECTORS})")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: np.asarray(data[name], dtype=np.float64) for name in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise DataError(f"{path}: not a readable .npz of eigenvectors ({err})") from None
    values = arrays.pop("eigenvalues", None)
    if values is None or values.ndim != 1 or not arrays:
        raise DataError(f"{path}: expected 'eigenvalues' (k,) and one (k, *shape) array per parameter")
    bad = [name for name, v in arrays.items() if v.ndim < 1 or v.shape[0] != values.size]
    if bad:
        raise DataError(f"{path}: {bad[0]} does not hold {values.size} vectors (shape {arrays[bad[0]].shape})")
    return Eigenvectors(values, arrays)


# ----------------------------------------------------------------------------------------------- numbers
def _basis(M: np.ndarray, rank_tol: float) -> np.ndarray:
    """An orthonormal basis (columns) of the span of ``M``'s columns, without directions below ``rank_tol``."""
    if M.size == 0:
        return M[:, :0]
    left, sing, _ = np.linalg.svd(M, full_matrices=False)
    return left[:, sing > rank_tol]


def subspace_overlap(U: np.ndarray, V: np.ndarray, keep: np.ndarray | None = None, *,
                     rank_tol: float = 1e-4) -> float:
    """``‖Q_UᵀQ_V‖²_F / k`` for the spans of ``U`` (``n × k_U``) and ``V`` (``n × k_V``), ``k = min(k_U, k_V)``
    (the first ``k`` columns of each), on the rows ``keep`` (boolean ``(n,)``; all rows by default), each
    restricted set re-orthonormalised (see the module docstring).

    Example:
        >>> subspace_overlap(np.eye(3)[:, :2], np.eye(3)[:, :2])
        1.0
    """
    U = np.asarray(U, dtype=float).reshape(np.shape(U)[0], -1)
    V = np.asarray(V, dtype=float).reshape(np.shape(V)[0], -1)
    if U.shape[0] != V.shape[0]:
        raise ValueError(f"subspace overlap: {U.shape[0]} and {V.shape[0]} coordinates")
    k = min(U.shape[1], V.shape[1])
    if k == 0:
        raise ValueError("subspace overlap: no vectors")
    if keep is not None:
        keep = np.asarray(keep, dtype=bool).reshape(-1)
        U, V = U[keep], V[keep]
    Qu, Qv = _basis(U[:, :k], rank_tol), _basis(V[:, :k], rank_tol)
    return float(np.sum((Qu.T @ Qv) ** 2) / k)


def _flat(vectors: Mapping[str, np.ndarray], names: Sequence[str]) -> np.ndarray:
    """``n × k``: the named vectors' coordinates, parameter after parameter."""
    return np.concatenate([vectors[n].reshape(vectors[n].shape[0], -1).T for n in names], axis=0)


def eigenvector_overlap(first: Eigenvectors, second: Eigenvectors, *, rank_tol: float = 1e-4,
                        source: str = "eigenvectors") -> float:
    """The overlap of two saved eigenbases over the coordinates that survive in both (see the module docstring);
    parameters saved in only one of them are not common coordinates."""
    names = [n for n in first.vectors if n in second.vectors]
    for name in names:
        if first.vectors[name].shape[1:] != second.vectors[name].shape[1:]:
            raise DataError(f"{source}: {name} has shape {first.vectors[name].shape[1:]} in one file and "
                            f"{second.vectors[name].shape[1:]} in the other")
    if not names:
        raise DataError(f"{source}: the two files share no parameter")
    U, V = _flat(first.vectors, names), _flat(second.vectors, names)
    keep = np.any(U != 0, axis=1) & np.any(V != 0, axis=1)
    return subspace_overlap(U, V, keep, rank_tol=rank_tol)


def layer_shares(vectors: Mapping[str, np.ndarray], index: int = 0) -> dict[str, float]:
    """``name -> ‖v_name‖² / ‖v‖²`` of eigenvector ``index`` (0: the top one); the shares sum to 1.

    Example:
        >>> layer_shares({"w": np.array([[3.0, 0.0]]), "b": np.array([[4.0]])})
        {'w': 0.36, 'b': 0.64}
    """
    mass = {name: float(np.sum(v[index] ** 2)) for name, v in vectors.items()}
    total = sum(mass.values())
    if not total > 0:
        raise ValueError("layer shares: the eigenvector is zero")
    return {name: m / total for name, m in mass.items()}


def _count(layout: OutputLayout, keys, layer: int | None) -> int:
    """The ``k`` the overlaps of ``keys`` use: the fewest vectors any of their files holds."""
    counts = []
    for i, e in keys:
        with np.load(layout.result_path(METRIC, i, e, layer, ext="npz"), allow_pickle=False) as data:
            counts.append(int(np.asarray(data["eigenvalues"]).size))
    return min(counts)


def overlap_matrix(layout: OutputLayout, keys: Sequence[tuple[int, int | None]], layer: int | None = None, *,
                   rank_tol: float = 1e-4) -> np.ndarray:
    """``(n, n)`` overlaps of the saved eigenbases of the checkpoints ``keys`` (symmetric, 1 on the diagonal
    up to the vectors' float32 rounding)."""
    paths = [layout.result_path(METRIC, i, e, layer, ext="npz") for i, e in keys]
    bases = [read_eigenvectors(p) for p in paths]
    out = np.empty((len(keys), len(keys)))
    for i in range(len(keys)):
        for j in range(i, len(keys)):
            source = f"{paths[i]} and {paths[j].name}"
            out[i, j] = out[j, i] = eigenvector_overlap(bases[i], bases[j], rank_tol=rank_tol, source=source)
    return out


# ---------------------------------------------------------------------------------------------- renderers
def _heat_map(ax: Axes, matrix: np.ndarray, vmin: float, vmax: float, cmap: str, fmt: str):
    image = ax.imshow(matrix, vmin=vmin, vmax=vmax, cmap=cmap, aspect="auto", interpolation="nearest")
    rows, columns = matrix.shape
    if rows * columns <= 300:
        for (i, j), value in np.ndenumerate(matrix):
            shade = (value - vmin) / (vmax - vmin) if vmax > vmin else 0.0
            ax.text(j, i, format(value, fmt), ha="center", va="center", fontsize="x-small",
                    color="black" if shade > 0.55 else "white")
    return image


def render_overlap_matrix(labels: Sequence[str], matrix: np.ndarray, *, title: str = "", axis_label: str = "",
                          ax: Axes | None = None, k: int | None = None) -> Figure:
    """A heat map of pairwise overlaps (0 to 1) between checkpoints ``labels``, values written in the cells (``k``:
    the eigenspaces' dimension, for the colour bar's label)."""
    matrix = np.asarray(matrix, dtype=float)
    if matrix.shape != (len(labels), len(labels)):
        raise ValueError(f"overlap matrix: shape {matrix.shape} for {len(labels)} labels")
    side = 2.2 + 0.55 * len(labels)
    figure, ax = c.new_axes(ax, figsize=(side + 1.2, side))
    image = _heat_map(ax, matrix, 0.0, 1.0, "magma", ".2f")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel(axis_label)
    ax.set_ylabel(axis_label)
    space = "top-k" if k is None else f"top-{k}"
    figure.colorbar(image, ax=ax, label=f"Overlap of the {space} eigenspaces, ‖UᵀV‖²/k")
    if title:
        ax.set_title(title, fontsize="medium")
    return figure


def render_layer_shares(checkpoints: Sequence[str], layers: Sequence[str], shares: np.ndarray, *,
                        title: str = "", ax: Axes | None = None) -> Figure:
    """A heat map layer × checkpoint of each layer's share of the top eigenvector's squared mass (each column
    sums to 1), values written in the cells."""
    shares = np.asarray(shares, dtype=float)
    if shares.shape != (len(layers), len(checkpoints)):
        raise ValueError(f"layer shares: shape {shares.shape} for {len(layers)} layers × {len(checkpoints)} "
                         "checkpoints")
    figure, ax = c.new_axes(ax, figsize=(2.8 + 0.62 * len(checkpoints), 1.6 + 0.42 * len(layers)))
    image = _heat_map(ax, shares, 0.0, 1.0, "viridis", ".2f")
    ax.set_xticks(range(len(checkpoints)), checkpoints, rotation=45, ha="right")
    ax.set_yticks(range(len(layers)), layers)
    ax.set_xlabel("Checkpoint")
    figure.colorbar(image, ax=ax, label="Share of the top eigenvector's mass")
    if title:
        ax.set_title(title, fontsize="medium")
    return figure


# ------------------------------------------------------------------------------------------------- saving
def _tag(iteration: int, epoch: int | None) -> str:
    return f"{iteration + 1:03d}_{epoch_tag(epoch)}"


def _layer_names(layout: OutputLayout) -> dict[str, str]:
    """``parameter name -> "k: name"`` from ``layers.txt`` (empty without it)."""
    if not layout.layers_file.is_file():
        return {}
    return {name: f"{k}: {name}" for k, name, _ in layout.read_layers()}


def _shares_figure(layout: OutputLayout, keys, title: str) -> Figure:
    shares = [layer_shares(read_eigenvectors(layout.result_path(METRIC, i, e, ext="npz")).vectors) for i, e in keys]
    names = list(shares[0])
    labels = _layer_names(layout)
    grid = np.array([[s.get(name, np.nan) for s in shares] for name in names])
    return render_layer_shares([_tag(i, e) for i, e in keys], [labels.get(n, n) for n in names], grid, title=title)


def _within(layout, layer, iteration, grouped, epochs, folder, title) -> Figure:
    """The epoch × epoch overlaps of one iteration, its best checkpoint included."""
    snaps = c.select_epochs(grouped[iteration], epochs, folder, iteration) if any(
        e is not None for e in grouped[iteration]) else []
    chosen = [(iteration, e) for e in snaps] + ([(iteration, None)] if None in grouped[iteration] else [])
    return render_overlap_matrix([_tag(*key) for key in chosen], overlap_matrix(layout, chosen, layer), title=title,
                                 axis_label="Checkpoint", k=_count(layout, chosen, layer))


def overlap_figures(layout: OutputLayout, *, layers=0, models=None, epochs=None, model_name: str = "",
                    dataset_name: str = "", remain_params_file_path=None, within: bool = True
                    ) -> list[tuple[str, Figure, str]]:
    """``(relative file name, figure, caption)`` of the figures of :func:`plot_overlap` (``within=False``: only
    the best × best overlaps and the layer shares); none without an ``eigenvectors`` folder."""
    if not layout.metric_dir(METRIC).is_dir():
        return []
    try:
        percents = c.remaining_percents(layout, remain_params_file_path)
    except DataError:
        if remain_params_file_path is not None:
            raise
        percents = {}  # labels without percents
    out = []
    for layer in c.layers_to_plot(layout, METRIC, layers):
        keys = layout.list_results(METRIC, layer, ext="npz")
        grouped = c.group_by_iteration(keys)
        folder, where = layout.metric_dir(METRIC, layer), c.folder_name(layer)
        iterations = c.select_iterations(grouped, models, folder)
        for iteration in iterations if within else []:
            title = c.plot_title("Eigenspace overlap", model_name, dataset_name, percents.get(iteration))
            figure = _within(layout, layer, iteration, grouped, epochs, folder, title)
            out.append((f"{where}/model{iteration}.jpg", figure, f"Eigenspace overlaps within {iteration + 1:03d}"))
        best = c.best_epochs(layout, METRIC, layer, iterations, keys)
        chosen = [(i, best[i]) for i in iterations]
        labels = [f"{_tag(*key)} ({percents[key[0]]:.1f}%)" if key[0] in percents else _tag(*key) for key in chosen]
        title = c.plot_title("Eigenspace overlap of the best checkpoints", model_name, dataset_name)
        figure = render_overlap_matrix(labels, overlap_matrix(layout, chosen, layer), title=title,
                                       axis_label="Best checkpoint (common surviving weights)",
                                       k=_count(layout, chosen, layer))
        out.append((f"{where}/best_model.jpg", figure, "Top-k eigenspace overlap of the best checkpoints, on the "
                    "weights both keep"))
        if layer is None:
            ordered = [key for key in keys if key[0] in iterations]
            title = c.plot_title("Where the top eigenvector lives", model_name, dataset_name)
            out.append((f"{where}/layer_share.jpg", _shares_figure(layout, ordered, title),
                        "Each layer's share of the top eigenvector's squared mass"))
    return out


def plot_overlap(path, save_path, layers=0, models=None, epochs=None, model_name="", dataset_name="",
                 remain_params_file_path=None) -> list[Path]:
    """Eigenspace overlaps and layer shares of an output's saved eigenvectors.

    Writes, under ``save_path/whole_model/`` (and ``layer<k>/`` for the per-layer blocks' eigenvectors with
    ``layers``): ``model<i>.jpg`` (epoch × epoch overlaps within iteration ``i``, its best checkpoint included),
    ``best_model.jpg`` (best × best across iterations, on the common support), and, for the whole model,
    ``layer_share.jpg`` (each layer's share of the top eigenvector, layer × checkpoint). Parameters as
    :func:`prunehess.plots.plot_top_eigenvalues`; no ``eigenvectors`` folder is one :class:`DataError` line.
    """
    layout = c.resolve_root(path)
    if not layout.metric_dir(METRIC).is_dir():
        raise DataError(f"{layout.metric_dir(METRIC)}: {NO_EIGENVECTORS}")
    figures = overlap_figures(layout, layers=layers, models=models, epochs=epochs, model_name=model_name,
                              dataset_name=dataset_name, remain_params_file_path=remain_params_file_path)
    return [c.save_figure(figure, Path(save_path) / name) for name, figure, _ in figures]
