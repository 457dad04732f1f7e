"""The demand charge inside ADMM: the level search against cvxpy, the certified ADMM against
the central solve (``mpc``'s problem), and the fill that never sets a new peak."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from evgrid.agents.centralised import centralised_plan
from evgrid.coordinator import AdmmConfig, solve_period
from evgrid.coordinator.demand import DemandCharge, demand_levels, demand_worth
from tests.unit.test_admm import wired


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), h=st.integers(1, 8))
def test_demand_level_matches_cvxpy(seed: int, h: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.uniform(-5, 60, (1, h))
    n = rng.integers(0, 4, (1, h)).astype(float)
    cap = rng.uniform(1, 50, (1, h))
    weight, peak = np.array([rng.uniform(0.1, 30)]), np.array([[rng.uniform(0, 20)]])
    level = demand_levels(a, n, cap, np.zeros(h, dtype=np.int64), weight, peak)[0, 0]

    def value(L: float) -> float:
        z = np.minimum(cap[0], L)
        on = n[0] > 0
        return float((np.maximum(a[0] - z, 0)[on] ** 2 / (2 * n[0][on])).sum()
                     + weight[0] * max(L - peak[0, 0], 0.0))

    L = cp.Variable()
    z = cp.Variable(h)
    on = n[0] > 0
    terms = cp.sum(cp.multiply(1 / np.where(on, 2 * n[0], 1.0), cp.square(cp.pos(a[0] - z))))
    if (~on).any():
        terms = cp.sum(cp.multiply(on / np.where(on, 2 * n[0], 1.0),
                                   cp.square(cp.pos(a[0] - z))))
    prob = cp.Problem(cp.Minimize(terms + weight[0] * cp.pos(L - peak[0, 0])),
                      [z <= cap[0], z <= L])
    prob.solve(solver="CLARABEL")
    assert level >= peak[0, 0]
    assert value(level) <= prob.value + 1e-5 * max(1.0, abs(prob.value))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), g=st.integers(1, 3), h=st.integers(1, 6))
def test_demand_worth_bounds_the_net_worth_of_the_limits(seed: int, g: int, h: int) -> None:
    """An upper bound on max Σ y·Z − charge over the zone and city limits (brute force by LP)."""
    rng = np.random.default_rng(seed)
    y = rng.uniform(0, 3, (g, h))
    n = rng.integers(0, 3, (g, h)).astype(float)
    cap = rng.uniform(1, 40, (g, h))
    city = rng.uniform(1, 80, h)
    window = np.sort(rng.integers(0, 2, h))
    rate = rng.uniform(0, 5, 2)
    peak = rng.uniform(0, 10, (g, 2))
    bound = demand_worth(y, n, cap, window, rate, peak)
    z = cp.Variable((g, h), nonneg=True)
    lv = cp.Variable((g, 2))
    cons = [z <= cap * (n > 0), cp.sum(z, axis=0) <= city, lv >= peak]
    for k in range(2):
        for t in np.flatnonzero(window == k):
            cons.append(z[:, t] <= lv[:, k])
    prob = cp.Problem(cp.Maximize(cp.sum(cp.multiply(y, z)) - cp.sum(
        cp.multiply(rate[None, :], lv - peak))), cons)
    prob.solve(solver="CLARABEL")
    assert bound >= prob.value - 1e-6 * max(1.0, abs(prob.value))


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(1, 10), rate=st.floats(0.5, 20.0),
       p0=st.floats(0.0, 40.0))
def test_admm_with_a_demand_charge_matches_the_central_solve(
    seed: int, n: int, rate: float, p0: float
) -> None:
    """mpc's problem solved by ADMM: certified within 0.1 % of the central optimum."""
    inst, pack, coord = wired(n, seed, AdmmConfig(max_iter=400))
    h, g = inst.zone_limit_kw.shape
    window = (np.arange(h) >= h // 2).astype(np.int64)  # two billing windows in the horizon
    peak = np.zeros((g, 2))
    peak[:, 0] = p0
    demand = DemandCharge(np.array([rate, rate / 2]), window, peak)
    zone_of = np.array([inst.zone_ids.index(z) for z in inst.grid_zones])
    central = centralised_plan(pack, zone_of, inst.zone_limit_kw, inst.city_limit_kw, demand)
    stats = solve_period(coord, pack, horizon_start=0, zone_limit_kw=inst.zone_limit_kw,
                         city_limit_kw=inst.city_limit_kw, demand=demand)
    opt = central.objective
    assert stats.gap_bound <= 1e-3, stats
    assert abs(stats.objective - opt) <= 1e-3 * abs(opt) + 1e-6, (stats.objective, opt)
    assert stats.lower_bound <= opt + 1e-6 * abs(opt), (stats.lower_bound, opt)
    # Executed now: never above a zone's agreed level (which is at least the peak so far).
    agreed, _ = coord.settle()
    now = np.bincount(zone_of, weights=[agreed[a] for a in coord.plans()], minlength=g)
    level = coord._p.level
    assert level is not None and (level[:, 0] >= p0 - 1e-9).all()
    assert (now <= level[:, 0] * (1 + 1e-9) + 1e-6).all()
