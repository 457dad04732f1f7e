"""Seed 000's resource allocation (000_f74a305f822cf870.txt §3.4, Table 2): MIP vs PSO vs RHH.

Random instances (``evgrid.optim.allocation.random_problem``: SoC zones plus a general zone,
a grid that carries 35 % of the chargers, a two-level tariff) of growing n = |V|·|S|·|T|.
Prints JSON rows:

- ``part: "quality"`` — one per (size, seed, method): objective (Eq. 8 + the unmet penalty),
  ``gap_pct`` = 100·(method − MIP)/MIP, ``quality_pct`` = 100·MIP/method (Table 2's
  "95–98 %" for PSO, "90–95 %" for RHH), solve seconds, feasibility (``check_feasible``), and
  the MIP's own gap. ``pso`` starts one particle from RHH's plan (the default);
  ``pso_cold`` is the pure swarm. The MIP runs with a time limit; where it stops early its
  objective is an upper bound and the gaps are against that incumbent (``mip_gap`` > 0).
- ``part: "summary"`` — per size: mean / min quality and mean time per method.
- ``part: "scaling"`` — RHH (and PSO while it fits in memory) seconds at large n.
- ``part: "router"`` — ``LayeredRouter`` on the bundled lot2102 (1,500 arrivals/day, 15-min
  steps) with an LLF controller: per-call milliseconds and the methods ACAS picked.

Usage: python benchmarks/allocation.py [--quick] [--seeds 3] [--mip-time-limit 30]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from evgrid.optim.allocation import (
    N1_DEFAULT,
    N2_DEFAULT,
    Allocation,
    AllocationProblem,
    check_feasible,
    random_problem,
    solve_mip,
)
from evgrid.optim.allocation_pso import PSOConfig, solve_pso
from evgrid.optim.allocation_rhh import solve_rhh

SIZES = [(4, 3, 4), (8, 5, 8), (12, 6, 12), (16, 8, 12), (20, 10, 16), (30, 15, 24),
         (40, 20, 24), (60, 30, 24)]
QUICK_SIZES = SIZES[:4]
SCALING = [(100, 50, 48), (200, 100, 48), (400, 200, 96), (800, 400, 96)]
QUICK_SCALING = SCALING[:2]
PSO_MAX_N = 250_000  # the swarm holds [particles × n] arrays


def emit(row: dict[str, Any]) -> None:
    print(json.dumps(row), flush=True)


def quality_rows(p: AllocationProblem, size: tuple[int, int, int], seed: int,
                 mip_time_limit: float) -> list[dict[str, Any]]:
    mip = solve_mip(p, time_limit_s=mip_time_limit)
    runs: dict[str, Allocation] = {
        "mip": mip,
        "pso": solve_pso(p, seed=seed),
        "pso_cold": solve_pso(p, PSOConfig(rhh_seed=False), seed=seed),
        "rhh": solve_rhh(p),
    }
    rows = []
    for name, a in runs.items():
        rows.append({
            "benchmark": "allocation", "part": "quality", "seed": seed, "n": p.n,
            "V": size[0], "S": size[1], "T": size[2], "method": name,
            "objective": round(a.objective, 4),
            "gap_pct": round(100 * (a.objective - mip.objective) / mip.objective, 3),
            "quality_pct": round(100 * mip.objective / a.objective, 3),
            "solve_s": round(a.solve_s, 4),
            "feasible": check_feasible(p, a) == [],
            "unmet_kwh": round(a.unmet_kwh, 3),
            "unmet_share_pct": round(100 * a.unmet_kwh * p.unmet_penalty_per_kwh
                                     / max(a.objective, 1e-12), 2),
            "mip_gap": None if mip.mip_gap is None else round(mip.mip_gap, 6),
            "mip_status": mip.status,
        })
    return rows


def summarise(rows: list[dict[str, Any]]) -> None:
    by_n: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        by_n.setdefault(r["n"], []).append(r)
    for n, rs in sorted(by_n.items()):
        out: dict[str, Any] = {"benchmark": "allocation", "part": "summary", "n": n,
                               "seeds": len({r["seed"] for r in rs})}
        for m in ("mip", "pso", "pso_cold", "rhh"):
            mr = [r for r in rs if r["method"] == m]
            q = np.array([r["quality_pct"] for r in mr])
            out[m] = {"quality_pct_mean": round(float(q.mean()), 2),
                      "quality_pct_min": round(float(q.min()), 2),
                      "gap_pct_mean": round(float(np.mean([r["gap_pct"] for r in mr])), 2),
                      "solve_s_mean": round(float(np.mean([r["solve_s"] for r in mr])), 4),
                      "all_feasible": all(r["feasible"] for r in mr)}
        out["mip_max_gap"] = max((r["mip_gap"] or 0.0) for r in rs if r["method"] == "mip")
        emit(out)
    for m in ("pso", "pso_cold", "rhh"):
        q = np.array([r["quality_pct"] for r in rows if r["method"] == m])
        emit({"benchmark": "allocation", "part": "summary", "n": "all", "method": m,
              "quality_pct_mean": round(float(q.mean()), 2),
              "quality_pct_median": round(float(np.median(q)), 2),
              "quality_pct_min": round(float(q.min()), 2),
              "share_within_95_pct": round(float((q >= 95).mean()), 3),
              "share_within_90_pct": round(float((q >= 90).mean()), 3)})


def scaling(sizes: list[tuple[int, int, int]]) -> None:
    for v, s, t in sizes:
        p = random_problem(v, s, t, seed=0)
        r = solve_rhh(p)
        row: dict[str, Any] = {"benchmark": "allocation", "part": "scaling", "n": p.n,
                               "V": v, "S": s, "T": t, "rhh_s": round(r.solve_s, 4),
                               "rhh_feasible": check_feasible(p, r) == []}
        if p.n <= PSO_MAX_N:
            ps = solve_pso(p, seed=0)
            row.update(pso_s=round(ps.solve_s, 3),
                       pso_vs_rhh_pct=round(100 * r.objective / ps.objective, 3))
        emit(row)


def router(days: float, thresholds: list[tuple[int | None, int | None]]) -> None:
    from evgrid.agents.policies import make_policy
    from evgrid.envs import Simulator
    from evgrid.envs.world import build_world
    from evgrid.optim.layered_router import LayeredRouter
    from evgrid.scenario import load_scenario

    sc = load_scenario("lot2102").model_copy(update={"horizon_days": days})
    for n1, n2 in thresholds:
        lr = LayeredRouter(build_world(sc), n1=n1, n2=n2)
        t0 = time.perf_counter()
        Simulator(sc, seed=0, router=lr).run(make_policy("llf"))
        wall = time.perf_counter() - t0
        calls = [s for s in lr.stats if s.n_evs]
        # The first call pays numba's load of the compiled RHH kernel: report it apart.
        later = np.array([s.total_s for s in calls[1:]]) * 1e3
        emit({"benchmark": "allocation", "part": "router", "scenario": "lot2102",
              "days": days, "n1": n1 if n1 is not None else N1_DEFAULT,
              "n2": n2 if n2 is not None else N2_DEFAULT, "run_s": round(wall, 2),
              **{k: (round(v, 3) if isinstance(v, float) else v)
                 for k, v in lr.summary().items()},
              "first_call_ms": round(calls[0].total_s * 1e3, 2) if calls else None,
              "median_call_ms_after_first": round(float(np.median(later)), 3)
              if later.size else None,
              "max_call_ms_after_first": round(float(later.max()), 3) if later.size else None,
              "max_evs_per_call": max((s.n_evs for s in calls), default=0),
              "max_n": max((s.n for s in calls), default=0)})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="small sizes, one seed, a 5 s MIP limit, half a day of routing")
    ap.add_argument("--seeds", type=int, default=3, help="instances per size (default 3)")
    ap.add_argument("--mip-time-limit", type=float, default=30.0,
                    help="seconds HiGHS may spend per MIP (default 30)")
    ap.add_argument("--no-router", action="store_true", help="skip the lot2102 routing run")
    args = ap.parse_args()
    sizes = QUICK_SIZES if args.quick else SIZES
    seeds = 1 if args.quick else args.seeds
    limit = 5.0 if args.quick else args.mip_time_limit
    rows: list[dict[str, Any]] = []
    for size in sizes:
        for seed in range(seeds):
            p = random_problem(*size, seed=seed)
            for row in quality_rows(p, size, seed, limit):
                emit(row)
                rows.append(row)
    summarise(rows)
    scaling(QUICK_SCALING if args.quick else SCALING)
    if not args.no_router:
        if args.quick:
            router(0.5, [(0, 0)])
        else:
            router(1.0, [(0, 0), (None, None)])


if __name__ == "__main__":
    main()
