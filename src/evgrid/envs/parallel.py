"""evgrid as a multi-agent environment: a PettingZoo ``ParallelEnv`` of station and cohort agents.

Agents (the design's "every station and every cohort is an agent"):

- ``station_<facility>`` sets the power of its chargers. Action: a fraction in [0, 1] per
  charger of :attr:`Observation.rate_cap_kw` (the most useful power the charger, the EV and the
  battery allow; 1 everywhere is uncontrolled charging). Stations differ in charger count, so
  actions and observations are **padded** to the largest station's count (``width``): padded
  entries read 0 and their actions are ignored. The simulator's safety projection then keeps
  every zone and city limit, whatever the action (NaN included: read as 0).
- ``cohort_<name>`` routes its drivers arriving at the next step (seed 004's matcher). Action
  ``j`` in 0..k−1: each driver prefers its ``j``-th nearest eligible slot, then the others by
  distance, seated by the simulator's deferred acceptance. ``j = 0`` is exactly nearest-free
  routing.

Observations (:func:`station_features`, :func:`cohort_features`) are fixed-size float32
vectors scaled to about [−1, 2]; swap them through ``observe`` functions of the same
signature. Rewards come from a set of ``evgrid.envs.rewards`` with the scenario's weights.

Episodes are one simulated horizon of a day drawn from the ``reset`` seed. Without a seed,
``reset`` draws training days from seeds >= :data:`TRAIN_SEED_BASE`, so held-out evaluation
seeds below it are never trained on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from pettingzoo import ParallelEnv

from evgrid.envs.interface import Controller, Observation
from evgrid.envs.rewards import REWARD_SETS, StepTerms
from evgrid.envs.simulator import (
    QUEUED,
    Arrivals,
    Simulator,
    StepOutcome,
    assign_by_preference,
)
from evgrid.envs.world import World
from evgrid.scenario.schema import Scenario

#: Seeds of training days start here; evaluation uses seeds below it (held out).
TRAIN_SEED_BASE = 1_000_000
#: Routing choices per cohort: the k nearest eligible slots.
ROUTES = 3
CHARGER_FEATURES = 5
STATION_GLOBALS = 9


@dataclass(frozen=True)
class Layout:
    """Which chargers each station owns, padded to a common width."""

    ids: list[str]
    index: np.ndarray  # [n_stations, width] charger index, -1 = padding
    zone: np.ndarray  # [n_stations] the grid zone of the station's first charger

    @classmethod
    def of(cls, world: World) -> Layout:
        per = [np.flatnonzero(world.charger_facility == f) for f in range(len(world.facility_ids))]
        width = max(1, max(c.size for c in per))
        index = np.full((len(per), width), -1, dtype=np.int64)
        for i, c in enumerate(per):
            index[i, :c.size] = c
        zone = np.array([world.charger_grid[c[0]] if c.size else 0 for c in per], dtype=np.int64)
        return cls(ids=list(world.facility_ids), index=index, zone=zone)

    @property
    def width(self) -> int:
        return int(self.index.shape[1])

    def gather(self, values: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """[n_stations, width] of a per-charger array, ``fill`` in the padding."""
        return np.where(self.index >= 0, values[np.maximum(self.index, 0)], fill)

    def scatter(self, per_station: np.ndarray, n_chargers: int) -> np.ndarray:
        """[C] from [n_stations, width] (padding dropped)."""
        out = np.zeros(n_chargers)
        ok = self.index >= 0
        out[self.index[ok]] = per_station[ok]
        return out


def station_dim(width: int) -> int:
    return CHARGER_FEATURES * width + STATION_GLOBALS


def station_features(obs: Observation, world: World, layout: Layout) -> np.ndarray:
    """[n_stations, station_dim] per padded charger: connected, useful-power fraction of the
    rating, hours of full power still owed (/8), hours left (/24), slack hours (/8); per station:
    time of day (sin, cos), price now and the next 4 h's mean minus now (/ the day's largest
    |price|), demand rate (/ the day's largest), zone peak so far / zone limit, the station's
    rating / its zone's limit, the city limit / the city's rating, share of the day left."""
    rated = np.maximum(world.charger_max_kw, 1e-9)
    full_kw = obs.charger_eta * rated
    need_h = obs.ev_remaining_kwh / full_kw
    left_h = obs.steps_left * obs.dt_h
    per = np.stack([
        obs.connected.astype(float),
        obs.rate_cap_kw / rated,
        np.clip(need_h / 8.0, 0, 2),
        np.clip(left_h / 24.0, 0, 1),
        np.clip((left_h - need_h) / 8.0, -1, 1),
    ], axis=-1)  # [C, 5]
    chargers = np.stack([layout.gather(per[:, k]) for k in range(CHARGER_FEATURES)], axis=-1)
    n = layout.index.shape[0]
    hour = (obs.t * obs.dt_h) % 24.0
    pscale = max(float(np.abs(world.price_per_kwh).max(initial=0.0)), 1e-9)
    dscale = max(float(world.demand_rate_per_kw.max(initial=0.0)), 1e-9)
    ahead = max(1, round(4.0 / obs.dt_h))
    price = obs.price_per_kwh
    zone_lim = np.maximum(obs.zone_limit_kw[0], 1e-9)
    peak = obs.zone_peak_kw if obs.zone_peak_kw.size else np.zeros(world.n_grid)
    station_rated = layout.gather(world.charger_max_kw).sum(axis=1)
    g = np.array([
        np.sin(2 * np.pi * hour / 24), np.cos(2 * np.pi * hour / 24),
        price[0] / pscale, (price[:ahead].mean() - price[0]) / pscale,
        (obs.demand_rate_per_kw[0] if obs.demand_rate_per_kw.size else 0.0) / dscale,
        0.0, 0.0,
        min(2.0, float(obs.city_limit_kw[0]) / max(float(world.charger_max_kw.sum()), 1e-9)),
        1.0 - obs.t / world.steps,
    ])
    glob = np.repeat(g[None, :], n, axis=0)
    glob[:, 5] = np.clip(peak[layout.zone] / zone_lim[layout.zone], 0, 2)
    glob[:, 6] = np.clip(station_rated / zone_lim[layout.zone], 0, 2)
    return np.concatenate([chargers.reshape(n, -1), glob], axis=1).astype(np.float32)


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
        km = np.where(np.isfinite(cost[np.arange(len(arrivals)), slots]),
                      cost[np.arange(len(arrivals)), slots], 0.0)
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
    ) -> None:
        if learn not in ("stations", "cohorts", "all"):
            raise ValueError(f"learn must be stations, cohorts or all, not {learn!r}")
        self.scenario = scenario
        self.reward_set = reward_set or scenario.rewards.set
        if self.reward_set not in REWARD_SETS:
            raise ValueError(f"unknown reward set {self.reward_set!r}: one of "
                             f"{', '.join(REWARD_SETS)}")
        self.routes = routes
        self.router = ChoiceRouter(len(scenario.cohorts))
        self.sim = Simulator(scenario, router=self.router)
        self.world = self.sim.world
        self.layout = Layout.of(self.world)
        self.cohort_names = [c.name for c in scenario.cohorts]
        self.learn = learn
        stations = [f"station_{i}" for i in self.layout.ids]
        cohorts = [f"cohort_{n}" for n in self.cohort_names]
        self.station_agents = stations if learn in ("stations", "all") else []
        self.cohort_agents = cohorts if learn in ("cohorts", "all") else []
        self.possible_agents = [*self.station_agents, *self.cohort_agents]
        self.agents: list[str] = []
        if station_policy is None:
            from evgrid.agents.policies import make_policy
            station_policy = make_policy("llf")
        self.station_policy = station_policy
        self.cohort_policy = cohort_policy
        box = gym.spaces.Box
        sdim, cdim = station_dim(self.layout.width), cohort_dim(routes)
        self._obs_spaces: dict[str, gym.Space[Any]] = {}
        self._act_spaces: dict[str, gym.Space[Any]] = {}
        for a in self.station_agents:
            self._obs_spaces[a] = box(-2.0, 2.0, (sdim,), np.float32)
            self._act_spaces[a] = box(0.0, 1.0, (self.layout.width,), np.float32)
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
        rewards = {a: float(st_r[i]) for i, a in enumerate(self.station_agents)}
        rewards.update({a: float(co_r[i]) for i, a in enumerate(self.cohort_agents)})
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
        return (station_features(self._obs, self.world, self.layout),
                cohort_features(self.sim.upcoming(), len(self.cohort_names), hour, self.routes))

    def _agent_obs(self) -> dict[str, np.ndarray]:
        out = {a: self._station_x[i] for i, a in enumerate(self.station_agents)}
        out.update({a: self._cohort_x[i] for i, a in enumerate(self.cohort_agents)})
        return {a: out[a] for a in self.agents}

    def _station_power(self, actions: dict[str, Any]) -> np.ndarray:
        if not self.station_agents:
            pol = self.station_policy
            if hasattr(pol, "schedule"):
                return np.asarray(pol.schedule(self._obs), dtype=float)
            frac = np.asarray(pol(self._station_x), dtype=float)
        else:
            frac = np.stack([np.asarray(actions.get(a, np.zeros(self.layout.width)), dtype=float)
                             .reshape(self.layout.width) for a in self.station_agents])
        return fraction_to_power(frac, self._obs, self.layout)

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
            unmet_kwh=st_unmet,
            throughput_kwh=np.bincount(fac, weights=w.charger_eta * p, minlength=n_st) * w.dt_h,
            floor_short_kwh=st_short,
            utilisation=nconn / np.maximum(chargers, 1),
            power_var_kw2=var,
            cohort_unmet_kwh=co_unmet,
            cohort_floor_short_kwh=co_short,
            cohort_wait_min=waiting_min,
            cohort_travel_km=self.router.travel_km.copy(),
        )


def fraction_to_power(frac: np.ndarray, obs: Observation, layout: Layout) -> np.ndarray:
    """[C] kW from per-station fractions [n_stations, width] of :attr:`rate_cap_kw`.

    Anything a network can output is safe here: NaN reads 0, values are clipped to [0, 1], so
    no charger is asked for more than it, its EV and its battery allow (the simulator's
    projection, or the station's envelope, then keeps the zone and city limits)."""
    f = np.clip(np.nan_to_num(np.asarray(frac, dtype=float), nan=0.0, posinf=1.0, neginf=0.0),
                0.0, 1.0)
    return layout.scatter(f, obs.connected.size) * obs.rate_cap_kw


__all__ = [
    "ROUTES",
    "TRAIN_SEED_BASE",
    "ChoiceRouter",
    "EvgridParallelEnv",
    "Layout",
    "cohort_features",
    "fraction_to_power",
    "station_features",
]
