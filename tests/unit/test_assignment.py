"""Seed 003's GAP (003_48b05ca88a329b62.txt): the MILP against brute force, every heuristic's
feasibility, infeasibility reporting, reproducible instances, HASP reaching the optimum."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evgrid.evaluation.paper003_gap import compare_algorithms
from evgrid.optim.assignment import (
    METHODS,
    GapInstance,
    InfeasibleAssignment,
    brute_force,
    gap_cost,
    is_feasible,
    make_instance,
    objective,
    solve,
    solve_exact,
)

HEURISTICS = [m for m in METHODS if m != "milp"]
SMALL = {"hasp": {"generations": 20}, "tabu": {"iterations": 200}, "bees": {"iterations": 15},
         "de": {"generations": 20}}


def random_instance(seed: int, n: int, m: int) -> GapInstance:
    """A random instance with range holes and piles that are tight but (Hall) feasible."""
    rng = np.random.default_rng(seed)
    cost = rng.uniform(1.0, 10.0, (n, m)).round(2)
    feasible = rng.random((n, m)) < 0.7
    feasible[np.arange(n), rng.integers(0, m, n)] = True
    home = np.argmax(feasible * rng.random((n, m)), axis=1)  # one feasible assignment
    capacity = np.bincount(home, minlength=m) + rng.integers(0, 2, m)
    return GapInstance(cost=cost, feasible=feasible, capacity=capacity.astype(np.int64))


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 6), m=st.integers(1, 4))
def test_milp_matches_brute_force(seed: int, n: int, m: int) -> None:
    inst = random_instance(seed, n, m)
    exact, brute = solve_exact(inst), brute_force(inst)
    assert exact.feasible and brute.feasible
    assert exact.objective == pytest.approx(brute.objective, rel=1e-9, abs=1e-9)
    assert objective(inst, exact.station) == pytest.approx(exact.objective)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 30), m=st.integers(1, 8))
def test_heuristics_always_feasible(seed: int, n: int, m: int) -> None:
    inst = random_instance(seed, n, m)
    opt = solve_exact(inst).objective
    for method in HEURISTICS:
        a = solve(inst, method, seed=seed, **SMALL[method])
        assert a.feasible and is_feasible(inst, a.station), method
        assert a.objective >= opt - 1e-6 * abs(opt), method


def test_infeasible_instances_say_why() -> None:
    cost = np.ones((3, 2))
    ok = np.ones((3, 2), dtype=bool)
    with pytest.raises(InfeasibleAssignment, match="piles for 3 EVs"):
        solve(GapInstance(cost, ok, np.array([1, 1])), "hasp")
    no_range = ok.copy()
    no_range[1] = False
    with pytest.raises(InfeasibleAssignment, match=r"reach no station.*EV 1"):
        solve_exact(GapInstance(cost, no_range, np.array([2, 2])))
    hall = np.array([[True, False], [True, False], [True, True]])
    with pytest.raises(InfeasibleAssignment, match="at most 2 of 3"):
        solve(GapInstance(cost, hall, np.array([1, 5])), "milp")


def test_make_instance_reproducible_and_feasible() -> None:
    a, b, c = make_instance(40, 8, seed=3), make_instance(40, 8, seed=3), make_instance(40, 8, 4)
    assert np.array_equal(a.cost, b.cost) and np.array_equal(a.feasible, b.feasible)
    assert np.array_equal(a.capacity, b.capacity)
    assert not np.array_equal(a.cost, c.cost)
    assert not a.feasible.all()  # range binds somewhere
    assert a.capacity.sum() < 1.25 * a.n  # tight piles
    assert solve_exact(a).feasible


def test_heuristics_deterministic_per_seed() -> None:
    inst = make_instance(30, 6, seed=1)
    for method in HEURISTICS:
        x = solve(inst, method, seed=5, **SMALL[method]).station
        assert np.array_equal(x, solve(inst, method, seed=5, **SMALL[method]).station), method


@pytest.mark.parametrize(("n", "m", "seed"), [(10, 5, 0), (30, 12, 1), (60, 10, 2)])
def test_hasp_reaches_optimum(n: int, m: int, seed: int) -> None:
    inst = make_instance(n, m, seed=seed)
    opt = solve_exact(inst).objective
    assert solve(inst, "hasp", seed=0).objective == pytest.approx(opt, rel=1e-9)
    assert solve(inst, "auto").objective == pytest.approx(opt, rel=1e-9)


def test_gap_cost_broadcasts() -> None:
    drive = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    out = gap_cost(drive, np.array([0.5, 1.0]), np.array([2.0, 3.0]), np.array([1.0, 2.0, 0.0]),
                   c_drive=1.0, c_walk=2.0)
    assert out.shape == (3, 2)
    assert out[1, 1] == pytest.approx(4.0 + 2.0 * 1.0 + 3.0 * 2.0)


def test_compare_algorithms_quick() -> None:
    calls: list[int] = []
    res = compare_algorithms([0], quick=True, progress=lambda _w, d, _t: calls.append(d))
    assert res["summary"]["milp"]["success_pct_mean"] == 100.0
    assert res["summary"]["hasp"]["infeasible"] == 0
    assert calls and calls[-1] == res["instances"]
