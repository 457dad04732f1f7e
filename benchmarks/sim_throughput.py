"""Simulator throughput: steps/s and EV sessions/s for a scenario with LLF, and peak RSS.

Prints one JSON object. Targets (issue #2): one simulated day of ``city`` (≈1,000 chargers,
several thousand sessions) in under 1 s of simulator time on one core, i.e. an order of
magnitude above ACN-Sim (≈1,000 periods/s on a 54-charger site) and EV2Gym (83 steps/s at
1,000 chargers). Usage: python benchmarks/sim_throughput.py [--scenario city] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scenario", default="city")
    ap.add_argument("--policy", default="llf")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dt-min", type=int, default=None, help="override Δt [min]")
    ap.add_argument("--days", type=float, default=None, help="override the horizon [days]")
    args = ap.parse_args()

    t0 = time.perf_counter()
    from evgrid.agents.policies import make_policy
    from evgrid.envs import Simulator
    from evgrid.scenario import load_scenario, parse_scenario

    import_s = time.perf_counter() - t0
    sc = load_scenario(args.scenario)
    over = {k: v for k, v in (("dt_min", args.dt_min), ("horizon_days", args.days)) if v}
    if over:
        sc = parse_scenario({**sc.model_dump(mode="json"), **over})
    sim = Simulator(sc)
    policy = make_policy(args.policy)
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        result = sim.run(policy)
        times.append(time.perf_counter() - t)
    best = min(times)
    print(json.dumps({
        "benchmark": "sim_throughput",
        "scenario": sc.name,
        "policy": args.policy,
        "chargers": sim.world.n_chargers,
        "sessions": len(result.sessions),
        "steps": sc.steps,
        "dt_min": sc.dt_min,
        "run_s_best": round(best, 4),
        "run_s_median": round(sorted(times)[len(times) // 2], 4),
        "steps_per_s": round(sc.steps / best, 1),
        "sessions_per_s": round(len(result.sessions) / best, 1),
        "import_s": round(import_s, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "heavy_modules_loaded": sorted(m for m in ("ray", "torch", "cvxpy", "grpc") if m in sys.modules),
    }))


if __name__ == "__main__":
    main()
