"""The environment as RLlib sees it: ``EvgridParallelEnv`` behind RLlib's ``MultiAgentEnv``.

RLlib trains one algorithm class per Algorithm, so an env instance exposes one kind of agent
(``learn``): stations for SAC, cohorts for DQN; the other kind acts inside the env, by its
baseline or by its latest exported policy (``frozen``), which is how ``--algo alternate``
freezes one side while the other learns.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ray.rllib.env.multi_agent_env import MultiAgentEnv
from ray.rllib.utils.typing import AgentID, MultiAgentDict

from evgrid.envs.parallel import EvgridParallelEnv
from evgrid.scenario.schema import Scenario

ENV_NAME = "evgrid"


def make_parallel_env(config: dict[str, Any]) -> EvgridParallelEnv:
    """An ``EvgridParallelEnv`` from an env config: ``scenario`` (a JSON-able dump),
    ``learn``, ``reward_set``, ``station_action``, ``reward_scale`` and ``frozen`` (a bundle
    folder for the other kind; until it holds a bundle, the other kind runs its baseline)."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    scenario = Scenario.model_validate(config["scenario"])
    learn = config.get("learn", "stations")
    action = config.get("station_action", "budget")
    frozen = config.get("frozen")
    station_policy = cohort_policy = None
    if frozen and (Path(frozen) / "bundle.json").is_file():
        from evgrid.agents.bundle import BundleSpec
        from evgrid.agents.learned import FrozenKind

        spec = BundleSpec.load(Path(frozen))
        probe = EvgridParallelEnv(scenario, learn="all", station_action=action)
        if learn == "stations" and spec.cohorts:
            cohort_policy = FrozenKind(Path(frozen), "cohort", probe.cohort_agents)
        if learn == "cohorts" and spec.stations:
            station_policy = FrozenKind(Path(frozen), "station", probe.station_agents)
    return EvgridParallelEnv(scenario, learn=learn, reward_set=config.get("reward_set"),
                             station_policy=station_policy, cohort_policy=cohort_policy,
                             station_action=action,
                             reward_scale=float(config.get("reward_scale", 1.0)))


class EvgridMultiAgentEnv(MultiAgentEnv):
    """RLlib's view of :class:`EvgridParallelEnv` (new API stack: per-agent space dicts)."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.par = make_parallel_env(dict(config or {}))
        names = list(self.par.possible_agents)
        self.possible_agents = list[AgentID](names)
        self.agents = list[AgentID](names)
        self.observation_spaces = {a: self.par.observation_space(a) for a in names}
        self.action_spaces = {a: self.par.action_space(a) for a in names}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[Any, Any]:
        obs, infos = self.par.reset(seed=seed, options=options)
        self.agents = list[AgentID](self.par.agents)
        return obs, infos

    def step(self, action_dict: MultiAgentDict) -> tuple[Any, Any, Any, Any, Any]:
        obs, rew, term, trunc, infos = self.par.step({str(a): v for a, v in action_dict.items()})
        done = self.par.sim.done
        self.agents = list[AgentID](self.par.agents)
        return obs, rew, {**term, "__all__": done}, {**trunc, "__all__": False}, infos


def register() -> None:
    """Make ``"evgrid"`` an RLlib env name (in the driver; env runners import this module)."""
    from ray.tune.registry import register_env

    register_env(ENV_NAME, lambda cfg: EvgridMultiAgentEnv(dict(cfg)))
