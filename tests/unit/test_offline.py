"""The offline LP: solver objective = executed objective; a hand-solvable instance."""

from __future__ import annotations

import numpy as np
import pytest

from evgrid.agents.policies import make_policy
from evgrid.envs import Simulator
from evgrid.envs.kpis import compute_kpis
from evgrid.envs.sessions import make_sessions
from evgrid.evaluation.offline import offline_optimal_run
from evgrid.scenario import parse_scenario


def one_charger_world(price: list[float]) -> dict:
    return {
        "name": "tiny", "dt_min": 60, "city_limit_kw": 100, "arrivals_per_day": 0,
        "unmet_penalty_per_kwh": 5.0,
        "grid_zones": [{"id": "g", "limit_kw": 100}],
        "facilities": [{"id": "f", "x_km": 0, "y_km": 0, "grid_zone": "g",
                        "zones": {"general": {"spaces": 1,
                                              "chargers": {"count": 1, "max_kw": 10,
                                                           "efficiency": 1.0}}}}],
        "cohorts": [{"name": "c", "share": 1, "dwell_h": {"mean": 1}, "arrival_soc": {"mean": 0.5},
                     "battery_kwh": 100, "max_charge_kw": 10, "departure_floor": 0.6}],
        "prices": {"price_per_kwh": price, "carbon_kg_per_kwh": 0.0},
    }


def test_bound_charges_in_the_cheapest_hours() -> None:
    price = [1.0] * 24
    price[3] = price[5] = 0.1  # two cheap hours inside the stay
    sc = parse_scenario(one_charger_world(price))
    sessions = make_sessions(
        arrival_h=np.array([2.0]), departure_h=np.array([8.0]), dt_h=1.0, steps=24,
        cohort=np.array([0]), origin_xy_km=np.zeros((1, 2)), battery_kwh=np.array([100.0]),
        max_kw=np.array([10.0]), arrival_soc=np.array([0.5]), requested_kwh=np.array([20.0]),
        floor_kwh=np.array([10.0]), facility=np.array([0]),
    )
    sim = Simulator(sc, sessions=sessions)
    llf = sim.run(make_policy("llf"))
    bound, sol = offline_optimal_run(sim, llf)
    np.testing.assert_allclose(bound.power_kw[:, 0][[3, 5]], [10.0, 10.0], atol=1e-6)
    assert bound.power_kw.sum() == pytest.approx(20.0, abs=1e-6)
    k = compute_kpis(bound)
    assert k["cost"] == pytest.approx(2.0, abs=1e-6)
    assert sol.solver_objective == pytest.approx(k["objective"], rel=1e-7)
    # LLF charges at once at full rate (hours 2 and 3): same energy, one dear hour.
    assert compute_kpis(llf)["cost"] == pytest.approx(10 * (1.0 + 0.1), rel=1e-9)
