"""The vectorised city simulator: arrivals, routing, queues, charging, departures, outages.

Every step is a fixed number of numpy operations over all chargers and sessions; there is no
Python loop over EVs. The battery follows Eq. 14–15 of 000_f74a305f822cf870.txt
(E ← E + η·p·Δt, E ≤ E_max; self-discharge is neglected over a parking stay) and
arrivals/departures follow Eq. 31. An EV occupies its charger from connection until its
departure whether or not it is full, so which EV sits on which charger when is the same for
every controller: controllers differ only in power. The offline LP relies on this.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Protocol

import numpy as np

from evgrid.envs.interface import Controller, Observation
from evgrid.envs.projection import ProjectionCuts, project
from evgrid.envs.sessions import Sessions, draw_sessions
from evgrid.envs.world import World, build_world
from evgrid.scenario.schema import Scenario

FUTURE, QUEUED, CONNECTED, GONE = 0, 1, 2, 3



def run_start(sorted_groups: np.ndarray) -> np.ndarray:
    """For a sorted array, the index where each element's run of equal values starts."""
    g = sorted_groups
    change = np.empty(g.size, dtype=bool)
    change[:1] = True
    np.not_equal(g[1:], g[:-1], out=change[1:])
    return np.maximum.accumulate(np.where(change, np.arange(g.size), 0))


def rank_within_groups(groups: np.ndarray) -> np.ndarray:
    """Position of each element among the elements of its group, in array order."""
    if groups.size == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(groups, kind="stable")
    g = groups[order]
    rank = np.empty(groups.size, dtype=np.int64)
    rank[order] = np.arange(g.size) - run_start(g)
    return rank


class ArrivalColumns(Protocol):
    """The two session columns routing reads: a ``Sessions`` table, or sampled drivers."""

    @property
    def arrival_soc(self) -> np.ndarray: ...

    @property
    def facility(self) -> np.ndarray: ...


def candidate_slots(world: World, sessions: ArrivalColumns, evs: np.ndarray) -> np.ndarray:
    """[n, S] bool: the slots each EV may use.

    Its SoC zone (000 §3.1: A/B/C by arrival SoC) wherever a facility has one with chargers;
    else the general zones; a replayed session only at its own facility, and a drawn one
    never at a facility that replays recorded sessions.
    """
    soc = sessions.arrival_soc[evs][:, None]
    has = world.slot_chargers[None, :] > 0
    general = np.isnan(world.slot_soc_lo)[None, :] & has
    in_range = (soc >= world.slot_soc_lo[None, :] - 1e-12) & (
        soc <= world.slot_soc_hi[None, :] + 1e-12
    )
    in_range &= has
    fac = sessions.facility[evs][:, None]
    at_fac = np.where(fac < 0, ~world.slot_recorded[None, :], world.slot_facility[None, :] == fac)
    match = in_range & at_fac
    gen = general & at_fac
    anywhere = has & at_fac
    use_match = match.any(axis=1, keepdims=True)
    use_gen = ~use_match & gen.any(axis=1, keepdims=True)
    return np.where(use_match, match, np.where(use_gen, gen, anywhere))


def assign_by_preference(cand: np.ndarray, cost: np.ndarray, free: np.ndarray) -> np.ndarray:
    """Each EV (row) to its cheapest candidate slot with a free charger, else queue at its
    cheapest candidate.

    Vectorised deferred acceptance: each unassigned EV proposes to its cheapest slot with a
    free charger, each slot accepts proposers in arrival order up to its free count, repeat.
    """
    n = cand.shape[0]
    slot = np.full(n, -1, dtype=np.int64)
    free = free.copy()
    for _ in range(cand.shape[1] + 1):
        todo = np.flatnonzero(slot < 0)
        if todo.size == 0:
            break
        ok = cand[todo] & (free[None, :] > 0)
        can = ok.any(axis=1)
        if not can.any():
            break
        prop = np.argmin(np.where(ok, cost[todo], np.inf), axis=1)
        who, prop = todo[can], prop[can]
        accepted = rank_within_groups(prop) < free[prop]
        slot[who[accepted]] = prop[accepted]
        free -= np.bincount(prop[accepted], minlength=free.size)
    todo = np.flatnonzero(slot < 0)
    if todo.size:
        slot[todo] = np.argmin(np.where(cand[todo], cost[todo], np.inf), axis=1)
    return slot


@dataclass(frozen=True)
class Arrivals:
    """What routing may see at step ``t``: the EVs arriving now (their session columns, in
    arrival order) and the free chargers per slot (online, not taken, minus EVs already queued).

    This is the routing seam: a router is a decision on this view, never a handle on the
    simulator, so baselines, the cohort ADMM, the learned cohorts of ``evgrid.envs.parallel``
    and an edge deployment all route the same way.
    """

    t: int
    world: World
    evs: np.ndarray  # [n] session indices (for bookkeeping; routers read the columns below)
    cohort: np.ndarray  # [n] cohort index (-1: a replayed session)
    facility: np.ndarray  # [n] the facility a replayed session belongs to (-1: any)
    arrival_soc: np.ndarray  # [n]
    origin_xy_km: np.ndarray  # [n, 2]
    requested_kwh: np.ndarray  # [n]
    departure_step: np.ndarray  # [n]
    battery_kwh: np.ndarray  # [n] (with arrival_soc: the range left, 003's feasibility)
    free: np.ndarray  # [S] free chargers per slot, net of the queue
    queued: np.ndarray  # [S] EVs waiting at each slot (the queue the wait forecasts price)

    @classmethod
    def of(cls, t: int, world: World, sessions: Sessions, evs: np.ndarray,
           free: np.ndarray, queued: np.ndarray) -> Arrivals:
        return cls(t=t, world=world, evs=evs, cohort=sessions.cohort[evs],
                   facility=sessions.facility[evs], arrival_soc=sessions.arrival_soc[evs],
                   origin_xy_km=sessions.origin_xy_km[evs],
                   requested_kwh=sessions.requested_kwh[evs],
                   departure_step=sessions.departure_step[evs],
                   battery_kwh=sessions.battery_kwh[evs], free=free, queued=queued)

    def __len__(self) -> int:
        return int(self.evs.size)

    def candidates(self) -> np.ndarray:
        """[n, S] the slots each EV may use (:func:`candidate_slots`)."""
        return candidate_slots(self.world, self, np.arange(len(self)))

    def travel_km(self) -> np.ndarray:
        """[n, S] drive + walk distance from each EV's origin to each slot."""
        w = self.world
        d = np.linalg.norm(self.origin_xy_km[:, None, :] - w.slot_xy_km[None], axis=2)
        return d + w.slot_walk_km[None, :]


#: A router picks a slot for each arriving EV (queueing there if it has no free charger).
Router = Callable[[Arrivals], np.ndarray]


def nearest_free_router(arrivals: Arrivals) -> np.ndarray:
    """Nearest facility with a free charger in the EV's SoC zone; else queue at the nearest."""
    return assign_by_preference(arrivals.candidates(), arrivals.travel_km(), arrivals.free)


@dataclass(frozen=True)
class StepOutcome:
    """What one executed step did and cost: the terms of the objective (``kpis.objective_terms``)
    as they accrue, so that Σ over the day of ``objective`` is the run's ``objective`` KPI.

    The demand charge accrues when a zone's peak in the billing window rises (a peak already
    paid costs nothing to reach again); the unmet energy is billed when its EV leaves (and, at
    the end of the horizon, for every EV still there).
    """

    t: int
    executed_kw: np.ndarray  # [C] after the safety projection
    cuts: ProjectionCuts
    energy_cost: float
    demand_charge: float
    carbon_kg: float
    unmet_kwh: float  # owed to the EVs that left at the end of this step
    departed: np.ndarray  # session indices of those EVs
    objective: float


@dataclass
class StepRecord:
    """Per-step time series of a run (T rows)."""

    city_load_kw: np.ndarray  # [T] executed
    zone_load_kw: np.ndarray  # [T, G] executed
    facility_load_kw: np.ndarray  # [T, F] executed
    requested_city_kw: np.ndarray  # [T] asked by the controller (after rate clipping)
    connected: np.ndarray  # [T] EVs on a charger
    queued: np.ndarray  # [T] EVs waiting for a charger
    occupied_spaces: np.ndarray  # [T] EVs parked (capped by spaces per slot)
    online_chargers: np.ndarray  # [T]
    rate_cuts: np.ndarray  # [T]
    zone_violations: np.ndarray  # [T]
    city_violations: np.ndarray  # [T] bool
    limit_cut_kwh: np.ndarray  # [T]


@dataclass
class SimResult:
    """Everything a run produced: the sessions, their outcomes, the time series."""

    policy: str
    world: World
    sessions: Sessions
    delivered_kwh: np.ndarray  # [N] into the battery
    connect_step: np.ndarray  # [N] first connection, -1 if never
    slot: np.ndarray  # [N] slot used, -1 if it never arrived
    ev_at_charger: np.ndarray  # [T, C] EV index on each charger (-1), policy-independent
    power_kw: np.ndarray  # [T, C] executed
    record: StepRecord


class Simulator:
    """Steps a :class:`World` with a controller; deterministic for a given seed.

    ``reset()`` draws the sessions (or takes ``sessions``); ``step(power)`` applies set-points;
    ``run(controller)`` does the whole horizon and returns a :class:`SimResult`.
    """

    def __init__(
        self,
        scenario: Scenario,
        *,
        seed: int | None = None,
        sessions: Sessions | None = None,
        world: World | None = None,
        router: Router = nearest_free_router,
    ) -> None:
        self.scenario = scenario
        self.world = world if world is not None else build_world(scenario)
        self.seed = scenario.seed if seed is None else seed
        self._given_sessions = sessions
        self.router = router
        self.reset()

    # -- state -------------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> Observation:
        """Start the horizon again: the same day, or a new one drawn from ``seed`` (which the
        simulator keeps; sessions given to the constructor are replayed whatever the seed)."""
        if seed is not None:
            self.seed = int(seed)
        w = self.world
        rng = np.random.default_rng(self.seed)
        self.sessions = (
            self._given_sessions
            if self._given_sessions is not None
            else draw_sessions(self.scenario, rng)
        )
        n, c, t, g = len(self.sessions), w.n_chargers, w.steps, w.n_grid
        self.t = 0
        self.status = np.full(n, FUTURE, dtype=np.int8)
        self.ev_slot = np.full(n, -1, dtype=np.int64)
        self.ev_charger = np.full(n, -1, dtype=np.int64)
        self.delivered_kwh = np.zeros(n)
        self.connect_step = np.full(n, -1, dtype=np.int64)
        self.charger_ev = np.full(c, -1, dtype=np.int64)
        self.ev_at_charger = np.full((t, c), -1, dtype=np.int64)
        self.power_kw = np.zeros((t, c))
        self.record = StepRecord(
            city_load_kw=np.zeros(t),
            zone_load_kw=np.zeros((t, g)),
            facility_load_kw=np.zeros((t, len(w.facility_ids))),
            requested_city_kw=np.zeros(t),
            connected=np.zeros(t, dtype=np.int64),
            queued=np.zeros(t, dtype=np.int64),
            occupied_spaces=np.zeros(t, dtype=np.int64),
            online_chargers=np.zeros(t, dtype=np.int64),
            rate_cuts=np.zeros(t, dtype=np.int64),
            zone_violations=np.zeros(t, dtype=np.int64),
            city_violations=np.zeros(t, dtype=bool),
            limit_cut_kwh=np.zeros(t),
        )
        # Sessions are sorted by arrival step: arrivals at t are one contiguous block.
        self._arrival_bounds = np.searchsorted(self.sessions.arrival_step, np.arange(t + 1))
        self._advance()
        self._obs = self.observe()
        return self._obs

    @property
    def observation(self) -> Observation:
        """The state at the start of the current step (what ``step`` will act on)."""
        return self._obs

    @property
    def done(self) -> bool:
        return self.t >= self.world.steps

    def _advance(self) -> np.ndarray:
        """Departures, outages, arrivals and connections at the start of step ``self.t``.

        Returns the session indices that left (at the end of the horizon: all still there)."""
        w, s, t = self.world, self.sessions, self.t
        if t >= w.steps:
            left = np.flatnonzero(self.status != GONE)
            self.status[left] = GONE
            return left
        online = w.charger_online[t]
        # Departures (Eq. 31's δ_departure): anyone whose time is up leaves, full or not.
        leaving = (self.status == QUEUED) | (self.status == CONNECTED)
        leaving &= s.departure_step <= t
        left = np.flatnonzero(leaving)
        gone_chargers = self.ev_charger[leaving & (self.status == CONNECTED)]
        self.charger_ev[gone_chargers] = -1
        self.status[leaving] = GONE
        self.ev_charger[leaving] = -1
        # Outages: an EV on a failed charger goes back to its slot's queue.
        failed = (~online) & (self.charger_ev >= 0)
        bumped = self.charger_ev[failed]
        self.status[bumped] = QUEUED
        self.ev_charger[bumped] = -1
        self.charger_ev[failed] = -1
        # Arrivals: routed against free chargers net of the queue ahead of them.
        lo, hi = self._arrival_bounds[t], self._arrival_bounds[t + 1]
        if hi > lo:
            evs = np.arange(lo, hi)
            queued = self._queued_per_slot()
            free = self._free_per_slot(online) - queued
            view = Arrivals.of(t, w, s, evs, np.maximum(free, 0), queued)
            slots = np.asarray(self.router(view), dtype=np.int64)
            if slots.shape != evs.shape or ((slots < 0) | (slots >= w.n_slots)).any():
                raise ValueError(f"router returned invalid slots {slots!r} for {evs.size} EVs")
            self.ev_slot[evs] = slots
            self.status[evs] = QUEUED
        self._connect(online)
        self.ev_at_charger[t] = self.charger_ev
        return left

    def upcoming(self) -> Arrivals:
        """The EVs that will arrive at the start of the next step, with today's free chargers
        (what a routing agent deciding now for them can know)."""
        w, t = self.world, self.t
        nxt = t + 1
        evs = (np.arange(self._arrival_bounds[nxt], self._arrival_bounds[nxt + 1])
               if nxt < w.steps else np.zeros(0, dtype=np.int64))
        online = w.charger_online[min(t, w.steps - 1)]
        queued = self._queued_per_slot()
        free = np.maximum(self._free_per_slot(online) - queued, 0)
        return Arrivals.of(nxt, w, self.sessions, evs, free, queued)

    def _free_per_slot(self, online: np.ndarray) -> np.ndarray:
        free = online & (self.charger_ev < 0)
        return np.bincount(self.world.charger_slot[free], minlength=self.world.n_slots)

    def _queued_per_slot(self) -> np.ndarray:
        q = self.status == QUEUED
        return np.bincount(self.ev_slot[q], minlength=self.world.n_slots)

    def _connect(self, online: np.ndarray) -> None:
        """First come, first plugged: queued EVs take free chargers of their slot in order."""
        queued = np.flatnonzero(self.status == QUEUED)
        if queued.size == 0:
            return
        w = self.world
        free = np.flatnonzero(online & (self.charger_ev < 0))
        if free.size == 0:
            return
        free = free[np.argsort(w.charger_slot[free], kind="stable")]
        free_count = np.bincount(w.charger_slot[free], minlength=w.n_slots)
        free_start = np.cumsum(free_count) - free_count
        q_slot = self.ev_slot[queued]
        rank = rank_within_groups(q_slot)
        ok = rank < free_count[q_slot]
        evs = queued[ok]
        chargers = free[free_start[q_slot[ok]] + rank[ok]]
        self.charger_ev[chargers] = evs
        self.ev_charger[evs] = chargers
        self.status[evs] = CONNECTED
        first = self.connect_step[evs] < 0
        self.connect_step[evs[first]] = self.t

    def observe(self) -> Observation:
        w, s, t = self.world, self.sessions, min(self.t, self.world.steps - 1)
        ev = self.charger_ev
        has = ev >= 0
        e = np.where(has, ev, 0)
        online = w.charger_online[t]

        def per_charger(values: np.ndarray, fill: float | int = 0) -> np.ndarray:
            return np.where(has, values[e], fill) if values.size else np.full(ev.size, fill)

        delivered = per_charger(self.delivered_kwh)
        return Observation(
            t=self.t,
            dt_h=w.dt_h,
            connected=has & online,
            charger_max_kw=np.where(online, w.charger_max_kw, 0.0),
            charger_eta=w.charger_eta,
            charger_grid=w.charger_grid,
            charger_facility=w.charger_facility,
            ev_remaining_kwh=np.maximum(per_charger(s.requested_kwh) - delivered, 0.0),
            ev_headroom_kwh=np.maximum(
                per_charger(s.battery_kwh * (1 - s.arrival_soc)) - delivered, 0.0
            ),
            ev_max_kw=per_charger(s.max_kw),
            ev_arrival_step=per_charger(s.arrival_step, -1),
            ev_departure_step=per_charger(s.departure_step, -1),
            zone_limit_kw=w.zone_limit_kw[t:],
            city_limit_kw=w.city_limit_kw[t:],
            price_per_kwh=w.price_per_kwh[t:],
            carbon_kg_per_kwh=w.carbon_kg_per_kwh[t:],
            demand_rate_per_kw=w.demand_rate_per_kw[t:],
            billing_window=w.billing_window[t:],
            zone_peak_kw=self.zone_peak_kw(),
        )

    def zone_peak_kw(self) -> np.ndarray:
        """[G] executed peak of each grid zone so far in the current step's billing window."""
        w, t = self.world, min(self.t, self.world.steps - 1)
        if not w.demand_rate_per_kw.any():
            return np.zeros(w.n_grid)
        start = int(np.searchsorted(w.billing_window, w.billing_window[t]))
        return self.record.zone_load_kw[start:self.t].max(axis=0, initial=0.0)

    def step(self, power_kw: np.ndarray) -> tuple[Observation, StepOutcome]:
        """Project and apply one step of set-points [kW per charger] to the current
        :attr:`observation`, advance the clock, and return the next observation with what the
        step executed and cost."""
        if self.done:
            raise RuntimeError("the horizon is over: call reset()")
        w, t, obs = self.world, self.t, self._obs
        p, cuts = project(
            power_kw,
            upper_kw=obs.power_cap_kw,
            charger_grid=w.charger_grid,
            zone_limit_kw=w.zone_limit_kw[t],
            city_limit_kw=float(w.city_limit_kw[t]),
        )
        evs = self.charger_ev[obs.connected]
        self.delivered_kwh[evs] += (w.charger_eta * p * w.dt_h)[obs.connected]  # Eq. 14
        self.power_kw[t] = p
        r = self.record
        r.city_load_kw[t] = p.sum()
        r.zone_load_kw[t] = np.bincount(w.charger_grid, weights=p, minlength=w.n_grid)
        r.facility_load_kw[t] = np.bincount(
            w.charger_facility, weights=p, minlength=len(w.facility_ids)
        )
        r.requested_city_kw[t] = p.sum() + cuts.limit_cut_kw
        r.connected[t] = int(obs.connected.sum())
        parked = np.bincount(
            self.ev_slot[(self.status == QUEUED) | (self.status == CONNECTED)],
            minlength=w.n_slots,
        )
        r.queued[t] = int((self.status == QUEUED).sum())
        r.occupied_spaces[t] = int(np.minimum(parked, w.slot_spaces).sum())
        r.online_chargers[t] = int(w.charger_online[t].sum())
        r.rate_cuts[t] = cuts.rate_cuts
        r.zone_violations[t] = cuts.zone_violations
        r.city_violations[t] = cuts.city_violation
        r.limit_cut_kwh[t] = cuts.limit_cut_kw * w.dt_h
        rise = np.maximum(r.zone_load_kw[t] - obs.zone_peak_kw, 0.0)
        demand = float(self._window_rate(t) * rise.sum())
        self.t += 1
        left = self._advance()
        self._obs = self.observe()
        return self._obs, self._outcome(t, p, cuts, demand, left)

    def _window_rate(self, t: int) -> float:
        """The demand rate billed for step ``t``'s window: the one at the window's first step
        (as ``kpis.demand_charges`` bills it)."""
        w = self.world
        if not w.demand_rate_per_kw.any():
            return 0.0
        return float(w.demand_rate_per_kw[np.searchsorted(w.billing_window, w.billing_window[t])])

    def _outcome(self, t: int, p: np.ndarray, cuts: ProjectionCuts, demand: float,
                 left: np.ndarray) -> StepOutcome:
        w, s = self.world, self.sessions
        grid_kwh = float(p.sum()) * w.dt_h
        unmet = float(np.maximum(s.requested_kwh[left] - self.delivered_kwh[left], 0.0).sum())
        energy_cost = grid_kwh * float(w.price_per_kwh[t])
        carbon = grid_kwh * float(w.carbon_kg_per_kwh[t])
        sc = self.scenario
        return StepOutcome(
            t=t, executed_kw=p, cuts=cuts, energy_cost=energy_cost, demand_charge=demand,
            carbon_kg=carbon, unmet_kwh=unmet, departed=left,
            objective=energy_cost + demand + sc.prices.carbon_price_per_kg * carbon
            + sc.unmet_penalty_per_kwh * unmet,
        )

    # -- checkpoints ---------------------------------------------------------------------------
    #: The arrays that change as the plant steps (with ``t``, the whole mutable state: sessions,
    #: outages and prices are fixed by the seed and the scenario; routers draw from
    #: (seed, step), so there is no live random state).
    _STATE = ("status", "ev_slot", "ev_charger", "delivered_kwh", "connect_step", "charger_ev",
              "ev_at_charger", "power_kw")

    def sessions_fingerprint(self) -> str:
        """SHA-256 of the session table: a checkpoint taken on other sessions cannot resume."""
        h = hashlib.sha256()
        for f in fields(Sessions):
            a = np.ascontiguousarray(getattr(self.sessions, f.name))
            h.update(f.name.encode())
            h.update(str(a.dtype).encode())
            h.update(a.tobytes())
        return h.hexdigest()

    @staticmethod
    def is_row_array(name: str) -> bool:
        """Whether a ``state_dict`` array has one row per step, of which a step changes only
        its own (a checkpoint then writes only the rows written since the last one)."""
        return name in ("ev_at_charger", "power_kw") or name.startswith("record.")

    def state_dict(self) -> dict[str, np.ndarray]:
        """Everything ``load_state_dict`` needs to continue from step ``t``: copies, but for the
        per-step arrays (``is_row_array``), which are views (a checkpoint reads only their new
        rows; copying them every step made checkpoints quadratic in the run's length)."""
        out = {name: getattr(self, name) if self.is_row_array(name) else getattr(self, name).copy()
               for name in self._STATE}
        out.update({f"record.{f.name}": getattr(self.record, f.name) for f in fields(StepRecord)})
        out["t"] = np.array(self.t)
        return out

    def load_state_dict(self, state: dict[str, np.ndarray]) -> Observation:
        """Continue from a ``state_dict`` of a run on the same sessions (after ``reset``)."""
        for name in self._STATE:
            old = getattr(self, name)
            new = np.asarray(state[name])
            if new.shape != old.shape or new.dtype != old.dtype:
                raise ValueError(f"checkpoint array {name} is {new.shape} {new.dtype}, the run "
                                 f"needs {old.shape} {old.dtype}: another scenario or seed")
            setattr(self, name, new.copy())
        for f in fields(StepRecord):
            getattr(self.record, f.name)[...] = state[f"record.{f.name}"]
        self.t = int(state["t"])
        self._obs = self.observe()
        return self._obs

    def run(
        self, controller: Controller, *, progress: Callable[[int, int], None] | None = None,
        resume: dict[str, np.ndarray] | None = None,
        after_step: Callable[[Simulator], None] | None = None,
    ) -> SimResult:
        """Run the horizon with ``controller``: from a fresh reset, or from ``resume`` (a
        ``state_dict``); ``after_step`` is called after every executed step (checkpoints)."""
        obs = self.reset()
        if resume is not None:
            obs = self.load_state_dict(resume)
        while not self.done:
            obs, _ = self.step(controller.schedule(obs))
            if after_step is not None:
                after_step(self)
            if progress is not None:
                progress(self.t, self.world.steps)
        return self.result(getattr(controller, "name", type(controller).__name__))

    def result(self, policy: str) -> SimResult:
        return SimResult(
            policy=policy,
            world=self.world,
            sessions=self.sessions,
            delivered_kwh=self.delivered_kwh.copy(),
            connect_step=self.connect_step.copy(),
            slot=self.ev_slot.copy(),
            ev_at_charger=self.ev_at_charger.copy(),
            power_kw=self.power_kw.copy(),
            record=self.record,
        )
