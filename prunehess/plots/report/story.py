"""The report's opening: what pruning did to the best checkpoints, in a few sentences of numbers and one figure
(top eigenvalue, trace ± 2 standard errors and test accuracy against the percent of weights remaining)."""
from __future__ import annotations

import html

import numpy as np

from prunehess.errors import DataError
from prunehess.layout import OutputLayout
from prunehess.plots import _common as c
from prunehess.plots.headline import BestSummary, best_summary, render_best_summary
from prunehess.plots.report.page import Page

__all__: list[str] = []


def _num(value: float) -> str:
    return f"{value:.3g}"


def _pct(percent: float) -> str:
    return f"{percent:.1f}".rstrip("0").rstrip(".") + " %"


def _ends(values: np.ndarray) -> tuple[int, int] | None:
    """Indices of the first and last finite values; ``None`` when there are none."""
    finite = np.flatnonzero(np.isfinite(values))
    return (int(finite[0]), int(finite[-1])) if finite.size else None


def _phrase(name: str, values: np.ndarray, percents: np.ndarray, plus: np.ndarray | None = None,
            accuracy: bool = False) -> str | None:
    """``"trace went from 52.8 ± 1.23 to 24.7 ± 0.573 (0.47×)"`` (± 2 standard errors ``plus``), naming the
    percent of an end the first or last iteration lacks; ``None`` without any value."""
    ends = _ends(values)
    if ends is None:
        return None
    fmt = (lambda v: f"{100 * v:.1f} %") if accuracy else _num

    def text(k: int) -> str:
        spread = plus[k] if plus is not None else np.nan
        value = fmt(values[k]) + (f" ± {_num(2 * spread)}" if np.isfinite(spread) and spread > 0 else "")
        return value if k in (0, len(values) - 1) else f"{value} (at {_pct(percents[k])})"

    first, last = ends
    if first == last:
        return f"{name} was {text(first)}"
    ratio = values[last] / values[first]
    times = f" ({ratio:.2g}×)" if not accuracy and values[first] > 0 and values[last] > 0 else ""
    return f"{name} went from {text(first)} to {text(last)}{times}"


def _extremes(name: str, values: np.ndarray, percents: np.ndarray) -> str | None:
    """A sentence naming the highest and lowest values when the series does not just rise or fall."""
    finite = np.isfinite(values)
    steps = np.diff(values[finite])
    if steps.size < 2 or np.all(steps >= 0) or np.all(steps <= 0):
        return None
    hi, lo = int(np.nanargmax(values)), int(np.nanargmin(values))
    return (f"The {name} did not change monotonically: highest {_num(values[hi])} at {_pct(percents[hi])} "
            f"remaining, lowest {_num(values[lo])} at {_pct(percents[lo])}.")


def headline_sentences(summary: BestSummary, curvature: str = "hessian") -> list[str]:
    """The opening sentences: how each quantity of the best checkpoint changed from the densest to the sparsest
    iteration, where it peaked when it did not just rise or fall, and what "best" and "±" mean."""
    p = summary.percents
    n = len(summary.iterations)
    span = (f"From {_pct(p[0])} to {_pct(p[-1])} of weights remaining ({n} pruning iterations)" if n > 1
            else f"With {_pct(p[0])} of weights remaining (one pruning iteration)")
    curvature = [phrase for phrase in (
        _phrase(f"top {c.CURVATURE_NAMES.get(curvature, 'Hessian')} eigenvalue", summary.top_eigenvalue, p)
        if summary.top_eigenvalue is not None else None,
        _phrase("trace", summary.trace, p, summary.trace_stderr) if summary.trace is not None else None) if phrase]
    accuracy = (_phrase("test accuracy", summary.test_accuracy, p, accuracy=True)
                if summary.test_accuracy is not None else None)
    sentences = []
    if curvature:
        sentences.append(f"{span}, the best checkpoint's {', and its '.join(curvature)}.")
    if accuracy:
        sentences.append(f"Its {accuracy}." if curvature else f"{span}, the best checkpoint's {accuracy}.")
    for name, values in (("top eigenvalue", summary.top_eigenvalue), ("trace", summary.trace)):
        if values is not None:
            sentences.append(_extremes(name, values, p))
    note = ("An iteration's best checkpoint is its best file (the highest test accuracy during training), else "
            "its snapshot with the highest test accuracy")
    sentences.append(note + ("; ± is two standard errors of the trace estimate." if summary.trace_stderr is not None
                             else "."))
    return [s for s in sentences if s]


def headline_section(page: Page, layout: OutputLayout, title: str) -> None:
    """The sentences and the figure; a note instead when the output has no best checkpoints or percents."""
    page.heading("headline", "What pruning did")
    try:
        summary = best_summary(layout)
    except DataError as err:
        page.note(f"No headline: {err}")
        return
    curvature = c.curvature_of(layout)
    sentences = "".join(f"<p>{html.escape(s, quote=False)}</p>" for s in headline_sentences(summary, curvature))
    page.add(f'<div class="story">{sentences}</div>')
    figure = render_best_summary(summary.percents, top_eigenvalue=summary.top_eigenvalue, trace=summary.trace,
                                 trace_stderr=summary.trace_stderr, test_accuracy=summary.test_accuracy, title=title,
                                 curvature=curvature)
    drawn = [name for name, values in ((f"top {c.CURVATURE_NAMES[curvature]} eigenvalue", summary.top_eigenvalue),
                                       ("trace (band: ± 2 standard errors)" if summary.trace_stderr is not None
                                        else "trace", summary.trace),
                                       ("test accuracy", summary.test_accuracy)) if values is not None]
    page.figure(figure, f"The best checkpoint of each pruning iteration: {', '.join(drawn)}, against the percent "
                        "of weights remaining (dense on the left).")
