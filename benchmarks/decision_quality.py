"""Decision quality: does coordination pay? Scenarios × seeds × {uncontrolled, llf, mpc,
coordinated, offline}.

Each seed is one draw of the day's arrivals, and every policy and the offline optimum run
on that same draw. Prints one JSON row per (scenario, seed, policy) with ``energy_cost``,
``demand_charge``, ``cost``, ``carbon_kg``, ``energy_delivered_kwh``, ``peak_kw``, ``objective``
and ``gap_to_optimal_pct``, then one summary per scenario with the issue's yardsticks, as
mean, standard deviation, min and max over the seeds:

- ``gap_closed_pct``: the share of LLF's objective gap to the offline optimum that the
  coordinated policy closes, 100 · (LLF − coordinated) / (LLF − offline);
- ``energy_vs_llf_pct``: coordinated's energy delivered against LLF's;
- ``cost_vs_uncontrolled_pct``: coordinated's bill (energy + demand charge) against
  uncontrolled charging's;
- ``seeds_energy_ok``: seeds where coordinated delivered at least LLF's energy − 0.1 %;
- the ADMM's certified gap (max over periods) and its uncertified periods.

In-process stations (the Ray and gRPC paths give the same numbers: tests/integration).
``mpc`` solves every period with cvxpy and is skipped where that is slow (``--no-mpc-on``,
default the cities: about 1,000 EVs a period). ``--plot FILE`` draws the savings per scenario.
Usage: python benchmarks/decision_quality.py [--scenario workplace ...] [--seeds 12]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from evgrid.scenario import Scenario

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

FLEXIBLE = ["workplace", "residential", "depot", "solar-hybrid", "high-carbon", "small-slack"]
SCENARIOS = [*FLEXIBLE, "city", "city-congested"]
POLICIES = ["uncontrolled", "llf", "mpc", "coordinated"]
FIELDS = ["energy_cost", "demand_charge", "cost", "carbon_kg", "energy_delivered_kwh",
          "peak_kw", "objective", "demand_met_pct", "limit_violations"]


def scenario(name: str) -> Scenario:
    """A bundled scenario; ``small-slack`` is the issue's probe: ``small`` with every grid-zone
    and city limit ×3, where every rule charges at once and ties."""
    from evgrid.scenario import load_scenario, parse_scenario

    if name != "small-slack":
        return load_scenario(name)
    d = load_scenario("small").model_dump(mode="json")
    d["name"] = "small-slack"
    d["city_limit_kw"] = [3 * x for x in d["city_limit_kw"]]
    for g in d["grid_zones"]:
        g["limit_kw"] = [3 * x for x in g["limit_kw"]]
    return parse_scenario(d)


def known_scenarios() -> list[str]:
    from evgrid.scenario import bundled_names

    return [*bundled_names(), "small-slack"]


def positive(text: str) -> int:
    """argparse type: an integer >= 1 (a bad one is argparse's one-line error, exit 2)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n} is not >= 1")
    return n


def stats(values: list[float]) -> dict[str, float]:
    import numpy as np

    a = np.asarray(values, dtype=float)
    return {"mean": round(float(a.mean()), 3), "std": round(float(a.std()), 3),
            "min": round(float(a.min()), 3), "max": round(float(a.max()), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", action="append", default=None, choices=known_scenarios(),
                    help=f"scenario (repeatable; default {SCENARIOS})")
    ap.add_argument("--seeds", type=positive, default=12, help="seeds 0..N-1, N >= 1")
    ap.add_argument("--no-mpc-on", action="append", default=None,
                    help="scenarios to run without mpc (default: city, city-congested)")
    ap.add_argument("--plot", default=None, help="write the savings plot to this PNG")
    args = ap.parse_args()
    if args.plot and not os.path.isdir(os.path.dirname(os.path.abspath(args.plot))):
        ap.error(f"--plot {args.plot}: its folder does not exist")
    from evgrid.evaluation.runner import OFFLINE, run_experiment

    no_mpc = set(args.no_mpc_on or ["city", "city-congested"])
    summaries = []
    for name in args.scenario or SCENARIOS:
        sc = scenario(name)
        pols = [p for p in POLICIES if p != "mpc" or name not in no_mpc]
        closed, energy, bill, certified, uncertified, ok = [], [], [], [], [], 0
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            exp = run_experiment(sc, pols, seed=seed)
            k, gap = exp.kpis, exp.gap_to_optimal_pct()
            for pol in [*pols, OFFLINE]:
                row = {"benchmark": "decision_quality", "scenario": name, "seed": seed,
                       "policy": pol, **{f: round(float(k[pol][f]), 3) for f in FIELDS},
                       "gap_to_optimal_pct": round(gap.get(pol, 0.0), 4)}
                if pol == "coordinated":
                    row.update({f: k[pol][f] for f in (
                        "admm_iterations_mean", "admm_gap_bound_max_pct",
                        "admm_uncertified_periods", "admm_periods")})
                print(json.dumps(row), flush=True)
            llf, co, off = (k[p]["objective"] for p in ("llf", "coordinated", OFFLINE))
            closed.append(100.0 * (llf - co) / (llf - off) if llf - off > 1e-9 else 100.0)
            e_llf = k["llf"]["energy_delivered_kwh"]
            e_co = k["coordinated"]["energy_delivered_kwh"]
            energy.append(100.0 * (e_co - e_llf) / max(e_llf, 1e-9))
            ok += e_co >= e_llf * (1 - 1e-3)
            bill.append(100.0 * (k["coordinated"]["cost"] - k["uncontrolled"]["cost"])
                        / max(abs(k["uncontrolled"]["cost"]), 1e-9))
            certified.append(k["coordinated"]["admm_gap_bound_max_pct"])
            uncertified.append(k["coordinated"]["admm_uncertified_periods"]
                               / max(k["coordinated"]["admm_periods"], 1) * 100)
            print(json.dumps({"benchmark": "decision_quality_seed", "scenario": name,
                              "seed": seed, "wall_s": round(time.perf_counter() - t0, 1)}),
                  flush=True)
        summary = {"benchmark": "decision_quality_summary", "scenario": name,
                   "seeds": args.seeds, "gap_closed_pct": stats(closed),
                   "energy_vs_llf_pct": stats(energy), "seeds_energy_ok": ok,
                   "cost_vs_uncontrolled_pct": stats(bill),
                   "admm_gap_bound_max_pct": stats(certified),
                   "admm_uncertified_periods_pct": stats(uncertified)}
        summaries.append(summary)
        print(json.dumps(summary), flush=True)
    if args.plot:
        plot(summaries, args.plot)


def plot(summaries: list[dict], path: str) -> None:
    """Bars per scenario: gap to the optimum closed, and the bill against uncontrolled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [s["scenario"] for s in summaries]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key, title in [
        (axes[0], "gap_closed_pct", "LLF→optimum gap closed by coordinated [%]"),
        (axes[1], "cost_vs_uncontrolled_pct", "bill vs uncontrolled [%]"),
    ]:
        mean = [s[key]["mean"] for s in summaries]
        err = [[m - s[key]["min"] for m, s in zip(mean, summaries, strict=True)],
               [s[key]["max"] - m for m, s in zip(mean, summaries, strict=True)]]
        ax.bar(names, mean, yerr=err, capsize=3, color="tab:blue")
        ax.set_title(title, fontsize=10)
        ax.tick_params(axis="x", rotation=30, labelsize=8)
        ax.axhline(0, color="black", lw=0.6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
