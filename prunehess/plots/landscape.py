"""Loss landscapes (``prunehess landscape``): the files' format, their readers, and their figures.

A curve, ``landscape/<direction><III>_<EE>.txt`` (direction ``top1``, ``top2``, ``random`` or ``gradient``), is
``#`` comment lines (what was measured, the direction and the unit of ``t``) and two columns ``t loss``: the mean
loss on the Hessian batch at ``θ + t·d``. A surface, ``landscape/top1-top2<III>_<EE>.txt``, is comment lines, two
of which give the axes (``# a: …`` the coefficients of the top-1 eigenvector, ``# b: …`` those of the top-2), then
one row per value of ``a`` holding the loss at ``θ + a·v₁ + b·v₂`` for every ``b``. Both read with
``numpy.loadtxt``; :func:`read_curve` and :func:`read_surface` also check them.

Figures: one panel per prune iteration with a curve per direction (:func:`render_landscape_panels`), and a contour
plot per surface (:func:`render_surface`); :func:`plot_landscape` draws every file of an output.

Example:
    >>> text = curve_text([-1.0, 0.0, 1.0], [2.0, 1.0, 2.5], ["direction: top1"])
    >>> text.splitlines()[:2]
    ['# direction: top1', '# t loss']
    >>> fig = render_landscape_curves({"top1": ([-1.0, 0.0, 1.0], [2.0, 1.0, 2.5])})
    >>> fig.axes[0].get_xlabel()
    't (distance along unit directions; random: filter norms)'
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator

from prunehess.errors import DataError
from prunehess.plots import _common as c

__all__ = ["curve_text", "surface_text", "read_curve", "read_surface", "Surface", "render_landscape_curves",
           "render_landscape_panels", "render_surface", "landscape_figures", "plot_landscape", "tag_key",
           "DIRECTION_LABELS", "plot_geometry", "geometry_section", "has_geometry"]

DIRECTION_LABELS = {
    "top1": "top-1 eigenvector",
    "top2": "top-2 eigenvector",
    "random": "random, filter-normalised (t in filter norms)",
    "gradient": "gradient",
}
XLABEL = "t (distance along unit directions; random: filter norms)"
PANEL_XLABEL = ("t: distance along the unit directions (eigenvectors, gradient); along the random direction, in "
                "units of each filter's norm")
YLABEL = "Loss (Hessian batch)"
_CURVE_ORDER = ("top1", "top2", "gradient", "random")


def tag_key(tag: str) -> tuple[int, int | None]:
    """``(iteration, epoch)`` of a checkpoint tag: ``001_best`` → ``(0, None)``, ``000_00`` → ``(-1, 0)``."""
    iteration, _, epoch = tag.partition("_")
    return int(iteration) - 1, None if epoch == "best" else int(epoch)


# ------------------------------------------------------------------------------------------------- files
def _numbers(values) -> str:
    return " ".join(repr(float(v)) for v in np.asarray(values, dtype=float).reshape(-1))


def curve_text(t: Sequence[float], loss: Sequence[float], comments: Sequence[str] = ()) -> str:
    """The text of a curve file: ``# comment`` lines, ``# t loss``, then one ``t loss`` row per point (full
    precision)."""
    t, loss = np.asarray(t, dtype=float).reshape(-1), np.asarray(loss, dtype=float).reshape(-1)
    if t.shape != loss.shape or t.size == 0:
        raise ValueError(f"curve: {t.size} values of t but {loss.size} losses")
    lines = [f"# {line}" for line in comments] + ["# t loss"]
    lines += [f"{a!r} {b!r}" for a, b in zip(t.tolist(), loss.tolist())]
    return "\n".join(lines) + "\n"


def surface_text(a: Sequence[float], b: Sequence[float], loss: np.ndarray, comments: Sequence[str] = ()) -> str:
    """The text of a surface file: ``# comment`` lines, ``# a: …``, ``# b: …``, then ``loss[i, j]`` (at ``a[i]``,
    ``b[j]``) as one row per ``a``."""
    a, b = np.asarray(a, dtype=float).reshape(-1), np.asarray(b, dtype=float).reshape(-1)
    grid = np.asarray(loss, dtype=float)
    if grid.shape != (a.size, b.size):
        raise ValueError(f"surface: a grid of shape {grid.shape} for {a.size} values of a and {b.size} of b")
    lines = [f"# {line}" for line in comments] + [f"# a: {_numbers(a)}", f"# b: {_numbers(b)}"]
    lines += [_numbers(row) for row in grid]
    return "\n".join(lines) + "\n"


def _load(path: Path) -> np.ndarray:
    try:
        return np.loadtxt(path, ndmin=2, comments="#")
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror or err})") from None
    except ValueError as err:
        raise DataError(f"{path}: not a table of numbers ({err})") from None


def read_curve(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(t, loss)`` of a curve file; :class:`DataError` naming the file if it is not two columns of numbers."""
    path = Path(path)
    table = _load(path)
    if table.shape[1] != 2 or table.shape[0] < 1:
        raise DataError(f"{path}: expected two columns 't loss', found {table.shape[1]}")
    return table[:, 0], table[:, 1]


@dataclass(frozen=True)
class Surface:
    """A loss surface: ``loss[i, j]`` at ``θ + a[i]·v₁ + b[j]·v₂``."""

    a: np.ndarray
    b: np.ndarray
    loss: np.ndarray


def _axis(path: Path, text: str, name: str) -> np.ndarray:
    for line in text.splitlines():
        if line.startswith(f"# {name}:"):
            try:
                return np.array([float(v) for v in line.split(":", 1)[1].split()])
            except ValueError:
                break
    raise DataError(f"{path}: no readable '# {name}: …' line (the {name} axis of the surface)")


def read_surface(path: str | Path) -> Surface:
    """The :class:`Surface` of a surface file; :class:`DataError` naming the file when it does not hold one."""
    path = Path(path)
    grid = _load(path)
    text = path.read_text(encoding="utf-8")
    a, b = _axis(path, text, "a"), _axis(path, text, "b")
    if grid.shape != (a.size, b.size):
        raise DataError(f"{path}: a grid of {grid.shape[0]}x{grid.shape[1]} losses for axes of {a.size} and {b.size}")
    return Surface(a, b, grid)


# ---------------------------------------------------------------------------------------------- renderers
def render_landscape_curves(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], *, title: str = "",
                            ax: Axes | None = None, legend: bool = True) -> Figure:
    """Loss against ``t``, one line per direction (``curves``: direction → ``(t, loss)``), in a fixed order and
    colour per direction; a log loss axis when the losses span two decades."""
    figure, ax = c.new_axes(ax)
    everything = []
    for direction in sorted(curves, key=lambda d: _CURVE_ORDER.index(d) if d in _CURVE_ORDER else 99):
        t, loss = (np.asarray(v, dtype=float).reshape(-1) for v in curves[direction])
        everything.append(loss)
        color = f"C{_CURVE_ORDER.index(direction)}" if direction in _CURVE_ORDER else None
        ax.plot(t, loss, linewidth=1.6, color=color, label=DIRECTION_LABELS.get(direction, direction))
    if everything:
        c.auto_value_scale(ax, np.concatenate(everything))
    ax.axvline(0.0, color="0.6", linewidth=0.8, linestyle=":")
    ax.set_xlabel(XLABEL)
    ax.set_ylabel(YLABEL)
    if title:
        ax.set_title(title, fontsize="medium")
    if legend and curves:
        ax.legend(fontsize="small", loc="upper center")  # the curves rise away from t = 0: the top middle is free
    ax.grid(True, alpha=0.3)
    return figure


def render_landscape_panels(panels: Sequence[tuple[str, Mapping[str, tuple]]], *, title: str = "") -> Figure:
    """One panel per ``(panel title, curves)`` (one per prune iteration), sharing the loss axis so that the panels
    compare; the legend on the first."""
    if not panels:
        raise ValueError("landscape panels: nothing to draw")
    columns = min(4, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(3.6 * columns + 0.6, 3.1 * rows + 0.7), layout="constrained")
    axes = figure.subplots(rows, columns, sharey=True, squeeze=False).reshape(-1)
    for index, (ax, (name, curves)) in enumerate(zip(axes, panels)):
        render_landscape_curves(curves, title=name, ax=ax, legend=index == 0)
        ax.set_xlabel("t")
        if index % columns:
            ax.set_ylabel("")
    figure.supxlabel(PANEL_XLABEL, fontsize="small")
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    if title:
        figure.suptitle(title)
    return figure


def _log_ticks(lo: float, hi: float) -> np.ndarray:
    """Colour-bar ticks at 1, 2, 5 × powers of ten within ``[lo, hi]`` (at least two)."""
    ticks = LogLocator(subs=(1.0, 2.0, 5.0)).tick_values(lo, hi)
    ticks = ticks[(ticks >= lo * (1 - 1e-9)) & (ticks <= hi * (1 + 1e-9))]
    return ticks if ticks.size >= 2 else np.geomspace(lo, hi, 4)


def render_surface(a: Sequence[float], b: Sequence[float], loss: np.ndarray, *, title: str = "",
                   ax: Axes | None = None, levels: int = 20) -> Figure:
    """Filled contours of ``loss[i, j]`` over ``(a[i], b[j])`` (x: the top-1 coefficient, y: the top-2), with
    contour lines and the checkpoint marked at the origin; log-spaced levels (and a log colour bar) when the losses
    span two decades."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    z = np.asarray(loss, dtype=float)
    figure, ax = c.new_axes(ax, figsize=(5.4, 4.8))
    finite = z[np.isfinite(z)]
    log = c.spans_decades(finite)
    if log:
        bounds = np.geomspace(finite.min(), finite.max(), levels + 1)
        filled = ax.contourf(a, b, z.T, levels=bounds, norm=LogNorm(bounds[0], bounds[-1]), cmap="viridis")
    else:
        filled = ax.contourf(a, b, z.T, levels=levels, cmap="viridis")
    ax.contour(a, b, z.T, levels=filled.levels, colors="white", linewidths=0.4, alpha=0.6)
    ax.plot([0.0], [0.0], marker="*", markersize=11, color="red", linestyle="none", label="checkpoint")
    ticks = _log_ticks(finite.min(), finite.max()) if log else None
    figure.colorbar(filled, ax=ax, shrink=0.82, ticks=ticks, label=YLABEL + (" (log scale)" if log else ""),
                    format=FuncFormatter(lambda value, _pos: f"{value:.3g}"))
    ax.set_xlabel("a (top-1 eigenvector)")
    ax.set_ylabel("b (top-2 eigenvector)")
    ax.set_aspect("equal")
    ax.legend(fontsize="small", loc="upper right")
    if title:
        ax.set_title(title, fontsize="medium")
    return figure


# ------------------------------------------------------------------------------------------------- saving
def _percent_words(percents: Mapping[int, float] | None, iteration: int) -> str:
    if percents and iteration in percents:
        return f", {percents[iteration]:.1f}% remaining"
    return ""


def _kept(tag: str, models) -> bool:
    """As the seed's ``models``: tags ``001`` to ``models-1`` (``None``: every tag)."""
    return models is None or tag_key(tag)[0] < int(models) - 1


def _curve_figures(curves: dict, percents, models, model_name, dataset_name) -> list[tuple[str, Figure, str]]:
    """One figure per epoch tag (``best``, ``10`` …), with a panel per prune iteration."""
    by_epoch: dict[str, dict[int, dict[str, tuple]]] = {}
    for (direction, tag), path in curves.items():
        if _kept(tag, models):
            iteration, _ = tag_key(tag)
            by_epoch.setdefault(tag.partition("_")[2], {}).setdefault(iteration, {})[direction] = read_curve(path)
    out = []
    for epoch, iterations in sorted(by_epoch.items(), key=lambda item: item[0] == "best"):
        panels = [(f"{i + 1:03d}_{epoch}{_percent_words(percents, i)}", iterations[i]) for i in sorted(iterations)]
        title = c.plot_title("Loss along directions", model_name, dataset_name)
        which = "each iteration's best checkpoint" if epoch == "best" else f"the checkpoints of epoch {int(epoch)}"
        out.append(("best_model.jpg" if epoch == "best" else f"epoch{epoch}.jpg",
                    render_landscape_panels(panels, title=title), f"Loss along directions around {which}"))
    return out


def landscape_figures(layout, *, models=None, model_name: str = "", dataset_name: str = "",
                      remain_params_file_path=None) -> list[tuple[str, Figure, str]]:
    """``(file name, figure, caption)`` of every figure of the output's ``landscape/`` folder (see
    :func:`plot_landscape`); none without landscape files."""
    files = layout.list_landscapes()
    try:
        percents = c.remaining_percents(layout, remain_params_file_path)
    except DataError:
        percents = None
    curves = {key: p for key, p in files.items() if key[0] != "top1-top2"}
    out = _curve_figures(curves, percents, models, model_name, dataset_name)
    for (direction, tag), file in files.items():
        if direction != "top1-top2" or not _kept(tag, models):
            continue
        surface = read_surface(file)
        iteration, _ = tag_key(tag)
        run = " on ".join(name for name in (model_name, dataset_name) if name)
        percent = f"{percents[iteration]:.1f}% of weights remaining" if percents and iteration in percents else ""
        title = f"Loss surface around {tag}" + (f"\n{', '.join(w for w in (run, percent) if w)}" if run or percent
                                                  else "")
        out.append((f"surface{tag}.jpg", render_surface(surface.a, surface.b, surface.loss, title=title),
                    f"Loss over the plane of the top two eigenvectors around {tag}"))
    return out


def plot_landscape(path, save_path, models=None, model_name="", dataset_name="",
                   remain_params_file_path=None) -> list[Path]:
    """The figures of an output's ``landscape/`` folder: ``best_model.jpg`` (each iteration's best checkpoint:
    a panel per iteration, a curve per direction), ``epoch<E>.jpg`` for snapshots, and ``surface<III>_<EE>.jpg``
    (contours) per surface. ``models`` keeps tags ``001`` to ``models-1`` as the seed's plots (``None``: all).
    Returns the files written; no ``landscape/`` folder, or an empty one, is a :class:`DataError`."""
    layout = c.resolve_root(path)
    if not layout.list_landscapes():
        raise DataError(f"{layout.landscape_dir}: no landscape files; run prunehess landscape {layout.root}")
    figures = landscape_figures(layout, models=models, model_name=model_name, dataset_name=dataset_name,
                                remain_params_file_path=remain_params_file_path)
    return [c.save_figure(figure, Path(save_path) / name) for name, figure, _ in figures]


def plot_geometry(path, save_path, layers=None, models=None, epochs=None, model_name="", dataset_name="",
                  remain_params_file_path=None) -> list[Path]:
    """For ``plot all``: the landscape, barrier and overlap figures of an output, each in its folder under
    ``save_path`` (``landscape/``, ``barrier/``, ``overlap/``) when its results exist; ``[]`` when none does."""
    from prunehess.plots.barrier import plot_barrier
    from prunehess.plots.overlap import METRIC, plot_overlap

    layout = c.resolve_root(path)
    save_path = Path(save_path)
    names = dict(models=models, model_name=model_name, dataset_name=dataset_name,
                 remain_params_file_path=remain_params_file_path)
    written = []
    if layout.list_landscapes():
        written += plot_landscape(layout.root, save_path / "landscape", **names)
    if layout.list_barrier_paths():
        written += plot_barrier(layout.root, save_path / "barrier", **names)
    if layout.metric_dir(METRIC).is_dir():
        written += plot_overlap(layout.root, save_path / "overlap", layers=layers,
                                epochs=epochs, **names)
    return written


def geometry_section(page, layout, model_name: str = "", dataset_name: str = "") -> None:
    """The report's "Landscape geometry" section (``page``: the report's page, with ``heading``, ``note`` and
    ``figure(figure, caption)``): the landscapes, the barriers, the eigenspace overlaps and the pruning steps of the
    output, each when its results exist; nothing at all when none does."""
    from prunehess.plots.barrier import barrier_figures
    from prunehess.plots.overlap import overlap_figures
    from prunehess.plots.pruning_step import pruning_step_figures

    names = dict(model_name=model_name, dataset_name=dataset_name)
    figures = (landscape_figures(layout, **names) + barrier_figures(layout, **names)
               + overlap_figures(layout, within=False, **names))
    steps = pruning_step_figures(layout, **names)  # prunehess pruning-step
    if not figures and not steps:
        return
    page.heading("geometry", "Landscape geometry")
    notes = ("Loss along directions and over the top-two eigenvector plane (prunehess landscape), along straight "
             "lines between checkpoints (prunehess barrier), and how the top eigenspaces of the checkpoints overlap "
             "(the eigenvectors saved by extract --save-eigenvectors).",
             "The pruning step (prunehess pruning-step): whether the weights each step removed are the ones OBD's "
             "saliency ½ H_kk w² would have removed, and how well the quadratic model predicts the loss change of "
             "removing them.")
    for note, group in zip(notes, (figures, steps)):
        if group:
            page.note(note)
        for _, figure, caption in group:
            page.figure(figure, caption)


def has_geometry(layout) -> bool:
    """Whether the output holds any landscape geometry result (for the report's table of contents)."""
    return bool(layout.list_landscapes() or layout.list_barrier_paths()
                or layout.metric_dir("eigenvectors").is_dir() or layout.pruning_step_table_file.is_file())
