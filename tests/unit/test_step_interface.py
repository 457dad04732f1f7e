"""The simulator as a step-wise interface: seeded days, outcomes that add up to the KPIs, and
routing as a decision on a view of the arrivals."""

from __future__ import annotations

import numpy as np
import pytest

from evgrid.agents.policies import make_policy
from evgrid.envs import Simulator
from evgrid.envs.kpis import compute_kpis
from evgrid.envs.simulator import Arrivals
from evgrid.scenario import load_scenario


@pytest.mark.parametrize(("scenario", "policy"), [("small", "llf"), ("small", "uncontrolled"),
                                                   ("workplace", "uncontrolled")])
def test_outcomes_sum_to_the_objective(scenario: str, policy: str) -> None:
    """Σ over the day of each step's outcome is the run's objective, term by term (the demand
    charge accrues as peaks rise, the unmet energy as EVs leave)."""
    sc = load_scenario(scenario).model_copy(update={"horizon_days": 0.5})
    sim = Simulator(sc)
    ctl = make_policy(policy, sim.world)
    obs = sim.reset()
    total = {"energy_cost": 0.0, "demand_charge": 0.0, "carbon_kg": 0.0, "unmet_kwh": 0.0,
             "objective": 0.0}
    while not sim.done:
        obs, out = sim.step(ctl.schedule(obs))
        for name in total:
            total[name] += getattr(out, name)
    kpis = compute_kpis(sim.result(policy))
    for name, value in total.items():
        assert value == pytest.approx(kpis[name], rel=1e-9, abs=1e-9), name
    if scenario == "workplace":
        assert kpis["demand_charge"] > 0


def test_reset_seed_draws_a_new_day_and_repeats_it() -> None:
    sim = Simulator(load_scenario("small"))
    a = sim.reset(seed=1).t, sim.sessions.arrival_step.copy()
    b = sim.reset(seed=2).t, sim.sessions.arrival_step.copy()
    c = sim.reset(seed=1).t, sim.sessions.arrival_step.copy()
    assert not np.array_equal(a[1], b[1]) and np.array_equal(a[1], c[1])
    assert sim.seed == 1


def test_step_acts_on_its_own_observation() -> None:
    """The caller cannot hand the plant a stale or forged observation: a set-point above what
    the plant itself sees is cut to it."""
    sim = Simulator(load_scenario("small"))
    obs = sim.reset()
    while not obs.connected.any():
        obs, _ = sim.step(np.zeros(obs.connected.size))
    _, out = sim.step(np.full(obs.connected.size, 1e6))
    assert np.all(out.executed_kw <= obs.power_cap_kw + 1e-9)
    assert out.cuts.rate_cuts > 0


def test_router_sees_arrivals_not_the_simulator() -> None:
    seen: list[Arrivals] = []

    def first_candidate(arrivals: Arrivals) -> np.ndarray:
        seen.append(arrivals)
        return np.argmax(arrivals.candidates(), axis=1)

    sim = Simulator(load_scenario("small"), router=first_candidate)
    sim.run(make_policy("llf"))
    assert seen and all(isinstance(a, Arrivals) for a in seen)
    a = seen[0]
    assert a.travel_km().shape == (len(a), sim.world.n_slots)
    assert a.free.shape == (sim.world.n_slots,)
