"""Quality of the learned policies after a fixed training budget, on held-out days.

Trains with ``evgrid.learning.train`` for ``--minutes`` per task, then evaluates on
``--seeds`` held-out days (seeds below the training range) beside uncontrolled, LLF,
coordinated and the offline optimum. Tasks (issue 11's quality targets):

- ``stations:SCENARIO``: multi-agent SAC on the stations (budget action, objective reward);
  the figure is the learned objective against LLF's and the gap to the optimum/coordinated.
- ``cohorts:SCENARIO``: DQN on the cohorts' routing with wait and travel in the reward; the
  figure is mean wait + travel time against nearest-free at equal energy.

Prints one JSON object. Usage: python benchmarks/rl_quality.py [--minutes 25]
[--tasks stations:workplace stations:small cohorts:small] [--seeds 6] [--out runs/rl_quality]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

#: Cohort reward weights: a minute waited and a km driven (2 min at 30 km/h) cost alike.
COHORT_WEIGHTS = {"wait_per_min": 0.1, "travel_per_km": 0.2}


def run_task(task: str, minutes: float, seeds: int, out: Path) -> dict[str, Any]:
    from evgrid.learning.evaluate import evaluate, held_out_seeds
    from evgrid.learning.train import TrainSpec, train
    from evgrid.scenario import load_scenario

    kind, _, name = task.partition(":")
    sc = load_scenario(name)
    if kind == "cohorts":
        sc = sc.model_copy(update={"rewards": sc.rewards.model_copy(update=COHORT_WEIGHTS)})
    spec = TrainSpec(sc, algo="sac" if kind == "stations" else "dqn", iterations=10**6,
                     checkpoint_every=50)
    folder = out / task.replace(":", "_")
    t0 = time.perf_counter()
    state = train(spec, folder / "training", folder / "export", time_budget_s=60 * minutes)
    train_s = time.perf_counter() - t0
    lines = (folder / "training" / "metrics.jsonl").read_text().splitlines()
    last = json.loads(lines[-1]) if lines else {}
    result = evaluate(sc, folder / "export", held_out_seeds(sc, seeds),
                      coordinated=kind == "stations")
    row: dict[str, Any] = {"task": task, "train_s": train_s, "iterations": state.done,
                           "env_steps": last.get("env_steps"), "evaluation": result}
    if kind == "stations":
        s = result["stations"]
        row["learned_objective"] = s["learned"]["objective"]
        row["llf_objective"] = s["llf"]["objective"]
        row["beats_llf"] = s["learned"]["objective"]["mean"] < s["llf"]["objective"]["mean"]
        row["gap_to_optimum_pct"] = s["learned"]["gap_pct"]
        if "coordinated" in s:
            row["coordinated_gap_pct"] = s["coordinated"]["gap_pct"]
        if "coordinated+learned" in s:
            row["coordinated_learned_gap_pct"] = s["coordinated+learned"]["gap_pct"]
    else:
        r = result["routing"]
        row["learned_wait_plus_travel_min"] = r["learned"]["wait_plus_travel_min"]
        row["nearest_wait_plus_travel_min"] = r["nearest"]["wait_plus_travel_min"]
        row["beats_nearest"] = (r["learned"]["wait_plus_travel_min"]["mean"]
                                < r["nearest"]["wait_plus_travel_min"]["mean"])
        row["energy_learned_vs_nearest_pct"] = 100 * (
            r["learned"]["energy_delivered_kwh"]["mean"]
            / max(r["nearest"]["energy_delivered_kwh"]["mean"], 1e-9) - 1)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--minutes", type=float, default=25.0, help="training budget per task")
    ap.add_argument("--tasks", nargs="+",
                    default=["stations:workplace", "stations:small", "cohorts:small"])
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--out", type=Path, default=Path("runs/rl_quality"))
    args = ap.parse_args()
    from evgrid.transport.ray_actors import ensure_ray

    ensure_ray(num_cpus=2)
    rows = [run_task(t, args.minutes, args.seeds, args.out) for t in args.tasks]
    print(json.dumps({"benchmark": "rl_quality", "minutes_per_task": args.minutes,
                      "cpus": os.cpu_count(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
