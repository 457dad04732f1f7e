"""A scenario compiled to flat numpy arrays: chargers, parking slots, limits and prices per step.

The simulator, the controllers and the offline LP all read this one compiled form, so a limit
or a price cannot mean one thing to the plant and another to the bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, time

import numpy as np

from evgrid.scenario.schema import ChargerOutage, GridLimitDrop, Scenario, as_hourly


@dataclass(frozen=True)
class World:
    """Static and time-indexed arrays of one scenario (C chargers, S slots, G grid zones, T steps).

    A *slot* is one parking zone of one facility (facility × {A, B, C, general}).
    """

    scenario: Scenario
    dt_h: float
    steps: int
    facility_ids: list[str]
    grid_ids: list[str]
    slot_names: list[str]  # "facility/zone"
    slot_facility: np.ndarray  # [S] int
    slot_recorded: np.ndarray  # [S] bool: the facility replays recorded sessions only
    slot_xy_km: np.ndarray  # [S, 2]
    slot_walk_km: np.ndarray  # [S]
    slot_fee_per_kwh: np.ndarray  # [S]
    slot_soc_lo: np.ndarray  # [S] nan for a general zone
    slot_soc_hi: np.ndarray  # [S]
    slot_spaces: np.ndarray  # [S] int
    slot_chargers: np.ndarray  # [S] int
    charger_slot: np.ndarray  # [C] int
    charger_facility: np.ndarray  # [C] int
    charger_grid: np.ndarray  # [C] int
    charger_max_kw: np.ndarray  # [C]
    charger_eta: np.ndarray  # [C]
    charger_v2g: np.ndarray  # [C] bool
    charger_online: np.ndarray  # [T, C] bool (outage events applied)
    zone_limit_kw: np.ndarray  # [T, G] (limit-drop events applied)
    city_limit_kw: np.ndarray  # [T]
    price_per_kwh: np.ndarray  # [T]
    carbon_kg_per_kwh: np.ndarray  # [T]
    #: [T] demand charge of each step's billing window [currency/kW on the window's peak
    #: load of each grid zone]; 0 without a tariff.
    demand_rate_per_kw: np.ndarray
    billing_window: np.ndarray  # [T] int: billing window of each step (0, 1, ...)
    export_price_per_kwh: float = 0.0

    @property
    def n_chargers(self) -> int:
        return int(self.charger_max_kw.size)

    @property
    def n_slots(self) -> int:
        return len(self.slot_names)

    @property
    def n_grid(self) -> int:
        return len(self.grid_ids)

    @property
    def time_h(self) -> np.ndarray:
        """Start of every step [h from the horizon start]."""
        return np.arange(self.steps) * self.dt_h


def hourly_to_steps(profile: list[float], steps: int, dt_h: float) -> np.ndarray:
    """Sample a 24-h profile at the start of each step, repeating every day."""
    hours = (np.floor(np.arange(steps) * dt_h + 1e-9).astype(int)) % 24
    return np.asarray(profile, dtype=float)[hours]


def build_world(scenario: Scenario, *, price_per_kwh: np.ndarray | None = None,
                start: datetime | None = None) -> World:
    """Compile ``scenario``; ``price_per_kwh`` (one value per step) overrides the 24-h profile.

    Without it, ``prices.price_csv`` (when set) gives the hourly prices in force at each step,
    on the clock of :func:`evgrid.scenario.recorded.horizon_start_utc`, so recorded sessions
    and recorded prices line up; a ``tariff`` gives them on the same clock (else from
    ``start_date``), or from ``start`` when the caller knows step 0's time (a replay).
    """
    dt_h, steps = scenario.dt_h, scenario.steps
    fac_ids = [f.id for f in scenario.facilities]
    grid_ids = [g.id for g in scenario.grid_zones]
    names: list[str] = []
    s_fac, s_xy, s_walk, s_fee, s_lo, s_hi, s_sp, s_ch = ([] for _ in range(8))
    c_slot, c_kw, c_eta, c_v2g = [], [], [], []
    for fi, fac in enumerate(scenario.facilities):
        for zname, zone in fac.zones.items():
            s = len(names)
            names.append(f"{fac.id}/{zname}")
            s_fac.append(fi)
            s_xy.append((fac.x_km, fac.y_km))
            s_walk.append(zone.walk_km)
            s_fee.append(fac.fee_per_kwh)
            lo, hi = zone.soc_range if zone.soc_range is not None else (math.nan, math.nan)
            s_lo.append(lo)
            s_hi.append(hi)
            s_sp.append(zone.spaces)
            s_ch.append(zone.chargers.count)
            n = zone.chargers.count
            c_slot += [s] * n
            c_kw += [zone.chargers.max_kw] * n
            c_eta += [zone.chargers.efficiency] * n
            c_v2g += [zone.chargers.v2g] * n
    slot_facility = np.asarray(s_fac, dtype=np.int64)
    charger_slot = np.asarray(c_slot, dtype=np.int64)
    charger_facility = slot_facility[charger_slot]
    fac_grid = np.asarray(
        [grid_ids.index(f.grid_zone) for f in scenario.facilities], dtype=np.int64
    )

    online = np.ones((steps, charger_slot.size), dtype=bool)
    zone_limit = np.stack(
        [hourly_to_steps(as_hourly(g.limit_kw), steps, dt_h) for g in scenario.grid_zones], axis=1
    )
    city_limit = hourly_to_steps(as_hourly(scenario.city_limit_kw), steps, dt_h)
    t_h = np.arange(steps) * dt_h
    for ev in scenario.events:
        # A step that overlaps the event at all takes it for the whole step (conservative for
        # limit drops and outages alike; an event shorter than a step is never lost).
        during = (t_h < ev.end_h) & (t_h + dt_h > ev.start_h)
        if isinstance(ev, ChargerOutage):
            fi = fac_ids.index(ev.facility)
            for s, name in enumerate(names):
                if s_fac[s] != fi or (ev.zone is not None and name != f"{ev.facility}/{ev.zone}"):
                    continue
                idx = np.flatnonzero(charger_slot == s)
                down = idx[: math.ceil(ev.fraction * idx.size - 1e-9)]
                online[np.ix_(during, down)] = False
        elif isinstance(ev, GridLimitDrop):
            if ev.grid_zone == "city":
                city_limit = np.where(during, city_limit * ev.factor, city_limit)
            else:
                g = grid_ids.index(ev.grid_zone)
                zone_limit[:, g] = np.where(during, zone_limit[:, g] * ev.factor, zone_limit[:, g])

    if price_per_kwh is None and scenario.prices.price_csv is not None:
        from evgrid.scenario.recorded import horizon_start_utc, prices_for_horizon, read_price_csv

        stamps, prices = read_price_csv(scenario.prices.price_csv)
        start = horizon_start_utc(scenario, price_timestamps=stamps)
        assert start is not None  # a price file gives the clock
        price_per_kwh = prices_for_horizon(stamps, prices, start, steps, dt_h)
    demand_rate, window, export = np.zeros(steps), np.zeros(steps, dtype=np.int64), 0.0
    if scenario.tariff is not None:
        from evgrid.scenario.recorded import horizon_start_utc
        from evgrid.scenario.tariff import tariff_arrays

        if start is None:
            start = horizon_start_utc(scenario)
        if start is None:
            start = datetime.combine(scenario.start_date, time())
        arrays = tariff_arrays(scenario.tariff, start.replace(tzinfo=None), steps, dt_h)
        if price_per_kwh is None:
            price_per_kwh = arrays.price_per_kwh
        demand_rate, window = arrays.demand_rate_per_kw, arrays.billing_window
        export = arrays.export_price_per_kwh
    if price_per_kwh is None:
        price_per_kwh = hourly_to_steps(as_hourly(scenario.prices.price_per_kwh), steps, dt_h)
    elif price_per_kwh.shape != (steps,):
        raise ValueError(f"price_per_kwh has shape {price_per_kwh.shape}, expected ({steps},)")
    return World(
        scenario=scenario,
        dt_h=dt_h,
        steps=steps,
        facility_ids=fac_ids,
        grid_ids=grid_ids,
        slot_names=names,
        slot_facility=slot_facility,
        slot_recorded=np.array(
            [scenario.facilities[f].sessions_csv is not None for f in s_fac], dtype=bool
        ),
        slot_xy_km=np.asarray(s_xy, dtype=float).reshape(-1, 2),
        slot_walk_km=np.asarray(s_walk, dtype=float),
        slot_fee_per_kwh=np.asarray(s_fee, dtype=float),
        slot_soc_lo=np.asarray(s_lo, dtype=float),
        slot_soc_hi=np.asarray(s_hi, dtype=float),
        slot_spaces=np.asarray(s_sp, dtype=np.int64),
        slot_chargers=np.asarray(s_ch, dtype=np.int64),
        charger_slot=charger_slot,
        charger_facility=charger_facility,
        charger_grid=fac_grid[charger_facility],
        charger_max_kw=np.asarray(c_kw, dtype=float),
        charger_eta=np.asarray(c_eta, dtype=float),
        charger_v2g=np.asarray(c_v2g, dtype=bool),
        charger_online=online,
        zone_limit_kw=zone_limit,
        city_limit_kw=city_limit,
        price_per_kwh=np.asarray(price_per_kwh, dtype=float),
        carbon_kg_per_kwh=hourly_to_steps(
            as_hourly(scenario.prices.carbon_kg_per_kwh), steps, dt_h
        ),
        demand_rate_per_kw=demand_rate,
        billing_window=window,
        export_price_per_kwh=export,
    )
