"""Seed 000's allocation layer on evgrid's routing seam (000_f74a305f822cf870.txt §3.2, §4.4).

A :class:`LayeredRouter` is a :data:`evgrid.envs.simulator.Router`: at each step it sees the
arriving EVs and the free chargers per slot (:class:`~evgrid.envs.simulator.Arrivals`), builds
an :class:`~evgrid.optim.allocation.AllocationProblem` for the next ``window_steps`` periods,
lets ACAS solve it (:func:`~evgrid.optim.allocation.allocate`), and sends each EV to the slot
of the station the allocation gives it first. The RAM → SM hand-over of §4.4 is thereby the
slot choice; the power itself stays the controller's (the scheduling layer).

How the world maps onto Eq. 8–17:

* stations: the free chargers of the slots some arriving EV may use — at most as many per
  slot as EVs that may use it (more could never be filled in one step, and this caps n);
* Eq. 17's zones: an EV may only take a station of its candidate slots
  (:func:`~evgrid.envs.simulator.candidate_slots`: its SoC zone, else general);
* relocation cost ``c_{v,s}``: the drive + walk km to the station's slot
  (:meth:`~evgrid.envs.simulator.Arrivals.travel_km`);
* prices and Eq. 11's limit: the world's for the window (held at the last step past the
  horizon). The limit is the *arriving* EVs' fair share of the city limit — ``n_new /
  (n_new + busy chargers)`` — since the EVs already plugged in draw on it too;
* Eq. 16: the requested energy pro rata to the part of the stay the window covers (an EV
  staying 8 h need not be full after 2 h); battery and charge limit from its cohort.

An EV the allocation leaves without a station — or whose slot has had its free chargers
taken by EVs placed earlier — gets the nearest-free rule's choice (the default router) on
what is left, so an EV is never sent outside its candidates — or, with ``overflow_km``, a
general zone of a facility it may use (Eq. 17's zone choice: when its SoC zone is full, the
allocation may park it in the zone that takes every SoC rather than queue it).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from evgrid.envs.simulator import Arrivals, assign_by_preference
from evgrid.envs.world import World
from evgrid.optim.allocation import AllocationProblem, Method, allocate
from evgrid.optim.allocation_pso import PSOConfig
from evgrid.optim.allocation_rhh import RHHConfig

#: What ``evgrid run --routing layered`` and ``evgrid evaluate paper-000`` use: MIP up to
#: n = 500 and PSO up to 2,000 (RHH beyond, 0.2 s MIP limit), so a lot2102 day routes in
#: ≈ 15 s rather than the ≈ 40 s of the module defaults (which give PSO up to 20,000), and a
#: full SoC zone overflows into the general zone at 0.2 km more (Eq. 17's zone choice).
RUN_DEFAULTS: dict[str, Any] = {"n1": 500, "n2": 2_000, "mip_time_limit_s": 0.2,
                                "overflow_km": 0.2}


@dataclass(frozen=True)
class RouteStats:
    """One routing call: what ACAS chose and what it cost."""

    t: int
    n_evs: int
    n_stations: int
    n: int  # |V|·|S|·|T| of the problem solved (0: no problem, all nearest-free)
    method: str  # "mip" | "pso" | "rhh" | "none"
    solve_s: float  # the allocation alone
    total_s: float  # the whole call (problem building and mapping included)
    allocated: int  # EVs placed by the allocation (the rest by the nearest-free rule)


class LayeredRouter:
    """Route arriving EVs with seed 000's scale-adaptive allocation (see the module doc).

    ``n1``/``n2`` are ACAS's thresholds on n (``None``: the module defaults); ``method``
    forces one solver. On lot2102 (≈ 15 arrivals per 15-min step, up to 44 at the morning
    peak; 8-step window) n is ≈ 1,900 on average and up to ≈ 15,000, which the default
    thresholds give to the MIP or, mostly, PSO: a few hundred ms per call. ``n1=n2=0``
    routes every call through RHH: ≈ 3 ms per call. ``stats`` records every call
    (``calls``: the same as dicts; ``summary()``: aggregated).
    """

    def __init__(self, world: World, *, n1: int | None = None, n2: int | None = None,
                 window_steps: int = 8, seed: int = 0, method: Method | None = None,
                 alpha2: float = 0.05, unmet_penalty_per_kwh: float = 1.0,
                 mip_time_limit_s: float = 1.0, pso: PSOConfig | None = None,
                 rhh: RHHConfig | None = None, overflow_km: float | None = None) -> None:
        if window_steps < 1:
            raise ValueError(f"window_steps must be >= 1, got {window_steps}")
        self.world = world
        self.n1, self.n2, self.method = n1, n2, method
        self.window_steps = int(window_steps)
        self.seed = int(seed)
        self.alpha2 = float(alpha2)
        self.unmet_penalty_per_kwh = float(unmet_penalty_per_kwh)
        self.mip_time_limit_s = float(mip_time_limit_s)
        self.pso, self.rhh = pso, rhh
        self.stats: list[RouteStats] = []
        #: [slots] km added to every EV's relocation cost to a slot (e.g. §3.6's RAM
        #: adaptation: a congested zone made dearer); ``None`` = none. The allocation sees
        #: it; the nearest-free fallback does not.
        self.slot_penalty_km: np.ndarray | None = None
        #: Eq. 17's zone choice y_{v,z}: with ``overflow_km`` the allocation may also send an EV
        #: to a general zone of a facility it may use (the zone that takes every SoC), at that
        #: many km more than its own SoC zone; ``None``: its candidates only (the plant's rule).
        self.overflow_km = overflow_km
        cohorts = world.scenario.cohorts
        self._cohort_battery = np.array([c.battery_kwh for c in cohorts] + [0.0])
        self._cohort_max_kw = np.array([c.max_charge_kw for c in cohorts] + [0.0])
        self._slots_of: tuple[World, np.ndarray, np.ndarray] | None = None

    def _slot_arrays(self, w: World) -> tuple[np.ndarray, np.ndarray]:
        """Each slot's charger rating and mean efficiency (re-read when the world changes,
        e.g. when a re-layout moves chargers between zones)."""
        if self._slots_of is None or self._slots_of[0] is not w:
            kw = np.zeros(w.n_slots)
            np.maximum.at(kw, w.charger_slot, w.charger_max_kw)
            counts = np.maximum(np.bincount(w.charger_slot, minlength=w.n_slots), 1)
            eta = np.bincount(w.charger_slot, weights=w.charger_eta,
                              minlength=w.n_slots) / counts
            self._slots_of = (w, kw, eta)
        return self._slots_of[1], self._slots_of[2]

    @property
    def calls(self) -> list[dict[str, Any]]:
        """``stats`` as dicts (for reports)."""
        return [asdict(s) for s in self.stats]

    def __call__(self, arrivals: Arrivals) -> np.ndarray:
        t0 = time.perf_counter()
        cand, travel = self._choices(arrivals)
        free = np.asarray(arrivals.free, dtype=np.int64).copy()
        n_ev = len(arrivals)
        slot = np.full(n_ev, -1, dtype=np.int64)
        method, n, solve_s, n_st = "none", 0, 0.0, 0
        built = self._problem(arrivals, cand, travel, free)
        if built is not None:
            problem, station_slot = built
            n_st = station_slot.size
            n = problem.n
            alloc = allocate(problem, self.n1, self.n2, self.method, seed=self.seed,
                             mip_time_limit_s=self.mip_time_limit_s, pso=self.pso,
                             rhh=self.rhh)
            method, solve_s = alloc.method, alloc.solve_s
            on = alloc.station >= 0
            first = np.where(on.any(axis=1), np.argmax(on, axis=1), -1)
            # EVs placed earlier in the window keep their slot's free chargers first.
            for i in np.argsort(np.where(first < 0, np.iinfo(np.int64).max, first),
                                kind="stable"):
                if first[i] < 0:
                    break
                s = station_slot[alloc.station[i, first[i]]]
                if free[s] > 0 and cand[i, s]:
                    slot[i] = s
                    free[s] -= 1
        allocated = int((slot >= 0).sum())
        rest = np.flatnonzero(slot < 0)
        if rest.size:
            slot[rest] = assign_by_preference(cand[rest], travel[rest], free)
        self.stats.append(RouteStats(t=int(arrivals.t), n_evs=n_ev, n_stations=n_st, n=n,
                                     method=method, solve_s=solve_s,
                                     total_s=time.perf_counter() - t0, allocated=allocated))
        return slot

    def _choices(self, arrivals: Arrivals) -> tuple[np.ndarray, np.ndarray]:
        """[n, S] the slots each EV may be sent to, and what reaching each costs [km]."""
        cand, travel = arrivals.candidates(), arrivals.travel_km()
        if self.overflow_km is None or not len(arrivals):
            return cand, travel
        w = arrivals.world
        general = np.isnan(w.slot_soc_lo) & (w.slot_chargers > 0)
        same = w.slot_facility[:, None] == w.slot_facility[None, :]
        reach = (cand.astype(np.int64) @ same.astype(np.int64)) > 0  # a facility it may use
        extra = reach & general[None, :] & ~cand
        return cand | extra, travel + np.where(extra, float(self.overflow_km), 0.0)

    def _problem(self, arrivals: Arrivals, cand: np.ndarray, travel: np.ndarray,
                 free: np.ndarray) -> tuple[AllocationProblem, np.ndarray] | None:
        """The window's problem and each station's slot; ``None`` when no station is free."""
        w, t = arrivals.world, int(arrivals.t)
        slot_kw, slot_eta = self._slot_arrays(w)
        n_ev = len(arrivals)
        usable = cand & (free[None, :] > 0)
        copies = np.minimum(free, usable.sum(axis=0))
        if n_ev == 0 or copies.sum() == 0:
            return None
        station_slot = np.repeat(np.arange(w.n_slots), copies)
        horizon = max(1, min(self.window_steps, w.steps - t))
        steps = np.minimum(np.arange(t, t + horizon), w.steps - 1)
        # The EVs: battery and charge limit from the cohort (a replayed session: from its
        # request and SoC, charged at what the chargers allow).
        soc = np.clip(arrivals.arrival_soc, 0.0, 1.0)
        req = np.maximum(arrivals.requested_kwh, 0.0)
        coh = arrivals.cohort
        battery = np.where(coh >= 0, self._cohort_battery[coh],
                           req / np.maximum(1.0 - soc, 1e-3))
        battery = np.maximum(battery, req + soc * battery)
        battery = np.maximum(battery, 1e-3)
        vmax = np.where(coh >= 0, self._cohort_max_kw[coh], float(slot_kw.max()))
        dwell = np.maximum(arrivals.departure_step - t, 1)
        e_init = soc * battery
        share = np.minimum(1.0, horizon / dwell)
        e_req = np.minimum(battery, e_init + req * share)
        busy = max(0, int(w.charger_online[min(t, w.steps - 1)].sum()) - int(free.sum()))
        grid = w.city_limit_kw[steps] * n_ev / (n_ev + busy)
        reloc = travel
        if self.slot_penalty_km is not None:
            reloc = travel + np.maximum(np.asarray(self.slot_penalty_km, dtype=float), 0.0)
        eta = float(np.mean(slot_eta[station_slot]))
        problem = AllocationProblem(
            arrival=np.zeros(n_ev, dtype=np.int64),
            departure=np.minimum(dwell, horizon).astype(np.int64),
            e_init_kwh=e_init, e_req_kwh=e_req, battery_kwh=battery, vehicle_max_kw=vmax,
            eligible=cand[:, station_slot], station_max_kw=slot_kw[station_slot],
            station_zone=station_slot, station_xy_km=w.slot_xy_km[station_slot],
            price_per_kwh=w.price_per_kwh[steps], grid_limit_kw=grid,
            relocation_cost=reloc[:, station_slot], dt_h=w.dt_h, alpha1=1.0,
            alpha2=self.alpha2, eta=min(max(eta, 1e-3), 1.0), p_min_kw=0.0,
            unmet_penalty_per_kwh=self.unmet_penalty_per_kwh)
        return problem, station_slot

    def summary(self) -> dict[str, float | int | dict[str, int]]:
        """Calls per method, mean / max seconds per call, and the share placed by ACAS."""
        calls = [s for s in self.stats if s.n_evs]
        if not calls:
            return {"calls": 0}
        total = np.array([s.total_s for s in calls])
        methods: dict[str, int] = {}
        for s in calls:
            methods[s.method] = methods.get(s.method, 0) + 1
        return {"calls": len(calls), "methods": methods,
                "mean_call_ms": float(total.mean() * 1e3),
                "median_call_ms": float(np.median(total) * 1e3),
                "p95_call_ms": float(np.percentile(total, 95) * 1e3),
                "max_call_ms": float(total.max() * 1e3),
                "mean_n": float(np.mean([s.n for s in calls])),
                "allocated_share": float(sum(s.allocated for s in calls)
                                         / max(1, sum(s.n_evs for s in calls)))}
