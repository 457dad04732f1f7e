"""RLlib sampling rate of evgrid's environment against a trivial numpy env of the same agents.

For each number of env runners, builds RLlib's SAC on (a) evgrid's station agents and (b) a
multi-agent env with the same agents, spaces and episode length whose step is a few numpy
calls, then times EnvRunner sampling (the policy's forward pass included, no learning).
Target (issue 11): evgrid keeps >= 90 % of the trivial env's rate, measured in the same run.
Prints one JSON object. Usage: python benchmarks/rl_sampling.py [--scenario small]
[--runners 1 2] [--steps 2000]
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

import numpy as np
from ray.rllib.env.multi_agent_env import MultiAgentEnv


class TrivialEnv(MultiAgentEnv):
    """The same agents and spaces as evgrid's env; a step is random numbers."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__()
        cfg = dict(config or {})
        from evgrid.learning.rllib_env import make_parallel_env

        par = make_parallel_env(cfg)
        names = list(par.possible_agents)
        self.possible_agents = list(names)
        self.agents = list(names)
        self.shapes = {a: par.observation_space(a).shape or () for a in names}
        self.observation_spaces = {a: par.observation_space(a) for a in names}
        self.action_spaces = {a: par.action_space(a) for a in names}
        self.horizon = par.world.steps
        self.rng = np.random.default_rng(0)
        self.t = 0

    def _obs(self) -> dict[str, np.ndarray]:
        return {a: self.rng.uniform(-1, 1, shape).astype(np.float32)
                for a, shape in self.shapes.items()}

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[Any, Any]:
        self.t = 0
        return self._obs(), {a: {} for a in self.possible_agents}

    def step(self, action_dict: dict[Any, Any]) -> tuple[Any, Any, Any, Any, Any]:
        self.t += 1
        done = self.t >= self.horizon
        rew = {a: -float(np.square(np.asarray(v, dtype=float)).sum())
               for a, v in action_dict.items()}
        term = {a: done for a in self.possible_agents}
        term["__all__"] = done
        trunc = {a: False for a in self.possible_agents}
        trunc["__all__"] = False
        return self._obs(), rew, term, trunc, {}


def rate(env: str, cfg: dict[str, Any], runners: int, steps: int, spec: Any) -> dict[str, float]:
    """Env and agent steps per second sampled by ``runners`` EnvRunners (0: the driver)."""
    from dataclasses import replace

    from evgrid.learning.train import build_config

    config = build_config(replace(spec, env_runners=runners), "sac", export=UNUSED)
    config = config.environment(env, env_config=cfg)
    algo = config.build_algo()
    try:
        group = algo.env_runner_group
        per = max(1, steps // max(runners, 1))

        def sample(r: Any) -> int:
            eps = r.sample(num_timesteps=per, random_actions=False)
            return int(sum(e.env_steps() for e in eps))

        sample_all = (lambda: [sample(algo.env_runner)]) if runners == 0 else (
            lambda: group.foreach_env_runner(sample, local_env_runner=False))
        sample_all()  # warm-up: connectors, first forward pass
        t0 = time.perf_counter()
        n = int(sum(sample_all()))
        s = time.perf_counter() - t0
    finally:
        algo.stop()
    agents = len(cfg_agents(cfg))
    return {"env_steps_per_s": n / s, "agent_steps_per_s": n * agents / s, "env_steps": n}


def inference_us(spec: Any, folder: Path, calls: int = 2000) -> dict[str, float]:
    """µs per decision of an exported station policy called as an edge process calls it:
    one station's observation at a time, torch only (the file comes from a freshly built
    SAC module: the network's size, not its training, sets the time)."""
    from evgrid.agents.bundle import ExportedPolicy
    from evgrid.learning.export import export_module
    from evgrid.learning.train import build_config

    algo = build_config(spec, "sac", export=UNUSED).build_algo()
    try:
        path = export_module(algo.get_module("station"), "station", folder / "station.pt")
    finally:
        algo.stop()
    pol = ExportedPolicy(path)
    x = np.zeros((1, _obs_dim(spec)), dtype=np.float32)
    for _ in range(50):
        pol(x)
    t0 = time.perf_counter()
    for _ in range(calls):
        pol(x)
    return {"us_per_decision": 1e6 * (time.perf_counter() - t0) / calls, "calls": calls}


def _obs_dim(spec: Any) -> int:
    from evgrid.envs.parallel import EvgridParallelEnv

    return int(EvgridParallelEnv(spec.scenario, learn="stations").actions.obs_dim)


def cfg_agents(cfg: dict[str, Any]) -> list[str]:
    from evgrid.learning.rllib_env import make_parallel_env

    return list(make_parallel_env(cfg).possible_agents)


#: No frozen side in a SAC-only spec: the export folder is never read.
UNUSED = Path("unused")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scenario", default="small")
    ap.add_argument("--runners", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--num-cpus", type=int, default=None)
    args = ap.parse_args()
    import ray
    from ray.tune.registry import register_env

    from evgrid.learning.rllib_env import register
    from evgrid.learning.train import TrainSpec, build_config
    from evgrid.scenario import load_scenario

    ray.init(num_cpus=args.num_cpus or max(2, max(args.runners) + 1), include_dashboard=False,
             log_to_driver=False, runtime_env={"env_vars": {"OPENBLAS_NUM_THREADS": "1",
                                                            "OMP_NUM_THREADS": "1"}})
    register()
    register_env("trivial", lambda cfg: TrivialEnv(dict(cfg)))
    spec = TrainSpec(load_scenario(args.scenario), algo="sac")
    cfg = dict(build_config(spec, "sac", UNUSED).env_config)
    rows = []
    for k in args.runners:
        ev = rate("evgrid", cfg, k, args.steps, spec)
        tr = rate("trivial", cfg, k, args.steps, spec)
        rows.append({"env_runners": k, "evgrid": ev, "trivial": tr,
                     "evgrid_share_of_trivial": ev["env_steps_per_s"] / tr["env_steps_per_s"]})
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        inference = inference_us(spec, Path(tmp))
    print(json.dumps({"benchmark": "rl_sampling", "scenario": args.scenario,
                      "agents": len(cfg_agents(cfg)), "cpus": os.cpu_count(), "rows": rows,
                      "target_share": 0.9, "exported_policy_inference": inference}, indent=2))
    ray.shutdown()


if __name__ == "__main__":
    main()
