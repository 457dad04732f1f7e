"""Seed 000's resource allocation module: the MIP against brute force, the heuristics'
feasibility, ACAS's selection, and the allocation as a router on the 2,102-space lot."""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from evgrid.agents.policies import make_policy
from evgrid.envs import Simulator
from evgrid.envs.simulator import Arrivals
from evgrid.envs.world import build_world
from evgrid.optim.allocation import (
    METHODS,
    N1_DEFAULT,
    N2_DEFAULT,
    AllocationProblem,
    allocate,
    check_feasible,
    make_allocation,
    random_problem,
    select_method,
    solve_mip,
)
from evgrid.optim.allocation_pso import PSOConfig, solve_pso
from evgrid.optim.allocation_rhh import solve_rhh
from evgrid.optim.layered_router import LayeredRouter
from evgrid.scenario import load_scenario

FAST_PSO = PSOConfig(swarm=10, iterations=15)


def exact_cost(p: AllocationProblem, station: np.ndarray) -> float | None:
    """Eq. 8 + unmet penalty of a fixed assignment with its optimal powers — an LP written
    from Eq. 11–16 directly (battery states E_{v,t} as variables, Eq. 14 as equalities),
    independent of the module's own dispatch. ``None`` if P_min makes it infeasible."""
    v_n, _, t_n = p.shape
    on = [(v, t) for v in range(v_n) for t in range(t_n) if station[v, t] >= 0]
    stay = [(v, t) for v in range(v_n) for t in range(p.arrival[v], p.departure[v])]
    n_po, n_e = len(on), len(stay)
    nvar = n_po + n_e + v_n
    po = {k: i for i, k in enumerate(on)}
    e = {k: n_po + i for i, k in enumerate(stay)}
    c = np.zeros(nvar)
    bounds: list[tuple[float, float | None]] = []
    for v, t in on:
        c[po[v, t]] = p.alpha1 * p.price_per_kwh[t] * p.dt_h
        hi = float(min(p.vehicle_max_kw[v], p.station_max_kw[station[v, t]]))
        if hi < p.p_min_kw:
            return None
        bounds.append((p.p_min_kw, hi))
    bounds += [(0.0, float(p.battery_kwh[v])) for v, _ in stay]  # Eq. 15
    bounds += [(0.0, None)] * v_n
    c[n_po + n_e:] = p.unmet_penalty_per_kwh
    a_eq, b_eq, a_ub, b_ub = [], [], [], []
    for v, t in stay:  # Eq. 14: E_t − E_{t−1} − η Δt PO_t = 0 (E_{a−1} = e_init)
        row = np.zeros(nvar)
        row[e[v, t]] = 1.0
        rhs = 0.0
        if t == p.arrival[v]:
            rhs = float(p.e_init_kwh[v])
        else:
            row[e[v, t - 1]] = -1.0
        if (v, t) in po:
            row[po[v, t]] = -p.eta * p.dt_h
        a_eq.append(row)
        b_eq.append(rhs)
    for t in range(t_n):  # Eq. 11
        row = np.zeros(nvar)
        for v, tt in on:
            if tt == t:
                row[po[v, tt]] = 1.0
        a_ub.append(row)
        b_ub.append(float(p.grid_limit_kw[t]))
    for v in range(v_n):  # Eq. 16 soft: E_dep + u ≥ E_req
        row = np.zeros(nvar)
        row[e[v, p.departure[v] - 1]] = -1.0
        row[n_po + n_e + v] = -1.0
        a_ub.append(row)
        b_ub.append(-float(p.e_req_kwh[v]))
    res = linprog(c, A_ub=np.array(a_ub), b_ub=b_ub, A_eq=np.array(a_eq), b_eq=b_eq,
                  bounds=bounds, method="highs")
    if res.status != 0:
        return None
    reloc = sum(p.relocation_cost[v, station[v, t]] for v, t in on)
    return float(res.fun) + p.alpha2 * float(reloc)


def brute_force(p: AllocationProblem) -> float:
    """min over every assignment obeying Eq. 9, 10, 17 and presence of its exact cost."""
    v_n, s_n, t_n = p.shape
    present = p.present()
    best = np.inf
    for combo in itertools.product(range(-1, s_n), repeat=v_n * t_n):
        station = np.array(combo).reshape(v_n, t_n)
        on = station >= 0
        if (on & ~present).any():
            continue
        vv, tt = np.nonzero(on)
        if not p.eligible[vv, station[vv, tt]].all():
            continue
        if any(len(set(station[on[:, t], t])) < on[:, t].sum() for t in range(t_n)):
            continue  # Eq. 10
        cost = exact_cost(p, station)
        if cost is not None:
            best = min(best, cost)
    return best


def tiny(seed: int, p_min: float) -> AllocationProblem:
    """2 vehicles × 2 stations × 2 periods, a tight grid, one zone rule."""
    rng = np.random.default_rng(seed)
    battery = np.array([40.0, 60.0])
    e_init = rng.uniform(5.0, 20.0, 2)
    return AllocationProblem(
        arrival=np.array([0, rng.integers(0, 2)]), departure=np.array([2, 2]),
        e_init_kwh=e_init, e_req_kwh=np.minimum(battery, e_init + rng.uniform(4.0, 15.0, 2)),
        battery_kwh=battery, vehicle_max_kw=np.array([11.0, 22.0]),
        eligible=np.array([[True, True], [rng.random() < 0.5, True]]),
        station_max_kw=np.array([7.4, 22.0]), station_zone=np.array([0, 1]),
        station_xy_km=rng.uniform(0, 0.1, (2, 2)), price_per_kwh=rng.uniform(0.1, 0.4, 2),
        grid_limit_kw=rng.uniform(8.0, 30.0, 2), relocation_cost=rng.uniform(0.0, 0.5, (2, 2)),
        dt_h=0.5, alpha2=0.3, p_min_kw=p_min)


@pytest.mark.parametrize("p_min", [0.0, 4.0])
@pytest.mark.parametrize("seed", range(4))
def test_mip_equals_brute_force(seed: int, p_min: float) -> None:
    p = tiny(seed, p_min)
    mip = solve_mip(p, mip_rel_gap=0.0)
    assert check_feasible(p, mip) == []
    assert mip.mip_gap is not None and mip.mip_gap <= 1e-9
    assert mip.objective == pytest.approx(brute_force(p), rel=1e-6, abs=1e-6)


@settings(max_examples=15, deadline=None)
@given(v=st.integers(1, 8), s=st.integers(1, 5), t=st.integers(1, 6),
       seed=st.integers(0, 2**31 - 1), p_min=st.sampled_from([0.0, 1.4, 6.0]),
       grid_share=st.floats(0.02, 1.0))
def test_heuristics_are_feasible(v: int, s: int, t: int, seed: int, p_min: float,
                                 grid_share: float) -> None:
    """Capacity (Eq. 10), one station per EV (Eq. 9), grid (Eq. 11), power and battery
    bounds (Eq. 12–15), zones (Eq. 17) and presence, whatever the instance."""
    p = random_problem(v, s, t, seed=seed, p_min_kw=p_min, grid_share=grid_share)
    for alloc in (solve_pso(p, FAST_PSO, seed=seed), solve_rhh(p)):
        assert check_feasible(p, alloc) == [], alloc.method
        assert np.isfinite(alloc.objective)


def test_check_feasible_names_each_violation() -> None:
    p = tiny(0, 4.0)
    p = replace(p, eligible=np.array([[True, True], [False, True]]),
                arrival=np.array([0, 1]))
    station = np.array([[1, 0], [0, 0]])  # v1 on s0: outside its zone and before arrival;
    power = np.array([[22.0, 2.0], [7.4, 7.4]])  # s0 twice at t=1; 22 kW over a 11 kW EV
    bad = make_allocation(p, station, power, "test", 0.0)
    found = " | ".join(check_feasible(p, bad))
    for eq in ("presence", "Eq. 10", "Eq. 17", "Eq. 12", "Eq. 13"):
        assert eq in found, eq
    over = replace(p, grid_limit_kw=np.array([1.0, 1.0]))
    assert any("Eq. 11" in m for m in check_feasible(over, bad))


def test_selector_thresholds() -> None:
    assert select_method(N1_DEFAULT) == "mip"
    assert select_method(N1_DEFAULT + 1) == "pso"
    assert select_method(N2_DEFAULT) == "pso"
    assert select_method(N2_DEFAULT + 1) == "rhh"
    assert select_method(60, n1=50, n2=1000) == "pso"
    assert select_method(50, n1=50, n2=1000) == "mip"
    assert select_method(1001, n1=50, n2=1000) == "rhh"
    with pytest.raises(ValueError, match="n1 <= n2"):
        select_method(10, n1=100, n2=10)
    p = random_problem(4, 3, 4, seed=1)  # n = 48
    assert allocate(p).method == "mip"
    assert allocate(p, n1=10, n2=100, pso=FAST_PSO).method == "pso"
    assert allocate(p, n1=0, n2=0).method == "rhh"
    assert allocate(p, method="rhh").method == "rhh"


def test_pso_is_deterministic_per_seed() -> None:
    p = random_problem(6, 4, 6, seed=3)
    a, b = solve_pso(p, FAST_PSO, seed=7), solve_pso(p, FAST_PSO, seed=7)
    assert np.array_equal(a.station, b.station) and np.array_equal(a.power_kw, b.power_kw)
    assert a.objective == b.objective
    cold = replace(FAST_PSO, rhh_seed=False)
    c, d = solve_pso(p, cold, seed=7), solve_pso(p, cold, seed=7)
    assert np.array_equal(c.station, d.station) and c.objective == d.objective


@pytest.mark.parametrize("seed", range(3))
def test_mip_is_a_lower_bound_on_small_instances(seed: int) -> None:
    p = random_problem(5, 3, 5, seed=seed, p_min_kw=1.4)
    mip = solve_mip(p, mip_rel_gap=0.0)
    for alloc in (solve_pso(p, FAST_PSO, seed=seed), solve_rhh(p)):
        assert mip.objective <= alloc.objective + 1e-6, alloc.method


def test_bad_input_is_one_line() -> None:
    p = random_problem(3, 2, 4, seed=0)
    cases: dict[str, dict[str, Any]] = {
        "eligible has shape": {"eligible": np.ones((3, 3), dtype=bool)},
        "non-finite": {"price_per_kwh": np.array([0.1, np.nan, 0.1, 0.1])},
        "arrival < departure": {"departure": p.arrival.copy()},
        "eta": {"eta": 0.0},
        "exceed battery_kwh": {"e_init_kwh": p.battery_kwh + 1.0},
        "negative": {"grid_limit_kw": -np.ones(4)},
        "integer array": {"arrival": p.arrival.astype(float)},
    }
    for match, change in cases.items():
        with pytest.raises(ValueError, match=match) as err:
            replace(p, **change)
        assert "\n" not in str(err.value)


def test_layered_router_on_lot2102() -> None:
    """Half a day of the 2,102-space lot (the morning peak included), routed by RHH: every
    EV goes to one of its candidate slots, and every call is recorded."""
    sc = load_scenario("lot2102").model_copy(update={"horizon_days": 0.5})
    router = LayeredRouter(build_world(sc), n1=0, n2=0, window_steps=8)
    outside: list[int] = []

    def checked(arrivals: Arrivals) -> np.ndarray:
        slots = router(arrivals)
        if not arrivals.candidates()[np.arange(len(arrivals)), slots].all():
            outside.append(arrivals.t)
        return slots

    sim = Simulator(sc, seed=0, router=checked)
    result = sim.run(make_policy("llf"))
    assert outside == []
    assert (result.slot >= 0).any()
    calls = [s for s in router.stats if s.n_evs]
    assert calls and {s.method for s in calls} <= {"rhh", "none"}
    assert sum(s.allocated for s in calls) > 0.5 * sum(s.n_evs for s in calls)
    assert max(s.n_evs for s in calls) >= 10  # the peak was reached
    summary = router.summary()
    assert summary["calls"] == len(calls)


def test_layered_router_follows_acas() -> None:
    """With default thresholds a small call goes to the MIP; forced methods are honoured."""
    sc = load_scenario("lot2102").model_copy(update={"horizon_days": 0.1})
    world = build_world(sc)
    sim = Simulator(sc, seed=0)
    view = None
    while view is None or len(view) == 0:
        view = sim.upcoming()
        sim.step(np.zeros(world.n_chargers))
    for method in METHODS:
        router = LayeredRouter(world, method=method, window_steps=4, pso=FAST_PSO)
        slots = router(view)
        assert view.candidates()[np.arange(len(view)), slots].all()
        assert router.stats[-1].method == method
    auto = LayeredRouter(world, window_steps=2)
    auto(view)
    assert auto.stats[-1].method == select_method(auto.stats[-1].n)


def test_slot_penalty_steers_the_allocation() -> None:
    """§3.6's RAM adaptation: a per-slot penalty (km) makes the allocation avoid a slot."""
    sim = Simulator(load_scenario("small"), seed=0)
    view = sim.upcoming()
    while len(view) < 3:
        sim.step(np.zeros(sim.world.n_chargers))
        view = sim.upcoming()
    assert (view.candidates().sum(axis=1) > 1).all()  # a choice between facilities
    router = LayeredRouter(sim.world, method="rhh")
    base = router(view)
    penalty = np.zeros(sim.world.n_slots)
    penalty[base] = 100.0
    router.slot_penalty_km = penalty
    steered = router(view)
    assert view.candidates()[np.arange(len(view)), steered].all()
    assert np.isin(steered, base).sum() < np.isin(base, base).sum()
    assert router.calls[-1]["method"] == "rhh" and len(router.calls) == 2


def test_overflow_sends_evs_only_to_their_zone_or_a_general_one() -> None:
    """``overflow_km`` (Eq. 17's zone choice): with its SoC zone full an EV may park in a
    general zone of the same facility instead of queueing, and nowhere else."""
    sc = load_scenario("lot2102").model_copy(update={"horizon_days": 0.5})
    world = build_world(sc)
    router = LayeredRouter(world, n1=0, n2=0, overflow_km=0.2)
    general = np.isnan(world.slot_soc_lo)
    overflowed: list[int] = []

    def checked(arrivals: Arrivals) -> np.ndarray:
        slots = router(arrivals)
        own = arrivals.candidates()[np.arange(len(arrivals)), slots]
        assert (own | general[slots]).all()
        overflowed.extend(slots[~own].tolist())
        return slots

    Simulator(sc, seed=0, router=checked).run(make_policy("llf"))
    assert overflowed  # a full zone overflowed at some point of the morning peak
