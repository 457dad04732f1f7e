"""evgrid as a multi-agent environment: a PettingZoo ``ParallelEnv`` of station and cohort agents.

Agents (the design's "every station and every cohort is an agent"):

- ``station_<facility>`` sets the power of its chargers, by one of the parameterisations of
  ``evgrid.envs.station_actions`` (``budget``, default, or per-charger ``fractions``). The
  simulator's safety projection keeps every limit, whatever the action (NaN included).
- ``cohort_<name>`` routes its drivers arriving at the next step (seed 004's matcher). Action
  ``j`` in 0..k−1: each driver prefers its ``j``-th nearest eligible slot, then the others by
  distance, seated by the simulator's deferred acceptance. ``j = 0`` is exactly nearest-free
  routing.

Observations (``station_actions``' ``features``, :func:`cohort_features`) are fixed-size
float32 vectors scaled to about [−1, 2]. Rewards come from a set of ``evgrid.envs.rewards``
with the scenario's weights.

Episodes are one simulated horizon of a day drawn from the ``reset`` seed. Without a seed,
``reset`` draws training days from seeds >= :data:`TRAIN_SEED_BASE`, so held-out evaluation
seeds below it are never trained on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from pettingzoo import ParallelEnv

from evgrid.envs.fill import greedy_fill, laxity_h
from evgrid.envs.interface import Controller, Observation
from evgrid.envs.rewards import REWARD_SETS, StepTerms
from evgrid.envs.simulator import (
    QUEUED,
    Arrivals,
    Simulator,
    StepOutcome,
    assign_by_preference,
    nearest_free_router,
)
from evgrid.envs.station_actions import Layout, station_actions
from evgrid.scenario.schema import Scenario

#: Seeds of training days start here; evaluation uses seeds below it (held out).
TRAIN_SEED_BASE = 1_000_000
#: Routing choices per cohort: the k nearest eligible slots.
ROUTES = 3


def cohort_dim(routes: int = ROUTES) -> int:
    return 3 + 3 * routes


def ranked_slots(arrivals: Arrivals) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eligible slots of each arriving EV nearest first: (order [n, S], cost [n, S] with inf
    where not eligible, number eligible [n])."""
    cand = arrivals.candidates()
    cost = np.where(cand, arrivals.travel_km(), np.inf)
    return np.argsort(cost, axis=1, kind="stable"), cost, cand.sum(axis=1)


def cohort_features(arrivals: Arrivals, n_cohorts: int, hour: float,
                    routes: int = ROUTES) -> np.ndarray:
    """[n_cohorts, cohort_dim]: time of day (sin, cos), drivers arriving next step (/10), and
    for each of the k nearest eligible slots, averaged over the cohort's arriving drivers: km
    away (/10), free chargers there (fraction of its chargers), free chargers (/10)."""
    out = np.zeros((n_cohorts, cohort_dim(routes)), dtype=np.float32)
    out[:, 0] = np.sin(2 * np.pi * hour / 24)
    out[:, 1] = np.cos(2 * np.pi * hour / 24)
    mine = arrivals.cohort >= 0
    if len(arrivals) == 0 or not mine.any():
        return out
    order, cost, _ = ranked_slots(arrivals)
    w = arrivals.world
    k = min(routes, order.shape[1])
    pick = order[:, :k]
    dist = np.take_along_axis(cost, pick, axis=1)
    dist = np.where(np.isfinite(dist), dist, 50.0)
    free = arrivals.free[pick].astype(float)
    frac = free / np.maximum(w.slot_chargers[pick], 1)
    co = np.where(mine, arrivals.cohort, 0)
    count = np.bincount(co[mine], minlength=n_cohorts).astype(float)
    out[:, 2] = count / 10.0
    denom = np.maximum(count, 1.0)[:, None]
    for j, feats in enumerate((dist / 10.0, frac, free / 10.0)):
        sums = np.zeros((n_cohorts, k))
        np.add.at(sums, co[mine], feats[mine])
        out[:, 3 + j * routes:3 + j * routes + k] = sums / denom
    return out


class ChoiceRouter:
    """Routes each arriving driver by its cohort's current choice (``choice[cohort]`` = which
    of its k nearest eligible slots it prefers); replayed sessions and choice 0 are exactly
    nearest-free. Records each cohort's km driven for its reward."""

    def __init__(self, n_cohorts: int) -> None:
        self.choice = np.zeros(n_cohorts, dtype=np.int64)
        self.travel_km = np.zeros(n_cohorts)

    def __call__(self, arrivals: Arrivals) -> np.ndarray:
        order, cost, eligible = ranked_slots(arrivals)
        co = arrivals.cohort
        j = np.where(co >= 0, self.choice[np.maximum(co, 0)], 0)
        j = np.minimum(j, np.maximum(eligible - 1, 0))
        preferred = order[np.arange(len(arrivals)), j]
        pref_cost = cost.copy()
        pref_cost[np.arange(len(arrivals)), preferred] = -1.0
        slots = assign_by_preference(np.isfinite(cost), pref_cost, arrivals.free)
        mine = co >= 0
        chosen = cost[np.arange(len(arrivals)), slots]
        km = np.where(np.isfinite(chosen), chosen, 0.0)
        np.add.at(self.travel_km, co[mine], km[mine])
        return slots


#: A frozen policy for the side that is not learning: observations [n, dim] -> actions [n, ...].
FrozenPolicy = Callable[[np.ndarray], np.ndarray]


class EvgridParallelEnv(ParallelEnv):
    """Stations and cohorts of one scenario as PettingZoo parallel agents.

    ``learn`` picks which kinds are agents: ``"stations"``, ``"cohorts"`` or ``"all"``. The
    other kind acts by ``station_policy`` (a ``Controller``, default LLF, or a frozen learned
    policy on station observations) or ``cohort_policy`` (a frozen policy on cohort
    observations; default nearest-free), so that alternating training can freeze one side.
    ``reward_scale`` multiplies every reward (training keeps rewards near unit size; the
    default 1 keeps Σ rewards = −objective).
    """

    metadata: ClassVar[dict[str, Any]] = {"name": "evgrid_v0", "render_modes": [],
                                          "is_parallelizable": True}

    def __init__(
        self,
        scenario: Scenario,
        *,
        learn: str = "all",
        reward_set: str | None = None,
        station_policy: Controller | FrozenPolicy | None = None,
        cohort_policy: FrozenPolicy | None = None,
        routes: int = ROUTES,
        station_action: str = "budget",
        reward_scale: float = 1.0,
    ) -> None:
        if learn not in ("stations", "cohorts", "all"):
            raise ValueError(f"learn must be stations, cohorts or all, not {learn!r}")
        self.scenario = scenario
        self.reward_set = reward_set or scenario.rewards.set
        if self.reward_set not in REWARD_SETS:
            raise ValueError(f"unknown reward set {self.reward_set!r}: one of "
                             f"{', '.join(REWARD_SETS)}")
        self.routes = routes
        self.reward_scale = reward_scale
        self.router = ChoiceRouter(len(scenario.cohorts))
        # Nobody chooses routes: nearest-free, without computing what cohorts would see.
        self._routing = learn != "stations" or cohort_policy is not None
        self.sim = Simulator(scenario, router=self.router if self._routing
                             else nearest_free_router)
        self.world = self.sim.world
        self.layout = Layout.of(self.world)
        self.actions = station_actions(station_action, self.layout)
        self.cohort_names = [c.name for c in scenario.cohorts]
        self.learn = learn
        stations = [f"station_{i}" for i in self.layout.ids]
        cohorts = [f"cohort_{n}" for n in self.cohort_names]
        self.station_agents = stations if learn in ("stations", "all") else []
        self.cohort_agents = cohorts if learn in ("cohorts", "all") else []
        self.possible_agents = [*self.station_agents, *self.cohort_agents]
        self.agents: list[str] = []
        self.station_policy = station_policy
        self.cohort_policy = cohort_policy
        box = gym.spaces.Box
        sdim, cdim = self.actions.obs_dim, cohort_dim(routes)
        self._obs_spaces: dict[str, gym.Space[Any]] = {}
        self._act_spaces: dict[str, gym.Space[Any]] = {}
        for a in self.station_agents:
            self._obs_spaces[a] = box(-2.0, 2.0, (sdim,), np.float32)
            self._act_spaces[a] = box(0.0, 1.0, (self.actions.act_dim,), np.float32)
        for a in self.cohort_agents:
            self._obs_spaces[a] = box(-2.0, 6.0, (cdim,), np.float32)
            self._act_spaces[a] = gym.spaces.Discrete(routes)
        self._train_rng = np.random.default_rng(scenario.seed)

    # -- PettingZoo API ---------------------------------------------------------------------
    def observation_space(self, agent: str) -> gym.Space[Any]:
        return self._obs_spaces[agent]

    def action_space(self, agent: str) -> gym.Space[Any]:
        return self._act_spaces[agent]

    def reset(self, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[dict[str, np.ndarray],
                                                              dict[str, dict[str, Any]]]:
        if seed is None:
            seed = int(self._train_rng.integers(TRAIN_SEED_BASE, 2**62))
        else:
            self._train_rng = np.random.default_rng(seed)
        self.router.choice[:] = 0
        self.router.travel_km[:] = 0.0
        self._obs = self.sim.reset(seed=int(seed))
        self.agents = list(self.possible_agents)
        self._station_x, self._cohort_x = self._features()
        return self._agent_obs(), {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]) -> tuple[
        dict[str, np.ndarray], dict[str, float], dict[str, bool], dict[str, bool],
        dict[str, dict[str, Any]]
    ]:
        sim = self.sim
        power = self._station_power(actions)
        self.router.choice[:] = self._cohort_choice(actions)
        self.router.travel_km[:] = 0.0
        waiting = self._waiting_min()
        before = self._obs
        self._obs, out = sim.step(power)
        terms = self._terms(out, before, waiting)
        st_r, co_r = REWARD_SETS[self.reward_set](
            terms, self.scenario.rewards, self.scenario.prices.carbon_price_per_kg,
            self.scenario.unmet_penalty_per_kwh)
        self._station_x, self._cohort_x = self._features()
        obs = self._agent_obs()
        k = self.reward_scale
        rewards = {a: k * float(st_r[i]) for i, a in enumerate(self.station_agents)}
        rewards.update({a: k * float(co_r[i]) for i, a in enumerate(self.cohort_agents)})
        done = sim.done
        terminations = {a: done for a in self.agents}
        truncations = {a: False for a in self.agents}
        infos: dict[str, dict[str, Any]] = {a: {} for a in self.agents}
        if self.agents:
            infos[self.agents[0]] = {"objective": out.objective, "t": out.t}
        if done:
            self.agents = []
        return obs, rewards, terminations, truncations, infos

    def close(self) -> None:
        return None

    # -- internals ---------------------------------------------------------------------------
    def _features(self) -> tuple[np.ndarray, np.ndarray]:
        hour = ((self._obs.t + 1) * self.world.dt_h) % 24.0
        n = len(self.cohort_names)
        cohorts = (cohort_features(self.sim.upcoming(), n, hour, self.routes) if self._routing
                   else np.zeros((n, cohort_dim(self.routes)), dtype=np.float32))
        return self.actions.features(self._obs, self.world), cohorts

    def _agent_obs(self) -> dict[str, np.ndarray]:
        out = {a: self._station_x[i] for i, a in enumerate(self.station_agents)}
        out.update({a: self._cohort_x[i] for i, a in enumerate(self.cohort_agents)})
        return {a: out[a] for a in self.agents}

    def _station_power(self, actions: dict[str, Any]) -> np.ndarray:
        if not self.station_agents:
            pol = self.station_policy
            if pol is None:  # LLF
                return greedy_fill(self._obs, self._obs.rate_cap_kw, laxity_h(self._obs))
            if hasattr(pol, "schedule"):
                return np.asarray(pol.schedule(self._obs), dtype=float)
            act = np.asarray(pol(self._station_x), dtype=float)
        else:
            dim = self.actions.act_dim
            act = np.stack([np.asarray(actions.get(a, np.zeros(dim)), dtype=float).reshape(dim)
                            for a in self.station_agents])
        return self.actions.power(act, self._obs)

    def _cohort_choice(self, actions: dict[str, Any]) -> np.ndarray:
        n = len(self.cohort_names)
        if not self.cohort_agents:
            if self.cohort_policy is None:
                return np.zeros(n, dtype=np.int64)
            return np.asarray(self.cohort_policy(self._cohort_x), dtype=np.int64).reshape(n)
        return np.array([int(actions.get(a, 0)) for a in self.cohort_agents], dtype=np.int64)

    def _waiting_min(self) -> np.ndarray:
        """Minutes each cohort's drivers wait in a queue during the coming step."""
        sim = self.sim
        q = sim.status == QUEUED
        co = sim.sessions.cohort[q]
        return np.bincount(co[co >= 0], minlength=len(self.cohort_names)) * self.world.dt_h * 60

    def _lost_kwh(self, obs: Observation) -> np.ndarray:
        """[n_stations] energy its plugged-in EVs are owed beyond what they can still take
        before leaving (at full rate): unmet already, whatever the station does from now.

        A station pays the penalty on this as it grows, and on its EVs' unmet energy at
        departure less what it already paid: the same total (Σ telescopes to the unmet energy
        at departure, so Σ rewards = −objective still holds), but paid when the shortfall
        becomes certain, not hours later when the EV leaves. After the horizon's last step
        every EV has left and been billed: nothing is lost any more."""
        n = self.layout.n
        rate = np.minimum(obs.charger_max_kw, obs.ev_max_kw) * obs.charger_eta
        can = rate * np.maximum(obs.steps_left, 0) * obs.dt_h
        lost = np.where(obs.connected, np.maximum(obs.ev_remaining_kwh - can, 0.0), 0.0)
        return np.bincount(obs.charger_facility, weights=lost, minlength=n)

    def _terms(self, out: StepOutcome, before: Observation,
               waiting_min: np.ndarray) -> StepTerms:
        sim, w, lay = self.sim, self.world, self.layout
        t, p = out.t, out.executed_kw
        n_st, n_co = lay.index.shape[0], len(self.cohort_names)
        fac = w.charger_facility
        kwh = np.bincount(fac, weights=p, minlength=n_st) * w.dt_h
        # Each zone's demand-charge rise, split by the stations' shares of the zone's load.
        pair = np.bincount(fac * w.n_grid + w.charger_grid, weights=p,
                           minlength=n_st * w.n_grid).reshape(n_st, w.n_grid)
        zone = pair.sum(axis=0)
        share = np.divide(pair, zone, out=np.zeros_like(pair), where=zone > 0)
        rise = (np.maximum(zone - before.zone_peak_kw, 0.0) if out.demand_charge > 0
                else np.zeros(w.n_grid))
        rise_cost = rise * (out.demand_charge / rise.sum()) if rise.sum() > 0 else rise
        demand = share @ rise_cost
        left = out.departed
        s = sim.sessions
        owed = np.maximum(s.requested_kwh[left] - sim.delivered_kwh[left], 0.0)
        short = np.maximum(s.floor_kwh[left] - sim.delivered_kwh[left], 0.0)
        seated = sim.connect_step[left] >= 0
        slot = sim.ev_slot[left]
        station_of = np.where(slot >= 0, w.slot_facility[np.maximum(slot, 0)], 0)
        co = s.cohort[left]
        to_cohort = ~seated & (co >= 0)
        st_unmet = np.bincount(station_of[~to_cohort], weights=owed[~to_cohort], minlength=n_st)
        st_short = np.bincount(station_of[~to_cohort], weights=short[~to_cohort], minlength=n_st)
        co_unmet = np.bincount(co[to_cohort], weights=owed[to_cohort], minlength=n_co)
        co_short = np.bincount(co[to_cohort], weights=short[to_cohort], minlength=n_co)
        connected = lay.gather(before.connected.astype(float))
        pw = lay.gather(p)
        nconn = connected.sum(axis=1)
        mean = np.divide((pw * connected).sum(axis=1), nconn, out=np.zeros(n_st),
                         where=nconn > 0)
        var = np.divide((((pw - mean[:, None]) * connected) ** 2).sum(axis=1), nconn,
                        out=np.zeros(n_st), where=nconn > 0)
        chargers = (lay.index >= 0).sum(axis=1)
        return StepTerms(
            energy_cost=kwh * float(w.price_per_kwh[t]),
            demand_charge=demand,
            carbon_kg=kwh * float(w.carbon_kg_per_kwh[t]),
            unmet_kwh=st_unmet + (0.0 if sim.done else self._lost_kwh(self._obs))
            - self._lost_kwh(before),
            throughput_kwh=np.bincount(fac, weights=w.charger_eta * p, minlength=n_st) * w.dt_h,
            floor_short_kwh=st_short,
            utilisation=nconn / np.maximum(chargers, 1),
            power_var_kw2=var,
            cohort_unmet_kwh=co_unmet,
            cohort_floor_short_kwh=co_short,
            cohort_wait_min=waiting_min,
            cohort_travel_km=self.router.travel_km.copy(),
        )


__all__ = [
    "ROUTES",
    "TRAIN_SEED_BASE",
    "ChoiceRouter",
    "EvgridParallelEnv",
    "cohort_features",
]
