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


@dataclass(frozen=True)
class StationRows:
    """What station policies see, whoever computes it: one row per EV that can use power now
    (on a charger that is online, owed energy), and per-station and city values.

    Built from the city's observation for training and ``evgrid run`` (:meth:`of_obs`, all
    stations at once), or by a station from its own state and the signals its coordinator
    sends (``evgrid.agents.dispatch``), so the features a policy trained on and the features it
    is served are one function's (a test holds both equal).
    """

    station: np.ndarray  # [r] station of each EV row
    want_kw: np.ndarray  # [r] most useful power now: rating, EV limit, energy owed
    owed_kwh: np.ndarray  # [r]
    laxity_h: np.ndarray  # [r] hours to departure − hours to finish at full rate
    rate_kw: np.ndarray  # [r] full rate into the battery (min(charger, EV) × η)
    left_h: np.ndarray  # [r] hours to departure
    chargers: np.ndarray  # [n] charging points of each station
    rated_kw: np.ndarray  # [n] Σ of each station's charger ratings
    zone_peak_kw: np.ndarray  # [n] its zone's executed peak so far in the billing window
    zone_limit_kw: np.ndarray  # [n] its zone's limit now
    hour: float  # time of day [h]
    price: np.ndarray  # [≥1] price from now on (as far as visible) [currency/kWh]
    dt_h: float
    price_scale: float  # the day's largest |price|
    demand_share: float  # demand charge now / the day's largest (0: none)
    city_share: float  # city limit now / the city's Σ charger ratings
    day_left: float  # share of the day still to come

    @property
    def n(self) -> int:
        return int(self.chargers.size)

    @classmethod
    def of_obs(cls, obs: Observation, world: World, layout: Layout) -> StationRows:
        rate = np.minimum(obs.charger_max_kw, obs.ev_max_kw)
        want = np.minimum(rate, obs.ev_remaining_kwh / np.maximum(obs.charger_eta * obs.dt_h,
                                                                  1e-12))
        rows = np.flatnonzero(obs.connected & (obs.rate_cap_kw > 0))
        eff = rate[rows] * obs.charger_eta[rows]
        left = obs.steps_left[rows] * obs.dt_h
        owed = obs.ev_remaining_kwh[rows]
        peak = obs.zone_peak_kw[layout.zone] if obs.zone_peak_kw.size else np.zeros(layout.n)
        dscale = max(float(world.demand_rate_per_kw.max(initial=0.0)), 1e-9)
        return cls(
            station=obs.charger_facility[rows], want_kw=want[rows], owed_kwh=owed,
            laxity_h=left - owed / np.maximum(eff, 1e-12), rate_kw=eff, left_h=left,
            chargers=np.maximum((layout.index >= 0).sum(axis=1), 1), rated_kw=layout.rated_kw,
            zone_peak_kw=peak, zone_limit_kw=obs.zone_limit_kw[0][layout.zone],
            hour=(obs.t * obs.dt_h) % 24.0, price=obs.price_per_kwh, dt_h=obs.dt_h,
            price_scale=float(np.abs(world.price_per_kwh).max(initial=0.0)),
            demand_share=(float(obs.demand_rate_per_kw[0]) / dscale
                          if obs.demand_rate_per_kw.size else 0.0),
            city_share=float(obs.city_limit_kw[0]) / max(float(world.charger_max_kw.sum()), 1e-9),
            day_left=1.0 - obs.t / world.steps,
        )


def station_globals(rows: StationRows) -> np.ndarray:
    """[n_stations, 9]: time of day (sin, cos), price now and the next 4 h's mean minus now
    (/ the day's largest |price|), demand rate (/ the day's largest), zone peak so far / zone
    limit, the station's rating / its zone's limit, the city limit / the city's rating, share
    of the day left."""
    hour, price = rows.hour, rows.price
    pscale = max(rows.price_scale, 1e-9)
    ahead = max(1, round(4.0 / rows.dt_h))
    zone_lim = np.maximum(rows.zone_limit_kw, 1e-9)
    g = np.array([
        np.sin(2 * np.pi * hour / 24), np.cos(2 * np.pi * hour / 24),
        price[0] / pscale, (price[:ahead].mean() - price[0]) / pscale,
        rows.demand_share, 0.0, 0.0, min(2.0, rows.city_share), rows.day_left,
    ])
    out = np.repeat(g[None, :], rows.n, axis=0)
    out[:, 5] = np.clip(rows.zone_peak_kw / zone_lim, 0, 2)
    out[:, 6] = np.clip(rows.rated_kw / zone_lim, 0, 2)
    return out


def budget_features(rows: StationRows) -> np.ndarray:
    """[n_stations, 20] float32, the ``budget`` action's observation. Per station: EVs that can
    use power / its chargers, Σ useful power / rating, Σ energy owed / (rating × 8 h), least
    and mean slack (/8 h), share of EVs with under 1 h of slack, the energy that cannot wait
    beyond 1, 2 and 4 h (/ rating × h), the zone's peak so far / the station's rating, Σ
    useful power / the zone's limit; then :func:`station_globals`."""
    n, fac = rows.n, rows.station
    rated = np.maximum(rows.rated_kw, 1e-9)
    cnt = np.bincount(fac, minlength=n).astype(float)
    cap = np.bincount(fac, weights=rows.want_kw, minlength=n)
    owed = np.bincount(fac, weights=rows.owed_kwh, minlength=n)
    least = np.full(n, np.inf)
    np.minimum.at(least, fac, rows.laxity_h)
    mean = np.divide(np.bincount(fac, weights=rows.laxity_h, minlength=n), cnt,
                     out=np.zeros(n), where=cnt > 0)
    urgent = np.bincount(fac, weights=(rows.laxity_h < 1.0).astype(float), minlength=n)
    must = [np.bincount(fac, weights=np.maximum(
        rows.owed_kwh - rows.rate_kw * np.maximum(rows.left_h - h, 0.0), 0.0), minlength=n)
        / (rated * h) for h in MUST_H]
    x = np.stack([
        cnt / rows.chargers, cap / rated, np.clip(owed / (rated * 8.0), 0, 2),
        np.clip(np.where(np.isfinite(least), least, 8.0) / 8.0, -1, 1),
        np.clip(mean / 8.0, -1, 1), urgent / np.maximum(cnt, 1.0),
        *[np.clip(m, 0, 2) for m in must],
        np.clip(rows.zone_peak_kw / rated, 0, 2),
        np.clip(cap / np.maximum(rows.zone_limit_kw, 1e-9), 0, 2),
    ], axis=1)
    return np.concatenate([x, station_globals(rows)], axis=1).astype(np.float32)


def budget_cap_kw(action: np.ndarray, rated_kw: np.ndarray) -> np.ndarray:
    """Each station's power cap: its policy's share (cleaned to [0, 1]) × its rating."""
    return clean(action).reshape(rated_kw.shape) * rated_kw


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
        return np.concatenate([chargers.reshape(lay.n, -1),
                               station_globals(StationRows.of_obs(obs, world, lay))],
                              axis=1).astype(np.float32)

    def power(self, action: np.ndarray, obs: Observation) -> np.ndarray:
        """[C] kW: fraction × useful power (NaN reads 0)."""
        frac = clean(action).reshape(self.layout.n, self.layout.width)
        return self.layout.scatter(frac, obs.connected.size) * obs.rate_cap_kw


class Budget:
    """``budget``: a power cap per station (a share of its rating), least laxity first."""

    name = "budget"
    obs_dim = BUDGET_FEATURES + STATION_GLOBALS
    act_dim = 1

    def __init__(self, layout: Layout) -> None:
        self.layout = layout

    def features(self, obs: Observation, world: World) -> np.ndarray:
        """:func:`budget_features` of every station."""
        return budget_features(StationRows.of_obs(obs, world, self.layout))

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
        budget = budget_cap_kw(action, lay.rated_kw)
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
