"""The results table: rows of (quantity, PyHessian, prunehess, ratio, HVPs, error, note), as text or markdown."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

HEADERS = ("quantity", "PyHessian", "prunehess", "ratio", "HVPs PyH / ph", "error PyH / ph", "note")


@dataclass
class Row:
    quantity: str
    ph: Optional[float] = None  # PyHessian value (seconds, or MiB for unit="MiB")
    pn: Optional[float] = None  # prunehess value
    ph_hvps: Optional[int] = None
    pn_hvps: Optional[int] = None
    ph_err: Optional[float] = None  # relative error against the reference
    pn_err: Optional[float] = None
    note: str = ""
    unit: str = "s"

    @property
    def ratio(self) -> Optional[float]:
        """PyHessian / prunehess: a speed-up for times, a saving for memory (> 1: prunehess is better)."""
        if self.ph is None or self.pn is None or self.pn <= 0 or not math.isfinite(self.ph):
            return None
        return self.ph / self.pn


@dataclass
class Section:
    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *args, **kwargs) -> Row:
        row = Row(*args, **kwargs)
        self.rows.append(row)
        return row


def fmt_value(x: Optional[float], unit: str) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if unit == "MiB":
        return f"{x:,.0f} MiB" if x >= 10 else f"{x:.1f} MiB"
    if unit == "s":
        if x < 1e-3:
            return f"{x * 1e6:.0f} µs"
        if x < 1:
            return f"{x * 1e3:.1f} ms"
        return f"{x:.2f} s"
    return f"{x:g}"


def fmt_err(x: Optional[float]) -> str:
    if x is None:
        return "—"
    if math.isnan(x):
        return "nan"
    if x == 0:
        return "0"
    return f"{x:.1e}"


def _cells(row: Row) -> list[str]:
    ratio = row.ratio
    hvps = "—" if row.ph_hvps is None and row.pn_hvps is None else f"{_i(row.ph_hvps)} / {_i(row.pn_hvps)}"
    err = "—" if row.ph_err is None and row.pn_err is None else f"{fmt_err(row.ph_err)} / {fmt_err(row.pn_err)}"
    return [
        row.quantity,
        fmt_value(row.ph, row.unit),
        fmt_value(row.pn, row.unit),
        "—" if ratio is None else f"{ratio:.2f}×",
        hvps,
        err,
        row.note,
    ]


def _i(x: Optional[int]) -> str:
    return "—" if x is None else str(int(x))


def render_text(sections: list[Section]) -> str:
    lines = []
    for section in sections:
        cells = [list(HEADERS)] + [_cells(r) for r in section.rows]
        widths = [max(len(c[i]) for c in cells) for i in range(len(HEADERS) - 1)]
        lines.append("")
        lines.append(f"== {section.title} ==")
        for j, c in enumerate(cells):
            lines.append("  ".join(c[i].ljust(widths[i]) for i in range(len(widths))) + ("  " + c[-1] if c[-1] else ""))
            if j == 0:
                lines.append("  ".join("-" * w for w in widths))
        for note in section.notes:
            lines.append(f"  * {note}")
    return "\n".join(lines)


def render_markdown(sections: list[Section], preamble: list[str]) -> str:
    out = list(preamble)
    for section in sections:
        out += ["", f"### {section.title}", "", "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
        for r in section.rows:
            out.append("| " + " | ".join(c.replace("|", "\\|") for c in _cells(r)) + " |")
        if section.notes:
            out.append("")
            out += [f"- {n}" for n in section.notes]
    return "\n".join(out) + "\n"
