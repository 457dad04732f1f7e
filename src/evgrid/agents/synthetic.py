"""Random coupled power-sharing instances, for ADMM tests and benchmarks.

Stations with a handful of EVs each, random windows inside the horizon, ToU prices, and
grid-zone / city limits set to bind in the evening (a fraction of the stations' peak demand).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evgrid.coordinator.messages import StationState


@dataclass(frozen=True)
class SharingInstance:
    states: dict[str, StationState]
    grid_zones: list[str]  # per station
    zone_ids: list[str]
    zone_limit_kw: np.ndarray  # [H, G]
    city_limit_kw: np.ndarray  # [H]
    max_power_kw: list[float]


def random_instance(
    n_stations: int, horizon: int = 96, *, evs_per_station: int = 6, n_zones: int = 4,
    seed: int = 0, tightness: float = 0.5, dt_h: float = 0.25,
) -> SharingInstance:
    """Limits are ``tightness`` × the demand peak the EVs could draw at full rate."""
    rng = np.random.default_rng(seed)
    hours = (np.arange(horizon) * dt_h) % 24
    price = np.where((hours >= 17) & (hours < 22), 0.35, np.where(hours < 7, 0.12, 0.2))
    carbon = np.where((hours >= 17) & (hours < 22), 0.5, 0.3)
    zone_ids = [f"g{g}" for g in range(n_zones)]
    zones = [zone_ids[i % n_zones] for i in range(n_stations)]
    states, cap = {}, []
    steps = np.arange(horizon)[None, :]
    full = np.zeros((horizon, n_zones))
    for i in range(n_stations):
        n = int(rng.integers(1, 2 * evs_per_station))
        dep = rng.integers(2, horizon + 1, n)
        rate = rng.choice([7.4, 11.0, 22.0], n)
        upper = np.where(steps < dep[:, None], rate[:, None], 0.0)
        owed = rng.uniform(0.2, 1.0, n) * upper.sum(1) * dt_h * 0.6
        sid = f"s{i:04d}"
        states[sid] = StationState(
            station_id=sid, horizon_start=0, dt_h=dt_h, charger=np.arange(n),
            arrival_step=np.zeros(n, int), departure_step=dep, upper_kw=upper,
            eta=np.full(n, 0.95), owed_kwh=owed, price_per_kwh=price, carbon_kg_per_kwh=carbon,
        )
        cap.append(float(rate.sum()))
        full[:, i % n_zones] += upper.sum(0)
    zone_limit = np.maximum(tightness * full.max(0)[None, :] * np.ones((horizon, 1)), 1.0)
    evening = (hours >= 17) & (hours < 22)
    zone_limit[evening] *= 0.6
    city = 0.85 * zone_limit.sum(1)
    return SharingInstance(states, zones, zone_ids, zone_limit, city, cap)


def next_period(inst: SharingInstance, delivered_kw: dict[str, np.ndarray]) -> SharingInstance:
    """The same city one control step later: each EV has charged ``delivered_kw`` (per
    station, one value per EV row) for one step, the horizon has moved on by one step (the
    day's prices, carbon and limits repeat), and EVs that left are gone. What a receding-horizon
    controller solves next, warm-started from this period's answer."""
    states = {}
    for sid, st in inst.states.items():
        owed = np.maximum(st.owed_kwh - delivered_kw[sid] * st.eta * st.dt_h, 0.0)
        keep = st.departure_step > st.horizon_start + 1
        states[sid] = StationState(
            station_id=sid, horizon_start=st.horizon_start + 1, dt_h=st.dt_h,
            charger=st.charger[keep], arrival_step=st.arrival_step[keep],
            departure_step=st.departure_step[keep],
            upper_kw=np.concatenate([st.upper_kw[keep, 1:], np.zeros((int(keep.sum()), 1))], 1),
            eta=st.eta[keep], owed_kwh=owed[keep],
            price_per_kwh=np.roll(st.price_per_kwh, -1),
            carbon_kg_per_kwh=np.roll(st.carbon_kg_per_kwh, -1),
        )
    return SharingInstance(states, inst.grid_zones, inst.zone_ids,
                           np.roll(inst.zone_limit_kw, -1, axis=0),
                           np.roll(inst.city_limit_kw, -1), inst.max_power_kw)
