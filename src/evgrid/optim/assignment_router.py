"""``--routing assignment``: every step's arrivals assigned to charging zones by seed 003's GAP.

Seed 003 (003_48b05ca88a329b62.txt) assigns the EVs that ask for a charger in one period to
stations, minimising drive + walk + fee (the GAP objective) under pile capacity and range
(remaining range ≥ drive distance). Here each step's arrivals form one instance:

- the columns are the facility zones ("slots") several times: *connect now* with the slot's
  free chargers as capacity, then *queue positions* 1..P (one driver each) and the rest of the
  queue (unbounded), so the instance is always feasible and a driver queues only where that is
  cheaper than driving on;
- a column's cost is the paper's coefficient in money (the cohort's value of time turns km
  into currency, as the cohort agents do) plus, for a queue column, the expected wait priced
  at the same value of time. The wait is seed 003's M/M/c/c availability forecast
  (:func:`evgrid.optim.availability.expected_wait_h`) at the slot's current arrival rate,
  plus the queue already ahead and the drivers queued before it in the same step (each served
  at the slot's total rate c·μ), and at least one step: the simulator connects a queued driver
  at the next step at the earliest (without that floor the realised waits ran 24 % over the
  forecast on the city at 1.4× and the router lost to nearest-free);
- eligibility is the SoC zone rule of the simulator (``candidate_slots``) and the range; with
  ``radius`` (``--routing assignment-radius``) also seed 003's allocation region: zones within
  a radius that shrinks with the driver's SoC and grows with the city's occupancy
  (:func:`evgrid.optim.availability.allocation_radius_km`), widened to the nearest free
  charger. On our cities it costs drivers more (it cuts off cheaper zones further away);
  ``evgrid evaluate paper-003`` reports both.

An EV that can reach no eligible slot (its range is too short for all of them) goes to its
nearest eligible slot anyway — it is already on its way, and refusing it would drop a driver
from the day. Such cases are counted in ``stats``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from evgrid.envs.simulator import Arrivals
from evgrid.envs.world import World
from evgrid.optim.assignment import GapInstance, gap_cost, solve
from evgrid.optim.availability import allocation_radius_km, expected_wait_h

#: Energy use per km for the range check (a mid-size EV in town) [kWh/km].
CONSUMPTION_KWH_PER_KM = 0.18
DRIVE_KMH = 30.0  # urban speed: a detour's time, and τ of the availability forecast
WALK_KMH = 5.0
DRIVE_COST_PER_KM = 0.2  # running cost of a detour [currency/km]
#: Queue positions priced one by one in a step's GAP (the rest at position P + 1).
QUEUE_POSITIONS = 3
#: The availability forecast's τ is rounded to 1/TAU_PER_H hours.
TAU_PER_H = 12
#: Smoothing of each slot's observed arrival rate (per routed step).
RATE_EMA = 0.1


def driver_costs(drive_km: np.ndarray, walk_km: np.ndarray, fee_per_kwh: np.ndarray,
                 energy_kwh: np.ndarray, value_of_time_per_h: np.ndarray) -> np.ndarray:
    """Seed 003's GAP coefficient C_D·D + C_W·W + C_i·T_C in money, per driver and zone.

    C_D is the running cost plus the driver's time per km driven, C_W the time per km walked;
    the fee term C_i·T_C (fee per hour × hours charging) is the zone's fee per kWh × the energy
    asked for, the same product in the units our scenarios keep."""
    vot = value_of_time_per_h[:, None]
    return gap_cost(drive_km, walk_km, fee_per_kwh[None, :], energy_kwh[:, None],
                    c_drive=DRIVE_COST_PER_KM + vot / DRIVE_KMH, c_walk=vot / WALK_KMH)


def mean_dwell_h(world: World) -> float:
    """Arrival-weighted mean stay of the scenario's cohorts [h]: 1/μ of a pile."""
    cohorts = world.scenario.cohorts
    total = sum(c.share for c in cohorts)
    return float(sum(c.share * c.dwell_h.mean for c in cohorts) / max(total, 1e-9))


def prior_slot_rates(world: World) -> np.ndarray:
    """[S] arrivals per hour at each zone before any is observed: the city's mean hourly rate
    shared in proportion to chargers."""
    chargers = world.slot_chargers.astype(float)
    per_h = world.scenario.arrivals_per_day / 24.0
    return per_h * chargers / max(chargers.sum(), 1.0)


@dataclass
class AssignmentStats:
    calls: int = 0
    evs: int = 0
    queued: int = 0  # EVs assigned to a queue column
    out_of_range: int = 0  # EVs no eligible zone was in range of
    methods: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


class AssignmentRouter:
    """A simulator router (``Router``) that solves seed 003's GAP for each step's arrivals."""

    def __init__(self, world: World, *, seed: int = 0, method: str = "auto",
                 radius: bool = False) -> None:
        self.world = world
        self.radius = radius
        self.seed = seed
        self.method = method
        self.mu_per_h = 1.0 / max(mean_dwell_h(world), 1e-6)
        self.rate_per_h = prior_slot_rates(world)
        self.vot = np.array([c.value_of_time_per_h for c in world.scenario.cohorts] or [0.0])
        #: the allocation radius of a full battery at an empty city: a quarter of the city's
        #: span (at least 1 km); 003 gives no figure
        self.radius_km = max(float(np.ptp(world.slot_xy_km, axis=0).max()) / 4, 1.0)
        self.stats = AssignmentStats()

    def wait_h(self, arrivals: Arrivals) -> np.ndarray:
        """[n, S] expected wait of a driver who queues at each zone: the M/M/c/c forecast of
        no free pile after the drive (τ = drive time), plus the queue ahead at rate c·μ."""
        w = self.world
        c = np.maximum(w.slot_chargers, 1)
        drive_h = np.linalg.norm(arrivals.origin_xy_km[:, None, :] - w.slot_xy_km[None],
                                 axis=2) / DRIVE_KMH
        # τ on a 5-minute grid: one matrix exponential per zone and grid point, not per driver
        tau = np.unique(np.round(drive_h * TAU_PER_H) / TAU_PER_H, return_inverse=True)
        grid = expected_wait_h(c[None, :], self.rate_per_h[None, :], self.mu_per_h,
                               np.zeros((tau[0].size, c.size), dtype=np.int64),
                               tau[0][:, None])
        forecast = grid[tau[1].reshape(drive_h.shape), np.arange(c.size)[None, :]]
        ahead = arrivals.queued[None, :] / (c[None, :] * self.mu_per_h)
        return np.asarray(forecast, dtype=float) + ahead

    def instance(self, arrivals: Arrivals) -> tuple[GapInstance, np.ndarray]:
        """The step's GAP over (P + 2)·S columns (connect now | queue positions 1..P | the
        rest of the queue), and who is in range at all."""
        w = self.world
        drive_km = np.linalg.norm(arrivals.origin_xy_km[:, None, :] - w.slot_xy_km[None], axis=2)
        vot = np.where(arrivals.cohort >= 0, self.vot[np.maximum(arrivals.cohort, 0)],
                       float(self.vot.mean()))
        base = driver_costs(drive_km, w.slot_walk_km[None, :], w.slot_fee_per_kwh,
                            arrivals.requested_kwh, vot)
        range_km = arrivals.arrival_soc * arrivals.battery_kwh / CONSUMPTION_KWH_PER_KM
        eligible = arrivals.candidates()
        reach = eligible & (drive_km <= range_km[:, None])
        in_range = reach.any(axis=1)
        if self.radius:
            reach = self.within_radius(arrivals, reach, drive_km)
        # out of range everywhere: the nearest eligible zone (see the module docstring)
        nearest = np.argmin(np.where(eligible, drive_km, np.inf), axis=1)
        fallback = np.zeros_like(reach)
        fallback[np.arange(len(arrivals)), nearest] = True
        reach = np.where(in_range[:, None], reach, fallback)
        # queue positions 1..P (one driver each), then the rest: every driver queued in the
        # same step waits one more service interval 1/(c·μ) than the one before it; and the
        # plant connects a queued driver at the next step at the earliest
        first = np.maximum(self.wait_h(arrivals), w.dt_h)
        interval = 1.0 / (np.maximum(w.slot_chargers, 1) * self.mu_per_h)
        n, slots = len(arrivals), w.n_slots
        cost = np.concatenate([base] + [base + vot[:, None] * (first + p * interval[None, :])
                                        for p in range(QUEUE_POSITIONS + 1)], axis=1)
        feasible = np.tile(reach, (1, QUEUE_POSITIONS + 2))
        capacity = np.concatenate([arrivals.free.astype(np.int64),
                                   np.ones(slots * QUEUE_POSITIONS, dtype=np.int64),
                                   np.full(slots, n, dtype=np.int64)])
        return GapInstance(cost=cost, feasible=feasible, capacity=capacity), in_range

    def within_radius(self, arrivals: Arrivals, reach: np.ndarray,
                      drive_km: np.ndarray) -> np.ndarray:
        """003's allocation region: the zones within the radius the driver's SoC and the
        city's occupancy give, widened to the nearest zone in range with a free charger (the
        radius bounds the search; it never makes a driver queue while a charger is free in
        range). A driver with no zone inside it keeps every zone in range."""
        w = self.world
        chargers = max(int(w.slot_chargers.sum()), 1)
        occupancy = 1.0 - float(arrivals.free.sum()) / chargers
        radius = allocation_radius_km(arrivals.arrival_soc, occupancy, base_km=self.radius_km,
                                      min_km=self.radius_km / 3, max_km=3 * self.radius_km)
        free_km = np.where(reach & (arrivals.free[None, :] > 0), drive_km, np.inf).min(axis=1)
        radius = np.maximum(radius, np.where(np.isfinite(free_km), free_km, 0.0))
        near = reach & (drive_km <= radius[:, None] + 1e-9)
        return np.where(near.any(axis=1, keepdims=True), near, reach)

    def observe(self, slots: np.ndarray) -> None:
        """Update each zone's arrival rate (an EMA of the EVs routed to it per hour)."""
        per_h = np.bincount(slots, minlength=self.world.n_slots) / self.world.dt_h
        self.rate_per_h += RATE_EMA * (per_h - self.rate_per_h)

    def __call__(self, arrivals: Arrivals) -> np.ndarray:
        n = len(arrivals)
        if n == 0:
            self.observe(np.zeros(0, dtype=np.int64))
            return np.zeros(0, dtype=np.int64)
        inst, in_range = self.instance(arrivals)
        result = solve(inst, self.method, seed=self.seed + arrivals.t)
        s = self.stats
        s.calls += 1
        s.evs += n
        s.out_of_range += int((~in_range).sum())
        s.queued += int((result.station >= self.world.n_slots).sum())
        s.methods[result.method] = s.methods.get(result.method, 0) + 1
        s.seconds += result.seconds
        slots = result.station % self.world.n_slots
        self.observe(slots)
        return slots

    def summary(self) -> dict[str, float | int | dict[str, int]]:
        s = self.stats
        return {"calls": s.calls, "evs": s.evs, "queued": s.queued,
                "out_of_range": s.out_of_range, "methods": dict(s.methods),
                "ms_per_call": 1000.0 * s.seconds / max(s.calls, 1)}
