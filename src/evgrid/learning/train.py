"""Training the station (SAC) and cohort (DQN) agents with RLlib, resumable, logged, exported.

RLlib trains one algorithm class per Algorithm, so:

- ``sac``: stations learn (multi-agent SAC, ``envs.station_actions``), cohorts route
  nearest-free;
- ``dqn``: cohorts learn (multi-agent DQN: double, dueling, prioritised replay, seed 004 §4),
  stations run LLF;
- ``alternate``: phases of ``phase_iterations`` each, SAC then DQN then SAC ..., each phase
  freezing the other side's latest exported policy (the env reads ``export`` when a phase's
  Algorithm is built).

Two folders: ``work`` holds ``checkpoints/<algo>/`` (the latest Algorithm checkpoint of each
algorithm, replaced atomically), ``tensorboard/<algo>/`` (every scalar of RLlib's results),
``metrics.jsonl`` (one JSON line an iteration) and ``state.json`` (what ``--resume`` continues
from); ``export`` holds bundle.json and one TorchScript file per policy.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from evgrid.agents.bundle import SHARED, BundleSpec
from evgrid.envs.parallel import ROUTES, cohort_dim
from evgrid.scenario.schema import Scenario

ALGOS = ("sac", "dqn", "alternate")
MAPPINGS = ("shared", "per-agent")
#: The actor/critic widths of 000 §4.3 (SAC) and a smaller Q-network for the routing choice.
STATION_HIDDEN = [256, 256, 128]
COHORT_HIDDEN = [128, 128]
STATE = "state.json"


class TrainError(ValueError):
    """A training request that cannot run (one line)."""


@dataclass
class Hyper:
    """What ``evgrid tune`` searches (seed 001's Bayesian upper level, §3.2.1)."""

    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 3e-4
    dqn_lr: float = 5e-4
    gamma: float = 0.99
    tau: float = 0.005
    #: SAC's starting entropy temperature (auto-tuned from there to the target entropy −|A|);
    #: 1.0 let entropy swamp rewards of unit size for thousands of steps (measured)
    initial_alpha: float = 0.05
    batch_size: int = 128
    #: env steps sampled between updates (RLlib's rollout_fragment_length): 24 gives 4 updates
    #: a simulated day at Δt = 15 min; RLlib's multi-agent replay sampling, not the update,
    #: is most of an iteration's time on 2 cores (measured: 0.9 s of 1.4 s at batch 256)
    fragment: int = 24
    station_hidden: list[int] = field(default_factory=lambda: list(STATION_HIDDEN))
    cohort_hidden: list[int] = field(default_factory=lambda: list(COHORT_HIDDEN))
    #: env steps sampled before the first update
    warmup_steps: int = 1000
    #: env steps an iteration samples, at least
    steps_per_iteration: int = 400
    epsilon_steps: int = 20_000


@dataclass
class TrainSpec:
    scenario: Scenario
    algo: str = "sac"
    iterations: int = 10
    env_runners: int = 0
    envs_per_runner: int = 1
    mapping: str = "shared"
    station_action: str = "budget"
    reward_set: str | None = None
    seed: int = 0
    phase_iterations: int = 5
    #: iterations between checkpoints (and at the end of every phase)
    checkpoint_every: int = 5
    hyper: Hyper = field(default_factory=Hyper)

    def check(self) -> None:
        if self.algo not in ALGOS:
            raise TrainError(f"unknown algo {self.algo!r}: choose from {list(ALGOS)}")
        if self.mapping not in MAPPINGS:
            raise TrainError(f"unknown mapping {self.mapping!r}: choose from {list(MAPPINGS)}")
        for name, lo in (("iterations", 1), ("env_runners", 0), ("envs_per_runner", 1),
                         ("phase_iterations", 1), ("checkpoint_every", 1)):
            if getattr(self, name) < lo:
                raise TrainError(f"{name.replace('_', '-')} must be >= {lo}, got "
                                 f"{getattr(self, name)}")


def reward_scale(scenario: Scenario) -> float:
    """1 / the most a step of energy can cost the city (all chargers at full power at the
    day's highest price): keeps rewards near unit size whatever the scenario's size, so SAC's
    entropy temperature and the critics' learning rates mean the same on every scenario."""
    from evgrid.envs.world import build_world

    w = build_world(scenario)
    most = float(w.charger_max_kw.sum()) * w.dt_h * max(float(abs(w.price_per_kwh).max()), 1e-3)
    return 1.0 / max(most, 1e-9)


def _kind(algo: str) -> str:
    return "station" if algo == "sac" else "cohort"


def module_ids(spec: TrainSpec, agents: list[str], kind: str) -> dict[str, str]:
    """Agent → RLModule id: one module per kind (``shared``) or one per agent (the design's
    "its own policy")."""
    return {a: (kind if spec.mapping == "shared" else a) for a in agents}


def build_config(spec: TrainSpec, algo: str, export: Path) -> Any:
    """The RLlib AlgorithmConfig of one phase (``algo``: "sac" or "dqn")."""
    from ray.rllib.algorithms.dqn import DQNConfig
    from ray.rllib.algorithms.sac import SACConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    from evgrid.envs.parallel import EvgridParallelEnv
    from evgrid.learning.rllib_env import ENV_NAME, register

    register()
    learn = "stations" if algo == "sac" else "cohorts"
    env_config = {"scenario": spec.scenario.model_dump(mode="json"), "learn": learn,
                  "reward_set": spec.reward_set, "station_action": spec.station_action,
                  "reward_scale": reward_scale(spec.scenario),
                  "frozen": str(export) if spec.algo == "alternate" else None}
    probe = EvgridParallelEnv(spec.scenario, learn=learn, reward_set=spec.reward_set,
                              station_action=spec.station_action)
    agents = list(probe.possible_agents)
    mapping = module_ids(spec, agents, _kind(algo))
    h = spec.hyper
    steps = spec.scenario.steps
    base = SACConfig() if algo == "sac" else DQNConfig()
    cfg = (
        base.environment(ENV_NAME, env_config=env_config)
        .framework("torch")
        .env_runners(num_env_runners=spec.env_runners,
                     num_envs_per_env_runner=spec.envs_per_runner,
                     rollout_fragment_length=min(steps, h.fragment))
        .multi_agent(policies=set(mapping.values()),
                     policy_mapping_fn=lambda aid, *a, **k: mapping[aid])
        .rl_module(model_config=DefaultModelConfig(
            fcnet_hiddens=h.station_hidden if algo == "sac" else h.cohort_hidden,
            fcnet_activation="relu"))
        .reporting(min_sample_timesteps_per_iteration=h.steps_per_iteration,
                   metrics_num_episodes_for_smoothing=5)
        .debugging(seed=spec.seed)
    )
    if algo == "sac":
        return cfg.training(
            twin_q=True, initial_alpha=h.initial_alpha, target_entropy="auto", gamma=h.gamma, tau=h.tau,
            actor_lr=h.actor_lr, critic_lr=h.critic_lr, alpha_lr=h.alpha_lr,
            train_batch_size_per_learner=h.batch_size,
            num_steps_sampled_before_learning_starts=h.warmup_steps,
            replay_buffer_config={"type": "MultiAgentEpisodeReplayBuffer", "capacity": 200_000},
        )
    return cfg.training(
        double_q=True, dueling=True, n_step=1, gamma=h.gamma, lr=h.dqn_lr,
        train_batch_size_per_learner=h.batch_size, tau=1.0,
        target_network_update_freq=max(100, 4 * steps),
        num_steps_sampled_before_learning_starts=h.warmup_steps,
        epsilon=[(0, 1.0), (h.epsilon_steps, 0.05)],
        replay_buffer_config={"type": "MultiAgentPrioritizedEpisodeReplayBuffer",
                              "capacity": 200_000, "alpha": 0.6, "beta": 0.4},
    )


@dataclass
class TrainState:
    """Where training stands (``state.json``): iterations done per algorithm and in total."""

    done: int = 0
    per_algo: dict[str, int] = field(default_factory=dict)
    spec: dict[str, Any] = field(default_factory=dict)

    def save(self, out: Path) -> None:
        tmp = out / (STATE + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        os.replace(tmp, out / STATE)

    @classmethod
    def load(cls, out: Path) -> TrainState:
        path = out / STATE
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError) as e:
            raise TrainError(f"{path}: nothing to resume ({e})") from None


def phase_of(spec: TrainSpec, i: int) -> str:
    """The algorithm that trains iteration ``i`` (0-based)."""
    if spec.algo != "alternate":
        return spec.algo
    return "sac" if (i // spec.phase_iterations) % 2 == 0 else "dqn"


def flat_scalars(result: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Every finite number in an RLlib result dict, as "a/b/c" → value (TensorBoard tags)."""
    out: dict[str, float] = {}
    for k, v in result.items():
        tag = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flat_scalars(v, tag + "/"))
        elif isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            out[tag] = float(v)
    return out


def summary(result: dict[str, Any]) -> dict[str, float]:
    """The figures a progress line and metrics.jsonl carry."""
    er = result.get("env_runners", {})
    ret = er.get("episode_return_mean")
    agents = er.get("num_agent_steps_sampled_lifetime", 0)
    return {
        "episode_return_mean": float(ret) if ret is not None else float("nan"),
        "env_steps": float(result.get("num_env_steps_sampled_lifetime",
                                      er.get("num_env_steps_sampled_lifetime", 0))),
        "agent_steps": float(sum(agents.values()) if isinstance(agents, dict) else agents),
    }


def export_bundle(spec: TrainSpec, folder: Path, algo: str, algorithm: Any) -> None:
    """Write the current modules of ``algo`` into ``folder`` and update bundle.json (the
    other kind's entries are kept)."""
    from evgrid.envs.parallel import EvgridParallelEnv
    from evgrid.learning.export import export_module

    kind = _kind(algo)
    probe = EvgridParallelEnv(spec.scenario, learn="all", station_action=spec.station_action)
    agents = probe.station_agents if kind == "station" else probe.cohort_agents
    mapping = module_ids(spec, agents, kind)
    try:
        bundle = BundleSpec.load(folder)
    except ValueError:
        bundle = BundleSpec(scenario=spec.scenario.name, width=probe.layout.width,
                            station_action=probe.actions.name,
                            station_dim=probe.actions.obs_dim, cohort_dim=cohort_dim(ROUTES),
                            routes=ROUTES, reward_set=probe.reward_set)
    files: dict[str, str] = {}
    for mid in sorted(set(mapping.values())):
        export_module(algorithm.get_module(mid), kind, folder / f"{mid}.pt")
        files[mid] = f"{mid}.pt"
    table = ({SHARED: files[kind]} if spec.mapping == "shared"
             else {a: files[m] for a, m in mapping.items()})
    if kind == "station":
        bundle.stations = table
    else:
        bundle.cohorts = table
    bundle.save(folder)


def save_checkpoint(algorithm: Any, target: Path) -> None:
    """Replace ``target`` with a new checkpoint atomically (a kill mid-save keeps the old)."""
    tmp = target.with_name(target.name + ".saving")
    shutil.rmtree(tmp, ignore_errors=True)
    algorithm.save_to_path(str(tmp))
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)


#: Called after every iteration: (iteration done, total, algo, summary).
OnIteration = Callable[[int, int, str, dict[str, float]], None]


def train(spec: TrainSpec, work: Path, export: Path, *, resume: bool = False,
          on_iteration: OnIteration | None = None,
          time_budget_s: float | None = None) -> TrainState:
    """Train ``spec.iterations`` iterations in all (a resumed run counts the checkpointed
    ones), checkpoint and export every ``checkpoint_every`` iterations and after each phase;
    with ``time_budget_s``, stop (checkpointed) at the first iteration that ends past it."""
    from ray.rllib.algorithms.algorithm import Algorithm
    from tensorboardX import SummaryWriter  # type: ignore[import-untyped]

    spec.check()
    out = work
    out.mkdir(parents=True, exist_ok=True)
    state = TrainState.load(out) if resume else TrainState()
    state.spec = {"scenario": spec.scenario.name, "algo": spec.algo, "mapping": spec.mapping,
                  "iterations": spec.iterations, "reward_set": spec.reward_set,
                  "phase_iterations": spec.phase_iterations}
    i = state.done
    start = time.perf_counter()

    def out_of_time() -> bool:
        return time_budget_s is not None and time.perf_counter() - start > time_budget_s

    while i < spec.iterations and not out_of_time():
        algo = phase_of(spec, i)
        ckpt = out / "checkpoints" / algo
        if ckpt.exists():
            algorithm = Algorithm.from_checkpoint(str(ckpt))
        else:
            algorithm = build_config(spec, algo, export).build_algo()
        writer = SummaryWriter(str(out / "tensorboard" / algo))
        try:
            while i < spec.iterations and phase_of(spec, i) == algo and not out_of_time():
                t0 = time.perf_counter()
                result = algorithm.train()
                s = summary(result)
                s["iteration_s"] = time.perf_counter() - t0
                step = state.per_algo.get(algo, 0) + 1
                for tag, v in flat_scalars(result).items():
                    writer.add_scalar(tag, v, step)
                with (out / "metrics.jsonl").open("a") as f:
                    f.write(json.dumps({"iteration": i + 1, "algo": algo, **s}) + "\n")
                state.per_algo[algo] = step
                i += 1
                phase_ends = (i == spec.iterations or phase_of(spec, i) != algo
                              or out_of_time())
                if phase_ends or i % spec.checkpoint_every == 0:
                    save_checkpoint(algorithm, ckpt)
                    export_bundle(spec, export, algo, algorithm)
                    state.done = i
                    state.save(out)
                if on_iteration is not None:
                    on_iteration(i, spec.iterations, algo, s)
        finally:
            writer.close()
            algorithm.stop()
    return state
