"""The reference part of the report, folded at its end: the run's configuration and the full summary table."""
from __future__ import annotations

import html

from prunehess.layout import OutputLayout
from prunehess.plots.report.page import Page, cell

__all__: list[str] = []


def config_section(page: Page, layout: OutputLayout) -> None:
    """``config.yaml`` as written, folded."""
    page.heading("config", "Run configuration")
    if not layout.config_file.is_file():
        page.note(f"No {layout.CONFIG_FILE} in this output.")
        return
    text = layout.config_file.read_text(encoding="utf-8")
    page.open_details(f"{layout.CONFIG_FILE} ({len(text.splitlines())} lines)")
    page.add(f"<pre>{html.escape(text)}</pre>")
    page.close_details()


def summary_section(page: Page, layout: OutputLayout) -> None:
    """Every row of ``summary.csv``, folded (``best`` for the best checkpoint, ``whole`` for the whole model)."""
    page.heading("summary", "Summary table")
    if not layout.summary_file.is_file():
        page.note(f"No {layout.SUMMARY_FILE} in this output.")
        return
    rows = layout.read_summary()
    if not rows:
        page.note(f"{layout.SUMMARY_FILE} has no rows.")
        return
    columns = list(rows[0].keys())
    head = "".join(f"<th>{html.escape(col)}</th>" for col in columns)
    body = []
    for row in rows:
        cells = []
        for col in columns:
            value = row.get(col)
            if col == "epoch":
                value = "best" if value is None else value
            elif col == "layer" and value is None:
                value = "whole"
            cells.append(f"<td>{cell(value)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    page.open_details(f"{layout.SUMMARY_FILE}: {len(rows)} rows, one per checkpoint and block")
    page.add(f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>')
    page.close_details()
