"""Offline-optimal LP: build and solve time, size, and the gap of each baseline to it.

Prints one JSON object per scenario. Target (issue #2): ``small`` in seconds, ``city`` (one
day) in under 2 minutes on a 2-core machine.
Usage: python benchmarks/offline_bound.py [--scenario small --scenario city]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scenario", action="append", default=None)
    args = ap.parse_args()
    from evgrid.evaluation.runner import run_experiment
    from evgrid.scenario import load_scenario

    for name in args.scenario or ["small", "city", "lot2102"]:
        sc = load_scenario(name)
        t = time.perf_counter()
        exp = run_experiment(sc, ["uncontrolled", "fcfs", "round_robin", "edf", "llf"])
        total = time.perf_counter() - t
        assert exp.offline is not None
        print(json.dumps({
            "benchmark": "offline_bound",
            "scenario": name,
            "sessions": exp.kpis["llf"]["sessions"],
            "lp_variables": exp.offline.n_variables,
            "solver": exp.offline.solver,
            "lp_build_s": round(exp.offline.build_s, 3),
            "lp_solve_s": round(exp.offline.solve_s, 3),
            "experiment_s": round(total, 3),
            "optimal_objective": round(exp.kpis["offline_optimal"]["objective"], 3),
            "optimal_demand_met_pct": round(exp.kpis["offline_optimal"]["demand_met_pct"], 3),
            "gap_to_optimal_pct": {k: round(v, 3) for k, v in exp.gap_to_optimal_pct().items()},
            "demand_met_pct": {k: round(v["demand_met_pct"], 3) for k, v in exp.kpis.items()},
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }))


if __name__ == "__main__":
    main()
