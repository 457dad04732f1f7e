"""A charge point with N EVSEs and EVs that follow its profiles, over OCPP 2.0.1 (``ocpp``).

``evgrid chargepoint-sim`` runs one against a station's CSMS (``evgrid.field.csms``), on a
clock that may run faster than real time (``speed``). It boots, reports each connector, and
for every EV session: ``TransactionEvent`` Started, ``NotifyEVChargingNeeds`` (the energy the
EV asks for, its departure, its current limit), ``TransactionEvent`` Updated with meter values
(energy register, power, SoC) every tick, and Ended when the EV leaves. An EV draws the least
of its own limit, what it still needs, and the charger's rating or, once one arrived, its
charging profile (the period in force at the clock's time); ``ignore_profiles`` makes a
charger that accepts profiles and draws its rating anyway, to test that the CSMS notices.
``faults`` take connectors out of order for a while (StatusNotification Faulted). A dropped
link is retried with backoff; sessions carry on through it, as a real charger's do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from ocpp.routing import on
from ocpp.v201 import ChargePoint, call, call_result
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from evgrid.field.csms import SUBPROTOCOL, epoch, iso

log = logging.getLogger(__name__)

#: Grid-to-battery efficiency of the simulated chargers.
ETA = 0.95


@dataclass
class SimClock:
    """Simulated time [s since the epoch]: ``t0_s`` at the real time ``epoch_s``, then
    ``speed`` simulated seconds per real second. Processes given the same three numbers keep
    the same time (the coordinator, the stations and the charge points of a demo)."""

    t0_s: float
    speed: float = 1.0
    epoch_s: float = field(default_factory=time.time)

    def now(self) -> float:
        return self.t0_s + (time.time() - self.epoch_s) * self.speed


@dataclass
class EvSession:
    evse_id: int
    arrive_s: float
    leave_s: float
    energy_kwh: float  # into the battery
    max_kw: float
    soc0_pct: float = 30.0
    battery_kwh: float = 60.0


def daily_sessions(evses: int, max_kw: float | list[float], t0_s: float, hours: float = 24.0,
                   seed: int = 0) -> list[EvSession]:
    """EVs one after another on each EVSE: gaps of 3 h on average, stays of 2–9 h, 5–40 kWh
    asked (never more than the stay can give at the EV's limit)."""
    rng = np.random.default_rng(seed)
    rating = list(max_kw) if isinstance(max_kw, list) else [max_kw] * evses
    out = []
    for evse in range(1, evses + 1):
        max_kw_e = rating[evse - 1]
        t = t0_s + rng.exponential(2.0) * 3600
        while t < t0_s + hours * 3600:
            stay = rng.uniform(2.0, 9.0) * 3600
            ev_kw = float(min(max_kw_e, rng.choice([7.4, 11.0, 22.0, 50.0])))
            need = float(min(rng.uniform(5.0, 40.0), ev_kw * ETA * stay / 3600 * 0.9))
            out.append(EvSession(evse, t, t + stay, need, ev_kw,
                                 soc0_pct=float(rng.uniform(10, 60))))
            t += stay + rng.exponential(3.0) * 3600
    return out


@dataclass
class _Evse:
    evse_id: int
    register_wh: float = 0.0
    session: EvSession | None = None
    tx: str | None = None
    seq: int = 0
    given_kwh: float = 0.0  # into the battery this session
    power_kw: float = 0.0
    profile: list[tuple[float, float]] = field(default_factory=list)  # (from_s, kW)
    faulted: bool = False


class _Link(ChargePoint):
    def __init__(self, cp_id: str, connection: ClientConnection, owner: SimulatedChargePoint):
        super().__init__(cp_id, connection, response_timeout=10)
        self.owner = owner

    @on("SetChargingProfile")
    def on_profile(self, evse_id: int, charging_profile: dict[str, Any],
                   **_: Any) -> call_result.SetChargingProfile:
        ok = self.owner.take_profile(evse_id, charging_profile)
        return call_result.SetChargingProfile(status="Accepted" if ok else "Rejected")

    @on("GetVariables")
    def on_get(self, get_variable_data: list[dict[str, Any]],
               **_: Any) -> call_result.GetVariables:
        out = []
        for d in get_variable_data:
            known = (d["component"]["name"], d["variable"]["name"]) == (
                "SmartChargingCtrlr", "RateUnit")
            out.append({"attribute_status": "Accepted" if known else "UnknownVariable",
                        "component": d["component"], "variable": d["variable"],
                        **({"attribute_value": self.owner.rate_unit} if known else {})})
        return call_result.GetVariables(get_variable_result=out)


class SimulatedChargePoint:
    """See module docstring. ``run()`` until ``stop`` is set."""

    def __init__(self, cp_id: str, url: str, sessions: list[EvSession], clock: SimClock, *,
                 evses: int, max_kw: float | list[float], rate_unit: Literal["W", "A"] = "W",
                 voltage_v: float = 230.0, phases: int = 3, tick_s: float = 0.05,
                 ignore_profiles: bool = False,
                 faults: dict[int, tuple[float, float]] | None = None) -> None:
        self.cp_id, self.url, self.clock = cp_id, url.rstrip("/"), clock
        self.rating = (list(max_kw) if isinstance(max_kw, list) else [max_kw] * evses)
        self.rate_unit, self.tick_s = rate_unit, tick_s
        self.voltage_v, self.phases = voltage_v, phases
        self.ignore_profiles = ignore_profiles
        self.faults = faults or {}
        self.evses = {i: _Evse(i) for i in range(1, evses + 1)}
        self.pending = sorted(sessions, key=lambda s: s.arrive_s)
        self.link: _Link | None = None
        self.ws: ClientConnection | None = None
        self.connects = 0
        self.profiles_taken = 0
        self.default_kw: float | None = None  # a TxDefaultProfile's limit, once one came
        self.peak_over_kw = 0.0  # most drawn above a profile in force (0 unless ignoring)
        self._tx = 0
        self._last = clock.now()
        self._back_at = 0.0  # no reconnect before (``drop``)

    # -- profiles ------------------------------------------------------------------------------
    def take_profile(self, evse_id: int, profile: dict[str, Any]) -> bool:
        [sched] = profile["charging_schedule"][:1]
        if profile["charging_profile_purpose"] == "TxDefaultProfile":
            if evse_id != 0:
                return False
            self.default_kw = sched["charging_schedule_period"][0]["limit"] * self._to_kw(sched)
            self.profiles_taken += 1
            return True
        e = self.evses.get(evse_id)
        if e is None or e.tx is None or profile.get("transaction_id") not in (None, e.tx):
            return False
        start = epoch(sched.get("start_schedule"))
        if math.isnan(start):
            start = self.clock.now()
        e.profile = [(start + p["start_period"], p["limit"] * self._to_kw(sched))
                     for p in sched["charging_schedule_period"]]
        self.profiles_taken += 1
        return True

    def _to_kw(self, sched: dict[str, Any]) -> float:
        return 1.0 / 1000.0 if sched["charging_rate_unit"] == "W" else (
            self.voltage_v * self.phases / 1000.0)

    def _limit_kw(self, e: _Evse, now: float) -> float:
        limit = self.rating[e.evse_id - 1] if self.default_kw is None else self.default_kw
        for start, kw in e.profile:
            if start <= now:
                limit = kw
        return limit

    # -- the plant -----------------------------------------------------------------------------
    async def _send(self, payload: Any) -> Any:
        if self.link is None:
            return None
        return await self.link.call(payload)

    async def _tick(self) -> None:
        now = self.clock.now()
        dt_h = max(now - self._last, 0.0) / 3600.0
        self._last = now
        for e in self.evses.values():
            faulted = any(a <= now < b for i, (a, b) in self.faults.items() if i == e.evse_id)
            if faulted != e.faulted:
                e.faulted = faulted
                await self._status(e)
            s = e.session
            if s is not None:
                e.register_wh += e.power_kw * dt_h * 1000.0
                e.given_kwh += e.power_kw * dt_h * ETA
                if now >= s.leave_s:
                    await self._end(e, now)
                    continue
                limit = self._limit_kw(e, now)
                want = min(s.max_kw, (s.energy_kwh - e.given_kwh) / ETA / max(dt_h, 1e-9)
                           if dt_h > 0 else s.max_kw)
                rated = self.rating[e.evse_id - 1]
                draw = min(want, rated, rated if self.ignore_profiles else limit)
                e.power_kw = 0.0 if e.faulted else max(draw, 0.0)
                if e.profile:
                    self.peak_over_kw = max(self.peak_over_kw, e.power_kw - limit)
                await self._event(e, "Updated", "MeterValuePeriodic", now)
        while self.pending and self.pending[0].arrive_s <= now:
            s = self.pending.pop(0)
            ev = self.evses.get(s.evse_id)
            if ev is None or ev.session is not None or s.leave_s <= now:
                continue  # the EVSE is taken (a late previous EV): this driver goes elsewhere
            await self._start(ev, s, now)

    async def _status(self, e: _Evse) -> None:
        state = "Faulted" if e.faulted else ("Occupied" if e.session else "Available")
        await self._send(call.StatusNotification(timestamp=iso(self.clock.now()),
                                                 connector_status=state, evse_id=e.evse_id,
                                                 connector_id=1))

    def _meter(self, e: _Evse, now: float) -> list[dict[str, Any]]:
        s = e.session
        soc = (min(100.0, s.soc0_pct + 100.0 * e.given_kwh / s.battery_kwh) if s else None)
        values = [{"value": round(e.register_wh, 1),
                   "measurand": "Energy.Active.Import.Register"},
                  {"value": round(e.power_kw * 1000.0, 1), "measurand": "Power.Active.Import"}]
        if soc is not None:
            values.append({"value": round(soc, 2), "measurand": "SoC"})
        return [{"timestamp": iso(now), "sampled_value": values}]

    async def _event(self, e: _Evse, kind: str, reason: str, now: float) -> None:
        e.seq += 1
        await self._send(call.TransactionEvent(
            event_type=kind, timestamp=iso(now), trigger_reason=reason, seq_no=e.seq,
            transaction_info={"transaction_id": e.tx,
                              "charging_state": "Charging" if e.power_kw > 0 else "SuspendedEVSE"},
            evse={"id": e.evse_id, "connector_id": 1}, meter_value=self._meter(e, now)))

    async def _start(self, e: _Evse, s: EvSession, now: float) -> None:
        self._tx += 1
        e.session, e.tx = s, f"{self.cp_id}-{self._tx}"
        e.given_kwh, e.power_kw, e.profile = 0.0, 0.0, []
        await self._status(e)
        await self._event(e, "Started", "CablePluggedIn", now)
        amps = s.max_kw * 1000.0 / (self.voltage_v * self.phases)
        await self._send(call.NotifyEVChargingNeeds(evse_id=e.evse_id, charging_needs={
            "requested_energy_transfer": "AC_three_phase", "departure_time": iso(s.leave_s),
            "ac_charging_parameters": {"energy_amount": int(s.energy_kwh * 1000),
                                       "ev_min_current": 0, "ev_max_current": math.ceil(amps),
                                       "ev_max_voltage": int(self.voltage_v)}}))

    async def _end(self, e: _Evse, now: float) -> None:
        e.power_kw = 0.0
        await self._event(e, "Ended", "EVCommunicationLost", now)
        e.session, e.tx, e.profile = None, None, []
        await self._status(e)

    # -- the link ------------------------------------------------------------------------------
    async def _session(self) -> None:
        """One connection: boot, report, then tick until the link closes (a call waiting on an
        answer that will never come is cancelled with it)."""
        async with connect(f"{self.url}/{self.cp_id}",
                           subprotocols=[SUBPROTOCOL]) as ws:  # type: ignore[list-item]
            self.ws, self.link = ws, _Link(self.cp_id, ws, self)
            self.connects += 1
            reader = asyncio.create_task(self.link.start())
            driver = asyncio.create_task(self._drive())
            try:
                done, _ = await asyncio.wait({reader, driver},
                                             return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()  # the link's end (ConnectionClosed) or the driver's error
                raise ConnectionClosed(None, None)  # the reader ended without an error
            finally:
                for task in (reader, driver):
                    task.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                    await asyncio.gather(reader, driver, return_exceptions=True)
                self.link = None

    async def _drive(self) -> None:
        await self._send(call.BootNotification(
            charging_station={"model": "evgrid-sim", "vendor_name": "evgrid"},
            reason="PowerUp"))
        for e in self.evses.values():
            await self._status(e)
            if e.tx is not None:  # sessions carried through the outage
                await self._event(e, "Updated", "Trigger", self.clock.now())
        while True:
            await self._tick()
            await asyncio.sleep(self.tick_s)

    async def run(self, stop: asyncio.Event, backoff_max_s: float = 1.0) -> None:
        """Connect, and keep reconnecting with backoff, until ``stop``."""
        wait = 0.05
        while not stop.is_set():
            task = asyncio.create_task(self._session())
            stopper = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if stopper in done:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed, OSError):
                    await task
                return
            stopper.cancel()
            exc = task.exception()
            if exc is not None and not isinstance(exc, ConnectionClosed | OSError
                                                  | InvalidStatus | TimeoutError):
                raise exc
            log.info("charge point %s: link lost (%s); retrying in %.2f s", self.cp_id,
                     type(exc).__name__ if exc else "closed", wait)
            await asyncio.sleep(max(wait, self._back_at - time.monotonic()))
            wait = min(wait * 2, backoff_max_s)

    async def drop(self, outage_s: float = 0.0) -> None:
        """Close the link as a network fault would; ``run`` reconnects after ``outage_s``."""
        self._back_at = time.monotonic() + outage_s
        if self.ws is not None:
            await self.ws.close()

