"""``--routing reservations``: seed 004's reservation and walk-in drivers on the city simulator.

Seed 004 (004_8f5fa6c845a0843d.txt) serves two kinds of driver: those who reserve (high
priority; each cohort's ``reservation_share`` of its drivers) and random walk-ins. Each zone
holds back a number of its chargers for reservations (§2.2, from queueing:
:func:`evgrid.optim.reserved_piles.reserved_pile_count` at the zone's arrival rates), walk-ins
are spread over lightly loaded zones by simulated annealing (§3,
:mod:`evgrid.optim.sa_routing`), and reserved drivers are matched to a held charger.

On this simulator a router decides where an arriving EV goes, once; the queue at a zone is
first-come first-served. So a reservation here *holds* chargers at routing time: a walk-in is
never sent to a zone's last ``reserved`` free chargers while a zone with a free unreserved one
is in range, and a reserved driver may take any free charger, nearest (by seed 003's cost)
first. Reserved drivers are matched greedily here; the learned matcher of §4 runs on seed 004's
own regional model (``evgrid evaluate paper-004``), whose queues know priorities.

Who reserves is drawn per session from a hash of its index and the seed, so every policy and
every rerun sees the same drivers reserve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evgrid.envs.simulator import Arrivals, assign_by_preference
from evgrid.envs.world import World
from evgrid.optim.assignment_router import (
    CONSUMPTION_KWH_PER_KM,
    DRIVE_KMH,
    WALK_KMH,
    driver_costs,
    mean_dwell_h,
    prior_slot_rates,
)
from evgrid.optim.reserved_piles import reserved_pile_count
from evgrid.optim.sa_routing import anneal_walkin_shares, route_walkin
from evgrid.scenario.schema import Scenario, as_hourly

#: Walk-in origins are grouped into this many sub-regions (quadrants around the city centre).
SUBREGIONS = 4
#: At most this many chargers held per zone (the paper's last table holds 0–2).
MAX_HELD = 2
#: Re-anneal the walk-in shares this often [h] (seed 004 §3 re-plans as loads change).
REPLAN_H = 1.0


def reserves(evs: np.ndarray, cohort: np.ndarray, share: np.ndarray, seed: int) -> np.ndarray:
    """[n] bool: whether each session reserves — a splitmix64 hash of (session index, seed)
    against its cohort's ``reservation_share`` (replayed sessions, cohort −1, never do)."""
    with np.errstate(over="ignore"):
        x = evs.astype(np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    u = (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    p = np.where(cohort >= 0, share[np.maximum(cohort, 0)], 0.0)
    return u < p


def peak_factor(scenario: Scenario) -> float:
    """The busiest hour's arrival rate over the day's mean (cohorts' profiles, by share)."""
    total = np.zeros(24)
    for c in scenario.cohorts:
        prof = np.asarray(as_hourly(c.arrival_profile), dtype=float)
        total += c.share * prof / prof.sum()
    return float(24 * total.max() / max(total.sum(), 1e-12))


def subregion_of(origin_xy_km: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """[n] quadrant (0–3) of each origin around the centre."""
    east = origin_xy_km[:, 0] >= centre[0]
    north = origin_xy_km[:, 1] >= centre[1]
    return east.astype(np.int64) + 2 * north.astype(np.int64)


@dataclass
class ReservationStats:
    reserved: int = 0
    walkins: int = 0
    took_held: int = 0  # walk-ins that found only held chargers free in range, and took one
    replans: int = 0


class ReservationRouter:
    """A simulator router for reserved and walk-in drivers (see the module docstring)."""

    def __init__(self, world: World, *, seed: int = 0) -> None:
        sc = world.scenario
        self.world = world
        self.seed = seed
        self.share = np.array([c.reservation_share for c in sc.cohorts] or [0.0])
        weights = np.array([c.share for c in sc.cohorts] or [1.0])
        reserved_share = float((weights * self.share).sum() / max(weights.sum(), 1e-9))
        self.mu_per_h = 1.0 / max(mean_dwell_h(world), 1e-6)
        # plan the held chargers for the busiest hour, as an operator sizes a reservation pool
        rate = prior_slot_rates(world) * peak_factor(sc)
        self.held = np.array([
            reserved_pile_count(int(c), self.mu_per_h, r * reserved_share,
                                r * (1 - reserved_share), max_reserved=MAX_HELD).reserved
            if c > 0 else 0
            for c, r in zip(world.slot_chargers, rate, strict=True)], dtype=np.int64)
        self.open_to_walkins = np.maximum(world.slot_chargers - self.held, 0)
        self.centre = world.slot_xy_km.mean(axis=0)
        corners = np.array([[-1, -1], [1, -1], [-1, 1], [1, 1]], dtype=float)
        half = np.maximum(np.ptp(world.slot_xy_km, axis=0) / 2, 0.5)
        self.region_xy = self.centre[None, :] + corners * half[None, :] / 2
        self.region_rate = np.full(SUBREGIONS, rate.sum() * (1 - reserved_share) / SUBREGIONS)
        self.travel_h = np.linalg.norm(self.region_xy[:, None, :] - world.slot_xy_km[None],
                                       axis=2) / DRIVE_KMH + world.slot_walk_km[None, :] / WALK_KMH
        self.shares: np.ndarray | None = None
        self.planned_at = -np.inf
        self.stats = ReservationStats()

    def _replan(self, arrivals: Arrivals, free_walkin: np.ndarray) -> np.ndarray:
        t_h = arrivals.t * self.world.dt_h
        if self.shares is None or t_h - self.planned_at >= REPLAN_H - 1e-9:
            self.shares = anneal_walkin_shares(
                self.region_rate, self.travel_h, free_walkin, self.mu_per_h,
                arrivals.queued.astype(float), servers=self.open_to_walkins,
                seed=self.seed + arrivals.t)
            self.planned_at = t_h
            self.stats.replans += 1
        return self.shares

    def __call__(self, arrivals: Arrivals) -> np.ndarray:
        n = len(arrivals)
        slots = np.zeros(n, dtype=np.int64)
        if n == 0:
            return slots
        w = self.world
        drive_km = np.linalg.norm(arrivals.origin_xy_km[:, None, :] - w.slot_xy_km[None], axis=2)
        cand = arrivals.candidates()
        range_km = arrivals.arrival_soc * arrivals.battery_kwh / CONSUMPTION_KWH_PER_KM
        reach = cand & (drive_km <= range_km[:, None])
        reach = np.where(reach.any(axis=1, keepdims=True), reach, cand)
        vot = np.ones(n)  # reserved drivers rank zones by distance, walk and fee alike
        cost = driver_costs(drive_km, w.slot_walk_km[None, :], w.slot_fee_per_kwh,
                            arrivals.requested_kwh, vot)
        booked = reserves(arrivals.evs, arrivals.cohort, self.share, self.seed)
        free = arrivals.free.astype(np.int64).copy()
        r = np.flatnonzero(booked)
        if r.size:
            slots[r] = assign_by_preference(reach[r], cost[r], free)
            took = np.bincount(slots[r], minlength=w.n_slots)
            free = np.maximum(free - np.minimum(took, free), 0)
        walk = np.flatnonzero(~booked)
        if walk.size:
            free_walkin = np.maximum(free - self.held, 0)
            shares = self._replan(arrivals, free_walkin)
            region = subregion_of(arrivals.origin_xy_km[walk], self.centre)
            rng = np.random.default_rng((self.seed, arrivals.t))
            travel = drive_km[walk] / DRIVE_KMH + w.slot_walk_km[None, :] / WALK_KMH
            load = arrivals.queued / np.maximum(w.slot_chargers, 1)
            for i, k in enumerate(walk):
                s = route_walkin(shares[region[i]], travel[i], free_walkin, reach[k], rng,
                                 load=load)
                if free_walkin[s] > 0:
                    free_walkin[s] -= 1
                elif (free[s] > 0) and reach[k, s]:
                    self.stats.took_held += 1
                slots[k] = s
            per_h = np.bincount(region, minlength=SUBREGIONS) / w.dt_h
            self.region_rate += 0.1 * (per_h - self.region_rate)
        self.stats.reserved += int(r.size)
        self.stats.walkins += int(walk.size)
        return slots

    def summary(self) -> dict[str, int]:
        s = self.stats
        return {"reserved": s.reserved, "walkins": s.walkins, "took_held": s.took_held,
                "replans": s.replans, "held_chargers": int(self.held.sum())}
