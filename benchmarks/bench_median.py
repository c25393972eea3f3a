#!/usr/bin/env python
"""Combine several ``bench_engine.py --json`` runs into one table of per-cell medians (for noisy, shared machines).

    python benchmarks/bench_median.py run1.json run2.json run3.json --markdown docs-table.md

Times, HVP counts and errors are the median over the runs of each cell; the ratio is recomputed from the median
times; notes are one run's (``--notes-from``). Rows are matched by section title and quantity.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_table import Row, Section, render_markdown, render_text  # noqa: E402

FIELDS = ("ph", "pn", "ph_hvps", "pn_hvps", "ph_err", "pn_err")


def median_sections(runs: list[dict], notes_from: int = 0) -> list[Section]:
    out = []
    for sec in runs[notes_from]["sections"]:
        merged = Section(sec["title"], notes=list(sec["notes"]))
        for row in sec["rows"]:
            cells = []
            for run in runs:
                match = [r for s in run["sections"] if s["title"] == sec["title"] for r in s["rows"]
                         if r["quantity"] == row["quantity"]]
                if match:
                    cells.append(match[0])
            values = {}
            for f in FIELDS:
                xs = [c[f] for c in cells if c.get(f) is not None]
                values[f] = statistics.median(xs) if xs else None
            for f in ("ph_hvps", "pn_hvps"):
                if values[f] is not None:
                    values[f] = int(round(values[f]))
            merged.rows.append(Row(row["quantity"], note=row["note"], unit=row.get("unit", "s"), **values))
        out.append(merged)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="JSON files written by bench_engine.py --json")
    p.add_argument("--markdown", default=None, metavar="PATH")
    p.add_argument("--notes-from", type=int, default=1, metavar="N", help="take notes and preamble from the N-th run (1-based)")
    args = p.parse_args(argv)
    runs = [json.loads(Path(r).read_text()) for r in args.runs]
    pick = min(max(args.notes_from, 1), len(runs)) - 1
    sections = median_sections(runs, pick)
    preamble = list(runs[pick]["preamble"]) + [
        f"- per-cell medians of {len(runs)} runs ({', '.join(Path(r).name for r in args.runs)}); notes from run {pick + 1}"]
    print("\n".join(preamble))
    print(render_text(sections))
    if args.markdown:
        Path(args.markdown).write_text(render_markdown(sections, preamble))
    return 0


if __name__ == "__main__":
    sys.exit(main())
