"""How a learning station acts, and what it sees: two parameterisations of the same decision.

- ``fractions``: one fraction in [0, 1] per charger of its useful power
  (:attr:`Observation.rate_cap_kw`), observations per charger; stations differ in charger
  count, so both are **padded** to the largest station's count (``width``): padded entries read
  0 and their actions are ignored. This is 000 §3.5's power-allocation action as it stands.
- ``budget`` (default): one number in [0, 1] per station, its power cap as a share of its
  rating; the cap is dispatched least-laxity-first (acnportal's LLF order), so the network
  decides *how much, when* and a rule decides *who*. A share of 1 is LLF exactly, so the
  policy starts from a strong rule and learns when to hold back; a constant share is a flat
  cap (what a demand charge rewards), so the simplest policies are the useful ones. Observations
  are station aggregates of a fixed size whatever the station's size, so one policy serves
  any station. Measured against ``fractions`` in the README (it learns in a fraction of the
  samples: the per-charger action has up to 60 dimensions on ``workplace``).

Whatever a network outputs, NaN included, the power is within [0, rate_cap] per charger, and
the LLF dispatch also keeps each zone's and the city's limit (the simulator's projection, or
the station's envelope, is the last word for ``fractions``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evgrid.envs.fill import greedy_fill, grouped_exclusive_cumsum, laxity_h
from evgrid.envs.interface import Observation
from evgrid.envs.world import World

CHARGER_FEATURES = 5
STATION_GLOBALS = 9
BUDGET_FEATURES = 11
#: The horizons of the "energy that cannot wait" features [h].
MUST_H = (1.0, 2.0, 4.0)


@dataclass(frozen=True)
class Layout:
    """Which chargers each station owns, padded to a common width."""

    ids: list[str]
    index: np.ndarray  # [n_stations, width] charger index, -1 = padding
    zone: np.ndarray  # [n_stations] the grid zone of the station's first charger
    rated_kw: np.ndarray  # [n_stations] Σ of its chargers' ratings

    @classmethod
    def of(cls, world: World) -> Layout:
        per = [np.flatnonzero(world.charger_facility == f) for f in range(len(world.facility_ids))]
        width = max(1, max(c.size for c in per))
        index = np.full((len(per), width), -1, dtype=np.int64)
        for i, c in enumerate(per):
            index[i, :c.size] = c
        zone = np.array([world.charger_grid[c[0]] if c.size else 0 for c in per], dtype=np.int64)
        rated = np.array([world.charger_max_kw[c].sum() for c in per])
        return cls(ids=list(world.facility_ids), index=index, zone=zone, rated_kw=rated)

    @property
    def width(self) -> int:
        return int(self.index.shape[1])

    @property
    def n(self) -> int:
        return int(self.index.shape[0])

    def gather(self, values: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """[n_stations, width] of a per-charger array, ``fill`` in the padding."""
        return np.where(self.index >= 0, values[np.maximum(self.index, 0)], fill)

    def scatter(self, per_station: np.ndarray, n_chargers: int) -> np.ndarray:
        """[C] from [n_stations, width] (padding dropped)."""
        out = np.zeros(n_chargers)
        ok = self.index >= 0
        out[self.index[ok]] = per_station[ok]
        return out


def clean(action: np.ndarray) -> np.ndarray:
    """Any network output as fractions in [0, 1]: NaN and −inf read 0, +inf reads 1."""
    a = np.nan_to_num(np.asarray(action, dtype=float), nan=0.0, posinf=1.0, neginf=0.0)
    return np.clip(a, 0.0, 1.0)


def station_globals(obs: Observation, world: World, layout: Layout) -> np.ndarray:
    """[n_stations, 9]: time of day (sin, cos), price now and the next 4 h's mean minus now
    (/ the day's largest |price|), demand rate (/ the day's largest), zone peak so far / zone
    limit, the station's rating / its zone's limit, the city limit / the city's rating, share
    of the day left."""
    hour = (obs.t * obs.dt_h) % 24.0
    pscale = max(float(np.abs(world.price_per_kwh).max(initial=0.0)), 1e-9)
    dscale = max(float(world.demand_rate_per_kw.max(initial=0.0)), 1e-9)
    ahead = max(1, round(4.0 / obs.dt_h))
    price = obs.price_per_kwh
    zone_lim = np.maximum(obs.zone_limit_kw[0], 1e-9)
    peak = obs.zone_peak_kw if obs.zone_peak_kw.size else np.zeros(world.n_grid)
    g = np.array([
        np.sin(2 * np.pi * hour / 24), np.cos(2 * np.pi * hour / 24),
        price[0] / pscale, (price[:ahead].mean() - price[0]) / pscale,
        (obs.demand_rate_per_kw[0] if obs.demand_rate_per_kw.size else 0.0) / dscale,
        0.0, 0.0,
        min(2.0, float(obs.city_limit_kw[0]) / max(float(world.charger_max_kw.sum()), 1e-9)),
        1.0 - obs.t / world.steps,
    ])
    out = np.repeat(g[None, :], layout.n, axis=0)
    out[:, 5] = np.clip(peak[layout.zone] / zone_lim[layout.zone], 0, 2)
    out[:, 6] = np.clip(layout.rated_kw / zone_lim[layout.zone], 0, 2)
    return out


class PerCharger:
    """``fractions``: a fraction of the useful power per (padded) charger."""

    name = "fractions"

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.obs_dim = CHARGER_FEATURES * layout.width + STATION_GLOBALS
        self.act_dim = layout.width

    def features(self, obs: Observation, world: World) -> np.ndarray:
        """Per padded charger: connected, useful power / rating, hours of full power still
        owed (/8), hours left (/24), slack hours (/8); then :func:`station_globals`."""
        lay = self.layout
        rated = np.maximum(world.charger_max_kw, 1e-9)
        need_h = obs.ev_remaining_kwh / (obs.charger_eta * rated)
        left_h = obs.steps_left * obs.dt_h
        per = np.stack([
            obs.connected.astype(float),
            obs.rate_cap_kw / rated,
            np.clip(need_h / 8.0, 0, 2),
            np.clip(left_h / 24.0, 0, 1),
            np.clip((left_h - need_h) / 8.0, -1, 1),
        ], axis=-1)
        chargers = np.stack([lay.gather(per[:, k]) for k in range(CHARGER_FEATURES)], axis=-1)
        return np.concatenate([chargers.reshape(lay.n, -1), station_globals(obs, world, lay)],
                              axis=1).astype(np.float32)

    def power(self, action: np.ndarray, obs: Observation) -> np.ndarray:
        """[C] kW: fraction × useful power (NaN reads 0)."""
        frac = clean(action).reshape(self.layout.n, self.layout.width)
        return self.layout.scatter(frac, obs.connected.size) * obs.rate_cap_kw


class Budget:
    """``budget``: a power cap per station (a share of its rating), least laxity first."""

    name = "budget"

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.obs_dim = BUDGET_FEATURES + STATION_GLOBALS
        self.act_dim = 1

    def features(self, obs: Observation, world: World) -> np.ndarray:
        """Per station: chargers in use, Σ useful power / rating, Σ energy owed / (rating ×
        8 h), least and mean slack (/8 h), share of EVs with under 1 h of slack, the energy
        that cannot wait beyond 1, 2 and 4 h (/ rating × h), the zone's peak so far / the
        station's rating, Σ useful power / the zone's limit; then :func:`station_globals`."""
        lay, fac = self.layout, world.charger_facility
        n = lay.n
        rated = np.maximum(lay.rated_kw, 1e-9)
        conn = obs.connected
        cnt = np.bincount(fac, weights=conn.astype(float), minlength=n)
        chargers = np.maximum((lay.index >= 0).sum(axis=1), 1)
        cap = np.bincount(fac, weights=obs.rate_cap_kw, minlength=n)
        owed = np.bincount(fac, weights=np.where(conn, obs.ev_remaining_kwh, 0.0), minlength=n)
        slack = np.where(conn & (obs.ev_remaining_kwh > 1e-9), laxity_h(obs), np.inf)
        least = np.full(n, np.inf)
        np.minimum.at(least, fac, slack)
        finite = np.isfinite(slack)
        mean = np.divide(np.bincount(fac[finite], weights=slack[finite], minlength=n),
                         np.bincount(fac[finite], minlength=n),
                         out=np.zeros(n), where=np.bincount(fac[finite], minlength=n) > 0)
        urgent = np.bincount(fac, weights=(slack < 1.0).astype(float), minlength=n)
        rate = np.minimum(obs.charger_max_kw, obs.ev_max_kw) * obs.charger_eta
        left_h = obs.steps_left * obs.dt_h
        must = [np.bincount(fac, weights=np.where(
            conn, np.maximum(obs.ev_remaining_kwh - rate * np.maximum(left_h - h, 0.0), 0.0),
            0.0), minlength=n) / (rated * h) for h in MUST_H]
        peak = obs.zone_peak_kw[lay.zone] if obs.zone_peak_kw.size else np.zeros(n)
        x = np.stack([
            cnt / chargers, cap / rated, np.clip(owed / (rated * 8.0), 0, 2),
            np.clip(np.where(np.isfinite(least), least, 8.0) / 8.0, -1, 1),
            np.clip(mean / 8.0, -1, 1), urgent / np.maximum(cnt, 1.0),
            *[np.clip(m, 0, 2) for m in must],
            np.clip(peak / rated, 0, 2),
            np.clip(cap / np.maximum(obs.zone_limit_kw[0][lay.zone], 1e-9), 0, 2),
        ], axis=1)
        return np.concatenate([x, station_globals(obs, world, lay)], axis=1).astype(np.float32)

    def power(self, action: np.ndarray, obs: Observation) -> np.ndarray:
        """[C] kW: each station's cap (share × its rating) to its EVs least laxity first,
        then every zone and city limit kept in the same order.

        No floor for EVs without slack: with one (the cap never below what they need now) the
        policy learned to lean on it, and 25 min of SAC on `workplace` ended at objective
        3,006 against 2,071 without, on the same 8 held-out days (design note 20)."""
        lay = self.layout
        fac = obs.charger_facility
        cap = obs.rate_cap_kw
        key = laxity_h(obs)
        budget = clean(action).reshape(lay.n) * lay.rated_kw
        order = np.lexsort((np.arange(key.size), key, fac))
        w, g = cap[order], fac[order]
        served = np.clip(budget[g] - grouped_exclusive_cumsum(w, g), 0.0, w)
        out = np.empty_like(cap)
        out[order] = served
        return greedy_fill(obs, out, key)


STATION_ACTIONS: dict[str, type[Budget] | type[PerCharger]] = {"budget": Budget,
                                                               "fractions": PerCharger}


def station_actions(name: str, layout: Layout) -> Budget | PerCharger:
    if name not in STATION_ACTIONS:
        raise ValueError(f"unknown station action {name!r}: one of {sorted(STATION_ACTIONS)}")
    return STATION_ACTIONS[name](layout)
