"""Seeds 003 and 004 as simulator routers: ``--routing assignment`` and ``--routing
reservations`` keep to the SoC zones and the range, hold chargers for reservations, and the
cohort agents price the wait with the availability forecast."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from evgrid.agents.policies import make_policy
from evgrid.envs.kpis import compute_kpis
from evgrid.envs.simulator import Arrivals, Simulator
from evgrid.envs.world import build_world
from evgrid.optim.assignment_router import CONSUMPTION_KWH_PER_KM, AssignmentRouter
from evgrid.optim.reservation_router import ReservationRouter, reserves
from evgrid.scenario import load_scenario

Calls = list[tuple[Arrivals, np.ndarray]]


def recorded(router: Callable[[Arrivals], np.ndarray], calls: Calls
             ) -> Callable[[Arrivals], np.ndarray]:
    def route(a: Arrivals) -> np.ndarray:
        slots = router(a)
        calls.append((a, slots))
        return slots
    return route


def run_day(router_cls: type, seed: int = 0) -> tuple[Calls, object, dict[str, float]]:
    sc = load_scenario("small")
    world = build_world(sc)
    router = router_cls(world, seed=seed)
    calls: Calls = []
    sim = Simulator(sc, seed=seed, world=world, router=recorded(router, calls))
    result = sim.run(make_policy("llf", world))
    return calls, router, compute_kpis(result)


def test_assignment_router_keeps_soc_zones_range_and_limits() -> None:
    calls, router, k = run_day(AssignmentRouter)
    assert k["limit_violations"] == 0
    assert sum(len(a) for a, _ in calls) == k["sessions"]
    for a, slots in calls:
        cand = a.candidates()
        assert cand[np.arange(len(a)), slots].all(), "routed outside the EV's SoC zone"
        drive = np.linalg.norm(a.origin_xy_km - a.world.slot_xy_km[slots], axis=1)
        range_km = a.arrival_soc * a.battery_kwh / CONSUMPTION_KWH_PER_KM
        assert (drive <= range_km + 1e-9).all(), "sent beyond the EV's range"
    summary = router.summary()  # type: ignore[attr-defined]
    assert summary["evs"] == k["sessions"] and summary["methods"] == {"milp": summary["calls"]}


def test_reserving_drivers_are_a_stable_hashed_share() -> None:
    evs = np.arange(200_000)
    cohort = evs % 3
    share = np.array([0.1, 0.3, 0.0])
    a = reserves(evs, cohort, share, seed=4)
    assert (a == reserves(evs, cohort, share, seed=4)).all()
    assert not (a == reserves(evs, cohort, share, seed=5)).all()
    for k, p in enumerate(share):
        assert a[cohort == k].mean() == pytest.approx(p, abs=0.005)
    assert not reserves(evs, np.full(evs.size, -1), share, seed=4).any()  # replayed sessions


def test_walkins_keep_off_held_chargers_while_an_unheld_one_is_free_in_range() -> None:
    calls, router, k = run_day(ReservationRouter)
    assert k["limit_violations"] == 0
    held = router.held  # type: ignore[attr-defined]
    assert held.sum() > 0, "small holds chargers at its busiest hour"
    share = router.share  # type: ignore[attr-defined]
    checked = 0
    for a, slots in calls:
        booked = reserves(a.evs, a.cohort, share, 0)
        free = a.free.astype(np.int64).copy()
        taken = np.bincount(slots[booked], minlength=free.size)
        free = np.maximum(free - np.minimum(taken, free), 0)
        open_ = np.maximum(free - held, 0)
        drive = np.linalg.norm(a.origin_xy_km[:, None, :] - a.world.slot_xy_km[None], axis=2)
        range_km = a.arrival_soc * a.battery_kwh / CONSUMPTION_KWH_PER_KM
        reach = a.candidates() & (drive <= range_km[:, None])
        for i in np.flatnonzero(~booked):
            if (reach[i] & (open_ > 0)).any():
                assert open_[slots[i]] > 0, "a walk-in took a held charger with one free"
                checked += 1
            if open_[slots[i]] > 0:
                open_[slots[i]] -= 1
    assert checked > 20
