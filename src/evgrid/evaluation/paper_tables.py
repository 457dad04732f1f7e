"""What every ``evgrid evaluate paper-NNN`` writes: tables of ours beside the paper's, printed at
80 columns and rendered into results.json, plots and one report.html."""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evgrid.evaluation.output import OutputTarget


@dataclass(frozen=True)
class PaperTable:
    title: str
    head: list[str]
    rows: list[list[str]]


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and (population) standard deviation over seeds; NaN-free input expected."""
    a = np.asarray(values, dtype=float)
    if a.size == 0:
        return float("nan"), float("nan")
    return float(a.mean()), float(a.std())


def cell(mean: float, std: float, paper: float | None, digits: int = 1) -> str:
    """``ours ± spread (paper)``: the two side by side, as the issues ask."""
    ours = f"{mean:.{digits}f}±{std:.{digits}f}"
    return f"{ours} ({'—' if paper is None else f'{paper:g}'})"


def html_table(head: list[str], rows: list[list[str]]) -> str:
    return ("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                      for r in rows) + "</table>")


def render_report(title: str, intro: str, tables: Sequence[PaperTable], notes: Sequence[str],
                  folder: Path, plots: Sequence[str]) -> str:
    """One self-contained HTML page: the tables, why they differ from the paper, the plots."""
    body = "".join(f"<h2>{html.escape(t.title)}</h2>{html_table(t.head, t.rows)}"
                   for t in tables)
    items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    imgs = "".join(f'<img alt="{p}" src="data:image/png;base64,'
                   f'{base64.b64encode((folder / p).read_bytes()).decode()}">' for p in plots
                   if (folder / p).exists())
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>evgrid: {html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}
td:first-child{{text-align:left}}img{{max-width:100%}}</style></head><body>
<h1>{html.escape(title)}</h1><p>{html.escape(intro)}</p>{body}
<h2>Why the figures differ from the paper's</h2><ul>{items}</ul>{imgs}</body></html>
"""


def write_report(target: OutputTarget, results: dict[str, Any], tables: Sequence[PaperTable],
                 *, title: str, intro: str, notes: Sequence[str],
                 plots: Callable[[Path], list[str]] | None = None) -> Path:
    """results.json, the plots ``plots(folder)`` draws (it returns their file names) and
    report.html, written through ``target`` so that a failure leaves no half folder."""

    def fill(tmp: Path) -> None:
        (tmp / "results.json").write_text(json.dumps(results, indent=2, allow_nan=True))
        names = plots(tmp) if plots is not None else []
        (tmp / "report.html").write_text(render_report(title, intro, tables, notes, tmp, names))

    return target.write(fill, last="results.json")
