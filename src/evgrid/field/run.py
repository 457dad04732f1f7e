"""Field mode: stations that own their chargers, and a coordinator with no simulator.

A *field station* (:class:`FieldStation`) serves its chargers as their CSMS (``csms``) and the
coordinator as an edge node (``evgrid.transport.grpc_station``): at each period start it reads
its state from what the chargers reported and claims it; it turns the agreed set-points into
charging profiles; its telemetry is what its chargers meter (a charger ignoring its profile is
counted at its draw). Its EVSEs are numbered as the city file numbers the facility's chargers.

The *field coordinator* (:func:`run_field_day`) runs the day's periods on a clock (wall time in
the field, a faster one in a demo), with the city file's limits and prices and no simulator:
each station's claim is checked against its terms in the city file
(``codec.check_state_claim``), the ADMM agrees the shares over gRPC, and it records what each
station executed and what its chargers metered, step by step, against every zone's and the
city's limit.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from evgrid.coordinator.admm import AdmmConfig, PowerCoordinator
from evgrid.coordinator.driver import solve_period
from evgrid.coordinator.messages import StationState
from evgrid.envs.world import World
from evgrid.field.chargepoint_sim import SimClock
from evgrid.field.csms import ApplyResult, SiteCsms
from evgrid.field.site import ChargerSpec, Site, SiteFile
from evgrid.transport.grpc_server import GrpcStations

log = logging.getLogger(__name__)

#: Relative slack of a metered limit check (meter rounding, not a violation).
METER_RTOL = 1e-3


def site_for(world: World, station_id: str, evses_per_charger: int = 64) -> SiteFile:
    """The site file of a facility of ``world``: its chargers, in the city file's order, as
    charge points (``<station>-cpN``) of up to ``evses_per_charger`` EVSEs each."""
    f = list(world.facility_ids).index(station_id)
    idx = np.flatnonzero(world.charger_facility == f)
    groups = [idx[i:i + evses_per_charger] for i in range(0, idx.size, evses_per_charger)]
    return SiteFile(station_id=station_id, chargers=[
        ChargerSpec(id=f"{station_id}-cp{k + 1}", evses=int(g.size),
                    max_kw=[float(x) for x in world.charger_max_kw[g]],
                    eta=float(world.charger_eta[g].mean()))
        for k, g in enumerate(groups)])


@dataclass
class FieldStation:
    """A station's site behind its CSMS, as ``run_station`` needs it (module docstring)."""

    site: Site
    csms: SiteCsms
    world: World
    clock: SimClock
    rated_kw: float
    applied: list[ApplyResult] = field(default_factory=list)
    _pending: set[asyncio.Task[ApplyResult]] = field(default_factory=set)

    def read_state(self, start: int, horizon: int) -> StationState:
        w = self.world
        end = min(start + horizon, w.steps)
        price = np.resize(w.price_per_kwh[start:end], horizon)  # past the day: the day again
        carbon = np.resize(w.carbon_kg_per_kwh[start:end], horizon)
        return self.site.state(start, self.clock.t0_s, w.dt_h, price, carbon)

    def read_power(self) -> float:
        """What its chargers meter now (set-point, or the draw of one that ignores it)."""
        return min(self.site.counted_kw(), self.rated_kw)

    def setpoints(self, step: int, chargers: np.ndarray, kw: np.ndarray, fallback: bool) -> None:
        """Send the step's set-points as charging profiles (two steps long: a charger that
        hears nothing more stops at the end), and 0 to every other EV on the site: one the
        state left out (full by the station's count, or plugged in since) must not run on
        its last profile beside the power the station agreed."""
        duration = int(2 * self.world.dt_h * 3600)
        sp = self.site_setpoints(chargers, kw)
        task = asyncio.get_running_loop().create_task(self.csms.apply(sp, duration))
        self._pending.add(task)
        task.add_done_callback(self._done)

    async def drain(self) -> None:
        """Wait for the set-points still on their way to the chargers."""
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=10.0)

    def summary(self) -> str:
        """One line: what its set-points came to at the chargers."""
        a = self.applied
        full = sum(r.rejected == 0 for r in a)
        return (f"station {self.site.file.station_id}: {len(a)} periods of set-points, "
                f"{full} delivered to every connector with an EV; "
                f"{sum(r.accepted for r in a):,} profiles accepted, "
                f"{sum(r.rejected for r in a):,} refused or unanswered, "
                f"{sum(r.skipped for r in a):,} not needed (no EV, it left meanwhile, or its "
                f"charger offline); "
                f"chargers ignoring their profile: "
                f"{sum(e.ignoring for e in self.site.evses)}")

    def site_setpoints(self, chargers: np.ndarray, kw: np.ndarray) -> dict[int, float]:
        """Every EV on the site: its agreed set-point, 0 if the state left it out; and what a
        charger ignoring its profile draws above it (its last metered power) comes off the
        others, so that the site as metered stays within what the station agreed."""
        sp = {e.index: 0.0 for e in self.site.evses if e.transaction is not None}
        sp.update({int(c): float(k) for c, k in zip(chargers, kw, strict=True)})
        rogue = [e for e in self.site.evses if e.ignoring and e.index in sp]
        over = sum(max(e.power_kw - sp[e.index], 0.0) for e in rogue)
        if over > 0:
            fair = [i for i in sp if not self.site.evses[i].ignoring]
            total = sum(sp[i] for i in fair)
            scale = max(total - over, 0.0) / total if total > 0 else 0.0
            for i in fair:
                sp[i] *= scale
        return sp

    def _done(self, task: asyncio.Task[ApplyResult]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is None:
            self.applied.append(task.result())


@dataclass
class FieldDay:
    """What the field coordinator saw over the day."""

    steps: int
    executed_kw: dict[str, np.ndarray]  # [T] Σ set-points each station executed
    metered_kw: dict[str, np.ndarray]  # [T] what its chargers metered under them
    zone_violations: int = 0  # (step, zone) pairs metered above the zone's limit
    city_violations: int = 0
    claims_refused: int = 0
    missing_proposals: int = 0
    periods: int = 0
    wall_s: float = 0.0

    def kpis(self, world: World) -> dict[str, float]:
        ex = sum(self.executed_kw.values(), np.zeros(self.steps))
        me = sum(self.metered_kw.values(), np.zeros(self.steps))
        return {
            "periods": self.periods,
            "energy_executed_kwh": float(ex.sum() * world.dt_h),
            "energy_metered_kwh": float(me.sum() * world.dt_h),
            "peak_metered_kw": float(me.max(initial=0.0)),
            "zone_violations_metered": self.zone_violations,
            "city_violations_metered": self.city_violations,
            "claims_refused": self.claims_refused,
            "admm_missing_proposals": self.missing_proposals,
            "wall_s": self.wall_s,
        }


def run_field_day(world: World, hub: GrpcStations, clock: SimClock, *,
                  horizon_steps: int | None = None, admm: AdmmConfig | None = None,
                  steps: int | None = None,
                  progress: Callable[[int, int], None] | None = None) -> FieldDay:
    """The day's periods on ``clock`` with the hub's stations (module docstring), from the
    one in progress (``steps``: at most this many of the day's)."""
    t_start = time.perf_counter()
    regs = {r.agent_id: r for r in hub.close_registrations()}
    coord = PowerCoordinator(list(world.grid_ids), admm or AdmmConfig())
    for reg in regs.values():
        coord.register(reg)
    dt_s = world.dt_h * 3600.0
    # A coordinator started mid-day begins at the period in progress, not at a past one.
    first = min(max(0, math.floor((clock.now() - clock.t0_s) / dt_s)), world.steps)
    T = world.steps if steps is None else min(first + steps, world.steps)
    h_max = horizon_steps or world.steps
    zone_of = {a: list(world.grid_ids).index(r.grid_zone) for a, r in regs.items()}
    day = FieldDay(T, {a: np.zeros(T) for a in regs}, {a: np.zeros(T) for a in regs})
    refused0 = sum(hub.stats.refused.values())
    for step in range(first, T):
        wait = (clock.t0_s + step * dt_s - clock.now()) / clock.speed
        if wait > 0:
            time.sleep(wait)
        _metered(day, hub)
        h = max(1, min(h_max, world.steps - step))
        hub.begin_field_period(step)
        stats = solve_period(coord, hub, horizon_start=step,
                             zone_limit_kw=world.zone_limit_kw[step:step + h],
                             city_limit_kw=world.city_limit_kw[step:step + h])
        agreed, envelopes = coord.settle()
        executed = hub.finish_period(agreed, envelopes)
        coord.unconfirmed(hub.unconfirmed())
        day.periods += 1
        day.missing_proposals += stats.missing
        for a, (_, kw) in executed.items():
            day.executed_kw[a][step] = float(np.sum(kw))
        if progress is not None:
            progress(step + 1 - first, T - first)
    day.claims_refused = sum(hub.stats.refused.values()) - refused0
    zone = np.zeros((T, world.n_grid))
    for a, kw in day.metered_kw.items():
        zone[:, zone_of[a]] += kw
    lim = world.zone_limit_kw[:T]
    day.zone_violations = int((zone > lim * (1 + METER_RTOL) + 1e-6).sum())
    day.city_violations = int((zone.sum(axis=1) > world.city_limit_kw[:T] * (1 + METER_RTOL)
                               + 1e-6).sum())
    day.wall_s = time.perf_counter() - t_start
    return day


def _metered(day: FieldDay, hub: GrpcStations) -> None:
    """Telemetry comes with a station's answer to step k's done target, before it applies the
    new set-points: what its chargers drew under step k − 1's. (The day's last step is never
    metered: no period follows it.)"""
    for a, tel in hub.telemetry().items():
        if a in day.metered_kw and 1 <= tel.step <= day.steps:
            day.metered_kw[a][tel.step - 1] = tel.power_kw
