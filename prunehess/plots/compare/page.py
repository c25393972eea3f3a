"""The comparison's HTML page (``compare.html``): what differs (the overlay and a few sentences of numbers), the
per-layer overlays, the spectra at matched sparsity, and each run's configuration folded. Images are the saved
PNGs, embedded as base64 (a 256-colour palette, as the report's), so the one file is the whole comparison."""
from __future__ import annotations

import base64
import datetime as _dt
import html
import io
from typing import Any, Sequence

import numpy as np

from prunehess._version import __version__
from prunehess.plots.compare.data import Run
from prunehess.plots.compare.match import EXACT_GAP, SpectrumDistances
from prunehess.plots.report.page import Page

__all__ = ["comparison_page", "comparison_sentences", "SECTIONS"]

SECTIONS = (("differs", "What differs"), ("layers", "Per layer"), ("spectra", "Spectra at matched sparsity"),
            ("config", "Configurations"))
NAMES = {"top_eigenvalue": "top Hessian eigenvalue", "trace": "trace", "lambda_min": "λmin",
         "test_accuracy": "test accuracy"}


def _num(value: float) -> str:
    return f"{value:.3g}"


def _pct(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".") + " %"


def _value(run: Run, quantity: str, position: int, with_error: bool = True) -> str:
    value = run.whole.values[quantity][position]
    if not np.isfinite(value):
        return "–"
    if quantity == "test_accuracy":
        return f"{100 * value:.1f} %"
    stderr = run.whole.trace_stderr if quantity == "trace" and with_error else None
    spread = np.nan if stderr is None else stderr[position]
    return _num(value) + (f" ± {_num(2 * spread)}" if np.isfinite(spread) and spread > 0 else "")


def _span_sentence(runs: Sequence[Run]) -> str:
    levels = {tuple(np.round(run.whole.percents, 1)) for run in runs}
    names = _join([run.label for run in runs])
    if len(levels) == 1:
        p = runs[0].whole.percents
        return (f"{names}: {len(p)} pruning iteration{'s' if len(p) > 1 else ''} each, from {_pct(p[0])} to "
                f"{_pct(p[-1])} of weights remaining.")
    parts = [f"{run.label} {len(run.iterations)} ({_pct(run.whole.percents[0])} to {_pct(run.whole.percents[-1])})"
             for run in runs]
    return f"Pruning iterations (and weights remaining): {', '.join(parts)}."


def _trend_sentence(runs: Sequence[Run], quantity: str) -> str | None:
    """``"Trace, densest → sparsest: lt 108 ± 9 → 36.2 ± 2 (0.34×), random …"``."""
    parts = []
    for run in runs:
        values = run.whole.values.get(quantity)
        finite = np.flatnonzero(np.isfinite(values)) if values is not None else np.array([])
        if finite.size < 2:
            continue
        a, b = int(finite[0]), int(finite[-1])
        ratio = (f" ({values[b] / values[a]:.2g}×)" if quantity != "test_accuracy" and values[a] > 0
                 and values[b] > 0 else "")
        parts.append(f"{run.label} {_value(run, quantity, a)} → {_value(run, quantity, b)}{ratio}")
    if not parts:
        return None
    name = NAMES[quantity]
    name = name[0].upper() + name[1:] if name[0].isascii() else name
    return f"{name}, densest → sparsest: {'; '.join(parts)}."


def _sparsest_sentence(runs: Sequence[Run], distances: SpectrumDistances) -> str | None:
    """The quantities of every run at the sparsest level that all of them share, and whether the traces' ± 2 SE
    intervals overlap the first run's."""
    matching = distances.matching
    shared = [level for level in range(len(matching.reference))
              if all(row[level] is not None for row in matching.index)]
    if not shared:
        return None
    level = shared[-1]
    positions = [row[level] for row in matching.index]
    parts = []
    for quantity in ("test_accuracy", "top_eigenvalue", "trace"):
        having = [(run, k) for run, k in zip(runs, positions) if quantity in run.whole.values]
        if len(having) > 1:
            parts.append(f"{NAMES[quantity]} " + ", ".join(f"{run.label} {_value(run, quantity, k)}"
                                                             for run, k in having))
    moved = [f"{run.label} at {_pct(run.whole.percents[k])}" for run, k in zip(runs[1:], positions[1:])
             if abs(run.whole.percents[k] - matching.reference[level]) > EXACT_GAP]
    where = f"{_pct(matching.reference[level])} remaining" + (f" ({', '.join(moved)})" if moved else "")
    text = f"At {where}, the sparsest level every run has: {'; '.join(parts)}."
    return text + _overlap(runs, positions)


def _overlap(runs: Sequence[Run], positions: Sequence[int]) -> str:
    intervals = []
    for run, k in zip(runs, positions):
        stderr = run.whole.trace_stderr
        if "trace" not in run.whole.values or stderr is None or not np.isfinite(stderr[k]):
            return ""
        value = run.whole.values["trace"][k]
        intervals.append((value - 2 * stderr[k], value + 2 * stderr[k]))
    first = intervals[0]
    apart = [run.label for run, (lo, hi) in zip(runs[1:], intervals[1:]) if hi < first[0] or lo > first[1]]
    close = [run.label for run in runs[1:] if run.label not in apart]
    if not apart:
        return f" The traces' ± 2 SE intervals all overlap {runs[0].label}'s."
    verb = "does not" if len(apart) == 1 else "do not"
    noun = "interval" if len(apart) == 1 else "intervals"
    return (f" The trace's ± 2 SE {noun} of {_join(apart)} {verb} overlap {runs[0].label}'s"
            + (f"; that of {_join(close)} {'does' if len(close) == 1 else 'do'}." if close else "."))


def _join(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _spectra_sentence(distances: SpectrumDistances) -> str | None:
    labels, reference = distances.labels, distances.matching.reference
    parts = []
    for j, label in enumerate(labels[1:], start=1):
        row = distances.to_first[j]
        if not np.isfinite(row).any():
            continue
        hi, lo = int(np.nanargmax(row)), int(np.nanargmin(row))
        closest = (f"identical at {_pct(reference[lo])}" if row[lo] == 0
                   else f"closest at {_pct(reference[lo])} ({_num(row[lo])})")
        parts.append(f"{label}'s is furthest from {labels[0]}'s at {_pct(reference[hi])} remaining "
                     f"(W₁ {_num(row[hi])}) and {closest}")
    return f"Spectra: {'; '.join(parts)}." if parts else None


def comparison_sentences(runs: Sequence[Run], distances: SpectrumDistances) -> list[str]:
    """The page's opening sentences of numbers."""
    sentences = [_span_sentence(runs)]
    sentences += [_trend_sentence(runs, q) for q in ("top_eigenvalue", "trace", "lambda_min", "test_accuracy")]
    sentences += [_sparsest_sentence(runs, distances), _spectra_sentence(distances)]
    sentences.append("Each run's best checkpoint of a pruning iteration is its best file (the highest test accuracy "
                     "during training); ± is two standard errors of the trace estimate.")
    return [s for s in sentences if s]


def _image(page: Page, png: bytes, caption: str) -> None:
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        buffer = io.BytesIO()
        image.convert("RGB").quantize(256).save(buffer, format="PNG", optimize=True)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    page.add(f'<figure><img alt="{html.escape(caption, quote=True)}" src="data:image/png;base64,{data}">'
             f"<figcaption>{html.escape(caption, quote=False)}</figcaption></figure>")


def _cell(value: float, fmt: str) -> str:
    return "–" if np.isnan(value) else fmt.format(value)


def _distance_table(distances: SpectrumDistances) -> str:
    labels, matching = distances.labels, distances.matching
    head = "".join(f"<th>{html.escape(label)}: % remaining</th><th>W₁ to {html.escape(labels[0])}</th>"
                   for label in labels[1:])
    rows = []
    for level, percent in enumerate(matching.reference):
        cells = "".join(f"<td>{_cell(matching.percents[j, level], '{:.1f}')}</td>"
                        f"<td>{_cell(distances.distances[level, 0, j], '{:.3g}')}</td>" for j in range(1, len(labels)))
        rows.append(f"<tr><td>{percent:.1f}</td>{cells}</tr>")
    return (f'<table><thead><tr><th>{html.escape(labels[0])}: % remaining</th>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


def _plain(value: Any) -> str:
    return "" if value is None else html.escape(str(value))


def _configs(page: Page, runs: Sequence[Run]) -> None:
    page.heading("config", "Configurations")
    keys = list(dict.fromkeys(key for run in runs for key in run.config))
    differ = [key for key in keys if len({repr(run.config.get(key)) for run in runs}) > 1]
    if differ:
        head = "".join(f'<th class="l">{html.escape(run.label)}</th>' for run in runs)
        body = "".join(f'<tr><td class="l">{html.escape(key)}</td>'
                       + "".join(f'<td class="l">{_plain(run.config.get(key))}</td>' for run in runs) + "</tr>"
                       for key in differ)
        page.add(f'<p>The options in which the runs differ:</p><table><thead><tr><th class="l">option</th>{head}'
                 f"</tr></thead><tbody>{body}</tbody></table>")
    for run in runs:
        path = run.layout.config_file
        if not path.is_file():
            page.note(f"{run.label}: no {path}.")
            continue
        text = path.read_text(encoding="utf-8")
        page.open_details(f"{run.label}: {path} ({len(text.splitlines())} lines)")
        page.add(f"<pre>{html.escape(text)}</pre>")
        page.close_details()


def _intro(page: Page, title: str, runs: Sequence[Run]) -> None:
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    page.add(f"<h1>{html.escape(title)}</h1>")
    folders = "; ".join(f"<b>{html.escape(run.label)}</b> <code>{html.escape(str(run.layout.root.resolve()))}</code>"
                        for run in runs)
    page.add(f'<p class="meta">Runs: {folders}. Made by prunehess {html.escape(__version__)} on {stamp}.</p>')
    page.add("<nav>" + "".join(f'<a href="#{anchor}">{text}</a>' for anchor, text in SECTIONS) + "</nav>")


def comparison_page(title: str, runs: Sequence[Run], distances: SpectrumDistances, notes: Sequence[str],
                    images: Sequence[tuple[str, str, bytes]]) -> str:
    """The page's HTML. ``images``: ``(figure name, caption, PNG bytes)`` in order (``overlay``, ``layers_*``,
    then the spectra's)."""
    page = Page(dpi=100)
    _intro(page, f"Runs side by side: {title}", runs)
    by_name = {name: (caption, png) for name, caption, png in images}
    page.heading("differs", "What differs")
    page.add('<div class="story">' + "".join(f"<p>{html.escape(s, quote=False)}</p>"
                                             for s in comparison_sentences(runs, distances)) + "</div>")
    for note in notes:
        page.note(note)
    if "overlay" in by_name:
        _image(page, by_name["overlay"][1], by_name["overlay"][0])
    page.heading("layers", "Per layer")
    layers = [name for name in by_name if name.startswith("layers_")]
    if not layers:
        page.note("No layer has results in every run (extract --compute-each-layer writes them).")
    for name in layers:
        _image(page, by_name[name][1], by_name[name][0])
    page.heading("spectra", "Spectra at matched sparsity")
    spectra = [name for name in ("spectrum_distance", "spectrum_matrices", "spectra_matched") if name in by_name]
    if not spectra:
        page.note("No spectra to compare (density_eigen/ and density_weight/ of the best checkpoints).")
    else:
        _image(page, by_name[spectra[0]][1], by_name[spectra[0]][0])
        page.add(f'<div class="scroll">{_distance_table(distances)}</div>')
        for name in spectra[1:]:
            _image(page, by_name[name][1], by_name[name][0])
    _configs(page, runs)
    return page.document(f"prunehess compare: {title}")
