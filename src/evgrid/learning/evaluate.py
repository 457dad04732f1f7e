"""Held-out evaluation of a trained bundle, beside the baselines and the offline optimum.

Seeds are held out by construction: training days come from seeds >= ``TRAIN_SEED_BASE``
(``evgrid.envs.parallel``), evaluation days from the scenario's seed upwards, below it.

- Stations: ``learned`` against ``uncontrolled``, ``llf`` (and, if asked, ``coordinated`` and
  ``coordinated+learned``: the coordinated stations executing their agreed power by the
  learned policy) on the same days, each with its gap to the offline LP optimum of that day.
- Cohorts: LLF charging under nearest-free routing and under the learned routing; the figure
  is mean wait + travel time (the seed 004 KPIs; travel at :data:`MIN_PER_KM`) at the energy
  delivered.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from evgrid.agents.bundle import BundleSpec, bundle_folder
from evgrid.envs.parallel import TRAIN_SEED_BASE
from evgrid.evaluation.runner import run_experiment
from evgrid.scenario.schema import Scenario

LEARNED = "learned"
#: Drive time per km of the "wait + travel" figure (an urban 30 km/h).
MIN_PER_KM = 2.0
#: The KPIs reported per policy (mean and standard deviation over the held-out seeds).
FIGURES = ("objective", "gap_pct", "demand_met_pct", "cost", "wait_mean_min", "travel_mean_km")


def held_out_seeds(scenario: Scenario, n: int) -> list[int]:
    seeds = [scenario.seed + k for k in range(n)]
    if seeds and seeds[-1] >= TRAIN_SEED_BASE:
        raise ValueError(f"evaluation seeds must be below {TRAIN_SEED_BASE:,} (training days "
                         "start there): lower the scenario's seed")
    return seeds


def _stats(rows: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for key in rows[0]:
        v = np.array([r[key] for r in rows], dtype=float)
        out[key] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0}
    return out


def evaluate(scenario: Scenario, folder: Path, seeds: list[int], *,
             coordinated: bool = False,
             progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Per policy (and per routing, when the bundle has cohorts): mean and spread over
    ``seeds`` of :data:`FIGURES`, and the per-seed rows."""
    root = bundle_folder(folder)
    spec = BundleSpec.load(root)
    result: dict[str, Any] = {"scenario": scenario.name, "seeds": seeds, "bundle": str(root)}
    if spec.stations:
        both = ["coordinated", *([f"coordinated+learned:{root}"]
                                 if spec.station_action == "budget" else [])]
        policies = ["uncontrolled", "llf", *(both if coordinated else []), f"learned:{root}"]
        per: dict[str, list[dict[str, float]]] = {}
        for i, seed in enumerate(seeds):
            exp = run_experiment(scenario, policies, seed=seed)
            gaps = exp.gap_to_optimal_pct()
            for name, k in exp.kpis.items():
                row = {f: k.get(f, 0.0) for f in FIGURES if f != "gap_pct"}
                row["gap_pct"] = gaps.get(name, 0.0)  # 0 for the optimum itself
                per.setdefault(name, []).append(row)
            if progress is not None:
                progress("stations", i + 1, len(seeds))
        result["stations"] = {name: _stats(rows) for name, rows in per.items()}
        result["stations_per_seed"] = per
    if spec.cohorts:
        routes: dict[str, list[dict[str, float]]] = {}
        for i, seed in enumerate(seeds):
            for label, routing in (("nearest", "nearest"), (LEARNED, f"learned:{root}")):
                exp = run_experiment(scenario, ["llf"], seed=seed, routing=routing,
                                     with_offline=False)
                k = exp.kpis["llf"]
                routes.setdefault(label, []).append({
                    "wait_mean_min": k["wait_mean_min"], "travel_mean_km": k["travel_mean_km"],
                    "wait_plus_travel_min": k["wait_mean_min"] + MIN_PER_KM * k["travel_mean_km"],
                    "energy_delivered_kwh": k["energy_delivered_kwh"],
                    "objective": k["objective"]})
            if progress is not None:
                progress("cohorts", i + 1, len(seeds))
        result["routing"] = {name: _stats(rows) for name, rows in routes.items()}
        result["routing_per_seed"] = routes
    return result
