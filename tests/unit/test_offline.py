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


def one_ev():
    """One EV from 2:00 to 8:00 asking 20 kWh of its 50 kWh battery room, at 10 kW."""
    return make_sessions(
        arrival_h=np.array([2.0]), departure_h=np.array([8.0]), dt_h=1.0, steps=24,
        cohort=np.array([0]), origin_xy_km=np.zeros((1, 2)), battery_kwh=np.array([100.0]),
        max_kw=np.array([10.0]), arrival_soc=np.array([0.5]), requested_kwh=np.array([20.0]),
        floor_kwh=np.array([10.0]), facility=np.array([0]),
    )


def test_bound_charges_in_the_cheapest_hours() -> None:
    price = [1.0] * 24
    price[3] = price[5] = 0.1  # two cheap hours inside the stay
    sc = parse_scenario(one_charger_world(price))
    sim = Simulator(sc, sessions=one_ev())
    llf = sim.run(make_policy("llf"))
    bound, sol = offline_optimal_run(sim, llf)
    np.testing.assert_allclose(bound.power_kw[:, 0][[3, 5]], [10.0, 10.0], atol=1e-6)
    assert bound.power_kw.sum() == pytest.approx(20.0, abs=1e-6)
    k = compute_kpis(bound)
    assert k["cost"] == pytest.approx(2.0, abs=1e-6)
    assert sol.solver_objective == pytest.approx(k["objective"], rel=1e-7)
    # LLF charges at once at full rate (hours 2 and 3): same energy, one dear hour.
    assert compute_kpis(llf)["cost"] == pytest.approx(10 * (1.0 + 0.1), rel=1e-9)


class FillToCapacity:
    """Charges every EV as hard as the plant allows, past its request (pays when price < 0)."""

    name = "fill"

    def schedule(self, obs):
        return obs.power_cap_kw


def test_bound_holds_with_negative_prices_and_charging_past_the_request() -> None:
    data = one_charger_world([-0.5] * 24)
    data["cohorts"][0]["target_soc"] = 0.7  # request (0.2 x 100 kWh) < battery room (50 kWh)
    sc = parse_scenario(data)
    sim = Simulator(sc, sessions=one_ev())
    greedy = compute_kpis(sim.run(FillToCapacity()))
    bound, sol = offline_optimal_run(sim, sim.run(make_policy("llf")))
    k = compute_kpis(bound)
    assert greedy["energy_delivered_kwh"] == pytest.approx(50.0)  # filled the battery
    assert greedy["objective"] >= k["objective"] - 1e-6
    assert k["objective"] == pytest.approx(-0.5 * 50 / 1.0, abs=1e-5)  # it fills it too
    assert sol.solver_objective == pytest.approx(k["objective"], abs=1e-5)


def test_a_limit_dropped_to_zero_is_reported(tmp_path) -> None:
    import json

    from evgrid.evaluation.report import write_experiment
    from evgrid.evaluation.runner import run_experiment
    from evgrid.scenario import load_scenario

    data = load_scenario("small").model_dump(mode="json")
    # A 6-minute blackout of feeder-2: shorter than a step, it still takes the whole step.
    data["events"].append({"kind": "grid_limit_drop", "grid_zone": "feeder-2", "factor": 0.0,
                           "start_h": 10.05, "end_h": 10.15})
    exp = run_experiment(parse_scenario(data), ["llf"])
    assert exp.runs["llf"].world.zone_limit_kw[40, 1] == 0.0  # step 40 = 10:00-10:15
    assert exp.runs["llf"].record.zone_load_kw[40, 1] == 0.0
    write_experiment(exp, tmp_path / "out")
    zones = json.loads((tmp_path / "out" / "results.json").read_text())["breakdown"]["llf"]
    assert zones["grid_zones"]["feeder-2"]["max_excess_kw"] == pytest.approx(0.0, abs=1e-9)
