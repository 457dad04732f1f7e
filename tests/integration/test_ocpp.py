"""OCPP 2.0.1 on loopback, both ends real (``ocpp`` over websockets): a station's CSMS and the
charge-point simulator. Sessions reach the station's state, set-points reach every connector
and are followed, a faulted connector is an outage, a reconnect loses nothing, a charger that
ignores its profile is caught and counted at what it draws, and bad input is refused while the
rest keeps working."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from evgrid.field.chargepoint_sim import EvSession, SimClock, SimulatedChargePoint
from evgrid.field.csms import SUBPROTOCOL, SiteCsms
from evgrid.field.site import Site, SiteFile

DT_H = 0.25
SPEED = 3600.0  # a simulated hour per real second


def _site(**charger: Any) -> Site:
    spec = {"id": "cp1", "evses": 3, "max_kw": 22.0, **charger}
    return Site(SiteFile.model_validate({"station_id": "depot", "chargers": [spec]}))


def _sessions(t0: float) -> list[EvSession]:
    h = 3600.0
    return [EvSession(1, t0, t0 + 6 * h, 30.0, 11.0), EvSession(2, t0, t0 + 3 * h, 20.0, 22.0),
            EvSession(3, t0, t0 + 8 * h, 15.0, 22.0)]


def _step(clock: SimClock) -> int:
    return math.floor((clock.now() - clock.t0_s) / (DT_H * 3600))


async def _until(cond: Callable[[], bool], timeout_s: float = 5.0) -> None:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout_s:
            raise AssertionError("timed out")
        await asyncio.sleep(0.01)


def _run(body: Callable[..., Awaitable[None]], site: Site, **sim: Any) -> None:
    async def main() -> None:
        clock = SimClock(t0_s=1_700_000_000.0, speed=SPEED)
        csms = SiteCsms(site, clock=clock.now)
        port = await csms.start()
        cp = SimulatedChargePoint("cp1", f"ws://127.0.0.1:{port}", _sessions(clock.t0_s), clock,
                                  evses=3, max_kw=22.0, tick_s=0.02, **sim)
        stop = asyncio.Event()
        task = asyncio.create_task(cp.run(stop, backoff_max_s=0.1))
        try:
            await _until(lambda: all(e.transaction for e in site.evses))
            await body(csms, cp, clock)
        finally:
            stop.set()
            await task
            await csms.close()

    asyncio.run(main())


def test_sessions_reach_the_state_and_set_points_are_followed() -> None:
    site = _site()

    async def body(csms: SiteCsms, cp: SimulatedChargePoint, clock: SimClock) -> None:
        await _until(lambda: all(not math.isnan(e.requested_kwh) for e in site.evses))
        assert site.rate_unit == {"cp1": "W"}
        h = 8
        st = site.state(_step(clock), clock.t0_s, DT_H, np.full(h, 0.2), np.zeros(h))
        assert list(st.charger) == [0, 1, 2] and st.station_id == "depot"
        # Owed: what each EV asked for less what it received so far (never more).
        assert (st.owed_kwh <= np.array([30.0, 20.0, 15.0]) + 1e-9).all()
        assert st.upper_kw[0, 0] == pytest.approx(11.0, rel=0.01)  # the EV's own limit (16 A)
        assert st.departure_step[1] - st.horizon_start <= 3 / DT_H + 1
        res = await csms.apply({0: 4.0, 1: 0.0, 2: 7.5}, duration_s=900)
        assert (res.accepted, res.rejected, res.skipped) == (3, 0, 0)
        assert res.seconds < 0.5
        await asyncio.sleep(0.2)  # a few ticks
        assert [e.setpoint_kw for e in site.evses] == [4.0, 0.0, 7.5]
        drawn = [e.power_kw for e in site.evses]
        assert drawn[0] == pytest.approx(4.0, abs=0.01) and drawn[1] == 0.0
        assert drawn[2] <= 7.5 + 1e-6
        assert not any(e.ignoring for e in site.evses) and cp.peak_over_kw <= 1e-6
        assert site.counted_kw() <= 11.5 + 1e-6

    _run(body, site)


def test_a_profile_in_amps_and_its_end_stop_the_charger() -> None:
    site = _site()

    async def body(csms: SiteCsms, cp: SimulatedChargePoint, clock: SimClock) -> None:
        await _until(lambda: "cp1" in site.rate_unit)
        assert site.rate_unit["cp1"] == "A"
        await csms.apply({0: 6.9}, duration_s=900)  # 10 A × 230 V × 3
        await asyncio.sleep(0.1)
        assert site.evses[0].power_kw == pytest.approx(6.9, abs=0.01)
        await asyncio.sleep(0.5)  # 30 simulated minutes: past the profile's 15
        assert site.evses[0].power_kw == 0.0

    _run(body, site, rate_unit="A")


def test_a_faulted_connector_is_an_outage_and_a_reconnect_loses_nothing() -> None:
    site = _site()
    t0 = 1_700_000_000.0

    async def body(csms: SiteCsms, cp: SimulatedChargePoint, clock: SimClock) -> None:
        await _until(lambda: site.evses[1].status == "Faulted", 3)
        st = site.state(_step(clock), clock.t0_s, DT_H, np.full(4, 0.2), np.zeros(4))
        assert 1 not in st.charger  # no set-point for a connector out of order
        before = {e.index: e.transaction for e in site.evses}
        await cp.drop(outage_s=0.3)
        await _until(lambda: not site.evses[0].online, 2)
        assert site.state(_step(clock), clock.t0_s, DT_H, np.full(4, 0.2),
                          np.zeros(4)).charger.size == 0  # a charger offline: all outage
        await _until(lambda: site.evses[0].online and csms.connects["cp1"] == 2, 5)
        await _until(lambda: site.evses[1].usable, 5)  # the fault cleared
        assert {e.index: e.transaction for e in site.evses if e.index != 1} == {
            k: v for k, v in before.items() if k != 1}
        res = await csms.apply({0: 3.0, 2: 3.0}, duration_s=900)
        assert res.accepted == 2 and cp.connects == 2

    _run(body, site, faults={2: (t0 + 600, t0 + 1800)})


def test_a_charger_ignoring_its_profile_is_caught_and_counted_at_its_draw() -> None:
    site = _site()

    async def body(csms: SiteCsms, cp: SimulatedChargePoint, clock: SimClock) -> None:
        res = await csms.apply({0: 2.0, 1: 2.0, 2: 2.0}, duration_s=900)
        assert res.accepted == 3
        await _until(lambda: all(e.ignoring for e in site.evses), 3)
        assert site.counted_kw() == pytest.approx(sum(e.power_kw for e in site.evses))
        assert site.counted_kw() > 3 * 2.0 + 1.0

    _run(body, site, ignore_profiles=True)


def test_strangers_and_garbage_are_refused_and_the_site_keeps_serving() -> None:
    site = _site()

    async def body(csms: SiteCsms, cp: SimulatedChargePoint, clock: SimClock) -> None:
        url = f"ws://127.0.0.1:{csms.port}"
        with pytest.raises(InvalidStatus):  # a charge point the site does not own
            async with connect(f"{url}/intruder", subprotocols=[SUBPROTOCOL]):  # type: ignore[list-item]
                pass
        # An owned id over a second link (as a spoofer would) sending junk and a hostile
        # meter reading: answered with CallErrors / ignored values, nothing breaks.
        async with connect(f"{url}/cp1", subprotocols=[SUBPROTOCOL]) as ws:  # type: ignore[list-item]
            await ws.send("not json")
            await ws.send(json.dumps([2, "x1", "NoSuchAction", {}]))
            await ws.send(json.dumps([2, "x2", "MeterValues", {"evseId": 1, "meterValue": [
                {"timestamp": "2023-11-14T22:13:20Z", "sampledValue": [
                    {"value": -5e9, "measurand": "Energy.Active.Import.Register"}]}]}]))
            await ws.send(json.dumps([2, "x3", "MeterValues", {"evseId": 99, "meterValue": []}]))
            replies = [json.loads(await asyncio.wait_for(ws.recv(), 2)) for _ in range(3)]
            assert [r[0] for r in replies] == [4, 3, 4]  # CallError, CallResult, CallError
        assert site.evses[0].delivered_kwh >= 0.0
        # The real charger's link, never closed, serves again once the other one is gone.
        await _until(lambda: len(csms.open_links["cp1"]) == 1 and site.evses[0].online, 5)
        res = await csms.apply({0: 5.0}, duration_s=900)
        assert res.accepted == 1

    _run(body, site)
