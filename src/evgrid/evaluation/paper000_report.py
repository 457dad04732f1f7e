"""The files of ``evgrid evaluate paper-000``: results.json, timeseries.csv, plots and one HTML
report, with every figure beside the paper's (Tables 3 and 4 of 000_f74a305f822cf870.txt)."""

from __future__ import annotations

import base64
import csv
import html
import json
from pathlib import Path

from evgrid.evaluation.output import OutputTarget
from evgrid.evaluation.paper000 import (
    APPROACH_TITLES,
    APPROACHES,
    PAPER_NOTES,
    PAPER_TABLE3,
    PAPER_TABLE4,
    TABLE3_LABELS,
    Paper000,
)
from evgrid.evaluation.paper_tables import cell, html_table

PLOTS = ("queues.png", "feedback.png", "layout.png")
FILES = ("results.json", "timeseries.csv", *PLOTS, "report.html")
TABLE4_LABELS = {"normal": "Normal operations", "peak": "Peak demand (150 %)",
                 "failures": "30 % charger failures", "prices": "Price fluctuations",
                 "combined": "Combined disruptions", "weather": "Extreme weather (grid drop)"}
TABLE4_METRICS = {"convergence_s": "Convergence time [s]", "gap_pct": "Optimality gap [%]",
                  "adaptability": "Adaptability index"}


def table3_rows(res: Paper000) -> list[list[str]]:
    summary = res.table3_summary()
    rows = []
    for key, label in TABLE3_LABELS.items():
        digits = 2 if key == "movements_per_retrieval" else 1
        rows.append([label] + [cell(*summary[key][a], PAPER_TABLE3[key][i], digits)
                               for i, a in enumerate(APPROACHES)])
    return rows


def table4_rows(res: Paper000) -> list[list[str]]:
    summary = res.table4_summary()
    rows = []
    for kind, per in summary.items():
        digits = {"convergence_s": 3, "gap_pct": 1, "adaptability": 2}
        rows.append([TABLE4_LABELS[kind]] + [cell(*per[m], PAPER_TABLE4[kind][i], digits[m])
                                             for i, m in enumerate(TABLE4_METRICS)])
    return rows


def write_timeseries(res: Paper000, path: Path) -> None:
    """Per step of the first seed's normal day: each approach's queue and the three-layer
    feedback (smoothed CI and UR per zone, triggers); a re-plan shows as ``relayout`` = 1."""
    keys = list(res.feedback[0]) if res.feedback else ["t"]
    steps = len(next(iter(res.queues.values()))) if res.queues else 0
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", *(f"queued_{a}" for a in res.queues), *keys[1:]])
        for t in range(steps):
            fb = res.feedback[t] if t < len(res.feedback) else {}
            w.writerow([t, *(res.queues[a][t] for a in res.queues),
                        *(f"{fb.get(k, 0.0):.4g}" for k in keys[1:])])


def _series_plot(path: Path, series: dict[str, list[float]], marks: list[tuple[int, str]],
                 ylabel: str, title: str) -> None:
    """One panel of lines per step, with vertical marks (step, colour) for layer events."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.6))
    for label, ys in series.items():
        ax.plot(ys, label=label)
    for t, colour in marks:
        ax.axvline(t, color=colour, ls=":" if colour == "k" else "-", lw=1)
    ax.set(xlabel="step", ylabel=ylabel, title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_plots(res: Paper000, folder: Path) -> None:
    replans = [(int(r["t"]), "k") for r in res.relayouts
               if r.get("seed") == res.seeds[0] and r.get("scenario") == "normal"]
    _series_plot(folder / "queues.png",
                 {APPROACH_TITLES[a]: [float(x) for x in q] for a, q in res.queues.items()},
                 replans, "EVs waiting for a charger",
                 "Queue on the normal day (dotted: a layout re-plan)")
    keys = [k for k in (res.feedback[0] if res.feedback else {}) if k.startswith("ci_")]
    events = [(t, "k" if row.get("relayout") else "0.8") for t, row in enumerate(res.feedback)
              if row.get("relayout") or row.get("reallocate")]
    _series_plot(folder / "feedback.png",
                 {f"CI {k[3:]}": [row[k] for row in res.feedback] for k in keys}, events,
                 "congestion index (EMA)",
                 "Feedback: CI per zone (grey: reallocation, dotted: re-plan)")
    if res.plan is not None:
        from evgrid.optim.layout import plot_layout

        plot_layout(res.plan, folder / "layout.png")


def render_html(res: Paper000, folder: Path) -> str:
    t3 = html_table(["Metric", *(APPROACH_TITLES[a] for a in APPROACHES)], table3_rows(res))
    t4 = html_table(["Scenario", *TABLE4_METRICS.values()], table4_rows(res))
    moves = "".join(f"<li>seed {r['seed']}, {html.escape(r['scenario'])}, step {r['t']}: "
                    f"{r['moved']} chargers {html.escape(r['from'])} → {html.escape(r['to'])}</li>"
                    for r in res.relayouts) or "<li>none</li>"
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in PAPER_NOTES)
    lay = html.escape(json.dumps(res.layout, indent=1))
    imgs = "".join(f'<img alt="{p}" src="data:image/png;base64,'
                   f'{base64.b64encode((folder / p).read_bytes()).decode()}">' for p in PLOTS
                   if (folder / p).exists())
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>evgrid: paper 000 on {html.escape(res.scenario)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}
td:first-child{{text-align:left}}img{{max-width:100%}}</style></head><body>
<h1>Seed 000's Tables 3 and 4 on {html.escape(res.scenario)}</h1>
<p>Seeds {res.seeds}: each cell is ours, mean ± standard deviation over the seeds, with the
paper's figure in brackets.</p>
<h2>Table 3: approaches</h2>{t3}
<h2>Table 4: operational scenarios (three layers)</h2>{t4}
<h2>Why the figures differ from the paper's</h2><ul>{notes}</ul>
<h2>Layout re-plans (SLM reconfiguration)</h2><ul>{moves}</ul>
{imgs}
<h2>Layout of the normal lot</h2><pre>{lay}</pre></body></html>
"""


def write_paper000(res: Paper000, target: OutputTarget) -> Path:
    def fill(tmp: Path) -> None:
        (tmp / "results.json").write_text(json.dumps(res.to_json(), indent=2, allow_nan=False))
        write_timeseries(res, tmp / "timeseries.csv")
        write_plots(res, tmp)
        (tmp / "report.html").write_text(render_html(res, tmp))

    return target.write(fill, last="results.json")
