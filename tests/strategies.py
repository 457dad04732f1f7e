"""Hypothesis strategies for random but valid small cities."""

from __future__ import annotations

from hypothesis import strategies as st

from evgrid.scenario import Scenario, parse_scenario


@st.composite
def scenarios(draw: st.DrawFn, *, max_facilities: int = 3) -> Scenario:
    """A random city: 1-3 facilities on 1-2 feeders, tight or loose limits, outages, drops."""
    n_grid = draw(st.integers(1, 2))
    grid = [
        {"id": f"g{g}", "limit_kw": draw(st.lists(st.floats(5, 120), min_size=24, max_size=24))}
        for g in range(n_grid)
    ]
    facilities = []
    for f in range(draw(st.integers(1, max_facilities))):
        zones = {}
        for name, rng in (("A", [0.85, 0.95]), ("C", [0.3, 0.5]), ("general", None)):
            count = draw(st.integers(0 if name != "general" else 1, 4))
            zone = {
                "spaces": count + draw(st.integers(0, 2)),
                "chargers": {
                    "count": count,
                    "max_kw": draw(st.sampled_from([3.7, 7.4, 11.0, 22.0, 50.0])),
                    "efficiency": draw(st.floats(0.8, 1.0)),
                },
            }
            if rng is not None:
                zone["soc_range"] = rng
            zones[name] = zone
        facilities.append(
            {"id": f"f{f}", "x_km": draw(st.floats(0, 5)), "y_km": draw(st.floats(0, 5)),
             "grid_zone": f"g{draw(st.integers(0, n_grid - 1))}", "zones": zones}
        )
    events = []
    if draw(st.booleans()):
        events.append({"kind": "charger_outage", "facility": "f0",
                       "fraction": draw(st.floats(0.1, 1.0)), "start_h": 6, "end_h": 14})
    if draw(st.booleans()):
        events.append({"kind": "grid_limit_drop", "grid_zone": draw(st.sampled_from(["g0", "city"])),
                       "factor": draw(st.floats(0.0, 0.9)), "start_h": 15, "end_h": 20})
    cohort = {
        "name": "mixed", "share": 1.0,
        "dwell_h": {"mean": draw(st.floats(0.5, 8)), "std": 1.5, "low": 0.25, "high": 12},
        "arrival_soc": {"mean": 0.4, "std": 0.25, "low": 0.0, "high": 1.0},
        "battery_kwh": draw(st.floats(10, 100)), "max_charge_kw": draw(st.floats(3, 150)),
        "departure_floor": 0.6,
    }
    data = {
        "name": "random", "horizon_days": 1, "dt_min": draw(st.sampled_from([15, 30, 60])),
        "seed": draw(st.integers(0, 2**16)),
        "city_limit_kw": draw(st.lists(st.floats(5, 200), min_size=24, max_size=24)),
        "arrivals_per_day": draw(st.floats(0, 120)), "grid_zones": grid,
        "facilities": facilities, "cohorts": [cohort], "events": events,
    }
    return parse_scenario(data, source="hypothesis")
