"""Does the DDPDQN matcher of §4 of 004_8f5fa6c845a0843d.txt beat nearest-station matching?

Trains one matcher per ``--seeds`` training seed (``evgrid.learning.reservation_dqn``, the
paper's parameter table; ``--iterations`` × ``--steps-per-iteration`` env steps, the table's
20,000 training rounds by default), then evaluates on ``--eval-seeds`` held-out days (day
seeds 0 .. n−1; training draws its days from [0, 2³¹), so an overlap is a ~1e-5 chance)
with ``compare_strategies``: §5.1's FIFS, RFWDA, ACP with the nearest matcher and ACP with each
DQN matcher, KPIs as mean ± sd over days. Because every label sees the same vehicles
(common random numbers), it also prints the paired per-day difference DQN − nearest on the
objective the DQN is trained on (reserved travel + wait + penalty hours), which is what
"beats" means here, and a uniformly random unmasked matcher as a control.

The default region is §5.1's busiest (26 reserved + 14 walk-ins /h): at the simulator's
default 18 + 11 /h nearest matching already waits < 1 min, so there is nothing to learn.

Prints one JSON object. Usage: python benchmarks/reservation_dqn.py [--iterations 20]
[--seeds 2] [--eval-seeds 10] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

#: KPIs reported (§5.1): the reserved class's are what the matcher decides.
KPIS = ("reserved_avg_wait_min", "reserved_avg_trip_min", "reserved_unfinished",
        "avg_wait_min", "avg_trip_min", "full_charges", "unfinished")


class RandomMatcher:
    """A uniformly random unmasked candidate (seeded): the control that says whether the
    DQN learnt something or merely stopped sending everyone to the nearest station."""

    def __init__(self, seed: int) -> None:
        import numpy as np

        self.rng = np.random.default_rng(seed)

    def __call__(self, view: Any) -> int:
        import numpy as np

        return int(self.rng.choice(np.flatnonzero(view.mask)))


def day(sim_cfg: Any, seed: int, matcher: Any) -> tuple[dict[str, float], float]:
    """One held-out day under acp: its KPIs and the matcher's objective, the reserved
    vehicles' travel + wait (+ penalties) hours (minus the env's episode return)."""
    from evgrid.evaluation.paper004_sim import RegionSim, nearest_matcher

    pick = matcher or nearest_matcher
    sim = RegionSim(sim_cfg, "acp", seed=seed)
    view, cost = sim.reset(), 0.0
    while view is not None:
        view, reward = sim.step(pick(view))
        cost -= reward
    return sim.kpis(), cost


def paired(sim_cfg: Any, seeds: list[int], matcher: Any) -> dict[str, Any]:
    """Per-day difference DQN − nearest on the same days (mean ± sd) of the KPIs and of the
    objective, and the days on which the DQN's objective is lower."""
    import numpy as np

    diffs: dict[str, list[float]] = {k: [] for k in (*KPIS, "objective_h")}
    for s in seeds:
        near, near_cost = day(sim_cfg, s, None)
        dqn, dqn_cost = day(sim_cfg, s, matcher)
        for k in KPIS:
            diffs[k].append(dqn[k] - near[k])
        diffs["objective_h"].append(dqn_cost - near_cost)
    out: dict[str, Any] = {
        k: {"mean": round(float(np.mean(v)), 3),
            "sd": round(float(np.std(v, ddof=1)), 3) if len(v) > 1 else 0.0}
        for k, v in diffs.items()}
    out["days_won"] = f"{sum(d < 0 for d in diffs['objective_h'])}/{len(seeds)}"
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import ray

    from evgrid.evaluation.paper004_sim import RegionConfig, compare_strategies
    from evgrid.learning.reservation_dqn import DqnMatcher, MatcherHyper, train_matcher
    from evgrid.transport.ray_actors import ensure_ray

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--steps-per-iteration", type=int, default=1_000)
    p.add_argument("--seeds", type=int, default=2, help="training seeds (one matcher each)")
    p.add_argument("--eval-seeds", type=int, default=10, help="held-out days")
    p.add_argument("--reserved-rate", type=float, default=26.0)
    p.add_argument("--walkin-rate", type=float, default=14.0)
    p.add_argument("--out", type=Path, default=None, help="empty or new folder (default: temp)")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)

    env = {"reserved_rate_per_h": a.reserved_rate, "walkin_rate_per_h": a.walkin_rate}
    cfg = RegionConfig(**env)
    hyper = MatcherHyper(iterations=a.iterations, steps_per_iteration=a.steps_per_iteration)
    out = a.out or Path(tempfile.mkdtemp(prefix="reservation_dqn_"))
    ensure_ray(num_cpus=2)
    runs: list[dict[str, Any]] = []
    matchers: dict[str, DqnMatcher] = {}
    try:
        for seed in range(a.seeds):
            t0 = time.perf_counter()

            def progress(i: int, n: int, s: dict[str, float], seed: int = seed,
                         t0: float = t0) -> None:
                if not a.quiet:
                    print(f"seed {seed} it {i}/{n} return {s['episode_return_mean']:.1f} "
                          f"steps {s['env_steps']:.0f} {time.perf_counter() - t0:.0f}s",
                          file=sys.stderr, flush=True)

            path = train_matcher(env, out / f"seed_{seed}", hyper=hyper, seed=seed,
                                 progress=progress)
            manifest = json.loads((path.parent / "matcher.json").read_text())
            runs.append({"seed": seed, "train_s": round(time.perf_counter() - t0, 1),
                         "iterations": manifest["iterations"],
                         "env_steps": manifest["env_steps"],
                         "episode_return_mean": [None if r is None else round(r, 1)
                                                 for r in manifest["episode_return_mean"]],
                         "file": str(path)})
            matchers[f"acp-dqn-s{seed}"] = DqnMatcher.load(path)
    finally:
        ray.shutdown()
    days = list(range(a.eval_seeds))
    t0 = time.perf_counter()
    controls: dict[str, Any] = {"acp-random": RandomMatcher(0), **matchers}
    table = compare_strategies(cfg, days, matchers=controls)
    kpis = {label: {k: f"{v[k]['mean']:.2f} ± {v[k]['sd']:.2f}" for k in KPIS}
            for label, v in table.items()}
    pairs = {label: paired(cfg, days, m) for label, m in
             {"acp-random": RandomMatcher(0), **matchers}.items()}
    result = {"paper": "§4 of 004_8f5fa6c845a0843d.txt (DDPDQN)", "region": env,
              "hyper": {k: v for k, v in vars(hyper).items()}, "training": runs,
              "eval_days": days, "eval_s": round(time.perf_counter() - t0, 1), "kpis": kpis,
              "dqn_minus_nearest": pairs,
              "beats_nearest": {label: pr["objective_h"]["mean"] < 0
                                for label, pr in pairs.items()},
              "dqn_beats_random": {
                  label: pr["objective_h"]["mean"] < pairs["acp-random"]["objective_h"]["mean"]
                  for label, pr in pairs.items() if label != "acp-random"}}
    print(json.dumps(result, indent=2, default=str, ensure_ascii=False))
    return result


if __name__ == "__main__":
    main()
