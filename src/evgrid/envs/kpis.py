"""Key performance indicators of a run, city-wide and per facility / grid zone.

Table 3 of 000_f74a305f822cf870.txt (throughput, occupancy, waiting time, energy cost),
§5.1 of 004_8f5fa6c845a0843d.txt (average wait, full-charge count, unfinished count), and the
grid figures a feeder operator asks for (peak, violations before projection, kWh cut).
Names carry their units; ``objective`` is the quantity the offline LP minimises, so every
policy's objective is directly comparable with the bound.
"""

from __future__ import annotations

import numpy as np

from evgrid.envs.simulator import SimResult

#: A session counts as fully charged when it got all but this much of its request [kWh].
FULL_TOL_KWH = 0.01


def demand_charges(zone_load_kw: np.ndarray, rate_per_kw: np.ndarray,
                   window: np.ndarray) -> np.ndarray:
    """[G] each grid zone's demand charge: Σ over billing windows of the window's rate × the
    zone's peak load in it. A zone is one metered grid connection (put a facility on a zone of
    its own to bill it alone); the rate is the one in force at the window's first step
    (``evgrid.scenario.tariff.tariff_arrays``)."""
    out = np.zeros(zone_load_kw.shape[1])
    if not rate_per_kw.any():
        return out
    for w in np.unique(window):
        steps = window == w
        out += rate_per_kw[steps][0] * zone_load_kw[steps].max(axis=0, initial=0.0)
    return out


def objective_terms(
    world_price: np.ndarray,
    world_carbon: np.ndarray,
    grid_energy_kwh_per_step: np.ndarray,
    unmet_kwh: float,
    *,
    carbon_price_per_kg: float,
    unmet_penalty_per_kwh: float,
    demand_charge: float = 0.0,
) -> dict[str, float]:
    """Energy cost, demand charge, their sum ``cost``, carbon, and the LP objective:
    cost + carbon price · carbon + penalty · unmet kWh."""
    energy_cost = float(grid_energy_kwh_per_step @ world_price)
    carbon = float(grid_energy_kwh_per_step @ world_carbon)
    cost = energy_cost + demand_charge
    return {
        "energy_cost": energy_cost,
        "demand_charge": demand_charge,
        "cost": cost,
        "carbon_kg": carbon,
        "objective": cost + carbon_price_per_kg * carbon + unmet_penalty_per_kwh * unmet_kwh,
    }


def waiting_min(result: SimResult) -> np.ndarray:
    """Minutes each arrived session waited for a charger (the whole stay if it never got one)."""
    s, dt_min = result.sessions, result.world.dt_h * 60
    start = np.where(result.connect_step >= 0, result.connect_step, s.departure_step)
    return (start - s.arrival_step) * dt_min


def travel_km(result: SimResult) -> np.ndarray:
    """[N] km each session drove and walked to its slot (NaN if it never arrived)."""
    s, w = result.sessions, result.world
    slot = np.maximum(result.slot, 0)
    d = np.linalg.norm(s.origin_xy_km - w.slot_xy_km[slot], axis=1) + w.slot_walk_km[slot]
    return np.where(result.slot >= 0, d, np.nan)


def _pct(a: float, b: float) -> float:
    return 100.0 * a / b if b > 0 else 100.0


def session_kpis(result: SimResult, mask: np.ndarray) -> dict[str, float]:
    """Session-side KPIs over the sessions selected by ``mask``."""
    s = result.sessions
    req = s.requested_kwh[mask]
    got = np.minimum(result.delivered_kwh[mask], req)
    wait = waiting_min(result)[mask]
    km = travel_km(result)[mask]
    full = got >= req - FULL_TOL_KWH
    return {
        "sessions": int(mask.sum()),
        "energy_requested_kwh": float(req.sum()),
        "energy_delivered_kwh": float(result.delivered_kwh[mask].sum()),
        "demand_met_pct": _pct(float(got.sum()), float(req.sum())),
        "unmet_kwh": float((req - got).sum()),
        "wait_mean_min": float(wait.mean()) if wait.size else 0.0,
        "wait_p95_min": float(np.percentile(wait, 95)) if wait.size else 0.0,
        "travel_mean_km": float(np.nanmean(km)) if np.isfinite(km).any() else 0.0,
        "full_charge_sessions": int(full.sum()),
        "unfinished_sessions": int((~full).sum()),
        "below_floor_sessions": int(
            (result.delivered_kwh[mask] < s.floor_kwh[mask] - FULL_TOL_KWH).sum()
        ),
        "never_connected_sessions": int((result.connect_step[mask] < 0).sum()),
    }


def compute_kpis(result: SimResult) -> dict[str, float]:
    """City-wide KPIs of one run (flat dict, snake_case names with units)."""
    w, r, s = result.world, result.record, result.sessions
    k: dict[str, float] = session_kpis(result, np.ones(len(s), dtype=bool))
    grid_kwh = r.city_load_kw * w.dt_h
    k.update(
        objective_terms(
            w.price_per_kwh,
            w.carbon_kg_per_kwh,
            grid_kwh,
            k["unmet_kwh"],
            carbon_price_per_kg=w.scenario.prices.carbon_price_per_kg,
            unmet_penalty_per_kwh=w.scenario.unmet_penalty_per_kwh,
            demand_charge=float(demand_charges(r.zone_load_kw, w.demand_rate_per_kw,
                                               w.billing_window).sum()),
        )
    )
    online = r.online_chargers.sum()
    k.update(
        {
            "grid_energy_kwh": float(grid_kwh.sum()),
            "peak_kw": float(r.city_load_kw.max(initial=0.0)),
            "limit_violations": int(r.zone_violations.sum() + r.city_violations.sum()),
            "limit_cut_kwh": float(r.limit_cut_kwh.sum()),
            "rate_cuts": int(r.rate_cuts.sum()),
            "charger_utilisation_pct": _pct(float(r.connected.sum()), float(online)),
            "occupancy_pct": _pct(
                float(r.occupied_spaces.sum()), float(w.slot_spaces.sum() * w.steps)
            ),
        }
    )
    return k


def breakdown(result: SimResult) -> dict[str, dict[str, dict[str, float]]]:
    """Per facility and per grid zone KPIs: ``{"facilities": {id: {...}}, "grid_zones": {...}}``."""
    w, r, _s = result.world, result.record, result.sessions
    fac_of_session = np.where(result.slot >= 0, w.slot_facility[np.maximum(result.slot, 0)], -1)
    facilities = {}
    for f, fid in enumerate(w.facility_ids):
        k = session_kpis(result, fac_of_session == f)
        chargers = w.charger_facility == f
        connected = (result.ev_at_charger[:, chargers] >= 0) & w.charger_online[:, chargers]
        k["peak_kw"] = float(r.facility_load_kw[:, f].max(initial=0.0))
        k["energy_cost"] = float(r.facility_load_kw[:, f] @ w.price_per_kwh * w.dt_h)
        k["charger_utilisation_pct"] = _pct(
            float(connected.sum()), float(w.charger_online[:, chargers].sum())
        )
        facilities[fid] = k
    zones = {}
    charges = demand_charges(r.zone_load_kw, w.demand_rate_per_kw, w.billing_window)
    for g, gid in enumerate(w.grid_ids):
        load, limit = r.zone_load_kw[:, g], w.zone_limit_kw[:, g]
        zones[gid] = {
            "energy_kwh": float(load.sum() * w.dt_h),
            "peak_kw": float(load.max(initial=0.0)),
            # A limit dropped to 0 carries nothing (the projection saw to it): 0 %, not 0/0.
            "peak_utilisation_pct": float(100 * np.divide(
                load, limit, out=np.zeros_like(load), where=limit > 0).max(initial=0.0)),
            "max_excess_kw": float(np.maximum(load - limit, 0).max(initial=0.0)),
            "energy_cost": float(load @ w.price_per_kwh * w.dt_h),
            "demand_charge": float(charges[g]),
        }
    return {"facilities": facilities, "grid_zones": zones}
