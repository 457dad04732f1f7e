"""Tariffs: acnportal's schedule JSON, seasons that wrap, weekday masks, first entry wins, and a
clear one-line error for every malformed file; demand charges in the KPIs and the offline LP."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from evgrid.envs import Simulator
from evgrid.envs.kpis import compute_kpis, demand_charges
from evgrid.envs.world import build_world
from evgrid.evaluation.offline import offline_optimal_run
from evgrid.scenario import ScenarioError, parse_scenario
from evgrid.scenario.tariff import (
    TariffError,
    parse_tariff,
    read_tariff,
    tariff_arrays,
)
from tests.unit.test_offline import one_charger_world, one_ev

#: Shaped like PG&E A-10 as acnportal publishes it: fractional hours, "4-30", and two winter
#: entries for every day that overlap (the first one wins).
A10: dict[str, Any] = {
    "name": "pge_a10_like",
    "schedule": [
        {"id": "summer", "effective_start": "05-01", "effective_end": "10-31",
         "dow_mask": "WEEKDAYS", "times": [0, 8.5, 12, 18, 21.5],
         "tariffs": [0.1, 0.2, 0.3, 0.2, 0.1], "demand_charge": 20.0},
        {"id": "summer weekend", "effective_start": "05-01", "effective_end": "10-31",
         "dow_mask": "WEEKENDS", "times": [0], "tariffs": [0.1], "demand_charge": 20.0},
        {"id": "winter", "effective_start": "11-01", "effective_end": "4-30",
         "dow_mask": "ALL", "times": [0, 8.5], "tariffs": [0.11, 0.15], "demand_charge": 12.0},
        {"id": "winter shadow", "effective_start": "11-01", "effective_end": "4-30",
         "dow_mask": "ALL", "times": [0], "tariffs": [9.99], "demand_charge": 99.0},
    ],
}


def price(tariff: dict, when: datetime) -> float:
    return float(tariff_arrays(parse_tariff(tariff), when, 1, 0.25).price_per_kwh[0])


def test_bundled_sce_tou_ev_4_by_season_and_weekday() -> None:
    t = read_tariff("sce_tou_ev_4").model_dump()
    assert price(t, datetime(2019, 7, 1, 13)) == 0.26668  # summer weekday on-peak
    assert price(t, datetime(2019, 7, 6, 13)) == 0.0925  # summer Saturday
    assert price(t, datetime(2019, 7, 1, 23, 30)) == 0.05623
    assert price(t, datetime(2019, 12, 2, 13)) == 0.0869  # winter weekday
    assert price(t, datetime(2020, 1, 15, 9)) == 0.07492  # winter wraps over the new year
    assert price(t, datetime(2019, 5, 31, 13)) == 0.0869  # last winter day (a Friday)
    assert price(t, datetime(2019, 6, 3, 13)) == 0.26668  # first summer Monday


def test_fractional_hours_unpadded_dates_and_first_entry_wins() -> None:
    assert price(A10, datetime(2019, 8, 1, 8, 15)) == 0.1
    assert price(A10, datetime(2019, 8, 1, 8, 30)) == 0.2
    assert price(A10, datetime(2019, 8, 1, 21, 29)) == 0.2
    assert price(A10, datetime(2019, 4, 30, 9)) == 0.15  # "4-30" is the winter's last day
    assert price(A10, datetime(2019, 5, 1, 9)) == 0.2
    arrays = tariff_arrays(parse_tariff(A10), datetime(2019, 2, 1), 4, 1.0)
    assert arrays.demand_rate_per_kw.tolist() == [12.0] * 4  # not the shadow entry's 99


def test_billing_windows_and_the_rate_of_a_windows_first_step() -> None:
    t = parse_tariff({**A10, "demand_window": "month"})
    a = tariff_arrays(t, datetime(2019, 10, 31), 48, 1.0)  # Oct 31 then Nov 1
    assert a.billing_window.tolist() == [0] * 24 + [1] * 24
    assert a.demand_rate_per_kw.tolist() == [20.0] * 24 + [12.0] * 24
    day = tariff_arrays(parse_tariff({**A10, "demand_window": "day"}),
                        datetime(2019, 8, 1, 12), 48, 1.0)
    assert day.billing_window.tolist() == [0] * 12 + [1] * 24 + [2] * 12
    whole = tariff_arrays(parse_tariff({**A10, "demand_window": "horizon"}),
                          datetime(2019, 10, 31), 48, 1.0)
    assert set(whole.billing_window.tolist()) == {0}


@pytest.mark.parametrize(("change", "says"), [
    ({"times": [1, 8]}, "times must start at 0"),
    ({"times": [0, 8, 8]}, "times must increase"),
    ({"tariffs": [0.1]}, "5 times but 1 tariffs"),
    ({"effective_start": "13-01"}, "'13-01' is not a day of the year"),
    ({"effective_end": "June"}, "is not a month-day"),
    ({"dow_mask": "MONDAYS"}, "dow_mask"),
    ({"demand_charge": -1}, "demand_charge"),
    ({"times": [0, 8.5, 12, 18, 24]}, "times.4"),
])
def test_a_malformed_entry_is_named_on_one_line(change: dict, says: str) -> None:
    bad = {**A10, "schedule": [{**A10["schedule"][0], **change}]}
    with pytest.raises(TariffError) as info:
        parse_tariff(bad, source="t.json")
    text = str(info.value)
    assert says in text and "\n" not in text and text.startswith("t.json: schedule.0")


def test_a_day_no_entry_covers_is_an_error_not_a_free_hour() -> None:
    summer_only = parse_tariff({"schedule": [A10["schedule"][0]]})
    with pytest.raises(TariffError, match="no schedule entry covers 2019-08-03 \\(a weekend\\)"):
        tariff_arrays(summer_only, datetime(2019, 8, 2), 96, 1.0)


def test_files_that_are_not_tariffs(tmp_path: Path) -> None:
    for text, says in [("{", "not JSON"), ("[1, 2]", "a tariff is a JSON object"),
                       ('{"schedule": [], "name": "x"}', "schedule")]:
        f = tmp_path / "t.json"
        f.write_text(text)
        with pytest.raises(TariffError, match=says):
            read_tariff(f)
    with pytest.raises(TariffError, match="no such tariff file"):
        read_tariff(tmp_path / "missing.json")


def test_scenario_names_a_tariff_file_relative_to_itself(tmp_path: Path) -> None:
    (tmp_path / "t.json").write_text(json.dumps(A10))
    data = one_charger_world([0.25] * 24)
    sc = parse_scenario({**data, "tariff": "t.json", "start_date": "2019-08-01"},
                        base_dir=tmp_path)
    assert sc.tariff is not None and sc.tariff.name == "pge_a10_like"
    w = build_world(sc)
    assert w.price_per_kwh[9] == 0.2 and w.demand_rate_per_kw[0] == 20.0
    with pytest.raises(ScenarioError, match="tariff: no such tariff file"):
        parse_scenario({**data, "tariff": "nope.json"}, base_dir=tmp_path)
    with pytest.raises(ScenarioError, match="not both"):
        parse_scenario({**data, "tariff": A10, "prices": {"price_csv": str(tmp_path / "t.json")}})


def test_demand_charge_lp_against_a_hand_solved_instance() -> None:
    """One EV, 2:00-8:00, 20 kWh at up to 10 kW, energy 1 $/kWh, 5 $/kW on the day's peak.

    Any schedule pays 20 for energy; the peak is least when spread evenly over the 6 hours:
    20/6 kW, billed 5 × 10/3 = 16.67. Not delivering a kWh would save 1 + 5/6 but cost the
    5 $/kWh penalty, so all of it is delivered: cost 36.67.
    """
    tariff = {"schedule": [{"times": [0], "tariffs": [1.0], "demand_charge": 5.0}],
              "demand_window": "horizon"}
    sc = parse_scenario({**one_charger_world([1.0] * 24), "tariff": tariff})
    sim = Simulator(sc, sessions=one_ev())
    from evgrid.agents.policies import make_policy

    llf = sim.run(make_policy("llf"))
    bound, sol = offline_optimal_run(sim, llf)
    np.testing.assert_allclose(bound.power_kw[2:8, 0], 20 / 6, atol=1e-6)
    k = compute_kpis(bound)
    assert k["energy_cost"] == pytest.approx(20.0, abs=1e-6)
    assert k["demand_charge"] == pytest.approx(50 / 3, abs=1e-5)
    assert k["cost"] == pytest.approx(20 + 50 / 3, abs=1e-5)
    assert sol.solver_objective == pytest.approx(k["objective"], rel=1e-7)
    # LLF charges at 10 kW for two hours: the same energy, a 10 kW peak, 50 in demand charge.
    assert compute_kpis(llf)["demand_charge"] == pytest.approx(50.0)


def test_demand_charges_per_zone_and_window() -> None:
    load = np.array([[1.0, 5.0], [3.0, 2.0], [2.0, 7.0], [4.0, 1.0]])  # [T, G]
    rate = np.array([10.0, 10.0, 2.0, 2.0])
    window = np.array([0, 0, 1, 1])
    np.testing.assert_allclose(demand_charges(load, rate, window), [10 * 3 + 2 * 4, 10 * 5 + 2 * 7])
    assert date(2019, 7, 1).weekday() == 0  # the default start_date is a Monday
