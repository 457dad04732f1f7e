"""Baselines: the vectorised fills equal their sequential definitions; priorities pay off."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from evgrid.agents.baselines import greedy_fill, water_level
from evgrid.agents.policies import BASELINES, make_policy
from evgrid.envs import Observation, Simulator
from evgrid.envs.kpis import compute_kpis
from evgrid.evaluation.offline import offline_optimal_run
from evgrid.scenario import load_scenario


def fake_obs(grid: np.ndarray, zone_limit: np.ndarray, city_limit: float) -> Observation:
    """A dict-backed observation (acnportal's fake interface): no simulator needed."""
    c = grid.size
    z = np.zeros(c)
    return Observation(
        t=0, dt_h=0.25, connected=np.ones(c, bool), charger_max_kw=z + 50, charger_eta=z + 1,
        charger_grid=grid, charger_facility=grid, ev_remaining_kwh=z + 100,
        ev_headroom_kwh=z + 100, ev_max_kw=z + 50, ev_arrival_step=np.zeros(c, int),
        ev_departure_step=np.ones(c, int), zone_limit_kw=zone_limit[None, :],
        city_limit_kw=np.array([city_limit]), price_per_kwh=np.ones(1),
        carbon_kg_per_kwh=np.ones(1),
    )


@settings(max_examples=200, deadline=None)
@given(
    want=arrays(float, st.integers(1, 30), elements=st.floats(0, 50)),
    data=st.data(),
)
def test_greedy_fill_equals_sequential_greedy(want: np.ndarray, data: st.DataObject) -> None:
    n = want.size
    grid = np.asarray(data.draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)))
    zone_limit = np.asarray(data.draw(st.lists(st.floats(0, 200), min_size=3, max_size=3)))
    city = data.draw(st.floats(0, 300))
    key = np.asarray(data.draw(st.lists(st.integers(0, 5), min_size=n, max_size=n)), float)
    got = greedy_fill(fake_obs(grid, zone_limit, city), want, key)
    # Reference: the sequential definition, one charger at a time in priority order.
    expect, zone_room, city_room = np.zeros(n), zone_limit.copy(), city
    for i in sorted(range(n), key=lambda i: (key[i], i)):
        expect[i] = max(0.0, min(want[i], zone_room[grid[i]], city_room))
        zone_room[grid[i]] -= expect[i]
        city_room -= expect[i]
    np.testing.assert_allclose(got, expect, atol=1e-7)


@settings(max_examples=200, deadline=None)
@given(values=arrays(float, st.integers(1, 40), elements=st.floats(0, 50)),
       budget=st.floats(0, 500))
def test_water_level_spends_the_budget(values: np.ndarray, budget: float) -> None:
    level = water_level(values, budget)
    used = np.minimum(values, level).sum()
    if np.isinf(level):
        assert values.sum() <= budget
    else:
        assert used == pytest.approx(budget, rel=1e-9, abs=1e-9)


@pytest.fixture(scope="module")
def small_runs():
    sim = Simulator(load_scenario("small"))
    runs = {name: sim.run(make_policy(name)) for name in list(BASELINES)}
    bound, _ = offline_optimal_run(sim, runs["llf"])
    return {name: compute_kpis(r) for name, r in runs.items()}, compute_kpis(bound)


def test_small_has_binding_limits(small_runs) -> None:
    kpis, _ = small_runs
    assert kpis["uncontrolled"]["limit_violations"] > 0, "small must exercise the projection"


@pytest.mark.parametrize("name", ["llf", "edf"])
def test_deadline_aware_meets_at_least_uncontrolled(small_runs, name: str) -> None:
    kpis, _ = small_runs
    assert kpis[name]["demand_met_pct"] >= kpis["uncontrolled"]["demand_met_pct"]
    assert kpis[name]["limit_violations"] == 0


@pytest.mark.parametrize("name", list(BASELINES))
def test_no_baseline_beats_the_offline_optimum(small_runs, name: str) -> None:
    kpis, bound = small_runs
    assert kpis[name]["objective"] >= bound["objective"] * (1 - 1e-7)
    assert bound["demand_met_pct"] >= kpis[name]["demand_met_pct"] - 1e-6
    assert bound["limit_violations"] == 0


def test_unknown_policy_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown policy 'magic': choose from \['uncontrolled'"):
        make_policy("magic")
