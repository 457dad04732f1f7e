"""Write an experiment to a folder: results.json, timeseries.csv, PNG plots and report.html.

Where and how the files land (a new folder appears whole; an existing one is updated file by
file, results.json last, and nothing evgrid did not write is deleted) is
``evgrid.evaluation.output``'s job.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import os
from pathlib import Path

import numpy as np

from evgrid.envs.kpis import waiting_min
from evgrid.evaluation.output import OutputTarget, prepare_output
from evgrid.evaluation.runner import OFFLINE, Experiment

#: The KPIs shown in tables (all of them are in results.json).
TABLE_KPIS = [
    "sessions",
    "energy_requested_kwh",
    "energy_delivered_kwh",
    "demand_met_pct",
    "energy_cost",
    "demand_charge",
    "cost",
    "carbon_kg",
    "objective",
    "peak_kw",
    "limit_violations",
    "limit_cut_kwh",
    "wait_mean_min",
    "wait_p95_min",
    "travel_mean_km",
    "full_charge_sessions",
    "unfinished_sessions",
    "below_floor_sessions",
    "charger_utilisation_pct",
    "occupancy_pct",
]

PLOTS = ["load_vs_limits.png", "energy.png", "bill.png", "waiting.png"]
#: Every file ``write_experiment`` writes (pass to ``prepare_output(files=...)``).
EXPERIMENT_FILES = ("results.json", "timeseries.csv", *PLOTS, "report.html")


def write_experiment(exp: Experiment, out: str | os.PathLike[str] | OutputTarget) -> Path:
    """Write every output file of ``exp`` into ``out``; return the folder's absolute path.

    ``out`` is best an ``OutputTarget`` from ``prepare_output(..., files=EXPERIMENT_FILES)``,
    made before the run so a bad folder fails before the simulation. A plain path is checked
    here with ``overwrite=False``: a new, empty or evgrid-written folder is accepted, anything
    else raises ``OutputError``. See ``evgrid.evaluation.output`` for what is atomic.
    """
    target = (
        out
        if isinstance(out, OutputTarget)
        else prepare_output(out, overwrite=False, files=EXPERIMENT_FILES)
    )

    def fill(tmp: Path) -> None:
        (tmp / "results.json").write_text(json.dumps(exp.to_json(), indent=2, allow_nan=False))
        write_timeseries(exp, tmp / "timeseries.csv")
        write_plots(exp, tmp)
        (tmp / "report.html").write_text(render_html(exp, tmp))

    return target.write(fill, last="results.json")


def write_timeseries(exp: Experiment, path: Path) -> None:
    """One row per policy and step: prices, limits, loads (city and per grid zone), queues."""
    first = next(iter(exp.runs.values()))
    w = first.world
    zones = w.grid_ids
    header = [
        "policy",
        "step",
        "time_h",
        "price_per_kwh",
        "carbon_kg_per_kwh",
        "city_limit_kw",
        "city_load_kw",
        "requested_city_kw",
        "connected",
        "queued",
    ]
    header += [f"load_kw[{z}]" for z in zones] + [f"limit_kw[{z}]" for z in zones]
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for name, r in exp.runs.items():
            rec = r.record
            for t in range(w.steps):
                writer.writerow(
                    [
                        name,
                        t,
                        round(t * w.dt_h, 4),
                        w.price_per_kwh[t],
                        w.carbon_kg_per_kwh[t],
                        w.city_limit_kw[t],
                        round(rec.city_load_kw[t], 6),
                        round(rec.requested_city_kw[t], 6),
                        rec.connected[t],
                        rec.queued[t],
                    ]
                    + [round(v, 6) for v in rec.zone_load_kw[t]]
                    + list(w.zone_limit_kw[t])
                )


def write_plots(exp: Experiment, folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = next(iter(exp.runs.values()))
    w = first.world
    hours = w.time_h

    # 1. City and grid-zone load against their limits.
    n_panels = 1 + w.n_grid
    cols = min(n_panels, 3)
    rows = -(-n_panels // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.2 * rows), squeeze=False)
    panels = [("city", w.city_limit_kw, lambda r: r.record.city_load_kw)] + [
        (g, w.zone_limit_kw[:, i], lambda r, i=i: r.record.zone_load_kw[:, i])
        for i, g in enumerate(w.grid_ids)
    ]
    for ax, (title, limit, load) in zip(axes.flat, panels, strict=False):
        ax.step(hours, limit, where="post", color="black", lw=2, label="limit")
        for name, r in exp.runs.items():
            ax.step(
                hours,
                load(r),
                where="post",
                lw=1.2,
                ls="--" if name == OFFLINE else "-",
                label=name,
            )
        ax.set_title(f"{title} load [kW]")
        ax.set_xlabel("hour")
    for ax in list(axes.flat)[n_panels:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(folder / "load_vs_limits.png", dpi=90)
    plt.close(fig)

    # 2. Energy delivered vs requested, per policy.
    fig, ax = plt.subplots(figsize=(7, 3.5))
    names = list(exp.kpis)
    req = [exp.kpis[n]["energy_requested_kwh"] for n in names]
    got = [exp.kpis[n]["energy_delivered_kwh"] for n in names]
    x = np.arange(len(names))
    ax.bar(x - 0.2, req, 0.4, label="requested", color="#bbbbbb")
    ax.bar(x + 0.2, got, 0.4, label="delivered", color="#2a7ab0")
    for i, n in enumerate(names):
        ax.text(
            x[i] + 0.2,
            got[i],
            f"{exp.kpis[n]['demand_met_pct']:.1f}%",
            ha="center",
            va="bottom",
            fontsize=7,
        )
    ax.set_xticks(x, names, rotation=20, fontsize=8)
    ax.set_ylabel("kWh")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # clear of the bars
    fig.tight_layout()
    fig.savefig(folder / "energy.png", dpi=90)
    plt.close(fig)

    # 3. The bill per policy (energy and demand charge) and its saving against uncontrolled.
    fig, ax = plt.subplots(figsize=(7, 3.5))
    energy = [exp.kpis[n]["energy_cost"] for n in names]
    demand = [exp.kpis[n]["demand_charge"] for n in names]
    ax.bar(x, energy, 0.6, label="energy", color="#2a7ab0")
    ax.bar(x, demand, 0.6, bottom=energy, label="demand charge", color="#e08a2c")
    base = exp.kpis.get("uncontrolled", {}).get("cost")
    for i, n in enumerate(names):
        total = exp.kpis[n]["cost"]
        label = (f"{100 * (total - base) / base:+.1f}%" if base and n != "uncontrolled"
                 else f"{total:,.0f}")
        ax.text(x[i], energy[i] + demand[i], label, ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x, names, rotation=20, fontsize=8)
    ax.set_ylabel("cost [currency]")
    ax.set_title("bill (labels: saving against uncontrolled)", fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(folder / "bill.png", dpi=90)
    plt.close(fig)

    # 4. Waiting-time distribution (the queue depends on routing, not on power: one histogram
    #    per distinct routing, here shared by every policy).
    fig, ax = plt.subplots(figsize=(7, 3.5))
    wait = waiting_min(first)
    ax.hist(wait, bins=30, color="#c0504d")
    ax.set_xlabel("waiting time for a charger [min]")
    ax.set_ylabel("sessions")
    ax.set_title(
        f"mean {wait.mean():.1f} min, p95 {np.percentile(wait, 95):.1f} min"
        if wait.size
        else "no sessions"
    )
    fig.tight_layout()
    fig.savefig(folder / "waiting.png", dpi=90)
    plt.close(fig)


def format_value(v: float) -> str:
    if isinstance(v, int) or abs(v - round(v)) < 1e-9 * max(1.0, abs(v)):
        return f"{round(v):,}"
    if abs(v) < 0.01:
        return f"{v:.2e}"
    return f"{v:,.2f}"


def format_gap(pct: float) -> str:
    """A gap in % with 2 decimals; solver noise below 0.005 % shows as 0.00, never -0.00."""
    return f"{0.0 if abs(pct) < 0.005 else pct:.2f}"


#: Transport figures shown beside the ADMM's where not zero (the terminal shows the same).
TRANSPORT_KPIS = ["refused_messages", "late_proposals", "fallback_schedules",
                  "coordinator_recoveries"]


def agreement_kpis(exp: Experiment) -> tuple[list[str], list[str]]:
    """The ADMM and transport rows (transport ones only where not all zero), and the
    policies that have them: the second table of the terminal and of report.html."""
    names = list(exp.kpis)
    own = sorted({k for n in names for k in exp.kpis[n] if k.startswith("admm_")})
    own += [k for k in TRANSPORT_KPIS if any(exp.kpis[n].get(k) for n in names)]
    return own, [n for n in names if any(k in exp.kpis[n] for k in own)]


def tariff_line(exp: Experiment) -> str:
    """What the bill is made of, in words (a tariff's name and billing window)."""
    t = exp.scenario.tariff
    if t is None:
        return "<p>Energy priced by the scenario's hourly prices; no demand charge.</p>"
    return (f"<p>Tariff <b>{html.escape(t.name)}</b>: time-of-use energy prices and a demand "
            f"charge on each grid zone's peak per {html.escape(t.demand_window)} "
            "(the <i>energy_cost</i> and <i>demand_charge</i> rows; <i>cost</i> is their sum)."
            "</p>")


def render_html(exp: Experiment, folder: Path) -> str:
    """A single self-contained page: KPI table, gaps to the optimum, and the plots inline."""
    names = list(exp.kpis)
    gaps = exp.gap_to_optimal_pct()
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    rows = "".join(
        "<tr><td>"
        + k
        + "</td>"
        + "".join(f"<td>{format_value(exp.kpis[n][k])}</td>" for n in names)
        + "</tr>"
        for k in TABLE_KPIS
    )
    rows += (
        "<tr><td><b>gap to optimum [%]</b></td>"
        + "".join(f"<td><b>{format_gap(gaps[n])}</b></td>" if n in gaps else "<td>—</td>" for n in names)
        + "</tr>"
    )
    own, with_own = agreement_kpis(exp)
    agreement = ""
    if own and with_own:
        agreement = ("<h2>agreement (ADMM) and transport</h2><table><tr><th>KPI</th>"
                     + "".join(f"<th>{html.escape(n)}</th>" for n in with_own) + "</tr>"
                     + "".join("<tr><td>" + k + "</td>" + "".join(
                         f"<td>{format_value(exp.kpis[n][k])}</td>" if k in exp.kpis[n]
                         else "<td>—</td>" for n in with_own) + "</tr>" for k in own)
                     + "</table>")
    imgs = "".join(
        f'<h2>{p.removesuffix(".png").replace("_", " ")}</h2><img alt="{p}" '
        f'src="data:image/png;base64,{base64.b64encode((folder / p).read_bytes()).decode()}">'
        for p in PLOTS
    )
    sc = exp.scenario
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>evgrid: {html.escape(sc.name)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}
td:first-child{{text-align:left}}img{{max-width:100%}}</style></head><body>
<h1>evgrid run: {html.escape(sc.name)}</h1>
<p>{html.escape(sc.description)}<br>seed {exp.seed}, {sc.steps} steps of {sc.dt_min} min,
{len(next(iter(exp.runs.values())).sessions)} sessions. The offline optimum is the
perfect-information LP on the same sessions: no controller can beat it.</p>
{tariff_line(exp)}
<table><tr><th>KPI</th>{head}</tr>{rows}</table>{agreement}{imgs}</body></html>
"""
