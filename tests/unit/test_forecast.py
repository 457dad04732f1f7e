"""Forecasts never read a session before it arrives: change the future, keep the past."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from evgrid.agents.coordinated import CoordinatedPolicy
from evgrid.agents.forecast import EmpiricalForecast, admitted, cohort_forecast
from evgrid.envs import Simulator
from evgrid.envs.sessions import draw_sessions
from evgrid.envs.world import build_world
from evgrid.scenario import load_scenario
from evgrid.scenario.tariff import read_tariff

CUT = 20  # steps before this are the "past"


def world_and_sessions():
    sc = load_scenario("small")
    sc = sc.model_copy(update={"horizon_days": 0.375, "tariff": read_tariff("sce_tou_ev_4")})
    return sc, draw_sessions(sc, np.random.default_rng(3))


def test_a_changed_future_leaves_every_earlier_decision_alone() -> None:
    sc, sessions = world_and_sessions()
    later = sessions.arrival_step >= CUT
    assert later.any() and (~later).any()
    altered = replace(sessions, requested_kwh=np.where(later, sessions.requested_kwh * 0.3,
                                                       sessions.requested_kwh),
                      max_kw=np.where(later, sessions.max_kw * 0.5, sessions.max_kw))
    runs = []
    for s in (sessions, altered):
        sim = Simulator(sc, sessions=s)
        policy = CoordinatedPolicy(sim.world)
        assert policy.horizon.forecaster is not None  # the demand charge turns it on
        runs.append(sim.run(policy).power_kw)
    np.testing.assert_array_equal(runs[0][:CUT], runs[1][:CUT])
    assert not np.array_equal(runs[0][CUT:], runs[1][CUT:])  # the change did matter later


def test_the_empirical_forecast_uses_whole_past_days_only() -> None:
    sc = load_scenario("small").model_copy(update={"horizon_days": 3})
    w = build_world(sc)
    fc = EmpiricalForecast(w)
    d = round(24 / w.dt_h)
    fc.rows = [(0, 5, 10.0, 4.0, 7.0), (1, d + 7, 20.0, 2.0, 11.0), (0, 2 * d + 1, 99.0, 9.0, 22.0)]
    assert fc.forecast(d - 1) is None  # nothing before a whole day is seen
    one = fc.forecast(d + 50)
    assert one is not None and one.arrivals.sum() == 1.0  # day 0's EV only
    two = fc.forecast(2 * d + 50)
    assert two is not None and two.arrivals.sum() == 1.0  # mean of two days: 2 EVs / 2
    assert two.request_kwh[0, 0, 5] == 10.0 and two.request_kwh[1, 0, 7] == 20.0


def test_cohort_forecast_and_admission() -> None:
    w = build_world(load_scenario("small"))
    fc = cohort_forecast(w)
    assert abs(fc.arrivals.sum() - w.scenario.arrivals_per_day) < 1e-6
    # The energy a cohort can be given never exceeds what it could ask, nor its stay allows.
    for k, c in enumerate(w.scenario.cohorts):
        assert (fc.request_kwh[:, k] <= c.battery_kwh * c.target_soc + 1e-9).all()
        assert (fc.request_kwh[:, k] <= c.max_charge_kw * c.dwell_h.high + 1e-9).all()
    # Three chargers, two busy for the first 4 steps: of 5 expected at step 0 one finds a
    # charger; of 2 at step 4, after those left, both do.
    got = admitted(np.array([5.0, 2.0]), np.array([0, 4]), np.array([6, 8]),
                   np.array([2.0] * 4 + [0.0] * 6), 3)
    np.testing.assert_allclose(got, [1.0, 2.0])
